//! Header rewriting between client and server: hop-by-hop headers out, forwarding
//! headers (`X-Forwarded-For`, `X-Forwarded-Proto`, `Forwarded`) in.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1), plus the
/// legacy `Proxy-Connection` and `Keep-Alive`.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Headers a `Connection` option may not remove: the proxy's own additions and the
/// message's routing. Without this a client could write `Connection: x-forwarded-for`
/// to make the server see a spoofed client address left over from an earlier hop.
const PROTECTED: [HeaderName; 3] =
    [header::HOST, HeaderName::from_static("x-forwarded-for"), header::FORWARDED];

/// Removes hop-by-hop headers, including every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .filter(|name| !PROTECTED.contains(name))
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Whether the client's `TE` header lists `trailers` (it will accept trailer fields, as
/// gRPC clients say).
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| coding.split(';').next().is_some_and(|c| c.trim().eq_ignore_ascii_case("trailers")))
}

/// What the node knows about the client side of a request.
#[derive(Debug, Clone, Copy)]
pub struct ClientSide<'a> {
    /// The client's address.
    pub addr: SocketAddr,
    /// `"https"` on TLS listeners, else `"http"`.
    pub proto: &'a str,
}

/// Adds this hop to `X-Forwarded-For` and `Forwarded` and sets `X-Forwarded-Proto`.
/// Earlier hops' values are kept (appended to, never trusted for routing).
pub fn add_forwarding(headers: &mut HeaderMap, client: ClientSide<'_>, host: Option<&HeaderValue>) {
    let ip = client.addr.ip();
    append_list(headers, HeaderName::from_static("x-forwarded-for"), &ip.to_string());
    append_list(headers, header::FORWARDED, &forwarded_element(ip, client.proto, host));
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(if client.proto == "https" { "https" } else { "http" }),
    );
}

/// One RFC 7239 element: `for=…;proto=…;host="…"`.
fn forwarded_element(ip: IpAddr, proto: &str, host: Option<&HeaderValue>) -> String {
    let mut element = match ip {
        IpAddr::V4(v4) => format!("for={v4}"),
        // An IPv6 address contains ':', which is not a token character: quote it.
        IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
    };
    element.push_str(";proto=");
    element.push_str(proto);
    if let Some(host) = host.and_then(|h| h.to_str().ok()).filter(|h| is_quotable(h)) {
        element.push_str(";host=\"");
        element.push_str(host);
        element.push('"');
    }
    element
}

/// Whether `s` can go inside a quoted-string without escapes.
fn is_quotable(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// Appends `item` to a comma-separated list header, folding earlier copies into one line.
fn append_list(headers: &mut HeaderMap, name: HeaderName, item: &str) {
    let mut joined = String::new();
    for value in headers.get_all(&name).iter().filter_map(|v| v.to_str().ok()) {
        joined.push_str(value);
        joined.push_str(", ");
    }
    joined.push_str(item);
    if let Ok(value) = HeaderValue::from_str(&joined) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_connection_options_but_not_protected_ones() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret, host, X-Forwarded-For"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("host", "example.com"),
            ("x-forwarded-for", "10.0.0.1"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["accept", "host", "x-forwarded-for"]);
    }

    #[test]
    fn forwarding_headers_append_to_earlier_hops() {
        let mut h = map(&[("x-forwarded-for", "10.0.0.1"), ("x-forwarded-for", "10.0.0.2")]);
        let client = ClientSide { addr: "192.0.2.7:5000".parse().unwrap(), proto: "https" };
        let host = HeaderValue::from_static("example.com:8443");
        add_forwarding(&mut h, client, Some(&host));
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["forwarded"], "for=192.0.2.7;proto=https;host=\"example.com:8443\"");
    }

    #[test]
    fn forwarded_quotes_ipv6_and_skips_unquotable_hosts() {
        let mut h = HeaderMap::new();
        let client = ClientSide { addr: "[2001:db8::1]:443".parse().unwrap(), proto: "http" };
        add_forwarding(&mut h, client, Some(&HeaderValue::from_static("a\"b")));
        assert_eq!(h["forwarded"], "for=\"[2001:db8::1]\";proto=http");
    }
}
