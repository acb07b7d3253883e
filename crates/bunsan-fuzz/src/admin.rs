//! `admin_bodies`: every body of the node's admin API, read as the node reads requests
//! (`PUT /v1/pools/{pool}/servers/{server}`, `DELETE /v1/sessions/{id}`) and as
//! `bunsan ctl` reads answers.
//!
//! The node routes by splitting the path into segments inside its hyper handler, which
//! takes a live request; the pieces of it that read untrusted text are exercised here.

use bunsan_core::ServerState;
use bunsan_proto::admin::{
    ConnectionsReport, ErrorBody, PoolDetail, PoolSummary, ReloadSummary, SessionsReport, StateChange,
};

use crate::control::{reparses, round_trips};

/// Reads `data` as each admin body type.
pub fn admin_bodies(data: &[u8]) {
    state_change(data);
    round_trips::<ErrorBody>(data);
    round_trips::<ReloadSummary>(data);
    reparses::<Vec<PoolSummary>>(data);
    reparses::<PoolDetail>(data);
    reparses::<SessionsReport>(data);
    reparses::<ConnectionsReport>(data);
}

/// The one request body: the node parses it, then its state.
fn state_change(data: &[u8]) {
    let Some(change) = round_trips::<StateChange>(data) else { return };
    if let Ok(state) = change.state.parse::<ServerState>() {
        assert_eq!(state.to_string().parse::<ServerState>(), Ok(state));
    }
}
