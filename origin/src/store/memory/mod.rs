//! The embedded store: the whole waiting room in this process's memory, for a single machine.
//!
//! Each room sits behind its own mutex; every operation is a few map and vector accesses under
//! it. A waiting visitor costs 8 bytes (the join stamp) plus one bit (left or not): positions
//! come from the shards' sequence numbers and a binary search over the stamps, so a poll costs
//! the same at any depth of the queue. Nothing is persisted: a restart starts every room with a
//! new epoch, and old tickets are answered `expired`.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use async_trait::async_trait;
use lru::LruCache;
use parking_lot::{Mutex, RwLock};
use queuegate::api::RoomStats;
use queuegate::controller::RoomLoad;
use queuegate::event::Events;
use queuegate::limit::record::{LimitOp, Outcome as LimitOutcome};
use queuegate::limit::{self, ClientKey, JoinLimit};
use queuegate::plan::Batch;
use queuegate::report::{upsert, ReportMinute};
use queuegate::service::{RouteTable, Routes};
use queuegate::template::TemplateRef;
use queuegate::{Place, RoomConfig, RoomId, Ticket, VisitorState};

use super::{
    Decision, Fence, Joined, RoomRecord, Round, Scheduling, Store, StoreError, StoreResult,
};

mod room;

use room::Room;

pub struct MemoryStore {
    rooms: RwLock<HashMap<RoomId, Arc<Mutex<Room>>>>,
    routes: Routes,
    lease: Mutex<Option<Lease>>,
    /// Join-limit state (see [`limit::decide`]) by room and client, with when it runs out, for
    /// the clients that joined most recently. A client evicted from it (by
    /// [`JOIN_LIMIT_ENTRIES`] more recent ones) is forgotten: its next join finds a full burst.
    join_limits: Mutex<LruCache<(RoomId, ClientKey), (String, u64)>>,
    /// What was used once (see [`Store::spend_once`]), by room and key, until when.
    spent: Mutex<HashMap<(RoomId, String), u64>>,
}

/// Keys spent once that the embedded store keeps at the most (about 150 bytes each). Each
/// costs a stranger a solved challenge or an invite the application signed; when it is full of
/// unexpired keys, further spends are refused as the store being unavailable (a retry after the
/// oldest expire succeeds), never by forgetting one.
pub const SPENT_ENTRIES: usize = 1_000_000;

/// Clients whose join-limit state the embedded store keeps at the most (about 100 bytes each:
/// 10 MB at the most, however many addresses a stranger joins from).
pub const JOIN_LIMIT_ENTRIES: NonZeroUsize = NonZeroUsize::new(100_000).unwrap();

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            rooms: RwLock::default(),
            routes: Routes::default(),
            lease: Mutex::new(None),
            join_limits: Mutex::new(LruCache::new(JOIN_LIMIT_ENTRIES)),
            spent: Mutex::default(),
        }
    }
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

    /// [`MemoryStore::with_room`] for what reads or changes the queue at `now`: the shuffles due
    /// by then are applied first.
    fn with_queue_at<T>(
        &self,
        id: &RoomId,
        now: u64,
        f: impl FnOnce(&mut Room) -> T,
    ) -> StoreResult<T> {
        self.with_room(id, |room| {
            room.catch_up(now);
            f(room)
        })
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

    async fn set_events(
        &self,
        id: &RoomId,
        from: &Events,
        to: Events,
        _now: u64,
    ) -> StoreResult<RoomRecord> {
        self.with_room(id, |room| {
            if room.record.events != *from {
                return Err(StoreError::EventsChanged);
            }
            room.record.events = to;
            // A slot opened for direct entry before the change lasts until the next tick,
            // which may fall inside a pre-queue the change just opened.
            room.entry_credit = 0;
            Ok(room.record.clone())
        })?
    }

    async fn set_template(
        &self,
        id: &RoomId,
        template: Option<&str>,
        _now: u64,
    ) -> StoreResult<RoomRecord> {
        self.with_room(id, |room| {
            room.record.template = template.map(TemplateRef::of);
            room.template = template.map(str::to_owned);
            room.record.clone()
        })
    }

    async fn template(
        &self,
        id: &RoomId,
        reference: &TemplateRef,
        _now: u64,
    ) -> StoreResult<Option<String>> {
        self.with_room(id, |room| {
            room.template
                .clone()
                .filter(|_| room.record.template.as_ref() == Some(reference))
        })
    }

    async fn report(
        &self,
        id: &RoomId,
        since_ms: u64,
        _now: u64,
    ) -> StoreResult<Vec<ReportMinute>> {
        self.with_room(id, |room| {
            room.report
                .iter()
                .filter(|m| m.minute_ms >= since_ms)
                .cloned()
                .collect()
        })
    }

    async fn stats(&self, room: &RoomRecord, now: u64, _fresh: bool) -> StoreResult<RoomStats> {
        self.with_queue_at(&room.id, now, |room| {
            room.expire(now);
            room.stats()
        })
    }

    async fn limit_client(
        &self,
        room: &RoomRecord,
        client: ClientKey,
        limit: &JoinLimit,
        op: LimitOp,
        now: u64,
    ) -> StoreResult<LimitOutcome> {
        let key = (room.id.clone(), client);
        let mut kept = self.join_limits.lock();
        let entry = kept.get(&key).map(|(text, until)| (text.as_str(), *until));
        let (outcome, keep) = limit::record::apply_kept(entry, op, now, limit);
        if let Some(entry) = keep {
            kept.put(key, entry);
        }
        Ok(outcome)
    }

    async fn spend_once(
        &self,
        room: &RoomRecord,
        key: &str,
        until: u64,
        now: u64,
    ) -> StoreResult<bool> {
        let mut spent = self.spent.lock();
        let entry = (room.id.clone(), key.to_owned());
        if spent.get(&entry).is_some_and(|&held| held > now) {
            return Ok(false);
        }
        if spent.len() >= SPENT_ENTRIES {
            spent.retain(|_, held| *held > now);
            if spent.len() >= SPENT_ENTRIES {
                return Err(StoreError::Unavailable(format!(
                    "{SPENT_ENTRIES} single-use keys are held and none has expired yet"
                )));
            }
        }
        spent.insert(entry, until);
        Ok(true)
    }

    async fn join(
        &self,
        room: &RoomRecord,
        user_id: Option<&str>,
        now: u64,
    ) -> StoreResult<Joined> {
        let hold = room.opens_at.is_some();
        self.with_queue_at(&room.id, now, |room| room.join(user_id, hold, now))
    }

    async fn visit(
        &self,
        room: &RoomRecord,
        ticket: &Ticket,
        now: u64,
    ) -> StoreResult<VisitorState> {
        self.with_queue_at(&room.id, now, |room| room.visit(ticket.place, now))
    }

    async fn end(&self, room: &RoomRecord, place: Place, now: u64) -> StoreResult<Option<bool>> {
        self.with_queue_at(&room.id, now, |room| room.end(place, now))
    }

    async fn session(
        &self,
        room: &RoomRecord,
        place: Place,
        renew: bool,
        now: u64,
    ) -> StoreResult<Option<u64>> {
        self.with_queue_at(&room.id, now, |room| room.session(place, renew, now))
    }

    async fn admit_now(&self, room: &RoomRecord, count: u64, now: u64) -> StoreResult<u64> {
        self.with_queue_at(&room.id, now, |room| {
            room.expire(now);
            room.end_unseen(now);
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

    async fn keep_minute(&self, room: &RoomRecord, row: ReportMinute) -> StoreResult<()> {
        self.with_room(&room.id, |room| upsert(&mut room.report, row))
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
        self.with_queue_at(&room.id, now, |room| {
            room.expire(now);
            room.end_unseen(now);
            let decision = decide(room.load());
            room.record.measured_rate = decision.rate;
            let (admitted, waits_ms) = room.run_measured(
                Batch::Scheduler {
                    grant: decision.grant,
                },
                now,
            );
            Round {
                admitted,
                entry_credit: room.entry_credit,
                stats: room.stats(),
                waits_ms,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    /// A stranger joining from more addresses than the store keeps costs no more memory: the
    /// least recently seen clients are forgotten (and get a full burst again).
    #[tokio::test]
    async fn join_limit_state_is_bounded() {
        let store = MemoryStore::new();
        let id = RoomId::parse("bounded").unwrap();
        let limit = JoinLimit {
            per_client_per_min: 1,
            burst: 1,
            penalize_after: None,
            penalty_s: None,
        };
        let (record, _) = store
            .put_room(&id, RoomConfig::default(), 1, 1_000)
            .await
            .unwrap();
        let client = |n: u32| ClientKey::of(IpAddr::V4(Ipv4Addr::from(n)));
        let take = |n: u32| store.limit_client(&record, client(n), &limit, LimitOp::Take, 2_000);
        assert!(matches!(take(0).await, Ok(LimitOutcome::Allowed)));
        assert!(matches!(take(0).await, Ok(LimitOutcome::Refused { .. })));
        let more = JOIN_LIMIT_ENTRIES.get() as u32;
        for n in 1..=more {
            take(n).await.unwrap();
        }
        assert_eq!(store.join_limits.lock().len(), JOIN_LIMIT_ENTRIES.get());
        // Client 0 was the least recently seen: forgotten, so allowed again.
        assert!(matches!(take(0).await, Ok(LimitOutcome::Allowed)));
        // A recent one is still held to its limit.
        assert!(matches!(take(more).await, Ok(LimitOutcome::Refused { .. })));
    }
}
