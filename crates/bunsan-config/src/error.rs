//! Config errors: each names the file, line, column and key it is about.

use std::fmt;
use std::path::PathBuf;

/// Everything wrong with one config file. Validation does not stop at the first error,
/// so an operator can fix them all in one pass.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors {
    /// The file the errors are about (as given; used only in messages).
    pub origin: PathBuf,
    /// At least one error, in file order (line, then column); errors about the whole file
    /// (empty `key`, such as a missing `[[listener]]`) come after those.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    /// One error per line: `FILE:LINE:COL: KEY: MESSAGE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{e}", self.origin.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// One problem at one place in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// 1-based line of the offending key or value.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// The key's path, e.g. `pool[0].server[1].addr` or `listener[web].pool`; empty for
    /// whole-file problems.
    pub key: String,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for ConfigError {
    /// `LINE:COL: KEY: MESSAGE` (the key part is left out when empty).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        write!(f, "{}", self.kind)
    }
}

/// The kinds of config error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file is not valid TOML.
    #[error("TOML syntax error: {0}")]
    Syntax(String),
    /// A key bunsan does not know at this place.
    #[error("unknown key (valid here: {valid})")]
    UnknownKey {
        /// The keys allowed in this table, comma-separated.
        valid: String,
    },
    /// A required key is absent.
    #[error("missing required key")]
    Missing,
    /// A value of the wrong TOML type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the key takes.
        expected: &'static str,
        /// What the file has.
        found: &'static str,
    },
    /// A duration that does not parse.
    #[error("invalid duration {0:?}: expected a number with a unit, like \"250ms\", \"5s\", \"2m\", \"1h\" or \"1m30s\"")]
    InvalidDuration(String),
    /// A size that does not parse (see [`crate::size`]).
    #[error("invalid size {value:?}: {reason} (expected an integer and a unit, like \"64KiB\"; units: {units})", units = crate::size::UNIT_NAMES)]
    InvalidSize {
        /// The size as written.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// An address that does not parse or resolve.
    #[error("invalid address {value:?}: {reason}")]
    InvalidAddress {
        /// The address as written.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A name that is not one of a fixed set (algorithm, protocol, state, …).
    #[error("unknown {what} {value:?} (valid: {valid})")]
    UnknownName {
        /// What kind of name it is.
        what: &'static str,
        /// The value as written.
        value: String,
        /// The valid names, comma-separated.
        valid: String,
    },
    /// A reference to a pool that does not exist.
    #[error("no pool named {name:?} (pools: {known})")]
    UnknownPool {
        /// The pool name as written.
        name: String,
        /// The pools the file defines, comma-separated, or `none`.
        known: String,
    },
    /// A name or address used twice where it must be unique.
    #[error("duplicate {what} {value:?} (first at line {first_line})")]
    Duplicate {
        /// What is duplicated (listener name, pool name, server name, listen address).
        what: &'static str,
        /// The duplicated value.
        value: String,
        /// Where it first appeared.
        first_line: usize,
    },
    /// A number outside its allowed range.
    #[error("{value} is out of range ({min}..={max})")]
    OutOfRange {
        /// The value as written.
        value: String,
        /// The smallest allowed value.
        min: i64,
        /// The largest allowed value.
        max: i64,
    },
    /// Any other rule, stated in words.
    #[error("{0}")]
    Invalid(String),
}

/// Why a config file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but is not a valid config.
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
}
