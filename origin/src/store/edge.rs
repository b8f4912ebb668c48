//! The edge seen from the origin's scheduler: the Cloudflare worker's admin API, which gives the
//! rooms, their load, the admission lease and admission batches. The scheduler runs the same
//! controller against it as against the embedded store or Redis.

use std::time::Duration;

use async_trait::async_trait;
use queuegate::api::{
    LeaseRequest, LeaseResponse, RateRequest, RoomList, RoomStats, RoomView, ScheduleRequest,
    ScheduleResponse,
};
use queuegate::controller::RoomLoad;
use queuegate::error::ErrorBody;
use queuegate::{RoomId, RoomRecord};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Admitted, Fence, Scheduling, StoreError, StoreResult};

pub struct EdgeStore {
    /// `https://edge.example/_qg/v1`: the worker's API prefix.
    api: String,
    admin_key: String,
    client: reqwest::Client,
}

impl EdgeStore {
    pub fn new(
        edge: &str,
        prefix: &str,
        admin_key: &str,
        timeout: Duration,
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
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
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
        let error = serde_json::from_slice::<ErrorBody>(&bytes).ok();
        let message = error.as_ref().map_or_else(
            || String::from_utf8_lossy(&bytes).into_owned(),
            |e| format!("{}: {}", e.error.code, e.error.message),
        );
        Err(match error.as_ref().map(|e| e.error.code.as_str()) {
            Some("fenced") => StoreError::Fenced,
            Some("unknown_room") => StoreError::UnknownRoom(
                RoomId::parse(path.split('/').nth(2).unwrap_or(""))
                    .unwrap_or_else(|_| RoomId::parse("unknown").expect("valid")),
            ),
            Some("conflict") => StoreError::Conflict(message),
            _ => StoreError::Unavailable(format!("the edge answered {status}: {message}")),
        })
    }
}

const NO_BODY: Option<&()> = None;

#[async_trait]
impl Scheduling for EdgeStore {
    async fn rooms(&self) -> StoreResult<Vec<RoomRecord>> {
        let list: RoomList = self.call(reqwest::Method::GET, "/rooms", NO_BODY).await?;
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
            })
            .collect())
    }

    async fn set_measured_rate(&self, id: &RoomId, rate: Option<f64>) -> StoreResult<()> {
        let body = RateRequest {
            admit_rate_per_min: rate,
        };
        let _: RoomView = self
            .call(
                reqwest::Method::POST,
                &format!("/rooms/{id}/rate"),
                Some(&body),
            )
            .await?;
        Ok(())
    }

    async fn load(&self, id: &RoomId, _now: u64) -> StoreResult<RoomLoad> {
        self.call(reqwest::Method::POST, &format!("/rooms/{id}/load"), NO_BODY)
            .await
    }

    async fn stats(&self, id: &RoomId, _now: u64) -> StoreResult<RoomStats> {
        let view: RoomView = self
            .call(reqwest::Method::GET, &format!("/rooms/{id}"), NO_BODY)
            .await?;
        Ok(view.stats)
    }

    async fn admit(
        &self,
        id: &RoomId,
        grant: u64,
        fence: Fence,
        _now: u64,
    ) -> StoreResult<Admitted> {
        let body = ScheduleRequest {
            grant,
            fence: fence.0,
        };
        let done: ScheduleResponse = self
            .call(
                reqwest::Method::POST,
                &format!("/rooms/{id}/schedule"),
                Some(&body),
            )
            .await?;
        Ok(Admitted {
            from_queue: done.from_queue,
            entry_credit: done.entry_credit,
        })
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
            .call(reqwest::Method::POST, "/lease", Some(&body))
            .await?;
        Ok((lease.fence > 0).then_some(Fence(lease.fence)))
    }
}
