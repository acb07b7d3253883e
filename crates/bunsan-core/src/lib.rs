//! bunsan's pure domain: server states, capacity and load, the balancers, key hashing, and
//! signed session tokens for affinity.
//!
//! Nothing here does I/O or knows about tokio. The node (and later the local proxy)
//! describe their servers through [`Candidate`] and ask a [`Selector`] for one:
//!
//! ```
//! use bunsan_core::{Algorithm, Candidate, PickContext, Selector, ServerState};
//!
//! struct S { name: &'static str, capacity: u32, load: f64 }
//! impl Candidate for S {
//!     fn id(&self) -> &str { self.name }
//!     fn state(&self) -> ServerState { ServerState::Ready }
//!     fn capacity(&self) -> u32 { self.capacity }
//!     fn load(&self) -> f64 { self.load }
//!     fn in_flight(&self) -> u64 { 0 }
//!     fn latency_ewma(&self) -> f64 { 0.0 }
//! }
//!
//! // Seed 001's own example: relative load 20÷2 = 10 beats 15÷1 = 15.
//! let servers = [S { name: "host1", capacity: 2, load: 20.0 }, S { name: "host2", capacity: 1, load: 15.0 }];
//! let selector = Selector::build(Algorithm::LeastLoad, &servers);
//! let mut rng = fastrand::Rng::with_seed(7);
//! let picked = selector.pick(&servers, &mut PickContext::new(&mut rng));
//! assert_eq!(picked, Some(0));
//! ```
#![forbid(unsafe_code)]

pub mod balance;
pub mod hash;
pub mod secret;
pub mod session;
pub mod state;

pub use balance::{Algorithm, Candidate, PickContext, Selector, UnknownAlgorithm};
pub use session::{
    KeyError, ParseSessionIdError, ServerTag, SessionId, SessionKey, Token, TokenError, SESSION_ID_LEN,
};
pub use state::{ServerState, UnknownState};
