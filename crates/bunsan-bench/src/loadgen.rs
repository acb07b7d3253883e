//! `loadgen`: an open-loop, fixed-rate HTTP/1.1 keep-alive generator.
//!
//! The rate is split evenly over `connections` threads; connection `c` intends to send its
//! `k`-th request at `start + (c / connections + k) * connections / rate`. Latency is counted
//! from that *intended* time, not from when the request could actually be written, so a
//! stalled server is charged for every request that queued up behind it (the correction
//! for coordinated omission that wrk2 made popular). A connection that falls behind sends
//! at once until it has caught up; requests still unsent `grace` after the end are counted
//! as `missed`, never silently dropped.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::http1::{get_request, Conn};

/// Arguments of `loadgen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to send requests.
    #[arg(long)]
    addr: SocketAddr,
    /// Requests per second, over all connections.
    #[arg(long)]
    rate: f64,
    /// Keep-alive connections (one thread each).
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// How long after the end late requests may still be sent, in seconds.
    #[arg(long, default_value_t = 2.0)]
    grace: f64,
    /// The request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// The Host header.
    #[arg(long, default_value = "bench")]
    host: String,
}

/// What one run measured; printed as one JSON object.
#[derive(Debug, Serialize)]
pub struct Report {
    rate: f64,
    connections: u32,
    duration_s: f64,
    /// Requests whose intended time fell within the run.
    intended: u64,
    sent: u64,
    ok: u64,
    errors: u64,
    missed: u64,
    /// Response body bytes received.
    body_bytes: u64,
    achieved_rps: f64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    mean_us: f64,
    /// Whether this process could set its timer slack to 1 ns (sleeps wake on time).
    precise_timers: bool,
}

/// What one connection thread counted.
struct Tally {
    histogram: Histogram<u64>,
    intended: u64,
    sent: u64,
    ok: u64,
    errors: u64,
    body_bytes: u64,
}

/// Runs the generator and prints its report.
pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0.0 && args.connections > 0, "rate and connections must be positive");
    let precise_timers = precise_timers();
    let start = Instant::now() + Duration::from_millis(50);
    let threads: Vec<_> = (0..args.connections)
        .map(|c| {
            let plan = Plan::new(&args, c, start);
            let request = get_request(&args.path, &args.host);
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || drive(&plan, &request))
                .context("cannot start a connection thread")
        })
        .collect::<anyhow::Result<_>>()?;
    let mut total = Tally::new()?;
    for handle in threads {
        let tally = handle.join().map_err(|_| anyhow::anyhow!("a connection thread panicked"))??;
        total.merge(&tally)?;
    }
    let report = Report::new(&args, &total, precise_timers);
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// One connection's schedule.
struct Plan {
    addr: SocketAddr,
    first: Instant,
    interval: Duration,
    end: Instant,
    deadline: Instant,
}

impl Plan {
    fn new(args: &Args, c: u32, start: Instant) -> Self {
        let interval = Duration::from_secs_f64(f64::from(args.connections) / args.rate);
        let first = start + interval.mul_f64(f64::from(c) / f64::from(args.connections));
        let end = start + Duration::from_secs_f64(args.duration);
        let deadline = end + Duration::from_secs_f64(args.grace);
        Self { addr: args.addr, first, interval, end, deadline }
    }
}

/// Sends this connection's share of requests on schedule, reconnecting after errors.
fn drive(plan: &Plan, request: &[u8]) -> anyhow::Result<Tally> {
    let _precise = precise_timers();
    let mut tally = Tally::new()?;
    let mut conn: Option<Conn> = None;
    let mut intended = plan.first;
    while intended < plan.end {
        tally.intended += 1;
        let now = Instant::now();
        if now > plan.deadline {
            intended += plan.interval;
            continue;
        }
        if intended > now {
            thread::sleep(intended - now);
        }
        tally.sent += 1;
        match exchange(&mut conn, plan.addr, request) {
            Ok(Some(body_len)) => {
                tally.ok += 1;
                tally.body_bytes += body_len;
                let micros = u64::try_from(intended.elapsed().as_micros()).unwrap_or(u64::MAX);
                tally.histogram.saturating_record(micros.max(1));
            }
            Ok(None) => tally.errors += 1,
            Err(_) => {
                tally.errors += 1;
                conn = None;
            }
        }
        intended += plan.interval;
    }
    Ok(tally)
}

/// One request on the connection (opened if needed): the body size of a 2xx answer, else `None`.
fn exchange(conn: &mut Option<Conn>, addr: SocketAddr, request: &[u8]) -> std::io::Result<Option<u64>> {
    let open = match conn {
        Some(open) => open,
        None => conn.insert(Conn::connect(addr)?),
    };
    open.send(request)?;
    let response = open.read_response()?;
    if response.close {
        *conn = None;
    }
    Ok((200..300).contains(&response.status).then_some(response.body_len))
}

/// Asks the kernel to wake this thread's sleeps on time (timer slack 1 ns instead of 50 µs).
fn precise_timers() -> bool {
    std::fs::write("/proc/thread-self/timerslack_ns", "1").is_ok()
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        let histogram = Histogram::new_with_bounds(1, 3_600_000_000, 3).context("histogram bounds")?;
        Ok(Self { histogram, intended: 0, sent: 0, ok: 0, errors: 0, body_bytes: 0 })
    }

    fn merge(&mut self, other: &Tally) -> anyhow::Result<()> {
        self.histogram.add(&other.histogram).context("cannot merge histograms")?;
        self.intended += other.intended;
        self.sent += other.sent;
        self.ok += other.ok;
        self.errors += other.errors;
        self.body_bytes += other.body_bytes;
        Ok(())
    }
}

impl Report {
    fn new(args: &Args, total: &Tally, precise_timers: bool) -> Self {
        let h = &total.histogram;
        Self {
            rate: args.rate,
            connections: args.connections,
            duration_s: args.duration,
            intended: total.intended,
            sent: total.sent,
            ok: total.ok,
            errors: total.errors,
            missed: total.intended - total.sent,
            body_bytes: total.body_bytes,
            achieved_rps: total.ok as f64 / args.duration,
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
            precise_timers,
        }
    }
}
