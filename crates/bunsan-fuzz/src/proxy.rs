//! `proxy_header`: [`bunsan_proto::proxy_header::parse`] on any stream prefix. A header
//! that parses needs exactly the bytes it claims (its prefixes are `Incomplete`, the
//! bytes after it do not matter), and re-encoded in either version it parses back to the
//! same header.

use bunsan_proto::proxy_header::{parse, Parsed, ProxyHeader, Version};

/// Parses `data` as the start of a connection on an `accept_proxy` listener.
pub fn proxy_header(data: &[u8]) {
    let Ok(Parsed::Complete(header, len)) = parse(data) else { return };
    assert!(len > 0 && len <= data.len());
    // The node keeps the bytes after the header: they must not have mattered.
    assert_eq!(parse(&data[..len]), Ok(Parsed::Complete(header, len)));
    // A header cut short waits for more rather than failing (a slow client is no error).
    for cut in [0, len / 2, len - 1] {
        assert_eq!(parse(&data[..cut]), Ok(Parsed::Incomplete), "prefix of {cut} bytes");
    }
    re_encode(header, Version::V2, header);
    // v1 has no LOCAL command: it is written as UNKNOWN.
    let v1 = if header == ProxyHeader::Local { ProxyHeader::Unknown } else { header };
    re_encode(header, Version::V1, v1);
}

fn re_encode(header: ProxyHeader, version: Version, expected: ProxyHeader) {
    let bytes = header.encode(version);
    assert_eq!(parse(&bytes), Ok(Parsed::Complete(expected, bytes.len())), "{version:?} of {header:?}");
}
