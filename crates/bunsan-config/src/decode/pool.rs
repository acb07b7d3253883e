//! `[[pool]]` and `[[pool.server]]`: groups of backends and how requests are spread over them.

use std::net::SocketAddr;
use std::time::Duration;

use bunsan_core::{Algorithm, ServerState};

use super::ctx::Ctx;
use super::reader::{positive_duration, Field, Reader};
use super::values::{invalid_address, parse_hash_key, resolve_server};
use super::{read_name, Unique};
use crate::error::ErrorKind;
use crate::model::{
    AffinityMode, HashKey, OutlierConfig, PoolConfig, RetryConfig, ServerConfig, UpstreamProtocol,
};

/// Default `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default `response_timeout`.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `idle_timeout`.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `max_idle_per_server`.
const MAX_IDLE_PER_SERVER: usize = 256;

/// The decoded `pool` array.
pub(crate) struct Pools {
    /// The pools, if all of them are valid.
    pub(crate) configs: Option<Vec<PoolConfig>>,
    /// Every valid pool name, even of pools with other errors, so a listener naming such a
    /// pool gets no second, misleading "no pool named" error.
    pub(crate) names: Vec<String>,
    /// Pools whose `hash_key` or session identifier is read from the HTTP request (header,
    /// cookie, path), which a TCP listener does not have.
    pub(crate) http_keyed: Vec<String>,
}

/// Decodes the `pool` array (absent = no pools).
pub(crate) fn decode_pools(ctx: &mut Ctx<'_>, field: Option<Field<'_, '_>>) -> Pools {
    let Some(field) = field else {
        return Pools { configs: Some(Vec::new()), names: Vec::new(), http_keyed: Vec::new() };
    };
    let mut names = Unique::new("pool name");
    let configs = field.tables(ctx).decode_all(|table| decode_pool(ctx, table, &mut names));
    let http_keyed = configs.iter().flatten().filter(|p| needs_http(p)).map(|p| p.name.clone());
    Pools { http_keyed: http_keyed.collect(), configs, names: names.into_values() }
}

/// Whether the pool's hash key or session identifier can only be read from an HTTP request.
fn needs_http(pool: &PoolConfig) -> bool {
    let keyed = matches!(pool.hash_key, Some(HashKey::Header(_) | HashKey::Cookie(_) | HashKey::Path));
    let sessions = pool.affinity.as_ref().is_some_and(|a| a.mode != AffinityMode::ClientIp);
    keyed || sessions
}

/// Decodes one `[[pool]]`.
fn decode_pool(ctx: &mut Ctx<'_>, mut table: Reader<'_, '_>, names: &mut Unique) -> Option<PoolConfig> {
    let name = read_name(ctx, &mut table, names, "pool");
    let algorithm = table.get_or(ctx, "algorithm", Algorithm::default(), algorithm);
    let hash_key = hash_key_for(ctx, table.optional("hash_key"), algorithm);
    let connect = table.get_or(ctx, "connect_timeout", CONNECT_TIMEOUT, positive_duration);
    let response = table.get_or(ctx, "response_timeout", RESPONSE_TIMEOUT, positive_duration);
    let idle = table.get_or(ctx, "idle_timeout", IDLE_TIMEOUT, positive_duration);
    let max_idle =
        table.get_or(ctx, "max_idle_per_server", MAX_IDLE_PER_SERVER, |ctx, f| f.int(ctx, 0, 100_000));
    let affinity = table.get_or(ctx, "affinity", None, super::affinity::decode);
    let health = table.get_or(ctx, "health", None, super::health::decode);
    // Passive detection costs nothing until servers fail, so it is on unless switched off.
    let outlier = table.get_or(ctx, "outlier", Some(OutlierConfig::default()), super::outlier::decode);
    let retry = table.get_or(ctx, "retry", RetryConfig::default(), super::retry::decode);
    let upstream_field = table.optional("upstream");
    let upstream = match &upstream_field {
        Some(field) => super::upstream::protocol(ctx, field),
        None => Some(UpstreamProtocol::Http1),
    };
    let upstream_tls =
        table.get_or(ctx, "upstream_tls", None, |ctx, f| super::upstream::tls(ctx, f).map(Some));
    super::upstream::check_h2_has_tls(ctx, upstream_field.as_ref(), upstream, upstream_tls.as_ref());
    let send_proxy = table.get_or(ctx, "send_proxy", None, super::upstream::send_proxy);
    let max_body = table.get_or(ctx, "max_body", None, |ctx, f| f.size(ctx, u64::MAX).map(Some));
    let response_head =
        table.get_or(ctx, "response_header_bytes", 64 * 1024, |ctx, f| super::limits::head_bytes(ctx, f));
    let servers = table.get_or(ctx, "server", Vec::new(), decode_servers);
    table.finish(ctx);
    Some(PoolConfig {
        name: name?,
        algorithm: algorithm?,
        hash_key: hash_key?,
        connect_timeout: connect?,
        response_timeout: response?,
        idle_timeout: idle?,
        max_idle_per_server: max_idle?,
        affinity: affinity?,
        health: health?,
        outlier: outlier?,
        retry: retry?,
        upstream: upstream?,
        upstream_tls: upstream_tls?,
        send_proxy: send_proxy?,
        max_body: max_body?,
        response_header_bytes: response_head?,
        servers: servers?,
    })
}

/// Decodes `algorithm`.
fn algorithm(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<Algorithm> {
    let text = field.str(ctx)?;
    let parsed = text.parse::<Algorithm>().map_err(|_| {
        let valid = Algorithm::ALL.map(Algorithm::as_str).join(", ");
        ErrorKind::UnknownName { what: "algorithm", value: text.to_owned(), valid }
    });
    field.check(ctx, parsed)
}

/// Decodes `hash_key` given the pool's algorithm (`None` if the algorithm was invalid):
/// only Maglev hashes, and it defaults to the client IP.
fn hash_key_for(
    ctx: &mut Ctx<'_>,
    field: Option<Field<'_, '_>>,
    algorithm: Option<Algorithm>,
) -> Option<Option<HashKey>> {
    let Some(field) = field else {
        return Some((algorithm == Some(Algorithm::Maglev)).then_some(HashKey::ClientIp));
    };
    if algorithm.is_some_and(|a| a != Algorithm::Maglev) {
        return field.invalid(ctx, "hash_key is only used with algorithm = \"maglev\"");
    }
    let text = field.str(ctx)?;
    field.check(ctx, parse_hash_key(text)).map(Some)
}

/// Decodes a pool's `server` array.
fn decode_servers(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<Vec<ServerConfig>> {
    let mut names = Unique::new("server name");
    let tables = field.tables(ctx);
    tables.decode_all(|table| decode_server(ctx, table, &mut names, &field.key))
}

/// Decodes one `[[pool.server]]`; `prefix` is its array's path, e.g. `pool[app].server`.
fn decode_server(
    ctx: &mut Ctx<'_>,
    mut table: Reader<'_, '_>,
    names: &mut Unique,
    prefix: &str,
) -> Option<ServerConfig> {
    let name = read_name(ctx, &mut table, names, prefix);
    let addr = table.need(ctx, "addr", server_addr);
    let capacity = table.get_or(ctx, "capacity", 1, |ctx, f| f.int(ctx, 1, 10_000));
    let state = table.get_or(ctx, "state", ServerState::Ready, state);
    table.finish(ctx);
    let (name, (addr, addr_text), capacity, state) = (name?, addr?, capacity?, state?);
    Some(ServerConfig { name, addr, addr_text, capacity, state })
}

/// Decodes `addr`, resolving a host name now, and keeps the text as written.
fn server_addr(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<(SocketAddr, String)> {
    let text = field.str(ctx)?;
    let resolved = resolve_server(text).map_err(|reason| invalid_address(text, reason));
    Some((field.check(ctx, resolved)?, text.to_owned()))
}

/// Decodes `state`. `down` is a real state, but health checks own it (they set and clear
/// it); config only chooses the state a server starts in.
fn state(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<ServerState> {
    let text = field.str(ctx)?;
    match text.parse::<ServerState>() {
        Ok(ServerState::Down) => field.invalid(ctx, "state \"down\" is set by health checks, not by config"),
        Ok(state) => Some(state),
        Err(_) => field.check(ctx, Err(unknown_state(text))),
    }
}

/// The error for a state name that is not one config accepts.
fn unknown_state(text: &str) -> ErrorKind {
    let settable = ServerState::ALL.into_iter().filter(|s| *s != ServerState::Down);
    let valid: Vec<_> = settable.map(ServerState::as_str).collect();
    ErrorKind::UnknownName { what: "state", value: text.to_owned(), valid: valid.join(", ") }
}
