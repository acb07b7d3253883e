//! The access log: one JSON line per request, written off the request path.
//!
//! Requests hand finished [`Entry`]s to a bounded channel; one writer thread formats and
//! writes them, flushing whenever the channel runs dry. When the writer falls behind,
//! entries are dropped and counted rather than slowing requests down. Seed 001 [0100]
//! keeps a relay history so an operator can tell whether an answer reached its client;
//! `delivered` is that record.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;

use bunsan_config::AccessLogTarget;
use serde::Serialize;

/// Entries waiting for the writer; beyond this they are dropped and counted.
const QUEUE: usize = 16 * 1024;

/// One request's record.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// When the request arrived, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The client's address.
    pub client: SocketAddr,
    /// The request's id (`X-Request-Id`, passed on or generated).
    pub request_id: String,
    /// Method and target as the client sent them.
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    /// The client's HTTP version.
    pub protocol: &'static str,
    /// The pool.
    pub pool: String,
    /// The server that answered; `null` when the node answered itself.
    pub server: Option<String>,
    /// The status sent to the client.
    pub status: u16,
    /// Response body bytes handed to the client connection.
    pub bytes: u64,
    /// Milliseconds to obtain the upstream connection (0 for a reused one).
    pub connect_ms: f64,
    /// Milliseconds from the request's arrival to the response head.
    pub first_byte_ms: f64,
    /// Milliseconds from the request's arrival to the end of the response.
    pub total_ms: f64,
    /// Attempts after the first one (failover to another server, seed 002).
    pub retries: u32,
    /// The session, if the pool has affinity.
    pub session: Option<SessionNote>,
    /// Whether the whole response was handed to the client connection; `false` when
    /// the client went away (or the server broke off) before its end.
    pub delivered: bool,
}

/// A session as the access log shows it: a short fingerprint (never the identifier
/// itself, which would let a log reader take the session over) and what happened.
#[derive(Debug, Clone, Serialize)]
pub struct SessionNote {
    /// The first 8 bytes of the session's internal key, in hex.
    pub id: String,
    /// `new`, `continued` or `moved` (to another server after its own failed).
    pub event: &'static str,
}

enum Message {
    Entry(Box<Entry>),
    Retarget(Option<AccessLogTarget>),
}

/// The node's access log. Always present; it records nothing while its target is off.
#[derive(Debug)]
pub struct AccessLog {
    enabled: AtomicBool,
    queue: ArcSwapOption<SyncSender<Message>>,
    /// Serialises retargeting.
    retargeting: Mutex<()>,
    /// Entries dropped because the writer fell behind (or could not write).
    pub dropped: AtomicU64,
}

impl AccessLog {
    /// A log writing to `target` (`None`: off until retargeted).
    pub fn new(target: Option<AccessLogTarget>) -> Self {
        let log = Self {
            enabled: AtomicBool::new(false),
            queue: ArcSwapOption::empty(),
            retargeting: Mutex::new(()),
            dropped: AtomicU64::new(0),
        };
        log.retarget(target);
        log
    }

    /// Whether requests should build entries at all.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Relaxed)
    }

    /// Switches to `target`, reopening the file (so a reload after log rotation writes to
    /// the new file). Entries already queued are written first, to the old target.
    pub fn retarget(&self, target: Option<AccessLogTarget>) {
        let Ok(_one_at_a_time) = self.retargeting.lock() else { return };
        self.enabled.store(target.is_some(), Relaxed);
        if let Some(sender) = self.queue.load().as_ref() {
            if sender.send(Message::Retarget(target.clone())).is_ok() {
                return;
            }
        }
        let Some(target) = target else { return };
        let (sender, receiver) = sync_channel(QUEUE);
        let started = std::thread::Builder::new()
            .name("bunsan-access-log".into())
            .spawn(move || write_loop(receiver, Some(target)));
        match started {
            Ok(_) => self.queue.store(Some(Arc::new(sender))),
            Err(error) => {
                tracing::error!(%error, "cannot start the access log writer; access log off");
                self.enabled.store(false, Relaxed);
            }
        }
    }

    /// Queues `entry`; drops it (counted) when the writer is behind.
    pub fn record(&self, entry: Entry) {
        let queue = self.queue.load();
        let sent = queue.as_ref().map(|q| q.try_send(Message::Entry(Box::new(entry))));
        if !matches!(sent, Some(Ok(()))) {
            let dropped = self.dropped.fetch_add(1, Relaxed) + 1;
            // Say so, but without a warning per request while the writer is behind.
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "the access log writer is behind; entries dropped");
            }
        }
    }
}

/// The writer thread: formats entries, writes them, and flushes whenever nothing more is
/// waiting — lines appear promptly when traffic is light and go out in large batches
/// when it is heavy.
fn write_loop(receiver: Receiver<Message>, target: Option<AccessLogTarget>) {
    let mut out = open(target.as_ref());
    while let Ok(message) = receiver.recv() {
        handle(&mut out, message);
        while let Ok(message) = receiver.try_recv() {
            handle(&mut out, message);
        }
        flush(&mut out);
    }
}

fn handle(out: &mut Output, message: Message) {
    match message {
        Message::Entry(entry) => write_entry(out, &entry),
        Message::Retarget(target) => {
            flush(out);
            *out = open(target.as_ref());
        }
    }
}

type Output = Option<BufWriter<Box<dyn Write + Send>>>;

fn open(target: Option<&AccessLogTarget>) -> Output {
    let writer: Box<dyn Write + Send> = match target? {
        AccessLogTarget::Stdout => Box::new(io::stdout()),
        AccessLogTarget::File(path) => match append(path) {
            Ok(file) => Box::new(file),
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "cannot open the access log; entries are dropped");
                return None;
            }
        },
    };
    Some(BufWriter::with_capacity(64 * 1024, writer))
}

fn append(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn write_entry(out: &mut Output, entry: &Entry) {
    let Some(writer) = out.as_mut() else { return };
    let written = serde_json::to_writer(&mut *writer, entry)
        .map_err(io::Error::from)
        .and_then(|()| writer.write_all(b"\n"));
    if let Err(error) = written {
        tracing::warn!(%error, "cannot write the access log");
    }
}

fn flush(out: &mut Output) {
    if let Some(Err(error)) = out.as_mut().map(Write::flush) {
        tracing::warn!(%error, "cannot flush the access log");
    }
}

/// `time` formatted as RFC 3339 UTC with milliseconds (`2026-11-22T09:15:02.123Z`).
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_338_902_123);
        assert_eq!(rfc3339(t), "2026-11-22T09:15:02.123Z");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000Z");
    }
}
