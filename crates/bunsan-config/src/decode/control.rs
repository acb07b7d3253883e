//! `[control]`: the state manager a node subscribes to (seed 001).

use std::time::Duration;

use super::ctx::Ctx;
use super::reader::Field;
use super::values::check_name;
use crate::error::ErrorKind;
use crate::model::{ControlConfig, ControlDelivery, Secret};

/// Default `interval`.
const INTERVAL: Duration = Duration::from_secs(1);
/// Default `stale_after`.
const STALE_AFTER: Duration = Duration::from_secs(10);

/// Decodes `[control]`.
pub(crate) fn decode(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<ControlConfig> {
    let mut table = field.table(ctx)?;
    let urls = table.need(ctx, "url", urls);
    let token = table.get(ctx, "token", token);
    let delivery = table.get_or(ctx, "delivery", ControlDelivery::Change, delivery);
    let interval = table.get_or(ctx, "interval", INTERVAL, super::reader::positive_duration);
    let stale_after = table.get_or(ctx, "stale_after", STALE_AFTER, super::reader::positive_duration);
    let assign = table.get_or(ctx, "assign", false, |ctx, f| f.bool(ctx));
    let name = table.get(ctx, "name", |ctx, f| {
        let text = f.str(ctx)?;
        f.check(ctx, check_name(text).map_err(ErrorKind::Invalid)).map(|()| text.to_owned())
    });
    table.finish(ctx);
    Some(ControlConfig {
        urls: urls?,
        token: token?,
        delivery: delivery?,
        interval: interval?,
        stale_after: stale_after?,
        assign: assign?,
        name: name?,
    })
}

/// `url`: a string or a non-empty array of strings, each `http://HOST:PORT`.
fn urls(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<Vec<String>> {
    if field.value.as_str().is_some() {
        return url(ctx, field).map(|u| vec![u]);
    }
    let items = field.items(ctx)?;
    if items.is_empty() {
        return field.invalid(ctx, "at least one URL is needed");
    }
    let parsed: Vec<Option<String>> = items.iter().map(|item| url(ctx, item)).collect();
    parsed.into_iter().collect()
}

/// One `http://HOST:PORT` (a trailing `/` is dropped).
fn url(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<String> {
    let text = field.str(ctx)?;
    let Some(rest) = text.strip_prefix("http://") else {
        return field
            .invalid(ctx, format!("{text:?} is not an http:// URL (like \"http://127.0.0.1:9800\")"));
    };
    let authority = rest.trim_end_matches('/');
    let valid = !authority.is_empty()
        && !authority.contains('/')
        && authority
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !valid {
        return field.invalid(ctx, format!("{text:?} must be http://HOST:PORT, without a path"));
    }
    Some(format!("http://{authority}"))
}

/// `token`: sent as a bearer token, so visible ASCII; never quoted in errors.
fn token(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<Secret> {
    let text = field.str(ctx)?;
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_graphic()) {
        return field.invalid(ctx, "token must be visible ASCII characters (no spaces)");
    }
    Some(Secret::new(text))
}

/// `delivery`.
fn delivery(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<ControlDelivery> {
    match field.str(ctx)? {
        "change" => Some(ControlDelivery::Change),
        "periodic" => Some(ControlDelivery::Periodic),
        "pull" => Some(ControlDelivery::Pull),
        other => field.check(
            ctx,
            Err(ErrorKind::UnknownName {
                what: "delivery",
                value: other.to_owned(),
                valid: "change, periodic, pull".to_owned(),
            }),
        ),
    }
}
