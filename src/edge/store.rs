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

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::join_all;
use worker::send::{SendFuture, SendWrapper};
use worker::Env;

use super::batch;
use super::isolate::{self, call, REGISTRY, REGISTRY_NAME, SHARDS};
use super::protocol::*;
use crate::api::{LeaseResponse, RoomStats, ScheduleRequest, ScheduleResponse, MAX_HEADS};
use crate::error::ApiError;
use crate::plan::{plan, Batch, Freshness, ShardOrder, ShardReading};
use crate::queue::{estimate_position, position_with_own};
use crate::room::{RoomConfig, RoomId, RoomRecord};
use crate::service::{
    Joined, Platform, RemoteScheduling, RouteTable, Store, StoreError, StoreResult,
};
use crate::shard::{user_hash, Standing, Timing};
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

    fn env(&self) -> &Env {
        &self.env
    }

    async fn entry(&self, room: &RoomId, now: u64) -> Outcome<Option<RoomEntry>> {
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
        self.entry(room, now)
            .await
            .map_err(|e| remote(e, room))?
            .ok_or_else(|| StoreError::UnknownRoom(room.clone()))
    }

    fn call_shard<'a, Q: serde::Serialize, A: serde::de::DeserializeOwned>(
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

    fn call_registry<'a, Q: serde::Serialize, A: serde::de::DeserializeOwned>(
        &'a self,
        kind: &'static str,
        op: &'static str,
        body: &Q,
    ) -> impl std::future::Future<Output = Outcome<A>> + 'a {
        call(self.env(), REGISTRY, REGISTRY_NAME, kind, op, body)
    }

    /// `request` to every shard, with `order(i)` as shard `i`'s order.
    async fn batch_all(
        &self,
        entry: &RoomEntry,
        kind: &'static str,
        request: BatchReq,
        order: impl Fn(usize) -> Option<ShardOrder>,
    ) -> Outcome<Vec<ShardReport>> {
        let calls = (0..entry.record.config.shards).map(|shard| {
            let request = BatchReq {
                order: order(usize::from(shard)),
                ..request
            };
            self.call_shard::<_, ShardReport>(entry, shard, kind, "batch", &request)
        });
        join_all(calls).await.into_iter().collect()
    }

    /// Publishes what the shards reported (and the measured rate, when given) to the registry,
    /// and keeps it in this isolate's copy.
    async fn publish(
        &self,
        entry: &RoomEntry,
        reports: &[ShardReport],
        rate: Option<Option<f64>>,
        kind: &'static str,
        now: u64,
    ) -> Outcome<RoomEntry> {
        let mut entry = entry.clone();
        if let Some(rate) = rate {
            entry.record.measured_rate = rate;
        }
        let stats = RoomStats {
            waiting: reports.iter().map(|r| r.reading.waiting).sum(),
            admitted: reports.iter().map(|r| r.reading.unclaimed).sum(),
            active: reports.iter().map(|r| r.reading.active).sum(),
            admitted_total: reports.iter().map(|r| r.reading.admitted_total).sum(),
            admit_rate_per_min: entry.record.measured_rate,
            entry_credit: reports.iter().map(|r| r.reading.credit).sum(),
        };
        let summaries: Vec<_> = reports
            .iter()
            .enumerate()
            .map(|(i, r)| r.summary.clone().observed(now, entry.summaries.get(i)))
            .collect();
        let request = PublishReq {
            id: entry.record.id.clone(),
            summaries: summaries.clone(),
            stats: stats.clone(),
            rate,
        };
        let _: () = self.call_registry(kind, "publish", &request).await?;
        entry.summaries = summaries;
        entry.stats = stats;
        isolate::remember_room(&entry);
        Ok(entry)
    }

    /// Tells every shard whether the room is paused, dropping their credit on a pause or when
    /// asked.
    async fn pause_shards(
        &self,
        entry: &RoomEntry,
        paused: bool,
        drop_credit: bool,
    ) -> Outcome<()> {
        let calls = (0..entry.record.config.shards).map(|shard| {
            self.call_shard::<_, ShardReport>(
                entry,
                shard,
                "admin",
                "pause",
                &PauseReq {
                    paused,
                    drop_credit,
                },
            )
        });
        for result in join_all(calls).await {
            result?;
        }
        Ok(())
    }

    async fn do_put_room(
        &self,
        id: &RoomId,
        config: RoomConfig,
        epoch: u32,
        now: u64,
    ) -> Outcome<(RoomRecord, bool)> {
        let put: PutRes = self
            .call_registry(
                "admin",
                "put",
                &PutReq {
                    id: id.clone(),
                    config,
                    epoch,
                },
            )
            .await?;
        isolate::forget_rooms();
        if !put.created {
            // A new configuration (maybe a lower capacity) opens no credit until the next tick.
            if let Some(entry) = self.entry(id, now).await? {
                self.pause_shards(&entry, entry.record.paused, true).await?;
            }
        }
        Ok((put.record, put.created))
    }

    async fn do_set_paused(&self, entry: &RoomEntry, paused: bool) -> Outcome<RoomRecord> {
        let record: RoomRecord = self
            .call_registry(
                "admin",
                "patch",
                &PatchReq {
                    id: entry.record.id.clone(),
                    paused,
                },
            )
            .await?;
        self.pause_shards(entry, paused, paused).await?;
        isolate::forget_rooms();
        Ok(record)
    }

    async fn do_join(&self, entry: &RoomEntry, user: Option<&str>, now: u64) -> Outcome<Joined> {
        let shards = entry.record.config.shards;
        let shard = match user {
            Some(user) => (user_hash(user) % u64::from(shards)) as u16,
            None => batch::busy_shard((0..shards).map(|s| shard_name(entry, s)))
                .unwrap_or_else(|| isolate::next_shard(shards)),
        };
        let job = JoinJob {
            user: user.map(str::to_owned),
            stamp: isolate::next_stamp(now),
        };
        let joined = batch::join(
            self.env(),
            &*self.platform,
            &shard_name(entry, shard),
            job,
            now,
            timing(&entry.record.config),
        )
        .await?;
        let place = Place {
            epoch: entry.record.epoch,
            shard,
            seq: joined.joined.seq,
        };
        let state = state_of(
            entry,
            shard,
            joined.joined.standing,
            joined.ahead,
            joined.joined.stamp,
        );
        Ok(Joined {
            place,
            joined_us: joined.joined.stamp,
            state,
            existing: joined.joined.existing,
        })
    }

    /// Where a ticket's holder stands: from the published summary while waiting (no call), from
    /// the shard once admission reached the place.
    async fn do_visit(
        &self,
        entry: &RoomEntry,
        ticket: &Ticket,
        now: u64,
    ) -> Outcome<VisitorState> {
        let place = ticket.place;
        let shard = usize::from(place.shard);
        if let Some(summary) = entry.summaries.get(shard) {
            if summary.left.contains(&place.seq) {
                return Ok(VisitorState::Left);
            }
            // A place beyond the summary's tail joined since it was read (or was never given
            // out): only the shard knows.
            if place.seq > summary.admitted_seq && place.seq <= summary.tail {
                return Ok(VisitorState::Waiting {
                    position: estimate_position(
                        &entry.summaries,
                        shard,
                        place.seq,
                        ticket.joined_us,
                    ),
                });
            }
        }
        let request = VisitReq {
            seq: place.seq,
            now,
            timing: timing(&entry.record.config),
        };
        let res: VisitRes = self
            .call_shard(entry, place.shard, "claim", "visit", &request)
            .await?;
        Ok(state_of(
            entry,
            place.shard,
            res.standing,
            res.ahead,
            res.stamp,
        ))
    }

    async fn do_end(&self, entry: &RoomEntry, place: Place, now: u64) -> Outcome<Option<bool>> {
        let res: EndRes = self
            .call_shard(
                entry,
                place.shard,
                "leave",
                "end",
                &EndReq {
                    seq: place.seq,
                    now,
                },
            )
            .await?;
        // Let every isolate learn of it within a second, not a tick.
        let publish = PublishShardReq {
            id: entry.record.id.clone(),
            shard: place.shard,
            summary: res
                .report
                .summary
                .observed(now, entry.summaries.get(usize::from(place.shard))),
        };
        let _: () = self
            .call_registry("leave_publish", "publish_shard", &publish)
            .await?;
        isolate::outdate_rooms();
        isolate::remember_session(session_key(entry, place), None, now);
        Ok(res.ended)
    }

    async fn do_session(
        &self,
        entry: &RoomEntry,
        place: Place,
        renew: bool,
        now: u64,
    ) -> Outcome<Option<u64>> {
        let key = session_key(entry, place);
        if !renew {
            if let Some(expires_at) = isolate::cached_session(&key, now) {
                return Ok(Some(expires_at));
            }
        }
        let request = SessionReq {
            seq: place.seq,
            renew,
            now,
            timing: timing(&entry.record.config),
        };
        let res: SessionRes = self
            .call_shard(entry, place.shard, "gate_session", "session", &request)
            .await?;
        isolate::remember_session(key, res.expires_at, now);
        Ok(res.expires_at)
    }

    /// An operator's batch: a new fence (so a batch the scheduler planned before cannot land
    /// after), a reading of every shard, the core's plan, the orders, the publication.
    async fn do_admit_now(&self, entry: &RoomEntry, count: u64, now: u64) -> Outcome<u64> {
        let fence: LeaseResponse = self.call_registry("admin", "bump_fence", &()).await?;
        let heads = count.min(MAX_HEADS);
        let request = BatchReq {
            fence: fence.fence,
            order: None,
            operator: true,
            heads,
            now,
            timing: timing(&entry.record.config),
        };
        let read = self.batch_all(entry, "admin", request, |_| None).await?;
        let readings: Vec<ShardReading> = read.into_iter().map(|r| r.reading).collect();
        let planned = plan(
            &entry.record.config,
            entry.record.paused,
            &readings,
            Batch::Operator { count },
            Freshness::Current,
        );
        let request = BatchReq {
            heads: 0,
            ..request
        };
        let done = self
            .batch_all(entry, "admin", request, |i| Some(planned.orders[i]))
            .await?;
        self.publish(entry, &done, None, "admin", now).await?;
        Ok(done.iter().map(|r| r.admitted).sum())
    }

    async fn do_stats(&self, entry: &RoomEntry, fresh: bool, now: u64) -> Outcome<RoomStats> {
        if !fresh {
            let mut stats = entry.stats.clone();
            stats.admit_rate_per_min = entry.record.measured_rate;
            return Ok(stats);
        }
        let request = BatchReq {
            fence: 0,
            order: None,
            operator: false,
            heads: 0,
            now,
            timing: timing(&entry.record.config),
        };
        let reports = self.batch_all(entry, "admin", request, |_| None).await?;
        Ok(self
            .publish(entry, &reports, None, "admin", now)
            .await?
            .stats)
    }

    async fn do_run_batch(
        &self,
        entry: &RoomEntry,
        request: &ScheduleRequest,
        now: u64,
    ) -> Outcome<ScheduleResponse> {
        let batch = BatchReq {
            fence: request.fence,
            order: None,
            operator: false,
            heads: request.heads,
            now,
            timing: timing(&entry.record.config),
        };
        let reports = self
            .batch_all(entry, "scheduler", batch, |i| {
                request.orders.as_ref().map(|orders| orders[i])
            })
            .await?;
        self.publish(
            entry,
            &reports,
            Some(request.admit_rate_per_min),
            "scheduler",
            now,
        )
        .await?;
        Ok(ScheduleResponse {
            admitted: reports.iter().map(|r| r.admitted).sum(),
            shards: reports.into_iter().map(|r| r.reading).collect(),
        })
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
            self.do_join(&entry, user_id, now)
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
