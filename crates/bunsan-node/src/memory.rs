//! Handing memory that parked connections freed back to the system.
//!
//! glibc's allocator keeps freed memory in its heap unless it lies at the very top, and
//! the buffers freed by parked connections (see `http::park`) sit between the small
//! allocations of connections still open. `malloc_trim` returns such free pages to the
//! system; housekeeping calls [`release_freed`] once a second, and it trims only when
//! connections were parked since the last trim, so a busy node whose connections never
//! go quiet never pays for it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Connections parked since the process started.
static PARKED: AtomicU64 = AtomicU64::new(0);
/// The value of [`PARKED`] at the last trim.
static TRIMMED_AT: AtomicU64 = AtomicU64::new(0);

/// Notes that a connection gave up its buffers.
pub fn note_parked() {
    PARKED.fetch_add(1, Relaxed);
}

/// Connections parked since the process started.
pub fn parked() -> u64 {
    PARKED.load(Relaxed)
}

/// Returns free heap pages to the system if connections were parked since the last call.
pub fn release_freed() {
    let parked = PARKED.load(Relaxed);
    if TRIMMED_AT.swap(parked, Relaxed) != parked {
        trim();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes no pointers; it only walks glibc's own heap under its
    // locks, and is safe to call from any thread at any time.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
