//! The node's background tasks: housekeeping, active health checks and the control-plane
//! subscriber. Health checks and the subscriber run per config generation, each with its
//! own cancellation token, so a reload can restart them without touching the rest.

use std::sync::Arc;
use std::time::Duration;

use bunsan_config::Config;
use tokio_util::sync::CancellationToken;

use crate::health::{Target, Transition};
use crate::state::{Command, StateBoard};

/// How often idle upstream connections and sessions past their timeouts are ended (and
/// memory freed by parked client connections is given back).
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// The tasks of one config generation.
#[derive(Debug, Default)]
pub struct Background {
    health: CancellationToken,
    control: Option<CancellationToken>,
}

impl Background {
    /// Starts health checks over the board's pools and, if configured, the subscriber.
    pub fn start(config: &Config, board: &Arc<StateBoard>, shutdown: &CancellationToken) -> Self {
        let health = shutdown.child_token();
        start_health_checks(board, &health);
        Self { health, control: start_control(config, board, shutdown) }
    }

    /// Restarts the health checks over the board's (new) pools, and the subscriber if
    /// `restart_control` (its config changed, or its server positions may have).
    pub fn restart(
        &mut self,
        config: &Config,
        board: &Arc<StateBoard>,
        shutdown: &CancellationToken,
        restart_control: bool,
    ) {
        self.health.cancel();
        self.health = shutdown.child_token();
        start_health_checks(board, &self.health);
        if restart_control {
            if let Some(control) = self.control.take() {
                control.cancel();
            }
            self.control = start_control(config, board, shutdown);
        }
    }
}

fn start_control(
    config: &Config,
    board: &Arc<StateBoard>,
    shutdown: &CancellationToken,
) -> Option<CancellationToken> {
    let control = config.control.as_ref()?;
    let token = shutdown.child_token();
    crate::control::spawn(control.clone(), board.clone(), token.clone());
    Some(token)
}

/// Once a second: closes pooled upstream connections idle too long, ends sessions whose
/// clients have been gone longer than `idle_timeout` (or that outlived `max_lifetime`),
/// closing their connections, and re-admits servers whose ejection is over.
pub async fn housekeeping(board: Arc<StateBoard>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let topology = board.topology();
        for pool in &topology.pools {
            for server in &pool.servers {
                server.idle.reap();
            }
            if let Some(affinity) = &pool.affinity {
                affinity.table.sweep();
            }
            crate::outlier::readmit_due(&board, pool);
        }
        crate::memory::release_freed();
    }
}

/// Starts active health checks for every pool that has them; their verdicts go to the
/// state board like every other input, addressed to the very server checked (a verdict
/// about a server that a reload replaced is dropped).
fn start_health_checks(board: &Arc<StateBoard>, stop: &CancellationToken) {
    for pool in &board.topology().pools {
        let Some(config) = pool.settings.health.clone() else { continue };
        let targets = pool.servers.iter().enumerate().map(|(index, server)| {
            let mut target = Target::new(
                pool.name.clone(),
                server.name.clone(),
                index,
                server.addr,
                server.addr_text.clone(),
            );
            target.counters = server.health.clone();
            target
        });
        let (board, servers) = (board.clone(), pool.servers.clone());
        let report = move |target: &Target, transition: Transition, _why: &str| {
            let up = transition == Transition::Up;
            let Some(server) = servers.get(target.index) else { return };
            if let Err(error) = board.apply_to(&target.pool, server, Command::Health(up)) {
                tracing::debug!(pool = %target.pool, server = %target.server, %error, "health verdict dropped");
            }
        };
        crate::health::spawn(targets.collect(), config, report, stop.clone());
    }
}
