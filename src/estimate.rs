//! The wait estimate: a visitor's position over the admission rate actually measured while people
//! were waiting, and how soon to ask again.

use std::collections::VecDeque;

use crate::room::RoomConfig;

/// The rate is measured over this much recent time.
pub const RATE_WINDOW_MS: u64 = 60_000;
/// Below this much measured backlog time the configured rate stands in for the measurement.
pub const MIN_MEASURED_MS: u64 = 5_000;
/// Asking more often than this gains nothing: admission state changes once a tick.
pub const MIN_POLL_MS: u64 = 1_000;
pub const MAX_POLL_MS: u64 = 30_000;

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: u64,
    admitted_total: u64,
    backlogged: bool,
}

/// Measures the admission rate from the admissions counter, sampled once a tick. Only intervals
/// that began with visitors waiting count: when nobody waits, admissions measure demand, not the
/// speed of the queue.
#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    samples: VecDeque<Sample>,
}

impl RateMeter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the admissions counter at `now`; `backlogged` says whether anyone was waiting.
    pub fn record(&mut self, now: u64, admitted_total: u64, backlogged: bool) {
        if let Some(last) = self.samples.back() {
            if now < last.at || admitted_total < last.admitted_total {
                // Clock or counter went back (a new store, a restart): start over.
                self.samples.clear();
            }
        }
        self.samples.push_back(Sample {
            at: now,
            admitted_total,
            backlogged,
        });
        while self.samples.len() > 2 && self.samples[1].at.saturating_add(RATE_WINDOW_MS) <= now {
            self.samples.pop_front();
        }
    }

    /// Admissions per minute while people waited, or `None` without enough measurement.
    pub fn rate_per_minute(&self) -> Option<f64> {
        let mut admitted = 0u64;
        let mut duration = 0u64;
        for (a, b) in self.samples.iter().zip(self.samples.iter().skip(1)) {
            if a.backlogged {
                admitted += b.admitted_total - a.admitted_total;
                duration += b.at - a.at;
            }
        }
        (duration >= MIN_MEASURED_MS).then(|| admitted as f64 * 60_000.0 / duration as f64)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitEstimate {
    /// Seconds until admission, or `None` when nobody is being admitted (paused, or full with
    /// nobody leaving): an honest "unknown" instead of a made-up number.
    pub eta_seconds: Option<u64>,
    /// When to ask again.
    pub poll_after_ms: u64,
}

/// The estimate for a visitor at `position` (1 = next in line). `measured_per_minute` comes
/// from a [`RateMeter`]; without it the configured rate is assumed. The configured rate caps the
/// measurement, as no more than that will ever be admitted.
pub fn estimate(
    position: u64,
    measured_per_minute: Option<f64>,
    config: &RoomConfig,
    paused: bool,
) -> WaitEstimate {
    let max_poll = max_poll_ms(config);
    let configured = config.admit_per_minute as f64;
    let rate = measured_per_minute.map_or(configured, |m| m.min(configured));
    if paused || rate <= 0.0 || !rate.is_finite() {
        return WaitEstimate {
            eta_seconds: None,
            poll_after_ms: max_poll,
        };
    }
    let eta_seconds = (position as f64 * 60.0 / rate).ceil();
    let eta_seconds = if eta_seconds >= u64::MAX as f64 {
        u64::MAX
    } else {
        eta_seconds as u64
    };
    let poll_after_ms = (eta_seconds.saturating_mul(1000) / 4).clamp(MIN_POLL_MS, max_poll);
    WaitEstimate {
        eta_seconds: Some(eta_seconds),
        poll_after_ms,
    }
}

/// Visitors admitted between polls must still arrive within the claim window, so the poll
/// interval stays well inside it.
pub fn max_poll_ms(config: &RoomConfig) -> u64 {
    (config.claim_window_ms() / 4).clamp(MIN_POLL_MS, MAX_POLL_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(per_minute: u64) -> RoomConfig {
        RoomConfig {
            admit_per_minute: per_minute,
            ..RoomConfig::default()
        }
    }

    #[test]
    fn measures_only_backlogged_time() {
        let mut meter = RateMeter::new();
        let mut total = 0;
        // 30 s with a backlog at 2 a second, then 30 s idle with 1 admitted a second.
        for s in 0..=30 {
            meter.record(s * 1000, total, true);
            total += 2;
        }
        for s in 31..=60 {
            meter.record(s * 1000, total, false);
            total += 1;
        }
        let rate = meter.rate_per_minute().unwrap();
        assert!((rate - 120.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn forgets_beyond_the_window() {
        let mut meter = RateMeter::new();
        let mut total = 0;
        for s in 0..=120 {
            meter.record(s * 1000, total, true);
            total += if s < 60 { 10 } else { 1 };
        }
        let rate = meter.rate_per_minute().unwrap();
        assert!((rate - 60.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn too_little_measurement_is_none() {
        let mut meter = RateMeter::new();
        meter.record(0, 0, true);
        meter.record(1000, 5, true);
        assert_eq!(meter.rate_per_minute(), None);
    }

    #[test]
    fn a_counter_reset_starts_over() {
        let mut meter = RateMeter::new();
        for s in 0..=10 {
            meter.record(s * 1000, 100 + s, true);
        }
        meter.record(11_000, 0, true);
        assert_eq!(meter.rate_per_minute(), None);
    }

    #[test]
    fn eta_is_position_over_rate() {
        let e = estimate(120, Some(60.0), &config(600), false);
        assert_eq!(e.eta_seconds, Some(120));
        assert_eq!(e.poll_after_ms, 30_000);
        // Without a measurement the configured rate stands in.
        let e = estimate(10, None, &config(600), false);
        assert_eq!(e.eta_seconds, Some(1));
        assert_eq!(e.poll_after_ms, MIN_POLL_MS);
        // A measurement above the configured rate is capped by it.
        let e = estimate(600, Some(6000.0), &config(600), false);
        assert_eq!(e.eta_seconds, Some(60));
    }

    #[test]
    fn paused_or_stalled_rooms_have_no_eta() {
        assert_eq!(estimate(5, Some(60.0), &config(60), true).eta_seconds, None);
        assert_eq!(estimate(5, Some(0.0), &config(60), false).eta_seconds, None);
    }

    #[test]
    fn polls_stay_inside_the_claim_window() {
        let cfg = RoomConfig {
            claim_window_s: 8,
            ..config(1)
        };
        let e = estimate(1_000, None, &cfg, false);
        assert_eq!(e.poll_after_ms, 2_000);
    }
}
