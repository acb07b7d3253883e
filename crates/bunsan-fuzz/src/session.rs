//! `session_token`: the session identifier codec of seed 000 ([`SessionKey::decode`],
//! [`SessionKey::encode`]) and the admin API's session id ([`SessionId`]'s `FromStr`).
//!
//! A random input almost never carries a valid MAC, so the target also builds a genuine
//! token from the input's bytes: that path checks the encode/decode round trip and that
//! changing any one character of a genuine token makes it invalid (each token has exactly
//! one spelling, and the MAC covers every bit).

use bunsan_core::session::{ServerTag, SessionId, SessionKey, Token, ENCODED_TOKEN_LEN, MAX_CLOCK_SKEW};

/// A fixed key, so that corpus entries stay meaningful from run to run.
const SECRET: &[u8] = b"bunsan fuzz key: fixed, not secret";
/// The pool tokens are issued for; the MAC covers it.
const POOL: &str = "app";
/// "Now" for the decoder: a fixed clock keeps the target deterministic.
const NOW: u64 = 1_800_000_000;
/// A day, as `max_lifetime`.
const LIFETIME: u64 = 86_400;

/// Decodes `data` as a token and as a session id; builds and checks a token from it.
pub fn session_token(data: &[u8]) {
    let key = SessionKey::new(SECRET).expect("the fixed secret is long enough");
    decode_any(&key, data);
    session_id(data);
    genuine(&key, data);
}

/// Genuine tokens for [`POOL`] under the fixed key, valid at the target's clock: seeds
/// for the fuzzer, which could never find a MAC by mutation.
pub fn seed_tokens() -> Vec<String> {
    let key = SessionKey::new(SECRET).expect("the fixed secret is long enough");
    let tokens = [
        Token { id: SessionId([0; 16]), server: key.server_tag(POOL, "host1"), issued: NOW },
        Token { id: SessionId([0xa5; 16]), server: key.server_tag(POOL, "host2"), issued: NOW - 3600 },
        Token { id: SessionId(*b"0123456789abcdef"), server: ServerTag([0xff; 8]), issued: NOW + 60 },
    ];
    tokens.iter().map(|token| key.encode(POOL, token)).collect()
}

/// Whatever decodes must be the one spelling of its token, within its lifetime.
fn decode_any(key: &SessionKey, data: &[u8]) {
    let Ok(token) = key.decode(POOL, data, NOW, LIFETIME) else { return };
    assert_eq!(key.encode(POOL, &token).as_bytes(), data, "a token has one spelling");
    assert!(token.issued < NOW + MAX_CLOCK_SKEW && NOW < token.issued + LIFETIME);
    assert!(key.decode("other", data, NOW, LIFETIME).is_err(), "a token is only valid in its pool");
}

/// `DELETE /v1/sessions/{id}`: an id that parses prints back as the same text.
fn session_id(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(id) = text.parse::<SessionId>() {
        assert_eq!(id.to_string(), text);
    }
}

/// A token made of the input's bytes (id, tag, issued) round-trips, and any one-character
/// change to its text (position and replacement taken from the input) is refused.
fn genuine(key: &SessionKey, data: &[u8]) {
    let Some((fields, rest)) = data.split_first_chunk::<32>() else { return };
    let (id, tail) = fields.split_at(16);
    let (server, issued) = tail.split_at(8);
    let token = Token {
        id: SessionId(id.try_into().expect("16 bytes")),
        server: ServerTag(server.try_into().expect("8 bytes")),
        // Kept well inside u64 so `issued + lifetime` cannot be the thing under test.
        issued: u64::from_be_bytes(issued.try_into().expect("8 bytes")) >> 2,
    };
    let text = key.encode(POOL, &token);
    assert_eq!(text.len(), ENCODED_TOKEN_LEN);
    assert_eq!(key.decode(POOL, text.as_bytes(), token.issued, LIFETIME), Ok(token));
    if let [at, replacement, ..] = rest {
        let mut changed = text.into_bytes();
        let at = usize::from(*at) % changed.len();
        if changed[at] != *replacement {
            changed[at] = *replacement;
            assert!(key.decode(POOL, &changed, token.issued, LIFETIME).is_err(), "one token, one text");
        }
    }
}
