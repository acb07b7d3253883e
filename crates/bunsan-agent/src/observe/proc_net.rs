//! Parsing the kernel's TCP socket tables, `/proc/net/tcp` and `/proc/net/tcp6`.
//!
//! Each data line reads `sl: LOCAL REMOTE ST …`, addresses as `HEXIP:HEXPORT`. The IP is
//! the in-memory (network order) address printed as native-endian 32-bit words (one for
//! IPv4, four for IPv6), so it is decoded with `to_ne_bytes`; the port is printed in host
//! order. Anything that does not have that shape — the header line, truncated or garbled
//! lines — is skipped: a table being rewritten while it is read must not stop the agent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::canonical;

/// `st` of an established connection.
pub const ESTABLISHED: u8 = 0x01;
/// `st` of a listening socket.
pub const LISTEN: u8 = 0x0A;

/// One socket of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketEntry {
    /// The local end (IPv4-mapped IPv6 addresses are given as IPv4).
    pub local: SocketAddr,
    /// The remote end (likewise).
    pub remote: SocketAddr,
    /// The TCP state (`01` established, `0A` listen, …).
    pub state: u8,
}

/// Every well-formed socket line of `text` (one or more tables concatenated).
pub fn parse(text: &str) -> impl Iterator<Item = SocketEntry> + '_ {
    text.lines().filter_map(parse_line)
}

/// One line; `None` for the header and anything malformed.
pub fn parse_line(line: &str) -> Option<SocketEntry> {
    let mut fields = line.split_ascii_whitespace();
    let slot = fields.next()?;
    // The header starts with `sl`, data lines with `N:`.
    if !slot.strip_suffix(':').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let local = endpoint(fields.next()?)?;
    let remote = endpoint(fields.next()?)?;
    let state = fields.next().filter(|s| s.len() == 2).and_then(hex_u32)?;
    Some(SocketEntry { local, remote, state: u8::try_from(state).ok()? })
}

/// `0100007F:1F90` or `00000000000000000000000001000000:1F90`.
fn endpoint(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::try_from(hex_u32(port).filter(|_| port.len() == 4)?).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(hex_u32(ip)?.to_ne_bytes())),
        32 => IpAddr::V6(ipv6(ip)?),
        _ => return None,
    };
    Some(canonical(SocketAddr::new(ip, port)))
}

fn ipv6(hex: &str) -> Option<Ipv6Addr> {
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
        let word = hex_u32(hex.get(i * 8..i * 8 + 8)?)?;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    Some(Ipv6Addr::from(bytes))
}

/// Up to 8 hex digits, nothing else (`from_str_radix` alone would accept a sign).
fn hex_u32(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Captured on x86-64 (little-endian): a listener on 127.0.0.1:8080, one connection to
    /// it (both ends), a TIME_WAIT, and noise.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 40001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 40002 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 40003 1 0000000000000000 20 4 30 10 -1
   3: 0A00020F:0016 0102A8C0:D431 06 00000000:00000000 03:00001234 00000000     0        0 0 3 0000000000000000
   4: garbage
   5: 0100007F:1F90 0100007F:C351
   6: 0100007F:1F9 0100007F:C351 01
   7: +100007F:1F90 0100007F:C351 01
";

    /// An IPv6 listener on [::1]:8443, a native IPv6 connection, and an IPv4 client of a
    /// dual-stack listener (so both ends are IPv4-mapped).
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:20FB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 50001 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:20FB 00000000000000000000000001000000:E2D4 01 00000000:00000000 00:00000000 00000000     0        0 50002 1 0000000000000000 20 4 30 10 -1
   2: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:C352 01 00000000:00000000 00:00000000 00000000     0        0 50003 1 0000000000000000 20 4 30 10 -1
   3: 000080FE00000000FF005452DEAD000:0050 00000000:0000 01
";

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn ipv4_table_parses_states_and_skips_the_header_and_bad_lines() {
        let entries: Vec<SocketEntry> = parse(TCP).collect();
        assert_eq!(entries.len(), 4, "{entries:?}");
        assert_eq!(
            entries[0],
            SocketEntry { local: addr("127.0.0.1:8080"), remote: addr("0.0.0.0:0"), state: LISTEN }
        );
        assert_eq!(
            entries[1],
            SocketEntry {
                local: addr("127.0.0.1:8080"),
                remote: addr("127.0.0.1:50000"),
                state: ESTABLISHED
            }
        );
        assert_eq!(entries[2].local, addr("127.0.0.1:50000"));
        assert_eq!((entries[3].local, entries[3].remote), (addr("15.2.0.10:22"), addr("192.168.2.1:54321")));
        assert_eq!(entries[3].state, 0x06);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn ipv6_table_parses_and_mapped_addresses_become_ipv4() {
        let entries: Vec<SocketEntry> = parse(TCP6).collect();
        assert_eq!(entries.len(), 3, "{entries:?}");
        assert_eq!(entries[0].local, addr("[::1]:8443"));
        assert_eq!(entries[0].state, LISTEN);
        assert_eq!(
            entries[1],
            SocketEntry { local: addr("[::1]:8443"), remote: addr("[::1]:58068"), state: ESTABLISHED }
        );
        assert_eq!(
            entries[2],
            SocketEntry {
                local: addr("127.0.0.1:8080"),
                remote: addr("127.0.0.1:50002"),
                state: ESTABLISHED
            }
        );
    }

    #[test]
    fn both_tables_concatenated_parse_together() {
        assert_eq!(parse(&format!("{TCP}{TCP6}")).count(), 7);
        assert_eq!(parse("").count(), 0);
        assert_eq!(parse("sl local_address\n\n   \n:").count(), 0);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(text in "\\PC*") {
            let _ = parse(&text).count();
        }

        #[test]
        fn never_panics_on_line_shaped_text(
            slot in "[0-9]{0,3}:?",
            local in "[0-9A-Fa-f:+-]{0,40}",
            remote in "[0-9A-Fa-f:]{0,40}",
            state in "[0-9A-Fa-fx]{0,3}",
        ) {
            let _ = parse_line(&format!("{slot} {local} {remote} {state} 00000000:00000000"));
        }
    }
}
