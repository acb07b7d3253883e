//! A pool's `affinity = { mode, name, idle_timeout, max_lifetime }` (seed 000's sessions).

use std::time::Duration;

use super::ctx::Ctx;
use super::reader::{positive_duration, Field};
use super::values::check_token;
use crate::model::{AffinityConfig, AffinityMode};

/// Default `idle_timeout`: how long a session outlives its last client connection.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Default `max_lifetime`.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// The modes, for error messages.
const MODES: &str = "cookie, header, client-ip, none";

/// Decodes `affinity`; `Some(None)` for `mode = "none"`.
pub(crate) fn decode(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<Option<AffinityConfig>> {
    let mut table = field.table(ctx)?;
    let mode = table.need(ctx, "mode", mode);
    let name = table.optional("name");
    let idle = table.get_or(ctx, "idle_timeout", IDLE_TIMEOUT, positive_duration);
    let lifetime = table.get_or(ctx, "max_lifetime", MAX_LIFETIME, positive_duration);
    table.finish(ctx);
    let Some(mode) = mode? else { return Some(None) };
    let name = carrier_name(ctx, name, mode)?;
    Some(Some(AffinityConfig { mode, name, idle_timeout: idle?, max_lifetime: lifetime? }))
}

/// Decodes `mode`; `Some(None)` is `"none"`.
fn mode(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<Option<AffinityMode>> {
    match field.str(ctx)? {
        "cookie" => Some(Some(AffinityMode::Cookie)),
        "header" => Some(Some(AffinityMode::Header)),
        "client-ip" => Some(Some(AffinityMode::ClientIp)),
        "none" => Some(None),
        other => field.check(
            ctx,
            Err(crate::ErrorKind::UnknownName {
                what: "affinity mode",
                value: other.to_owned(),
                valid: MODES.to_owned(),
            }),
        ),
    }
}

/// The cookie or header name, with its default; `client-ip` has no name.
fn carrier_name(ctx: &mut Ctx<'_>, field: Option<Field<'_, '_>>, mode: AffinityMode) -> Option<String> {
    let (what, default) = match mode {
        AffinityMode::Cookie => ("cookie", "bunsan_session"),
        AffinityMode::Header => ("header", "x-bunsan-session"),
        AffinityMode::ClientIp => {
            return match field {
                Some(field) => field.invalid(ctx, "name is not used with mode = \"client-ip\""),
                None => Some(String::new()),
            };
        }
    };
    let Some(field) = field else { return Some(default.to_owned()) };
    let name = field.str(ctx)?;
    field.check(ctx, check_token(what, name))?;
    // Header names are case-insensitive and sent lowercase in HTTP/2; cookie names are not.
    Some(if mode == AffinityMode::Header { name.to_ascii_lowercase() } else { name.to_owned() })
}
