//! The decoding context: maps byte spans to lines and columns and collects the errors.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::{ConfigError, ConfigErrors, ErrorKind};

/// A byte range in the source text, as the TOML parser reports it.
pub(crate) type Span = Range<usize>;

/// State shared by every decoder: the source (for positions and text as written), the
/// directory relative paths are resolved against, and the errors found so far.
pub(crate) struct Ctx<'s> {
    source: &'s str,
    /// Byte offset of the first character of each line; always starts with 0.
    line_starts: Vec<usize>,
    base_dir: PathBuf,
    errors: Vec<ConfigError>,
}

impl<'s> Ctx<'s> {
    /// A context for `source`, read from the file `origin`.
    pub(crate) fn new(source: &'s str, origin: &Path) -> Self {
        let line_starts = std::iter::once(0).chain(source.match_indices('\n').map(|(i, _)| i + 1)).collect();
        let base_dir = origin.parent().map(Path::to_path_buf).unwrap_or_default();
        Self { source, line_starts, base_dir, errors: Vec::new() }
    }

    /// The directory of the config file, for resolving relative paths.
    pub(crate) fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// The source text of `span` as written (empty if the span is not in the source).
    pub(crate) fn text(&self, span: &Span) -> &'s str {
        self.source.get(span.clone()).unwrap_or_default()
    }

    /// The 1-based line of byte `offset`.
    pub(crate) fn line(&self, offset: usize) -> usize {
        // line_starts[0] == 0 <= offset, so this is at least 1.
        self.line_starts.partition_point(|&start| start <= offset)
    }

    /// The 1-based line and column (in characters) of byte `offset`.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let line = self.line(offset);
        let start = self.line_starts.get(line.saturating_sub(1)).copied().unwrap_or(0);
        let rest = self.source.get(start..).unwrap_or_default();
        let column = rest.char_indices().take_while(|(i, _)| start + i < offset).count();
        (line, column + 1)
    }

    /// Records an error at the start of `span`.
    pub(crate) fn report(&mut self, span: &Span, key: &str, kind: ErrorKind) {
        let (line, column) = self.position(span.start);
        self.errors.push(ConfigError { line, column, key: key.to_owned(), kind });
    }

    /// The decoded value if nothing was reported, else every error in file order.
    pub(crate) fn finish<T>(mut self, origin: &Path, value: Option<T>) -> Result<T, ConfigErrors> {
        match value {
            Some(value) if self.errors.is_empty() => return Ok(value),
            // A decoder gave up without saying why: a bug, but still better reported than
            // passed off as a valid config.
            None if self.errors.is_empty() => {
                let why = "config rejected without a reason (this is a bug in bunsan)";
                self.report(&(0..0), "", ErrorKind::Invalid(why.to_owned()));
            }
            _ => {}
        }
        // File order; whole-file problems (no key, e.g. "no listener", pinned at 1:1) go
        // last, after the errors that point at a specific place.
        self.errors.sort_by_key(|e| (e.key.is_empty(), e.line, e.column));
        Err(ConfigErrors { origin: origin.to_owned(), errors: self.errors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters_from_one() {
        let ctx = Ctx::new("ab\nçé = 1\n\nx", Path::new("f.toml"));
        assert_eq!(ctx.position(0), (1, 1));
        assert_eq!(ctx.position(2), (1, 3));
        assert_eq!(ctx.position(3), (2, 1));
        // "çé" is four bytes but two characters.
        assert_eq!(ctx.position(8), (2, 4));
        assert_eq!(ctx.position(12), (3, 1));
        assert_eq!(ctx.position(13), (4, 1));
        // Past the end: after the last character.
        assert_eq!(ctx.position(1000), (4, 2));
    }

    #[test]
    fn base_dir_is_the_origin_directory() {
        assert_eq!(Ctx::new("", Path::new("/etc/bunsan/b.toml")).base_dir(), Path::new("/etc/bunsan"));
        assert_eq!(Ctx::new("", Path::new("b.toml")).base_dir(), Path::new(""));
    }
}
