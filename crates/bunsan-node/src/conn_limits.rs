//! Connection limits: per listener and for the whole node (accepting waits for a free
//! slot, so excess connections wait in the kernel's backlog, as with HAProxy's
//! `maxconn`), and per client address (excess connections are closed at once).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Open connections per client address, bounded.
#[derive(Debug)]
pub struct PerClient {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerClient {
    /// At most `limit` connections per address.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { limit, open: Mutex::new(HashMap::new()) })
    }

    /// Counts one more connection from `ip`, or `None` if it already has `limit`.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let mut open = self.open.lock().ok()?;
        let count = open.entry(ip).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ClientSlot { counts: self.clone(), ip })
    }
}

/// One admitted connection from one address; released when dropped.
#[derive(Debug)]
pub struct ClientSlot {
    counts: Arc<PerClient>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.counts.open.lock() {
            if let Some(count) = open.get_mut(&self.ip) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&self.ip);
                }
            }
        }
    }
}

/// What an accepted connection holds until it closes: its listener's and the node's
/// slots, and its address's.
#[derive(Debug)]
pub struct Slots {
    _listener: OwnedSemaphorePermit,
    _node: OwnedSemaphorePermit,
    _client: Option<ClientSlot>,
}

impl Slots {
    /// Waits for a free slot on the listener and on the node (in that order, so a full
    /// listener never holds node slots other listeners could use).
    pub async fn acquire(listener: &Arc<Semaphore>, node: &Arc<Semaphore>) -> Option<Self> {
        let listener = listener.clone().acquire_owned().await.ok()?;
        let node = node.clone().acquire_owned().await.ok()?;
        Some(Self { _listener: listener, _node: node, _client: None })
    }

    /// Adds the client address's slot.
    pub fn with_client(mut self, slot: ClientSlot) -> Self {
        self._client = Some(slot);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_at_most_its_limit_and_slots_come_back() {
        let counts = PerClient::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let (a, b) = (counts.admit(ip).unwrap(), counts.admit(ip).unwrap());
        assert!(counts.admit(ip).is_none());
        assert!(counts.admit(other).is_some());
        drop(a);
        assert!(counts.admit(ip).is_some());
        drop(b);
        assert!(counts.open.lock().unwrap().get(&ip).is_none());
    }
}
