//! The embedded store: the whole waiting room in this process's memory, for a single machine.
//!
//! Each room sits behind its own mutex; every operation is a few map and vector accesses under
//! it. A waiting visitor costs 8 bytes (the join stamp) plus one bit (left or not): positions
//! come from the shards' sequence numbers and a binary search over the stamps, so a poll costs
//! the same at any depth of the queue. Nothing is persisted: a restart starts every room with a
//! new epoch, and old tickets are answered `expired`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use queuegate::api::RoomStats;
use queuegate::controller::RoomLoad;
use queuegate::plan::{plan, Batch, Freshness, ShardReading};
use queuegate::queue::{position, ShardQueue};
use queuegate::service::{RouteTable, Routes};
use queuegate::shard::{user_hash, Shard, Standing, Timing};
use queuegate::{Place, RoomConfig, RoomId, Ticket, VisitorState};

use super::{
    Decision, Fence, Joined, RoomRecord, Round, Scheduling, Store, StoreError, StoreResult,
};

#[derive(Default)]
pub struct MemoryStore {
    rooms: RwLock<HashMap<RoomId, Arc<Mutex<Room>>>>,
    routes: Routes,
    lease: Mutex<Option<Lease>>,
}

struct Lease {
    holder: String,
    fence: Fence,
    expires_at: u64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn room(&self, id: &RoomId) -> StoreResult<Arc<Mutex<Room>>> {
        self.rooms
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| StoreError::UnknownRoom(id.clone()))
    }

    fn with_room<T>(&self, id: &RoomId, f: impl FnOnce(&mut Room) -> T) -> StoreResult<T> {
        let room = self.room(id)?;
        let mut room = room.lock();
        Ok(f(&mut room))
    }

    fn records(&self) -> Vec<RoomRecord> {
        let rooms: Vec<_> = self.rooms.read().values().cloned().collect();
        let mut records: Vec<_> = rooms.iter().map(|r| r.lock().record.clone()).collect();
        records.sort_by(|a, b| a.id.cmp(&b.id));
        records
    }

    fn fence_is_current(&self, fence: Fence) -> bool {
        self.lease.lock().as_ref().is_some_and(|l| l.fence == fence)
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn health(&self, _now: u64) -> StoreResult<()> {
        Ok(())
    }

    async fn route_table(&self, _now: u64) -> StoreResult<Arc<RouteTable>> {
        Ok(self.routes.current())
    }

    async fn rooms(&self, _now: u64) -> StoreResult<Vec<RoomRecord>> {
        Ok(self.records())
    }

    async fn room(&self, id: &RoomId, _now: u64) -> StoreResult<Option<RoomRecord>> {
        Ok(self
            .rooms
            .read()
            .get(id)
            .map(|room| room.lock().record.clone()))
    }

    async fn put_room(
        &self,
        id: &RoomId,
        config: RoomConfig,
        epoch: u32,
        _now: u64,
    ) -> StoreResult<(RoomRecord, bool)> {
        let build = self.routes.begin();
        let result = {
            let mut rooms = self.rooms.write();
            match rooms.get(id) {
                Some(room) => {
                    let mut room = room.lock();
                    room.reconfigure(config)?;
                    (room.record.clone(), false)
                }
                None => {
                    let room = Room::new(id.clone(), config, epoch);
                    let record = room.record.clone();
                    rooms.insert(id.clone(), Arc::new(Mutex::new(room)));
                    (record, true)
                }
            }
        };
        self.routes
            .finish(build, RouteTable::build(&self.records()));
        Ok(result)
    }

    async fn set_paused(&self, id: &RoomId, paused: bool, _now: u64) -> StoreResult<RoomRecord> {
        self.with_room(id, |room| {
            room.record.paused = paused;
            if paused {
                room.entry_credit = 0;
            }
            room.record.clone()
        })
    }

    async fn stats(&self, room: &RoomRecord, now: u64, _fresh: bool) -> StoreResult<RoomStats> {
        self.with_room(&room.id, |room| {
            room.expire(now);
            room.stats()
        })
    }

    async fn join(
        &self,
        room: &RoomRecord,
        user_id: Option<&str>,
        now: u64,
    ) -> StoreResult<Joined> {
        self.with_room(&room.id, |room| room.join(user_id, now))
    }

    async fn visit(
        &self,
        room: &RoomRecord,
        ticket: &Ticket,
        now: u64,
    ) -> StoreResult<VisitorState> {
        self.with_room(&room.id, |room| room.visit(ticket.place, now))
    }

    async fn end(&self, room: &RoomRecord, place: Place, now: u64) -> StoreResult<Option<bool>> {
        self.with_room(&room.id, |room| room.end(place, now))
    }

    async fn session(
        &self,
        room: &RoomRecord,
        place: Place,
        renew: bool,
        now: u64,
    ) -> StoreResult<Option<u64>> {
        self.with_room(&room.id, |room| room.session(place, renew, now))
    }

    async fn admit_now(&self, room: &RoomRecord, count: u64, now: u64) -> StoreResult<u64> {
        self.with_room(&room.id, |room| {
            room.expire(now);
            room.run(Batch::Operator { count }, now)
        })
    }
}

#[async_trait]
impl Scheduling for MemoryStore {
    async fn rooms(&self, _now: u64) -> StoreResult<Vec<RoomRecord>> {
        Ok(self.records())
    }

    async fn acquire_lease(
        &self,
        holder: &str,
        ttl_ms: u64,
        now: u64,
    ) -> StoreResult<Option<Fence>> {
        let mut lease = self.lease.lock();
        match lease.as_mut() {
            Some(l) if l.holder == holder => {
                l.expires_at = now + ttl_ms;
                Ok(Some(l.fence))
            }
            Some(l) if l.expires_at > now => Ok(None),
            _ => {
                let fence = Fence(lease.as_ref().map_or(1, |l| l.fence.0 + 1));
                *lease = Some(Lease {
                    holder: holder.to_owned(),
                    fence,
                    expires_at: now + ttl_ms,
                });
                Ok(Some(fence))
            }
        }
    }

    async fn schedule(
        &self,
        room: &RoomRecord,
        fence: Fence,
        now: u64,
        decide: &mut (dyn FnMut(RoomLoad) -> Decision + Send),
    ) -> StoreResult<Round> {
        if !self.fence_is_current(fence) {
            return Err(StoreError::Fenced);
        }
        self.with_room(&room.id, |room| {
            room.expire(now);
            let decision = decide(room.load());
            room.record.measured_rate = decision.rate;
            let admitted = room.run(
                Batch::Scheduler {
                    grant: decision.grant,
                },
                now,
            );
            Round {
                admitted,
                entry_credit: room.entry_credit,
                stats: room.stats(),
            }
        })
    }
}

/// One room: its shards, and what spans them (entry credit, the stamp clock).
struct Room {
    record: RoomRecord,
    shards: Vec<Shard>,
    next_shard: usize,
    last_stamp: u64,
    /// Direct entries allowed until the scheduler's next tick.
    entry_credit: u64,
}

impl Room {
    fn new(id: RoomId, config: RoomConfig, epoch: u32) -> Room {
        let shards = usize::from(config.shards);
        Room {
            record: RoomRecord {
                id,
                config,
                paused: false,
                epoch,
                measured_rate: None,
            },
            shards: vec![Shard::new(); shards],
            next_shard: 0,
            last_stamp: 0,
            entry_credit: 0,
        }
    }

    fn reconfigure(&mut self, config: RoomConfig) -> StoreResult<()> {
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

    fn timing(&self) -> Timing {
        Timing {
            session_ttl_ms: self.record.config.session_ttl_ms(),
            claim_window_ms: self.record.config.claim_window_ms(),
        }
    }

    fn queues(&self) -> impl Iterator<Item = &ShardQueue> {
        self.shards.iter().map(Shard::queue)
    }

    fn waiting(&self) -> u64 {
        self.queues().map(ShardQueue::waiting).sum()
    }

    fn active(&self) -> u64 {
        self.shards.iter().map(Shard::active).sum()
    }

    fn unclaimed(&self) -> u64 {
        self.shards.iter().map(Shard::unclaimed).sum()
    }

    fn load(&self) -> RoomLoad {
        RoomLoad {
            waiting: self.waiting(),
            active: self.active(),
            admitted: self.unclaimed(),
            admitted_total: self.shards.iter().map(Shard::admitted_total).sum(),
        }
    }

    fn stats(&self) -> RoomStats {
        RoomStats::new(self.load(), self.record.measured_rate, self.entry_credit)
    }

    /// The shard of `place`, if the place is of this room's queue.
    fn shard_of(&mut self, place: Place) -> Option<&mut Shard> {
        if place.epoch != self.record.epoch {
            return None;
        }
        self.shards.get_mut(usize::from(place.shard))
    }

    fn next_stamp(&mut self, now: u64) -> u64 {
        self.last_stamp = (now.saturating_mul(1000)).max(self.last_stamp + 1);
        self.last_stamp
    }

    fn join(&mut self, user_id: Option<&str>, now: u64) -> Joined {
        let shards = self.shards.len();
        let index = match user_id {
            Some(user) => (user_hash(user) % shards as u64) as usize,
            None => {
                self.next_shard = (self.next_shard + 1) % shards;
                self.next_shard
            }
        };
        let enter = self.entry_credit > 0 && self.waiting() == 0 && !self.record.paused;
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

    fn state_of(&self, standing: Standing, stamp: u64) -> VisitorState {
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

    fn visit(&mut self, place: Place, now: u64) -> VisitorState {
        let timing = self.timing();
        let Some(shard) = self.shard_of(place) else {
            return VisitorState::Expired;
        };
        let standing = shard.visit(place.seq, now, timing);
        let stamp = shard.queue().stamp(place.seq).unwrap_or(0);
        self.state_of(standing, stamp)
    }

    /// Ends whatever the visitor holds; `true` if something was ended.
    fn end(&mut self, place: Place, now: u64) -> Option<bool> {
        self.shard_of(place)?.end(place.seq, now)
    }

    fn session(&mut self, place: Place, renew: bool, now: u64) -> Option<u64> {
        let timing = self.timing();
        self.shard_of(place)?.session(place.seq, renew, now, timing)
    }

    fn expire(&mut self, now: u64) {
        let timing = self.timing();
        for shard in &mut self.shards {
            shard.expire(now, timing);
        }
    }

    /// Runs a batch as the core plans it: the oldest waiting across shards within capacity, and
    /// for the scheduler the new entry credit. Returns how many were admitted.
    fn run(&mut self, batch: Batch, now: u64) -> u64 {
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
        );
        let admitted = self
            .shards
            .iter_mut()
            .zip(&plan.orders)
            .map(|(shard, order)| match order.take {
                0 => 0,
                _ => shard.admit_through(order.through_seq, now),
            })
            .sum();
        if let Batch::Scheduler { .. } = batch {
            self.entry_credit = plan.credit;
        }
        admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

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
        let a = r.join(None, 0);
        assert!(matches!(a.state, VisitorState::Admitted { .. }));
        let b = r.join(None, 0);
        assert!(matches!(b.state, VisitorState::Admitted { .. }));
        let c = r.join(None, 0);
        assert_eq!(c.state, VisitorState::Waiting { position: 1 });
        assert_eq!(r.load().active, 2);
    }

    #[test]
    fn positions_count_across_shards_and_skip_leavers() {
        let mut r = room(100, 3);
        let places: Vec<_> = (0..9).map(|i| r.join(None, i).place).collect();
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
        let a = r.join(None, 0).place;
        let b = r.join(None, 0).place;
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
        let a = r.join(None, 0).place;
        let b = r.join(None, 0).place;
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
        let mut a = r.join(None, 0).place;
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
                        let joined = r.join(uid.as_deref(), now);
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
