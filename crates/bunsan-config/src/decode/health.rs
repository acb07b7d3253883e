//! A pool's `health = { kind, path, host, expect, interval, timeout, fall, rise }`: active
//! health checks.

use std::ops::RangeInclusive;
use std::time::Duration;

use super::ctx::Ctx;
use super::reader::{decode_or, positive_duration, Field};
use super::{check_order, Timed};
use crate::error::ErrorKind;
use crate::model::{HealthConfig, HealthKind};

/// Default `interval`.
const INTERVAL: Duration = Duration::from_secs(2);
/// Default `timeout`.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Default `fall` and `rise`.
const FALL: u32 = 2;
const RISE: u32 = 2;
/// The most checks `fall` and `rise` may count: beyond that a server would stay in its
/// state for so long that the check is pointless.
const MAX_STREAK: i64 = 100;
/// Default `path`.
const PATH: &str = "/";
/// Default `expect`: success and redirects (a health page behind a login redirects).
const EXPECT: RangeInclusive<u16> = 200..=399;
/// The status codes HTTP defines.
const STATUS_CODES: RangeInclusive<u16> = 100..=599;
/// The kinds, for error messages.
const KINDS: &str = "http, tcp, none";

/// The value of `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    Tcp,
    /// `"none"`: no active checks.
    Off,
}

/// The keys of an HTTP check, read before the kind is known to allow them.
struct HttpKeys<'a, 'i> {
    path: Option<Field<'a, 'i>>,
    host: Option<Field<'a, 'i>>,
    expect: Option<Field<'a, 'i>>,
}

/// The keys every kind of check has.
struct TimingKeys<'a, 'i> {
    interval: Option<Field<'a, 'i>>,
    timeout: Option<Field<'a, 'i>>,
    fall: Option<Field<'a, 'i>>,
    rise: Option<Field<'a, 'i>>,
}

/// Decodes `health`; `Some(None)` for `kind = "none"`.
pub(crate) fn decode(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<Option<HealthConfig>> {
    let mut table = field.table(ctx)?;
    let kind = table.need(ctx, "kind", kind);
    let http = HttpKeys {
        path: table.optional("path"),
        host: table.optional("host"),
        expect: table.optional("expect"),
    };
    let timing = TimingKeys {
        interval: table.optional("interval"),
        timeout: table.optional("timeout"),
        fall: table.optional("fall"),
        rise: table.optional("rise"),
    };
    table.finish(ctx);
    if kind == Some(Kind::Off) {
        let (t, h) = (&timing, &http);
        let keys = [&h.path, &h.host, &h.expect, &t.interval, &t.timeout, &t.fall, &t.rise];
        // A key next to "none" means the reader expects checks that will not run.
        return reject(ctx, &keys, "not used with kind = \"none\"").then_some(None);
    }
    // An invalid kind (already reported) still has its other keys checked, so that one
    // run shows every mistake.
    let check = check_kind(ctx, kind, &http);
    let (interval, timeout, fall, rise) = decode_timing(ctx, &timing)?;
    Some(Some(HealthConfig { kind: check?, interval, timeout, fall, rise }))
}

/// Decodes `kind`.
fn kind(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<Kind> {
    match field.str(ctx)? {
        "http" => Some(Kind::Http),
        "tcp" => Some(Kind::Tcp),
        "none" => Some(Kind::Off),
        other => field.check(
            ctx,
            Err(ErrorKind::UnknownName {
                what: "health check kind",
                value: other.to_owned(),
                valid: KINDS.to_owned(),
            }),
        ),
    }
}

/// Reports every key that was written as `rule` (e.g. `only used with kind = "http"`);
/// true if none was.
fn reject(ctx: &mut Ctx<'_>, keys: &[&Option<Field<'_, '_>>], rule: &str) -> bool {
    let mut clean = true;
    for field in keys.iter().copied().flatten() {
        // The path ends with the key's own name; keys have no dots.
        let name = field.key.rsplit('.').next().unwrap_or_default();
        field.invalid::<()>(ctx, format!("{name} is {rule}"));
        clean = false;
    }
    clean
}

/// What a check does, given its `kind` (`None` if invalid) and the HTTP keys.
fn check_kind(ctx: &mut Ctx<'_>, kind: Option<Kind>, keys: &HttpKeys) -> Option<HealthKind> {
    if kind == Some(Kind::Tcp) {
        let http_only = [&keys.path, &keys.host, &keys.expect];
        return reject(ctx, &http_only, "only used with kind = \"http\"").then_some(HealthKind::Tcp);
    }
    let path = decode_or(ctx, keys.path.as_ref(), PATH.to_owned(), path);
    let host = decode_or(ctx, keys.host.as_ref(), None, |ctx, f| host(ctx, f).map(Some));
    let expect = decode_or(ctx, keys.expect.as_ref(), EXPECT, expect);
    let (path, host, expect) = (path?, host?, expect?);
    kind.map(|_| HealthKind::Http { path, host, expect })
}

/// Whether `c` may appear in a request target or `Host` header as written: visible ASCII.
/// Anything else would have to be percent-encoded, and guessing how is worse than asking.
fn visible(c: char) -> bool {
    c.is_ascii_graphic()
}

/// Decodes `path`: the request target of the check.
fn path(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<String> {
    let path = field.str(ctx)?;
    if !path.starts_with('/') {
        return field.invalid(ctx, "path must start with \"/\"");
    }
    if !path.chars().all(visible) {
        return field
            .invalid(ctx, "path must be visible ASCII characters (no spaces; percent-encode others)");
    }
    Some(path.to_owned())
}

/// Decodes `host`: the `Host` header the check sends.
fn host(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<String> {
    let host = field.str(ctx)?;
    if host.is_empty() {
        return field.invalid(ctx, "host must not be empty");
    }
    if !host.chars().all(visible) {
        return field.invalid(ctx, "host must be visible ASCII characters (no spaces)");
    }
    Some(host.to_owned())
}

/// Decodes `expect`: `"NNN"` or `"NNN-NNN"`.
fn expect(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<RangeInclusive<u16>> {
    let text = field.str(ctx)?;
    field.check(ctx, parse_expect(text).map_err(ErrorKind::Invalid))
}

/// Parses a status code or an inclusive range of them.
fn parse_expect(text: &str) -> Result<RangeInclusive<u16>, String> {
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    let (low, high) = (parse_status(text, low)?, parse_status(text, high)?);
    if low > high {
        return Err(format!("status range {text:?} is empty: {low} is more than {high}"));
    }
    Ok(low..=high)
}

/// Parses one three-digit status code of `whole`.
fn parse_status(whole: &str, code: &str) -> Result<u16, String> {
    let form = || {
        format!("invalid status range {whole:?}: expected a code like \"200\" or a range like \"200-399\"")
    };
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(form());
    }
    let code: u16 = code.parse().map_err(|_| form())?;
    if !STATUS_CODES.contains(&code) {
        return Err(format!("status {code} is out of range (100..=599)"));
    }
    Ok(code)
}

/// Decodes `interval`, `timeout`, `fall` and `rise`.
fn decode_timing(ctx: &mut Ctx<'_>, keys: &TimingKeys) -> Option<(Duration, Duration, u32, u32)> {
    let periods = periods(ctx, keys.interval.as_ref(), keys.timeout.as_ref());
    let fall = decode_or(ctx, keys.fall.as_ref(), FALL, |ctx, f| f.int(ctx, 1, MAX_STREAK));
    let rise = decode_or(ctx, keys.rise.as_ref(), RISE, |ctx, f| f.int(ctx, 1, MAX_STREAK));
    let ((interval, timeout), fall, rise) = (periods?, fall?, rise?);
    Some((interval, timeout, fall, rise))
}

/// Decodes `interval` and `timeout`, which must not exceed it: a check still running when
/// the next one is due would pile checks up on a slow server.
fn periods(
    ctx: &mut Ctx<'_>,
    interval: Option<&Field<'_, '_>>,
    timeout: Option<&Field<'_, '_>>,
) -> Option<(Duration, Duration)> {
    let interval_value = decode_or(ctx, interval, INTERVAL, positive_duration);
    let timeout_value = decode_or(ctx, timeout, TIMEOUT, positive_duration);
    let (interval_value, timeout_value) = (interval_value?, timeout_value?);
    let low = Timed { name: "timeout", field: timeout, value: timeout_value };
    let high = Timed { name: "interval", field: interval, value: interval_value };
    check_order(ctx, &low, &high, true)?;
    Some((interval_value, timeout_value))
}
