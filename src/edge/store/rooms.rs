//! Rooms and batches over the Durable Objects: creating and pausing rooms, reading and
//! admitting across a room's shards (the scheduler's batches and an operator's), and publishing
//! what the shards reported to the registry.

use futures::future::join_all;

use super::{timing, DurableStore, Outcome};
use crate::api::{LeaseResponse, RoomStats, ScheduleRequest, ScheduleResponse, MAX_HEADS};
use crate::edge::isolate;
use crate::edge::protocol::{
    BatchReq, PatchReq, PatchRes, PauseReq, PublishReq, PutReq, PutRes, ReportReq, ReportRes,
    RoomEntry, SetTemplateReq, ShardReport, TemplateReq, TemplateRes,
};
use crate::error::{ApiError, ErrorCode};
use crate::event::Events;
use crate::plan::{load_of, plan, Batch, Freshness, ShardOrder, ShardReading};
use crate::report::ReportMinute;
use crate::room::{RoomConfig, RoomId, RoomRecord};
use crate::template::TemplateRef;

impl DurableStore {
    /// `request` to every shard, with `order(i)` as shard `i`'s order.
    pub(super) async fn batch_all(
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
    pub(super) async fn publish(
        &self,
        entry: &RoomEntry,
        reports: &[ShardReport],
        rate: Option<Option<f64>>,
        kind: &'static str,
        now: u64,
    ) -> Outcome<RoomEntry> {
        self.publish_with_minute(entry, reports, rate, None, kind, now)
            .await
    }

    /// [`Self::publish`], with the scheduler's report minute for the registry to keep.
    pub(super) async fn publish_with_minute(
        &self,
        entry: &RoomEntry,
        reports: &[ShardReport],
        rate: Option<Option<f64>>,
        minute: Option<ReportMinute>,
        kind: &'static str,
        now: u64,
    ) -> Outcome<RoomEntry> {
        let mut entry = entry.clone();
        if let Some(rate) = rate {
            entry.record.measured_rate = rate;
        }
        let readings: Vec<ShardReading> = reports.iter().map(|r| r.reading.clone()).collect();
        let stats = RoomStats::new(
            load_of(&readings),
            entry.record.measured_rate,
            readings.iter().map(|r| r.credit).sum(),
        )
        .with_abandoned(crate::plan::abandoned_of(&readings))
        .with_flow(crate::plan::flow_of(&readings));
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
            minute,
        };
        let _: () = self.call_registry(kind, "publish", &request).await?;
        entry.summaries = summaries;
        entry.stats = stats;
        isolate::remember_published(&entry.record.id, &entry.summaries, &entry.stats, rate);
        Ok(entry)
    }

    /// Tells every shard whether the room is paused, dropping their credit on a pause or when
    /// asked.
    pub(super) async fn pause_shards(
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

    pub(super) async fn do_put_room(
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

    pub(super) async fn do_set_paused(
        &self,
        entry: &RoomEntry,
        paused: bool,
    ) -> Outcome<RoomRecord> {
        let patch = PatchReq {
            id: entry.record.id.clone(),
            paused: Some(paused),
            events: None,
            events_from: None,
        };
        self.patch(entry, &patch, paused).await?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::Internal,
                "the registry did not apply an unconditional patch",
            )
        })
    }

    /// A slot opened for direct entry before the change lasts until the next tick, which may
    /// fall inside a pre-queue the change just opened: the credit goes. `None` when the room
    /// no longer holds `from`.
    pub(super) async fn do_set_events(
        &self,
        entry: &RoomEntry,
        from: &Events,
        to: Events,
    ) -> Outcome<Option<RoomRecord>> {
        let patch = PatchReq {
            id: entry.record.id.clone(),
            paused: None,
            events: Some(to),
            events_from: Some(from.clone()),
        };
        self.patch(entry, &patch, true).await
    }

    pub(super) async fn do_set_template(
        &self,
        id: &RoomId,
        template: Option<&str>,
    ) -> Outcome<RoomRecord> {
        let req = SetTemplateReq {
            id: id.clone(),
            template: template.map(str::to_owned),
        };
        let record = self.call_registry("admin", "set_template", &req).await;
        // What this isolate holds of the room is older than either answer.
        isolate::forget_rooms();
        record
    }

    pub(super) async fn do_template(
        &self,
        id: &RoomId,
        reference: &TemplateRef,
    ) -> Outcome<Option<String>> {
        let req = TemplateReq {
            id: id.clone(),
            hash: reference.hash.clone(),
        };
        let answer: TemplateRes = self.call_registry("template", "template", &req).await?;
        Ok(answer.text)
    }

    /// The room's report minutes, as the registry keeps them.
    pub(super) async fn do_report(&self, id: &RoomId, since_ms: u64) -> Outcome<Vec<ReportMinute>> {
        let req = ReportReq {
            id: id.clone(),
            since_ms,
        };
        let answer: ReportRes = self.call_registry("report", "report", &req).await?;
        Ok(answer.minutes)
    }

    /// Changes the room's record in the registry, then tells its shards whether it is paused,
    /// dropping their credit when `drop_credit`. `None` when the room no longer held the
    /// patch's `events_from`.
    async fn patch(
        &self,
        entry: &RoomEntry,
        patch: &PatchReq,
        drop_credit: bool,
    ) -> Outcome<Option<RoomRecord>> {
        let patched: PatchRes = self.call_registry("admin", "patch", patch).await?;
        // What this isolate holds of the room is older than either answer.
        isolate::forget_rooms();
        if !patched.applied {
            return Ok(None);
        }
        let record = patched.record;
        self.pause_shards(entry, record.paused, drop_credit).await?;
        isolate::forget_rooms();
        Ok(Some(record))
    }

    /// An operator's batch: a new fence (so a batch the scheduler planned before cannot land
    /// after), a reading of every shard, the core's plan, the orders, the publication.
    pub(super) async fn do_admit_now(
        &self,
        entry: &RoomEntry,
        count: u64,
        now: u64,
    ) -> Outcome<u64> {
        let fence: LeaseResponse = self.call_registry("admin", "bump_fence", &()).await?;
        let heads = count.min(MAX_HEADS);
        let request = BatchReq {
            fence: fence.fence,
            order: None,
            operator: true,
            heads,
            now,
            timing: timing(&entry.record.config),
            abandon_after_ms: entry.record.config.abandon_after_ms().unwrap_or(0),
        };
        let read = self.batch_all(entry, "admin", request, |_| None).await?;
        let readings: Vec<ShardReading> = read.into_iter().map(|r| r.reading).collect();
        let planned = plan(
            &entry.record.config,
            entry.record.paused,
            &readings,
            Batch::Operator { count },
            Freshness::Current,
            self.random_seed(),
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

    pub(super) async fn do_stats(
        &self,
        entry: &RoomEntry,
        fresh: bool,
        now: u64,
    ) -> Outcome<RoomStats> {
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
            abandon_after_ms: entry.record.config.abandon_after_ms().unwrap_or(0),
        };
        let reports = self.batch_all(entry, "admin", request, |_| None).await?;
        Ok(self
            .publish(entry, &reports, None, "admin", now)
            .await?
            .stats)
    }

    pub(super) async fn do_run_batch(
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
            abandon_after_ms: entry.record.config.abandon_after_ms().unwrap_or(0),
        };
        let reports = self
            .batch_all(entry, "scheduler", batch, |i| {
                request.orders.as_ref().map(|orders| orders[i])
            })
            .await?;
        self.publish_with_minute(
            entry,
            &reports,
            Some(request.admit_rate_per_min),
            request.report_minute.clone(),
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
