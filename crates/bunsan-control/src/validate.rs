//! Checks of what agents, subscribers and operators send, shared by the HTTP handlers and
//! the store loader (a hand-edited store file gets the same scrutiny as a request).

use std::net::SocketAddr;

use bunsan_core::ServerState;
use bunsan_proto::control::{AgentRegistration, Delivery, Pin, Subscription};

use crate::names::check_name;
use crate::table::PinSpec;

/// The most servers one agent may watch.
pub const MAX_WATCHED: usize = 10_000;
/// The largest capacity a pin may set (as in the config: a ratio, not a count).
pub const MAX_CAPACITY: u32 = 10_000;
/// The bounds of a periodic subscriber's interval, in milliseconds.
pub const INTERVAL_MS: std::ops::RangeInclusive<u64> = 10..=3_600_000;
/// The default period of a periodic subscriber, in milliseconds.
pub const DEFAULT_INTERVAL_MS: u64 = 1000;

/// The load-measuring methods an agent may declare.
const METHODS: [&str; 3] = ["sockets", "packets", "scrape"];

/// Checks an agent's registration: names, method, addresses.
pub fn agent(registration: &AgentRegistration) -> Result<(), String> {
    check_name("agent", &registration.agent)?;
    if !METHODS.contains(&registration.method.as_str()) {
        return Err(format!("unknown method {:?} (valid: sockets, packets, scrape)", registration.method));
    }
    if registration.servers.len() > MAX_WATCHED {
        return Err(format!(
            "an agent may watch at most {MAX_WATCHED} servers, not {}",
            registration.servers.len()
        ));
    }
    for (index, watched) in registration.servers.iter().enumerate() {
        let at = |why: String| format!("servers[{index}]: {why}");
        check_name("pool", &watched.pool).map_err(at)?;
        check_name("server", &watched.server).map_err(at)?;
        if watched.addr.parse::<SocketAddr>().is_err() {
            return Err(at(format!("addr {:?} is not IP:PORT", watched.addr)));
        }
    }
    Ok(())
}

/// Checks a load figure: reports and pins both need a finite, non-negative number.
pub fn load(load: f64) -> Result<f64, String> {
    if load.is_finite() && load >= 0.0 {
        Ok(load)
    } else {
        Err(format!("load must be a finite number ≥ 0, not {load}"))
    }
}

/// Checks an operator's pin and reads its state.
pub fn pin(pin: &Pin) -> Result<PinSpec, String> {
    let state = pin.state.parse::<ServerState>().map_err(|e| e.to_string())?;
    let load = pin.load.map(load).transpose()?;
    if let Some(capacity) = pin.capacity.filter(|c| !(1..=MAX_CAPACITY).contains(c)) {
        return Err(format!("capacity must be 1 to {MAX_CAPACITY}, not {capacity}"));
    }
    Ok(PinSpec { state, load, capacity: pin.capacity })
}

/// Checks a subscription: name, kind, and the period of a periodic one.
pub fn subscription(subscription: &Subscription) -> Result<(), String> {
    check_name("subscriber", &subscription.name)?;
    if !matches!(subscription.kind.as_str(), "node" | "local") {
        return Err(format!("unknown kind {:?} (valid: node, local)", subscription.kind));
    }
    match subscription.interval_ms {
        Some(ms) if subscription.delivery == Delivery::Periodic && !INTERVAL_MS.contains(&ms) => {
            Err(format!("interval_ms must be {} to {}, not {ms}", INTERVAL_MS.start(), INTERVAL_MS.end()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bunsan_proto::control::Watched;

    fn registration(method: &str, addr: &str) -> AgentRegistration {
        AgentRegistration {
            agent: "a1".into(),
            method: method.into(),
            servers: vec![Watched { pool: "app".into(), server: "h1".into(), addr: addr.into() }],
        }
    }

    #[test]
    fn agents_need_a_known_method_and_real_addresses() {
        assert_eq!(agent(&registration("sockets", "127.0.0.1:80")), Ok(()));
        assert!(agent(&registration("magic", "127.0.0.1:80")).unwrap_err().contains("unknown method"));
        let error = agent(&registration("scrape", "localhost")).unwrap_err();
        assert!(error.starts_with("servers[0]: addr"), "{error}");
    }

    #[test]
    fn pins_are_bounded() {
        let good = Pin { state: "maint".into(), load: Some(0.0), capacity: Some(3) };
        assert_eq!(pin(&good).map(|p| p.state), Ok(ServerState::Maint));
        assert!(pin(&Pin { state: "stopped".into(), ..good.clone() }).is_err());
        assert!(pin(&Pin { load: Some(-1.0), ..good.clone() }).unwrap_err().contains("≥ 0"));
        assert!(pin(&Pin { load: Some(f64::NAN), ..good.clone() }).is_err());
        assert!(pin(&Pin { capacity: Some(0), ..good.clone() }).unwrap_err().contains("capacity"));
        assert!(pin(&Pin { capacity: Some(10_001), ..good }).is_err());
    }

    #[test]
    fn subscriptions_need_a_kind_and_a_sane_period() {
        let mut s = Subscription {
            name: "n1".into(),
            kind: "node".into(),
            delivery: Delivery::Periodic,
            interval_ms: Some(500),
        };
        assert_eq!(subscription(&s), Ok(()));
        s.interval_ms = Some(1);
        assert!(subscription(&s).unwrap_err().contains("interval_ms"));
        s.kind = "browser".into();
        assert!(subscription(&s).unwrap_err().contains("unknown kind"));
    }
}
