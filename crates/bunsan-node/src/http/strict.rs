//! Request heads the node refuses to forward, beyond what hyper's parser already refuses.
//!
//! hyper rejects malformed request lines, header names and values (CR, LF, NUL, other
//! control characters, obsolete line folding), invalid `Content-Length` values and
//! differing duplicates, and bad chunk framing. What it accepts and a load balancer must
//! not — because the server behind it might read the message differently — is checked
//! here: any `Transfer-Encoding` but a single `chunked` (other codings would reach the server undecoded), `Transfer-Encoding`
//! in HTTP/1.0, a missing, repeated or malformed `Host`, an absolute-form target that
//! disagrees with `Host`, `CONNECT` (bunsan is not a forward proxy) and `*` outside
//! `OPTIONS`.
//!
//! `Transfer-Encoding` together with `Content-Length` is normalised, as RFC 9112 §6.3
//! allows: hyper frames the body by `Transfer-Encoding`, drops `Content-Length`, and
//! closes the connection after the response, so bytes after the body are never read as
//! another request (the check below still refuses the pair if hyper ever kept both).

use http::header::{self, HeaderMap};
use http::uri::Authority;
use http::{Method, Request, Version};

/// Why a request head is refused, as sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `400`, with the reason.
    BadRequest(&'static str),
    /// `405`: a method the node does not forward.
    NotAllowed(&'static str),
}

/// Checks a request head as hyper parsed it.
pub fn check<B>(req: &Request<B>) -> Result<(), Refusal> {
    let headers = req.headers();
    if req.method() == Method::CONNECT {
        return Err(Refusal::NotAllowed("CONNECT is not forwarded"));
    }
    if req.uri().path() == "*" && req.method() != Method::OPTIONS {
        return Err(Refusal::BadRequest("asterisk-form is only for OPTIONS"));
    }
    if req.version() < Version::HTTP_2 {
        framing(headers, req.version())?;
    }
    host(req)
}

/// Message framing of an HTTP/1 request.
fn framing(headers: &HeaderMap, version: Version) -> Result<(), Refusal> {
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    let Some(first) = codings.next() else { return Ok(()) };
    if version == Version::HTTP_10 {
        return Err(Refusal::BadRequest("Transfer-Encoding in an HTTP/1.0 request"));
    }
    if headers.contains_key(header::CONTENT_LENGTH) {
        return Err(Refusal::BadRequest("both Content-Length and Transfer-Encoding"));
    }
    let only_chunked = first.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked");
    if !only_chunked || codings.next().is_some() {
        return Err(Refusal::BadRequest("Transfer-Encoding other than a single chunked"));
    }
    Ok(())
}

/// One well-formed `Host` (HTTP/1.1 requires it; HTTP/2 may carry `:authority` only),
/// agreeing with the target's authority when the target has one.
fn host<B>(req: &Request<B>) -> Result<(), Refusal> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::BadRequest("more than one Host header"));
    }
    let host = host.map(|h| authority(h.as_bytes())).transpose()?;
    if let Some(scheme) = req.uri().scheme_str() {
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(Refusal::BadRequest("a target scheme other than http or https"));
        }
    }
    match (req.uri().authority(), &host) {
        (Some(target), Some(host)) if !target.as_str().eq_ignore_ascii_case(host.as_str()) => {
            Err(Refusal::BadRequest("the target's authority disagrees with Host"))
        }
        (None, None) if req.version() == Version::HTTP_11 => Err(Refusal::BadRequest("missing Host header")),
        _ => Ok(()),
    }
}

/// A `Host` value: `host[:port]`, no user info, not empty.
fn authority(value: &[u8]) -> Result<Authority, Refusal> {
    let bad = Refusal::BadRequest("malformed Host header");
    if value.is_empty() || value.contains(&b'@') {
        return Err(bad);
    }
    Authority::try_from(value).map_err(|_| bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get(uri).version(version);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn framing_must_be_unambiguous() {
        let ok = req(Version::HTTP_11, "/", &[("host", "a"), ("transfer-encoding", "Chunked")]);
        assert_eq!(check(&ok), Ok(()));
        for bad in [
            vec![("host", "a"), ("transfer-encoding", "chunked"), ("content-length", "5")],
            vec![("host", "a"), ("transfer-encoding", "gzip, chunked")],
            vec![("host", "a"), ("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")],
        ] {
            assert!(
                matches!(check(&req(Version::HTTP_11, "/", &bad)), Err(Refusal::BadRequest(_))),
                "{bad:?}"
            );
        }
        let old = req(Version::HTTP_10, "/", &[("transfer-encoding", "chunked")]);
        assert!(check(&old).is_err());
    }

    #[test]
    fn host_must_be_one_well_formed_authority_agreeing_with_the_target() {
        assert_eq!(check(&req(Version::HTTP_11, "/", &[("host", "a.example:8080")])), Ok(()));
        assert_eq!(check(&req(Version::HTTP_10, "/", &[])), Ok(()));
        assert_eq!(check(&req(Version::HTTP_11, "http://A.example/x", &[("host", "a.example")])), Ok(()));
        for (uri, hosts) in [
            ("/", vec![]),
            ("/", vec![("host", "a"), ("host", "a")]),
            ("/", vec![("host", "")]),
            ("/", vec![("host", "u@a")]),
            ("/", vec![("host", "a b")]),
            ("http://evil.example/", vec![("host", "good.example")]),
            ("ftp://a/", vec![("host", "a")]),
        ] {
            assert!(check(&req(Version::HTTP_11, uri, &hosts)).is_err(), "{uri} {hosts:?}");
        }
    }
}
