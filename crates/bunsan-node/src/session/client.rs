//! One client connection's sessions: attached once each, detached when it closes.
//!
//! A client connection counts once on a session however many of its requests carry it
//! (HTTP/1.1 keep-alive, concurrent HTTP/2 streams), and its end is what starts the
//! session's idle clock. This is the piece the connection task owns for that.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use super::table::{lock, Attachment, SessionTable};
use super::SessionKeyBytes;

/// The sessions one client connection is attached to; detaches all of them on drop.
///
/// `Send + Sync`: the streams of one HTTP/2 connection attach concurrently.
pub struct ClientSessions<S, C> {
    /// (table, key, attachment); a connection carries few sessions, so a list will do.
    held: Mutex<Vec<Held<S, C>>>,
}

struct Held<S, C> {
    table: Arc<SessionTable<S, C>>,
    key: SessionKeyBytes,
    attachment: Attachment,
}

impl<S, C> Default for ClientSessions<S, C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S, C> ClientSessions<S, C> {
    /// A connection that carried no session yet.
    pub fn new() -> Self {
        Self { held: Mutex::new(Vec::new()) }
    }

    /// Attaches this connection to session `key` of `table`, unless it already is. True
    /// if the session is live (and this connection counted on it).
    ///
    /// A session that ended and was started again under the same key (a client address)
    /// counts as a new one: the connection attaches to it too.
    pub fn attach(&self, table: &Arc<SessionTable<S, C>>, key: SessionKeyBytes) -> bool {
        // Held across the table's lock (always in this order) so that two streams
        // attaching the same session at once count it once.
        let mut held = lock(&self.held);
        let found = held.iter_mut().find(|h| h.key == key && Arc::ptr_eq(&h.table, table));
        match found {
            Some(h) => match table.attach_unless(&key, Some(h.attachment)) {
                Some(attachment) => {
                    h.attachment = attachment;
                    true
                }
                None => false,
            },
            None => match table.attach(&key) {
                Some(attachment) => {
                    held.push(Held { table: table.clone(), key, attachment });
                    true
                }
                None => false,
            },
        }
    }

    /// How many sessions this connection is attached to (some may have ended since).
    pub fn len(&self) -> usize {
        lock(&self.held).len()
    }

    /// Whether this connection carried no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<S, C> Drop for ClientSessions<S, C> {
    fn drop(&mut self) {
        let held = self.held.get_mut().unwrap_or_else(PoisonError::into_inner);
        for h in held.drain(..) {
            h.table.detach(&h.key, h.attachment);
        }
    }
}

impl<S, C> fmt::Debug for ClientSessions<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<_> = lock(&self.held).iter().map(|h| h.key).collect();
        f.debug_struct("ClientSessions").field("keys", &keys).finish()
    }
}
