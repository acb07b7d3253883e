//! Durations as written in config: one or more `<integer><unit>` groups, like `"1m30s"`.
//!
//! Units are `ms`, `s`, `m` and `h`. There are no signs, spaces or fractions, so every
//! string has one obvious meaning and `"5"` (seconds? milliseconds?) is an error.

use std::fmt;
use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// The string is empty.
    Empty,
    /// A character where a digit was expected (a sign, space, fraction or stray letter).
    ExpectedDigit {
        /// Byte offset of the character.
        at: usize,
    },
    /// A number with no unit after it.
    MissingUnit,
    /// A unit that is not `ms`, `s`, `m` or `h`.
    UnknownUnit(String),
    /// The total is more than `u64::MAX` milliseconds.
    Overflow,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty duration"),
            Self::ExpectedDigit { at } => write!(f, "expected a digit at byte {at}"),
            Self::MissingUnit => f.write_str("number without a unit (ms, s, m or h)"),
            Self::UnknownUnit(unit) => write!(f, "unknown unit {unit:?} (valid: ms, s, m, h)"),
            Self::Overflow => f.write_str("duration too large"),
        }
    }
}

impl std::error::Error for DurationError {}

/// The units, largest first, with their length in milliseconds.
const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Parses a duration such as `"250ms"`, `"5s"`, `"2m"`, `"1h"` or `"1m30s"`.
///
/// The total must fit in `u64` milliseconds (about 584 million years), so everything this
/// accepts, [`format_duration`] writes back exactly.
///
/// ```
/// use std::time::Duration;
/// use bunsan_config::duration::parse_duration;
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert!(parse_duration("5").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let at = text.len() - rest.len();
        let (millis, tail) = parse_group(rest, at)?;
        total = total.checked_add(millis).ok_or(DurationError::Overflow)?;
        rest = tail;
    }
    Ok(Duration::from_millis(total))
}

/// Parses one `<integer><unit>` group at the start of `text` (which starts at byte `at`
/// of the whole string) and returns its milliseconds with the rest of the text.
fn parse_group(text: &str, at: usize) -> Result<(u64, &str), DurationError> {
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, rest) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(DurationError::ExpectedDigit { at });
    }
    let unit_end = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
    let (unit, rest) = rest.split_at(unit_end);
    let millis_per_unit = unit_millis(unit)?;
    let count: u64 = digits.parse().map_err(|_| DurationError::Overflow)?;
    let millis = count.checked_mul(millis_per_unit).ok_or(DurationError::Overflow)?;
    Ok((millis, rest))
}

/// The length of `unit` in milliseconds.
fn unit_millis(unit: &str) -> Result<u64, DurationError> {
    if unit.is_empty() {
        return Err(DurationError::MissingUnit);
    }
    UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, millis)| *millis)
        .ok_or_else(|| DurationError::UnknownUnit(unit.to_owned()))
}

/// Formats a duration in the shortest form [`parse_duration`] reads back, e.g. `"90s"`,
/// `"1h"`, `"1h500ms"`.
///
/// Config durations have millisecond resolution, so anything finer is dropped; durations
/// beyond `u64::MAX` milliseconds saturate.
///
/// ```
/// use std::time::Duration;
/// use bunsan_config::duration::format_duration;
/// assert_eq!(format_duration(Duration::from_secs(90)), "90s");
/// assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
/// ```
pub fn format_duration(duration: Duration) -> String {
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return "0s".to_owned();
    }
    // Every subset of units is a candidate (e.g. "90s" beats "1m30s"); within a subset the
    // larger units take as much as they can, since moving value down only adds digits.
    (1..16u8)
        .filter_map(|subset| format_with_units(millis, subset))
        .min_by_key(String::len)
        .unwrap_or_else(|| format!("{millis}ms"))
}

/// `millis` written with the units whose bits are set in `subset` (bit 0 = `h`), or `None`
/// when those units cannot express it exactly.
fn format_with_units(millis: u64, subset: u8) -> Option<String> {
    let mut rest = millis;
    let mut out = String::new();
    for (bit, (name, unit)) in UNITS.iter().enumerate() {
        if subset & (1 << bit) == 0 {
            continue;
        }
        let count = rest / unit;
        rest %= unit;
        if count > 0 {
            out.push_str(&format!("{count}{name}"));
        }
    }
    (rest == 0 && !out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_every_unit_and_combinations() {
        assert_eq!(parse_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_duration("5s"), Ok(ms(5_000)));
        assert_eq!(parse_duration("2m"), Ok(ms(120_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1h2m3s4ms"), Ok(ms(3_723_004)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("007s"), Ok(ms(7_000)));
    }

    #[test]
    fn rejects_malformed_text() {
        use DurationError::*;
        assert_eq!(parse_duration(""), Err(Empty));
        assert_eq!(parse_duration("5"), Err(MissingUnit));
        assert_eq!(parse_duration("1m30"), Err(MissingUnit));
        assert_eq!(parse_duration("5x"), Err(UnknownUnit("x".into())));
        assert_eq!(parse_duration("5S"), Err(UnknownUnit("S".into())));
        assert_eq!(parse_duration("5sec"), Err(UnknownUnit("sec".into())));
        assert_eq!(parse_duration("-5s"), Err(ExpectedDigit { at: 0 }));
        assert_eq!(parse_duration("+5s"), Err(ExpectedDigit { at: 0 }));
        assert_eq!(parse_duration(" 5s"), Err(ExpectedDigit { at: 0 }));
        assert_eq!(parse_duration("5s "), Err(ExpectedDigit { at: 2 }));
        assert_eq!(parse_duration("1 s"), Err(MissingUnit));
        assert_eq!(parse_duration("1.5s"), Err(MissingUnit));
        assert_eq!(parse_duration("s"), Err(ExpectedDigit { at: 0 }));
        assert_eq!(parse_duration("٣s"), Err(ExpectedDigit { at: 0 }));
    }

    #[test]
    fn rejects_overflow() {
        assert_eq!(parse_duration("99999999999999999999s"), Err(DurationError::Overflow));
        assert_eq!(parse_duration("18446744073709551615h"), Err(DurationError::Overflow));
        let max = format!("{}ms{}ms", u64::MAX, u64::MAX);
        assert_eq!(parse_duration(&max), Err(DurationError::Overflow));
    }

    #[test]
    fn errors_explain_themselves() {
        let err = parse_duration("5x").unwrap_err();
        assert_eq!(err.to_string(), "unknown unit \"x\" (valid: ms, s, m, h)");
    }

    #[test]
    fn formats_the_shortest_form() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(ms(250)), "250ms");
        assert_eq!(format_duration(ms(1_000)), "1s");
        assert_eq!(format_duration(ms(60_000)), "1m");
        assert_eq!(format_duration(ms(90_000)), "90s");
        assert_eq!(format_duration(ms(3_600_000)), "1h");
        assert_eq!(format_duration(ms(5_400_000)), "90m");
        assert_eq!(format_duration(ms(3_600_500)), "1h500ms");
        assert_eq!(format_duration(ms(1_500)), "1500ms");
        assert_eq!(format_duration(Duration::from_nanos(1_999_999)), "1ms");
    }

    #[test]
    fn formats_huge_durations_without_panicking() {
        let text = format_duration(Duration::MAX);
        assert!(parse_duration(&text).is_ok(), "{text}");
    }

    proptest! {
        #[test]
        fn format_round_trips(millis in any::<u64>()) {
            let duration = ms(millis);
            let text = format_duration(duration);
            prop_assert_eq!(parse_duration(&text), Ok(duration), "{}", text);
        }

        #[test]
        fn format_is_no_longer_than_plain_millis(millis in any::<u64>()) {
            let plain = millis.to_string().len() + 2;
            prop_assert!(format_duration(ms(millis)).len() <= plain);
        }

        #[test]
        fn groups_add_up(groups in proptest::collection::vec((0u64..100_000, 0usize..4), 1..5)) {
            let text: String = groups.iter().map(|(n, u)| format!("{n}{}", UNITS[*u].0)).collect();
            let expected: u64 = groups.iter().map(|(n, u)| n * UNITS[*u].1).sum();
            prop_assert_eq!(parse_duration(&text), Ok(ms(expected)));
        }

        #[test]
        fn never_panics(text in "\\PC{0,12}") {
            let _ = parse_duration(&text);
        }
    }
}
