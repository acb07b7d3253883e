//! `[node]` and `[admin]`: the process-wide tables.

use std::net::SocketAddr;

use super::ctx::Ctx;
use super::reader::Field;
use super::values::{invalid_address, parse_listen};
use super::ListenAt;
use crate::error::ErrorKind;
use crate::model::{AdminConfig, NodeSettings, Secret};

/// The shortest admin token accepted: long enough that guessing it is not an option.
const MIN_TOKEN_CHARS: usize = 16;

/// Decodes `[node]`.
pub(crate) fn decode_node(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<NodeSettings> {
    let mut table = field.table(ctx)?;
    let default = NodeSettings::default().shutdown_timeout;
    let workers = table.get(ctx, "workers", |ctx, f| f.int(ctx, 1, 1024));
    let shutdown = table.get_or(ctx, "shutdown_timeout", default, |ctx, f| f.duration(ctx));
    table.finish(ctx);
    Some(NodeSettings { workers: workers?, shutdown_timeout: shutdown? })
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
