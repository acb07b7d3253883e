//! Unpadded base64url (RFC 4648 §5), strict: each byte string has exactly one encoding.
//!
//! Strictness matters for tokens: if padding, other alphabets or stray trailing bits were
//! accepted, several texts would decode to one token, and a cache or log keyed on the text
//! would see distinct sessions where there is one. The input is a client's cookie, not a
//! secret, so the decoder need not be constant time.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Characters needed for `n` bytes: four per three bytes, plus two or three for a
/// trailing one or two.
pub(super) const fn encoded_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

pub(super) fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(encoded_len(bytes.len()));
    for chunk in bytes.chunks(3) {
        // The chunk, left-aligned in 24 bits; missing bytes read as zero.
        let group = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            let sextet = (group >> (18 - 6 * i)) & 0x3f;
            // `& 0x3f` above keeps the index within the 64-entry alphabet.
            out.push(char::from(ALPHABET[sextet as usize]));
        }
    }
    out
}

/// Decodes `text` into exactly `N` bytes, or `None` if it is not the one encoding of
/// `N` bytes: wrong length, a character outside the alphabet (padding `=` included), or
/// non-zero bits past the last whole byte.
pub(super) fn decode_exact<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != encoded_len(N) {
        return None;
    }
    let mut out = [0; N];
    // With the length checked, a chunk of k characters lines up with k - 1 bytes.
    for (chars, bytes) in text.chunks(4).zip(out.chunks_mut(3)) {
        let group = chars
            .iter()
            .enumerate()
            .try_fold(0u32, |acc, (i, &c)| Some(acc | u32::from(sextet(c)?) << (18 - 6 * i)))?;
        let whole = group.to_be_bytes();
        let (_, value) = whole.split_at(1);
        let (used, spare) = value.split_at(bytes.len());
        if spare.iter().any(|&b| b != 0) {
            return None;
        }
        bytes.copy_from_slice(used);
    }
    Some(out)
}

fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4648 §10 test vectors, unpadded.
    #[test]
    fn rfc_vectors() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg");
        assert_eq!(encode(b"fo"), "Zm8");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"foob"), "Zm9vYg");
        assert_eq!(encode(b"fooba"), "Zm9vYmE");
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(decode_exact::<0>(b""), Some(*b""));
        assert_eq!(decode_exact::<1>(b"Zg"), Some(*b"f"));
        assert_eq!(decode_exact::<2>(b"Zm8"), Some(*b"fo"));
        assert_eq!(decode_exact::<3>(b"Zm9v"), Some(*b"foo"));
        assert_eq!(decode_exact::<4>(b"Zm9vYg"), Some(*b"foob"));
        assert_eq!(decode_exact::<5>(b"Zm9vYmE"), Some(*b"fooba"));
        assert_eq!(decode_exact::<6>(b"Zm9vYmFy"), Some(*b"foobar"));
    }

    #[test]
    fn url_safe_alphabet() {
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(decode_exact::<2>(b"-_8"), Some([0xfb, 0xff]));
        // The standard alphabet's `+` and `/` are not ours.
        assert_eq!(decode_exact::<2>(b"+/8"), None);
    }

    #[test]
    fn every_byte_value_round_trips() {
        let bytes: [u8; 256] = std::array::from_fn(|i| i as u8);
        assert_eq!(decode_exact::<256>(encode(&bytes).as_bytes()), Some(bytes));
    }

    #[test]
    fn refuses_padding_wrong_lengths_and_strangers() {
        assert_eq!(decode_exact::<1>(b"Zg=="), None);
        assert_eq!(decode_exact::<2>(b"Zm8="), None);
        assert_eq!(decode_exact::<1>(b"Z"), None);
        assert_eq!(decode_exact::<3>(b"Zm9vY"), None);
        assert_eq!(decode_exact::<3>(b"Zm9 "), None);
        assert_eq!(decode_exact::<3>(b"Zm9\0"), None);
        assert_eq!(decode_exact::<3>("Zm9é".as_bytes()), None);
    }

    #[test]
    fn refuses_non_zero_trailing_bits() {
        // "Zg" is 'f'; "Zh".."Zv" carry the same byte with stray low bits.
        for c in b'h'..=b'v' {
            assert_eq!(decode_exact::<1>(&[b'Z', c]), None, "{}", char::from(c));
        }
        // "Zm8" is "fo"; "Zm9" sets one of the two spare bits.
        assert_eq!(decode_exact::<2>(b"Zm9"), None);
    }
}
