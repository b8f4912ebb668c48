//! The edge seen from the origin's scheduler: the Cloudflare worker's admin API (the rooms, the
//! admission lease and batches). The scheduler runs the same controller against it as against
//! the embedded store or Redis, and plans each batch with the same core plan.
//!
//! A tick costs one call per shard and one to the registry per room: each batch's answer holds
//! every shard's reading (its load and next waiting visitors), and the next tick plans from it
//! ([`Freshness::Previous`]: the entry credit the batch opened counts as spent). Only a room's
//! first batch, or the first after the fence moved (another scheduler, an operator's admission),
//! reads the room first.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use queuegate::api::{
    LeaseRequest, LeaseResponse, RoomList, RoomStats, ScheduleRequest, ScheduleResponse, MAX_HEADS,
};
use queuegate::controller::{max_grant, RoomLoad};
use queuegate::error::ErrorBody;
use queuegate::plan::{load_of, plan, Batch, Freshness, ShardOrder, ShardReading};
use queuegate::report::ReportMinute;
use queuegate::{ApiError, ErrorCode, RoomId, RoomRecord};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Decision, Fence, Round, Scheduling, StoreError, StoreResult};

pub struct EdgeStore {
    /// `https://edge.example/_qg/v1`: the worker's API prefix.
    api: String,
    admin_key: String,
    client: reqwest::Client,
    tick_ms: u64,
    /// Each room's readings from its last batch, under the fence they were taken with.
    readings: Mutex<HashMap<RoomId, (Fence, Vec<ShardReading>)>>,
    /// Each room's report minute as the last tick left it, sent with the room's next batch
    /// (the worker keeps it with the room): no call of its own.
    minutes: Mutex<HashMap<RoomId, ReportMinute>>,
}

impl EdgeStore {
    pub fn new(
        edge: &str,
        prefix: &str,
        admin_key: &str,
        timeout: Duration,
        tick: Duration,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // workerd closes a connection idle for 5 s (wrangler dev does): a call sent on one
            // just as it closes is reset, so none that old is reused.
            .pool_idle_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| format!("an HTTP client: {e}"))?;
        Ok(EdgeStore {
            api: format!("{}{}", edge.trim_end_matches('/'), prefix),
            admin_key: admin_key.to_owned(),
            client,
            tick_ms: tick.as_millis() as u64,
            readings: Mutex::default(),
            minutes: Mutex::default(),
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        room: Option<&RoomId>,
        body: Option<&impl Serialize>,
    ) -> StoreResult<T> {
        let mut req = self
            .client
            .request(method, format!("{}/admin{path}", self.api))
            .bearer_auth(&self.admin_key);
        if let Some(body) = body {
            req = req.json(body);
        }
        let unavailable = |e: reqwest::Error| StoreError::Unavailable(format!("the edge: {e}"));
        let resp = req.send().await.map_err(unavailable)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(unavailable)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                StoreError::Unavailable(format!("the edge answered {path} with {e}"))
            });
        }
        let error = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => ApiError::new(
                ErrorCode::parse(&body.error.code).unwrap_or(ErrorCode::StoreUnavailable),
                body.error.message,
            ),
            Err(_) => ApiError::new(
                ErrorCode::StoreUnavailable,
                format!(
                    "the edge answered {status}: {}",
                    String::from_utf8_lossy(&bytes)
                ),
            ),
        };
        Err(StoreError::from_api(&error, room))
    }

    /// One schedule request: the shards carry out `orders` (or are only read) and report.
    async fn batch(
        &self,
        room: &RoomRecord,
        fence: Fence,
        orders: Option<Vec<ShardOrder>>,
        rate: Option<f64>,
    ) -> StoreResult<ScheduleResponse> {
        // The minute goes with the batch that admits; should that call fail, the next tick's
        // row counts the whole minute again.
        let report_minute = match orders {
            Some(_) => self.minutes.lock().remove(&room.id),
            None => None,
        };
        let request = ScheduleRequest {
            fence: fence.0,
            orders,
            heads: max_grant(&room.config, self.tick_ms).min(MAX_HEADS),
            admit_rate_per_min: rate,
            report_minute,
        };
        let path = format!("/rooms/{}/schedule", room.id);
        let answer: ScheduleResponse = self
            .call(reqwest::Method::POST, &path, Some(&room.id), Some(&request))
            .await?;
        if answer.shards.len() != usize::from(room.config.shards) {
            return Err(StoreError::Unavailable(format!(
                "the edge reported {} shards of {}",
                answer.shards.len(),
                room.config.shards
            )));
        }
        Ok(answer)
    }
}

const NO_BODY: Option<&()> = None;

#[async_trait]
impl Scheduling for EdgeStore {
    async fn rooms(&self, _now: u64) -> StoreResult<Vec<RoomRecord>> {
        let list: RoomList = self
            .call(reqwest::Method::GET, "/rooms", None, NO_BODY)
            .await?;
        Ok(list
            .rooms
            .into_iter()
            .map(|view| RoomRecord {
                id: view.id,
                config: view.config,
                paused: view.paused,
                // The scheduler does not look at epochs; the edge keeps them.
                epoch: 0,
                measured_rate: view.stats.admit_rate_per_min,
                events: view.events,
                template: view.template,
                opens_at: None,
            })
            .collect())
    }

    async fn acquire_lease(
        &self,
        holder: &str,
        ttl_ms: u64,
        _now: u64,
    ) -> StoreResult<Option<Fence>> {
        let body = LeaseRequest {
            holder: holder.to_owned(),
            ttl_ms,
        };
        let lease: LeaseResponse = self
            .call(reqwest::Method::POST, "/lease", None, Some(&body))
            .await?;
        Ok((lease.fence > 0).then_some(Fence(lease.fence)))
    }

    async fn keep_minute(&self, room: &RoomRecord, row: ReportMinute) -> StoreResult<()> {
        self.minutes.lock().insert(room.id.clone(), row);
        Ok(())
    }

    async fn schedule(
        &self,
        room: &RoomRecord,
        fence: Fence,
        now: u64,
        decide: &mut (dyn FnMut(RoomLoad) -> Decision + Send),
    ) -> StoreResult<Round> {
        // Taken out: a batch that fails leaves no reading behind, and the next one reads first.
        let previous = self
            .readings
            .lock()
            .remove(&room.id)
            .filter(|(at, shards)| *at == fence && shards.len() == usize::from(room.config.shards));
        let shards = match previous {
            Some((_, shards)) => shards,
            None => {
                self.batch(room, fence, None, room.measured_rate)
                    .await?
                    .shards
            }
        };
        let decision = decide(load_of(&shards));
        let planned = plan(
            &room.config,
            room.paused,
            &shards,
            Batch::Scheduler {
                grant: decision.grant,
            },
            Freshness::Previous,
            u64::from_be_bytes(crate::clock::random_bytes()),
        );
        let waits_ms = queuegate::plan::admitted_waits(&shards, &planned, now);
        let done = self
            .batch(room, fence, Some(planned.orders), decision.rate)
            .await?;
        let load = load_of(&done.shards);
        let abandoned = queuegate::plan::abandoned_of(&done.shards);
        let flow = queuegate::plan::flow_of(&done.shards);
        let entry_credit = done.shards.iter().map(|s| s.credit).sum();
        self.readings
            .lock()
            .insert(room.id.clone(), (fence, done.shards));
        Ok(Round {
            admitted: done.admitted,
            entry_credit,
            stats: RoomStats::new(load, decision.rate, entry_credit)
                .with_abandoned(abandoned)
                .with_flow(flow),
            waits_ms,
        })
    }
}
