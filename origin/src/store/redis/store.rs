//! The store the request layer and the scheduler use: [`Store`] and [`Scheduling`] on Redis,
//! from the parts beside it.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lru::LruCache;
use parking_lot::{Mutex, RwLock};
use queuegate::api::RoomStats;
use queuegate::controller::RoomLoad;
use queuegate::event::Events;
use queuegate::limit::record::{LimitOp, Outcome as LimitOutcome};
use queuegate::limit::{self, ClientKey, JoinLimit};
use queuegate::plan::Batch;
use queuegate::queue::{position, ShardQueue};
use queuegate::report::ReportMinute;
use queuegate::service::{RouteTable, Routes};
use queuegate::shard::Standing;
use queuegate::template::TemplateRef;
use queuegate::{Place, RoomConfig, RoomId, Ticket, VisitorState};
use redis::aio::ConnectionLike;

use super::acks::Acks;
use super::connection::{Connections, Redis};
use super::mirror::Room;
use super::scripts::OnShard;
use super::{batch, keys};
use crate::store::{
    Decision, Fence, Joined, RoomRecord, Round, Scheduling, Store, StoreError, StoreResult,
};

/// How long a live session found in Redis is trusted without asking again, while the room's
/// queue version stays as it was (a revocation or a leave through another instance moves it,
/// and this instance reads the versions before it answers).
const SESSION_CACHE_MS: u64 = 1_000;
/// A join reaching Redis this long after the store's timeout (beyond which its caller was told
/// it failed) changes nothing; the margin covers the clocks of the instance and Redis disagreeing.
pub(super) const LATE_JOIN_MARGIN_MS: u64 = 2_000;

/// When Redis refuses a join that arrived at `now` (as the proxy in front said, or the
/// instance's clock): the store's timeout and the margin later. Redis's clock is real whatever
/// clock the caller runs on: a `now` far from it (a test's shifted clock) counts from the
/// instance's real clock instead.
fn join_deadline(now: u64, timeout_ms: u64) -> u64 {
    let real = crate::clock::system_now();
    let arrived = if real.abs_diff(now) < 60_000 {
        now.min(real)
    } else {
        real
    };
    arrived + timeout_ms + LATE_JOIN_MARGIN_MS
}
/// Sessions that cache holds at the most.
const SESSION_CACHE_ENTRIES: NonZeroUsize = NonZeroUsize::new(100_000).unwrap();

type SessionKey = (RoomId, u16, u64);

/// The Redis store over a connection `C`: a `ConnectionManager` for one node, a
/// `ClusterConnection` for a cluster.
pub struct RedisStore<C> {
    pub(super) redis: Redis<C>,
    /// Joins and leaves: their writes wait for the replicas (`acks.rs`), so a failover loses
    /// none that a visitor was told of.
    pub(super) visitor_writes: Redis<C>,
    /// The scheduler's connection (the lease, fenced reads, batches): its writes wait for the
    /// replicas (`acks.rs`).
    pub(super) admission: Redis<C>,
    kind: &'static str,
    pub(super) rooms: RwLock<HashMap<RoomId, Arc<Mutex<Room>>>>,
    pub(super) routes: Routes,
    pub(super) versions: super::versions::Versions,
    /// Until when a room id this instance does not know is answered unknown without asking
    /// Redis: strangers' room ids cost no memory and at most one read a second.
    pub(super) unknown_until: Mutex<u64>,
    /// Live sessions found in Redis: expiry, when it was read and the room's queue version
    /// then, by room and place, for the most recently checked ones.
    sessions: Mutex<LruCache<SessionKey, (u64, u64, u64)>>,
    next_shard: AtomicUsize,
    last_stamp: AtomicU64,
    /// The lease this instance holds, if any: its fence and when it runs out.
    pub(super) lease: Mutex<Option<(Fence, u64)>>,
    /// Serializes this instance's admissions (the scheduler's and operators').
    admitting: tokio::sync::Mutex<()>,
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    pub(super) fn new(
        conns: Connections<C>,
        acks: impl Fn() -> Acks,
        kind: &'static str,
        timeout: Duration,
    ) -> Self {
        RedisStore {
            visitor_writes: Redis::acknowledged(
                conns.visitor_writes,
                conns.topology.clone(),
                timeout,
                acks().for_visitors(),
            ),
            admission: Redis::acknowledged(conns.admission, conns.topology, timeout, acks()),
            redis: Redis::new(conns.reads, timeout),
            kind,
            rooms: RwLock::default(),
            routes: Routes::default(),
            versions: Default::default(),
            unknown_until: Mutex::new(0),
            sessions: Mutex::new(LruCache::new(SESSION_CACHE_ENTRIES)),
            next_shard: AtomicUsize::new(0),
            last_stamp: AtomicU64::new(0),
            lease: Mutex::new(None),
            admitting: tokio::sync::Mutex::new(()),
        }
    }

    /// The scripts of the shard whose keys are `keys`.
    pub(super) fn on<'a>(&'a self, keys: &'a [String]) -> OnShard<'a, C> {
        OnShard {
            redis: &self.redis,
            keys,
        }
    }

    /// The scripts of the shard whose keys are `keys`, on the connection of visitors' writes.
    pub(super) fn on_visitor_writes<'a>(&'a self, keys: &'a [String]) -> OnShard<'a, C> {
        OnShard {
            redis: &self.visitor_writes,
            keys,
        }
    }

    /// The scripts of the shard whose keys are `keys`, on the scheduler's connection.
    pub(super) fn on_admission<'a>(&'a self, keys: &'a [String]) -> OnShard<'a, C> {
        OnShard {
            redis: &self.admission,
            keys,
        }
    }

    /// A strictly increasing microsecond stamp for this instance, from `now` (visitors who join
    /// one after the other through different instances keep their order as far as the
    /// instances' clocks agree).
    fn stamp(&self, now: u64) -> u64 {
        let candidate = now.saturating_mul(1000);
        let previous = self
            .last_stamp
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(candidate.max(last + 1))
            })
            .unwrap_or(0);
        candidate.max(previous + 1)
    }
}

/// A shard's answer as the visitor sees it: a waiting visitor's position spans the shards.
fn state_of(standing: Standing, queues: &[ShardQueue], stamp: u64) -> VisitorState {
    match standing {
        Standing::Waiting => VisitorState::Waiting {
            position: position(queues, stamp),
        },
        Standing::Admitted { session_expires_at } => VisitorState::Admitted { session_expires_at },
        Standing::Left => VisitorState::Left,
        Standing::Expired => VisitorState::Expired,
    }
}

#[async_trait]
impl<C> Store for RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn kind(&self) -> &'static str {
        self.kind
    }

    /// The `WAIT`s for the replicas, and those that came up short (a failed tick, a join or
    /// leave answered 503), the scheduler's and visitors' apart.
    fn calls(&self) -> Vec<(&'static str, u64)> {
        let mut calls = self.admission.acks_calls();
        calls.extend(self.visitor_writes.acks_calls());
        calls
    }

    async fn health(&self, _now: u64) -> StoreResult<()> {
        // Every connection: after an outage each finds itself broken on its next use (and
        // reconnects), so a healthy answer means the next join will not be the one that fails.
        for redis in [&self.redis, &self.visitor_writes, &self.admission] {
            redis
                .call(|mut conn| async move {
                    redis::cmd("PING").query_async::<String>(&mut conn).await
                })
                .await?;
        }
        // Redis answers again: the next request reads the versions rather than wait out the
        // second after a failed read.
        self.versions.reachable();
        Ok(())
    }

    async fn put_room(
        &self,
        id: &RoomId,
        config: RoomConfig,
        epoch: u32,
        _now: u64,
    ) -> StoreResult<(RoomRecord, bool)> {
        if let Some(existing) = self.fetch_record(id).await? {
            if existing.config.shards != config.shards {
                return Err(StoreError::Conflict(format!(
                    "shards: a room keeps its shard count ({}) for life",
                    existing.config.shards
                )));
            }
        }
        let created = self.write_record(id, &config, epoch).await?;
        let read_at = Instant::now();
        let record = self.fetch_record(id).await?.ok_or_else(|| {
            StoreError::Unavailable("the room vanished while it was written".into())
        })?;
        let room = self.install(record.clone(), read_at);
        room.lock().changed = Instant::now();
        // This instance's gate knows of the room at once (others at their next tick).
        self.all_rooms().await?;
        if !created {
            // A new configuration (maybe a lower capacity) opens no credit until the next tick.
            self.pause_shards(&room, record.paused, true).await?;
        }
        Ok((record, created))
    }

    async fn route_table(&self, now: u64) -> StoreResult<Arc<RouteTable>> {
        // Redis out of reach: the table as last read (what is decided next needs Redis anyway,
        // and fails as the outage policy says).
        if let Err(error) = self.fresh(now).await {
            tracing::debug!(%error, "the rooms' version could not be read");
        }
        Ok(self.routes.current())
    }

    async fn rooms(&self, _now: u64) -> StoreResult<Vec<RoomRecord>> {
        self.all_rooms().await
    }

    async fn spend_once(
        &self,
        room: &RoomRecord,
        key: &str,
        until: u64,
        now: u64,
    ) -> StoreResult<bool> {
        let key = keys::spent(&room.id, key);
        let ttl_ms = until.saturating_sub(now).max(1);
        self.redis
            .call(|mut conn| async move {
                let set: Option<String> = redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut conn)
                    .await?;
                Ok(set.is_some())
            })
            .await
    }

    /// The record is read with GET and stored by a compare-and-set script, so the decision
    /// stays in the core; a few tries, then the join is refused for a second (only one client
    /// racing itself on many instances at once gets there). A place that cannot be recorded
    /// in those tries is left unrecorded, as one recorded after a penalty ended the others
    /// would be.
    async fn limit_client(
        &self,
        room: &RoomRecord,
        client: ClientKey,
        limit: &JoinLimit,
        op: LimitOp,
        now: u64,
    ) -> StoreResult<LimitOutcome> {
        const TRIES: usize = 4;
        let key = [keys::join_limit(&room.id, &client)];
        let read_key = key[0].clone();
        let mut current: String = self
            .redis
            .call(|mut conn| async move {
                let value: Option<String> = redis::cmd("GET")
                    .arg(&read_key)
                    .query_async(&mut conn)
                    .await?;
                Ok(value.unwrap_or_default())
            })
            .await?;
        for _ in 0..TRIES {
            let held = (!current.is_empty()).then_some(current.as_str());
            let (outcome, keep) = limit::record::apply(held, op, now, limit);
            let Some((new, ttl_ms)) = keep else {
                return Ok(outcome);
            };
            let (stored, now_held): (u64, String) = self
                .redis
                .script(
                    &super::scripts::JOIN_LIMIT,
                    &key,
                    &[
                        current.as_str().into(),
                        new.as_str().into(),
                        ttl_ms.max(1).into(),
                    ],
                )
                .await?;
            if stored == 1 {
                return Ok(outcome);
            }
            current = now_held;
        }
        Ok(match op {
            LimitOp::Take => LimitOutcome::Refused {
                retry_after_ms: 1000,
            },
            LimitOp::Record(_) => LimitOutcome::Allowed,
        })
    }

    async fn room(&self, id: &RoomId, now: u64) -> StoreResult<Option<RoomRecord>> {
        match self.mirror(id, now).await {
            Ok(room) => Ok(Some(room.lock().record.clone())),
            Err(StoreError::UnknownRoom(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn room_now(&self, id: &RoomId, now: u64) -> StoreResult<Option<RoomRecord>> {
        self.fresh(now).await?;
        self.room(id, now).await
    }

    async fn set_paused(&self, id: &RoomId, paused: bool, now: u64) -> StoreResult<RoomRecord> {
        let room = self.mirror(id, now).await?;
        self.write_paused(id, paused).await?;
        self.pause_shards(&room, paused, false).await?;
        let mut r = room.lock();
        r.record.paused = paused;
        r.changed = Instant::now();
        if paused {
            r.shards.iter_mut().for_each(|s| s.credit = 0);
        }
        Ok(r.record.clone())
    }

    async fn set_events(
        &self,
        id: &RoomId,
        from: &Events,
        events: Events,
        now: u64,
    ) -> StoreResult<RoomRecord> {
        let room = self.mirror(id, now).await?;
        if let Err(held) = self.write_events(id, from, &events).await? {
            // Another instance's write this one has not read yet: the next decision is made on
            // what Redis holds.
            room.lock().record.events = held;
            return Err(StoreError::EventsChanged);
        }
        // A slot opened for direct entry before the change lasts until the next tick, which
        // may fall inside a pre-queue the change just opened.
        let paused = room.lock().record.paused;
        self.pause_shards(&room, paused, true).await?;
        let mut r = room.lock();
        r.shards.iter_mut().for_each(|s| s.credit = 0);
        r.record.events = events;
        r.changed = Instant::now();
        Ok(r.record.clone())
    }

    async fn set_template(
        &self,
        id: &RoomId,
        template: Option<&str>,
        now: u64,
    ) -> StoreResult<RoomRecord> {
        let room = self.mirror(id, now).await?;
        let previous = room.lock().record.template.clone();
        let reference = self.write_template(id, template, previous.as_ref()).await?;
        let mut r = room.lock();
        r.record.template = reference;
        r.changed = Instant::now();
        Ok(r.record.clone())
    }

    async fn template(
        &self,
        id: &RoomId,
        reference: &TemplateRef,
        _now: u64,
    ) -> StoreResult<Option<String>> {
        self.read_template(id, reference).await
    }

    async fn report(
        &self,
        id: &RoomId,
        since_ms: u64,
        _now: u64,
    ) -> StoreResult<Vec<ReportMinute>> {
        self.read_minutes(id, since_ms).await
    }

    async fn stats(&self, room: &RoomRecord, now: u64, fresh: bool) -> StoreResult<RoomStats> {
        let room = self.mirror(&room.id, now).await?;
        if fresh {
            self.sync_room(&room, now, None).await?;
        }
        let stats = room.lock().stats();
        Ok(stats)
    }

    async fn join(
        &self,
        room: &RoomRecord,
        user_id: Option<&str>,
        now: u64,
    ) -> StoreResult<Joined> {
        let hold = room.opens_at.is_some();
        let room = self.mirror(&room.id, now).await?;
        let (shard, epoch, job, batcher, shard_keys) = {
            let r = room.lock();
            let shards = r.record.config.shards;
            let (shard, bucket) = match user_id {
                Some(user) => keys::user_home(user, shards),
                None => (
                    (self.next_shard.fetch_add(1, Ordering::Relaxed) % usize::from(shards)) as u16,
                    0,
                ),
            };
            let job = batch::JoinJob {
                user: user_id.map(str::to_owned),
                bucket,
                stamp: self.stamp(now),
                hold,
                now,
                deadline: join_deadline(now, self.redis.timeout().as_millis() as u64),
                ttl_ms: r.record.config.session_ttl_ms(),
                window_ms: r.record.config.claim_window_ms(),
            };
            let state = &r.shards[usize::from(shard)];
            (
                shard,
                r.record.epoch,
                job,
                state.joins.clone(),
                state.keys.clone(),
            )
        };
        let reply = batcher.join(&self.visitor_writes, &shard_keys, job).await?;
        room.lock().learn_join(usize::from(shard), &reply);
        if reply.standing == Standing::Waiting && self.versions.others_answering() {
            // Visitors who joined through other instances just before may be ahead and not in
            // the mirror yet: everyone whose join was answered before this one arrived counts.
            self.caught_up_since_arrival(&room, now).await?;
        }
        let r = room.lock();
        Ok(Joined {
            place: Place {
                epoch,
                shard,
                seq: reply.seq,
            },
            joined_us: reply.stamp,
            state: state_of(reply.standing, &r.queues, reply.stamp),
            existing: reply.existing,
        })
    }

    async fn visit(
        &self,
        room: &RoomRecord,
        ticket: &Ticket,
        now: u64,
    ) -> StoreResult<VisitorState> {
        let place = ticket.place;
        let room = self.mirror(&room.id, now).await?;
        // Visitors who joined through other instances just before this one, into other shards,
        // may be ahead and not in the mirror yet: until every join that can still land ahead
        // has landed or been refused (the join deadline), the mirror catches up first.
        let settled =
            ticket.joined_us / 1000 + self.redis.timeout().as_millis() as u64 + LATE_JOIN_MARGIN_MS;
        if now < settled && self.versions.others_answering() {
            self.caught_up_since_arrival(&room, now).await?;
        }
        let shard = usize::from(place.shard);
        let (known, keys, timing) = {
            let mut r = room.lock();
            if !r.holds(place) {
                return Ok(VisitorState::Expired);
            }
            let queue = &r.queues[shard];
            let seq = queue.locate(place.seq);
            if queue.contains(seq) {
                if queue.is_left(seq) {
                    return Ok(VisitorState::Left);
                }
                if seq > queue.admitted_seq() {
                    // Waiting: the mirror knows the position; no round trip.
                    let stamp = queue.stamp(seq).expect("contained");
                    let position = position(&r.queues, stamp);
                    r.note_seen(shard, place.seq);
                    return Ok(VisitorState::Waiting { position });
                }
            }
            (
                queue.contains(seq),
                r.shards[shard].keys.clone(),
                r.timing(),
            )
        };
        if !known {
            // A place newer than this mirror: catch up once, then answer from the mirror.
            self.sync_shard(&room, shard, now, None).await?;
            let r = room.lock();
            let queue = &r.queues[shard];
            let seq = queue.locate(place.seq);
            if !queue.contains(seq) {
                return Ok(VisitorState::Expired);
            }
            if queue.is_waiting(seq) {
                let stamp = queue.stamp(seq).expect("contained");
                let position = position(&r.queues, stamp);
                drop(r);
                room.lock().note_seen(shard, place.seq);
                return Ok(VisitorState::Waiting { position });
            }
        }
        let standing = self.on(&keys).visit(place.seq, now, timing).await?;
        let mut r = room.lock();
        let seq = r.queues[shard].locate(place.seq);
        if standing == Standing::Left {
            r.learn_left(shard, seq);
        }
        let stamp = r.queues[shard].stamp(seq).unwrap_or(0);
        Ok(state_of(standing, &r.queues, stamp))
    }

    /// Marks the visitor at `place` as gone for good (a leave or a revocation).
    async fn end(&self, room: &RoomRecord, place: Place, now: u64) -> StoreResult<Option<bool>> {
        let id = &room.id;
        let room = self.mirror(id, now).await?;
        let keys = {
            let r = room.lock();
            if !r.holds(place) {
                return Ok(None);
            }
            r.shards[usize::from(place.shard)].keys.clone()
        };
        let Some(ended) = self.on_visitor_writes(&keys).leave(place.seq, now).await? else {
            return Ok(None);
        };
        {
            let mut r = room.lock();
            let seq = r.queues[usize::from(place.shard)].locate(place.seq);
            r.learn_left(usize::from(place.shard), seq);
        }
        self.sessions
            .lock()
            .pop(&(id.clone(), place.shard, place.seq));
        // Everyone behind moved up: no instance answers them from before the leave.
        self.queue_changed(id).await?;
        Ok(Some(ended))
    }

    async fn session(
        &self,
        room: &RoomRecord,
        place: Place,
        renew: bool,
        now: u64,
    ) -> StoreResult<Option<u64>> {
        let id = &room.id;
        let cache_key = (id.clone(), place.shard, place.seq);
        // The versions first: a leave or a revocation through another instance moved the
        // room's queue version, and a session cached before it is not trusted after.
        let room = self.mirror(id, now).await?;
        let version = room.lock().queue_version.read;
        if !renew {
            if let Some(&(expires_at, checked_at, at)) = self.sessions.lock().get(&cache_key) {
                if expires_at > now && checked_at + SESSION_CACHE_MS > now && at == version {
                    return Ok(Some(expires_at));
                }
            }
        }
        let (keys, ttl) = {
            let r = room.lock();
            if !r.holds(place) {
                return Ok(None);
            }
            (
                r.shards[usize::from(place.shard)].keys.clone(),
                r.record.config.session_ttl_ms(),
            )
        };
        let expires = self.on(&keys).session(place.seq, renew, now, ttl).await?;
        let mut cache = self.sessions.lock();
        let Some(expires) = expires else {
            cache.pop(&cache_key);
            return Ok(None);
        };
        cache.put(cache_key, (expires, now, version));
        Ok(Some(expires))
    }

    async fn admit_now(&self, record: &RoomRecord, count: u64, now: u64) -> StoreResult<u64> {
        let id = &record.id;
        let room = self.mirror(id, now).await?;
        let Some(fence) = self.held_fence(now) else {
            // Another instance holds the lease: only it may admit.
            return self.ask_lease_holder(id, count, now).await;
        };
        let _admitting = self.admitting.lock().await;
        self.sync_room(&room, now, Some(fence)).await?;
        let (done, _, _) = self
            .admit_batch(&room, Batch::Operator { count }, fence, now)
            .await?;
        Ok(done)
    }
}

#[async_trait]
impl<C> Scheduling for RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn rooms(&self, _now: u64) -> StoreResult<Vec<RoomRecord>> {
        self.all_rooms().await
    }

    async fn acquire_lease(
        &self,
        holder: &str,
        ttl_ms: u64,
        now: u64,
    ) -> StoreResult<Option<Fence>> {
        self.take_lease(holder, ttl_ms, now).await
    }

    async fn keep_minute(&self, room: &RoomRecord, row: ReportMinute) -> StoreResult<()> {
        self.write_minute(&room.id, &row).await
    }

    async fn schedule(
        &self,
        record: &RoomRecord,
        fence: Fence,
        now: u64,
        decide: &mut (dyn FnMut(RoomLoad) -> Decision + Send),
    ) -> StoreResult<Round> {
        let id = &record.id;
        let room = self.mirror(id, now).await?;
        let _admitting = self.admitting.lock().await;
        self.serve_admit_requests(id, &room, fence, now).await?;
        // The load the controller decides on: the shards as they are now.
        self.sync_room(&room, now, Some(fence)).await?;
        let load = room.lock().load();
        let decision = decide(load);
        if decision.rate != room.lock().record.measured_rate {
            self.set_measured_rate(id, decision.rate).await?;
        }
        let (admitted, entry_credit, waits_ms) = self
            .admit_batch(
                &room,
                Batch::Scheduler {
                    grant: decision.grant,
                },
                fence,
                now,
            )
            .await?;
        let stats = room.lock().stats();
        Ok(Round {
            admitted,
            entry_credit,
            stats,
            waits_ms,
        })
    }

    async fn refresh(&self, now: u64) -> StoreResult<()> {
        let rooms: Vec<_> = self.rooms.read().values().cloned().collect();
        for room in rooms {
            self.sync_room(&room, now, None).await?;
        }
        Ok(())
    }
}
