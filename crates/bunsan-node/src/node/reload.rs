//! Hot reload: read the config file again, build everything it needs (validating it all
//! first), then swap it in. Nothing running changes until every step that can fail has
//! succeeded: config errors, TLS/CA files and binding new listeners all refuse the whole
//! reload and leave the running config serving.

use std::sync::Arc;

use bunsan_config::Config;
use bunsan_proto::admin::ReloadSummary;

use super::{session_key, NodeHandle, Running};
use crate::error::NodeError;
use crate::topology::Reuser;

impl NodeHandle {
    /// Re-reads the config file the node was started with and applies it. Reloads are
    /// serialised; a refused one changes nothing.
    pub async fn reload(&self) -> Result<ReloadSummary, NodeError> {
        let path = self.inner.config_path.clone().ok_or(NodeError::NoConfigPath)?;
        // Reading the file and resolving server names block; keep them off the workers.
        let loaded = tokio::task::spawn_blocking(move || bunsan_config::load(&path))
            .await
            .map_err(|e| NodeError::Reload(format!("the config loader failed: {e}")))?;
        let config = loaded.map_err(|e| NodeError::Config(e.to_string()))?;
        self.apply(config).await
    }

    /// Applies an already validated `config` (what [`NodeHandle::reload`] does after
    /// reading the file).
    pub async fn apply(&self, config: Config) -> Result<ReloadSummary, NodeError> {
        let inner = &self.inner;
        let mut running = inner.running.lock().await;
        let key = reload_key(&running, &config)?;
        let prepared = running.listeners.prepare(&config)?;
        let old = Arc::clone(&inner.board.topology());
        let reuser = Reuser { old: &old, old_config: &running.config, same_key: same_key(&running, &key) };
        let reused = reuser.build(&config, key.clone(), &prepared.ids)?;
        // Everything is built; from here on nothing fails.
        let mut summary = reused.summary;
        summary.needs_restart = needs_restart(&running.config, &config);
        let restart_control = running.config.control != config.control || positions_moved(&summary);
        running.listeners.stop_removed(&prepared);
        inner.board.replace(reused.topology, &reused.reconfigure);
        running.listeners.commit(prepared, &inner.shared(), &inner.accepting, &mut summary);
        inner.publish_addrs(&running.listeners);
        running.background.restart(&config, &inner.board, &inner.shutdown, restart_control);
        // Reopened even when unchanged, so a reload after log rotation writes a new file.
        inner.access_log.retarget(config.node.access_log.clone());
        for what in &summary.needs_restart {
            tracing::warn!(change = %what, "this change needs a restart (or a binary upgrade) to apply");
        }
        running.config = config;
        running.session_key = key;
        tracing::info!(?summary, "config reloaded");
        Ok(summary)
    }
}

/// The signing key for `config`: the running one while its source is unchanged.
fn reload_key(running: &Running, config: &Config) -> Result<Option<Arc<bunsan_core::SessionKey>>, NodeError> {
    match &running.session_key {
        Some(key) if running.config.node.session_key == config.node.session_key => Ok(Some(key.clone())),
        _ => session_key(config),
    }
}

fn same_key(running: &Running, key: &Option<Arc<bunsan_core::SessionKey>>) -> bool {
    match (&running.session_key, key) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Whether servers were added or removed, which moves the positions the control-plane
/// subscriber keys its applied rows by (so it starts afresh, with a whole table).
fn positions_moved(summary: &ReloadSummary) -> bool {
    !(summary.pools_added.is_empty()
        && summary.pools_removed.is_empty()
        && summary.servers_added.is_empty()
        && summary.servers_removed.is_empty())
}

/// Changes a running process cannot make: its admin socket and token, its thread count,
/// its shutdown deadline (read once by `serve`).
fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut changes = Vec::new();
    if old.admin != new.admin {
        changes.push("[admin]".to_owned());
    }
    if old.node.workers != new.node.workers {
        changes.push("[node] workers".to_owned());
    }
    if old.node.shutdown_timeout != new.node.shutdown_timeout {
        changes.push("[node] shutdown_timeout".to_owned());
    }
    if old.node.max_connections != new.node.max_connections {
        changes.push("[node] max_connections".to_owned());
    }
    changes
}
