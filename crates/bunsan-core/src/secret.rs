//! Comparing secrets (bearer tokens) without revealing, through timing, how much of a
//! guess was right.

/// Whether `presented` equals `expected`, taking the same time wherever they differ. The
/// length of `presented` is not hidden (a guess's length is the guesser's own).
pub fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != expected.len());
    for (i, &x) in presented.iter().enumerate() {
        // A position past the end of `expected` must differ, whatever `x` is.
        diff |= x ^ expected.get(i).copied().unwrap_or(!x);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares_whole_values() {
        assert!(constant_time_eq(b"secret-token-123", b"secret-token-123"));
        assert!(!constant_time_eq(b"secret-token-12", b"secret-token-123"));
        assert!(!constant_time_eq(b"secret-token-1234", b"secret-token-123"));
        assert!(!constant_time_eq(b"secret-token-124", b"secret-token-123"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
