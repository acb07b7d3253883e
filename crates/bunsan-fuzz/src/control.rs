//! `control_bodies`: every body the state manager accepts (agent registrations, report
//! batches, pins, subscriptions) through its own parsing and validation, and every
//! message a subscriber reads from it (watch events, tables, assignments, the registry).

use bunsan_control::{reports, validate};
use bunsan_proto::control::{
    AgentRegistration, Assignment, Event, Pin, Registry, Subscribed, Subscription, Table,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Reads `data` as each control-plane body type.
pub fn control_bodies(data: &[u8]) {
    requests(data);
    reparses::<Event>(data);
    reparses::<Table>(data);
    reparses::<Registry>(data);
    round_trips::<Subscribed>(data);
    round_trips::<Assignment>(data);
}

/// What `POST /v1/agents`, `POST /v1/reports`, `PUT /v1/pins/…` and
/// `POST /v1/subscribers` do with their bodies before touching any state.
fn requests(data: &[u8]) {
    if let Some(registration) = round_trips::<AgentRegistration>(data) {
        let _ = validate::agent(&registration);
    }
    if let Ok(batch) = reports::parse(data) {
        assert!(batch.len() <= reports::MAX_REPORTS);
        for report in &batch {
            let _ = validate::load(report.load);
        }
    }
    if let Some(pin) = reparses::<Pin>(data) {
        if let Ok(spec) = validate::pin(&pin) {
            // What the table will hold must be a load the table can divide and compare.
            assert!(spec.load.is_none_or(|load| load.is_finite() && load >= 0.0));
            assert!(spec.capacity.is_none_or(|c| c >= 1));
        }
    }
    if let Some(subscription) = round_trips::<Subscription>(data) {
        let _ = validate::subscription(&subscription);
    }
}

/// Parses `data` as `T`; what parses serialises and parses back to an equal value.
/// For types without floats (serde_json may move a parsed float by an ulp).
pub(crate) fn round_trips<T>(data: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let value: T = serde_json::from_slice(data).ok()?;
    let text = serde_json::to_vec(&value).expect("a parsed value serialises");
    let again: T = serde_json::from_slice(&text).expect("serialised output parses");
    assert_eq!(again, value);
    Some(value)
}

/// Parses `data` as `T`; what parses serialises to JSON that parses again.
pub(crate) fn reparses<T>(data: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize,
{
    let value: T = serde_json::from_slice(data).ok()?;
    let text = serde_json::to_vec(&value).expect("a parsed value serialises");
    serde_json::from_slice::<T>(&text).expect("serialised output parses");
    Some(value)
}
