//! The Redis store: a room's queue in Redis (one node or a cluster), shared by any number of
//! origin instances.
//!
//! Each shard of a room is a handful of keys under one hash tag (see `keys.rs` and
//! `lua/shard.lua`); every operation on a shard is one Lua script, so a join, a claim, a leave
//! and an admission batch each cost one round trip and are atomic. A waiting visitor costs 8
//! bytes of stamp and a bit or two of bitmaps.
//!
//! Each instance keeps a mirror of every shard ([`ShardQueue`]: stamps, leavers, admission),
//! refreshed at least once a tick with one script per shard that returns only what changed.
//! A waiting visitor's status poll is answered from the signed ticket and the mirror, without a
//! round trip; the mirror also gives exact positions and the scheduler's FIFO plan.

mod batch;
mod keys;
mod scripts;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use queuegate::api::RoomStats;
use queuegate::controller::RoomLoad;
use queuegate::plan::{plan, Batch, Freshness, ShardReading};
use queuegate::queue::{position, ShardQueue};
use queuegate::service::{RouteTable, Routes};
use queuegate::{Place, RoomConfig, RoomId, Ticket, VisitorState};
use redis::aio::ConnectionLike;
use redis::{AsyncCommands, RedisError, Script};

use super::{
    Decision, Fence, Joined, RoomRecord, Round, Scheduling, Store, StoreError, StoreResult,
};

pub use scripts::source as script_source;

/// The most stamp or left-log bytes one sync reads (half a million visitors).
const MAX_SYNC_BYTES: u64 = 4 << 20;
/// How long a live session found in Redis is trusted without asking again: a revocation or a
/// leave through another instance reaches this one's gate within this time.
const SESSION_CACHE_MS: u64 = 1_000;
/// How long an unknown room id is remembered as unknown.
const UNKNOWN_ROOM_MS: u64 = 1_000;
/// How long an operator admission waits for the scheduler that holds the lease.
const OPERATOR_WAIT: Duration = Duration::from_secs(5);

/// One shard of a room as this instance sees it.
struct ShardState {
    keys: Arc<[String]>,
    /// This shard's joins on this instance, sent in batches.
    joins: Arc<batch::JoinBatcher>,
    /// Stamps this instance's joins learned ahead of the mirror's tail (joins on one shard can
    /// answer out of order); they join the mirror once the seqs before them arrive.
    pending: BTreeMap<u64, u64>,
    /// Bytes of the left log already applied.
    left_bytes: u64,
    unclaimed: u64,
    credit: u64,
    admitted_total: u64,
    active: u64,
}

/// A room: its record and the mirror of its shards.
struct Room {
    record: RoomRecord,
    /// When this instance last changed the record itself; a record read from Redis before that
    /// is older than what it holds and does not replace it.
    changed: Instant,
    queues: Vec<ShardQueue>,
    shards: Vec<ShardState>,
}

impl Room {
    fn new(record: RoomRecord) -> Room {
        let n = record.config.shards;
        Room {
            changed: Instant::now(),
            queues: vec![ShardQueue::new(); usize::from(n)],
            shards: (0..n)
                .map(|s| ShardState {
                    keys: keys::shard(&record.id, record.epoch, s).into(),
                    joins: Arc::default(),
                    pending: BTreeMap::new(),
                    left_bytes: 0,
                    unclaimed: 0,
                    credit: 0,
                    admitted_total: 0,
                    active: 0,
                })
                .collect(),
            record,
        }
    }

    fn load(&self) -> RoomLoad {
        RoomLoad {
            waiting: self.queues.iter().map(ShardQueue::waiting).sum(),
            active: self.shards.iter().map(|s| s.active).sum(),
            admitted: self.shards.iter().map(|s| s.unclaimed).sum(),
            admitted_total: self.shards.iter().map(|s| s.admitted_total).sum(),
        }
    }

    fn credit(&self) -> u64 {
        self.shards.iter().map(|s| s.credit).sum()
    }

    fn stats(&self) -> RoomStats {
        let load = self.load();
        RoomStats {
            waiting: load.waiting,
            admitted: load.admitted,
            active: load.active,
            admitted_total: load.admitted_total,
            admit_rate_per_min: self.record.measured_rate,
            entry_credit: self.credit(),
        }
    }

    /// Each shard as the mirror holds it, with its next `heads` waiting visitors stamped before
    /// `cutoff`.
    fn readings(&self, heads: u64, cutoff: u64) -> Vec<ShardReading> {
        self.queues
            .iter()
            .zip(&self.shards)
            .map(|(queue, state)| {
                let listed: Vec<(u64, u64)> = queue
                    .heads(heads)
                    .into_iter()
                    .take_while(|&(_, stamp)| stamp < cutoff)
                    .collect();
                let waiting = queue.waiting();
                ShardReading {
                    active: state.active,
                    unclaimed: state.unclaimed,
                    credit: state.credit,
                    waiting,
                    admitted_total: state.admitted_total,
                    // Those stamped from the cutoff on may not all be in the mirror yet.
                    listed_below: ShardReading::bound(&listed, waiting).min(cutoff),
                    heads: listed,
                }
            })
            .collect()
    }

    /// Adds a stamp a join of this instance learned: at the tail at once, or pending until the
    /// seqs before it are known.
    fn learn_stamp(&mut self, shard: usize, seq: u64, stamp: u64) {
        let queue = &self.queues[shard];
        if seq > queue.tail() {
            self.shards[shard].pending.insert(seq, stamp);
        }
        self.fold_pending(shard);
    }

    /// Moves pending stamps that now follow the tail into the mirror, and forgets those a sync
    /// brought already.
    fn fold_pending(&mut self, shard: usize) {
        let queue = &mut self.queues[shard];
        let pending = &mut self.shards[shard].pending;
        while let Some(entry) = pending.first_entry() {
            let seq = *entry.key();
            if seq <= queue.tail() {
                entry.remove();
            } else if seq == queue.tail() + 1 {
                queue.push(entry.remove());
            } else {
                break;
            }
        }
    }

    /// Applies a sync reply; returns whether more bytes wait to be read.
    fn apply(&mut self, shard: usize, from: (u64, u64), reply: SyncReply) -> bool {
        // A concurrent sync may have applied these bytes already: apply only from where we are.
        if self.queues[shard].tail() * 8 == from.0 {
            self.queues[shard].extend_from_be_bytes(&reply.stamps);
            self.fold_pending(shard);
        }
        let queue = &mut self.queues[shard];
        let state = &mut self.shards[shard];
        if state.left_bytes == from.1 {
            for chunk in reply.lefts.chunks_exact(8) {
                let seq = u64::from_be_bytes(chunk.try_into().expect("chunks of 8"));
                if !queue.contains(seq) {
                    // Its stamp is beyond what this read brought: take it up next time.
                    break;
                }
                queue.mark_left(seq);
                state.left_bytes += 8;
            }
        }
        queue.admit_through(reply.admitted_seq.min(queue.tail()));
        state.unclaimed = reply.unclaimed;
        state.credit = reply.credit;
        state.admitted_total = reply.admitted_total;
        state.active = reply.active;
        queue.tail() * 8 < reply.stamp_bytes || state.left_bytes < reply.left_bytes
    }
}

struct SyncReply {
    admitted_seq: u64,
    unclaimed: u64,
    credit: u64,
    admitted_total: u64,
    active: u64,
    stamp_bytes: u64,
    left_bytes: u64,
    stamps: Vec<u8>,
    lefts: Vec<u8>,
}

type SessionKey = (RoomId, u16, u64);

type SyncTuple = (u64, u64, u64, u64, u64, u64, u64, u64, Vec<u8>, Vec<u8>);

impl From<SyncTuple> for SyncReply {
    fn from(t: SyncTuple) -> Self {
        SyncReply {
            admitted_seq: t.0,
            unclaimed: t.2,
            credit: t.3,
            admitted_total: t.4,
            active: t.5,
            stamp_bytes: t.6,
            left_bytes: t.7,
            stamps: t.8,
            lefts: t.9,
        }
    }
}

/// The Redis store over a connection `C`: a `ConnectionManager` for one node, a
/// `ClusterConnection` for a cluster. Both multiplex and pipeline every request of this
/// instance over one connection per node, and reconnect by themselves.
pub struct RedisStore<C> {
    conn: C,
    kind: &'static str,
    timeout: Duration,
    rooms: RwLock<HashMap<RoomId, Arc<Mutex<Room>>>>,
    routes: Routes,
    unknown: Mutex<HashMap<RoomId, u64>>,
    /// Live sessions found in Redis: expiry and when it was read, by room and place.
    sessions: Mutex<HashMap<SessionKey, (u64, u64)>>,
    next_shard: AtomicUsize,
    last_stamp: AtomicU64,
    /// The lease this instance holds, if any: its fence and when it runs out.
    lease: Mutex<Option<(Fence, u64)>>,
    /// Serializes this instance's admissions (the scheduler's and operators').
    admitting: tokio::sync::Mutex<()>,
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    pub fn new(conn: C, kind: &'static str, timeout: Duration) -> Self {
        RedisStore {
            conn,
            kind,
            timeout,
            rooms: RwLock::default(),
            routes: Routes::default(),
            unknown: Mutex::default(),
            sessions: Mutex::default(),
            next_shard: AtomicUsize::new(0),
            last_stamp: AtomicU64::new(0),
            lease: Mutex::new(None),
            admitting: tokio::sync::Mutex::new(()),
        }
    }

    /// Runs a Redis call under the store's timeout.
    async fn call<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: std::future::Future<Output = Result<T, RedisError>>,
    {
        within(self.timeout, f).await
    }

    async fn shard_script<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[String],
        extra_key: Option<&str>,
        args: Vec<Arg<'_>>,
    ) -> StoreResult<T> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        // The user bucket, or a same-slot dummy so that KEYS[9] always exists.
        match extra_key {
            Some(key) => invocation.key(key),
            None => invocation.key(keys::user_bucket(keys, 0)),
        };
        for arg in args {
            invocation.arg(arg);
        }
        invoke(&self.conn, self.timeout, invocation).await
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

    async fn fetch_record(&self, id: &RoomId) -> StoreResult<Option<RoomRecord>> {
        let mut conn = self.conn.clone();
        let key = keys::room(id);
        let fields: HashMap<String, String> =
            self.call(async move { conn.hgetall(key).await }).await?;
        Ok(parse_record(id, &fields))
    }

    /// The room's mirror, fetching the record when this instance has not seen the room.
    async fn mirror(&self, id: &RoomId, now: u64) -> StoreResult<Arc<Mutex<Room>>> {
        if let Some(room) = self.rooms.read().get(id) {
            return Ok(room.clone());
        }
        if self
            .unknown
            .lock()
            .get(id)
            .is_some_and(|&until| until > now)
        {
            return Err(StoreError::UnknownRoom(id.clone()));
        }
        let started = Instant::now();
        match self.fetch_record(id).await? {
            Some(record) => Ok(self.install(record, started)),
            None => {
                self.unknown
                    .lock()
                    .insert(id.clone(), now + UNKNOWN_ROOM_MS);
                Err(StoreError::UnknownRoom(id.clone()))
            }
        }
    }

    /// Puts a record read from Redis (the read began at `read_at`) into the cache; a new
    /// epoch starts a new mirror.
    fn install(&self, record: RoomRecord, read_at: Instant) -> Arc<Mutex<Room>> {
        let mut rooms = self.rooms.write();
        if let Some(room) = rooms.get(&record.id) {
            let mut guard = room.lock();
            if guard.record.epoch == record.epoch
                && guard.record.config.shards == record.config.shards
            {
                if guard.changed < read_at {
                    guard.record = record;
                }
                return room.clone();
            }
        }
        self.unknown.lock().remove(&record.id);
        let room = Arc::new(Mutex::new(Room::new(record.clone())));
        rooms.insert(record.id, room.clone());
        room
    }

    /// Brings the mirror of one shard up to date (and, with a fence, raises the shard's fence).
    async fn sync_shard(
        &self,
        room: &Arc<Mutex<Room>>,
        shard: usize,
        now: u64,
        fence: u64,
    ) -> StoreResult<()> {
        let mut fence = fence;
        loop {
            let (keys, from, window) = {
                let r = room.lock();
                (
                    r.shards[shard].keys.clone(),
                    (r.queues[shard].tail() * 8, r.shards[shard].left_bytes),
                    r.record.config.claim_window_ms(),
                )
            };
            let reply: SyncTuple = self
                .shard_script(
                    &scripts::SYNC,
                    &keys,
                    None,
                    vec![
                        now.into(),
                        window.into(),
                        from.0.into(),
                        from.1.into(),
                        MAX_SYNC_BYTES.into(),
                        fence.into(),
                    ],
                )
                .await?;
            fence = 0;
            if !room.lock().apply(shard, from, reply.into()) {
                return Ok(());
            }
        }
    }

    async fn sync_room(&self, room: &Arc<Mutex<Room>>, now: u64, fence: u64) -> StoreResult<()> {
        let shards = room.lock().queues.len();
        let syncs = (0..shards).map(|s| self.sync_shard(room, s, now, fence));
        for result in futures::future::join_all(syncs).await {
            result?;
        }
        Ok(())
    }

    /// Runs a batch as the core plans it, from the mirror the caller brought up to date under
    /// `fence` (every shard learns the fence before anything is counted, so an older scheduler
    /// that wakes up now can no longer admit anywhere). Returns the admissions and the credit
    /// opened.
    async fn admit_batch(
        &self,
        room: &Arc<Mutex<Room>>,
        batch: Batch,
        fence: Fence,
        now: u64,
    ) -> StoreResult<(u64, u64)> {
        // Visitors stamped from `now` on may have joined while the shards were read one by one.
        let cutoff = now.saturating_mul(1000);
        let operator = matches!(batch, Batch::Operator { .. });
        let (orders, uptos, keys) = {
            let r = room.lock();
            let count = match batch {
                Batch::Scheduler { grant } => grant,
                Batch::Operator { count } => count,
            };
            let readings = r.readings(count, cutoff);
            let planned = plan(
                &r.record.config,
                r.record.paused,
                &readings,
                batch,
                Freshness::Current,
            );
            let keys: Vec<Arc<[String]>> = r.shards.iter().map(|s| s.keys.clone()).collect();
            let uptos: Vec<u64> = planned
                .orders
                .iter()
                .zip(&r.queues)
                .map(|(order, queue)| match order.take {
                    0 => queue.admitted_seq(),
                    _ => order.through_seq,
                })
                .collect();
            (planned.orders, uptos, keys)
        };
        let batches = orders
            .iter()
            .zip(&uptos)
            .zip(&keys)
            .map(|((order, &upto), keys)| {
                // An operator's batch leaves the credit as it is (the script sees the flag).
                let credit = order.credit.unwrap_or(0);
                self.shard_script::<(u64, u64)>(
                    &scripts::ADMIT,
                    keys,
                    None,
                    vec![
                        fence.0.into(),
                        upto.into(),
                        now.into(),
                        credit.into(),
                        u64::from(operator).into(),
                    ],
                )
            });
        let results = futures::future::join_all(batches).await;
        let mut admitted = 0;
        let mut r = room.lock();
        for (shard, result) in results.into_iter().enumerate() {
            let (n, adm) = result?;
            admitted += n;
            let queue = &mut r.queues[shard];
            queue.admit_through(adm.min(queue.tail()));
            if let Some(credit) = orders[shard].credit {
                r.shards[shard].credit = credit;
            }
        }
        let credit = orders.iter().filter_map(|o| o.credit).sum();
        Ok((admitted, credit))
    }

    /// Runs the operator admissions other instances asked this one (the lease holder) for.
    async fn serve_admit_requests(
        &self,
        id: &RoomId,
        room: &Arc<Mutex<Room>>,
        fence: Fence,
        now: u64,
    ) -> StoreResult<()> {
        loop {
            let mut conn = self.conn.clone();
            let key = keys::admit_requests(id);
            let request: Option<String> =
                self.call(async move { conn.lpop(key, None).await }).await?;
            let Some(request) = request else {
                return Ok(());
            };
            let Some((request_id, count)) = request
                .split_once(':')
                .and_then(|(id, n)| Some((id.to_owned(), n.parse::<u64>().ok()?)))
            else {
                continue;
            };
            self.sync_room(room, now, fence.0).await?;
            let (done, _) = self
                .admit_batch(room, Batch::Operator { count }, fence, now)
                .await?;
            let mut conn = self.conn.clone();
            let key = keys::admit_result(&request_id);
            self.call(async move { conn.set_ex::<_, _, ()>(key, done, 60).await })
                .await?;
        }
    }

    /// Tells every shard whether the room is paused (a paused shard opens no entry credit and
    /// admits nobody directly), dropping the credit on a pause or when asked.
    async fn pause_shards(
        &self,
        room: &Arc<Mutex<Room>>,
        paused: bool,
        drop_credit: bool,
    ) -> StoreResult<()> {
        let shard_keys: Vec<Arc<[String]>> =
            room.lock().shards.iter().map(|s| s.keys.clone()).collect();
        let calls = shard_keys.iter().map(|keys| {
            self.shard_script::<i64>(
                &scripts::PAUSE,
                keys,
                None,
                vec![u64::from(paused).into(), u64::from(drop_credit).into()],
            )
        });
        for result in futures::future::join_all(calls).await {
            result?;
        }
        Ok(())
    }

    /// Marks the visitor at `place` as gone for good (a leave or a revocation). `None` when the
    /// room never gave out that place; else whether a place, an admission or a live session
    /// ended.
    async fn end_place(&self, id: &RoomId, place: Place, now: u64) -> StoreResult<Option<bool>> {
        let room = self.mirror(id, now).await?;
        let keys = {
            let r = room.lock();
            if !self.check_place(&r, place) {
                return Ok(None);
            }
            r.shards[usize::from(place.shard)].keys.clone()
        };
        let reply: Vec<i64> = self
            .shard_script(
                &scripts::LEAVE,
                &keys,
                None,
                vec![place.seq.into(), now.into()],
            )
            .await?;
        if reply.first() != Some(&2) {
            return Ok(None);
        }
        room.lock().queues[usize::from(place.shard)].mark_left(place.seq);
        self.sessions
            .lock()
            .remove(&(id.clone(), place.shard, place.seq));
        Ok(Some(reply.get(1) == Some(&1)))
    }

    /// Every room in Redis, installed in this instance's cache and route table.
    async fn all_rooms(&self, _now: u64) -> StoreResult<Vec<RoomRecord>> {
        let build = self.routes.begin();
        let mut conn = self.conn.clone();
        let read_at = Instant::now();
        let ids: Vec<String> = self
            .call(async move { conn.smembers(keys::ROOMS).await })
            .await?;
        let mut records = Vec::new();
        for id in ids {
            let Ok(id) = RoomId::parse(&id) else {
                continue;
            };
            if let Some(record) = self.fetch_record(&id).await? {
                let room = self.install(record, read_at);
                records.push(room.lock().record.clone());
            }
        }
        records.sort_by(|a, b| a.id.cmp(&b.id));
        self.routes.finish(build, RouteTable::build(&records));
        Ok(records)
    }

    async fn set_measured_rate(&self, id: &RoomId, rate: Option<f64>) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let key = keys::room(id);
        self.call(async move {
            match rate {
                Some(rate) => conn.hset::<_, _, _, ()>(key, "rate", rate).await,
                None => conn.hdel::<_, _, ()>(key, "rate").await,
            }
        })
        .await?;
        if let Some(room) = self.rooms.read().get(id) {
            let mut r = room.lock();
            r.record.measured_rate = rate;
            r.changed = Instant::now();
        }
        Ok(())
    }

    fn held_fence(&self, now: u64) -> Option<Fence> {
        self.lease
            .lock()
            .filter(|&(_, until)| until > now)
            .map(|(fence, _)| fence)
    }

    fn check_place(&self, room: &Room, place: Place) -> bool {
        place.epoch == room.record.epoch && usize::from(place.shard) < room.queues.len()
    }
}

/// A store on one Redis server. The connection is made lazily and remade after a failure, so
/// the server starts and keeps running while Redis is away.
pub fn connect_single(
    url: &str,
    timeout: Duration,
) -> Result<RedisStore<redis::aio::ConnectionManager>, String> {
    let client = redis::Client::open(url).map_err(|e| format!("redis url {url:?}: {e}"))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    let conn = client
        .get_connection_manager_lazy(config)
        .map_err(|e| format!("redis {url:?}: {e}"))?;
    Ok(RedisStore::new(conn, "redis", timeout))
}

/// A store on a Redis Cluster. The cluster's slot map is read at start, so the cluster must be
/// reachable then (tried for ten seconds); after that, nodes may come and go.
pub async fn connect_cluster(
    urls: &[String],
    timeout: Duration,
) -> Result<RedisStore<redis::cluster_async::ClusterConnection>, String> {
    let client = redis::cluster::ClusterClientBuilder::new(urls.to_vec())
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(2)
        .build()
        .map_err(|e| format!("redis cluster {urls:?}: {e}"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match client.get_async_connection().await {
            Ok(conn) => return Ok(RedisStore::new(conn, "redis-cluster", timeout)),
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(format!("redis cluster {urls:?}: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Runs a Redis call under `timeout`; failures become `Unavailable` (or `Fenced`).
async fn within<T, F>(timeout: Duration, f: F) -> StoreResult<T>
where
    F: std::future::Future<Output = Result<T, RedisError>>,
{
    match tokio::time::timeout(timeout, f).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) if err.to_string().contains("FENCED") => Err(StoreError::Fenced),
        Ok(Err(err)) => Err(StoreError::Unavailable(err.to_string())),
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// Invokes a prepared script on a clone of `conn`.
async fn invoke<C, T>(
    conn: &C,
    timeout: Duration,
    invocation: redis::ScriptInvocation<'_>,
) -> StoreResult<T>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
    T: redis::FromRedisValue,
{
    let mut conn = conn.clone();
    within(
        timeout,
        async move { invocation.invoke_async(&mut conn).await },
    )
    .await
}

/// A script argument: a number or a string.
#[derive(Debug, Clone, Copy)]
enum Arg<'a> {
    Num(u64),
    Str(&'a str),
}

impl From<u64> for Arg<'_> {
    fn from(n: u64) -> Self {
        Arg::Num(n)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Str(s)
    }
}

impl redis::ToRedisArgs for Arg<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        match self {
            Arg::Num(n) => {
                use std::io::Write;
                let _ = write!(out.writer_for_next_arg(), "{n}");
            }
            Arg::Str(s) => out.write_arg(s.as_bytes()),
        }
    }
}

fn parse_record(id: &RoomId, fields: &HashMap<String, String>) -> Option<RoomRecord> {
    let epoch = u32::from_str_radix(fields.get("epoch")?, 16).ok()?;
    let config: RoomConfig = serde_json::from_str(fields.get("config")?).ok()?;
    Some(RoomRecord {
        id: id.clone(),
        config,
        paused: fields.get("paused").is_some_and(|p| p == "1"),
        epoch,
        measured_rate: fields.get("rate").and_then(|r| r.parse().ok()),
    })
}

fn state_of(code: &[i64], queues: &[ShardQueue], stamp: u64) -> VisitorState {
    match code.first() {
        Some(0) => VisitorState::Waiting {
            position: position(queues, stamp),
        },
        Some(1) => VisitorState::Admitted {
            session_expires_at: code.get(1).copied().unwrap_or(0).max(0) as u64,
        },
        Some(2) => VisitorState::Left,
        _ => VisitorState::Expired,
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

    async fn health(&self, _now: u64) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        self.call(async move { redis::cmd("PING").query_async::<String>(&mut conn).await })
            .await
            .map(|_| ())
    }

    async fn put_room(
        &self,
        id: &RoomId,
        config: RoomConfig,
        epoch: u32,
        now: u64,
    ) -> StoreResult<(RoomRecord, bool)> {
        let key = keys::room(id);
        let existing = self.fetch_record(id).await?;
        if let Some(existing) = &existing {
            if existing.config.shards != config.shards {
                return Err(StoreError::Conflict(format!(
                    "shards: a room keeps its shard count ({}) for life",
                    existing.config.shards
                )));
            }
        }
        let json = serde_json::to_string(&config).expect("a config serializes");
        let mut conn = self.conn.clone();
        let created: bool = {
            let key = key.clone();
            self.call(async move {
                let created: bool = conn.hset_nx(&key, "epoch", format!("{epoch:08x}")).await?;
                conn.hset::<_, _, _, ()>(&key, "config", json).await?;
                conn.sadd::<_, _, ()>(keys::ROOMS, id.as_str()).await?;
                Ok(created)
            })
            .await?
        };
        let read_at = Instant::now();
        let record = self.fetch_record(id).await?.ok_or_else(|| {
            StoreError::Unavailable("the room vanished while it was written".into())
        })?;
        let room = self.install(record.clone(), read_at);
        room.lock().changed = Instant::now();
        // This instance's gate knows of the room at once (others at their next tick).
        self.all_rooms(now).await?;
        if !created {
            // A new configuration (maybe a lower capacity) opens no credit until the next tick.
            self.pause_shards(&room, record.paused, true).await?;
        }
        Ok((record, created))
    }

    async fn route_table(&self, _now: u64) -> StoreResult<Arc<RouteTable>> {
        Ok(self.routes.current())
    }

    async fn rooms(&self, now: u64) -> StoreResult<Vec<RoomRecord>> {
        self.all_rooms(now).await
    }

    async fn room(&self, id: &RoomId, now: u64) -> StoreResult<Option<RoomRecord>> {
        match self.mirror(id, now).await {
            Ok(room) => Ok(Some(room.lock().record.clone())),
            Err(StoreError::UnknownRoom(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn set_paused(&self, id: &RoomId, paused: bool, now: u64) -> StoreResult<RoomRecord> {
        let room = self.mirror(id, now).await?;
        let mut conn = self.conn.clone();
        let key = keys::room(id);
        self.call(async move {
            conn.hset::<_, _, _, ()>(key, "paused", if paused { "1" } else { "0" })
                .await
        })
        .await?;
        self.pause_shards(&room, paused, false).await?;
        let mut r = room.lock();
        r.record.paused = paused;
        r.changed = Instant::now();
        if paused {
            r.shards.iter_mut().for_each(|s| s.credit = 0);
        }
        Ok(r.record.clone())
    }

    async fn stats(&self, room: &RoomRecord, now: u64, fresh: bool) -> StoreResult<RoomStats> {
        let room = self.mirror(&room.id, now).await?;
        if fresh {
            self.sync_room(&room, now, 0).await?;
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
                now,
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
        let reply = batcher
            .join(&self.conn, self.timeout, &shard_keys, job)
            .await?;
        let [existing, seq, stamp, code, a, _b] = reply;
        let (seq, stamp) = (seq as u64, stamp as u64);
        let place = Place { epoch, shard, seq };
        let mut r = room.lock();
        if existing == 0 {
            r.learn_stamp(usize::from(shard), seq, stamp);
        }
        if code == 1 && existing == 0 {
            // Let in at once: the shard admitted through this seq.
            let queue = &mut r.queues[usize::from(shard)];
            queue.admit_through(seq.min(queue.tail()));
        }
        let state = if code == 1 {
            VisitorState::Admitted {
                session_expires_at: a as u64,
            }
        } else {
            VisitorState::Waiting {
                position: position(&r.queues, stamp),
            }
        };
        Ok(Joined {
            place,
            joined_us: stamp,
            state,
            existing: existing == 1,
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
        let shard = usize::from(place.shard);
        let (known, keys, config) = {
            let r = room.lock();
            if !self.check_place(&r, place) {
                return Ok(VisitorState::Expired);
            }
            let queue = &r.queues[shard];
            if queue.contains(place.seq) {
                if queue.is_left(place.seq) {
                    return Ok(VisitorState::Left);
                }
                if place.seq > queue.admitted_seq() {
                    // Waiting: the mirror knows the position; no round trip.
                    let stamp = queue.stamp(place.seq).expect("contained");
                    return Ok(VisitorState::Waiting {
                        position: position(&r.queues, stamp),
                    });
                }
            }
            (
                queue.contains(place.seq),
                r.shards[shard].keys.clone(),
                r.record.config.clone(),
            )
        };
        if !known {
            // A place newer than this mirror: catch up once, then answer from the mirror.
            self.sync_shard(&room, shard, now, 0).await?;
            let r = room.lock();
            let queue = &r.queues[shard];
            if !queue.contains(place.seq) {
                return Ok(VisitorState::Expired);
            }
            if queue.is_waiting(place.seq) {
                let stamp = queue.stamp(place.seq).expect("contained");
                return Ok(VisitorState::Waiting {
                    position: position(&r.queues, stamp),
                });
            }
        }
        let reply: Vec<i64> = self
            .shard_script(
                &scripts::VISIT,
                &keys,
                None,
                vec![
                    place.seq.into(),
                    now.into(),
                    config.session_ttl_ms().into(),
                    config.claim_window_ms().into(),
                ],
            )
            .await?;
        let mut r = room.lock();
        if reply.first() == Some(&2) {
            r.queues[shard].mark_left(place.seq);
        }
        let stamp = r.queues[shard].stamp(place.seq).unwrap_or(0);
        Ok(state_of(&reply, &r.queues, stamp))
    }

    async fn end(&self, room: &RoomRecord, place: Place, now: u64) -> StoreResult<Option<bool>> {
        self.end_place(&room.id, place, now).await
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
        if !renew {
            if let Some(&(expires_at, checked_at)) = self.sessions.lock().get(&cache_key) {
                if expires_at > now && checked_at + SESSION_CACHE_MS > now {
                    return Ok(Some(expires_at));
                }
            }
        }
        let room = self.mirror(id, now).await?;
        let (keys, ttl) = {
            let r = room.lock();
            if !self.check_place(&r, place) {
                return Ok(None);
            }
            (
                r.shards[usize::from(place.shard)].keys.clone(),
                r.record.config.session_ttl_ms(),
            )
        };
        let expires: i64 = self
            .shard_script(
                &scripts::SESSION,
                &keys,
                None,
                vec![
                    place.seq.into(),
                    now.into(),
                    ttl.into(),
                    u64::from(renew).into(),
                ],
            )
            .await?;
        let mut cache = self.sessions.lock();
        if expires < 0 {
            cache.remove(&cache_key);
            return Ok(None);
        }
        if cache.len() > 100_000 {
            cache.retain(|_, &mut (expires_at, _)| expires_at > now);
        }
        cache.insert(cache_key, (expires as u64, now));
        Ok(Some(expires as u64))
    }

    async fn admit_now(&self, record: &RoomRecord, count: u64, now: u64) -> StoreResult<u64> {
        let id = &record.id;
        let room = self.mirror(id, now).await?;
        if let Some(fence) = self.held_fence(now) {
            let _admitting = self.admitting.lock().await;
            self.sync_room(&room, now, fence.0).await?;
            let (done, _) = self
                .admit_batch(&room, Batch::Operator { count }, fence, now)
                .await?;
            return Ok(done);
        }
        // Another instance holds the lease: only it may admit. Ask it, and wait for its answer.
        let request = format!("{:016x}", u64::from_be_bytes(crate::clock::random_bytes()));
        let mut conn = self.conn.clone();
        let key = keys::admit_requests(id);
        let body = format!("{request}:{count}");
        self.call(async move { conn.rpush::<_, _, ()>(key, body).await })
            .await?;
        let deadline = tokio::time::Instant::now() + OPERATOR_WAIT;
        let result_key = keys::admit_result(&request);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut conn = self.conn.clone();
            let key = result_key.clone();
            let done: Option<u64> = self.call(async move { conn.get(key).await }).await?;
            if let Some(done) = done {
                return Ok(done);
            }
        }
        Err(StoreError::Unavailable(
            "the scheduler holding the admission lease did not answer".into(),
        ))
    }
}

#[async_trait]
impl<C> Scheduling for RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn rooms(&self, now: u64) -> StoreResult<Vec<RoomRecord>> {
        self.all_rooms(now).await
    }

    async fn acquire_lease(
        &self,
        holder: &str,
        ttl_ms: u64,
        now: u64,
    ) -> StoreResult<Option<Fence>> {
        let mut invocation = scripts::LEASE.prepare_invoke();
        invocation
            .key(keys::LEASE_HOLDER)
            .key(keys::LEASE_FENCE)
            .arg(holder)
            .arg(ttl_ms);
        let mut conn = self.conn.clone();
        let fence: u64 = self
            .call(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        let held = (fence > 0).then_some(Fence(fence));
        // Counted from before the call: the lease may have started earlier than we learn it.
        *self.lease.lock() = held.map(|f| (f, now + ttl_ms));
        Ok(held)
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
        self.sync_room(&room, now, fence.0).await?;
        let load = room.lock().load();
        let decision = decide(load);
        if decision.rate != room.lock().record.measured_rate {
            self.set_measured_rate(id, decision.rate).await?;
        }
        let (admitted, entry_credit) = self
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
        })
    }

    async fn refresh(&self, now: u64) -> StoreResult<()> {
        let rooms: Vec<_> = self.rooms.read().values().cloned().collect();
        for room in rooms {
            self.sync_room(&room, now, 0).await?;
        }
        Ok(())
    }
}
