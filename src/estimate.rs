//! The wait estimate: a visitor's position over the admission rate actually measured while people
//! were waiting, and how soon to ask again.

use std::collections::VecDeque;

use crate::controller::RoomLoad;
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
    waiting: u64,
    /// Slots held: active sessions plus admitted visitors not arrived yet.
    in_use: u64,
}

/// Measures how fast a room can admit, from its load sampled once a tick, in two ways:
///
/// - the admission rate: admissions over the intervals that began with visitors waiting (when
///   nobody waits, admissions measure demand, not the speed of the queue);
/// - the rate slots free: sessions that ended (left, expired, revoked, a claim that lapsed) per
///   slot held per minute, so that it holds at any load.
///
/// Where slots are too few for the queue, the second is what admits: a room that filled its free
/// slots at once admitted fast for a moment, but after that only as fast as slots free. Without
/// it, the estimate took that first burst for the room's speed (waits at join shown 59 % short).
#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    samples: VecDeque<Sample>,
}

impl RateMeter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the room's load at `now`.
    pub fn record(&mut self, now: u64, load: &RoomLoad) {
        if let Some(last) = self.samples.back() {
            if now < last.at || load.admitted_total < last.admitted_total {
                // Clock or counter went back (a new store, a restart): start over.
                self.samples.clear();
            }
        }
        self.samples.push_back(Sample {
            at: now,
            admitted_total: load.admitted_total,
            waiting: load.waiting,
            in_use: load.active.saturating_add(load.admitted),
        });
        while self.samples.len() > 2 && self.samples[1].at.saturating_add(RATE_WINDOW_MS) <= now {
            self.samples.pop_front();
        }
    }

    fn intervals(&self) -> impl Iterator<Item = (&Sample, &Sample)> {
        self.samples.iter().zip(self.samples.iter().skip(1))
    }

    /// Admissions per minute while people waited, or `None` without enough measurement.
    pub fn admission_rate_per_minute(&self) -> Option<f64> {
        let mut admitted = 0u64;
        let mut duration = 0u64;
        for (a, b) in self.intervals().filter(|(a, _)| a.waiting > 0) {
            admitted += b.admitted_total - a.admitted_total;
            duration += b.at - a.at;
        }
        (duration >= MIN_MEASURED_MS).then(|| admitted as f64 * 60_000.0 / duration as f64)
    }

    /// How many of `max_active` slots free per minute, at the rate sessions were seen to end
    /// per slot held; `None` before they were seen to end for long enough to tell. Time before
    /// the first end in the window does not count: sessions that last a while end none at
    /// first, which says how long they last, not how fast they end once they do.
    pub fn freeing_rate_per_minute(&self, max_active: u64) -> Option<f64> {
        let mut freed = 0u64;
        let mut slot_ms = 0f64;
        let mut measured_ms = 0u64;
        for (a, b) in self.intervals() {
            let admitted = b.admitted_total - a.admitted_total;
            // Admissions take slots, ends give them back: what was not taken up was freed.
            let ended = (a.in_use + admitted).saturating_sub(b.in_use);
            if freed == 0 && ended == 0 {
                continue;
            }
            freed += ended;
            let dt = b.at - a.at;
            slot_ms += (a.in_use + b.in_use) as f64 / 2.0 * dt as f64;
            measured_ms += dt;
        }
        (measured_ms >= MIN_MEASURED_MS && slot_ms > 0.0)
            .then(|| freed as f64 / slot_ms * max_active as f64 * 60_000.0)
    }

    /// The admissions per minute the queue can expect from here on, or `None` without enough
    /// measurement (the configured rate then stands in). Where the free slots do not cover
    /// everyone waiting, no more than the slots free: `Some(0.0)` (no estimate) while none have
    /// been seen to free yet.
    pub fn rate_per_minute(&self, max_active: u64) -> Option<f64> {
        let admission = self.admission_rate_per_minute();
        let last = self.samples.back()?;
        let free_now = max_active.saturating_sub(last.in_use);
        if free_now >= last.waiting {
            return admission;
        }
        let freeing = self.freeing_rate_per_minute(max_active).unwrap_or(0.0);
        Some(admission.map_or(freeing, |a| a.min(freeing)))
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
/// from a [`RateMeter`]; without it the configured rate is assumed for a position the room's
/// slots could take at once, and no estimate is given beyond them (how fast slots free is not
/// known yet). The configured rate caps the measurement, as no more than that will ever be
/// admitted.
pub fn estimate(
    position: u64,
    measured_per_minute: Option<f64>,
    config: &RoomConfig,
    paused: bool,
) -> WaitEstimate {
    let max_poll = max_poll_ms(config);
    let configured = config.admit_per_minute as f64;
    let rate = match measured_per_minute {
        Some(measured) => measured.min(configured),
        None if position > config.max_active => 0.0,
        None => configured,
    };
    if paused || configured <= 0.0 {
        return WaitEstimate {
            eta_seconds: None,
            poll_after_ms: max_poll,
        };
    }
    if rate <= 0.0 || !rate.is_finite() {
        // Not known yet, but never sooner than at the configured rate: ask again by a quarter
        // of that, so that one admitted sooner than anyone can tell learns it in time (asking
        // every 30 s, a room just opened held its first admissions unclaimed for that long).
        let soonest_ms = (position as f64 * 60_000.0 / configured).min(u64::MAX as f64) as u64;
        return WaitEstimate {
            eta_seconds: None,
            poll_after_ms: (soonest_ms / 4).clamp(MIN_POLL_MS, max_poll),
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

/// How soon a visitor waiting for a draw (random mode) asks again. Anyone may be drawn at the
/// next batch, and a drawn visitor holds a slot, unclaimed, until its next poll: at the room's
/// full rate, visitors who poll every `p` hold `rate * p / 2` slots on average. Polling every
/// `max_active / (2 * admit_per_minute)` keeps that to a quarter of `max_active`, at the cost of
/// everyone waiting polling that often (FIFO asks only the front to).
pub fn draw_poll_ms(config: &RoomConfig, paused: bool) -> u64 {
    let max_poll = max_poll_ms(config);
    if paused || config.admit_per_minute == 0 {
        return max_poll;
    }
    let ms = config.max_active.saturating_mul(60_000) / (2 * config.admit_per_minute);
    ms.clamp(MIN_POLL_MS, max_poll)
}

/// Visitors admitted between polls must still arrive within the claim window, and a waiting
/// visitor who polls must never look gone ([`RoomConfig::abandon_after_s`]), so the poll
/// interval stays well inside both.
pub fn max_poll_ms(config: &RoomConfig) -> u64 {
    let abandon = config.abandon_after_ms().unwrap_or(u64::MAX);
    (config.claim_window_ms().min(abandon) / 4).clamp(MIN_POLL_MS, MAX_POLL_MS)
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

    /// A load with `waiting` visitors and `in_use` slots held.
    fn load(admitted_total: u64, waiting: u64, in_use: u64) -> RoomLoad {
        RoomLoad {
            waiting,
            active: in_use,
            admitted: 0,
            admitted_total,
            no_shows_total: 0,
        }
    }

    const ROOMY: u64 = 1_000_000;

    #[test]
    fn a_draw_asks_often_enough_to_claim_before_a_quarter_of_the_slots_is_held() {
        let room = |max_active, per_minute| RoomConfig {
            max_active,
            admit_per_minute: per_minute,
            ..RoomConfig::default()
        };
        // 1000 slots at 6000 a minute: every 5 s.
        assert_eq!(draw_poll_ms(&room(1_000, 6_000), false), 5_000);
        // Never below a second, never beyond the claim window's quarter, the longest when paused.
        assert_eq!(draw_poll_ms(&room(10, 6_000), false), MIN_POLL_MS);
        let slow = room(1_000, 60);
        assert_eq!(draw_poll_ms(&slow, false), max_poll_ms(&slow));
        assert_eq!(draw_poll_ms(&room(1_000, 6_000), true), max_poll_ms(&slow));
    }

    #[test]
    fn measures_only_backlogged_time() {
        let mut meter = RateMeter::new();
        let mut total = 0;
        // 30 s with a backlog at 2 a second, then 30 s idle with 1 admitted a second.
        for s in 0..=30 {
            meter.record(s * 1000, &load(total, 10, 0));
            total += 2;
        }
        for s in 31..=60 {
            meter.record(s * 1000, &load(total, 0, 0));
            total += 1;
        }
        let rate = meter.admission_rate_per_minute().unwrap();
        assert!((rate - 120.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn forgets_beyond_the_window() {
        let mut meter = RateMeter::new();
        let mut total = 0;
        for s in 0..=120 {
            meter.record(s * 1000, &load(total, 10, 0));
            total += if s < 60 { 10 } else { 1 };
        }
        let rate = meter.rate_per_minute(ROOMY).unwrap();
        assert!((rate - 60.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn too_little_measurement_is_none() {
        let mut meter = RateMeter::new();
        meter.record(0, &load(0, 10, 0));
        meter.record(1000, &load(5, 10, 5));
        assert_eq!(meter.rate_per_minute(ROOMY), None);
    }

    #[test]
    fn a_counter_reset_starts_over() {
        let mut meter = RateMeter::new();
        for s in 0..=10 {
            meter.record(s * 1000, &load(100 + s, 10, 0));
        }
        meter.record(11_000, &load(0, 10, 0));
        assert_eq!(meter.rate_per_minute(ROOMY), None);
    }

    /// A crowd of 1,000 joins a room of 50 slots admitting up to 1,200 a minute (2 a tenth of a
    /// second); each visitor stays 5 s. The slots fill in 2.5 s, then free 10 a second.
    #[test]
    fn where_slots_are_few_the_rate_is_how_fast_they_free() {
        let mut meter = RateMeter::new();
        let mut stays = VecDeque::new();
        let mut admitted = 0u64;
        let mut rates = Vec::new();
        for tenth in 0..=600u64 {
            let now = tenth * 100;
            while stays.front().is_some_and(|&at| at + 5_000 <= now) {
                stays.pop_front();
            }
            let admit = (50 - stays.len() as u64).min(2).min(1000 - admitted);
            admitted += admit;
            stays.extend(std::iter::repeat_n(now, admit as usize));
            meter.record(now, &load(admitted, 1000 - admitted, stays.len() as u64));
            rates.push(meter.rate_per_minute(50));
        }
        // Full, and nobody has left yet: no rate, so no estimate, rather than the fill's
        // 1,200 a minute.
        assert_eq!(rates[40], Some(0.0));
        // Then the rate at which slots free: 10 a second.
        for at in [150, 300, 600] {
            let rate = rates[at].unwrap();
            assert!((rate - 600.0).abs() / 600.0 < 0.05, "{at}: {rate}");
        }
    }

    #[test]
    fn the_fill_does_not_count_as_speed() {
        // 50 slots filled at once at t = 0; afterwards one ends and one is admitted each second.
        let mut meter = RateMeter::new();
        meter.record(0, &load(0, 1000, 0));
        for s in 1..=20u64 {
            let admitted = 49 + s;
            meter.record(s * 1000, &load(admitted, 1000 - admitted, 50));
        }
        // The admission rate counts the fill: 70 in 20 s.
        let admission = meter.admission_rate_per_minute().unwrap();
        assert!(admission > 200.0, "{admission}");
        // What the queue can expect: one slot a second.
        let rate = meter.rate_per_minute(50).unwrap();
        assert!((rate - 60.0).abs() < 6.0, "{rate}");
    }

    #[test]
    fn with_slots_for_everyone_the_admission_rate_stands() {
        // A rate-limited room far from full: nobody has left yet, which says nothing.
        let mut meter = RateMeter::new();
        for s in 0..=10u64 {
            meter.record(s * 1000, &load(s * 10, 5, s * 10));
        }
        let rate = meter.rate_per_minute(1000).unwrap();
        assert!((rate - 600.0).abs() < 1e-9, "{rate}");
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
        // Nor beyond the slots, before anything is known of how fast they free.
        let cfg = RoomConfig {
            max_active: 50,
            ..config(600)
        };
        assert_eq!(estimate(50, None, &cfg, false).eta_seconds, Some(5));
        assert_eq!(estimate(51, None, &cfg, false).eta_seconds, None);
        // Unknown, but asked for again by a quarter of the soonest it could come (at the
        // configured rate): 80 places at 600 a minute is 8 s at the soonest.
        assert_eq!(estimate(80, None, &cfg, false).poll_after_ms, 2_000);
        // A measurement above the configured rate is capped by it.
        let e = estimate(600, Some(6000.0), &config(600), false);
        assert_eq!(e.eta_seconds, Some(60));
    }

    #[test]
    fn paused_or_stalled_rooms_have_no_eta() {
        assert_eq!(estimate(5, Some(60.0), &config(60), true).eta_seconds, None);
        assert_eq!(estimate(5, Some(0.0), &config(60), false).eta_seconds, None);
        assert_eq!(
            estimate(5, Some(60.0), &config(60), true).poll_after_ms,
            MAX_POLL_MS
        );
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
