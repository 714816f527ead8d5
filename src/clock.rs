//! The clock, injected so that expiry decisions can be tested without waiting.

use std::time::{SystemTime, UNIX_EPOCH};

/// Tells the wall-clock time as seconds since the Unix epoch (the unit of `exp`, `nbf`, `iat`).
pub trait Clock: Send + Sync + 'static {
    fn now_unix(&self) -> u64;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}
