//! Sizes as written in config: an integer and a unit, like `"64KiB"`, `"512B"` or `"10MB"`.
//!
//! Binary units (`KiB`, `MiB`, `GiB`, `TiB`) count in 1024s, decimal ones (`kB` or `KB`,
//! `MB`, `GB`, `TB`) in 1000s, and `B` is bytes. There are no signs, spaces or fractions,
//! and units are case-sensitive (`mb` could be millibits, `Mb` megabits), so every string
//! has one meaning. Config keys that take a size also accept a TOML integer: bytes.

use std::fmt;

/// Why a size string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeError {
    /// The string is empty.
    Empty,
    /// The string contains a space (or other whitespace), as in `"64 KiB"`.
    Space,
    /// The string starts with `-`.
    Negative,
    /// The string does not start with a digit (a `+`, or a unit alone).
    NotANumber,
    /// The number has a fractional part, as in `"1.5MiB"`.
    Fraction,
    /// A number with no unit after it.
    MissingUnit,
    /// A unit that is not one of [`UNIT_NAMES`].
    UnknownUnit(String),
    /// The size is more than `u64::MAX` bytes.
    Overflow,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty size"),
            Self::Space => f.write_str("spaces are not allowed"),
            Self::Negative => f.write_str("sizes cannot be negative"),
            Self::NotANumber => f.write_str("expected a whole number first"),
            Self::Fraction => f.write_str("fractions are not allowed; use a smaller unit"),
            Self::MissingUnit => f.write_str("missing unit"),
            Self::UnknownUnit(unit) => write!(f, "unknown unit {unit:?}"),
            Self::Overflow => f.write_str("size too large"),
        }
    }
}

impl std::error::Error for SizeError {}

/// The units [`parse_size`] accepts, for messages.
pub const UNIT_NAMES: &str = "B, kB, KB, MB, GB, TB, KiB, MiB, GiB, TiB";

/// Every unit with its size in bytes, in the order [`format_size`] prefers them when two
/// forms are equally short: binary first (buffer sizes are usually powers of two), `B` last.
/// `KB` is accepted as a common spelling of `kB` but never written.
const UNITS: [(&str, u64); 10] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("kB", 1_000),
    ("KB", 1_000),
    ("B", 1),
];

/// Parses a size such as `"64KiB"`, `"1MiB"`, `"512B"` or `"10kB"` into bytes.
///
/// ```
/// use bunsan_config::size::parse_size;
/// assert_eq!(parse_size("64KiB"), Ok(65_536));
/// assert_eq!(parse_size("64KB"), Ok(64_000));
/// assert!(parse_size("64 KiB").is_err());
/// assert!(parse_size("1.5MiB").is_err());
/// ```
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    if text.is_empty() {
        return Err(SizeError::Empty);
    }
    if text.contains(char::is_whitespace) {
        return Err(SizeError::Space);
    }
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(if text.starts_with('-') { SizeError::Negative } else { SizeError::NotANumber });
    }
    // Only digits, so the parse fails only when the number does not fit.
    let count: u64 = digits.parse().map_err(|_| SizeError::Overflow)?;
    count.checked_mul(unit_bytes(unit)?).ok_or(SizeError::Overflow)
}

/// The size of `unit` in bytes.
fn unit_bytes(unit: &str) -> Result<u64, SizeError> {
    if unit.is_empty() {
        return Err(SizeError::MissingUnit);
    }
    // "1,5MiB" is a fraction too, in much of the world.
    if unit.starts_with(['.', ',']) {
        return Err(SizeError::Fraction);
    }
    UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, bytes)| *bytes)
        .ok_or_else(|| SizeError::UnknownUnit(unit.to_owned()))
}

/// Formats a size in the shortest exact form [`parse_size`] reads back, e.g. `"64KiB"`,
/// `"10kB"`, `"1500B"`; binary units win ties.
///
/// ```
/// use bunsan_config::size::format_size;
/// assert_eq!(format_size(65_536), "64KiB");
/// assert_eq!(format_size(10_000), "10kB");
/// assert_eq!(format_size(1_500), "1500B");
/// ```
pub fn format_size(bytes: u64) -> String {
    // `B` divides everything, so the fallback is never used; it only avoids a panic path.
    UNITS
        .iter()
        .filter(|(name, unit)| *name != "KB" && bytes % unit == 0)
        .map(|(name, unit)| format!("{}{name}", bytes / unit))
        .min_by_key(String::len)
        .unwrap_or_else(|| format!("{bytes}B"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("0B"), Ok(0));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("1MiB"), Ok(1_048_576));
        assert_eq!(parse_size("1GiB"), Ok(1_073_741_824));
        assert_eq!(parse_size("1TiB"), Ok(1_099_511_627_776));
        assert_eq!(parse_size("10kB"), Ok(10_000));
        assert_eq!(parse_size("64KB"), Ok(64_000));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("3TB"), Ok(3_000_000_000_000));
        assert_eq!(parse_size("007KiB"), Ok(7_168));
    }

    #[test]
    fn rejects_malformed_text() {
        use SizeError::*;
        assert_eq!(parse_size(""), Err(Empty));
        assert_eq!(parse_size("64 KiB"), Err(Space));
        assert_eq!(parse_size(" 64KiB"), Err(Space));
        assert_eq!(parse_size("64KiB\n"), Err(Space));
        assert_eq!(parse_size("-1"), Err(Negative));
        assert_eq!(parse_size("-1KiB"), Err(Negative));
        assert_eq!(parse_size("+1KiB"), Err(NotANumber));
        assert_eq!(parse_size("KiB"), Err(NotANumber));
        assert_eq!(parse_size("٣KiB"), Err(NotANumber));
        assert_eq!(parse_size("1.5MiB"), Err(Fraction));
        assert_eq!(parse_size("1,5MiB"), Err(Fraction));
        assert_eq!(parse_size("65536"), Err(MissingUnit));
        assert_eq!(parse_size("1kb"), Err(UnknownUnit("kb".into())));
        assert_eq!(parse_size("1KIB"), Err(UnknownUnit("KIB".into())));
        assert_eq!(parse_size("1K"), Err(UnknownUnit("K".into())));
        assert_eq!(parse_size("1PiB"), Err(UnknownUnit("PiB".into())));
        assert_eq!(parse_size("1KiB1B"), Err(UnknownUnit("KiB1B".into())));
        assert_eq!(parse_size("0x10B"), Err(UnknownUnit("x10B".into())));
    }

    #[test]
    fn rejects_overflow() {
        assert_eq!(parse_size("18446744073709551615B"), Ok(u64::MAX));
        assert_eq!(parse_size("18446744073709551616B"), Err(SizeError::Overflow));
        assert_eq!(parse_size("16777216TiB"), Err(SizeError::Overflow));
        assert_eq!(parse_size("16777215TiB"), Ok(16_777_215 << 40));
    }

    #[test]
    fn errors_explain_themselves() {
        assert_eq!(parse_size("1kb").unwrap_err().to_string(), "unknown unit \"kb\"");
        assert_eq!(parse_size("-1").unwrap_err().to_string(), "sizes cannot be negative");
    }

    #[test]
    fn unit_names_list_every_unit() {
        let mut listed: Vec<&str> = UNIT_NAMES.split(", ").collect();
        let mut units: Vec<&str> = UNITS.iter().map(|(name, _)| *name).collect();
        listed.sort_unstable();
        units.sort_unstable();
        assert_eq!(listed, units);
    }

    #[test]
    fn formats_the_shortest_form() {
        assert_eq!(format_size(0), "0B");
        assert_eq!(format_size(1), "1B");
        assert_eq!(format_size(1_000), "1kB");
        assert_eq!(format_size(1_024), "1KiB");
        assert_eq!(format_size(65_536), "64KiB");
        assert_eq!(format_size(64 << 20), "64MiB");
        assert_eq!(format_size(1_536), "1536B");
        // Decimal units are a letter shorter: "1024kB", not "1000KiB"…
        assert_eq!(format_size(1_024_000), "1024kB");
        // …but "9875KiB" and "10112kB" are equally long, and binary wins.
        assert_eq!(format_size(10_112_000), "9875KiB");
        assert_eq!(format_size(5_000_000_000), "5GB");
        assert_eq!(format_size(1 << 40), "1TiB");
        assert_eq!(format_size(u64::MAX), "18446744073709551615B");
    }

    proptest! {
        #[test]
        fn format_round_trips(bytes in any::<u64>()) {
            let text = format_size(bytes);
            prop_assert_eq!(parse_size(&text), Ok(bytes), "{}", text);
        }

        #[test]
        fn unit_multiples_round_trip(count in 0u64..1_000_000, unit in 0..UNITS.len()) {
            let (name, bytes) = UNITS.get(unit).copied().unwrap_or(("B", 1));
            let size = count * bytes;
            prop_assert_eq!(parse_size(&format!("{count}{name}")), Ok(size));
            prop_assert_eq!(parse_size(&format_size(size)), Ok(size));
        }

        #[test]
        fn never_panics(text in "\\PC{0,12}") {
            let _ = parse_size(&text);
        }
    }
}
