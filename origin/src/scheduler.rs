//! The admission scheduler: once a tick, for every room, ends what has expired, measures the
//! admission rate, asks the core's controller how many to admit and has the store admit them.
//! It holds the store's admission lease first, so that of several schedulers only one admits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use queuegate::controller::{AdmissionController, RoomLoad};
use queuegate::estimate::RateMeter;
use queuegate::report::{MinuteTally, ReportMinute, Totals};
use queuegate::{RoomId, RoomRecord};
use tokio::sync::{watch, Notify};
use tokio::time::MissedTickBehavior;

use queuegate::service::Metrics;

use crate::clock::Clock;
use crate::store::{Decision, Fence, Scheduling, StoreError};

/// How many rooms a tick works on at once.
const ROOMS_AT_ONCE: usize = 16;

/// The scheduler's per-room memory: the rate bucket, the rate meter and the report's open
/// minute.
#[derive(Default)]
struct RoomMemory {
    controller: AdmissionController,
    meter: RateMeter,
    minute: MinuteTally,
    /// The minute as the store last took it: a room where nothing changed since costs no write.
    kept: Option<ReportMinute>,
}

pub struct Scheduler {
    store: Arc<dyn Scheduling>,
    clock: Clock,
    tick: Duration,
    holder: String,
    rooms: HashMap<RoomId, RoomMemory>,
    metrics: Option<Arc<Metrics>>,
}

/// What one tick did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    pub leader: bool,
    pub rooms: usize,
    pub admitted: u64,
}

impl Scheduler {
    pub fn new(
        store: Arc<dyn Scheduling>,
        clock: Clock,
        tick: Duration,
        holder: String,
    ) -> Scheduler {
        Scheduler {
            store,
            clock,
            tick,
            holder,
            rooms: HashMap::new(),
            metrics: None,
        }
    }

    /// Publishes room gauges to `metrics` each tick.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn tick_ms(&self) -> u64 {
        self.tick.as_millis() as u64
    }

    /// One tick at `now`.
    pub async fn tick(&mut self, now: u64) -> Result<TickReport, StoreError> {
        // Each room as its events make it now: a pre-queue admits nobody, a running event's
        // overrides set the capacity and the rate.
        let records: Vec<RoomRecord> = self
            .store
            .rooms(now)
            .await?
            .into_iter()
            .map(|record| record.in_effect(now))
            .collect();
        self.store.refresh(now).await?;
        let lease_ms = self.tick_ms() * 3;
        let lease = self.store.acquire_lease(&self.holder, lease_ms, now).await;
        if let Some(metrics) = &self.metrics {
            metrics.lease(lease.as_ref().ok().copied().flatten().map(|f| f.0));
        }
        let Some(fence) = lease? else {
            return Ok(TickReport::default());
        };
        // Rooms tick side by side: against a remote store (the edge) each room costs several
        // round trips, and one slow room must not make every other room's tick late.
        let mut memories = std::mem::take(&mut self.rooms);
        let rooms = records.len();
        let this = &*self;
        let outcomes: Vec<_> = futures::stream::iter(records.into_iter().map(|record| {
            let memory = memories.remove(&record.id).unwrap_or_default();
            async move {
                let mut memory = memory;
                let admitted = this.tick_room(&record, &mut memory, fence, now).await;
                (record.id, memory, admitted)
            }
        }))
        .buffer_unordered(ROOMS_AT_ONCE)
        .collect()
        .await;
        let mut report = TickReport {
            leader: true,
            rooms,
            admitted: 0,
        };
        let mut first_error = None;
        for (id, memory, admitted) in outcomes {
            self.rooms.insert(id, memory);
            match admitted {
                Ok(n) => report.admitted += n,
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(report),
        }
    }

    /// One room's part of a tick: the store reads the load, the meter and the controller decide,
    /// the store admits. Returns the admissions.
    async fn tick_room(
        &self,
        record: &RoomRecord,
        memory: &mut RoomMemory,
        fence: Fence,
        now: u64,
    ) -> Result<u64, StoreError> {
        let tick_ms = self.tick_ms();
        let mut decide = |load: RoomLoad| {
            memory.meter.record(now, &load);
            let mut grant = memory.controller.grant(&record.config, load, tick_ms, now);
            if record.holds_admission() {
                grant = 0;
            } else if queuegate::event::prequeue_near(&record.events, now) {
                // What is granted beyond those waiting opens slots for direct entry until the
                // next tick, which may fall inside the pre-queue.
                grant = grant.min(load.waiting);
            }
            Decision {
                grant,
                rate: memory.meter.rate_per_minute(record.config.max_active),
            }
        };
        let round = self.store.schedule(record, fence, now, &mut decide).await?;
        if let Some(metrics) = &self.metrics {
            metrics.admitted(&record.id, round.admitted);
            metrics.room(&record.id, &round.stats);
        }
        let row = memory.minute.observe(
            now,
            Totals::of(&round.stats),
            round.stats.waiting,
            &round.waits_ms,
        );
        // The admissions stand whatever happens to the report: a minute not kept now is kept,
        // whole, by the next tick of the minute.
        if memory.kept.as_ref() != Some(&row) {
            match self.store.keep_minute(record, row.clone()).await {
                Ok(()) => memory.kept = Some(row),
                Err(error) => {
                    tracing::warn!(%error, room = %record.id, "the report's minute could not be kept")
                }
            }
        }
        Ok(round.admitted)
    }

    /// Ticks until `shutdown` turns true; `wake` runs a tick at once (a new room, a resume).
    pub async fn run(mut self, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        let mut interval = tokio::time::interval(self.tick);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = wake.notified() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            let now = self.clock.now();
            if let Err(err) = self.tick(now).await {
                tracing::warn!(error = %err, "scheduler tick failed");
                if let Some(metrics) = &self.metrics {
                    metrics.scheduler_error();
                }
            }
        }
    }
}
