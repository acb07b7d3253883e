//! Parsers for the string values with a syntax of their own: names, addresses, hash keys.
//! They know nothing of spans; the decoders turn their errors into [`ErrorKind`]s.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use crate::error::ErrorKind;
use crate::model::HashKey;

/// The longest name a listener, pool or server may have.
const MAX_NAME_LEN: usize = 64;

/// Checks a listener, pool or server name. Names appear in admin URLs (`app/host1`) and
/// metric labels, so they are kept to characters that need no escaping in either.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let rule = "names are 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'";
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(allowed) {
        return Err(format!("invalid name {name:?}: {rule}"));
    }
    // "." and ".." are URL dot-segments: clients would rewrite `/pools/..` before sending.
    if name == "." || name == ".." {
        return Err(format!("invalid name {name:?}: \".\" and \"..\" cannot appear in URLs"));
    }
    Ok(())
}

/// An address split into host and port.
struct HostPort<'t> {
    host: &'t str,
    port: u16,
    /// Whether the host was written in brackets, i.e. must be an IPv6 address.
    bracketed: bool,
}

/// Splits `HOST:PORT` or `[IPV6]:PORT`, saying precisely what is wrong if it cannot.
fn split_host_port(text: &str) -> Result<HostPort<'_>, String> {
    let bracketed = text.starts_with('[');
    let (host, port) = if bracketed { split_bracketed(text) } else { split_plain(text) }?;
    if host.is_empty() {
        return Err("missing host before the port".to_owned());
    }
    Ok(HostPort { host, port: parse_port(port)?, bracketed })
}

/// Splits `[IPV6]:PORT` into the text inside the brackets and the port text.
fn split_bracketed(text: &str) -> Result<(&str, &str), String> {
    let rest = text.get(1..).unwrap_or_default();
    let (host, after) = rest.split_once(']').ok_or("missing ']' after the IPv6 address")?;
    let port = after.strip_prefix(':').ok_or("missing port after ']' (expected [IPV6]:PORT)")?;
    Ok((host, port))
}

/// Splits `HOST:PORT` at its last colon.
fn split_plain(text: &str) -> Result<(&str, &str), String> {
    let (host, port) = text.rsplit_once(':').ok_or("missing port (expected HOST:PORT)")?;
    if host.contains(':') {
        return Err("IPv6 addresses must be in brackets, like \"[::1]:8080\"".to_owned());
    }
    Ok((host, port))
}

/// Parses a port number, telling a missing port from a malformed or too large one.
fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("missing port after ':'".to_owned());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port {text:?}"));
    }
    text.parse().map_err(|_| format!("port {text} is out of range (0..=65535)"))
}

/// The host as a literal IP, if it is one. Brackets are for IPv6 only, and IPv6 needs them.
fn literal_ip(hp: &HostPort<'_>) -> Option<IpAddr> {
    if hp.bracketed {
        hp.host.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        hp.host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

/// The error for an address `text` that is invalid because of `reason`.
pub(crate) fn invalid_address(text: &str, reason: String) -> ErrorKind {
    ErrorKind::InvalidAddress { value: text.to_owned(), reason }
}

/// Parses a listen address: a literal `IP:PORT` (port 0 = any free port).
pub(crate) fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let hp = split_host_port(text)?;
    match literal_ip(&hp) {
        Some(ip) => Ok(SocketAddr::new(ip, hp.port)),
        None => Err(format!(
            "{:?} is not an IP address (listen addresses are literal, like \"0.0.0.0:8080\" or \"[::]:8080\")",
            hp.host
        )),
    }
}

/// Parses a server address: `IP:PORT`, or `HOST:PORT` resolved now (first address wins).
pub(crate) fn resolve_server(text: &str) -> Result<SocketAddr, String> {
    let hp = split_host_port(text)?;
    if hp.port == 0 {
        return Err("port 0 cannot be connected to".to_owned());
    }
    if let Some(ip) = literal_ip(&hp) {
        return Ok(SocketAddr::new(ip, hp.port));
    }
    if hp.bracketed {
        return Err(format!("{:?} is not an IPv6 address", hp.host));
    }
    let mut found = (hp.host, hp.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host {:?}: {e}", hp.host))?;
    found.next().ok_or_else(|| format!("host {:?} resolved to no addresses", hp.host))
}

/// The `hash_key` forms, for error messages.
const HASH_KEY_FORMS: &str = "header:NAME, cookie:NAME, client-ip, path";

/// Parses a `hash_key`: `header:NAME`, `cookie:NAME`, `client-ip` or `path`.
pub(crate) fn parse_hash_key(text: &str) -> Result<HashKey, ErrorKind> {
    if let Some(name) = text.strip_prefix("header:") {
        // Header names are case-insensitive; lowercase is how HTTP/2 sends them.
        return check_token("header", name).map(|()| HashKey::Header(name.to_ascii_lowercase()));
    }
    if let Some(name) = text.strip_prefix("cookie:") {
        // Cookie names are case-sensitive, so kept as written.
        return check_token("cookie", name).map(|()| HashKey::Cookie(name.to_owned()));
    }
    match text {
        "client-ip" => Ok(HashKey::ClientIp),
        "path" => Ok(HashKey::Path),
        _ => Err(ErrorKind::UnknownName {
            what: "hash_key",
            value: text.to_owned(),
            valid: HASH_KEY_FORMS.to_owned(),
        }),
    }
}

/// Checks an HTTP token (RFC 9110 `token`), which both header and cookie names are.
pub(crate) fn check_token(what: &str, name: &str) -> Result<(), ErrorKind> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() {
        return Err(ErrorKind::Invalid(format!("missing {what} name after \"{what}:\"")));
    }
    if !name.chars().all(tchar) {
        let rule = "use letters, digits and !#$%&'*+-.^_`|~";
        return Err(ErrorKind::Invalid(format!("invalid {what} name {name:?}: {rule}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_url_and_label_safe() {
        for ok in ["a", "web", "host-1.example_2", "...", &"x".repeat(64)] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", "a:b", ".", "..", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listen_addresses_are_literal() {
        assert_eq!(parse_listen("0.0.0.0:8080"), Ok("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(parse_listen("[::]:0"), Ok("[::]:0".parse().unwrap()));
        assert_eq!(parse_listen("[::1]:443"), Ok("[::1]:443".parse().unwrap()));
        let reason = |t: &str| parse_listen(t).unwrap_err();
        assert_eq!(reason("127.0.0.1"), "missing port (expected HOST:PORT)");
        assert_eq!(reason("127.0.0.1:"), "missing port after ':'");
        assert_eq!(reason(":80"), "missing host before the port");
        assert_eq!(reason("1.2.3.4:65536"), "port 65536 is out of range (0..=65535)");
        assert_eq!(reason("1.2.3.4:http"), "invalid port \"http\"");
        assert_eq!(reason("1.2.3.4:+80"), "invalid port \"+80\"");
        assert_eq!(reason("::1:80"), "IPv6 addresses must be in brackets, like \"[::1]:8080\"");
        assert_eq!(reason("[::1:80"), "missing ']' after the IPv6 address");
        assert_eq!(reason("[::1]"), "missing port after ']' (expected [IPV6]:PORT)");
        assert!(reason("localhost:80").starts_with("\"localhost\" is not an IP address"));
        assert!(reason("[1.2.3.4]:80").starts_with("\"1.2.3.4\" is not an IP address"));
    }

    #[test]
    fn server_addresses_resolve_host_names() {
        assert_eq!(resolve_server("10.0.0.1:9000"), Ok("10.0.0.1:9000".parse().unwrap()));
        assert_eq!(resolve_server("[fe80::1]:9000"), Ok("[fe80::1]:9000".parse().unwrap()));
        let local = resolve_server("localhost:9000").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 9000);
        // RFC 6761: .invalid never resolves.
        let reason = resolve_server("no-such-host.invalid:80").unwrap_err();
        assert!(reason.starts_with("cannot resolve host \"no-such-host.invalid\": "), "{reason}");
        assert_eq!(resolve_server("10.0.0.1:0").unwrap_err(), "port 0 cannot be connected to");
        assert_eq!(resolve_server("[localhost]:80").unwrap_err(), "\"localhost\" is not an IPv6 address");
    }

    #[test]
    fn hash_keys() {
        assert_eq!(parse_hash_key("header:X-User"), Ok(HashKey::Header("x-user".into())));
        assert_eq!(parse_hash_key("cookie:Session"), Ok(HashKey::Cookie("Session".into())));
        assert_eq!(parse_hash_key("client-ip"), Ok(HashKey::ClientIp));
        assert_eq!(parse_hash_key("path"), Ok(HashKey::Path));
        assert!(matches!(parse_hash_key("header:"), Err(ErrorKind::Invalid(_))));
        assert!(matches!(parse_hash_key("cookie:a b"), Err(ErrorKind::Invalid(_))));
        assert!(matches!(parse_hash_key("header:a:b"), Err(ErrorKind::Invalid(_))));
        assert!(matches!(parse_hash_key("Path"), Err(ErrorKind::UnknownName { what: "hash_key", .. })));
    }
}
