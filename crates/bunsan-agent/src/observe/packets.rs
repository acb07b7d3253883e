//! The `packets` method, seed 001's own: a raw `AF_PACKET` socket sees every frame this
//! host receives, and the agent counts the TCP packets addressed to each watched server.
//!
//! - `load` = TCP packets addressed to the server (any flags: SYN, data, ACK, FIN) per
//!   second over the last interval. It grows with requests *and* with their size, and
//!   never touches the server.
//!
//! Frames this host sends (`PACKET_OUTGOING`) are skipped: on loopback the kernel shows
//! every packet twice, once leaving and once arriving. Without promiscuous mode an agent
//! sees only traffic to its own host (or what a switch floods or mirrors to it), so it
//! normally runs on the server's host. A classic BPF filter in the kernel passes only TCP
//! to the watched ports and truncates each frame to its headers, so unrelated traffic
//! never reaches the agent; when the socket buffer overflows at very high rates the kernel
//! drops frames and the load undercounts.
//!
//! Capture runs on a dedicated thread with a short receive timeout, so it notices the
//! stop flag promptly.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, sockopt, AddressFamily, LinkAddr, SockFlag, SockProtocol, SockType};
use nix::sys::time::TimeVal;
use socket2::SockFilter;

use super::{belongs_to, canonical, frame, ObserveError, Sample};

/// `sll_pkttype` of a frame this host sends.
const PACKET_OUTGOING: u8 = 4;
/// How long one receive waits, so a stop is noticed within this time.
const RECEIVE_TIMEOUT: Duration = Duration::from_millis(100);
/// Bytes kept of each frame: Ethernet + VLAN tag + the longest IPv4 header + TCP ports.
const SNAP: usize = 128;
/// Beyond this many distinct ports the filter's jumps would not fit; filtering then
/// happens in the agent only.
const MAX_FILTER_PORTS: usize = 200;

/// What the capture thread shares with the sampler.
#[derive(Debug)]
struct Shared {
    counts: Vec<AtomicU64>,
    stop: AtomicBool,
    alive: AtomicBool,
}

/// The running capture; stops its thread when dropped.
#[derive(Debug)]
pub struct Packets {
    shared: Arc<Shared>,
    /// When the previous sample was taken; `None` before the first.
    last: Option<Instant>,
}

/// Maps the error of opening the socket: a missing capability gets the message that says
/// how to grant it.
pub fn open_error(errno: Errno) -> ObserveError {
    match errno {
        Errno::EPERM | Errno::EACCES => ObserveError::PacketsPermission,
        other => ObserveError::PacketSocket(io::Error::from(other)),
    }
}

impl Packets {
    /// Opens the packet socket and starts counting packets addressed to `servers`.
    pub fn start(servers: &[SocketAddr]) -> Result<Self, ObserveError> {
        let fd = open(servers)?;
        let shared = Arc::new(Shared {
            counts: servers.iter().map(|_| AtomicU64::new(0)).collect(),
            stop: AtomicBool::new(false),
            alive: AtomicBool::new(true),
        });
        let watched: Vec<SocketAddr> = servers.iter().map(|a| canonical(*a)).collect();
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("bunsan-packets".to_owned())
            .spawn(move || capture(&fd, &watched, &thread_shared))
            .map_err(ObserveError::Thread)?;
        Ok(Self { shared, last: None })
    }

    /// Packets counted per server since the previous call (or the start).
    pub fn take_counts(&mut self) -> Vec<u64> {
        self.shared.counts.iter().map(|c| c.swap(0, Relaxed)).collect()
    }

    /// Packets per second per server since the previous sample. `None` the first time
    /// (the start is just a baseline: a rate over a few microseconds means nothing) and
    /// once the capture thread has failed (a zero would claim the servers are idle).
    pub fn sample(&mut self) -> Vec<Sample> {
        let now = Instant::now();
        let seconds = self.last.replace(now).map(|then| now.duration_since(then).as_secs_f64().max(1e-3));
        let alive = self.shared.alive.load(Relaxed);
        self.take_counts()
            .into_iter()
            .map(|count| Sample {
                load: seconds.filter(|_| alive).map(|s| count as f64 / s),
                new_per_sec: None,
            })
            .collect()
    }
}

impl Drop for Packets {
    fn drop(&mut self) {
        self.shared.stop.store(true, Relaxed);
    }
}

/// A raw packet socket for every protocol, with a receive timeout and the port filter.
fn open(servers: &[SocketAddr]) -> Result<OwnedFd, ObserveError> {
    let fd =
        socket::socket(AddressFamily::Packet, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::EthAll)
            .map_err(open_error)?;
    let timeout = TimeVal::new(0, RECEIVE_TIMEOUT.as_micros().try_into().unwrap_or(100_000));
    socket::setsockopt(&fd, sockopt::ReceiveTimeout, &timeout)
        .map_err(|e| ObserveError::PacketSocket(io::Error::from(e)))?;
    let mut ports: Vec<u16> = servers.iter().map(SocketAddr::port).collect();
    ports.sort_unstable();
    ports.dedup();
    if ports.len() > MAX_FILTER_PORTS {
        tracing::info!(ports = ports.len(), "too many ports for a kernel filter; filtering in the agent");
        return Ok(fd);
    }
    let socket = socket2::Socket::from(fd);
    socket.attach_filter(&port_filter(&ports)).map_err(ObserveError::PacketSocket)?;
    Ok(OwnedFd::from(socket))
}

/// Receives until the stop flag is set, counting frames addressed to each watched server.
fn capture(fd: &OwnedFd, watched: &[SocketAddr], shared: &Shared) {
    let mut buffer = [0u8; SNAP];
    while !shared.stop.load(Relaxed) {
        match socket::recvfrom::<LinkAddr>(fd.as_raw_fd(), &mut buffer) {
            Ok((len, link)) => {
                if link.is_some_and(|l| l.pkttype() == PACKET_OUTGOING) {
                    continue;
                }
                let Some(dst) = buffer.get(..len).and_then(frame::tcp_destination) else { continue };
                for (server, count) in watched.iter().zip(&shared.counts) {
                    if belongs_to(*server, dst) {
                        count.fetch_add(1, Relaxed);
                    }
                }
            }
            // The receive timeout: time to look at the stop flag.
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(error) => {
                tracing::error!(%error, "packet capture failed; packets load is unknown from now on");
                shared.alive.store(false, Relaxed);
                return;
            }
        }
    }
}

// Classic BPF opcodes (linux/filter.h).
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const LD_H_IND: u16 = 0x48;
const LDX_B_MSH: u16 = 0xb1;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

/// A filter passing (truncated to [`SNAP`] bytes) only Ethernet frames carrying TCP to one
/// of `ports` (at most [`MAX_FILTER_PORTS`]): IPv4 first fragments, or IPv6 with TCP right
/// after the fixed header — the frames [`frame::tcp_destination`] reads. The IP is checked
/// in the agent.
fn port_filter(ports: &[u16]) -> Vec<SockFilter> {
    let n = u8::try_from(ports.len().min(MAX_FILTER_PORTS)).unwrap_or(0);
    // Instruction 13 is the first port comparison, 13 + n drops, 14 + n accepts; jump
    // offsets count from the next instruction.
    let drop_from = |pc: u8| 13 + n - (pc + 1);
    let mut program = vec![
        SockFilter::new(LD_H_ABS, 0, 0, 12),                  // 0: A = ethertype
        SockFilter::new(JMP_JEQ_K, 0, 7, 0x0800),             // 1: IPv4? else 9
        SockFilter::new(LD_B_ABS, 0, 0, 23),                  // 2: A = protocol
        SockFilter::new(JMP_JEQ_K, 0, drop_from(3), 6),       // 3: TCP?
        SockFilter::new(LD_H_ABS, 0, 0, 20),                  // 4: A = flags, fragment
        SockFilter::new(JMP_JSET_K, drop_from(5), 0, 0x1fff), // 5: first fragment?
        SockFilter::new(LDX_B_MSH, 0, 0, 14),                 // 6: X = IPv4 header length
        SockFilter::new(LD_H_IND, 0, 0, 16),                  // 7: A = TCP destination port
        SockFilter::new(JMP_JA, 0, 0, 4),                     // 8: to the ports (13)
        SockFilter::new(JMP_JEQ_K, 0, drop_from(9), 0x86DD),  // 9: IPv6?
        SockFilter::new(LD_B_ABS, 0, 0, 20),                  // 10: A = next header
        SockFilter::new(JMP_JEQ_K, 0, drop_from(11), 6),      // 11: TCP?
        SockFilter::new(LD_H_ABS, 0, 0, 56),                  // 12: A = TCP destination port
    ];
    for (i, port) in ports.iter().take(usize::from(n)).enumerate() {
        let pc = 13 + u8::try_from(i).unwrap_or(u8::MAX);
        program.push(SockFilter::new(JMP_JEQ_K, 14 + n - (pc + 1), 0, u32::from(*port)));
    }
    program.push(SockFilter::new(RET_K, 0, 0, 0));
    program.push(SockFilter::new(RET_K, 0, 0, SNAP as u32));
    program
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_capability_says_how_to_grant_it() {
        for errno in [Errno::EPERM, Errno::EACCES] {
            assert_eq!(
                open_error(errno).to_string(),
                "packets mode needs CAP_NET_RAW: run as root or `setcap cap_net_raw+ep <bunsan>`; \
                 or use --method sockets"
            );
        }
        let other = open_error(Errno::EAFNOSUPPORT).to_string();
        assert!(other.starts_with("cannot open a packet socket: "), "{other}");
    }

    #[test]
    fn the_filter_has_one_comparison_per_port_then_drop_and_accept() {
        assert_eq!(port_filter(&[80]).len(), 16);
        assert_eq!(port_filter(&[80, 443, 8080]).len(), 18);
        assert_eq!(port_filter(&(0..200).collect::<Vec<u16>>()).len(), 215);
    }
}
