//! Tests of the PROXY header codec: the spec's examples, one test per error class,
//! round trips and "never panics" properties.

use super::*;
use proptest::prelude::*;
use ProxyHeaderError as E;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn v2(ver_cmd: u8, family: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[ver_cmd, family]);
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn complete(bytes: &[u8]) -> (ProxyHeader, usize) {
    match parse(bytes).unwrap() {
        Parsed::Complete(header, len) => (header, len),
        Parsed::Incomplete => panic!("incomplete: {bytes:?}"),
    }
}

#[test]
fn v1_tcp4_from_the_spec_leaves_the_data_after_it() {
    let bytes = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
    let (header, len) = complete(bytes);
    assert_eq!(header, ProxyHeader::tcp(addr("192.168.0.1:56324"), addr("192.168.0.11:443")));
    assert_eq!(&bytes[len..], b"GET / HTTP/1.1\r\n");
}

#[test]
fn v1_tcp6_and_unknown_parse() {
    let (header, _) = complete(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n");
    assert_eq!(header, ProxyHeader::tcp(addr("[2001:db8::1]:1"), addr("[2001:db8::2]:65535")));
    assert_eq!(complete(b"PROXY UNKNOWN\r\n"), (ProxyHeader::Unknown, 15));
    // After UNKNOWN the rest of the line is ignored.
    let line = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
    assert_eq!(complete(line), (ProxyHeader::Unknown, line.len()));
}

#[test]
fn v1_line_of_exactly_107_bytes_is_accepted_and_108_is_too_long() {
    let line = |len: usize| {
        let mut l = b"PROXY UNKNOWN ".to_vec();
        l.resize(len - 2, b'x');
        l.extend_from_slice(b"\r\n");
        l
    };
    assert_eq!(complete(&line(107)), (ProxyHeader::Unknown, 107));
    assert_eq!(parse(&line(108)), Err(E::V1LineTooLong));
}

#[test]
fn v1_without_crlf_is_incomplete_until_107_bytes_then_too_long() {
    let mut bytes = b"PROXY TCP4 1.2.3.4".to_vec();
    assert_eq!(parse(&bytes), Ok(Parsed::Incomplete));
    bytes.resize(106, b'9');
    assert_eq!(parse(&bytes), Ok(Parsed::Incomplete));
    bytes.push(b'9');
    assert_eq!(parse(&bytes), Err(E::V1LineTooLong));
}

#[test]
fn bad_signatures_are_refused_from_the_first_wrong_byte() {
    assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(E::BadSignature));
    assert_eq!(parse(b"PROXX"), Err(E::BadSignature));
    assert_eq!(parse(b"PROXY\r\n"), Err(E::BadSignature));
    assert_eq!(parse(b"\r\n\r\n\0\r\nQUIX"), Err(E::BadSignature));
    assert_eq!(parse(b"\r\n\r\nX"), Err(E::BadSignature));
    assert_eq!(parse(b"\x16\x03\x01"), Err(E::BadSignature));
}

#[test]
fn v1_bare_lf_is_a_bad_line_end() {
    assert_eq!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), Err(E::V1BadLineEnd));
}

#[test]
fn v1_bad_fields_name_the_field() {
    let cases: [(&[u8], &str); 11] = [
        (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "source address"),
        (b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n", "source address"),
        (b"PROXY TCP6 2001:db8::1 5.6.7.8 1 2\r\n", "destination address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "source port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "source port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", "destination port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "destination port"),
        (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "destination address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "extra field after the destination port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", "destination port"),
        (b"PROXY TCP4 \xff.2.3.4 5.6.7.8 1 2\r\n", "not ASCII"),
    ];
    for (bytes, field) in cases {
        assert_eq!(parse(bytes), Err(E::V1BadField(field)), "{}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn v1_other_protocols_are_unsupported() {
    assert_eq!(parse(b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), Err(E::V1UnsupportedProtocol));
    assert_eq!(parse(b"PROXY \r\n"), Err(E::V1UnsupportedProtocol));
}

#[test]
fn v2_tcp4_with_tlvs_skips_them_and_leaves_the_data() {
    let mut payload = vec![203, 0, 113, 7, 192, 0, 2, 1, 0x10, 0x92, 0x01, 0xbb];
    payload.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']); // ALPN "h2"
    payload.extend_from_slice(&[0x04, 0x00, 0x00]); // NOOP, empty
    let mut bytes = v2(0x21, 0x11, &payload);
    let header_len = bytes.len();
    bytes.extend_from_slice(b"data");
    let (header, len) = complete(&bytes);
    assert_eq!(header, ProxyHeader::tcp(addr("203.0.113.7:4242"), addr("192.0.2.1:443")));
    assert_eq!(len, header_len);
}

#[test]
fn v2_local_ignores_the_family_and_block() {
    assert_eq!(complete(&v2(0x20, 0xff, b"whatever")), (ProxyHeader::Local, 24));
}

#[test]
fn v2_unspec_unix_and_udp_are_unknown() {
    assert_eq!(complete(&v2(0x21, 0x00, b"")).0, ProxyHeader::Unknown);
    assert_eq!(complete(&v2(0x21, 0x31, &[0; 216])).0, ProxyHeader::Unknown);
    assert_eq!(complete(&v2(0x21, 0x32, &[0; 216])).0, ProxyHeader::Unknown);
    assert_eq!(complete(&v2(0x21, 0x12, &[0; 12])).0, ProxyHeader::Unknown);
    assert_eq!(complete(&v2(0x21, 0x22, &[0; 36])).0, ProxyHeader::Unknown);
}

#[test]
fn v2_errors_name_what_is_wrong() {
    assert_eq!(parse(&v2(0x11, 0x11, &[0; 12])), Err(E::UnsupportedVersion(1)));
    assert_eq!(parse(&v2(0x31, 0x11, &[0; 12])), Err(E::UnsupportedVersion(3)));
    assert_eq!(parse(&v2(0x22, 0x11, &[0; 12])), Err(E::UnsupportedCommand(2)));
    assert_eq!(parse(&v2(0x21, 0x41, &[0; 12])), Err(E::UnsupportedFamily(0x41)));
    assert_eq!(parse(&v2(0x21, 0x13, &[0; 12])), Err(E::UnsupportedFamily(0x13)));
    assert_eq!(parse(&v2(0x21, 0x10, &[0; 12])), Err(E::UnsupportedFamily(0x10)));
    assert_eq!(parse(&v2(0x21, 0x11, &[0; 11])), Err(E::V2AddressesTruncated { len: 11, need: 12 }));
    assert_eq!(parse(&v2(0x21, 0x21, &[0; 12])), Err(E::V2AddressesTruncated { len: 12, need: 36 }));
    assert_eq!(parse(&v2(0x21, 0x31, &[0; 100])), Err(E::V2AddressesTruncated { len: 100, need: 216 }));
}

#[test]
fn v2_length_above_the_limit_is_refused_before_it_arrives() {
    let mut bytes = V2_SIGNATURE.to_vec();
    bytes.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    assert_eq!(parse(&bytes), Err(E::V2TooLong(65535)));
    let at_limit = v2(0x21, 0x11, &[0; V2_MAX_PAYLOAD]);
    assert_eq!(parse(&at_limit[..100]), Ok(Parsed::Incomplete));
}

#[test]
fn v2_tlv_running_past_the_length_overflows() {
    let mut payload = vec![0; 12];
    payload.extend_from_slice(&[0x02, 0x00, 0x05, b'a']); // says 5, has 1
    assert_eq!(parse(&v2(0x21, 0x11, &payload)), Err(E::V2TlvOverflow));
    let mut payload = vec![0; 12];
    payload.extend_from_slice(&[0x02, 0x00]); // a TLV header cut short
    assert_eq!(parse(&v2(0x21, 0x11, &payload)), Err(E::V2TlvOverflow));
}

#[test]
fn local_is_written_as_unknown_in_v1() {
    assert_eq!(ProxyHeader::Local.encode_v1(), b"PROXY UNKNOWN\r\n");
    assert_eq!(complete(&ProxyHeader::Local.encode_v2()).0, ProxyHeader::Local);
    assert_eq!(complete(&ProxyHeader::Unknown.encode_v2()).0, ProxyHeader::Unknown);
}

#[test]
fn mixed_families_are_written_as_ipv6() {
    let header = ProxyHeader::tcp(addr("203.0.113.7:1"), addr("[2001:db8::1]:2"));
    assert_eq!(header.source(), Some(addr("[::ffff:203.0.113.7]:1")));
    let by_hand = ProxyHeader::Tcp { source: addr("203.0.113.7:1"), destination: addr("[2001:db8::1]:2") };
    for version in [Version::V1, Version::V2] {
        assert_eq!(complete(&by_hand.encode(version)).0, header);
    }
}

fn socket_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
    let v4 = (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port)));
    let v6 = (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port)));
    prop_oneof![(v4.clone(), v4), (v6.clone(), v6)]
}

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V1), Just(Version::V2)]
}

proptest! {
    #[test]
    fn tcp_headers_round_trip_and_every_shorter_prefix_is_incomplete(
        (source, destination) in socket_pair(),
        version in version(),
        data in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let header = ProxyHeader::tcp(source, destination);
        let encoded = header.encode(version);
        let mut stream = encoded.clone();
        stream.extend_from_slice(&data);
        prop_assert_eq!(parse(&stream), Ok(Parsed::Complete(header, encoded.len())));
        for end in 0..encoded.len() {
            prop_assert_eq!(parse(&encoded[..end]), Ok(Parsed::Incomplete));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        check_result(&bytes, parse(&bytes));
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_start_never_panic(
        v2_start in any::<bool>(),
        rest in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = if v2_start { V2_SIGNATURE.to_vec() } else { b"PROXY TCP".to_vec() };
        bytes.extend_from_slice(&rest);
        check_result(&bytes, parse(&bytes));
    }
}

/// Whatever `parse` said about `bytes` is consistent: a complete header lies within them.
fn check_result(bytes: &[u8], result: Result<Parsed, ProxyHeaderError>) {
    if let Ok(Parsed::Complete(_, len)) = result {
        assert!(len > 0 && len <= bytes.len());
    }
}
