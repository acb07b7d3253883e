//! A listener's `limits = { … }`: what one client connection may cost the node.

use super::ctx::Ctx;
use super::reader::{positive_duration, Field};
use crate::model::ListenerLimits;

/// hyper needs room for at least one read of 8 KiB in its head buffer.
const MIN_HEAD_BYTES: u64 = 8 * 1024;
/// A request or response head larger than this is not one anyone means to send.
const MAX_HEAD_BYTES: u64 = 16 << 20;

/// Decodes `limits`; every key is optional and defaults to [`ListenerLimits::default`].
pub(crate) fn decode(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<ListenerLimits> {
    let d = ListenerLimits::default();
    let mut table = field.table(ctx)?;
    let max = table.get_or(ctx, "max_connections", d.max_connections, |ctx, f| f.int(ctx, 1, 10_000_000));
    let per_client = d.max_connections_per_client;
    let per_client =
        table.get_or(ctx, "max_connections_per_client", per_client, |ctx, f| f.int(ctx, 0, 10_000_000));
    let head_timeout = table.get_or(ctx, "head_timeout", d.head_timeout, positive_duration);
    let idle_timeout = table.get_or(ctx, "idle_timeout", d.idle_timeout, positive_duration);
    let header_bytes = table.get_or(ctx, "header_bytes", d.header_bytes, head_bytes);
    let header_count = table.get_or(ctx, "header_count", d.header_count, |ctx, f| f.int(ctx, 1, 10_000));
    let uri_bytes = table.get_or(ctx, "uri_bytes", d.uri_bytes, |ctx, f| f.size(ctx, MAX_HEAD_BYTES));
    let streams = table.get_or(ctx, "h2_max_streams", d.h2_max_streams, |ctx, f| f.int(ctx, 1, 65_535));
    table.finish(ctx);
    Some(ListenerLimits {
        max_connections: max?,
        max_connections_per_client: per_client?,
        head_timeout: head_timeout?,
        idle_timeout: idle_timeout?,
        header_bytes: header_bytes?,
        header_count: header_count?,
        uri_bytes: uri_bytes?,
        h2_max_streams: streams?,
    })
}

/// A head size limit: 8 KiB to 16 MiB.
pub(crate) fn head_bytes(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<u64> {
    let bytes = field.size(ctx, MAX_HEAD_BYTES)?;
    if bytes < MIN_HEAD_BYTES {
        return field.invalid(ctx, "must be at least 8KiB");
    }
    Some(bytes)
}
