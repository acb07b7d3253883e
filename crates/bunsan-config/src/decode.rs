//! Decoding: walks the span-preserving TOML tree, builds a [`Config`] and collects every
//! error with its position instead of stopping at the first.
//!
//! Each decoder returns `Option<T>`: `None` means it reported at least one error. Decoders
//! keep going after a failure (every field of a table, every table of an array) so that one
//! run shows everything that is wrong.

mod affinity;
mod control;
mod ctx;
mod health;
mod limits;
mod listener;
mod node;
mod outlier;
mod pool;
mod reader;
mod retry;
mod upstream;
mod values;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use toml::de::DeTable;

use crate::duration::format_duration;
use crate::error::{ConfigError, ConfigErrors, ErrorKind};
use crate::model::{Config, NodeSettings};
use ctx::{Ctx, Span};
use reader::{Field, Reader};

/// Parses `source` (read from `origin`) into a validated config.
pub(crate) fn decode(source: &str, origin: &Path) -> Result<Config, ConfigErrors> {
    let root = match DeTable::parse(source) {
        Ok(root) => root,
        Err(err) => return Err(syntax_error(source, origin, &err)),
    };
    let mut ctx = Ctx::new(source, origin);
    let config = decode_root(&mut ctx, root.get_ref());
    ctx.finish(origin, config)
}

/// A TOML syntax error: the tree is unusable, so it is the only error reported.
fn syntax_error(source: &str, origin: &Path, err: &toml::de::Error) -> ConfigErrors {
    let offset = err.span().map_or(0, |span| span.start);
    let (line, column) = Ctx::new(source, origin).position(offset);
    let kind = ErrorKind::Syntax(err.message().to_owned());
    let error = ConfigError { line, column, key: String::new(), kind };
    ConfigErrors { origin: origin.to_owned(), errors: vec![error] }
}

/// Decodes the top-level table.
fn decode_root(ctx: &mut Ctx<'_>, table: &DeTable<'_>) -> Option<Config> {
    let mut root = Reader::new(table, 0..0, String::new());
    let mut listens = Vec::new();
    let node = root.get_or(ctx, "node", NodeSettings::default(), node::decode_node);
    let node = node.map(|n| node::anchor_key_file(n, ctx.base_dir()));
    let admin = root.get(ctx, "admin", |ctx, field| node::decode_admin(ctx, field, &mut listens));
    let listener_field = root.optional("listener");
    // Pools are decoded first so listeners can check the pool they name.
    let pools = pool::decode_pools(ctx, root.optional("pool"));
    let listeners = listener::decode_listeners(ctx, listener_field, &pools, &mut listens);
    let control = root.get(ctx, "control", control::decode);
    root.finish(ctx);
    check_listen_conflicts(ctx, listens);
    Some(Config {
        node: node?,
        admin: admin?,
        listeners: listeners?,
        pools: pools.configs?,
        control: control?,
    })
}

/// A listen address with where it was written, for finding two sockets on one address.
pub(crate) struct ListenAt {
    addr: SocketAddr,
    span: Span,
    key: String,
}

/// Reports every listen address (listeners and admin) used a second time. Port 0 is
/// exempt: each such socket gets its own free port.
fn check_listen_conflicts(ctx: &mut Ctx<'_>, mut listens: Vec<ListenAt>) {
    // In file order, so the later one is reported, whichever table it is in.
    listens.sort_by_key(|at| at.span.start);
    let mut seen = Unique::new("listen address");
    for at in listens.iter().filter(|at| at.addr.port() != 0) {
        seen.check(ctx, &at.addr.to_string(), &at.span, &at.key);
    }
}

/// Values that must be unique (names, addresses), with the line each was first seen on.
pub(crate) struct Unique {
    what: &'static str,
    first_line: HashMap<String, usize>,
    /// Distinct values in the order first seen.
    order: Vec<String>,
}

impl Unique {
    /// A set of values of kind `what` (used in the error, e.g. "pool name").
    pub(crate) fn new(what: &'static str) -> Self {
        Self { what, first_line: HashMap::new(), order: Vec::new() }
    }

    /// Adds `value`, or reports it as a duplicate if it was seen before.
    pub(crate) fn check(&mut self, ctx: &mut Ctx<'_>, value: &str, span: &Span, key: &str) {
        if let Some(&first_line) = self.first_line.get(value) {
            let kind = ErrorKind::Duplicate { what: self.what, value: value.to_owned(), first_line };
            ctx.report(span, key, kind);
            return;
        }
        self.first_line.insert(value.to_owned(), ctx.line(span.start));
        self.order.push(value.to_owned());
    }

    /// The distinct values, in file order.
    pub(crate) fn into_values(self) -> Vec<String> {
        self.order
    }
}

/// Reads the required `name` of a listener, pool or server and, when it is valid, renames
/// the table to `PREFIX[NAME]` so later errors name it rather than give its index.
pub(crate) fn read_name(
    ctx: &mut Ctx<'_>,
    table: &mut Reader<'_, '_>,
    seen: &mut Unique,
    prefix: &str,
) -> Option<String> {
    let field = table.required(ctx, "name")?;
    let name = field.str(ctx)?;
    if let Err(reason) = values::check_name(name) {
        return field.invalid(ctx, reason);
    }
    table.set_path(format!("{prefix}[{name}]"));
    seen.check(ctx, name, &field.span, &table.key_path("name"));
    Some(name.to_owned())
}

/// A duration key after decoding: its name, its field if it was written, and its value
/// (the default if it was not).
pub(crate) struct Timed<'f, 'a, 'i> {
    pub(crate) name: &'static str,
    pub(crate) field: Option<&'f Field<'a, 'i>>,
    pub(crate) value: Duration,
}

impl Timed<'_, '_, '_> {
    /// The value for a message, marked when it is the default the reader never wrote.
    fn describe(&self) -> String {
        let value = format_duration(self.value);
        if self.field.is_some() {
            value
        } else {
            format!("{value}, the default")
        }
    }
}

/// Checks that `low <= high`. `blame_low` says which key the rule belongs to (`timeout`
/// is limited by `interval`, `max_ejection` by `base_ejection`); the error goes there when
/// that key was written, else to the other one, which then must have been.
pub(crate) fn check_order(ctx: &mut Ctx<'_>, low: &Timed, high: &Timed, blame_low: bool) -> Option<()> {
    if low.value <= high.value {
        return Some(());
    }
    let blame_low = if blame_low { low.field.is_some() } else { high.field.is_none() };
    let (at, other, relation) = if blame_low { (low, high, "more") } else { (high, low, "less") };
    let why = format!("must not be {relation} than {} ({})", other.name, other.describe());
    // Both absent cannot happen (the defaults are in order); then nothing is reported and
    // the config is still rejected, as a bug.
    at.field?.invalid(ctx, why)
}
