//! Group commit of joins. The hop to a Durable Object costs far more than a join inside it, so
//! joins for a shard that arrive while a call to that shard is in flight wait, and go together
//! in the next call: one call per batch instead of one per visitor.
//!
//! Nothing wakes one request from another. workerd ties every call, and the body of its
//! answer, to the request that made it; and a task woken from another request's turn (even by
//! settling a promise of its own, as tried first) can be polled in that request, where building
//! its response or making its call fails ("Cannot perform I/O on behalf of a different request").
//! So only data crosses requests, and each request wakes itself on its own timer.
//!
//! A request that finds its shard's lane free leads: it takes every join waiting for the shard,
//! its own last, makes the call, leaves each answer where its waiter will look, sends what queued
//! meanwhile the same way (a call or two more), and frees the lane. A request that finds the call
//! in flight queues its join and looks for its answer, or for the lane free while its join still
//! waits (and then leads), when the call in flight should be over (from the lane's recent call
//! times), and after that at growing intervals: a timer per waiter every few milliseconds is work
//! the isolate's one thread pays for, and under load it was the bottleneck.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use worker::Env;

use super::isolate::{call, SHARDS};
use super::protocol::{JoinJob, JoinReq, JoinRes, JoinedIn};
use crate::error::{ApiError, ErrorCode};
use crate::service::Platform;
use crate::shard::Timing;

/// Once the call in flight should have been answered, a waiting request looks again after this
/// long, and then at twice the previous interval, up to [`LAST_RECHECK_MS`].
const FIRST_RECHECK_MS: u64 = 2;
const LAST_RECHECK_MS: u64 = 16;
/// How many calls more a request that made a call makes for joins that queued meanwhile, before
/// it answers its own visitor.
const MAX_CHAIN: usize = 2;
/// The longest a waiting request sleeps on the lane's estimate before it looks.
const LONGEST_SLEEP_MS: u64 = 100;
/// A join that went out in a call answered by nothing for this long is given up: the leader's
/// request may have been cancelled mid-call.
const STALE_MS: u64 = 5_000;
/// A batch grows to at most this many joins before a join without a user id looks elsewhere.
const MAX_BATCH: usize = 64;

struct Waiter {
    id: u64,
    job: JoinJob,
}

/// The joins of one shard.
#[derive(Default)]
struct Lane {
    /// Whether a call to the shard is in flight.
    busy: bool,
    /// Joins for the next call, in arrival (and so stamp) order.
    queue: Vec<Waiter>,
    /// When the call in flight was made.
    call_started_at: u64,
    /// How long the lane's calls took lately (a moving average).
    call_ms: u64,
}

impl Lane {
    /// How long until the call in flight should be answered, if one is in flight.
    fn expected_answer_in(&self, now: u64) -> u64 {
        if !self.busy {
            return 0;
        }
        (self.call_started_at + self.call_ms).saturating_sub(now)
    }
}

/// A join's answer, and when its leader left it.
type LeftAnswer = (u64, Result<JoinedIn, ApiError>);

thread_local! {
    static LANES: RefCell<HashMap<String, Lane>> = RefCell::new(HashMap::new());
    /// Answers a leader left for waiters, with when it left them.
    static ANSWERS: RefCell<HashMap<u64, LeftAnswer>> = RefCell::new(HashMap::new());
    static NEXT_ID: Cell<u64> = const { Cell::new(0) };
}

/// For a join without a user id (whose shard is free to choose), the shard among `names` whose
/// call is in flight and whose next batch has room: joining it costs no call of its own.
pub fn busy_shard(names: impl Iterator<Item = String>) -> Option<u16> {
    LANES.with(|lanes| {
        let lanes = lanes.borrow();
        names
            .enumerate()
            .filter_map(|(i, name)| {
                let lane = lanes.get(&name)?;
                let open = lane.busy && lane.queue.len() < MAX_BATCH;
                open.then_some((lane.queue.len(), i))
            })
            .max()
            .and_then(|(_, i)| u16::try_from(i).ok())
    })
}

/// Joins `job` into the shard named `shard`, with whatever other joins for it are waiting. `now`
/// is the request's time; `clock` tells the time after each wait.
pub async fn join(
    env: &Env,
    clock: &dyn Platform,
    shard: &str,
    job: JoinJob,
    now: u64,
    timing: Timing,
) -> Result<JoinedIn, ApiError> {
    let id = NEXT_ID.with(|n| {
        n.set(n.get() + 1);
        n.get()
    });
    let batch = LANES.with(|lanes| {
        let mut lanes = lanes.borrow_mut();
        let lane = lanes.entry(shard.to_owned()).or_default();
        lane.queue.push(Waiter { id, job });
        take_if_free(lane, now)
    });
    if let Some(batch) = batch {
        return lead(env, clock, shard, id, batch, now, timing).await;
    }
    // When we first found our join gone out in another request's call.
    let mut seen_sent_at: Option<u64> = None;
    let mut recheck_ms = FIRST_RECHECK_MS;
    let mut now = now;
    loop {
        let expected = LANES.with(|lanes| {
            lanes
                .borrow()
                .get(shard)
                .map_or(0, |lane| lane.expected_answer_in(now))
        });
        if expected > recheck_ms {
            clock.sleep(expected.min(LONGEST_SLEEP_MS)).await;
            recheck_ms = FIRST_RECHECK_MS;
        } else {
            clock.sleep(recheck_ms).await;
            recheck_ms = (recheck_ms * 2).min(LAST_RECHECK_MS);
        }
        // Woken by our own timer, so in our own request.
        if let Some((_, answer)) = ANSWERS.with(|a| a.borrow_mut().remove(&id)) {
            return answer;
        }
        now = clock.now();
        let (batch, still_queued) = LANES.with(|lanes| {
            let mut lanes = lanes.borrow_mut();
            let lane = lanes.entry(shard.to_owned()).or_default();
            let queued = lane.queue.iter().any(|w| w.id == id);
            (
                if queued {
                    take_if_free(lane, now)
                } else {
                    None
                },
                queued,
            )
        });
        if let Some(batch) = batch {
            return lead(env, clock, shard, id, batch, now, timing).await;
        }
        if !still_queued {
            // Our join went out in another request's call: its answer is on the way.
            if now.saturating_sub(*seen_sent_at.get_or_insert(now)) > STALE_MS {
                return Err(ApiError::new(
                    ErrorCode::StoreUnavailable,
                    "the join's answer was lost: join again",
                ));
            }
        }
    }
}

/// The whole queue, when no call is in flight (the lane is then busy with ours, from `now`).
fn take_if_free(lane: &mut Lane, now: u64) -> Option<Vec<Waiter>> {
    if lane.busy || lane.queue.is_empty() {
        return None;
    }
    lane.busy = true;
    lane.call_started_at = now;
    Some(std::mem::take(&mut lane.queue))
}

/// Sends the batch in one call and answers every other waiter; then, while joins queued
/// meanwhile, sends them too (up to [`MAX_CHAIN`] calls more), so the lane does not sit idle until
/// a waiter's timer notices it free; frees the lane, and returns the answer to our own join
/// (`own`).
async fn lead(
    env: &Env,
    clock: &dyn Platform,
    shard: &str,
    own: u64,
    mut batch: Vec<Waiter>,
    mut now: u64,
    timing: Timing,
) -> Result<JoinedIn, ApiError> {
    let mut own_answer = None;
    for round in 0..=MAX_CHAIN {
        let request = JoinReq {
            jobs: batch.iter().map(|w| w.job.clone()).collect(),
            now,
            timing,
        };
        let outcome: Result<JoinRes, ApiError> =
            call(env, SHARDS, shard, "join", "join", &request).await;
        let left_at = clock.now();
        let next = LANES.with(|lanes| {
            // The lane stays when empty: it keeps the call times (one lane per shard in use).
            let mut lanes = lanes.borrow_mut();
            let lane = lanes.get_mut(shard)?;
            let took = left_at.saturating_sub(lane.call_started_at);
            lane.call_ms = (lane.call_ms * 3 + took) / 4;
            if round < MAX_CHAIN && !lane.queue.is_empty() {
                lane.call_started_at = left_at;
                Some(std::mem::take(&mut lane.queue))
            } else {
                lane.busy = false;
                None
            }
        });
        leave_answers(&batch, &outcome, own, left_at, &mut own_answer);
        match next {
            Some(queued) => (batch, now) = (queued, left_at),
            None => break,
        }
    }
    own_answer.unwrap_or_else(|| Err(ApiError::new(ErrorCode::Internal, "the join was not sent")))
}

/// Leaves each waiter of `batch` its answer from `outcome`, but our own (`own`), which goes to
/// `own_answer`.
fn leave_answers(
    batch: &[Waiter],
    outcome: &Result<JoinRes, ApiError>,
    own: u64,
    left_at: u64,
    own_answer: &mut Option<Result<JoinedIn, ApiError>>,
) {
    let answer = |i: usize| -> Result<JoinedIn, ApiError> {
        match outcome {
            Ok(res) => res.results.get(i).copied().ok_or_else(|| {
                ApiError::new(ErrorCode::Internal, "the shard answered fewer joins")
            }),
            Err(err) => Err(err.clone()),
        }
    };
    ANSWERS.with(|answers| {
        let mut answers = answers.borrow_mut();
        // Answers nobody came for (their request was cancelled) do not stay.
        answers.retain(|_, (at, _)| left_at < *at + 2 * STALE_MS);
        for (i, waiter) in batch.iter().enumerate() {
            if waiter.id == own {
                *own_answer = Some(answer(i));
            } else {
                answers.insert(waiter.id, (left_at, answer(i)));
            }
        }
    });
}
