//! The PROXY protocol header (HAProxy's spec, versions 1 and 2): how a proxy tells the
//! next hop the client's real address by putting a header in front of a TCP stream.
//!
//! [`parse`] works on whatever prefix of the stream has arrived: it says
//! [`Parsed::Incomplete`] until the header is whole, then how many bytes it took, so the
//! caller keeps every byte that follows. Only TCP over IPv4/IPv6 carries addresses here;
//! the v2 LOCAL command gives [`ProxyHeader::Local`], and `PROXY UNKNOWN` (v1), the v2
//! UNSPEC family and the UNIX and UDP families are accepted as [`ProxyHeader::Unknown`]
//! (the receiver then uses the connection's own addresses, as the spec allows). v2 TLVs
//! are checked to fit the declared length and otherwise skipped.
//!
//! ```
//! use bunsan_proto::proxy_header::{parse, Parsed, ProxyHeader, Version};
//! let header = ProxyHeader::tcp("203.0.113.7:4242".parse().unwrap(), "192.0.2.1:443".parse().unwrap());
//! let mut bytes = header.encode(Version::V2);
//! let len = bytes.len();
//! bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
//! assert_eq!(parse(&bytes[..10]).unwrap(), Parsed::Incomplete);
//! assert_eq!(parse(&bytes).unwrap(), Parsed::Complete(header, len));
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes every v2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// What every v1 header starts with.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 header the spec allows, CRLF included.
pub const V1_MAX_LEN: usize = 107;
/// The fixed part of a v2 header: signature, version/command, family, length.
const V2_FIXED_LEN: usize = 16;
/// The largest v2 address-and-TLV block accepted. The spec allows 65,535 bytes; bunsan
/// caps it so a connection cannot make the node hold 64 KiB before it is even known to
/// be a client. 4 KiB leaves room for the TLVs proxies send (ALPN, SNI, TLS details).
pub const V2_MAX_PAYLOAD: usize = 4096;

/// Address block lengths of the v2 families.
const INET_LEN: usize = 12;
const INET6_LEN: usize = 36;
const UNIX_LEN: usize = 216;

/// A PROXY protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The text header: `PROXY TCP4 SRC DST SPORT DPORT\r\n`.
    V1,
    /// The binary header.
    V2,
}

/// What a PROXY header says about the connection it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyHeader {
    /// A proxied TCP connection: the client's address and the address it connected to.
    /// Both have the same family (see [`ProxyHeader::tcp`]).
    Tcp {
        /// The client.
        source: SocketAddr,
        /// Where the client connected.
        destination: SocketAddr,
    },
    /// The proxy's own connection (v2 LOCAL, e.g. a health check): use the TCP peer.
    Local,
    /// A proxied connection whose addresses are unknown or not TCP/IP (v1 `UNKNOWN`, v2
    /// UNSPEC, UNIX or UDP): use the TCP peer.
    Unknown,
}

/// How far [`parse`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The bytes are a valid start of a header; more are needed.
    Incomplete,
    /// A whole header, and how many bytes it took (the bytes after it are data).
    Complete(ProxyHeader, usize),
}

/// Why bytes are not a PROXY header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyHeaderError {
    /// Neither the v1 `PROXY ` prefix nor the v2 signature.
    #[error("not a PROXY protocol header (bad signature)")]
    BadSignature,
    /// No CRLF within the 107 bytes a v1 header may take.
    #[error("v1 header line longer than {V1_MAX_LEN} bytes")]
    V1LineTooLong,
    /// A v1 line that ends in a bare LF.
    #[error("v1 header line does not end with CRLF")]
    V1BadLineEnd,
    /// A v1 field that is missing, malformed or out of range.
    #[error("bad v1 field: {0}")]
    V1BadField(&'static str),
    /// A v1 protocol other than TCP4, TCP6 or UNKNOWN.
    #[error("unsupported v1 protocol")]
    V1UnsupportedProtocol,
    /// A v2 version nibble other than 2.
    #[error("unsupported PROXY protocol version {0}")]
    UnsupportedVersion(u8),
    /// A v2 command other than LOCAL (0) or PROXY (1).
    #[error("unsupported v2 command {0}")]
    UnsupportedCommand(u8),
    /// A v2 family/protocol byte outside the spec.
    #[error("unsupported v2 address family/protocol byte {0:#04x}")]
    UnsupportedFamily(u8),
    /// A v2 length above [`V2_MAX_PAYLOAD`].
    #[error("v2 length {0} exceeds the {V2_MAX_PAYLOAD}-byte limit")]
    V2TooLong(usize),
    /// A v2 length too short for the addresses of its family.
    #[error("v2 length {len} is too short for the family's {need}-byte addresses")]
    V2AddressesTruncated {
        /// The declared length.
        len: usize,
        /// What the family needs.
        need: usize,
    },
    /// A v2 TLV that runs past the declared length.
    #[error("v2 TLV overflows the header length")]
    V2TlvOverflow,
}

impl ProxyHeader {
    /// A TCP header. Mixed families are written as IPv6, the IPv4 side as
    /// `::ffff:a.b.c.d`, since both versions carry one family per header.
    pub fn tcp(source: SocketAddr, destination: SocketAddr) -> Self {
        let (source, destination) = match (source.ip(), destination.ip()) {
            (IpAddr::V4(_), IpAddr::V6(_)) => (mapped(source), destination),
            (IpAddr::V6(_), IpAddr::V4(_)) => (source, mapped(destination)),
            _ => (source, destination),
        };
        Self::Tcp { source, destination }
    }

    /// The client's address, when the header carries one.
    pub fn source(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp { source, .. } => Some(*source),
            Self::Local | Self::Unknown => None,
        }
    }

    /// The header in `version`'s wire format.
    pub fn encode(&self, version: Version) -> Vec<u8> {
        match version {
            Version::V1 => self.encode_v1(),
            Version::V2 => self.encode_v2(),
        }
    }

    /// The v1 text header; `Local` has no v1 form and is written as `UNKNOWN`.
    pub fn encode_v1(&self) -> Vec<u8> {
        let Self::Tcp { source, destination } = Self::normalized(self) else {
            return b"PROXY UNKNOWN\r\n".to_vec();
        };
        let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
        let (s, d) = (source, destination);
        format!("PROXY {family} {} {} {} {}\r\n", s.ip(), d.ip(), s.port(), d.port()).into_bytes()
    }

    /// The v2 binary header, without TLVs.
    pub fn encode_v2(&self) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        match Self::normalized(self) {
            Self::Local => out.extend_from_slice(&[0x20, 0x00, 0, 0]),
            Self::Unknown => out.extend_from_slice(&[0x21, 0x00, 0, 0]),
            Self::Tcp { source, destination } => {
                let (family, len) = if source.is_ipv4() { (0x11, INET_LEN) } else { (0x21, INET6_LEN) };
                out.extend_from_slice(&[0x21, family]);
                out.extend_from_slice(&(len as u16).to_be_bytes());
                push_ip(&mut out, source.ip());
                push_ip(&mut out, destination.ip());
                out.extend_from_slice(&source.port().to_be_bytes());
                out.extend_from_slice(&destination.port().to_be_bytes());
            }
        }
        out
    }

    /// The same header with both addresses in one family (a `Tcp` built by hand may mix).
    fn normalized(&self) -> Self {
        match *self {
            Self::Tcp { source, destination } => Self::tcp(source, destination),
            other => other,
        }
    }
}

fn mapped(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), addr.port()),
        IpAddr::V6(_) => addr,
    }
}

fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
}

/// Parses the PROXY header at the start of `bytes` (v1 or v2, told apart by the first
/// byte). Fails as soon as the bytes seen cannot start a valid header.
pub fn parse(bytes: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    match bytes.first() {
        None => Ok(Parsed::Incomplete),
        Some(b'P') => parse_v1(bytes),
        Some(b'\r') => parse_v2(bytes),
        Some(_) => Err(ProxyHeaderError::BadSignature),
    }
}

/// True when `bytes` and `expected` agree on their common length.
fn agrees(bytes: &[u8], expected: &[u8]) -> bool {
    let n = bytes.len().min(expected.len());
    bytes[..n] == expected[..n]
}

fn parse_v1(bytes: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    if !agrees(bytes, V1_PREFIX) {
        return Err(ProxyHeaderError::BadSignature);
    }
    let window = &bytes[..bytes.len().min(V1_MAX_LEN)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if bytes.len() >= V1_MAX_LEN {
            Err(ProxyHeaderError::V1LineTooLong)
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    if window[lf - 1] != b'\r' {
        return Err(ProxyHeaderError::V1BadLineEnd);
    }
    let line = &window[V1_PREFIX.len()..lf - 1];
    Ok(Parsed::Complete(v1_fields(line)?, lf + 1))
}

/// The fields after `PROXY `, CRLF removed.
fn v1_fields(line: &[u8]) -> Result<ProxyHeader, ProxyHeaderError> {
    use ProxyHeaderError::V1BadField;
    if !line.is_ascii() {
        return Err(V1BadField("not ASCII"));
    }
    let line = std::str::from_utf8(line).map_err(|_| V1BadField("not ASCII"))?;
    let mut fields = line.split(' ');
    let ipv4 = match fields.next() {
        // The spec: after UNKNOWN, the receiver ignores the rest of the line.
        Some("UNKNOWN") => return Ok(ProxyHeader::Unknown),
        Some("TCP4") => true,
        Some("TCP6") => false,
        _ => return Err(ProxyHeaderError::V1UnsupportedProtocol),
    };
    let source = v1_ip(fields.next(), ipv4, "source address")?;
    let destination = v1_ip(fields.next(), ipv4, "destination address")?;
    let source_port = v1_port(fields.next(), "source port")?;
    let destination_port = v1_port(fields.next(), "destination port")?;
    if fields.next().is_some() {
        return Err(V1BadField("extra field after the destination port"));
    }
    Ok(ProxyHeader::Tcp {
        source: SocketAddr::new(source, source_port),
        destination: SocketAddr::new(destination, destination_port),
    })
}

fn v1_ip(field: Option<&str>, ipv4: bool, what: &'static str) -> Result<IpAddr, ProxyHeaderError> {
    let field = field.ok_or(ProxyHeaderError::V1BadField(what))?;
    let parsed = if ipv4 {
        field.parse::<Ipv4Addr>().map(IpAddr::V4).ok()
    } else {
        field.parse::<Ipv6Addr>().map(IpAddr::V6).ok()
    };
    parsed.ok_or(ProxyHeaderError::V1BadField(what))
}

/// A decimal port, 0..=65535, without sign or leading zeroes (the spec forbids them).
fn v1_port(field: Option<&str>, what: &'static str) -> Result<u16, ProxyHeaderError> {
    let bad = ProxyHeaderError::V1BadField(what);
    let field = field.ok_or(bad.clone())?;
    let digits_only = !field.is_empty() && field.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (field.len() > 1 && field.starts_with('0')) {
        return Err(bad);
    }
    field.parse().map_err(|_| bad)
}

fn parse_v2(bytes: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    if !agrees(bytes, &V2_SIGNATURE) {
        return Err(ProxyHeaderError::BadSignature);
    }
    let Some(fixed) = bytes.get(..V2_FIXED_LEN) else { return Ok(Parsed::Incomplete) };
    let (version, command, family) = (fixed[12] >> 4, fixed[12] & 0x0f, fixed[13]);
    if version != 2 {
        return Err(ProxyHeaderError::UnsupportedVersion(version));
    }
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > V2_MAX_PAYLOAD {
        return Err(ProxyHeaderError::V2TooLong(len));
    }
    let Some(payload) = bytes.get(V2_FIXED_LEN..V2_FIXED_LEN + len) else { return Ok(Parsed::Incomplete) };
    let header = match command {
        // LOCAL: the spec says to ignore the family and the whole block.
        0 => ProxyHeader::Local,
        1 => v2_proxy(family, payload)?,
        other => return Err(ProxyHeaderError::UnsupportedCommand(other)),
    };
    Ok(Parsed::Complete(header, V2_FIXED_LEN + len))
}

/// The PROXY command's block: addresses for TCP over IPv4/IPv6, `Unknown` otherwise.
fn v2_proxy(family: u8, payload: &[u8]) -> Result<ProxyHeader, ProxyHeaderError> {
    let need = match family >> 4 {
        0 => return Ok(ProxyHeader::Unknown),
        1 => INET_LEN,
        2 => INET6_LEN,
        3 => UNIX_LEN,
        _ => return Err(ProxyHeaderError::UnsupportedFamily(family)),
    };
    let stream = match family & 0x0f {
        1 => true,
        2 => false,
        _ => return Err(ProxyHeaderError::UnsupportedFamily(family)),
    };
    let (addresses, tlvs) = payload
        .split_at_checked(need)
        .ok_or(ProxyHeaderError::V2AddressesTruncated { len: payload.len(), need })?;
    check_tlvs(tlvs)?;
    Ok(match (family >> 4, stream) {
        (1, true) => v2_tcp(addresses, 4),
        (2, true) => v2_tcp(addresses, 16),
        _ => ProxyHeader::Unknown,
    })
}

/// Source and destination addresses of `n` (4 or 16) bytes each, then the two ports.
fn v2_tcp(block: &[u8], n: usize) -> ProxyHeader {
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    ProxyHeader::Tcp {
        source: SocketAddr::new(ip(&block[..n]), port(2 * n)),
        destination: SocketAddr::new(ip(&block[n..2 * n]), port(2 * n + 2)),
    }
}

/// An address from its 4 or 16 octets.
fn ip(octets: &[u8]) -> IpAddr {
    if let Ok(v4) = <[u8; 4]>::try_from(octets) {
        return IpAddr::from(v4);
    }
    <[u8; 16]>::try_from(octets).map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), IpAddr::from)
}

/// Walks the TLVs (type, 16-bit length, value) and checks none runs past the block.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyHeaderError> {
    while !tlvs.is_empty() {
        let [_, high, low, rest @ ..] = tlvs else { return Err(ProxyHeaderError::V2TlvOverflow) };
        let len = usize::from(u16::from_be_bytes([*high, *low]));
        tlvs = rest.get(len..).ok_or(ProxyHeaderError::V2TlvOverflow)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "proxy_header_tests.rs"]
mod tests;
