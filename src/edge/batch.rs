//! Group commit of joins. The hop to a Durable Object costs far more than a join inside it, so
//! joins for a shard that arrive while a call to that shard is in flight wait, and go together
//! in the next call: one call per batch instead of one per visitor.
//!
//! The request whose call is in flight leads; the others wait on a JavaScript promise that each
//! created in its own request. When the call returns, the leader settles every waiter's promise
//! with its answer and hands the lane to the first request that queued meanwhile (by settling its
//! promise with [`Signal::Lead`]). A promise, not a Rust channel: workerd runs the continuation
//! of a promise settled from another request in the request that created it, so a new leader
//! makes its call in its own request, never in the one that woke it (whose I/O ends with it).
//! Each request leads at most once, so no visitor waits for more than two calls.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use futures::future::{select, Either};
use serde::{Deserialize, Serialize};
use worker::js_sys::{Function, Promise};
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Delay, Env};

use super::isolate::{call, SHARDS};
use super::protocol::{ErrorBody, JoinJob, JoinReq, JoinRes, JoinedIn};
use crate::error::{ApiError, ErrorCode};
use crate::shard::Timing;

/// A waiter that has heard nothing for this long gives up on the lane's leader: the leader's
/// request may have been cancelled mid-call.
const STALE_MS: u64 = 5_000;

struct Waiter {
    id: u64,
    job: JoinJob,
    /// Settles the waiter's promise: the only way to reach another request.
    settle: Function,
}

/// The joins of one shard.
#[derive(Default)]
struct Lane {
    /// When the call in flight (or the hand-off to the next leader) began.
    busy_since: Option<u64>,
    /// Joins for the next call, in arrival (and so stamp) order.
    queue: Vec<Waiter>,
}

thread_local! {
    static LANES: RefCell<HashMap<String, Lane>> = RefCell::new(HashMap::new());
    static NEXT_ID: Cell<u64> = const { Cell::new(0) };
}

/// What a waiter's promise is settled with.
#[derive(Serialize, Deserialize)]
enum Signal {
    /// Lead the next call: the queue is yours.
    Lead,
    Joined(JoinedIn),
    Failed(ErrorBody),
}

/// A batch grows to at most this many joins before a join without a user id looks elsewhere.
const MAX_BATCH: usize = 64;

/// For a join without a user id (whose shard is free to choose), the shard among `names` whose
/// call is in flight and whose next batch has room: joining it costs no call of its own.
pub fn busy_shard(names: impl Iterator<Item = String>) -> Option<u16> {
    LANES.with(|lanes| {
        let lanes = lanes.borrow();
        names
            .enumerate()
            .filter_map(|(i, name)| {
                let lane = lanes.get(&name)?;
                let open = lane.busy_since.is_some() && lane.queue.len() < MAX_BATCH;
                open.then_some((lane.queue.len(), i))
            })
            .max()
            .and_then(|(_, i)| u16::try_from(i).ok())
    })
}

/// Joins `job` into the shard named `shard`, with whatever other joins for it are waiting.
pub async fn join(
    env: &Env,
    shard: &str,
    job: JoinJob,
    now: u64,
    timing: Timing,
) -> Result<JoinedIn, ApiError> {
    let id = NEXT_ID.with(|n| {
        n.set(n.get() + 1);
        n.get()
    });
    let waiting = LANES.with(|lanes| {
        let mut lanes = lanes.borrow_mut();
        let lane = lanes.entry(shard.to_owned()).or_default();
        if lane.busy_since.is_none() {
            lane.busy_since = Some(now);
            return None;
        }
        let (promise, settle) = new_promise();
        lane.queue.push(Waiter {
            id,
            job: job.clone(),
            settle,
        });
        Some(promise)
    });
    let Some(promise) = waiting else {
        return lead(env, shard, id, vec![(id, job)], Vec::new(), now, timing).await;
    };
    match wait(promise).await {
        Some(Signal::Joined(joined)) => Ok(joined),
        Some(Signal::Failed(body)) => Err(from_body(body)),
        Some(Signal::Lead) => {
            let (jobs, settles) = take_queue(shard);
            lead(env, shard, id, jobs, settles, now, timing).await
        }
        None => take_over(env, shard, id, timing).await,
    }
}

/// Sends `jobs` in one call, answers every waiter, and hands the lane on.
async fn lead(
    env: &Env,
    shard: &str,
    own: u64,
    jobs: Vec<(u64, JoinJob)>,
    settles: Vec<(u64, Function)>,
    now: u64,
    timing: Timing,
) -> Result<JoinedIn, ApiError> {
    let ids: Vec<u64> = jobs.iter().map(|(id, _)| *id).collect();
    let request = JoinReq {
        jobs: jobs.into_iter().map(|(_, job)| job).collect(),
        now,
        timing,
    };
    let outcome: Result<JoinRes, ApiError> =
        call(env, SHARDS, shard, "join", "join", &request).await;
    let answer = |i: usize| -> Result<JoinedIn, ApiError> {
        match &outcome {
            Ok(res) => res.results.get(i).copied().ok_or_else(|| {
                ApiError::new(ErrorCode::Internal, "the shard answered fewer joins")
            }),
            Err(err) => Err(err.clone()),
        }
    };
    let mut own_answer = None;
    for (i, id) in ids.iter().enumerate() {
        if *id == own {
            own_answer = Some(answer(i));
        } else if let Some((_, settle)) = settles.iter().find(|(s, _)| s == id) {
            let signal = match answer(i) {
                Ok(joined) => Signal::Joined(joined),
                Err(err) => Signal::Failed(err.to_body()),
            };
            send(settle, &signal);
        }
    }
    hand_on(shard);
    own_answer.unwrap_or_else(|| Err(ApiError::new(ErrorCode::Internal, "the join was not sent")))
}

/// The lane is free again, or the first request that queued meanwhile leads next.
fn hand_on(shard: &str) {
    let next = LANES.with(|lanes| {
        let mut lanes = lanes.borrow_mut();
        let lane = lanes.get_mut(shard)?;
        match lane.queue.first() {
            Some(first) => {
                lane.busy_since = Some(worker::Date::now().as_millis());
                Some(first.settle.clone())
            }
            None => {
                lanes.remove(shard);
                None
            }
        }
    });
    if let Some(settle) = next {
        send(&settle, &Signal::Lead);
    }
}

/// Takes the lane's whole queue for a call: the jobs, and how to answer each waiter.
#[allow(clippy::type_complexity)]
fn take_queue(shard: &str) -> (Vec<(u64, JoinJob)>, Vec<(u64, Function)>) {
    let queue = LANES.with(|lanes| {
        let mut lanes = lanes.borrow_mut();
        let lane = lanes.entry(shard.to_owned()).or_default();
        lane.busy_since = Some(worker::Date::now().as_millis());
        std::mem::take(&mut lane.queue)
    });
    queue
        .into_iter()
        .map(|w| ((w.id, w.job), (w.id, w.settle)))
        .unzip()
}

/// A waiter that heard nothing: if its join was never sent and the lane's leader looks gone, it
/// leads itself; if its join went out in a call whose answer never came, its fate is unknown.
async fn take_over(env: &Env, shard: &str, own: u64, timing: Timing) -> Result<JoinedIn, ApiError> {
    let now = worker::Date::now().as_millis();
    let mine = LANES.with(|lanes| {
        let lanes = lanes.borrow();
        lanes
            .get(shard)
            .is_some_and(|lane| lane.queue.iter().any(|w| w.id == own))
    });
    if !mine {
        return Err(ApiError::new(
            ErrorCode::StoreUnavailable,
            "the join's answer was lost: join again",
        ));
    }
    let (jobs, settles) = take_queue(shard);
    lead(env, shard, own, jobs, settles, now, timing).await
}

fn new_promise() -> (Promise, Function) {
    let mut settle = None;
    let promise = Promise::new(&mut |resolve, _reject| settle = Some(resolve));
    (promise, settle.expect("the executor runs at once"))
}

fn send(settle: &Function, signal: &Signal) {
    let text = serde_json::to_string(signal).expect("a signal serializes");
    // A waiter whose request is gone cannot be answered; nothing else to do.
    let _ = settle.call1(&JsValue::NULL, &JsValue::from_str(&text));
}

/// The waiter's signal, or `None` after [`STALE_MS`] without one.
async fn wait(promise: Promise) -> Option<Signal> {
    let settled = JsFuture::from(promise);
    let timeout = Delay::from(Duration::from_millis(STALE_MS));
    match select(settled, timeout).await {
        Either::Left((Ok(value), _)) => value
            .as_string()
            .and_then(|text| serde_json::from_str(&text).ok()),
        Either::Left((Err(_), _)) | Either::Right(_) => None,
    }
}

fn from_body(body: ErrorBody) -> ApiError {
    ApiError::new(
        ErrorCode::parse(&body.error.code).unwrap_or(ErrorCode::StoreUnavailable),
        body.error.message,
    )
}
