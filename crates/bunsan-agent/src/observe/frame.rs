//! Reading a captured frame far enough to know which TCP endpoint it is addressed to:
//! Ethernet (with at most one 802.1Q tag) → IPv4 or IPv6 → TCP destination port.
//!
//! Only the first fragment of an IPv4 packet carries the TCP header, so later fragments
//! are not counted; IPv6 packets are counted when TCP directly follows the fixed header
//! (extension headers are rare on TCP traffic, and the kernel filter in
//! [`super::packets`] expects the same shape).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: u16 = 0x8100;
const PROTOCOL_TCP: u8 = 6;

/// The TCP destination of an Ethernet frame; `None` for anything else or anything cut short.
pub fn tcp_destination(frame: &[u8]) -> Option<SocketAddr> {
    let mut ethertype = be16(frame, 12)?;
    let mut offset = 14;
    if ethertype == ETHERTYPE_VLAN {
        ethertype = be16(frame, 16)?;
        offset = 18;
    }
    let packet = frame.get(offset..)?;
    match ethertype {
        ETHERTYPE_IPV4 => ipv4(packet),
        ETHERTYPE_IPV6 => ipv6(packet),
        _ => None,
    }
}

fn ipv4(packet: &[u8]) -> Option<SocketAddr> {
    let first = *packet.first()?;
    let header_len = usize::from(first & 0x0F) * 4;
    if first >> 4 != 4 || header_len < 20 || *packet.get(9)? != PROTOCOL_TCP {
        return None;
    }
    // A non-zero fragment offset: no TCP header here.
    if be16(packet, 6)? & 0x1FFF != 0 {
        return None;
    }
    let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
    let port = be16(packet, header_len + 2)?;
    Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(dst)), port))
}

fn ipv6(packet: &[u8]) -> Option<SocketAddr> {
    if *packet.first()? >> 4 != 6 || *packet.get(6)? != PROTOCOL_TCP {
        return None;
    }
    let dst: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
    let port = be16(packet, 42)?;
    Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(dst)), port))
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at.checked_add(1)?)?]))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    fn ipv4_tcp(dst: [u8; 4], port: u16, options: usize) -> Vec<u8> {
        let mut packet = vec![0u8; 20 + options];
        packet[0] = 0x40 | u8::try_from((20 + options) / 4).unwrap();
        packet[9] = PROTOCOL_TCP;
        packet[16..20].copy_from_slice(&dst);
        let mut tcp = vec![0u8; 20];
        tcp[2..4].copy_from_slice(&port.to_be_bytes());
        packet.extend_from_slice(&tcp);
        packet
    }

    fn ipv6_tcp(dst: Ipv6Addr, port: u16, next: u8) -> Vec<u8> {
        let mut packet = vec![0u8; 40];
        packet[0] = 0x60;
        packet[6] = next;
        packet[24..40].copy_from_slice(&dst.octets());
        let mut tcp = vec![0u8; 20];
        tcp[2..4].copy_from_slice(&port.to_be_bytes());
        packet.extend_from_slice(&tcp);
        packet
    }

    #[test]
    fn ipv4_with_and_without_options_and_a_vlan_tag() {
        let frame = ethernet(ETHERTYPE_IPV4, &ipv4_tcp([10, 0, 0, 7], 8080, 0));
        assert_eq!(tcp_destination(&frame), Some("10.0.0.7:8080".parse().unwrap()));
        let frame = ethernet(ETHERTYPE_IPV4, &ipv4_tcp([10, 0, 0, 7], 443, 12));
        assert_eq!(tcp_destination(&frame), Some("10.0.0.7:443".parse().unwrap()));
        let mut tagged = ethernet(ETHERTYPE_VLAN, &[0, 5]);
        tagged.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        tagged.extend_from_slice(&ipv4_tcp([192, 168, 1, 1], 80, 0));
        assert_eq!(tcp_destination(&tagged), Some("192.168.1.1:80".parse().unwrap()));
    }

    #[test]
    fn ipv6_tcp_is_read_and_other_next_headers_are_not() {
        let frame = ethernet(ETHERTYPE_IPV6, &ipv6_tcp(Ipv6Addr::LOCALHOST, 9000, PROTOCOL_TCP));
        assert_eq!(tcp_destination(&frame), Some("[::1]:9000".parse().unwrap()));
        assert_eq!(
            tcp_destination(&ethernet(ETHERTYPE_IPV6, &ipv6_tcp(Ipv6Addr::LOCALHOST, 9000, 17))),
            None
        );
    }

    #[test]
    fn udp_fragments_arp_and_short_frames_are_ignored() {
        let mut udp = ipv4_tcp([10, 0, 0, 7], 53, 0);
        udp[9] = 17;
        assert_eq!(tcp_destination(&ethernet(ETHERTYPE_IPV4, &udp)), None);
        let mut fragment = ipv4_tcp([10, 0, 0, 7], 80, 0);
        fragment[7] = 1;
        assert_eq!(tcp_destination(&ethernet(ETHERTYPE_IPV4, &fragment)), None);
        assert_eq!(tcp_destination(&ethernet(0x0806, &[0; 28])), None);
        let full = ethernet(ETHERTYPE_IPV4, &ipv4_tcp([10, 0, 0, 7], 80, 0));
        assert_eq!(tcp_destination(&full[..35]), None);
        assert_eq!(tcp_destination(&[]), None);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = tcp_destination(&bytes);
        }
    }
}
