//! Active health checks (seed 002): per pool, a TCP connect or an HTTP `GET` with an
//! expected status range, every `interval` (±10% jitter), with `fall`/`rise` thresholds.
//!
//! [`spawn`] runs one independent checking task per [`Target`]; each turns its results
//! into [`Transition`]s through a [`Verdicts`] machine and hands only those to the
//! caller's report callback (the state module decides what they mean for the server's
//! effective state). Transitions are logged here; per-server [`HealthCounters`] feed
//! metrics.

mod check;
mod probe;
mod verdicts;

#[cfg(test)]
mod tests;

pub use check::{spawn, HealthCounters, Target, JITTER};
pub use probe::{probe, ProbeFailure, BODY_LIMIT};
pub use verdicts::{Transition, Verdicts};
