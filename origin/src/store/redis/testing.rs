//! One shard's scripts on a connection of their own, with the store's mirror beside them, for
//! tests that drive the scripts directly: `tests/redis_differential.rs` runs them against the
//! core's `Shard`. Each call goes through the same code the store uses (the join batcher, the
//! typed script calls, the mirror's sync), without the store around them. Not part of the
//! store's interface.

use std::sync::Arc;

use parking_lot::Mutex;
use queuegate::plan::ShardReading;
use queuegate::queue::ShardQueue;
use queuegate::shard::{Standing, Timing};
use queuegate::shuffle::ShuffleSpec;
use queuegate::{RoomConfig, RoomId};
use redis::aio::MultiplexedConnection;

use super::connection::Redis;
use super::mirror::{catch_up, Room};
pub use super::replies::{AdmitReply, JoinReply, SyncReply};
use super::scripts::OnShard;
use super::{batch, keys};
use crate::store::{Fence, RoomRecord, StoreResult};

/// What a shard's keys hold, read as they are: unlike a sync, reading ends nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub tail: u64,
    pub admitted_seq: u64,
    pub left_waiting: u64,
    pub unclaimed: u64,
    pub credit: u64,
    pub admitted_total: u64,
    pub active: u64,
}

/// Shard 0 of a one-shard room.
pub struct ScriptShard {
    redis: Redis<MultiplexedConnection>,
    keys: Arc<[String]>,
    /// The mirror of the instance making these calls: it learns from them and from syncs.
    own: Mutex<Room>,
    /// The mirror of another instance, which learns from syncs only.
    other: Mutex<Room>,
}

impl ScriptShard {
    /// The shard on the Redis at `url`, emptied first, with sessions of `session_ttl_s` and
    /// claim windows of `claim_window_s`.
    pub async fn open(
        url: &str,
        session_ttl_s: u64,
        claim_window_s: u64,
    ) -> Result<ScriptShard, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        let room = || Room::new(record(session_ttl_s, claim_window_s));
        let shard = ScriptShard {
            redis: Redis::new(conn, std::time::Duration::from_secs(5)),
            keys: room().shards[0].keys.clone(),
            own: Mutex::new(room()),
            other: Mutex::new(room()),
        };
        shard.flush().await.map_err(|e| e.to_string())?;
        Ok(shard)
    }

    /// Empties the shard and both mirrors, and takes new timings.
    pub async fn reset(&self, session_ttl_s: u64, claim_window_s: u64) -> StoreResult<()> {
        self.flush().await?;
        *self.own.lock() = Room::new(record(session_ttl_s, claim_window_s));
        *self.other.lock() = Room::new(record(session_ttl_s, claim_window_s));
        Ok(())
    }

    async fn flush(&self) -> StoreResult<()> {
        self.redis
            .call(|mut conn| async move { redis::cmd("FLUSHDB").query_async(&mut conn).await })
            .await
    }

    pub fn timing(&self) -> Timing {
        self.own.lock().timing()
    }

    fn on(&self) -> OnShard<'_, MultiplexedConnection> {
        OnShard {
            redis: &self.redis,
            keys: &self.keys,
        }
    }

    /// Joins one visitor, as the store's join does (through the shard's join batcher). The
    /// steps run on a virtual clock, so the join has no deadline.
    pub async fn join(&self, user: Option<&str>, stamp: u64, now: u64) -> StoreResult<JoinReply> {
        self.join_by(user, stamp, now, u64::MAX).await
    }

    /// Joins one visitor that must reach Redis by `deadline` (Unix ms, Redis's clock).
    pub async fn join_by(
        &self,
        user: Option<&str>,
        stamp: u64,
        now: u64,
        deadline: u64,
    ) -> StoreResult<JoinReply> {
        let timing = self.timing();
        let job = batch::JoinJob {
            user: user.map(str::to_owned),
            bucket: user.map_or(0, |u| keys::user_home(u, 1).1),
            stamp,
            hold: false,
            now,
            deadline,
            ttl_ms: timing.session_ttl_ms,
            window_ms: timing.claim_window_ms,
        };
        let joins = self.own.lock().shards[0].joins.clone();
        let reply = joins.join(&self.redis, &self.keys, job).await?;
        self.own.lock().learn_join(0, &reply);
        Ok(reply)
    }

    /// Joins visitors at once, `(user, stamp)` each: the first sends its script alone, the others
    /// queue behind it in order and go to Redis together, as one script call.
    pub async fn join_many(
        &self,
        joins: &[(Option<&str>, u64)],
        now: u64,
    ) -> StoreResult<Vec<JoinReply>> {
        let calls = joins
            .iter()
            .map(|&(user, stamp)| self.join(user, stamp, now));
        futures::future::join_all(calls).await.into_iter().collect()
    }

    pub async fn visit(&self, seq: u64, now: u64) -> StoreResult<Standing> {
        let standing = self.on().visit(seq, now, self.timing()).await?;
        if standing == Standing::Left {
            let mut own = self.own.lock();
            let seq = own.queues[0].locate(seq);
            own.learn_left(0, seq);
        }
        Ok(standing)
    }

    pub async fn leave(&self, seq: u64, now: u64) -> StoreResult<Option<bool>> {
        let ended = self.on().leave(seq, now).await?;
        if ended.is_some() {
            let mut own = self.own.lock();
            let seq = own.queues[0].locate(seq);
            own.learn_left(0, seq);
        }
        Ok(ended)
    }

    pub async fn session(&self, seq: u64, renew: bool, now: u64) -> StoreResult<Option<u64>> {
        let ttl = self.timing().session_ttl_ms;
        self.on().session(seq, renew, now, ttl).await
    }

    pub async fn admit(
        &self,
        fence: Fence,
        upto: u64,
        now: u64,
        credit: u64,
        operator: bool,
    ) -> StoreResult<AdmitReply> {
        let reply = self
            .on()
            .admit(fence, upto, now, credit, operator, &[])
            .await?;
        self.own.lock().learn_admitted(0, &reply);
        Ok(reply)
    }

    /// Random mode's batch as the store runs it: the draw's swaps from the own mirror, the
    /// script, and both mirrors brought up to date (the other one from the move log).
    pub async fn draw(
        &self,
        fence: Fence,
        count: u64,
        seed: u64,
        now: u64,
    ) -> StoreResult<AdmitReply> {
        let (upto, swaps) = {
            let own = self.own.lock();
            let queue = &own.queues[0];
            let upto = queue
                .nth_waiting(count.min(queue.waiting()))
                .unwrap_or(queue.admitted_seq());
            (upto, queue.draw_swaps(count, seed))
        };
        let reply = self.on().admit(fence, upto, now, 0, true, &swaps).await?;
        self.sync(now, None, 1 << 20).await?;
        Ok(reply)
    }

    /// Applies `spec` as the store does: the block from the own mirror, the order from the core,
    /// the script, and the whole queue read back into the own mirror. The number reordered, or
    /// `None` if the script found the block changed.
    pub async fn shuffle(&self, spec: &ShuffleSpec, now: u64) -> StoreResult<Option<u64>> {
        catch_up(&self.on(), &self.own, 0, now, None, 1 << 20).await?;
        let perm = {
            let own = self.own.lock();
            let (first, last, floor) =
                own.queues[0].prequeue_block(spec.prequeue_us, spec.start_us);
            spec.permute(own.record.epoch, 0, first, last, floor)
        };
        let done = self.on().shuffle(spec, &perm).await?;
        let queue = self.on().queue().await?;
        self.own.lock().reload(0, &queue)?;
        Ok(done)
    }

    /// Notes the waiting visitors with these ticket seqs as seen at `now`, as an instance does
    /// for the polls it answered from its mirror.
    pub async fn seen(&self, ticket_seqs: &[u64], now: u64) -> StoreResult<u64> {
        self.on().seen(now, ticket_seqs).await
    }

    /// Sets the room's `abandon_after_s` in both mirrors' records (what a fenced sync reads).
    pub fn set_abandon_after(&self, seconds: u64) {
        self.own.lock().record.config.abandon_after_s = seconds;
        self.other.lock().record.config.abandon_after_s = seconds;
    }

    pub async fn pause(&self, paused: bool) -> StoreResult<()> {
        self.on().pause(paused, false).await
    }

    /// Syncs both mirrors at `now`, `max_bytes` at a time (the first sync ends what is over);
    /// returns the own mirror's last report.
    pub async fn sync(
        &self,
        now: u64,
        fence: Option<Fence>,
        max_bytes: u64,
    ) -> StoreResult<SyncReply> {
        let reply = catch_up(&self.on(), &self.own, 0, now, fence, max_bytes).await?;
        catch_up(&self.on(), &self.other, 0, now, None, max_bytes).await?;
        Ok(reply)
    }

    /// The queues of the own mirror and of the other instance's.
    pub fn mirrors(&self) -> [ShardQueue; 2] {
        [
            self.own.lock().queues[0].clone(),
            self.other.lock().queues[0].clone(),
        ]
    }

    /// The readings the scheduler would plan from, in both mirrors, with up to `heads` heads.
    pub fn readings(&self, heads: u64) -> [ShardReading; 2] {
        let reading = |room: &Mutex<Room>| room.lock().readings(heads, u64::MAX).remove(0);
        [reading(&self.own), reading(&self.other)]
    }

    pub async fn counters(&self) -> StoreResult<Counters> {
        let keys = self.keys.clone();
        let (meta, active, stamp_bytes): (Vec<Option<u64>>, u64, u64) = self
            .redis
            .call(|mut conn| async move {
                redis::pipe()
                    .cmd("HMGET")
                    .arg(&keys[2])
                    .arg(&["adm", "lw", "unc", "cr", "tot"])
                    .cmd("ZCARD")
                    .arg(&keys[5])
                    .cmd("STRLEN")
                    .arg(&keys[0])
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let field = |i: usize| meta.get(i).copied().flatten().unwrap_or(0);
        Ok(Counters {
            tail: stamp_bytes / 8,
            admitted_seq: field(0),
            left_waiting: field(1),
            unclaimed: field(2),
            credit: field(3),
            admitted_total: field(4),
            active,
        })
    }
}

fn record(session_ttl_s: u64, claim_window_s: u64) -> RoomRecord {
    RoomRecord {
        id: RoomId::parse("differential").expect("a valid room id"),
        config: RoomConfig {
            shards: 1,
            session_ttl_s,
            claim_window_s,
            // The differential steps end nothing unseen; the shuffle test sets it.
            abandon_after_s: 0,
            ..RoomConfig::default()
        },
        paused: false,
        epoch: 1,
        measured_rate: None,
        events: Default::default(),
        template: None,
        opens_at: None,
    }
}
