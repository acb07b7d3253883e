//! Cost of issuing and of checking one session token (HMAC-SHA256 plus base64url).
//!
//! `cargo bench -p bunsan-core --bench session`
//! Bench ids: `session/encode`, `session/decode` (a valid token), `session/decode_bad_mac`
//! (a tampered one: the work an attacker can make a node do per request) and
//! `session/server_tag`.

use std::hint::black_box;
use std::time::Duration;

use bunsan_core::{SessionId, SessionKey, Token, TokenError};
use criterion::{criterion_group, criterion_main, Criterion};

const POOL: &str = "web";
const NOW: u64 = 1_700_000_000;
const LIFETIME: u64 = 86_400;

fn fixture() -> (SessionKey, Token) {
    let key = SessionKey::new(b"bench key, thirty-two bytes long").expect("32-byte key");
    let server = key.server_tag(POOL, "10.0.0.1:8080");
    (key, Token { id: SessionId([0x5a; 16]), server, issued: NOW })
}

fn session(c: &mut Criterion) {
    let (key, token) = fixture();
    let text = key.encode(POOL, &token);
    // Flip a character in the MAC: well formed, so decode pays for the HMAC before refusing.
    let mut tampered = text.clone().into_bytes();
    tampered[60] = if tampered[60] == b'A' { b'B' } else { b'A' };
    assert_eq!(key.decode(POOL, &tampered, NOW, LIFETIME), Err(TokenError::BadMac));

    let mut group = c.benchmark_group("session");
    group.bench_function("encode", |b| b.iter(|| black_box(key.encode(black_box(POOL), black_box(&token)))));
    group.bench_function("decode", |b| {
        b.iter(|| black_box(key.decode(black_box(POOL), black_box(text.as_bytes()), NOW, LIFETIME)))
    });
    group.bench_function("decode_bad_mac", |b| {
        b.iter(|| black_box(key.decode(black_box(POOL), black_box(&tampered), NOW, LIFETIME)))
    });
    group.bench_function("server_tag", |b| {
        b.iter(|| black_box(key.server_tag(black_box(POOL), black_box("10.0.0.1:8080"))))
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = session
}
criterion_main!(benches);
