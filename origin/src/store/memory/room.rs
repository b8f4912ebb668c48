//! One room of the embedded store: its shards, and what spans them (the entry credit, the stamp
//! clock), under the store's lock for the room.

use std::collections::VecDeque;

use queuegate::api::RoomStats;
use queuegate::controller::RoomLoad;
use queuegate::plan::{admitted_waits, plan, Batch, Freshness, ShardReading};
use queuegate::queue::{position, ShardQueue};
use queuegate::report::ReportMinute;
use queuegate::shard::{user_hash, Shard, Standing, Timing};
use queuegate::shuffle::ShuffleSpec;
use queuegate::{Place, RoomConfig, RoomId, VisitorState};

use crate::store::{Joined, RoomRecord, StoreError, StoreResult};

/// One room: its shards, and what spans them (entry credit, the stamp clock).
pub(super) struct Room {
    pub(super) record: RoomRecord,
    pub(super) shards: Vec<Shard>,
    pub(super) next_shard: usize,
    pub(super) last_stamp: u64,
    /// Direct entries allowed until the scheduler's next tick.
    pub(super) entry_credit: u64,
    /// The text of the page template the record names.
    pub(super) template: Option<String>,
    /// The report's minutes, oldest first ([`queuegate::report`]).
    pub(super) report: VecDeque<ReportMinute>,
}

impl Room {
    pub(super) fn new(id: RoomId, config: RoomConfig, epoch: u32) -> Room {
        let shards = usize::from(config.shards);
        Room {
            record: RoomRecord {
                id,
                config,
                paused: false,
                epoch,
                measured_rate: None,
                events: Default::default(),
                template: None,
                opens_at: None,
            },
            shards: vec![Shard::new(); shards],
            next_shard: 0,
            last_stamp: 0,
            entry_credit: 0,
            template: None,
            report: VecDeque::new(),
        }
    }

    pub(super) fn reconfigure(&mut self, config: RoomConfig) -> StoreResult<()> {
        if config.shards != self.record.config.shards {
            return Err(StoreError::Conflict(format!(
                "shards: a room keeps its shard count ({}) for life",
                self.record.config.shards
            )));
        }
        self.record.config = config;
        // A new configuration (maybe a lower capacity) opens no credit until the next batch, as
        // on every store.
        self.entry_credit = 0;
        Ok(())
    }

    pub(super) fn timing(&self) -> Timing {
        Timing {
            session_ttl_ms: self.record.config.session_ttl_ms(),
            claim_window_ms: self.record.config.claim_window_ms(),
        }
    }

    pub(super) fn queues(&self) -> impl Iterator<Item = &ShardQueue> {
        self.shards.iter().map(Shard::queue)
    }

    pub(super) fn waiting(&self) -> u64 {
        self.queues().map(ShardQueue::waiting).sum()
    }

    pub(super) fn active(&self) -> u64 {
        self.shards.iter().map(Shard::active).sum()
    }

    pub(super) fn unclaimed(&self) -> u64 {
        self.shards.iter().map(Shard::unclaimed).sum()
    }

    pub(super) fn load(&self) -> RoomLoad {
        RoomLoad {
            waiting: self.waiting(),
            active: self.active(),
            admitted: self.unclaimed(),
            admitted_total: self.shards.iter().map(Shard::admitted_total).sum(),
            no_shows_total: self.shards.iter().map(Shard::no_shows_total).sum(),
        }
    }

    pub(super) fn stats(&self) -> RoomStats {
        RoomStats::new(self.load(), self.record.measured_rate, self.entry_credit)
            .with_abandoned(self.shards.iter().map(Shard::abandoned_total).sum())
            .with_flow((
                self.shards.iter().map(|s| s.queue().tail()).sum(),
                self.shards.iter().map(Shard::left_total).sum(),
            ))
    }

    /// The shard of `place`, if the place is of this room's queue.
    pub(super) fn shard_of(&mut self, place: Place) -> Option<&mut Shard> {
        if place.epoch != self.record.epoch {
            return None;
        }
        self.shards.get_mut(usize::from(place.shard))
    }

    /// Applies the shuffles of the room's events that have started by `now` and that a shard
    /// has not applied yet: before any operation, so that nobody sees the pre-queue unshuffled
    /// after the opening.
    pub(super) fn catch_up(&mut self, now: u64) {
        let shuffled_us = self
            .queues()
            .map(ShardQueue::shuffled_us)
            .min()
            .unwrap_or(0);
        for spec in ShuffleSpec::due(&self.record.events, shuffled_us, now) {
            for (index, shard) in self.shards.iter_mut().enumerate() {
                shard.shuffle(self.record.epoch, index as u16, &spec);
            }
        }
    }

    pub(super) fn next_stamp(&mut self, now: u64) -> u64 {
        self.last_stamp = (now.saturating_mul(1000)).max(self.last_stamp + 1);
        self.last_stamp
    }

    /// Joins a visitor; `hold`: no entry at once, whatever the credit (the room is in a
    /// pre-queue).
    pub(super) fn join(&mut self, user_id: Option<&str>, hold: bool, now: u64) -> Joined {
        let shards = self.shards.len();
        let index = match user_id {
            Some(user) => (user_hash(user) % shards as u64) as usize,
            None => {
                self.next_shard = (self.next_shard + 1) % shards;
                self.next_shard
            }
        };
        let enter = !hold && self.entry_credit > 0 && self.waiting() == 0 && !self.record.paused;
        let stamp = self.next_stamp(now);
        let timing = self.timing();
        let joined = self.shards[index].join(user_id, stamp, enter, now, timing);
        if enter && !joined.existing {
            self.entry_credit -= 1;
        }
        let place = Place {
            epoch: self.record.epoch,
            shard: index as u16,
            seq: joined.seq,
        };
        Joined {
            place,
            joined_us: joined.stamp,
            state: self.state_of(joined.standing, joined.stamp),
            existing: joined.existing,
        }
    }

    pub(super) fn state_of(&self, standing: Standing, stamp: u64) -> VisitorState {
        match standing {
            Standing::Waiting => VisitorState::Waiting {
                position: position(self.queues(), stamp),
            },
            Standing::Admitted { session_expires_at } => {
                VisitorState::Admitted { session_expires_at }
            }
            Standing::Left => VisitorState::Left,
            Standing::Expired => VisitorState::Expired,
        }
    }

    pub(super) fn visit(&mut self, place: Place, now: u64) -> VisitorState {
        let timing = self.timing();
        let Some(shard) = self.shard_of(place) else {
            return VisitorState::Expired;
        };
        let standing = shard.visit(place.seq, now, timing);
        let stamp = shard
            .queue()
            .stamp(shard.queue().locate(place.seq))
            .unwrap_or(0);
        self.state_of(standing, stamp)
    }

    /// Ends whatever the visitor holds; `true` if something was ended.
    pub(super) fn end(&mut self, place: Place, now: u64) -> Option<bool> {
        self.shard_of(place)?.end(place.seq, now)
    }

    pub(super) fn session(&mut self, place: Place, renew: bool, now: u64) -> Option<u64> {
        let timing = self.timing();
        self.shard_of(place)?.session(place.seq, renew, now, timing)
    }

    pub(super) fn expire(&mut self, now: u64) {
        let timing = self.timing();
        for shard in &mut self.shards {
            shard.expire(now, timing);
        }
    }

    /// Ends the places of waiting visitors who stopped asking: before a batch only (the
    /// scheduler's tick, an operator's admission), as on every store, not on a read of the
    /// room's numbers that a join may make.
    pub(super) fn end_unseen(&mut self, now: u64) {
        let Some(after) = self.record.config.abandon_after_ms() else {
            return;
        };
        for shard in &mut self.shards {
            shard.abandon_unseen(now, after);
        }
    }

    /// Runs a batch as the core plans it: the oldest waiting across shards within capacity, and
    /// for the scheduler the new entry credit. Returns how many were admitted.
    pub(super) fn run(&mut self, batch: Batch, now: u64) -> u64 {
        self.run_measured(batch, now).0
    }

    /// [`Self::run`], with how long (ms) each visitor it admitted from the head of the queue
    /// had waited.
    pub(super) fn run_measured(&mut self, batch: Batch, now: u64) -> (u64, Vec<u64>) {
        let count = match batch {
            Batch::Scheduler { grant } => grant,
            Batch::Operator { count } => count,
        };
        // The room's entry credit is one counter here: it stands in the first shard's reading.
        let readings: Vec<ShardReading> = self
            .shards
            .iter()
            .enumerate()
            .map(|(i, shard)| shard.reading(count, if i == 0 { self.entry_credit } else { 0 }))
            .collect();
        let plan = plan(
            &self.record.config,
            self.record.paused,
            &readings,
            batch,
            Freshness::Current,
            u64::from_be_bytes(crate::clock::random_bytes()),
        );
        let admitted = self
            .shards
            .iter_mut()
            .zip(&plan.orders)
            .map(|(shard, order)| match (order.take, order.draw) {
                (0, _) => 0,
                (take, Some(seed)) => shard.draw(take, seed, now),
                (_, None) => shard.admit_through(order.through_seq, now),
            })
            .sum();
        if let Batch::Scheduler { .. } = batch {
            self.entry_credit = plan.credit;
        }
        (admitted, admitted_waits(&readings, &plan, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};

    fn config(max_active: u64, shards: u16) -> RoomConfig {
        RoomConfig {
            max_active,
            shards,
            session_ttl_s: 30,
            claim_window_s: 10,
            ..RoomConfig::default()
        }
    }

    fn room(max_active: u64, shards: u16) -> Room {
        Room::new(RoomId::parse("r").unwrap(), config(max_active, shards), 7)
    }

    #[test]
    fn an_open_room_lets_visitors_straight_in_until_someone_waits() {
        let mut r = room(2, 2);
        r.entry_credit = 2;
        let a = r.join(None, false, 0);
        assert!(matches!(a.state, VisitorState::Admitted { .. }));
        let b = r.join(None, false, 0);
        assert!(matches!(b.state, VisitorState::Admitted { .. }));
        let c = r.join(None, false, 0);
        assert_eq!(c.state, VisitorState::Waiting { position: 1 });
        assert_eq!(r.load().active, 2);
    }

    #[test]
    fn positions_count_across_shards_and_skip_leavers() {
        let mut r = room(100, 3);
        let places: Vec<_> = (0..9).map(|i| r.join(None, false, i).place).collect();
        assert_eq!(
            r.visit(places[8], 10),
            VisitorState::Waiting { position: 9 }
        );
        r.end(places[2], 10);
        r.end(places[4], 10);
        assert_eq!(
            r.visit(places[8], 10),
            VisitorState::Waiting { position: 7 }
        );
        assert_eq!(
            r.visit(places[3], 10),
            VisitorState::Waiting { position: 3 }
        );
        assert_eq!(r.visit(places[2], 10), VisitorState::Left);
        assert_eq!(r.run(Batch::Operator { count: 3 }, 10), 3);
        // 0, 1 and 3 are in (2 left); 5 is next.
        assert_eq!(
            r.visit(places[5], 10),
            VisitorState::Waiting { position: 1 }
        );
        assert!(matches!(
            r.visit(places[3], 10),
            VisitorState::Admitted { .. }
        ));
    }

    #[test]
    fn unclaimed_admissions_free_their_slot_after_the_claim_window() {
        let mut r = room(1, 1);
        let a = r.join(None, false, 0).place;
        let b = r.join(None, false, 0).place;
        assert_eq!(r.run(Batch::Operator { count: 5 }, 1_000), 1);
        assert_eq!(r.load().admitted, 1);
        // Inside the window the slot stays taken.
        r.expire(10_999);
        assert_eq!(r.run(Batch::Operator { count: 5 }, 10_999), 0);
        r.expire(11_000);
        assert_eq!(r.load().admitted, 0);
        assert_eq!(r.visit(a, 11_000), VisitorState::Expired);
        assert_eq!(r.run(Batch::Operator { count: 5 }, 11_000), 1);
        assert!(matches!(r.visit(b, 11_001), VisitorState::Admitted { .. }));
    }

    #[test]
    fn sessions_end_after_their_ttl_unless_renewed() {
        let mut r = room(5, 1);
        r.entry_credit = 2;
        let a = r.join(None, false, 0).place;
        let b = r.join(None, false, 0).place;
        assert_eq!(r.session(b, true, 20_000), Some(50_000));
        r.expire(30_000);
        assert_eq!(r.session(a, false, 30_000), None);
        assert_eq!(r.visit(a, 30_000), VisitorState::Expired);
        assert_eq!(r.session(b, false, 30_000), Some(50_000));
        assert_eq!(r.load().active, 1);
    }

    #[test]
    fn another_epoch_has_no_place_here() {
        let mut r = room(5, 1);
        let mut a = r.join(None, false, 0).place;
        a.epoch += 1;
        assert_eq!(r.visit(a, 0), VisitorState::Expired);
        assert_eq!(r.end(a, 0), None);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Join(Option<u8>),
        Visit(usize),
        Leave(usize),
        Renew(usize),
        Batch(u64),
        AdmitNow(u64),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => proptest::option::of(0u8..6).prop_map(Op::Join),
            3 => any::<usize>().prop_map(Op::Visit),
            1 => any::<usize>().prop_map(Op::Leave),
            1 => any::<usize>().prop_map(Op::Renew),
            2 => (0u64..6).prop_map(Op::Batch),
            1 => (0u64..4).prop_map(Op::AdmitNow),
            2 => (0u64..15_000).prop_map(Op::Advance),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Invariants 1-3 of DESIGN.md on the embedded store, on virtual time: capacity, FIFO
        /// across shards, idempotent joins; plus leavers are never admitted and positions only
        /// fall.
        #[test]
        fn invariants_hold_under_any_sequence(
            max_active in 1u64..6,
            shards in 1u16..4,
            ops in proptest::collection::vec(op(), 1..150),
        ) {
            let mut r = room(max_active, shards);
            let mut now = 0u64;
            let mut places: Vec<(Place, u64)> = Vec::new();
            let mut left_waiting: HashSet<Place> = HashSet::new();
            let mut last_position: HashMap<Place, u64> = HashMap::new();
            let mut users: HashMap<u8, Place> = HashMap::new();
            for op in ops {
                match op {
                    Op::Join(user) => {
                        let uid = user.map(|u| format!("user-{u}"));
                        let joined = r.join(uid.as_deref(), false, now);
                        if let Some(u) = user {
                            if let Some(&prev) = users.get(&u) {
                                if joined.existing {
                                    prop_assert_eq!(joined.place, prev);
                                }
                            }
                            users.insert(u, joined.place);
                        }
                        if !joined.existing {
                            if let VisitorState::Admitted { .. } = joined.state {
                                prop_assert_eq!(r.waiting(), 0, "direct entry only when nobody waits");
                            }
                            places.push((joined.place, joined.joined_us));
                        }
                    }
                    Op::Visit(i) | Op::Leave(i) | Op::Renew(i) if places.is_empty() => { let _ = i; }
                    Op::Visit(i) => {
                        let place = places[i % places.len()].0;
                        match r.visit(place, now) {
                            VisitorState::Waiting { position } => {
                                if let Some(&before) = last_position.get(&place) {
                                    prop_assert!(position <= before, "position rose from {} to {}", before, position);
                                }
                                last_position.insert(place, position);
                            }
                            VisitorState::Admitted { .. } => {
                                prop_assert!(!left_waiting.contains(&place), "a leaver was admitted");
                            }
                            _ => {}
                        }
                    }
                    Op::Leave(i) => {
                        let place = places[i % places.len()].0;
                        if r.shards[usize::from(place.shard)].queue().is_waiting(place.seq) {
                            left_waiting.insert(place);
                        }
                        r.end(place, now);
                        prop_assert_eq!(r.visit(place, now), VisitorState::Left);
                    }
                    Op::Renew(i) => {
                        let place = places[i % places.len()].0;
                        r.session(place, true, now);
                    }
                    Op::Batch(n) => {
                        r.expire(now);
                        r.run(Batch::Scheduler { grant: n }, now);
                    }
                    Op::AdmitNow(n) => {
                        r.expire(now);
                        r.run(Batch::Operator { count: n }, now);
                    }
                    Op::Advance(ms) => {
                        now += ms;
                        r.expire(now);
                    }
                }

                // 1. Capacity.
                let taken = r.active() + r.unclaimed() + r.entry_credit;
                prop_assert!(taken <= max_active, "{} taken of {}", taken, max_active);
                prop_assert!(r.shards.iter().all(Shard::is_consistent));

                // 2. FIFO: everyone admitted joined before everyone still waiting.
                let is_admitted = |p: &Place| {
                    p.seq <= r.shards[usize::from(p.shard)].queue().admitted_seq() && !left_waiting.contains(p)
                };
                let is_waiting = |p: &Place| r.shards[usize::from(p.shard)].queue().is_waiting(p.seq);
                let newest_admitted = places.iter().filter(|(p, _)| is_admitted(p)).map(|&(_, s)| s).max();
                let oldest_waiting = places.iter().filter(|(p, _)| is_waiting(p)).map(|&(_, s)| s).min();
                if let (Some(a), Some(w)) = (newest_admitted, oldest_waiting) {
                    prop_assert!(a < w, "admitted stamp {} after waiting stamp {}", a, w);
                }

                // The waiting count agrees with a recount.
                let waiting = places.iter().filter(|(p, _)| is_waiting(p)).count() as u64;
                prop_assert_eq!(waiting, r.waiting());
            }
        }
    }
}
