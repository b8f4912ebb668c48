//! The after-sale report: a room minute by minute (joins, admissions, leaves, abandonments, the
//! most visitors waiting at once, how long those admitted from the queue had waited). The
//! admission scheduler builds the open minute from what every tick reads ([`MinuteTally`]) and
//! the store keeps one row per minute, the open one rewritten each tick.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::RoomStats;

pub const MINUTE_MS: u64 = 60_000;

/// Minutes a store keeps per room: two days, so a sale and the day after it.
pub const KEPT_MINUTES: usize = 2 * 24 * 60;

/// One minute of a room.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct ReportMinute {
    /// When the minute began, Unix milliseconds (a multiple of 60,000).
    pub minute_ms: u64,
    /// Visitors who joined (a place in the queue, or straight in when nobody waited).
    pub joins: u64,
    /// Admissions: batches, entries at once and an operator's.
    pub admissions: u64,
    /// Visitors who left the queue themselves.
    pub leaves: u64,
    /// Places ended because their visitors stopped asking (`abandon_after_s`).
    pub abandonments: u64,
    /// Admissions ended because their visitors never came for them.
    pub no_shows: u64,
    /// The most visitors waiting at once, as the scheduler's ticks read it.
    pub peak_waiting: u64,
    /// Visitors the scheduler admitted from the head of the queue, whose time in it is below
    /// (entries at once, an operator's admissions and a random mode's draws are not measured).
    pub waits_measured: u64,
    /// Their time in the queue, seconds: the median, the 90th and 99th percentiles (each within
    /// 5% above the true value); `null` when nobody was measured.
    pub wait_p50_s: Option<f64>,
    pub wait_p90_s: Option<f64>,
    pub wait_p99_s: Option<f64>,
}

impl ReportMinute {
    /// `self` and `kept`, two versions of the same minute, as one: each count the higher of the
    /// two, the time in queue of the one that measured more. The writer of a minute rewrites it
    /// each tick with counts that only grow, so the higher is the newer; and a scheduler that
    /// took the lease (or restarted) mid-minute, counting from its first tick, never takes back
    /// what the one before it had counted.
    pub fn merged(self, kept: &ReportMinute) -> ReportMinute {
        let waits = if self.waits_measured >= kept.waits_measured {
            &self
        } else {
            kept
        };
        ReportMinute {
            minute_ms: self.minute_ms,
            joins: self.joins.max(kept.joins),
            admissions: self.admissions.max(kept.admissions),
            leaves: self.leaves.max(kept.leaves),
            abandonments: self.abandonments.max(kept.abandonments),
            no_shows: self.no_shows.max(kept.no_shows),
            peak_waiting: self.peak_waiting.max(kept.peak_waiting),
            waits_measured: waits.waits_measured,
            wait_p50_s: waits.wait_p50_s,
            wait_p90_s: waits.wait_p90_s,
            wait_p99_s: waits.wait_p99_s,
        }
    }
}

/// A room's running totals, as the scheduler reads them after each tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub joined: u64,
    pub admitted: u64,
    pub left: u64,
    pub abandoned: u64,
    pub no_shows: u64,
}

impl Totals {
    pub fn of(stats: &RoomStats) -> Totals {
        Totals {
            joined: stats.joined_total,
            admitted: stats.admitted_total,
            left: stats.left_total,
            abandoned: stats.abandoned_total,
            no_shows: stats.no_shows_total,
        }
    }
}

/// How much a running total grew: a total below the last one was started again (a new epoch of
/// the room's queue), so all of it is new.
fn grown(now: u64, before: u64) -> u64 {
    if now >= before {
        now - before
    } else {
        now
    }
}

/// Times in queue in buckets 5% apart, so a percentile costs a bounded map whatever the crowd.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WaitHistogram {
    counts: BTreeMap<u32, u64>,
    total: u64,
}

const BUCKET_GROWTH: f64 = 1.05;

impl WaitHistogram {
    pub fn add(&mut self, wait_ms: u64) {
        let bucket = if wait_ms <= 1 {
            0
        } else {
            ((wait_ms as f64).ln() / BUCKET_GROWTH.ln()).ceil() as u32
        };
        *self.counts.entry(bucket).or_default() += 1;
        self.total += 1;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The wait, in milliseconds, that `q` (0 to 1) of those counted waited at most: the upper
    /// bound of the bucket the `q`-th falls in.
    pub fn percentile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (&bucket, &n) in &self.counts {
            seen += n;
            if seen >= rank {
                return Some(BUCKET_GROWTH.powi(bucket as i32).floor() as u64);
            }
        }
        None
    }
}

fn seconds(ms: Option<u64>) -> Option<f64> {
    ms.map(|ms| (ms as f64 / 100.0).round() / 10.0)
}

/// The open minute of one room, tick by tick: the scheduler keeps one per room.
#[derive(Debug, Clone, Default)]
pub struct MinuteTally {
    previous: Option<Totals>,
    row: ReportMinute,
    waits: WaitHistogram,
}

impl MinuteTally {
    /// Takes in a tick at `now`: the room's totals and how many waited after it, and the times
    /// in queue (ms) of those it admitted from the head of the queue. Returns the row of the
    /// minute `now` falls in, as it stands, for the store to keep. What a tick counts goes to the
    /// minute it ends in; the first tick a tally sees only sets where its totals start.
    pub fn observe(
        &mut self,
        now: u64,
        totals: Totals,
        waiting: u64,
        waits_ms: &[u64],
    ) -> ReportMinute {
        let minute_ms = now - now % MINUTE_MS;
        if self.row.minute_ms != minute_ms {
            self.row = ReportMinute {
                minute_ms,
                ..ReportMinute::default()
            };
            self.waits = WaitHistogram::default();
        }
        let before = self.previous.unwrap_or(totals);
        let row = &mut self.row;
        row.joins += grown(totals.joined, before.joined);
        row.admissions += grown(totals.admitted, before.admitted);
        row.leaves += grown(totals.left, before.left);
        row.abandonments += grown(totals.abandoned, before.abandoned);
        row.no_shows += grown(totals.no_shows, before.no_shows);
        row.peak_waiting = row.peak_waiting.max(waiting);
        self.previous = Some(totals);
        for &wait in waits_ms {
            self.waits.add(wait);
        }
        row.waits_measured = self.waits.count();
        row.wait_p50_s = seconds(self.waits.percentile(0.50));
        row.wait_p90_s = seconds(self.waits.percentile(0.90));
        row.wait_p99_s = seconds(self.waits.percentile(0.99));
        row.clone()
    }
}

/// Puts `row` into `minutes` (oldest first): merged into the row of its minute
/// ([`ReportMinute::merged`]), or after the last, dropping the oldest beyond [`KEPT_MINUTES`].
/// A row older than the last is dropped: a scheduler that lost its lease does not write back
/// over its successor's minutes.
pub fn upsert(minutes: &mut std::collections::VecDeque<ReportMinute>, row: ReportMinute) {
    match minutes.back_mut() {
        Some(last) if last.minute_ms == row.minute_ms => *last = row.merged(last),
        Some(last) if last.minute_ms > row.minute_ms => {}
        _ => {
            minutes.push_back(row);
            while minutes.len() > KEPT_MINUTES {
                minutes.pop_front();
            }
        }
    }
}

/// `GET .../admin/rooms/{room}/report`: the room's minutes, oldest first, and their sums.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct Report {
    pub room: String,
    pub minutes: Vec<ReportMinute>,
    /// The minutes added up (the peak is the highest of theirs); percentiles do not add up, so
    /// the time in queue is per minute only.
    pub totals: ReportTotals,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct ReportTotals {
    pub joins: u64,
    pub admissions: u64,
    pub leaves: u64,
    pub abandonments: u64,
    pub no_shows: u64,
    pub peak_waiting: u64,
    pub waits_measured: u64,
}

impl Report {
    pub fn new(room: String, minutes: Vec<ReportMinute>) -> Report {
        let mut totals = ReportTotals::default();
        for m in &minutes {
            totals.joins += m.joins;
            totals.admissions += m.admissions;
            totals.leaves += m.leaves;
            totals.abandonments += m.abandonments;
            totals.no_shows += m.no_shows;
            totals.peak_waiting = totals.peak_waiting.max(m.peak_waiting);
            totals.waits_measured += m.waits_measured;
        }
        Report {
            room,
            minutes,
            totals,
        }
    }

    /// The minutes as CSV (RFC 4180, a header line), the minute as Unix milliseconds and as
    /// `minute_utc`, given by `utc` (the shell's date formatting).
    pub fn to_csv(&self, utc: impl Fn(u64) -> String) -> String {
        let mut out = String::from(
            "minute_utc,minute_ms,joins,admissions,leaves,abandonments,no_shows,peak_waiting,\
             waits_measured,wait_p50_s,wait_p90_s,wait_p99_s\r\n",
        );
        let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        for m in &self.minutes {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{},{}\r\n",
                utc(m.minute_ms),
                m.minute_ms,
                m.joins,
                m.admissions,
                m.leaves,
                m.abandonments,
                m.no_shows,
                m.peak_waiting,
                m.waits_measured,
                opt(m.wait_p50_s),
                opt(m.wait_p90_s),
                opt(m.wait_p99_s),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    const T0: u64 = 1_800_000_000_000 - 1_800_000_000_000 % MINUTE_MS;

    fn totals(joined: u64, admitted: u64, left: u64, abandoned: u64) -> Totals {
        Totals {
            joined,
            admitted,
            left,
            abandoned,
            no_shows: 0,
        }
    }

    #[test]
    fn a_minute_counts_what_its_ticks_added() {
        let mut tally = MinuteTally::default();
        // The first tick only says where the totals stand.
        let row = tally.observe(T0 + 1_000, totals(100, 40, 5, 1), 55, &[]);
        assert_eq!((row.joins, row.admissions, row.peak_waiting), (0, 0, 55));
        tally.observe(T0 + 2_000, totals(130, 45, 7, 1), 80, &[10_000; 5]);
        let row = tally.observe(T0 + 3_000, totals(140, 60, 8, 3), 62, &[20_000; 15]);
        assert_eq!(row.minute_ms, T0);
        assert_eq!(
            (row.joins, row.admissions, row.leaves, row.abandonments),
            (40, 20, 3, 2)
        );
        assert_eq!(row.peak_waiting, 80);
        assert_eq!(row.waits_measured, 20);
        let p50 = row.wait_p50_s.unwrap();
        assert!((20.0..=21.0).contains(&p50), "{p50}");

        // The next minute starts from nothing, and from the totals where the last one ended.
        let row = tally.observe(T0 + MINUTE_MS + 500, totals(141, 70, 8, 3), 53, &[]);
        assert_eq!(row.minute_ms, T0 + MINUTE_MS);
        assert_eq!((row.joins, row.admissions, row.peak_waiting), (1, 10, 53));
        assert_eq!((row.waits_measured, row.wait_p50_s), (0, None));
    }

    #[test]
    fn totals_started_again_count_from_zero() {
        let mut tally = MinuteTally::default();
        tally.observe(T0, totals(500, 400, 0, 0), 100, &[]);
        let row = tally.observe(T0 + 1_000, totals(3, 1, 0, 0), 2, &[]);
        assert_eq!((row.joins, row.admissions), (3, 1));
    }

    #[test]
    fn percentiles_are_within_five_percent_above() {
        let mut h = WaitHistogram::default();
        for ms in 1..=1_000u64 {
            h.add(ms * 100);
        }
        for (q, exact) in [(0.5, 50_000.0), (0.9, 90_000.0), (0.99, 99_000.0)] {
            let got = h.percentile(q).unwrap() as f64;
            assert!(got >= exact * 0.999 && got <= exact * 1.05, "{q}: {got}");
        }
        assert_eq!(WaitHistogram::default().percentile(0.5), None);
        let mut one = WaitHistogram::default();
        one.add(0);
        assert_eq!(one.percentile(0.99), Some(1));
    }

    #[test]
    fn a_scheduler_counting_from_mid_minute_takes_nothing_back() {
        let kept = ReportMinute {
            minute_ms: T0,
            joins: 6,
            leaves: 1,
            peak_waiting: 5,
            ..ReportMinute::default()
        };
        // The next holder of the lease saw the joins before its first tick only as its start.
        let newer = ReportMinute {
            minute_ms: T0,
            admissions: 5,
            waits_measured: 5,
            wait_p50_s: Some(0.7),
            wait_p90_s: Some(0.8),
            wait_p99_s: Some(0.8),
            ..ReportMinute::default()
        };
        let merged = newer.clone().merged(&kept);
        assert_eq!(
            (
                merged.joins,
                merged.leaves,
                merged.peak_waiting,
                merged.admissions
            ),
            (6, 1, 5, 5)
        );
        assert_eq!((merged.waits_measured, merged.wait_p50_s), (5, Some(0.7)));
        // The same writer's later version of the minute is all there is to keep.
        let later = ReportMinute {
            joins: 7,
            ..merged.clone()
        };
        assert_eq!(later.clone().merged(&merged), later);
    }

    #[test]
    fn the_store_keeps_one_row_a_minute_and_two_days_of_them() {
        let mut minutes = VecDeque::new();
        let row = |minute: u64, joins: u64| ReportMinute {
            minute_ms: T0 + minute * MINUTE_MS,
            joins,
            ..ReportMinute::default()
        };
        upsert(&mut minutes, row(0, 1));
        upsert(&mut minutes, row(0, 5));
        upsert(&mut minutes, row(1, 2));
        // A late writer's older minute changes nothing.
        upsert(&mut minutes, row(0, 99));
        assert_eq!(
            minutes.iter().map(|m| m.joins).collect::<Vec<_>>(),
            vec![5, 2]
        );
        for minute in 2..(KEPT_MINUTES as u64 + 10) {
            upsert(&mut minutes, row(minute, minute));
        }
        assert_eq!(minutes.len(), KEPT_MINUTES);
        assert_eq!(minutes.front().unwrap().joins, 10);
    }

    #[test]
    fn the_csv_has_a_line_a_minute_and_empty_cells_for_no_measure() {
        let minutes = vec![
            ReportMinute {
                minute_ms: T0,
                joins: 7,
                waits_measured: 2,
                wait_p50_s: Some(1.5),
                wait_p90_s: Some(2.0),
                wait_p99_s: Some(2.0),
                ..ReportMinute::default()
            },
            ReportMinute {
                minute_ms: T0 + MINUTE_MS,
                admissions: 3,
                ..ReportMinute::default()
            },
        ];
        let report = Report::new("sale".into(), minutes);
        assert_eq!((report.totals.joins, report.totals.admissions), (7, 3));
        let csv = report.to_csv(|ms| format!("t{ms}"));
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines.len(), 4, "{csv}");
        assert!(lines[0].starts_with("minute_utc,minute_ms,joins,"));
        assert_eq!(lines[1], format!("t{T0},{T0},7,0,0,0,0,0,2,1.5,2,2"));
        assert_eq!(
            lines[2],
            format!("t{},{},0,3,0,0,0,0,0,,,", T0 + MINUTE_MS, T0 + MINUTE_MS)
        );
        assert_eq!(lines[3], "");
    }
}
