//! Base64 with the standard alphabet and padding (RFC 4648 §4), as etcd's JSON gateway
//! writes keys and values. Small enough that a dependency would cost more than it saves.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes `bytes`, padded to a multiple of four characters.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        // A chunk of k bytes carries k + 1 characters of data; the rest is padding.
        for i in 0..4 {
            let index = (n >> (18 - 6 * i)) & 0x3f;
            out.push(if i <= chunk.len() { char::from(ALPHABET[index as usize]) } else { '=' });
        }
    }
    out
}

/// Decodes padded standard base64; anything else is refused, saying where.
pub fn decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return Err(format!("base64 of length {} is not a multiple of 4", bytes.len()));
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let quads = bytes.len() / 4;
    for (q, quad) in bytes.chunks(4).enumerate() {
        let padding = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && q + 1 != quads) {
            return Err(format!("misplaced base64 padding at byte {}", q * 4 + 4 - padding));
        }
        let mut n = 0u32;
        for (i, &c) in quad[..4 - padding].iter().enumerate() {
            let value = sextet(c).ok_or_else(|| format!("invalid base64 character at byte {}", q * 4 + i))?;
            n |= u32::from(value) << (18 - 6 * i);
        }
        let [_, b0, b1, b2] = n.to_be_bytes();
        out.extend_from_slice(&[b0, b1, b2][..3 - padding]);
    }
    Ok(out)
}

fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4648 §10.
    const VECTORS: [(&str, &str); 7] = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];

    #[test]
    fn the_rfc_vectors_round_trip() {
        for (plain, coded) in VECTORS {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn every_byte_value_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        for len in 0..all.len() {
            assert_eq!(decode(&encode(&all[..len])).unwrap(), &all[..len]);
        }
        assert_eq!(encode(&[0xfb, 0xff]), "+/8=");
        assert_eq!(encode(b"/bunsan/control/"), "L2J1bnNhbi9jb250cm9sLw==");
    }

    #[test]
    fn malformed_input_is_refused_saying_where() {
        assert!(decode("Zm9").unwrap_err().contains("multiple of 4"));
        assert!(decode("Zm9v!A==").unwrap_err().contains("byte 4"));
        assert!(decode("Zg==Zm9v").unwrap_err().contains("padding"));
        assert!(decode("Z===").unwrap_err().contains("padding"));
        assert!(decode("Zm9 ").unwrap_err().contains("byte 3"));
    }
}
