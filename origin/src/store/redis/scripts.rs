//! The Lua scripts, hashed once and sent by EVALSHA (redis-rs loads a script again when Redis
//! answers NOSCRIPT, after a restart or a failover), and [`OnShard`], which calls a shard's
//! scripts with named arguments and decodes their replies. Every shard script starts with the
//! codes the Rust side reads its answers by (the statuses, [`Status::lua_constants`], and the
//! fence refusal's error code) and the shared helpers in `lua/shard.lua`, and touches only keys
//! of one shard's hash tag.

use std::sync::LazyLock;

use queuegate::shard::{Standing, Timing};
use queuegate::shuffle::{Permutation, ShuffleSpec};
use redis::aio::ConnectionLike;
use redis::Script;

use super::connection::{Arg, Redis, FENCED};
use super::replies::{
    AdmitReply, LeaveReply, QueueReply, SessionReply, Status, SyncReply, VisitReply,
};
use crate::store::{Fence, StoreResult};

/// A script and its source: sent by its hash, or whole where a node may not have it yet
/// (`EVAL` runs on the node of its keys; loading it by `SCRIPT LOAD` would go to every node of
/// a cluster, one that is down too, and wait for it).
pub struct LuaScript {
    pub script: Script,
    pub source: String,
}

impl LuaScript {
    fn new(source: String) -> LuaScript {
        LuaScript {
            script: Script::new(&source),
            source,
        }
    }
}

impl std::ops::Deref for LuaScript {
    type Target = Script;

    fn deref(&self) -> &Script {
        &self.script
    }
}

macro_rules! shard_script {
    ($file:literal) => {
        LazyLock::new(|| LuaScript::new(shard_source(include_str!(concat!("lua/", $file)))))
    };
}

pub static JOIN: LazyLock<LuaScript> = shard_script!("join.lua");
pub static VISIT: LazyLock<LuaScript> = shard_script!("visit.lua");
pub static LEAVE: LazyLock<LuaScript> = shard_script!("leave.lua");
pub static SESSION: LazyLock<LuaScript> = shard_script!("session.lua");
pub static SYNC: LazyLock<LuaScript> = shard_script!("sync.lua");
pub static ADMIT: LazyLock<LuaScript> = shard_script!("admit.lua");
pub static PAUSE: LazyLock<LuaScript> = shard_script!("pause.lua");
pub static SHUFFLE: LazyLock<LuaScript> = shard_script!("shuffle.lua");
pub static QUEUE: LazyLock<LuaScript> = shard_script!("queue.lua");
pub static SEEN: LazyLock<LuaScript> = shard_script!("seen.lua");
pub static LEASE: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/lease.lua").to_owned()));
pub static JOIN_LIMIT: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/join_limit.lua").to_owned()));
pub static SET_EVENTS: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(include_str!("lua/set_events.lua").to_owned()));

fn shard_source(body: &str) -> String {
    format!(
        "{}local FENCED = '{FENCED}'\n{}\n{}",
        Status::lua_constants(),
        include_str!("lua/shard.lua"),
        body
    )
}

/// A shard script's source as Redis runs it, for `redis-benchmark` runs of the same script.
pub fn source(name: &str) -> Option<String> {
    let body = match name {
        "join" => include_str!("lua/join.lua"),
        "visit" => include_str!("lua/visit.lua"),
        "leave" => include_str!("lua/leave.lua"),
        "session" => include_str!("lua/session.lua"),
        "sync" => include_str!("lua/sync.lua"),
        "admit" => include_str!("lua/admit.lua"),
        "pause" => include_str!("lua/pause.lua"),
        "shuffle" => include_str!("lua/shuffle.lua"),
        "queue" => include_str!("lua/queue.lua"),
        "seen" => include_str!("lua/seen.lua"),
        _ => return None,
    };
    Some(shard_source(body))
}

/// Where a mirror reads a shard on from: byte offsets into its stamps, its left log and its
/// move log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct SyncFrom {
    pub stamps: u64,
    pub lefts: u64,
    pub moves: u64,
}

/// One shard's scripts (joins excepted: `batch.rs` sends those), on the shard's `keys`.
pub(super) struct OnShard<'a, C> {
    pub redis: &'a Redis<C>,
    pub keys: &'a [String],
}

impl<C> OnShard<'_, C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// Ends sessions and claim windows over at `now`, then reports the shard from the stamp and
    /// left-log offsets `from`, at most `max_bytes` of each. With a `fence`, raises the shard's
    /// fence to it first (or fails with `Fenced` if the shard knows a newer one), and ends the
    /// places of waiting visitors not seen for `abandon_after_ms`.
    pub async fn sync(
        &self,
        now: u64,
        claim_window_ms: u64,
        abandon_after_ms: Option<u64>,
        from: SyncFrom,
        max_bytes: u64,
        fence: Option<Fence>,
    ) -> StoreResult<SyncReply> {
        let fence = fence.map_or(0, |f| f.0);
        let abandon_after_ms = abandon_after_ms.unwrap_or(0);
        self.redis
            .shard_script(
                &SYNC,
                self.keys,
                [
                    now.into(),
                    claim_window_ms.into(),
                    from.stamps.into(),
                    from.lefts.into(),
                    max_bytes.into(),
                    fence.into(),
                    abandon_after_ms.into(),
                    from.moves.into(),
                ],
            )
            .await
    }

    /// Where the visitor at `seq` stands; an admitted visitor inside the claim window arrives.
    pub async fn visit(&self, seq: u64, now: u64, timing: Timing) -> StoreResult<Standing> {
        let reply: VisitReply = self
            .redis
            .shard_script(
                &VISIT,
                self.keys,
                [
                    seq.into(),
                    now.into(),
                    timing.session_ttl_ms.into(),
                    timing.claim_window_ms.into(),
                ],
            )
            .await?;
        Ok(reply.standing)
    }

    /// Ends whatever the visitor at `seq` holds: `None` for a seq the shard never gave out,
    /// else whether something ended.
    pub async fn leave(&self, seq: u64, now: u64) -> StoreResult<Option<bool>> {
        let reply: LeaveReply = self
            .redis
            .shard_script(&LEAVE, self.keys, [seq.into(), now.into()])
            .await?;
        Ok(reply.outcome())
    }

    /// The expiry of the live session at `seq`, pushed out by the ttl first with `renew`.
    pub async fn session(
        &self,
        seq: u64,
        renew: bool,
        now: u64,
        session_ttl_ms: u64,
    ) -> StoreResult<Option<u64>> {
        let reply: SessionReply = self
            .redis
            .shard_script(
                &SESSION,
                self.keys,
                [seq.into(), now.into(), session_ttl_ms.into(), renew.into()],
            )
            .await?;
        Ok(reply.expires_at)
    }

    /// Admits every waiting visitor through `upto` under `fence`, after a random mode's
    /// `swaps` (pairs of places, [`queuegate::queue::ShardQueue::draw_swaps`]). The scheduler's
    /// batch (`operator` false) also sets the shard's entry credit; an operator's leaves it.
    pub async fn admit(
        &self,
        fence: Fence,
        upto: u64,
        now: u64,
        credit: u64,
        operator: bool,
        swaps: &[(u64, u64)],
    ) -> StoreResult<AdmitReply> {
        let swaps: Vec<u8> = swaps
            .iter()
            .flat_map(|&(a, b)| a.to_be_bytes().into_iter().chain(b.to_be_bytes()))
            .collect();
        self.redis
            .shard_script(
                &ADMIT,
                self.keys,
                [
                    fence.0.into(),
                    upto.into(),
                    now.into(),
                    credit.into(),
                    operator.into(),
                    Arg::Bytes(&swaps),
                ],
            )
            .await
    }

    /// Applies a shuffle's new order to the block `perm` covers (`first..first + n`, empty
    /// for a shard with no pre-queue): the number of places reordered, 0 if the shuffle was
    /// applied already, `None` if the block is no longer what the caller read.
    pub async fn shuffle(
        &self,
        spec: &ShuffleSpec,
        perm: &Permutation,
    ) -> StoreResult<Option<u64>> {
        let stamps: Vec<u8> = perm.stamps.iter().flat_map(|s| s.to_be_bytes()).collect();
        let order: Vec<u8> = perm.order.iter().flat_map(|s| s.to_be_bytes()).collect();
        let last = perm.first + perm.order.len() as u64 - 1;
        let done: i64 = self
            .redis
            .shard_script(
                &SHUFFLE,
                self.keys,
                [
                    spec.start_us.into(),
                    spec.prequeue_us.into(),
                    perm.first.into(),
                    last.into(),
                    Arg::Bytes(&stamps),
                    Arg::Bytes(&order),
                ],
            )
            .await?;
        Ok(u64::try_from(done).ok())
    }

    /// Notes the waiting visitors with these ticket seqs as seen at `now`.
    pub async fn seen(&self, now: u64, ticket_seqs: &[u64]) -> StoreResult<u64> {
        let packed: Vec<u8> = ticket_seqs.iter().flat_map(|s| s.to_be_bytes()).collect();
        self.redis
            .shard_script(&SEEN, self.keys, [now.into(), Arg::Bytes(&packed)])
            .await
    }

    /// The shard's whole queue.
    pub async fn queue(&self) -> StoreResult<QueueReply> {
        self.redis.shard_script(&QUEUE, self.keys, []).await
    }

    /// Pauses or resumes the shard, dropping its entry credit on a pause or when asked.
    pub async fn pause(&self, paused: bool, drop_credit: bool) -> StoreResult<()> {
        self.redis
            .shard_script(&PAUSE, self.keys, [paused.into(), drop_credit.into()])
            .await
    }
}
