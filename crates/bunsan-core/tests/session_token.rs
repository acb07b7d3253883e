//! Session tokens through the public API: the wire format against an independent
//! construction and a pinned answer, and refusal (never a panic, never `Ok`) of anything
//! tampered with, cut short, extended, misplaced, stale or made up.

use bunsan_core::session::{ENCODED_TOKEN_LEN, MAX_CLOCK_SKEW, MIN_SECRET_LEN, TOKEN_LEN};
use bunsan_core::{KeyError, ParseSessionIdError, ServerTag, SessionId, SessionKey, Token, TokenError};
use proptest::prelude::*;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const SECRET: &[u8] = b"integration test secret, 32 byte";
const LIFETIME: u64 = 86_400;

fn key() -> SessionKey {
    SessionKey::new(SECRET).unwrap()
}

/// Reference base64url, bit by bit, deliberately unlike the crate's group-of-three codec.
fn b64_encode(bytes: &[u8]) -> String {
    let bits: Vec<u8> = bytes.iter().flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1)).collect();
    bits.chunks(6)
        .map(|c| {
            let v =
                c.iter().chain(std::iter::repeat(&0)).take(6).fold(0usize, |acc, &b| (acc << 1) | b as usize);
            char::from(ALPHABET[v])
        })
        .collect()
}

/// Inverse of [`b64_encode`] for texts it produced.
fn b64_decode(text: &str) -> Vec<u8> {
    let bits: Vec<u8> = text
        .bytes()
        .map(|c| ALPHABET.iter().position(|&a| a == c).unwrap() as u8)
        .flat_map(|v| (0..6).rev().map(move |i| (v >> i) & 1))
        .collect();
    bits.chunks_exact(8).map(|c| c.iter().fold(0u8, |acc, &b| (acc << 1) | b)).collect()
}

/// The wire format built straight from the spec with ring, sharing no code with the crate.
fn spec_encoding(secret: &[u8], pool: &str, token: &Token) -> String {
    let mut signed = vec![1u8];
    signed.extend_from_slice(&token.id.0);
    signed.extend_from_slice(&token.server.0);
    signed.extend_from_slice(&token.issued.to_be_bytes());
    let mut input = b"bunsan session v1\0".to_vec();
    input.extend_from_slice(pool.as_bytes());
    input.push(0);
    input.extend_from_slice(&signed);
    let mac = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret), &input);
    signed.extend_from_slice(mac.as_ref());
    b64_encode(&signed)
}

fn arb_token() -> impl Strategy<Value = Token> {
    (any::<[u8; 16]>(), any::<[u8; 8]>(), any::<u64>()).prop_map(|(id, tag, issued)| Token {
        id: SessionId(id),
        server: ServerTag(tag),
        issued,
    })
}

/// Pool names as the config allows them.
fn arb_pool() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,64}"
}

// --- format -------------------------------------------------------------------------

#[test]
fn known_answer() {
    // Computed independently (Python's hmac and base64); if this changes, every token in
    // every client's cookie jar is invalidated: bump the version byte instead.
    let key = SessionKey::new(b"bunsan known-answer key, 32 byte").unwrap();
    let server = key.server_tag("web", "10.0.0.1:8080");
    assert_eq!(server, ServerTag([0x7c, 0x50, 0x68, 0xc2, 0x03, 0x61, 0x55, 0x5c]));
    let id: [u8; 16] = std::array::from_fn(|i| i as u8);
    let token = Token { id: SessionId(id), server, issued: 1_700_000_000 };
    let text = key.encode("web", &token);
    assert_eq!(
        text,
        "AQABAgMEBQYHCAkKCwwNDg98UGjCA2FVXAAAAABlU_EAnMMWCEu_r07PM3Gh3ulpqIECekH087xE84HfMJeKHEg"
    );
    assert_eq!(key.decode("web", text.as_bytes(), 1_700_000_000, LIFETIME), Ok(token));
}

proptest! {
    #[test]
    fn round_trip(token in arb_token(), pool in arb_pool(), lifetime in 1..u64::MAX / 2, age in any::<u64>()) {
        // Keep `issued + lifetime` in range so that "alive" is reachable.
        let token = Token { issued: token.issued % (u64::MAX / 2), ..token };
        let now = token.issued + age % lifetime;
        let text = key().encode(&pool, &token);
        prop_assert_eq!(key().decode(&pool, text.as_bytes(), now, lifetime), Ok(token));
    }

    #[test]
    fn matches_the_spec_and_is_cookie_safe(token in arb_token(), pool in arb_pool()) {
        let text = key().encode(&pool, &token);
        prop_assert_eq!(text.len(), ENCODED_TOKEN_LEN);
        prop_assert!(text.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'), "{}", text);
        prop_assert_eq!(&text, &spec_encoding(SECRET, &pool, &token));
    }

    #[test]
    fn nodes_sharing_a_secret_honour_each_other(token in arb_token()) {
        let (a, b) = (SessionKey::new(SECRET).unwrap(), SessionKey::new(SECRET).unwrap());
        prop_assert_eq!(a.server_tag("web", "s1"), b.server_tag("web", "s1"));
        let text = a.encode("web", &token);
        prop_assert_eq!(b.decode("web", text.as_bytes(), token.issued, u64::MAX), Ok(token));
    }
}

// --- tampering ----------------------------------------------------------------------

proptest! {
    #[test]
    fn every_bit_flip_of_the_bytes_is_refused(token in arb_token()) {
        let now = token.issued;
        let bytes = b64_decode(&key().encode("p", &token));
        prop_assert_eq!(bytes.len(), TOKEN_LEN);
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            // The version byte fails the format check; anything else fails the MAC.
            let expected = if bit < 8 { TokenError::Malformed } else { TokenError::BadMac };
            prop_assert_eq!(key().decode("p", b64_encode(&flipped).as_bytes(), now, u64::MAX), Err(expected));
        }
    }

    #[test]
    fn every_bit_flip_of_the_text_is_refused(token in arb_token()) {
        // Includes flips that stay in the alphabet, such as the last character's two spare
        // bits, which a lax decoder would map back to the same token.
        let text = key().encode("p", &token).into_bytes();
        for bit in 0..text.len() * 8 {
            let mut flipped = text.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(key().decode("p", &flipped, token.issued, u64::MAX).is_err(), "bit {}", bit);
        }
    }

    #[test]
    fn every_truncation_is_malformed(token in arb_token()) {
        let text = key().encode("p", &token);
        for cut in 0..text.len() {
            let (head, tail) = (&text.as_bytes()[..cut], &text.as_bytes()[text.len() - cut..]);
            prop_assert_eq!(key().decode("p", head, token.issued, u64::MAX), Err(TokenError::Malformed));
            prop_assert_eq!(key().decode("p", tail, token.issued, u64::MAX), Err(TokenError::Malformed));
        }
    }

    #[test]
    fn every_extension_is_malformed(
        token in arb_token(),
        extra in prop::collection::vec(any::<u8>(), 1..300),
        padding in 1..4usize,
    ) {
        let text = key().encode("p", &token).into_bytes();
        let appended = [text.as_slice(), &extra].concat();
        let prepended = [extra.as_slice(), &text].concat();
        let padded = [text.as_slice(), &b"==="[..padding]].concat();
        for candidate in [appended, prepended, padded] {
            prop_assert_eq!(key().decode("p", &candidate, token.issued, u64::MAX), Err(TokenError::Malformed));
        }
    }

    #[test]
    fn garbage_is_refused(text in prop::collection::vec(any::<u8>(), 0..1_000), now in any::<u64>()) {
        prop_assert!(key().decode("p", &text, now, u64::MAX).is_err());
    }

    #[test]
    fn garbage_of_the_right_shape_is_refused(text in "[A-Za-z0-9_-]{87}", now in any::<u64>()) {
        prop_assert!(key().decode("p", text.as_bytes(), now, u64::MAX).is_err());
    }

    #[test]
    fn forged_version_one_bytes_fail_the_mac(body in any::<[u8; 32]>(), mac in any::<[u8; 32]>()) {
        let bytes = [&[1u8][..], &body, &mac].concat();
        let text = b64_encode(&bytes);
        prop_assert_eq!(key().decode("p", text.as_bytes(), 0, u64::MAX), Err(TokenError::BadMac));
    }

    #[test]
    fn another_pool_refuses(token in arb_token(), a in arb_pool(), b in arb_pool()) {
        prop_assume!(a != b);
        let text = key().encode(&a, &token);
        prop_assert_eq!(key().decode(&b, text.as_bytes(), token.issued, u64::MAX), Err(TokenError::BadMac));
    }

    #[test]
    fn another_key_refuses(token in arb_token(), other in prop::collection::vec(any::<u8>(), 16..64)) {
        prop_assume!(other != SECRET);
        let text = key().encode("p", &token);
        let other = SessionKey::new(&other).unwrap();
        prop_assert_eq!(other.decode("p", text.as_bytes(), token.issued, u64::MAX), Err(TokenError::BadMac));
    }
}

#[test]
fn pool_a_token_fails_in_pool_b_and_k1_token_fails_with_k2() {
    let k1 = key();
    let k2 = SessionKey::new(b"a different secret, 32 bytes....").unwrap();
    let token = Token { id: SessionId([9; 16]), server: k1.server_tag("a", "s"), issued: 1_000 };
    let text = k1.encode("a", &token);
    assert_eq!(k1.decode("a", text.as_bytes(), 1_000, LIFETIME), Ok(token));
    assert_eq!(k1.decode("b", text.as_bytes(), 1_000, LIFETIME), Err(TokenError::BadMac));
    assert_eq!(k2.decode("a", text.as_bytes(), 1_000, LIFETIME), Err(TokenError::BadMac));
}

// --- time ---------------------------------------------------------------------------

#[test]
fn expiry_and_skew_boundaries() {
    let issued = 1_700_000_000;
    let token = Token { id: SessionId([1; 16]), server: ServerTag([2; 8]), issued };
    let text = key().encode("p", &token);
    let decode = |now| key().decode("p", text.as_bytes(), now, LIFETIME);
    assert_eq!(decode(issued), Ok(token));
    assert_eq!(decode(issued + LIFETIME - 1), Ok(token));
    assert_eq!(decode(issued + LIFETIME), Err(TokenError::Expired));
    assert_eq!(decode(u64::MAX), Err(TokenError::Expired));
    // Issued by a node whose clock runs ahead of ours.
    assert_eq!(decode(issued - MAX_CLOCK_SKEW), Ok(token));
    assert_eq!(decode(issued - MAX_CLOCK_SKEW - 1), Err(TokenError::FromTheFuture));
    assert_eq!(decode(0), Err(TokenError::FromTheFuture));
    // A zero lifetime admits nothing.
    assert_eq!(key().decode("p", text.as_bytes(), issued, 0), Err(TokenError::Expired));
}

#[test]
fn extreme_issue_times_do_not_overflow() {
    for issued in [0, 1, u64::MAX - 1, u64::MAX] {
        let token = Token { id: SessionId([3; 16]), server: ServerTag([4; 8]), issued };
        let text = key().encode("p", &token);
        for now in [0, issued, u64::MAX] {
            for lifetime in [0, 1, u64::MAX] {
                let _ = key().decode("p", text.as_bytes(), now, lifetime);
            }
        }
    }
}

// --- ids and keys -------------------------------------------------------------------

proptest! {
    #[test]
    fn session_id_hex_round_trip(id in any::<[u8; 16]>()) {
        let text = SessionId(id).to_string();
        prop_assert_eq!(text.len(), 32);
        prop_assert!(text.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
        prop_assert_eq!(format!("{:?}", SessionId(id)), text.clone());
        prop_assert_eq!(text.parse::<SessionId>(), Ok(SessionId(id)));
    }

    #[test]
    fn session_id_of_wrong_length_is_refused(text in "[0-9a-f]{0,100}") {
        prop_assume!(text.len() != 32);
        prop_assert_eq!(text.parse::<SessionId>(), Err(ParseSessionIdError::WrongLength { len: text.len() }));
    }

    #[test]
    fn session_id_with_a_stranger_is_refused(id in any::<[u8; 16]>(), at in 0..32usize, c in any::<char>()) {
        prop_assume!(!matches!(c, '0'..='9' | 'a'..='f'));
        let mut text = SessionId(id).to_string();
        text.replace_range(at..=at, c.encode_utf8(&mut [0; 4]));
        let expected = if c.is_ascii() {
            ParseSessionIdError::NotHex { at }
        } else {
            ParseSessionIdError::WrongLength { len: text.len() }
        };
        prop_assert_eq!(text.parse::<SessionId>(), Err(expected));
    }

    #[test]
    fn any_string_parses_or_errs_without_panic(text in ".{0,40}") {
        let _ = text.parse::<SessionId>();
    }
}

#[test]
fn session_id_rejects_upper_case_and_padding() {
    assert!("000102030405060708090A0B0C0D0E0F".parse::<SessionId>().is_err());
    assert!(" 00102030405060708090a0b0c0d0e0f".parse::<SessionId>().is_err());
    assert!("0x0102030405060708090a0b0c0d0e0f".parse::<SessionId>().is_err());
    assert_eq!("000102030405060708090a0b0c0d0e0f".parse(), Ok(SessionId(std::array::from_fn(|i| i as u8))));
}

#[test]
fn key_needs_sixteen_bytes() {
    for len in 0..MIN_SECRET_LEN {
        assert_eq!(SessionKey::new(&vec![7; len]).err(), Some(KeyError::TooShort { len }));
    }
    assert!(SessionKey::new(&[7; MIN_SECRET_LEN]).is_ok());
    assert!(SessionKey::new(&[7; 1_000]).is_ok());
}

#[test]
fn key_debug_hides_the_secret() {
    let secret = b"do-not-print-me-0123456789";
    let debug = format!("{:?} {:#?}", SessionKey::new(secret).unwrap(), SessionKey::new(secret).unwrap());
    let text = std::str::from_utf8(secret).unwrap();
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let bytes = format!("{:?}", &secret[..]);
    for leak in [text, "do-not-print", &hex, &bytes[1..bytes.len() - 1], "100, 111, 45"] {
        assert!(!debug.contains(leak), "{debug} contains {leak}");
    }
}
