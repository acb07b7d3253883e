//! A pool's `upstream`, `upstream_tls` and `send_proxy`: how the node talks to its servers.

use super::ctx::Ctx;
use super::reader::Field;
use crate::error::ErrorKind;
use crate::model::{CertFiles, ProxyVersion, UpstreamProtocol, UpstreamTls};

/// Decodes `upstream`.
pub(crate) fn protocol(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<UpstreamProtocol> {
    match field.str(ctx)? {
        "http1" => Some(UpstreamProtocol::Http1),
        "h2c" => Some(UpstreamProtocol::H2c),
        "h2" => Some(UpstreamProtocol::H2),
        other => field.check(
            ctx,
            Err(ErrorKind::UnknownName {
                what: "upstream protocol",
                value: other.to_owned(),
                valid: "http1, h2c, h2".to_owned(),
            }),
        ),
    }
}

/// Decodes `upstream_tls = { ca, server_name }`, resolving `ca` against the config's
/// directory.
pub(crate) fn tls(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<UpstreamTls> {
    let mut table = field.table(ctx)?;
    let ca = table.need(ctx, "ca", path);
    let cert = table.get(ctx, "cert", path);
    let key = table.get(ctx, "key", path);
    let server_name = table.get(ctx, "server_name", |ctx, f| {
        let text = f.str(ctx)?;
        let valid = !text.is_empty()
            && text.len() <= 253
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !valid {
            return f.invalid(ctx, format!("{text:?} is not a host name"));
        }
        Some(text.to_owned())
    });
    table.finish(ctx);
    let base = ctx.base_dir().to_owned();
    let client_cert = match (cert?, key?) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(CertFiles { cert: base.join(cert), key: base.join(key) }),
        _ => {
            let why = "cert and key go together (a client certificate for the servers)";
            return field.invalid(ctx, why);
        }
    };
    Some(UpstreamTls { ca: base.join(ca?), server_name: server_name?, client_cert })
}

/// A non-empty file path.
fn path(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<std::path::PathBuf> {
    let text = field.str(ctx)?;
    if text.is_empty() {
        return field.invalid(ctx, "file path must not be empty");
    }
    Some(text.into())
}

/// Decodes `send_proxy`.
pub(crate) fn send_proxy(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<Option<ProxyVersion>> {
    match field.str(ctx)? {
        "v1" => Some(Some(ProxyVersion::V1)),
        "v2" => Some(Some(ProxyVersion::V2)),
        "none" => Some(None),
        other => field.check(
            ctx,
            Err(ErrorKind::UnknownName {
                what: "PROXY protocol version",
                value: other.to_owned(),
                valid: "v1, v2, none".to_owned(),
            }),
        ),
    }
}

/// `upstream = "h2"` needs `upstream_tls`; reported at `upstream`.
pub(crate) fn check_h2_has_tls(
    ctx: &mut Ctx<'_>,
    field: Option<&Field<'_, '_>>,
    protocol: Option<UpstreamProtocol>,
    tls: Option<&Option<UpstreamTls>>,
) {
    let (Some(field), Some(UpstreamProtocol::H2), Some(None)) = (field, protocol, tls) else { return };
    field.error(ctx, ErrorKind::Invalid("upstream = \"h2\" needs upstream_tls = { ca = \"…\" }".into()));
}
