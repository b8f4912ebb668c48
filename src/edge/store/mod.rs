//! The Durable-Object-backed store: the request layer's [`Store`] over the shard objects and the
//! registry, through the isolate's cache. Calls to Durable Objects, by request:
//!
//! - a waiting visitor's poll: none (the signed ticket and the registry's summaries, cached in
//!   the isolate for at most a second);
//! - a join: one call to its shard, shared with the joins that arrive while it is in flight
//!   ([`super::batch`]);
//! - a claim (a poll once admission reached the place): one, to the shard;
//! - a gate request with a pass: none while the isolate checked the session in the last second,
//!   else one;
//! - a leave or a revocation: two (the shard, then the registry, so every isolate learns of it
//!   within a second);
//! - a scheduler's batch: one call per shard and one to the registry.

mod rooms;
mod visitors;

use std::sync::Arc;

use async_trait::async_trait;
use worker::send::{SendFuture, SendWrapper};
use worker::Env;

use super::isolate::{self, call, REGISTRY, REGISTRY_NAME, SHARDS};
use super::protocol::*;
use crate::api::{LeaseResponse, RoomStats, ScheduleRequest, ScheduleResponse};
use crate::error::ApiError;
use crate::event::Events;
use crate::queue::position_with_own;
use crate::report::ReportMinute;
use crate::room::{RoomConfig, RoomId, RoomRecord};
use crate::service::{
    Joined, Platform, RemoteScheduling, RouteTable, Store, StoreError, StoreResult,
};
use crate::shard::{Standing, Timing};
use crate::shuffle::ShuffleSpec;
use crate::template::TemplateRef;
use crate::token::{Place, Ticket};
use crate::visitor::VisitorState;

pub struct DurableStore {
    env: SendWrapper<Env>,
    platform: Arc<dyn Platform>,
}

type Outcome<T> = Result<T, ApiError>;

impl DurableStore {
    pub fn new(env: Env, platform: Arc<dyn Platform>) -> Self {
        DurableStore {
            env: SendWrapper::new(env),
            platform,
        }
    }

    pub(super) fn env(&self) -> &Env {
        &self.env
    }

    /// A seed for a batch's draws (random mode), from the runtime's cryptographic source.
    pub(super) fn random_seed(&self) -> u64 {
        let mut bytes = [0u8; 8];
        self.platform.random(&mut bytes);
        u64::from_be_bytes(bytes)
    }

    pub(super) async fn entry(&self, room: &RoomId, now: u64) -> Outcome<Option<RoomEntry>> {
        if let Some(entry) = isolate::rooms(self.env(), now, false)
            .await?
            .get(room.as_str())
        {
            return Ok(Some(entry.clone()));
        }
        Ok(isolate::rooms(self.env(), now, true)
            .await?
            .get(room.as_str())
            .cloned())
    }

    async fn known_entry(&self, room: &RoomId, now: u64) -> StoreResult<RoomEntry> {
        let entry = self
            .entry(room, now)
            .await
            .map_err(|e| remote(e, room))?
            .ok_or_else(|| StoreError::UnknownRoom(room.clone()))?;
        // Nobody sees a pre-queue unshuffled after its opening, whatever it asks.
        self.shuffle_due(&entry, now)
            .await
            .map_err(|e| remote(e, room))?;
        Ok(entry)
    }

    /// Has every shard apply the shuffles of the room's events that started by `now` (each
    /// shard applies one once), unless this isolate saw them applied already; publishes the
    /// shuffled shards' summaries.
    async fn shuffle_due(&self, entry: &RoomEntry, now: u64) -> Outcome<()> {
        let record = &entry.record;
        let done = isolate::shuffled(&record.id, record.epoch);
        for spec in ShuffleSpec::due(&record.events, done, now) {
            for shard in 0..record.config.shards {
                let request = ShuffleReq {
                    epoch: record.epoch,
                    shard,
                    seed: crate::shuffle::hex(&spec.seed),
                    prequeue_us: spec.prequeue_us,
                    start_us: spec.start_us,
                };
                let report: ShardReport = self
                    .call_shard(entry, shard, "shuffle", "shuffle", &request)
                    .await?;
                let publish = PublishShardReq {
                    id: record.id.clone(),
                    shard,
                    summary: report.summary,
                };
                let _: () = self
                    .call_registry("shuffle_publish", "publish_shard", &publish)
                    .await?;
            }
            isolate::remember_shuffled(&record.id, record.epoch, spec.start_us);
            isolate::outdate_rooms();
        }
        Ok(())
    }

    pub(super) fn call_shard<'a, Q: serde::Serialize, A: serde::de::DeserializeOwned>(
        &'a self,
        entry: &RoomEntry,
        shard: u16,
        kind: &'static str,
        op: &'static str,
        body: &Q,
    ) -> impl std::future::Future<Output = Outcome<A>> + 'a {
        call(
            self.env(),
            SHARDS,
            &shard_name(entry, shard),
            kind,
            op,
            body,
        )
    }

    pub(super) fn call_registry<'a, Q: serde::Serialize, A: serde::de::DeserializeOwned>(
        &'a self,
        kind: &'static str,
        op: &'static str,
        body: &Q,
    ) -> impl std::future::Future<Output = Outcome<A>> + 'a {
        call(self.env(), REGISTRY, REGISTRY_NAME, kind, op, body)
    }
}

/// A store error from an error a Durable Object call answered with.
fn remote(err: ApiError, room: &RoomId) -> StoreError {
    StoreError::from_api(&err, Some(room))
}

fn timing(config: &RoomConfig) -> Timing {
    Timing {
        session_ttl_ms: config.session_ttl_ms(),
        claim_window_ms: config.claim_window_ms(),
    }
}

fn shard_name(entry: &RoomEntry, shard: u16) -> String {
    format!("{}:{:08x}:{shard}", entry.record.id, entry.record.epoch)
}

fn session_key(entry: &RoomEntry, place: Place) -> (String, u32, u16, u64) {
    (
        entry.record.id.as_str().to_owned(),
        place.epoch,
        place.shard,
        place.seq,
    )
}

/// A visitor's state from the shard's standing; a waiting visitor's position counts `ahead` in
/// its own shard exactly and the others from their summaries.
fn state_of(
    entry: &RoomEntry,
    shard: u16,
    standing: Standing,
    ahead: u64,
    stamp: u64,
) -> VisitorState {
    match standing {
        Standing::Waiting => VisitorState::Waiting {
            position: position_with_own(&entry.summaries, usize::from(shard), ahead, stamp),
        },
        Standing::Admitted { session_expires_at } => VisitorState::Admitted { session_expires_at },
        Standing::Left => VisitorState::Left,
        Standing::Expired => VisitorState::Expired,
    }
}

#[async_trait]
impl Store for DurableStore {
    fn kind(&self) -> &'static str {
        "durable-objects"
    }

    async fn health(&self, now: u64) -> StoreResult<()> {
        SendFuture::new(async move {
            isolate::rooms(self.env(), now, false)
                .await
                .map(|_| ())
                .map_err(|e| StoreError::from_api(&e, None))
        })
        .await
    }

    async fn route_table(&self, now: u64) -> StoreResult<Arc<RouteTable>> {
        SendFuture::new(async move {
            isolate::route_table(self.env(), now)
                .await
                .map_err(|e| StoreError::from_api(&e, None))
        })
        .await
    }

    async fn rooms(&self, now: u64) -> StoreResult<Vec<RoomRecord>> {
        SendFuture::new(async move {
            let rooms = isolate::rooms(self.env(), now, true)
                .await
                .map_err(|e| StoreError::from_api(&e, None))?;
            Ok(rooms.values().map(|e| e.record.clone()).collect())
        })
        .await
    }

    async fn limit_client(
        &self,
        room: &RoomRecord,
        client: crate::limit::ClientKey,
        limit: &crate::limit::JoinLimit,
        op: crate::limit::record::LimitOp,
        now: u64,
    ) -> StoreResult<crate::limit::record::Outcome> {
        SendFuture::new(async move {
            let entry = self.known_entry(&room.id, now).await?;
            self.do_limit_client(&entry, client, limit, op, now)
                .await
                .map_err(|e| remote(e, &room.id))
        })
        .await
    }

    async fn room(&self, id: &RoomId, now: u64) -> StoreResult<Option<RoomRecord>> {
        SendFuture::new(async move {
            Ok(self
                .entry(id, now)
                .await
                .map_err(|e| remote(e, id))?
                .map(|e| e.record))
        })
        .await
    }

    async fn room_now(&self, id: &RoomId, now: u64) -> StoreResult<Option<RoomRecord>> {
        SendFuture::new(async move {
            let rooms = isolate::rooms(self.env(), now, true)
                .await
                .map_err(|e| remote(e, id))?;
            Ok(rooms.get(id.as_str()).map(|e| e.record.clone()))
        })
        .await
    }

    async fn put_room(
        &self,
        id: &RoomId,
        config: RoomConfig,
        epoch: u32,
        now: u64,
    ) -> StoreResult<(RoomRecord, bool)> {
        SendFuture::new(async move {
            self.do_put_room(id, config, epoch, now)
                .await
                .map_err(|e| remote(e, id))
        })
        .await
    }

    async fn set_paused(&self, id: &RoomId, paused: bool, now: u64) -> StoreResult<RoomRecord> {
        SendFuture::new(async move {
            let entry = self.known_entry(id, now).await?;
            self.do_set_paused(&entry, paused)
                .await
                .map_err(|e| remote(e, id))
        })
        .await
    }

    async fn set_events(
        &self,
        id: &RoomId,
        from: &Events,
        to: Events,
        now: u64,
    ) -> StoreResult<RoomRecord> {
        SendFuture::new(async move {
            let entry = self.known_entry(id, now).await?;
            self.do_set_events(&entry, from, to)
                .await
                .map_err(|e| remote(e, id))?
                .ok_or(StoreError::EventsChanged)
        })
        .await
    }

    async fn set_template(
        &self,
        id: &RoomId,
        template: Option<&str>,
        _now: u64,
    ) -> StoreResult<RoomRecord> {
        SendFuture::new(async move {
            self.do_set_template(id, template)
                .await
                .map_err(|e| remote(e, id))
        })
        .await
    }

    async fn template(
        &self,
        id: &RoomId,
        reference: &TemplateRef,
        _now: u64,
    ) -> StoreResult<Option<String>> {
        SendFuture::new(async move {
            self.do_template(id, reference)
                .await
                .map_err(|e| remote(e, id))
        })
        .await
    }

    async fn report(
        &self,
        id: &RoomId,
        since_ms: u64,
        _now: u64,
    ) -> StoreResult<Vec<ReportMinute>> {
        SendFuture::new(async move {
            self.do_report(id, since_ms)
                .await
                .map_err(|e| remote(e, id))
        })
        .await
    }

    async fn stats(&self, room: &RoomRecord, now: u64, fresh: bool) -> StoreResult<RoomStats> {
        SendFuture::new(async move {
            let entry = self.known_entry(&room.id, now).await?;
            self.do_stats(&entry, fresh, now)
                .await
                .map_err(|e| remote(e, &room.id))
        })
        .await
    }

    async fn join(
        &self,
        room: &RoomRecord,
        user_id: Option<&str>,
        now: u64,
    ) -> StoreResult<Joined> {
        SendFuture::new(async move {
            let entry = self.known_entry(&room.id, now).await?;
            self.do_join(&entry, user_id, room.opens_at.is_some(), now)
                .await
                .map_err(|e| remote(e, &room.id))
        })
        .await
    }

    async fn spend_once(
        &self,
        room: &RoomRecord,
        key: &str,
        until: u64,
        now: u64,
    ) -> StoreResult<bool> {
        SendFuture::new(async move {
            let entry = self.known_entry(&room.id, now).await?;
            self.do_spend_once(&entry, key, until, now)
                .await
                .map_err(|e| remote(e, &room.id))
        })
        .await
    }

    async fn visit(
        &self,
        room: &RoomRecord,
        ticket: &Ticket,
        now: u64,
    ) -> StoreResult<VisitorState> {
        SendFuture::new(async move {
            let entry = self.known_entry(&room.id, now).await?;
            self.do_visit(&entry, ticket, now)
                .await
                .map_err(|e| remote(e, &room.id))
        })
        .await
    }

    async fn end(&self, room: &RoomRecord, place: Place, now: u64) -> StoreResult<Option<bool>> {
        SendFuture::new(async move {
            let entry = self.known_entry(&room.id, now).await?;
            self.do_end(&entry, place, now)
                .await
                .map_err(|e| remote(e, &room.id))
        })
        .await
    }

    async fn session(
        &self,
        room: &RoomRecord,
        place: Place,
        renew: bool,
        now: u64,
    ) -> StoreResult<Option<u64>> {
        SendFuture::new(async move {
            let entry = self.known_entry(&room.id, now).await?;
            self.do_session(&entry, place, renew, now)
                .await
                .map_err(|e| remote(e, &room.id))
        })
        .await
    }

    async fn admit_now(&self, room: &RoomRecord, count: u64, now: u64) -> StoreResult<u64> {
        SendFuture::new(async move {
            let entry = self.known_entry(&room.id, now).await?;
            self.do_admit_now(&entry, count, now)
                .await
                .map_err(|e| remote(e, &room.id))
        })
        .await
    }

    fn calls(&self) -> Vec<(&'static str, u64)> {
        isolate::object_calls()
    }

    fn remote(&self) -> Option<&dyn RemoteScheduling> {
        Some(self)
    }
}

#[async_trait]
impl RemoteScheduling for DurableStore {
    async fn lease(&self, holder: &str, ttl_ms: u64, now: u64) -> StoreResult<u64> {
        SendFuture::new(async move {
            let request = LeaseReq {
                holder: holder.to_owned(),
                ttl_ms,
                now,
            };
            let lease: LeaseResponse = self
                .call_registry("lease", "lease", &request)
                .await
                .map_err(|e| StoreError::from_api(&e, None))?;
            Ok(lease.fence)
        })
        .await
    }

    async fn run_batch(
        &self,
        room: &RoomRecord,
        batch: &ScheduleRequest,
        now: u64,
    ) -> StoreResult<ScheduleResponse> {
        SendFuture::new(async move {
            let entry = self.known_entry(&room.id, now).await?;
            self.do_run_batch(&entry, batch, now)
                .await
                .map_err(|e| remote(e, &room.id))
        })
        .await
    }
}
