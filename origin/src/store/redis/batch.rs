//! Group commit for joins: the joins that reach an instance for one shard while its previous
//! join script is in flight go to Redis together, as one script call. The join that finds no
//! script in flight sends it itself (no hand-over to another task); joins arriving meanwhile
//! queue, and it sends them as the next batch before it leaves. A busy shard thus runs one
//! script (and the instance writes one command) for many visitors.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use redis::aio::ConnectionLike;
use tokio::sync::oneshot;

use super::connection::{Arg, Redis};
use super::replies::JoinReply;
use super::{keys, scripts};
use crate::store::{StoreError, StoreResult};

/// The most joins one script call carries.
pub const MAX_JOIN_BATCH: usize = 128;

pub struct JoinJob {
    pub user: Option<String>,
    pub bucket: u64,
    pub stamp: u64,
    /// No entry at once, whatever credit the shard holds: the room is in a pre-queue.
    pub hold: bool,
    pub now: u64,
    /// After this (Unix ms, Redis's clock) the join changes nothing: its caller has been told
    /// it failed, and the visitor may have joined again elsewhere.
    pub deadline: u64,
    pub ttl_ms: u64,
    pub window_ms: u64,
}

struct Waiting {
    job: JoinJob,
    reply: oneshot::Sender<StoreResult<JoinReply>>,
}

#[derive(Default)]
struct State {
    /// A join of this shard is sending batches; others queue for it.
    sending: bool,
    queued: Vec<Waiting>,
}

/// The joins of one shard on this instance.
#[derive(Default)]
pub struct JoinBatcher {
    state: Arc<Mutex<State>>,
}

impl JoinBatcher {
    /// Joins one visitor, with whoever else joins the shard at the same time.
    pub async fn join<C>(
        &self,
        redis: &Redis<C>,
        shard_keys: &Arc<[String]>,
        job: JoinJob,
    ) -> StoreResult<JoinReply>
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        let job = {
            let mut state = self.state.lock();
            if state.sending {
                let (reply, receiver) = oneshot::channel();
                state.queued.push(Waiting { job, reply });
                Err(receiver)
            } else {
                state.sending = true;
                Ok(job)
            }
        };
        let job = match job {
            Ok(job) => job,
            Err(receiver) => {
                return receiver
                    .await
                    .map_err(|_| StoreError::Unavailable("a join batch was dropped".into()))?;
            }
        };
        // This join sends: its own script, then whatever queued meanwhile, until none is left.
        // Should this future be dropped midway (the client went away), the guard hands the
        // queue to a task of its own, so no queued join is stranded.
        let mut guard = Sender {
            state: self.state.clone(),
            redis: redis.clone(),
            keys: shard_keys.clone(),
            armed: true,
        };
        let own = run(redis, shard_keys, &[&job])
            .await
            .map(|mut replies| replies.remove(0));
        drain(&self.state, redis, shard_keys).await;
        guard.armed = false;
        own
    }
}

/// Sends the queued joins in batches until none is left, then lets the next join send.
async fn drain<C>(state: &Mutex<State>, redis: &Redis<C>, shard_keys: &[String])
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    loop {
        let batch: Vec<Waiting> = {
            let mut state = state.lock();
            if state.queued.is_empty() {
                state.sending = false;
                return;
            }
            let n = state.queued.len().min(MAX_JOIN_BATCH);
            state.queued.drain(..n).collect()
        };
        let jobs: Vec<&JoinJob> = batch.iter().map(|w| &w.job).collect();
        match run(redis, shard_keys, &jobs).await {
            Ok(replies) => {
                for (waiting, reply) in batch.into_iter().zip(replies) {
                    let _ = waiting.reply.send(Ok(reply));
                }
            }
            Err(err) => {
                for waiting in batch {
                    let _ = waiting.reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// The sending join's duty, carried on by a task if the join is dropped before it is done.
struct Sender<C: ConnectionLike + Clone + Send + Sync + 'static> {
    state: Arc<Mutex<State>>,
    redis: Redis<C>,
    keys: Arc<[String]>,
    armed: bool,
}

impl<C: ConnectionLike + Clone + Send + Sync + 'static> Drop for Sender<C> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (state, redis, keys) = (self.state.clone(), self.redis.clone(), self.keys.clone());
        tokio::spawn(async move { drain(&state, &redis, &keys).await });
    }
}

async fn run<C>(
    redis: &Redis<C>,
    shard_keys: &[String],
    batch: &[&JoinJob],
) -> StoreResult<Vec<JoinReply>>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    // The shard's keys, the dummy bucket, then the batch's user buckets.
    let mut keys: Vec<String> = shard_keys.to_vec();
    keys.push(keys::user_bucket(shard_keys, 0));
    let mut bucket_index: HashMap<u64, usize> = HashMap::new();
    for job in batch.iter().filter(|j| j.user.is_some()) {
        if let std::collections::hash_map::Entry::Vacant(entry) = bucket_index.entry(job.bucket) {
            keys.push(keys::user_bucket(shard_keys, job.bucket));
            entry.insert(keys.len());
        }
    }
    let first = batch[0];
    let mut args = vec![
        Arg::Num(first.now),
        Arg::Num(first.ttl_ms),
        Arg::Num(first.window_ms),
        Arg::Num(batch.iter().map(|j| j.deadline).min().unwrap_or(0)),
    ];
    let dummy = shard_keys.len() + 1;
    for job in batch {
        let index = match &job.user {
            Some(_) => bucket_index[&job.bucket],
            None => dummy,
        };
        args.extend([
            Arg::Num(job.stamp),
            Arg::Str(job.user.as_deref().unwrap_or("")),
            Arg::Num(index as u64),
            Arg::Num(u64::from(job.hold)),
        ]);
    }
    // Acknowledged only once the replicas have it (on the connection of visitors' writes).
    let replies: Vec<JoinReply> = redis.script(&scripts::JOIN, &keys, &args).await?;
    if replies.len() != batch.len() {
        return Err(StoreError::Unavailable(format!(
            "the join script answered for {} joins of {}",
            replies.len(),
            batch.len()
        )));
    }
    Ok(replies)
}
