//! The one place the engine reads time. Tests use [`ManualClock`]; replay never reads a clock.

use std::sync::atomic::{AtomicI64, Ordering};

use idgraph_model::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        #[expect(clippy::disallowed_methods, reason = "this is the clock module")]
        let now = std::time::SystemTime::now();
        let micros =
            now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
        Timestamp(micros)
    }
}

/// A clock that advances only when told, by a fixed step per reading: deterministic tests.
#[derive(Debug)]
pub struct ManualClock {
    micros: AtomicI64,
    step_micros: i64,
}

impl ManualClock {
    /// Starts at `start` and advances by `step_micros` after each reading.
    pub fn new(start: Timestamp, step_micros: i64) -> ManualClock {
        ManualClock { micros: AtomicI64::new(start.0), step_micros }
    }

    /// Moves the clock forward.
    pub fn advance(&self, micros: i64) {
        self.micros.fetch_add(micros, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.micros.fetch_add(self.step_micros, Ordering::SeqCst))
    }
}

impl<T: Clock> Clock for std::sync::Arc<T> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}
