//! What a store keeps of one client in one room, and every change to it: the join limit's
//! state ([`super::decide`]), the refusals in a row, the penalty of a client taken for a bot and
//! the places it took lately, so that the penalty can end them. Stores keep the record as a
//! short text ([`ClientRecord::encode`]) and apply [`apply`] atomically (in memory under a lock,
//! on Redis by compare and set, at the edge in the one Durable Object that keeps the client), so
//! the rules live here alone.

use serde::{Deserialize, Serialize};

use super::{decide, Decision, JoinLimit};
use crate::token::Place;

/// How many of a client's latest places a record keeps, for a penalty to end. A client whose
/// burst is larger keeps its older places, but a burst that large is a room's own choice.
pub const RECENT_PLACES: usize = 16;

/// One client's record in one room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientRecord {
    /// The join limit's theoretical arrival time (µs; [`super::decide`]).
    pub tat_us: u64,
    /// Joins refused since the last one allowed that came before the `Retry-After` of the
    /// refusal before them: a page waits it out, a bot that hammers does not.
    pub refused: u32,
    /// When (Unix ms) the last refusal said a join would be allowed; 0: none since the last
    /// join allowed.
    pub retry_at: u64,
    /// Until when (Unix ms) the client is taken for a bot; 0: it is not.
    pub penalized_until: u64,
    /// The places its latest joins took, oldest first.
    pub places: Vec<Place>,
}

impl ClientRecord {
    /// `tat[:refused:retry_at:penalized_until:ticket_id,ticket_id...]`. A record that is only
    /// a time is the bare number, which is also how records were kept before refusals were
    /// counted.
    pub fn encode(&self) -> String {
        if *self
            == (ClientRecord {
                tat_us: self.tat_us,
                ..ClientRecord::default()
            })
        {
            return self.tat_us.to_string();
        }
        let places: Vec<String> = self.places.iter().map(Place::ticket_id).collect();
        format!(
            "{}:{}:{}:{}:{}",
            self.tat_us,
            self.refused,
            self.retry_at,
            self.penalized_until,
            places.join(",")
        )
    }

    /// `None` for text that is no record (which a store then treats as no record at all).
    pub fn decode(text: &str) -> Option<ClientRecord> {
        let mut fields = text.split(':');
        let tat_us = fields.next()?.parse().ok()?;
        let Some(refused) = fields.next() else {
            return Some(ClientRecord {
                tat_us,
                ..ClientRecord::default()
            });
        };
        let refused = refused.parse().ok()?;
        let retry_at = fields.next()?.parse().ok()?;
        let penalized_until = fields.next()?.parse().ok()?;
        let places = match fields.next()? {
            "" => Vec::new(),
            list => list
                .split(',')
                .take(RECENT_PLACES)
                .map(Place::parse_ticket_id)
                .collect::<Option<Vec<_>>>()?,
        };
        if fields.next().is_some() {
            return None;
        }
        Some(ClientRecord {
            tat_us,
            refused,
            retry_at,
            penalized_until,
            places,
        })
    }

    /// How long a store must keep the record (ms, at least 1): while the join limit still
    /// remembers the client, or the penalty lasts.
    fn ttl_ms(&self, now: u64) -> u64 {
        let limit_ms = self.tat_us.div_ceil(1000).saturating_sub(now);
        limit_ms
            .max(self.penalized_until.saturating_sub(now))
            .max(1)
    }
}

/// What is asked of a client's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LimitOp {
    /// A join: take it from the client's allowance.
    Take,
    /// The join allowed went on to take this place: remember it (with a penalty in the room).
    Record(Place),
}

/// What came of a [`LimitOp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The join may go ahead, or the place was recorded.
    Allowed,
    /// Over the limit: a join `retry_after_ms` from now would be allowed.
    Refused { retry_after_ms: u64 },
    /// Taken for a bot until `until` (Unix ms): the join is suspicious, and the caller ends the
    /// places in `end` (those taken before the penalty, once; or the place just recorded).
    Penalized { until: u64, end: Vec<Place> },
}

/// The outcome of `op` on the record kept as `kept` (`None`: none), at `now` under `limit`, and
/// what to keep instead: the record's text and for how long (ms), or `None` to leave what is
/// kept as it is.
pub fn apply(
    kept: Option<&str>,
    op: LimitOp,
    now: u64,
    limit: &JoinLimit,
) -> (Outcome, Option<(String, u64)>) {
    let record = kept.and_then(ClientRecord::decode);
    match op {
        LimitOp::Take => take(record, now, limit),
        LimitOp::Record(place) => remember(record, place, now, limit),
    }
}

fn take(
    record: Option<ClientRecord>,
    now: u64,
    limit: &JoinLimit,
) -> (Outcome, Option<(String, u64)>) {
    let mut record = record.unwrap_or_default();
    if record.penalized_until > now {
        let until = record.penalized_until;
        return (
            Outcome::Penalized {
                until,
                end: Vec::new(),
            },
            None,
        );
    }
    let state = (record.tat_us > 0).then_some(record.tat_us);
    match decide(state, now, limit) {
        Decision::Allowed { state, .. } => {
            record.tat_us = state;
            record.refused = 0;
            record.retry_at = 0;
            record.penalized_until = 0;
            let keep = (record.encode(), record.ttl_ms(now));
            (Outcome::Allowed, Some(keep))
        }
        Decision::Refused { retry_after_ms } => {
            let Some(after) = limit.penalize_after else {
                // Nothing to count: the record stays as it was.
                return (Outcome::Refused { retry_after_ms }, None);
            };
            // Only a join before the time the last refusal gave counts: people behind one
            // address whose pages each wait out their Retry-After are refused in turn, but
            // never early.
            if now < record.retry_at {
                record.refused = record.refused.saturating_add(1);
            }
            record.retry_at = now + retry_after_ms;
            if record.refused < after {
                let keep = (record.encode(), record.ttl_ms(now));
                return (Outcome::Refused { retry_after_ms }, Some(keep));
            }
            let until = now + limit.penalty_ms();
            let end = std::mem::take(&mut record.places);
            record.refused = 0;
            record.retry_at = 0;
            record.penalized_until = until;
            let keep = (record.encode(), record.ttl_ms(now));
            (Outcome::Penalized { until, end }, Some(keep))
        }
    }
}

fn remember(
    record: Option<ClientRecord>,
    place: Place,
    now: u64,
    limit: &JoinLimit,
) -> (Outcome, Option<(String, u64)>) {
    // Nothing kept: the allowance the join took has run out already, and with it what a
    // penalty could end.
    let Some(mut record) = record else {
        return (Outcome::Allowed, None);
    };
    if record.penalized_until > now {
        // Taken for a bot between its join's allowance and its place: this place goes too.
        let until = record.penalized_until;
        let end = vec![place];
        return (Outcome::Penalized { until, end }, None);
    }
    if limit.penalize_after.is_none() {
        return (Outcome::Allowed, None);
    }
    if record.places.len() >= RECENT_PLACES {
        record.places.remove(0);
    }
    record.places.push(place);
    let keep = (record.encode(), record.ttl_ms(now));
    (Outcome::Allowed, Some(keep))
}

/// [`apply`] over a store that keeps the record with the time (Unix ms) it may be forgotten:
/// one past its time counts as none. Returns the outcome and, when it changes, the entry to
/// keep in its place.
pub fn apply_kept(
    kept: Option<(&str, u64)>,
    op: LimitOp,
    now: u64,
    limit: &JoinLimit,
) -> (Outcome, Option<(String, u64)>) {
    let text = kept.filter(|&(_, until)| until > now).map(|(text, _)| text);
    let (outcome, keep) = apply(text, op, now, limit);
    (outcome, keep.map(|(text, ttl_ms)| (text, now + ttl_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_700_000_000_000;

    fn limit(penalize_after: Option<u32>) -> JoinLimit {
        JoinLimit {
            per_client_per_min: 6,
            burst: 3,
            penalize_after,
            penalty_s: Some(600),
        }
    }

    fn place(seq: u64) -> Place {
        Place {
            epoch: 7,
            shard: 1,
            seq,
        }
    }

    /// One client's record in a store, on a manual clock.
    #[derive(Default)]
    struct Kept {
        entry: Option<(String, u64)>,
    }

    impl Kept {
        fn apply(&mut self, op: LimitOp, now: u64, limit: &JoinLimit) -> Outcome {
            let kept = self.entry.as_ref().map(|(t, u)| (t.as_str(), *u));
            let (outcome, keep) = apply_kept(kept, op, now, limit);
            if keep.is_some() {
                self.entry = keep;
            }
            outcome
        }

        /// A join as the service makes it: take, and record the place when allowed.
        fn join(&mut self, seq: u64, now: u64, limit: &JoinLimit) -> Outcome {
            match self.apply(LimitOp::Take, now, limit) {
                Outcome::Allowed => self.apply(LimitOp::Record(place(seq)), now, limit),
                other => other,
            }
        }
    }

    #[test]
    fn records_round_trip_and_a_bare_number_is_a_record_of_old() {
        let record = ClientRecord {
            tat_us: 1_700_000_000_000_123,
            refused: 4,
            retry_at: 1_700_000_010_000,
            penalized_until: 1_700_000_600_000,
            places: vec![place(1), place(22)],
        };
        assert_eq!(ClientRecord::decode(&record.encode()), Some(record));
        assert_eq!(
            ClientRecord::decode("1700000000000123"),
            Some(ClientRecord {
                tat_us: 1_700_000_000_000_123,
                ..ClientRecord::default()
            })
        );
        for junk in [
            "",
            "x",
            "1:2",
            "1:2:3:4:nope",
            "1:2:3:4::5",
            "1:2:3:4",
            "-1",
        ] {
            assert_eq!(ClientRecord::decode(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn without_a_penalty_a_refusal_changes_nothing_and_no_place_is_kept() {
        let limit = limit(None);
        let mut kept = Kept::default();
        for seq in 1..=3 {
            assert_eq!(kept.join(seq, NOW, &limit), Outcome::Allowed);
        }
        let before = kept.entry.clone();
        for _ in 0..100 {
            assert!(matches!(kept.join(9, NOW, &limit), Outcome::Refused { .. }));
        }
        assert_eq!(kept.entry, before);
        let record = ClientRecord::decode(&before.unwrap().0).unwrap();
        assert!(record.places.is_empty());
    }

    #[test]
    fn refusals_in_a_row_earn_the_penalty_which_ends_the_places_taken_once() {
        let limit = limit(Some(5));
        let mut kept = Kept::default();
        for seq in 1..=3 {
            assert_eq!(kept.join(seq, NOW, &limit), Outcome::Allowed);
        }
        // The first refusal is news; the five after it come before its Retry-After.
        for _ in 0..5 {
            assert!(matches!(
                kept.join(9, NOW + 1, &limit),
                Outcome::Refused { .. }
            ));
        }
        let until = NOW + 2 + 600_000;
        assert_eq!(
            kept.join(9, NOW + 2, &limit),
            Outcome::Penalized {
                until,
                end: vec![place(1), place(2), place(3)],
            }
        );
        // The places go once; after that the client is refused (or decoyed) with none to end,
        // even once the join limit alone would let it in again.
        for at in [NOW + 3, NOW + 60_000, until - 1] {
            assert_eq!(
                kept.join(9, at, &limit),
                Outcome::Penalized {
                    until,
                    end: Vec::new()
                }
            );
        }
        // Served: a fresh allowance, and the count starts again.
        assert_eq!(kept.join(10, until, &limit), Outcome::Allowed);
        let (_, kept_until) = kept.entry.clone().unwrap();
        assert!(kept_until > until);
    }

    #[test]
    fn a_client_that_waits_out_each_refusal_is_never_penalized() {
        let limit = limit(Some(2));
        let mut kept = Kept::default();
        let mut now = NOW;
        let mut seq = 0;
        for _ in 0..50 {
            seq += 1;
            match kept.join(seq, now, &limit) {
                Outcome::Allowed => {}
                Outcome::Refused { retry_after_ms } => now += retry_after_ms,
                other => panic!("{other:?}"),
            }
        }
    }

    /// Ten people behind one address arriving at once, each page waiting out the Retry-After
    /// it was given: refused in turn, and never taken for a bot while they are no more than
    /// `penalize_after`; one page that keeps coming back early is.
    #[test]
    fn people_who_wait_their_turn_are_not_taken_for_a_bot() {
        let limit = limit(Some(10));
        let mut kept = Kept::default();
        let mut now = NOW;
        let mut seq = 0;
        let mut pages: Vec<u64> = vec![NOW; 10];
        for _ in 0..200 {
            // The page whose time comes first tries.
            let (i, &at) = pages.iter().enumerate().min_by_key(|(_, at)| **at).unwrap();
            now = now.max(at);
            seq += 1;
            match kept.join(seq, now, &limit) {
                Outcome::Allowed => pages[i] = u64::MAX,
                Outcome::Refused { retry_after_ms } => {
                    pages[i] = now + Decision::retry_after_s(retry_after_ms) * 1000
                }
                other => panic!("{other:?}"),
            }
            if pages.iter().all(|&at| at == u64::MAX) {
                break;
            }
        }
        assert!(pages.iter().all(|&at| at == u64::MAX), "everyone got in");
        // Now one that does not wait.
        for seq in 100..=110 {
            let _ = kept.join(seq, now, &limit);
        }
        assert!(matches!(
            kept.join(103, now, &limit),
            Outcome::Penalized { .. }
        ));
    }

    #[test]
    fn a_place_taken_after_the_penalty_came_is_ended_too() {
        let limit = limit(Some(1));
        let mut kept = Kept::default();
        for seq in 1..=2 {
            assert_eq!(kept.join(seq, NOW, &limit), Outcome::Allowed);
        }
        // The third join's allowance is taken; before its place is recorded, other joins of
        // the client's, refused (the second early), earn the penalty.
        assert_eq!(kept.apply(LimitOp::Take, NOW, &limit), Outcome::Allowed);
        assert!(matches!(
            kept.apply(LimitOp::Take, NOW, &limit),
            Outcome::Refused { .. }
        ));
        assert!(matches!(
            kept.apply(LimitOp::Take, NOW, &limit),
            Outcome::Penalized { ref end, .. } if end.len() == 2
        ));
        assert!(matches!(
            kept.apply(LimitOp::Record(place(3)), NOW, &limit),
            Outcome::Penalized { ref end, .. } if end == &vec![place(3)]
        ));
    }

    #[test]
    fn a_record_keeps_the_latest_places_only() {
        let limit = JoinLimit {
            per_client_per_min: 600,
            burst: 100,
            penalize_after: Some(1),
            penalty_s: None,
        };
        let mut kept = Kept::default();
        for seq in 1..=40 {
            assert_eq!(kept.join(seq, NOW, &limit), Outcome::Allowed);
        }
        let record = ClientRecord::decode(&kept.entry.clone().unwrap().0).unwrap();
        let want: Vec<Place> = (25..=40).map(place).collect();
        assert_eq!(record.places, want);
        // The default penalty.
        for _ in 0..61 {
            let _ = kept.join(99, NOW, &limit);
        }
        assert!(matches!(
            kept.join(99, NOW, &limit),
            Outcome::Penalized { until, .. } if until > NOW && until <= NOW + 600_000
        ));
    }

    #[test]
    fn a_record_past_its_time_is_none() {
        let limit = limit(Some(3));
        let mut kept = Kept::default();
        for seq in 1..=3 {
            kept.join(seq, NOW, &limit);
        }
        let (_, until) = kept.entry.clone().unwrap();
        // At its time it is gone: a full burst again, and no place of before to end.
        for seq in 4..=6 {
            assert_eq!(kept.join(seq, until, &limit), Outcome::Allowed);
        }
        let record = ClientRecord::decode(&kept.entry.clone().unwrap().0).unwrap();
        assert_eq!(record.places, vec![place(4), place(5), place(6)]);
    }

    proptest! {
        /// Whatever a client does, a penalty ends each place it took at most once, never one
        /// it did not take, and only after `penalize_after` refusals in a row.
        #[test]
        fn a_penalty_ends_only_the_client_s_places_and_each_once(
            after in 1u32..6,
            gaps in proptest::collection::vec(0u64..15_000, 1..120),
        ) {
            let limit = limit(Some(after));
            let mut kept = Kept::default();
            let mut now = NOW;
            let mut taken = Vec::new();
            let mut ended = Vec::new();
            let mut in_a_row = 0;
            for (i, gap) in gaps.into_iter().enumerate() {
                now += gap;
                let seq = i as u64 + 1;
                match kept.join(seq, now, &limit) {
                    Outcome::Allowed => {
                        taken.push(place(seq));
                        in_a_row = 0;
                    }
                    Outcome::Refused { .. } => in_a_row += 1,
                    Outcome::Penalized { end, .. } => {
                        if !end.is_empty() {
                            prop_assert!(in_a_row + 1 >= after);
                        }
                        in_a_row = 0;
                        ended.extend(end);
                    }
                }
            }
            let mut unique = ended.clone();
            unique.sort();
            unique.dedup();
            prop_assert_eq!(unique.len(), ended.len());
            for p in &ended {
                prop_assert!(taken.contains(p));
            }
        }
    }
}
