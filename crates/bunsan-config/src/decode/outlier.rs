//! A pool's `outlier = { consecutive_failures, base_ejection, max_ejection,
//! max_ejected_percent }`: passive failure detection from real traffic.

use std::time::Duration;

use super::ctx::Ctx;
use super::reader::{decode_or, positive_duration, Field};
use super::{check_order, Timed};
use crate::model::OutlierConfig;

/// Decodes `outlier`; `Some(None)` for `consecutive_failures = 0`. The other keys are
/// still checked then, so detection can be switched off and on again by one number.
pub(crate) fn decode(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<Option<OutlierConfig>> {
    let default = OutlierConfig::default();
    let mut table = field.table(ctx)?;
    let failures =
        table.get_or(ctx, "consecutive_failures", default.consecutive_failures, |ctx, f| f.int(ctx, 0, 1000));
    let base = table.optional("base_ejection");
    let max = table.optional("max_ejection");
    let percent =
        table.get_or(ctx, "max_ejected_percent", default.max_ejected_percent, |ctx, f| f.int(ctx, 1, 100));
    table.finish(ctx);
    let ejections = ejection_times(ctx, base.as_ref(), max.as_ref());
    let ((base_ejection, max_ejection), failures, percent) = (ejections?, failures?, percent?);
    let config = OutlierConfig {
        consecutive_failures: failures,
        base_ejection,
        max_ejection,
        max_ejected_percent: percent,
    };
    Some((failures > 0).then_some(config))
}

/// Decodes `base_ejection` and `max_ejection`, which must be in order: ejections start at
/// the base and double up to the maximum.
fn ejection_times(
    ctx: &mut Ctx<'_>,
    base: Option<&Field<'_, '_>>,
    max: Option<&Field<'_, '_>>,
) -> Option<(Duration, Duration)> {
    let default = OutlierConfig::default();
    let base_value = decode_or(ctx, base, default.base_ejection, positive_duration);
    let max_value = decode_or(ctx, max, default.max_ejection, positive_duration);
    let (base_value, max_value) = (base_value?, max_value?);
    let low = Timed { name: "base_ejection", field: base, value: base_value };
    let high = Timed { name: "max_ejection", field: max, value: max_value };
    check_order(ctx, &low, &high, false)?;
    Some((base_value, max_value))
}
