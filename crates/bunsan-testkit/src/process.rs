//! Real `bunsan` processes: start a node from a config text (or a `bunsan backend`),
//! find its bound addresses, signal it, wait for it to exit. A process still running
//! when dropped is killed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::{NamedTempFile, TempDir};
use tokio::sync::oneshot;

/// How long a node may take to bind its sockets.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `bunsan serve`.
pub struct Bunsan {
    child: Child,
    dir: Arc<TempDir>,
    stderr: PathBuf,
    upgrade_socket: Option<PathBuf>,
    listeners: HashMap<String, SocketAddr>,
    admin: Option<SocketAddr>,
}

impl Bunsan {
    /// Writes `config` to a fresh directory and starts `bin serve` on it; returns once
    /// the node has bound every socket, or an error with its stderr if it exited.
    pub async fn start(bin: &Path, config: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        Self::start_in(bin, dir, config).await
    }

    /// Like [`Bunsan::start`], in a directory prepared by the caller (certificates, …).
    pub async fn start_in(bin: &Path, dir: TempDir, config: &str) -> Result<Self, String> {
        std::fs::write(dir.path().join("bunsan.toml"), config).map_err(|e| e.to_string())?;
        Self::spawn(bin, Arc::new(dir), None, "").await
    }

    /// Like [`Bunsan::start`], with `--upgrade-socket` in its directory, so that
    /// [`Bunsan::successor`] can take over from it.
    pub async fn start_upgradable(bin: &Path, config: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join("bunsan.toml"), config).map_err(|e| e.to_string())?;
        let socket = dir.path().join("upgrade.sock");
        Self::spawn(bin, Arc::new(dir), Some(socket), "").await
    }

    /// A binary upgrade: starts `bin serve` on the same config and upgrade socket, which
    /// takes the sockets over from this process; returns once the new one is ready
    /// (this one then drains and exits). `tag` tells its ready file and log apart.
    pub async fn successor(&self, bin: &Path, tag: &str) -> Result<Self, String> {
        let socket = self.upgrade_socket.clone().ok_or("started without an upgrade socket")?;
        Self::spawn(bin, self.dir.clone(), Some(socket), tag).await
    }

    async fn spawn(
        bin: &Path,
        dir: Arc<TempDir>,
        upgrade: Option<PathBuf>,
        tag: &str,
    ) -> Result<Self, String> {
        let ready_path = dir.path().join(format!("ready{tag}.json"));
        let stderr_path = dir.path().join(format!("stderr{tag}.log"));
        let stderr = std::fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        let mut command = Command::new(bin);
        command.arg("serve").arg("--config").arg(dir.path().join("bunsan.toml"));
        command.arg("--ready-file").arg(&ready_path);
        if let Some(socket) = &upgrade {
            command.arg("--upgrade-socket").arg(socket);
        }
        let child = command
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut node = Self {
            child,
            dir,
            stderr: stderr_path,
            upgrade_socket: upgrade,
            listeners: HashMap::new(),
            admin: None,
        };
        node.await_ready(&ready_path).await?;
        Ok(node)
    }

    /// Replaces the config file (for a reload).
    pub fn write_config(&self, config: &str) {
        let path = self.dir.path().join("bunsan.toml");
        let tmp = self.dir.path().join("bunsan.toml.tmp");
        std::fs::write(&tmp, config).expect("write the config");
        std::fs::rename(&tmp, path).expect("replace the config");
    }

    async fn await_ready(&mut self, ready_path: &Path) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("bunsan exited with {status} before it was ready:\n{}", self.stderr()));
            }
            if let Ok(text) = std::fs::read_to_string(ready_path) {
                return self.parse_ready(&text);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!("bunsan was not ready within {START_TIMEOUT:?}:\n{}", self.stderr()))
    }

    fn parse_ready(&mut self, text: &str) -> Result<(), String> {
        let ready: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let addr = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse().ok());
        self.admin = addr(&ready["admin"]);
        if let Some(map) = ready["listeners"].as_object() {
            self.listeners = map.iter().filter_map(|(k, v)| Some((k.clone(), addr(v)?))).collect();
        }
        Ok(())
    }

    /// The bound address of listener `name`.
    pub fn listener(&self, name: &str) -> SocketAddr {
        *self.listeners.get(name).unwrap_or_else(|| panic!("no listener {name} in {:?}", self.listeners))
    }

    /// The admin API's bound address.
    pub fn admin(&self) -> SocketAddr {
        self.admin.expect("the config has an [admin] table")
    }

    /// `http://ADMIN`, for `bunsan ctl --admin`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin())
    }

    /// The directory holding the config (and anything the test put there).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32);
        kill(pid, signal).expect("signal the bunsan process");
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// What the process wrote to stderr so far (its log).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Bunsan {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How long a daemon may take to print its address.
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a restart on a fixed port retries while the port is still taken.
const REBIND_TIMEOUT: Duration = Duration::from_secs(5);

/// A bunsan subcommand running in its own process that prints `listening on ADDR` once
/// bound (`backend`, `control`): for tests that kill or restart it for real. Killed
/// when dropped.
pub struct Daemon {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    stderr: NamedTempFile,
}

impl Daemon {
    /// Runs `bin ARGS…` and waits for its address; retries for a few seconds while the
    /// port is still in use (a restart on the port of a process that just died can race
    /// its cleanup). The error carries the process's stderr.
    pub async fn start(bin: &Path, args: &[&str]) -> Result<Self, String> {
        let deadline = Instant::now() + REBIND_TIMEOUT;
        loop {
            match Self::spawn(bin, args).await {
                Err(error) if error.contains("Address already in use") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                result => return result,
            }
        }
    }

    async fn spawn(bin: &Path, args: &[&str]) -> Result<Self, String> {
        let stderr = NamedTempFile::new().map_err(|e| e.to_string())?;
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let first_line = first_line_of(child.stdout.take().expect("stdout is piped"));
        let unbound = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut daemon = Self { addr: unbound, child, stderr };
        daemon.addr = daemon.await_address(first_line, args).await?;
        Ok(daemon)
    }

    /// Waits for `listening on ADDR`; on failure, the error carries the process's stderr.
    async fn await_address(
        &mut self,
        first_line: oneshot::Receiver<String>,
        args: &[&str],
    ) -> Result<SocketAddr, String> {
        let what = args.first().copied().unwrap_or("bunsan");
        let line = match tokio::time::timeout(DAEMON_START_TIMEOUT, first_line).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) => String::new(),
            Err(_) => {
                let stderr = self.stderr();
                return Err(format!(
                    "bunsan {what} printed no address within {DAEMON_START_TIMEOUT:?}:\n{stderr}"
                ));
            }
        };
        if let Some(addr) = line.trim().strip_prefix("listening on ").and_then(|a| a.parse().ok()) {
            return Ok(addr);
        }
        // Stdout ended without an address: the process is exiting; let it finish its log.
        let status = self.wait_exit(Duration::from_secs(2)).await;
        Err(format!("bunsan {what} did not start ({status:?}, stdout {line:?}):\n{}", self.stderr()))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL (no cleanup, connections reset) and reaps it, so
    /// its port is free when this returns.
    pub fn kill9(&mut self) {
        if self.signal(Signal::SIGKILL) {
            let _ = self.child.wait();
        }
    }

    /// Asks the process to stop with SIGTERM; see [`Daemon::wait_exit`].
    pub fn terminate(&mut self) {
        self.signal(Signal::SIGTERM);
    }

    /// Sends `signal` unless the process was already reaped (its pid may be reused);
    /// returns whether it was sent.
    fn signal(&mut self, signal: Signal) -> bool {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return false;
        }
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal the process");
        true
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the process wrote to stderr so far (its log).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A running `bunsan backend`: a real HTTP server in its own process, for tests that
/// must kill a backend for real (SIGKILL). Killed when dropped; the process methods
/// (`kill9`, `terminate`, `wait_exit`, …) come from [`Daemon`].
pub struct BackendProcess {
    /// Its name, sent back in `x-backend`.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    daemon: Daemon,
}

impl BackendProcess {
    /// Starts `bin backend --name NAME` on an ephemeral loopback port; panics (with the
    /// process's stderr) if it does not start.
    pub async fn start(bin: &Path, name: &str) -> Self {
        Self::start_on(bin, name, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts `bin backend --listen ADDR --name NAME`, e.g. on the address of one that
    /// was killed; panics (with the process's stderr) if it does not start.
    pub async fn start_on(bin: &Path, name: &str, addr: SocketAddr) -> Self {
        Self::try_start_on(bin, name, addr).await.unwrap_or_else(|error| panic!("{error}"))
    }

    /// Like [`BackendProcess::start_on`], returning the failure (with stderr) instead.
    pub async fn try_start_on(bin: &Path, name: &str, addr: SocketAddr) -> Result<Self, String> {
        let listen = addr.to_string();
        let daemon = Daemon::start(bin, &["backend", "--listen", &listen, "--name", name]).await?;
        Ok(Self { name: name.to_owned(), addr: daemon.addr, daemon })
    }
}

impl std::ops::Deref for BackendProcess {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.daemon
    }
}

impl std::ops::DerefMut for BackendProcess {
    fn deref_mut(&mut self) -> &mut Daemon {
        &mut self.daemon
    }
}

/// Reads the first line of `stdout` on a thread (empty if it closes first), then keeps
/// draining it so the process never blocks or fails on a full or closed pipe.
fn first_line_of(stdout: ChildStdout) -> oneshot::Receiver<String> {
    let (send, receive) = oneshot::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = send.send(line);
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    receive
}
