//! Extracts a request's balancing key (`hash_key`) and hashes it for Maglev.

use std::net::IpAddr;

use bunsan_config::HashKey;
use bunsan_core::hash::key_hash;
use http::header::{HeaderMap, COOKIE};
use http::Request;

/// The hash of the request's key, or `None` when the request has no such key (the
/// balancer then spreads it at random).
pub fn request_key<B>(key: &HashKey, req: &Request<B>, client: IpAddr) -> Option<u64> {
    match key {
        HashKey::ClientIp => Some(ip_key(client)),
        HashKey::Path => Some(key_hash(req.uri().path().as_bytes())),
        HashKey::Header(name) => req.headers().get(name.as_str()).map(|v| key_hash(v.as_bytes())),
        HashKey::Cookie(name) => cookie(req.headers(), name).map(key_hash),
    }
}

/// The hash of a client address, the key TCP listeners always use.
pub fn ip_key(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => key_hash(&v4.octets()),
        IpAddr::V6(v6) => key_hash(&v6.octets()),
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers.get_all(COOKIE).iter().flat_map(|v| v.as_bytes().split(|&b| b == b';')).find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cookies_among_several_headers() {
        let req =
            Request::builder().header(COOKIE, "a=1; session=abc").header(COOKIE, "b=2").body(()).unwrap();
        assert_eq!(cookie(req.headers(), "session"), Some(&b"abc"[..]));
        assert_eq!(cookie(req.headers(), "b"), Some(&b"2"[..]));
        assert_eq!(cookie(req.headers(), "sess"), None);
    }

    #[test]
    fn mapped_ipv4_hashes_like_ipv4() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(ip_key(v4), ip_key(mapped));
    }

    #[test]
    fn header_key_absent_means_no_key() {
        let req = Request::builder().header("x-user", "u1").body(()).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let key = HashKey::Header("x-user".into());
        assert!(request_key(&key, &req, ip).is_some());
        assert!(request_key(&HashKey::Header("x-other".into()), &req, ip).is_none());
    }
}
