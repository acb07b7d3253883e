//! Signed session identifiers for session affinity.
//!
//! On a session's first response the node issues a [`Token`] (session id, the server
//! that owns the session, issue time) in a cookie or a response header. Later requests
//! that carry it go back to that server. The token is signed with HMAC-SHA256 under a
//! [`SessionKey`], so a client can neither forge one nor point an existing one at a
//! server of its choosing; nodes that share the key honour each other's tokens without
//! sharing any state.
//!
//! A forged, tampered, truncated or expired token must be treated as *absent*: the
//! request is balanced as a new session. [`SessionKey::decode`] says why it refused a
//! token only so that this can be counted; it never panics, whatever the input.
//!
//! # Wire format (version 1)
//!
//! | bytes  | field                                         |
//! |--------|-----------------------------------------------|
//! | 0      | version, `1`                                  |
//! | 1..17  | session id ([`SessionId`], 16 random bytes)   |
//! | 17..25 | server tag ([`SessionKey::server_tag`])       |
//! | 25..33 | issue time, unix seconds, `u64` big-endian    |
//! | 33..65 | MAC                                           |
//!
//! `MAC = HMAC-SHA256(key, "bunsan session v1\0" || pool || "\0" || bytes 0..33)`.
//! Binding the pool name into the MAC makes a token issued for one pool worthless in
//! another. The 65 bytes travel as unpadded base64url ([RFC 4648 §5]), 87 characters of
//! `[A-Za-z0-9_-]`, which needs no quoting in a cookie value or header.
//!
//! Pool and server names are joined with a NUL separator, so names containing NUL could
//! collide; bunsan's config rejects such names.
//!
//! [RFC 4648 §5]: https://www.rfc-editor.org/rfc/rfc4648#section-5
//!
//! # Example
//!
//! ```
//! use bunsan_core::session::{SessionId, SessionKey, Token, TokenError};
//!
//! let key = SessionKey::new(b"a cluster-wide secret of 16+ bytes")?;
//! let server = key.server_tag("web", "10.0.0.7:8080");
//! let token = Token { id: SessionId([7; 16]), server, issued: 1_700_000_000 };
//!
//! let cookie = key.encode("web", &token);
//! assert_eq!(cookie.len(), 87);
//!
//! // An hour later, with sessions living for a day, the token still names the server.
//! let back = key.decode("web", cookie.as_bytes(), 1_700_003_600, 86_400);
//! assert_eq!(back, Ok(token));
//!
//! // Another pool, a tampered text, or too late: refused, and the request is balanced anew.
//! assert!(key.decode("api", cookie.as_bytes(), 1_700_003_600, 86_400).is_err());
//! let tampered = cookie.replacen('A', "B", 1);
//! assert!(key.decode("web", tampered.as_bytes(), 1_700_003_600, 86_400).is_err());
//! assert_eq!(key.decode("web", cookie.as_bytes(), 1_700_086_400, 86_400), Err(TokenError::Expired));
//! # Ok::<(), bunsan_core::session::KeyError>(())
//! ```

mod base64url;

use std::fmt;
use std::str::FromStr;

use ring::hmac;

/// Length of a [`SessionId`] in bytes.
pub const SESSION_ID_LEN: usize = 16;

/// The shortest secret [`SessionKey::new`] accepts, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// The version byte this code writes and the only one it reads.
pub const TOKEN_VERSION: u8 = 1;

/// Length of a decoded token: version, id, server tag, issue time, MAC.
pub const TOKEN_LEN: usize = SIGNED_LEN + MAC_LEN;

/// Length of an encoded token (unpadded base64url of [`TOKEN_LEN`] bytes).
pub const ENCODED_TOKEN_LEN: usize = 87;

/// How far a token's issue time may lie in the future, in seconds: the clock skew
/// tolerated between the node that issued a token and the node that reads it.
pub const MAX_CLOCK_SKEW: u64 = 300;

const TAG_LEN: usize = 8;
/// The signed part: version, id, server tag, issue time.
const SIGNED_LEN: usize = 1 + SESSION_ID_LEN + TAG_LEN + 8;
const MAC_LEN: usize = 32;
// The prefixes keep the two uses of one key apart: a server tag can never be replayed as a
// token MAC or the other way round.
const SESSION_DOMAIN: &[u8] = b"bunsan session v1\0";
const SERVER_TAG_DOMAIN: &[u8] = b"bunsan server tag v1\0";

const _: () = assert!(ENCODED_TOKEN_LEN == base64url::encoded_len(TOKEN_LEN));

/// A session's random identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub [u8; SESSION_ID_LEN]);

impl fmt::Display for SessionId {
    /// 32 lowercase hex characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a [`SessionId`]: it must be exactly 32 lowercase hex characters,
/// the form [`SessionId`]'s `Display` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseSessionIdError {
    /// The string is not 32 bytes long.
    #[error("a session id is 32 lowercase hex characters, got {len} bytes")]
    WrongLength {
        /// The length that was given, in bytes.
        len: usize,
    },
    /// A byte is not one of `0-9a-f` (upper case is refused too, so that each id has
    /// exactly one spelling).
    #[error("byte {at} of the session id is not a lowercase hex digit")]
    NotHex {
        /// Offset of the first offending byte.
        at: usize,
    },
}

impl FromStr for SessionId {
    type Err = ParseSessionIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.as_bytes();
        if text.len() != 2 * SESSION_ID_LEN {
            return Err(ParseSessionIdError::WrongLength { len: text.len() });
        }
        let mut id = [0; SESSION_ID_LEN];
        for (i, (byte, pair)) in id.iter_mut().zip(text.chunks_exact(2)).enumerate() {
            let digit = |j: usize| {
                let at = 2 * i + j;
                pair.get(j).and_then(|&c| hex_value(c)).ok_or(ParseSessionIdError::NotHex { at })
            };
            *byte = (digit(0)? << 4) | digit(1)?;
        }
        Ok(Self(id))
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// An 8-byte name for one server of one pool, as carried in tokens.
///
/// Tokens travel to clients, so they carry this keyed hash rather than the server's name
/// or address; see [`SessionKey::server_tag`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ServerTag(pub [u8; TAG_LEN]);

/// What a session token says: which session, which server, issued when.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Token {
    /// The session.
    pub id: SessionId,
    /// The server that owns the session.
    pub server: ServerTag,
    /// When the token was issued, in unix seconds.
    pub issued: u64,
}

/// Why [`SessionKey::new`] refused a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The secret is shorter than [`MIN_SECRET_LEN`] bytes.
    #[error("a session key needs at least {MIN_SECRET_LEN} bytes of secret, got {len}")]
    TooShort {
        /// The length that was given, in bytes.
        len: usize,
    },
}

/// Why [`SessionKey::decode`] refused a token. Whatever the reason, the caller treats the
/// token as absent; the reasons exist for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a token at all: wrong length, a character outside unpadded base64url, non-zero
    /// trailing bits, or an unknown version byte.
    #[error("malformed session token")]
    Malformed,
    /// Well formed, but the MAC does not match: forged, tampered with, signed with another
    /// key, or issued for another pool.
    #[error("session token MAC does not verify")]
    BadMac,
    /// Genuine, but `now >= issued + max_lifetime`.
    #[error("session token expired")]
    Expired,
    /// Genuine, but issued more than [`MAX_CLOCK_SKEW`] seconds after `now`: a clock is
    /// badly off on this node or the one that issued the token.
    #[error("session token issued in the future")]
    FromTheFuture,
}

/// The secret that signs session tokens; nodes sharing it honour each other's tokens.
///
/// `Debug` shows no part of the secret.
#[derive(Clone)]
pub struct SessionKey {
    key: hmac::Key,
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

impl SessionKey {
    /// A key from `secret`, which must be at least [`MIN_SECRET_LEN`] bytes of secret,
    /// else `Err(KeyError::TooShort { len })`. Random bytes are best; HMAC hashes longer
    /// secrets down, so any length above the minimum works.
    pub fn new(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::TooShort { len: secret.len() });
        }
        Ok(Self { key: hmac::Key::new(hmac::HMAC_SHA256, secret) })
    }

    /// The tag that names `server` of `pool` inside tokens without revealing its name:
    /// the first 8 bytes of `HMAC-SHA256(key, "bunsan server tag v1\0" || pool || "\0" || server)`.
    ///
    /// Every node sharing the key computes the same tag, so it can map a tag back to a
    /// server by tagging its own servers.
    pub fn server_tag(&self, pool: &str, server: &str) -> ServerTag {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [SERVER_TAG_DOMAIN, pool.as_bytes(), b"\0", server.as_bytes()] {
            ctx.update(part);
        }
        let mut tag = [0; TAG_LEN];
        tag.iter_mut().zip(ctx.sign().as_ref()).for_each(|(t, m)| *t = *m);
        ServerTag(tag)
    }

    /// `token` for `pool` as cookie-safe text: 87 characters of `[A-Za-z0-9_-]`
    /// (the format is in the [module docs](self)).
    pub fn encode(&self, pool: &str, token: &Token) -> String {
        let signed = signed_part(token);
        let mac = hmac::sign(&self.key, &mac_input(pool, &signed));
        let mut bytes = [0; TOKEN_LEN];
        let (head, tail) = bytes.split_at_mut(SIGNED_LEN);
        head.copy_from_slice(&signed);
        tail.copy_from_slice(mac.as_ref());
        base64url::encode(&bytes)
    }

    /// Decodes and verifies `text` from a cookie or header for `pool`.
    ///
    /// `now` and `max_lifetime` are in unix seconds. A token is valid from `issued`
    /// (or up to [`MAX_CLOCK_SKEW`] seconds before, for clock skew between nodes) until
    /// just before `issued + max_lifetime`. The MAC is compared in constant time.
    /// Never panics; any error means "no session".
    pub fn decode(&self, pool: &str, text: &[u8], now: u64, max_lifetime: u64) -> Result<Token, TokenError> {
        // The exact-length check inside `decode_exact` also bounds the work done for
        // arbitrarily long attacker-supplied text.
        let bytes: [u8; TOKEN_LEN] = base64url::decode_exact(text).ok_or(TokenError::Malformed)?;
        let (signed, mac) = bytes.split_at(SIGNED_LEN);
        if signed.first() != Some(&TOKEN_VERSION) {
            return Err(TokenError::Malformed);
        }
        hmac::verify(&self.key, &mac_input(pool, signed), mac).map_err(|_| TokenError::BadMac)?;
        // Only now, with the bytes known to be ours, is their content worth reading.
        let token = parse_signed(signed).ok_or(TokenError::Malformed)?;
        check_age(token.issued, now, max_lifetime)?;
        Ok(token)
    }
}

/// Bytes 0..33 of the wire format.
fn signed_part(token: &Token) -> [u8; SIGNED_LEN] {
    let mut out = [0; SIGNED_LEN];
    let fields: [&[u8]; 4] = [&[TOKEN_VERSION], &token.id.0, &token.server.0, &token.issued.to_be_bytes()];
    let mut rest = out.as_mut_slice();
    for field in fields {
        let (head, tail) = rest.split_at_mut(field.len());
        head.copy_from_slice(field);
        rest = tail;
    }
    out
}

/// The inverse of [`signed_part`], minus the version byte already checked.
fn parse_signed(signed: &[u8]) -> Option<Token> {
    let (_version, rest) = signed.split_first()?;
    let (id, rest) = rest.split_first_chunk::<SESSION_ID_LEN>()?;
    let (server, rest) = rest.split_first_chunk::<TAG_LEN>()?;
    let issued = u64::from_be_bytes(*rest.first_chunk::<8>()?);
    Some(Token { id: SessionId(*id), server: ServerTag(*server), issued })
}

/// What the MAC covers. `ring::hmac::verify` (the constant-time comparison) takes one
/// contiguous message, hence a buffer rather than an incremental `hmac::Context`; sign
/// and verify both build it here so they cannot disagree.
fn mac_input(pool: &str, signed: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(SESSION_DOMAIN.len() + pool.len() + 1 + signed.len());
    for part in [SESSION_DOMAIN, pool.as_bytes(), b"\0", signed] {
        input.extend_from_slice(part);
    }
    input
}

/// Saturating arithmetic: attacker-chosen times near `u64::MAX` must not overflow.
fn check_age(issued: u64, now: u64, max_lifetime: u64) -> Result<(), TokenError> {
    if issued > now.saturating_add(MAX_CLOCK_SKEW) {
        return Err(TokenError::FromTheFuture);
    }
    if now >= issued.saturating_add(max_lifetime) {
        return Err(TokenError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        SessionKey::new(b"unit test key, sixteen plus").unwrap()
    }

    fn token(issued: u64) -> Token {
        Token { id: SessionId([0xab; SESSION_ID_LEN]), server: ServerTag([1, 2, 3, 4, 5, 6, 7, 8]), issued }
    }

    #[test]
    fn signed_part_lays_out_fields_in_order() {
        let t =
            Token { id: SessionId([0x11; 16]), server: ServerTag([0x22; 8]), issued: 0x0102_0304_0506_0708 };
        let signed = signed_part(&t);
        assert_eq!(signed[0], TOKEN_VERSION);
        assert_eq!(&signed[1..17], &[0x11; 16]);
        assert_eq!(&signed[17..25], &[0x22; 8]);
        assert_eq!(&signed[25..33], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(parse_signed(&signed), Some(t));
    }

    #[test]
    fn parse_signed_refuses_short_input() {
        for len in 0..SIGNED_LEN {
            assert_eq!(parse_signed(&[1; SIGNED_LEN][..len]), None);
        }
    }

    #[test]
    fn round_trip() {
        let key = key();
        let text = key.encode("p", &token(1_000));
        assert_eq!(text.len(), ENCODED_TOKEN_LEN);
        assert_eq!(key.decode("p", text.as_bytes(), 1_000, 10), Ok(token(1_000)));
    }

    #[test]
    fn unknown_version_is_malformed_even_with_a_valid_mac() {
        // A future version signed with the same key must still be refused by this reader.
        let key = key();
        let mut signed = signed_part(&token(1_000));
        signed[0] = 2;
        let mac = hmac::sign(&key.key, &mac_input("p", &signed));
        let bytes: Vec<u8> = signed.iter().chain(mac.as_ref()).copied().collect();
        let text = base64url::encode(&bytes);
        assert_eq!(key.decode("p", text.as_bytes(), 1_000, 10), Err(TokenError::Malformed));
    }

    #[test]
    fn age_boundaries() {
        assert_eq!(check_age(100, 100, 10), Ok(()));
        assert_eq!(check_age(100, 109, 10), Ok(()));
        assert_eq!(check_age(100, 110, 10), Err(TokenError::Expired));
        assert_eq!(check_age(100, 100, 0), Err(TokenError::Expired));
        assert_eq!(check_age(400, 100, 1_000), Ok(()));
        assert_eq!(check_age(401, 100, 1_000), Err(TokenError::FromTheFuture));
        // No overflow at the extremes.
        assert_eq!(check_age(u64::MAX - 10, u64::MAX - 10, 5), Ok(()));
        // `issued + max_lifetime` saturates, so a token issued at the end of time is stale.
        assert_eq!(check_age(u64::MAX, u64::MAX, u64::MAX), Err(TokenError::Expired));
        assert_eq!(check_age(u64::MAX, 0, u64::MAX), Err(TokenError::FromTheFuture));
        assert_eq!(check_age(0, u64::MAX, u64::MAX), Err(TokenError::Expired));
    }

    #[test]
    fn server_tags_depend_on_pool_server_and_key() {
        let key = key();
        let tag = key.server_tag("web", "a:80");
        assert_eq!(tag, key.server_tag("web", "a:80"));
        assert_ne!(tag, key.server_tag("api", "a:80"));
        assert_ne!(tag, key.server_tag("web", "b:80"));
        assert_ne!(tag, SessionKey::new(b"another key, sixteen plus").unwrap().server_tag("web", "a:80"));
    }

    #[test]
    fn session_id_hex() {
        let id = SessionId([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0, 0, 0, 0, 0, 0, 0xff, 0x10]);
        assert_eq!(id.to_string(), "0123456789abcdef000000000000ff10");
        assert_eq!(format!("{id:?}"), "0123456789abcdef000000000000ff10");
        assert_eq!("0123456789abcdef000000000000ff10".parse(), Ok(id));
        assert_eq!(
            "0123456789ABCDEF000000000000ff10".parse::<SessionId>(),
            Err(ParseSessionIdError::NotHex { at: 10 })
        );
        assert_eq!(
            "0123456789abcdef000000000000ff1".parse::<SessionId>(),
            Err(ParseSessionIdError::WrongLength { len: 31 })
        );
    }
}
