//! `[node]` and `[admin]`: the process-wide tables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::ctx::Ctx;
use super::reader::Field;
use super::values::{invalid_address, parse_listen};
use super::ListenAt;
use crate::error::ErrorKind;
use crate::model::{AccessLogTarget, AdminConfig, NodeSettings, Secret, SessionKeySource};

/// The shortest admin token accepted: long enough that guessing it is not an option.
const MIN_TOKEN_CHARS: usize = 16;

/// Decodes `[node]`.
pub(crate) fn decode_node(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<NodeSettings> {
    let mut table = field.table(ctx)?;
    let default = NodeSettings::default().shutdown_timeout;
    let workers = table.get(ctx, "workers", |ctx, f| f.int(ctx, 1, 1024));
    let shutdown = table.get_or(ctx, "shutdown_timeout", default, |ctx, f| f.duration(ctx));
    let inline = table.get(ctx, "session_key", session_key);
    let file = table.get(ctx, "session_key_file", |ctx, f| key_file(ctx, f));
    let max_sessions = table.get_or(ctx, "max_sessions", 1_000_000, |ctx, f| f.int(ctx, 1, 100_000_000));
    let access_log = table.get(ctx, "access_log", access_log);
    let max_connections = NodeSettings::default().max_connections;
    let max_connections =
        table.get_or(ctx, "max_connections", max_connections, |ctx, f| f.int(ctx, 1, 100_000_000));
    let session_key = match (inline?, file?) {
        (Some(_), Some(_)) => {
            let why = "set session_key or session_key_file, not both";
            ctx.report(&field.span, &table.key_path("session_key"), ErrorKind::Invalid(why.into()));
            None
        }
        (Some(secret), None) => Some(SessionKeySource::Inline(secret)),
        (None, Some(path)) => Some(SessionKeySource::File(path)),
        (None, None) => Some(NodeSettings::default().session_key),
    };
    table.finish(ctx);
    Some(NodeSettings {
        workers: workers?,
        shutdown_timeout: shutdown?,
        session_key: session_key?,
        max_sessions: max_sessions?,
        access_log: access_log?,
        max_connections: max_connections?,
    })
}

/// Decodes `access_log`: `"stdout"` or a file path (anchored later, like the key file).
fn access_log(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<AccessLogTarget> {
    match field.str(ctx)? {
        "" => field.invalid(ctx, "access_log is \"stdout\" or a file path"),
        "stdout" => Some(AccessLogTarget::Stdout),
        path => Some(AccessLogTarget::File(PathBuf::from(path))),
    }
}

/// The shortest inline session key accepted.
const MIN_SESSION_KEY_CHARS: usize = 32;

/// Decodes `session_key`. Errors never quote it: it is a secret.
fn session_key(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<Secret> {
    let text = field.str(ctx)?;
    if text.chars().count() < MIN_SESSION_KEY_CHARS {
        return field
            .invalid(ctx, format!("session_key must be at least {MIN_SESSION_KEY_CHARS} characters"));
    }
    Some(Secret::new(text))
}

/// Decodes `session_key_file`.
fn key_file(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<PathBuf> {
    let text = field.str(ctx)?;
    if text.is_empty() {
        return field.invalid(ctx, "file path must not be empty");
    }
    Some(PathBuf::from(text))
}

/// Resolves a relative `session_key_file` and `access_log` against the config file's
/// directory, like every other path in the config (the working directory depends on how
/// the node was started).
pub(crate) fn anchor_key_file(mut node: NodeSettings, base: &Path) -> NodeSettings {
    if let SessionKeySource::File(path) = &node.session_key {
        node.session_key = SessionKeySource::File(base.join(path));
    }
    if let Some(AccessLogTarget::File(path)) = &node.access_log {
        node.access_log = Some(AccessLogTarget::File(base.join(path)));
    }
    node
}

/// Decodes `[admin]`, adding its listen address to `listens`.
pub(crate) fn decode_admin(
    ctx: &mut Ctx<'_>,
    field: &Field<'_, '_>,
    listens: &mut Vec<ListenAt>,
) -> Option<AdminConfig> {
    let mut table = field.table(ctx)?;
    let listen = table.need(ctx, "listen", |ctx, f| listen_addr(ctx, f, listens));
    let token = table.get(ctx, "token", token);
    // Like a missing key, reported at the start of the table.
    if matches!(token, Some(None)) && listen.is_some_and(|addr| !is_loopback(addr)) {
        let kind = ErrorKind::Invalid(TOKEN_REQUIRED.to_owned());
        ctx.report(&field.span, &table.key_path("token"), kind);
    }
    table.finish(ctx);
    Some(AdminConfig { listen: listen?, token: token? })
}

/// Why an admin API reachable from other hosts needs a token.
const TOKEN_REQUIRED: &str = "a token is required when the admin API listens on a non-loopback address";

/// Whether only this host can reach `addr` (IPv4-mapped loopback counts).
fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// Decodes a literal `IP:PORT` listen address and adds it to `listens`.
pub(crate) fn listen_addr(
    ctx: &mut Ctx<'_>,
    field: &Field<'_, '_>,
    listens: &mut Vec<ListenAt>,
) -> Option<SocketAddr> {
    let text = field.str(ctx)?;
    let addr = field.check(ctx, parse_listen(text).map_err(|reason| invalid_address(text, reason)))?;
    listens.push(ListenAt { addr, span: field.span.clone(), key: field.key.clone() });
    Some(addr)
}

/// Decodes the admin bearer token. Errors never quote it: it is a secret.
fn token(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<Secret> {
    let text = field.str(ctx)?;
    if text.chars().count() < MIN_TOKEN_CHARS {
        return field.invalid(ctx, format!("token must be at least {MIN_TOKEN_CHARS} characters"));
    }
    // It travels in an `Authorization` header, which only carries visible ASCII.
    if !text.chars().all(|c| c.is_ascii_graphic()) {
        return field.invalid(ctx, "token must be visible ASCII characters (no spaces)");
    }
    Some(Secret::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_includes_mapped_v4() {
        assert!(is_loopback("127.0.0.1:1".parse().unwrap()));
        assert!(is_loopback("[::1]:1".parse().unwrap()));
        assert!(is_loopback("[::ffff:127.0.0.1]:1".parse().unwrap()));
        assert!(!is_loopback("0.0.0.0:1".parse().unwrap()));
        assert!(!is_loopback("[::]:1".parse().unwrap()));
    }
}
