//! A pool's `retry = { attempts, buffer, budget_percent, min_retries_per_second }`: when and
//! how often a failed request is tried on another server.

use super::ctx::Ctx;
use super::reader::Field;
use crate::model::RetryConfig;

/// The largest `buffer`: memory held per request in flight, so a limit keeps a burst of
/// large uploads from exhausting the node.
const MAX_BUFFER: u64 = 64 << 20;

/// Decodes `retry`.
pub(crate) fn decode(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<RetryConfig> {
    let default = RetryConfig::default();
    let mut table = field.table(ctx)?;
    let attempts = table.get_or(ctx, "attempts", default.attempts, |ctx, f| f.int(ctx, 1, 10));
    let buffer = table.get_or(ctx, "buffer", default.buffer, |ctx, f| f.size(ctx, MAX_BUFFER));
    let budget = table.get_or(ctx, "budget_percent", default.budget_percent, |ctx, f| f.int(ctx, 0, 100));
    let per_second = default.min_retries_per_second;
    let per_second = table.get_or(ctx, "min_retries_per_second", per_second, |ctx, f| f.int(ctx, 0, 100_000));
    table.finish(ctx);
    Some(RetryConfig {
        attempts: attempts?,
        buffer: buffer?,
        budget_percent: budget?,
        min_retries_per_second: per_second?,
    })
}
