//! Real `bunsan` processes: start one from a config text, find its bound addresses,
//! signal it, wait for it to exit. A process still running when dropped is killed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

/// How long a node may take to bind its sockets.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `bunsan serve`.
pub struct Bunsan {
    child: Child,
    dir: TempDir,
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
        let config_path = dir.path().join("bunsan.toml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let ready_path = dir.path().join("ready.json");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--ready-file")
            .arg(&ready_path)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut node = Self { child, dir, listeners: HashMap::new(), admin: None };
        node.await_ready(&ready_path).await?;
        Ok(node)
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
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
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
