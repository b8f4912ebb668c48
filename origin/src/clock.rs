//! The one place the origin reads the wall clock, and the platform the request layer runs on:
//! the clock, tokio's timers and the operating system's random bytes. Everything below takes
//! `now` as an argument, so tests can run the server on a clock they move themselves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use queuegate::service::Platform;

/// A source of `now` in Unix milliseconds.
#[derive(Clone)]
pub enum Clock {
    System,
    /// A clock that moves only when told to.
    Manual(Arc<AtomicU64>),
    /// The system clock plus an offset a test moves forward: time passes as usual, and a test
    /// of a TTL or a claim window jumps over it instead of sleeping.
    Shifted(Arc<AtomicU64>),
}

impl Clock {
    pub fn manual(start: u64) -> (Clock, Arc<AtomicU64>) {
        let cell = Arc::new(AtomicU64::new(start));
        (Clock::Manual(cell.clone()), cell)
    }

    /// The system clock, with the offset (in milliseconds) the returned cell holds.
    pub fn shifted() -> (Clock, Arc<AtomicU64>) {
        let offset = Arc::new(AtomicU64::new(0));
        (Clock::Shifted(offset.clone()), offset)
    }

    pub fn now(&self) -> u64 {
        match self {
            Clock::System => system_now(),
            Clock::Manual(cell) => cell.load(Ordering::SeqCst),
            Clock::Shifted(offset) => system_now() + offset.load(Ordering::SeqCst),
        }
    }
}

impl Platform for Clock {
    fn now(&self) -> u64 {
        Clock::now(self)
    }

    fn micros(&self) -> u64 {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_micros() as u64
    }

    /// Real time, whatever the clock: what waits is the network.
    fn sleep(&self, ms: u64) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(Duration::from_millis(ms)))
    }

    fn random(&self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("the operating system's random source works");
    }
}

pub fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Random bytes from the operating system, for room epochs and generated keys.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the operating system's random source works");
    buf
}

pub fn random_epoch() -> u32 {
    u32::from_be_bytes(random_bytes())
}
