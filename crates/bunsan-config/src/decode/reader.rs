//! A reader over one TOML table that remembers which keys were asked for, so every key
//! nobody asked for can be reported as unknown, with the list of keys that are valid there.

use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::ctx::{Ctx, Span};
use crate::duration::parse_duration;
use crate::error::ErrorKind;
use crate::size::{format_size, parse_size};

/// One value in the file with its span and the dotted path errors about it use.
pub(crate) struct Field<'a, 'i> {
    /// Path for errors, e.g. `pool[app].connect_timeout`.
    pub(crate) key: String,
    /// Where the value is.
    pub(crate) span: Span,
    /// The value.
    pub(crate) value: &'a DeValue<'i>,
}

impl<'a, 'i> Field<'a, 'i> {
    /// Reports `kind` at this value.
    pub(crate) fn error(&self, ctx: &mut Ctx<'_>, kind: ErrorKind) {
        ctx.report(&self.span, &self.key, kind);
    }

    /// `result`'s value, or `None` after reporting its error at this value.
    pub(crate) fn check<T>(&self, ctx: &mut Ctx<'_>, result: Result<T, ErrorKind>) -> Option<T> {
        result.map_err(|kind| self.error(ctx, kind)).ok()
    }

    /// Reports [`ErrorKind::Invalid`] with `why` at this value; always `None`.
    pub(crate) fn invalid<T>(&self, ctx: &mut Ctx<'_>, why: impl Into<String>) -> Option<T> {
        self.error(ctx, ErrorKind::Invalid(why.into()));
        None
    }

    /// Reports that this value is not the `expected` type; always `None`.
    fn wrong_type<T>(&self, ctx: &mut Ctx<'_>, expected: &'static str) -> Option<T> {
        let found = self.value.type_str();
        self.error(ctx, ErrorKind::WrongType { expected, found });
        None
    }

    /// The value as a string.
    pub(crate) fn str(&self, ctx: &mut Ctx<'_>) -> Option<&'a str> {
        let value: &'a DeValue<'i> = self.value;
        value.as_str().or_else(|| self.wrong_type(ctx, "string"))
    }

    /// The value as an integer in `min..=max` (which must fit in `T`).
    pub(crate) fn int<T: TryFrom<i64>>(&self, ctx: &mut Ctx<'_>, min: i64, max: i64) -> Option<T> {
        let Some(int) = self.value.as_integer() else {
            return self.wrong_type(ctx, "integer");
        };
        let in_range = i64::from_str_radix(int.as_str(), int.radix())
            .ok()
            .filter(|n| (min..=max).contains(n))
            .and_then(|n| T::try_from(n).ok());
        // As written, so "0x2711" is not shown as "10001".
        let value = ctx.text(&self.span).to_owned();
        self.check(ctx, in_range.ok_or(ErrorKind::OutOfRange { value, min, max }))
    }

    /// The value as a duration string such as `"5s"`.
    pub(crate) fn duration(&self, ctx: &mut Ctx<'_>) -> Option<Duration> {
        let Some(text) = self.value.as_str() else {
            return self.wrong_type(ctx, "duration string like \"5s\"");
        };
        let parsed = parse_duration(text).map_err(|_| ErrorKind::InvalidDuration(text.to_owned()));
        self.check(ctx, parsed)
    }

    /// The value as a size of at most `max` bytes: an integer (bytes) or a string such as
    /// `"64KiB"`.
    pub(crate) fn size(&self, ctx: &mut Ctx<'_>, max: u64) -> Option<u64> {
        let bytes = if let Some(int) = self.value.as_integer() {
            // Negative or beyond i64: out of range, reported below like any other.
            i64::from_str_radix(int.as_str(), int.radix()).ok().and_then(|n| u64::try_from(n).ok())
        } else if let Some(text) = self.value.as_str() {
            let parsed = parse_size(text)
                .map_err(|e| ErrorKind::InvalidSize { value: text.to_owned(), reason: e.to_string() });
            Some(self.check(ctx, parsed)?)
        } else {
            return self.wrong_type(ctx, "size (an integer number of bytes or a string like \"64KiB\")");
        };
        match bytes.filter(|&b| b <= max) {
            Some(bytes) => Some(bytes),
            // In units, as written: "1TiB is out of range (0..=67108864)" would make the
            // reader do the arithmetic.
            None => {
                let value = ctx.text(&self.span).to_owned();
                self.invalid(ctx, format!("{value} is out of range (0B..={})", format_size(max)))
            }
        }
    }

    /// The value as a boolean.
    pub(crate) fn bool(&self, ctx: &mut Ctx<'_>) -> Option<bool> {
        self.value.as_bool().or_else(|| self.wrong_type(ctx, "boolean"))
    }

    /// The value as an array, each item a field with the path `key[INDEX]`.
    pub(crate) fn items(&self, ctx: &mut Ctx<'_>) -> Option<Vec<Field<'a, 'i>>> {
        let value: &'a DeValue<'i> = self.value;
        let Some(items) = value.as_array() else {
            return self.wrong_type(ctx, "array");
        };
        let field = |(index, item): (usize, &'a toml::Spanned<DeValue<'i>>)| Field {
            key: format!("{}[{index}]", self.key),
            span: item.span(),
            value: item.get_ref(),
        };
        Some(items.iter().enumerate().map(field).collect())
    }

    /// The value as a table, read with this field's path.
    pub(crate) fn table(&self, ctx: &mut Ctx<'_>) -> Option<Reader<'a, 'i>> {
        let value: &'a DeValue<'i> = self.value;
        let Some(table) = value.as_table() else {
            return self.wrong_type(ctx, "table");
        };
        Some(Reader::new(table, self.span.clone(), self.key.clone()))
    }

    /// The value as an array of tables (`[[key]]`), each read with the path `key[INDEX]`.
    pub(crate) fn tables(&self, ctx: &mut Ctx<'_>) -> Tables<'a, 'i> {
        let mut tables = Tables { readers: Vec::new(), complete: false };
        let value: &'a DeValue<'i> = self.value;
        let Some(items) = value.as_array() else {
            self.wrong_type::<()>(ctx, "array of tables");
            return tables;
        };
        tables.complete = true;
        for (index, item) in items.iter().enumerate() {
            let key = format!("{}[{index}]", self.key);
            let field = Field { key, span: item.span(), value: item.get_ref() };
            match field.table(ctx) {
                Some(reader) => tables.readers.push(reader),
                None => tables.complete = false,
            }
        }
        tables
    }
}

/// Decodes a duration that must be more than zero: a zero timeout would fail every
/// attempt, and a zero interval or ejection would spin. Shaped to pass to [`Reader::get_or`].
pub(crate) fn positive_duration(ctx: &mut Ctx<'_>, field: &Field<'_, '_>) -> Option<Duration> {
    let duration = field.duration(ctx)?;
    if duration.is_zero() {
        return field.invalid(ctx, "must be more than zero");
    }
    Some(duration)
}

/// Decodes `field` with `decode` when it was written, else gives `default`; `None` when
/// invalid. For keys read with [`Reader::optional`] and decoded later, once the keys they
/// depend on are known.
pub(crate) fn decode_or<'a, 'i, T>(
    ctx: &mut Ctx<'_>,
    field: Option<&Field<'a, 'i>>,
    default: T,
    decode: impl FnOnce(&mut Ctx<'_>, &Field<'a, 'i>) -> Option<T>,
) -> Option<T> {
    match field {
        Some(field) => decode(ctx, field),
        None => Some(default),
    }
}

/// The tables of an array of tables.
pub(crate) struct Tables<'a, 'i> {
    /// A reader for each element that is a table, in file order.
    pub(crate) readers: Vec<Reader<'a, 'i>>,
    /// False when the value or one of its elements was not a table (already reported).
    pub(crate) complete: bool,
}

impl<'a, 'i> Tables<'a, 'i> {
    /// Decodes every table with `decode`; `None` if any of them (or the array) was invalid.
    /// Every table is decoded even after a failure, so all errors are reported.
    pub(crate) fn decode_all<T>(self, mut decode: impl FnMut(Reader<'a, 'i>) -> Option<T>) -> Option<Vec<T>> {
        let decoded: Vec<Option<T>> = self.readers.into_iter().map(&mut decode).collect();
        let all: Option<Vec<T>> = decoded.into_iter().collect();
        all.filter(|_| self.complete)
    }
}

/// Reads the keys of one table and reports, when finished, the keys that were never read.
pub(crate) struct Reader<'a, 'i> {
    table: &'a DeTable<'i>,
    span: Span,
    path: String,
    /// Every key asked for, in order: the valid keys of this table.
    asked: Vec<&'static str>,
}

impl<'a, 'i> Reader<'a, 'i> {
    /// A reader for `table`, which starts at `span`; `path` prefixes its keys in errors.
    pub(crate) fn new(table: &'a DeTable<'i>, span: Span, path: String) -> Self {
        Self { table, span, path, asked: Vec::new() }
    }

    /// Renames the table once its `name` is known, so errors say `pool[app]`, not `pool[0]`.
    pub(crate) fn set_path(&mut self, path: String) {
        self.path = path;
    }

    /// The path of `key` in this table.
    pub(crate) fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value of `key`, if present.
    pub(crate) fn optional(&mut self, key: &'static str) -> Option<Field<'a, 'i>> {
        self.asked.push(key);
        let value = self.table.get(key)?;
        Some(Field { key: self.key_path(key), span: value.span(), value: value.get_ref() })
    }

    /// The value of `key`, reported as missing (at the start of the table) when absent.
    pub(crate) fn required(&mut self, ctx: &mut Ctx<'_>, key: &'static str) -> Option<Field<'a, 'i>> {
        let field = self.optional(key);
        if field.is_none() {
            ctx.report(&self.span, &self.key_path(key), ErrorKind::Missing);
        }
        field
    }

    /// Decodes optional `key` with `decode`: `Some(None)` when absent, `None` when present
    /// but invalid (the decoder reported why).
    pub(crate) fn get<T>(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &'static str,
        decode: impl FnOnce(&mut Ctx<'_>, &Field<'a, 'i>) -> Option<T>,
    ) -> Option<Option<T>> {
        match self.optional(key) {
            None => Some(None),
            Some(field) => decode(ctx, &field).map(Some),
        }
    }

    /// Decodes optional `key` with `decode`, `default` when absent; `None` when invalid.
    pub(crate) fn get_or<T>(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &'static str,
        default: T,
        decode: impl FnOnce(&mut Ctx<'_>, &Field<'a, 'i>) -> Option<T>,
    ) -> Option<T> {
        self.get(ctx, key, decode).map(|value| value.unwrap_or(default))
    }

    /// Decodes required `key` with `decode`; `None` when absent or invalid.
    pub(crate) fn need<T>(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &'static str,
        decode: impl FnOnce(&mut Ctx<'_>, &Field<'a, 'i>) -> Option<T>,
    ) -> Option<T> {
        let field = self.required(ctx, key)?;
        decode(ctx, &field)
    }

    /// Reports every key that was never asked for.
    pub(crate) fn finish(self, ctx: &mut Ctx<'_>) {
        let unknown = self.table.iter().filter(|(key, _)| !self.asked.iter().any(|k| *k == *key.get_ref()));
        for (key, _) in unknown {
            let valid = self.asked.join(", ");
            ctx.report(&key.span(), &self.key_path(key.get_ref()), ErrorKind::UnknownKey { valid });
        }
    }
}
