//! `strict_head`: [`bunsan_node::http::strict::check`] on request heads built from the
//! input, which reads like an HTTP/1 head: `METHOD TARGET VERSION` on the first line, then
//! `name: value` lines. Pieces hyper would refuse to build are skipped, as hyper's parser
//! refuses them before the check ever runs; the check must never panic on the rest.

use bunsan_node::http::strict::{check, Refusal};
use http::{HeaderName, HeaderValue, Method, Request, Uri, Version};

/// Builds a request head from `data` and checks it.
pub fn strict_head(data: &[u8]) {
    let mut lines = data.split(|&b| b == b'\n').map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let Some(request_line) = lines.next() else { return };
    let mut parts = request_line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else { return };
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method), Uri::try_from(target)) else { return };
    let version = match parts.next() {
        Some(b"HTTP/1.0") => Version::HTTP_10,
        Some(b"HTTP/2") => Version::HTTP_2,
        _ => Version::HTTP_11,
    };
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            req.headers_mut().append(name, value);
        }
    }
    if let Err(refusal) = check(&req) {
        // A refusal is sent to the client as is: it must say something.
        let (Refusal::BadRequest(why) | Refusal::NotAllowed(why)) = refusal;
        assert!(!why.is_empty());
    }
    if *req.method() == Method::CONNECT {
        assert!(check(&req).is_err(), "bunsan is not a forward proxy");
    }
}
