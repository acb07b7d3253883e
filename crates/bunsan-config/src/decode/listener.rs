//! `[[listener]]`: listening sockets, their protocol, TLS files and the pool they feed.

use super::ctx::Ctx;
use super::node::listen_addr;
use super::pool::Pools;
use super::reader::{Field, Reader};
use super::{read_name, ListenAt, Unique};
use crate::error::ErrorKind;
use crate::model::{CertFiles, ListenerConfig, ListenerLimits, Protocol, TlsFiles};

/// What decoding a listener needs from the rest of the file.
struct Env<'x> {
    /// The pools the file defines.
    pools: &'x Pools,
    names: Unique,
    listens: &'x mut Vec<ListenAt>,
}

/// Decodes the `listener` array; a node without listeners is an error.
pub(crate) fn decode_listeners(
    ctx: &mut Ctx<'_>,
    field: Option<Field<'_, '_>>,
    pools: &Pools,
    listens: &mut Vec<ListenAt>,
) -> Option<Vec<ListenerConfig>> {
    let Some(field) = field else {
        return no_listeners(ctx);
    };
    let tables = field.tables(ctx);
    if tables.complete && tables.readers.is_empty() {
        return no_listeners(ctx);
    }
    let mut env = Env { pools, names: Unique::new("listener name"), listens };
    tables.decode_all(|table| decode_listener(ctx, table, &mut env))
}

/// Reports a config without listeners: it would start and serve nothing.
fn no_listeners(ctx: &mut Ctx<'_>) -> Option<Vec<ListenerConfig>> {
    let why = "a node needs at least one [[listener]]";
    ctx.report(&(0..0), "", ErrorKind::Invalid(why.to_owned()));
    None
}

/// Decodes one `[[listener]]`.
fn decode_listener(
    ctx: &mut Ctx<'_>,
    mut table: Reader<'_, '_>,
    env: &mut Env<'_>,
) -> Option<ListenerConfig> {
    let name = read_name(ctx, &mut table, &mut env.names, "listener");
    let listen = table.need(ctx, "listen", |ctx, f| listen_addr(ctx, f, env.listens));
    let protocol = table.get_or(ctx, "protocol", Protocol::Http, protocol);
    let pool = table.need(ctx, "pool", |ctx, f| pool_ref(ctx, f, env.pools, protocol));
    let tls = tls_for(ctx, table.optional("tls"), protocol);
    let accept_proxy = table.get_or(ctx, "accept_proxy", false, |ctx, f| f.bool(ctx));
    let limits = table.get_or(ctx, "limits", ListenerLimits::default(), super::limits::decode);
    table.finish(ctx);
    let (name, listen, protocol, pool, tls) = (name?, listen?, protocol?, pool?, tls?);
    Some(ListenerConfig { name, listen, protocol, pool, tls, accept_proxy: accept_proxy?, limits: limits? })
}

/// Decodes `protocol`.
fn protocol(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<Protocol> {
    let text = field.str(ctx)?;
    let all = [Protocol::Http, Protocol::Tcp];
    let found = all.into_iter().find(|p| p.as_str() == text).ok_or_else(|| {
        let valid = all.map(Protocol::as_str).join(", ");
        ErrorKind::UnknownName { what: "protocol", value: text.to_owned(), valid }
    });
    field.check(ctx, found)
}

/// Decodes `pool`, which must name a pool defined in the file and, for a TCP listener,
/// one that can balance without an HTTP request.
fn pool_ref(
    ctx: &mut Ctx<'_>,
    field: &Field<'_, '_>,
    pools: &Pools,
    protocol: Option<Protocol>,
) -> Option<String> {
    let name = field.str(ctx)?;
    if !pools.names.iter().any(|p| p == name) {
        let known = if pools.names.is_empty() { "none".to_owned() } else { pools.names.join(", ") };
        return field.check(ctx, Err(ErrorKind::UnknownPool { name: name.to_owned(), known }));
    }
    if protocol == Some(Protocol::Tcp) && pools.http_keyed.iter().any(|p| p == name) {
        let why = format!(
            "pool {name:?} reads its hash key or session identifier from HTTP requests; a tcp \
             listener has only the client address (use \"client-ip\" or a separate pool)"
        );
        return field.invalid(ctx, why);
    }
    Some(name.to_owned())
}

/// Decodes the optional `tls` of a listener speaking `protocol` (`None` if that was
/// invalid): TCP relays bytes as they are, so it has no use for certificates.
fn tls_for(
    ctx: &mut Ctx<'_>,
    field: Option<Field<'_, '_>>,
    protocol: Option<Protocol>,
) -> Option<Option<TlsFiles>> {
    match field {
        None => Some(None),
        Some(field) if protocol == Some(Protocol::Tcp) => {
            field.invalid(ctx, "tls is only supported on http listeners")
        }
        Some(field) => tls(ctx, &field).map(Some),
    }
}

/// Decodes `tls = { cert, key, sni }`, resolving relative paths against the config's
/// directory (not the working directory, which depends on how the node was started).
fn tls(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<TlsFiles> {
    let mut table = field.table(ctx)?;
    let cert = table.need(ctx, "cert", file_path);
    let key = table.need(ctx, "key", file_path);
    let sni = table.get_or(ctx, "sni", Vec::new(), sni_certs);
    table.finish(ctx);
    let base = ctx.base_dir();
    Some(TlsFiles { cert: base.join(cert?), key: base.join(key?), sni: sni? })
}

/// Decodes `sni = [{ cert, key }, …]`.
fn sni_certs(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<Vec<CertFiles>> {
    field.tables(ctx).decode_all(|mut table| {
        let cert = table.need(ctx, "cert", file_path);
        let key = table.need(ctx, "key", file_path);
        table.finish(ctx);
        let base = ctx.base_dir();
        Some(CertFiles { cert: base.join(cert?), key: base.join(key?) })
    })
}

/// A non-empty file path string.
fn file_path(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<String> {
    let text = field.str(ctx)?;
    if text.is_empty() {
        return field.invalid(ctx, "file path must not be empty");
    }
    Some(text.to_owned())
}
