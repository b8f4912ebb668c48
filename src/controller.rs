//! The admission controller: how many visitors a room may admit now.
//!
//! Two limits apply. Capacity: active sessions plus admitted visitors who have not arrived yet
//! never exceed `max_active`. Rate: a token bucket refilled at `admit_per_minute` caps how fast
//! visitors come in, so that an opening does not let the whole capacity in at one instant.
//!
//! The controller is sans-IO: the scheduler passes the room's load and the time in, and reports
//! the admissions the store actually made (batch admissions, direct entries at an open room and
//! operator admissions all draw on the same bucket). An admission no visitor came for (ended as a
//! no-show, [`crate::shard::Shard::no_shows_total`]) is given back to the bucket: the rate is what
//! the application can take, and that admission never reached it.

use crate::room::RoomConfig;

/// A room's load, as the store counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoomLoad {
    /// Visitors in the queue who have neither been admitted nor left.
    pub waiting: u64,
    /// Sessions in the application.
    pub active: u64,
    /// Admitted visitors who have not arrived yet and are still inside their claim window.
    pub admitted: u64,
    /// Admissions ever made in the room (all kinds), a counter that only grows.
    pub admitted_total: u64,
    /// Admissions ended because their visitors never came for them, a counter that only grows.
    pub no_shows_total: u64,
}

impl RoomLoad {
    /// Free slots under `max_active`.
    pub fn free(&self, config: &RoomConfig) -> u64 {
        config
            .max_active
            .saturating_sub(self.active.saturating_add(self.admitted))
    }
}

/// The rate bucket holds at most this many ticks' worth of admissions, so that a tick that runs
/// a little late does not lose rate, while a long idle time does not save up a stampede.
const BURST_TICKS: u128 = 2;
/// A tick that comes later than that (a slow store, a busy machine: ticks that take longer than
/// the interval) may still grant what the time since the previous one earned, up to this many
/// ticks' worth or [`MAX_LATE_MS`], whichever is longer; otherwise a scheduler whose ticks always
/// run late would admit below the rate.
const MAX_LATE_TICKS: u128 = 10;
const MAX_LATE_MS: u128 = 5_000;
/// The bucket counts in 1/60,000ths of an admission, so that `admit_per_minute` times elapsed
/// milliseconds is exact: no float drift over a long sale.
const UNITS_PER_ADMISSION: u128 = 60_000;

#[derive(Debug, Clone, Default)]
pub struct AdmissionController {
    tokens: u128,
    last_refill: Option<u64>,
    last_admitted_total: Option<u64>,
    last_no_shows_total: Option<u64>,
}

impl AdmissionController {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many to admit at this tick. `tick_ms` is the scheduler's interval. Call once per
    /// tick with the room's current load; the admissions counted in `load.admitted_total` since
    /// the previous call are charged to the bucket first.
    pub fn grant(&mut self, config: &RoomConfig, load: RoomLoad, tick_ms: u64, now: u64) -> u64 {
        let per_minute = u128::from(config.admit_per_minute);
        let tick = u128::from(tick_ms.max(1));
        let elapsed = self
            .last_refill
            .map_or(0, |last| u128::from(now.saturating_sub(last)));
        let late_cap = (tick * MAX_LATE_TICKS).max(MAX_LATE_MS);
        let window = (tick * BURST_TICKS).max(elapsed.min(late_cap));
        let burst = (per_minute * window).max(UNITS_PER_ADMISSION);
        if let Some(last) = self.last_admitted_total {
            let used = u128::from(load.admitted_total.saturating_sub(last));
            self.tokens = self.tokens.saturating_sub(used * UNITS_PER_ADMISSION);
        }
        self.last_admitted_total = Some(load.admitted_total);
        let refunded = self.last_no_shows_total.map_or(0, |last| {
            u128::from(load.no_shows_total.saturating_sub(last)) * UNITS_PER_ADMISSION
        });
        self.last_no_shows_total = Some(load.no_shows_total);
        self.tokens = match self.last_refill {
            // A refund is added past the cap: it replaces an admission already charged, so it
            // keeps the rate the application sees rather than saving up a stampede.
            Some(_) => (self.tokens + per_minute * elapsed).min(burst) + refunded,
            // A new bucket starts full, so that a room opens at once even at a slow rate.
            None => burst,
        };
        self.last_refill = Some(now);
        let budget = u64::try_from(self.tokens / UNITS_PER_ADMISSION).unwrap_or(u64::MAX);
        budget.min(load.free(config))
    }
}

/// The most a single tick can grant (a full bucket after a long-late tick, or the whole
/// capacity, whichever is smaller): how many waiting visitors of each shard a plan may need.
pub fn max_grant(config: &RoomConfig, tick_ms: u64) -> u64 {
    let tick = u128::from(tick_ms.max(1));
    let window = (tick * BURST_TICKS).max((tick * MAX_LATE_TICKS).max(MAX_LATE_MS));
    let bucket = (u128::from(config.admit_per_minute) * window).div_ceil(UNITS_PER_ADMISSION);
    u64::try_from(bucket)
        .unwrap_or(u64::MAX)
        .clamp(1, config.max_active.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config(max_active: u64, per_minute: u64) -> RoomConfig {
        RoomConfig {
            max_active,
            admit_per_minute: per_minute,
            ..RoomConfig::default()
        }
    }

    #[test]
    fn rate_limits_a_long_queue_exactly_over_time() {
        let cfg = config(1_000_000, 600);
        let mut ctl = AdmissionController::new();
        let mut load = RoomLoad {
            waiting: 1_000_000,
            ..RoomLoad::default()
        };
        let mut now = 0;
        for _ in 0..=600 {
            let n = ctl.grant(&cfg, load, 1000, now);
            load.admitted_total += n;
            load.admitted += n;
            now += 1000;
        }
        // A full bucket (two ticks' worth) at the start, then 600/min for ten minutes.
        assert_eq!(load.admitted_total, 20 + 6000);
    }

    #[test]
    fn fractional_rates_accumulate() {
        let cfg = config(100, 6); // one every ten seconds
        let mut ctl = AdmissionController::new();
        let mut total = 0;
        for tick in 0..=60 {
            let n = ctl.grant(
                &cfg,
                RoomLoad {
                    admitted_total: total,
                    ..RoomLoad::default()
                },
                1000,
                tick * 1000,
            );
            total += n;
        }
        // The bucket starts with one admission (the least it holds), then one per ten seconds.
        assert_eq!(total, 1 + 6);
    }

    #[test]
    fn capacity_caps_the_grant() {
        let cfg = config(10, 60_000);
        let mut ctl = AdmissionController::new();
        let load = RoomLoad {
            waiting: 100,
            active: 7,
            admitted: 2,
            admitted_total: 9,
            ..RoomLoad::default()
        };
        assert_eq!(ctl.grant(&cfg, load, 1000, 1000), 1);
    }

    #[test]
    fn a_late_tick_does_not_lose_rate_but_idle_time_does_not_hoard() {
        let cfg = config(1_000_000, 60_000); // 1,000 a second
        let mut ctl = AdmissionController::new();
        let mut load = RoomLoad::default();
        assert_eq!(ctl.grant(&cfg, load, 1000, 0), 2000);
        load.admitted_total += 2000;
        assert_eq!(ctl.grant(&cfg, load, 1000, 1000), 1000);
        load.admitted_total += 1000;
        // The tick runs 500 ms late: one and a half seconds' worth.
        assert_eq!(ctl.grant(&cfg, load, 1000, 2500), 1500);
        load.admitted_total += 1500;
        // An hour idle saves up no more than ten ticks' worth.
        assert_eq!(ctl.grant(&cfg, load, 1000, 3_600_000), 10_000);
    }

    #[test]
    fn ticks_that_always_run_late_keep_the_rate() {
        // A 100 ms tick that takes 700 ms each time (a slow store): 600 a minute still.
        let cfg = config(1_000_000, 600);
        let mut ctl = AdmissionController::new();
        let mut load = RoomLoad {
            waiting: 1_000_000,
            ..RoomLoad::default()
        };
        let mut now = 0;
        while now <= 60_000 {
            load.admitted_total += ctl.grant(&cfg, load, 100, now);
            now += 700;
        }
        // Two ticks' worth at the start, then 10 a second for 59.5 s.
        assert_eq!(load.admitted_total, 2 + 595);

        // Ticks of 100 ms that take 3 s each (far more than ten ticks): the rate still holds.
        let mut ctl = AdmissionController::new();
        load.admitted_total = 0;
        let mut now = 0;
        while now <= 60_000 {
            load.admitted_total += ctl.grant(&cfg, load, 100, now);
            now += 3_000;
        }
        assert_eq!(load.admitted_total, 2 + 600);
    }

    #[test]
    fn admissions_made_elsewhere_draw_on_the_bucket() {
        let cfg = config(1_000_000, 60_000);
        let mut ctl = AdmissionController::new();
        let mut load = RoomLoad::default();
        let granted = ctl.grant(&cfg, load, 1000, 1000);
        assert_eq!(granted, 2000);
        // Direct entries used the whole grant before the next tick.
        load.admitted_total += granted;
        assert_eq!(ctl.grant(&cfg, load, 1000, 2000), 1000);
        // Nobody came: the unused grant stays in the bucket, up to the burst.
        assert_eq!(ctl.grant(&cfg, load, 1000, 3000), 2000);
    }

    #[test]
    fn admissions_no_visitor_came_for_are_given_back() {
        let cfg = config(1_000_000, 60); // one a second
        let mut ctl = AdmissionController::new();
        let mut load = RoomLoad::default();
        assert_eq!(ctl.grant(&cfg, load, 1000, 0), 2);
        load.admitted_total += 2;
        assert_eq!(ctl.grant(&cfg, load, 1000, 1000), 1);
        load.admitted_total += 1;
        // Both of the first two never came: the next tick has their two admissions back on top
        // of its own, even though the bucket holds at most two ticks' worth.
        load.no_shows_total += 2;
        assert_eq!(ctl.grant(&cfg, load, 1000, 2000), 3);
        load.admitted_total += 3;
        // Given back once, not again at every tick.
        assert_eq!(ctl.grant(&cfg, load, 1000, 3000), 1);
        load.admitted_total += 1;
        // A no-show ended while nobody waits is not saved up past the next tick's cap.
        load.no_shows_total += 1;
        assert_eq!(
            ctl.grant(&cfg, RoomLoad { waiting: 0, ..load }, 1000, 4000),
            2
        );
        assert_eq!(ctl.grant(&cfg, load, 1000, 60_000), 10);
    }

    #[test]
    fn no_tick_grants_more_than_max_grant() {
        let cfg = config(1_000_000, 60_000);
        let mut ctl = AdmissionController::new();
        let load = RoomLoad::default();
        let bound = max_grant(&cfg, 1000);
        assert_eq!(bound, 10_000);
        assert!(ctl.grant(&cfg, load, 1000, 0) <= bound);
        assert!(ctl.grant(&cfg, load, 1000, 3_600_000) <= bound);
        assert_eq!(max_grant(&config(30, 60_000), 1000), 30);
    }

    proptest! {
        #[test]
        fn never_grants_over_capacity(
            max_active in 1u64..1000,
            per_minute in 1u64..1_000_000,
            steps in proptest::collection::vec((0u64..5000, 0u64..1000, 0u64..1000, 0u64..3), 1..200),
        ) {
            let cfg = config(max_active, per_minute);
            let mut ctl = AdmissionController::new();
            let mut now = 0;
            let mut total = 0u64;
            let mut active = 0u64;
            let mut admitted = 0u64;
            for (dt, arrivals, departures, _) in steps {
                now += dt;
                // Some admitted visitors arrive, some sessions end.
                let arriving = arrivals.min(admitted);
                admitted -= arriving;
                active += arriving;
                active -= departures.min(active);
                let load = RoomLoad { waiting: 10_000, active, admitted, admitted_total: total, no_shows_total: 0 };
                let n = ctl.grant(&cfg, load, 1000, now);
                prop_assert!(active + admitted + n <= max_active);
                admitted += n;
                total += n;
            }
        }
    }
}
