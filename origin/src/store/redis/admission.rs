//! Admission: batches planned with the core's [`plan`] from the mirror and run one script per
//! shard under the lease's fence; the lease itself; operator admissions, which only the lease
//! holder runs (other instances hand them over through Redis and wait for the answer); and
//! pausing, which the shards themselves must know so that no admission racing a pause opens
//! credit again.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use queuegate::plan::{admitted_waits, plan, Batch, Freshness};
use queuegate::RoomId;
use redis::aio::ConnectionLike;
use redis::AsyncCommands;

use super::mirror::Room;
use super::replies::LeaseReply;
use super::store::RedisStore;
use super::{keys, scripts};
use crate::store::{Fence, StoreError, StoreResult};

/// How long an operator admission waits for the scheduler that holds the lease.
const OPERATOR_WAIT: Duration = Duration::from_secs(5);

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// Runs a batch as the core plans it, from the mirror the caller brought up to date under
    /// `fence` (every shard learns the fence before anything is counted, so an older scheduler
    /// that wakes up now can no longer admit anywhere). Returns the admissions, the credit
    /// opened and how long (ms) those admitted from the head of the queue had waited.
    pub(super) async fn admit_batch(
        &self,
        room: &Arc<Mutex<Room>>,
        batch: Batch,
        fence: Fence,
        now: u64,
    ) -> StoreResult<(u64, u64, Vec<u64>)> {
        // Visitors stamped from `now` on may have joined while the shards were read one by one.
        let cutoff = now.saturating_mul(1000);
        let operator = matches!(batch, Batch::Operator { .. });
        let (orders, uptos, keys, waits_ms) = {
            let r = room.lock();
            let count = match batch {
                Batch::Scheduler { grant } => grant,
                Batch::Operator { count } => count,
            };
            let readings = r.readings(count, cutoff);
            let planned = plan(
                &r.record.config,
                r.record.paused,
                &readings,
                batch,
                Freshness::Current,
                u64::from_be_bytes(crate::clock::random_bytes()),
            );
            let keys: Vec<Arc<[String]>> = r.shards.iter().map(|s| s.keys.clone()).collect();
            // A draw (random mode) brings the drawn to the head of the line, which is then
            // admitted as in FIFO: through the `take`-th waiting place.
            let uptos: Vec<(u64, Vec<(u64, u64)>)> = planned
                .orders
                .iter()
                .zip(&r.queues)
                .map(|(order, queue)| match (order.take, order.draw) {
                    (0, _) => (queue.admitted_seq(), Vec::new()),
                    (take, Some(seed)) => (
                        queue.nth_waiting(take).unwrap_or(queue.admitted_seq()),
                        queue.draw_swaps(take, seed),
                    ),
                    (_, None) => (order.through_seq, Vec::new()),
                })
                .collect();
            let waits_ms = admitted_waits(&readings, &planned, now);
            (planned.orders, uptos, keys, waits_ms)
        };
        let batches = orders
            .iter()
            .zip(&uptos)
            .zip(&keys)
            .map(|((order, (upto, swaps)), keys)| {
                // An operator's batch leaves the credit as it is (the script sees the flag).
                let credit = order.credit.unwrap_or(0);
                async move {
                    self.on_admission(keys)
                        .admit(fence, *upto, now, credit, operator, swaps)
                        .await
                }
            });
        let results = futures::future::join_all(batches).await;
        let mut admitted = 0;
        let id = {
            let mut r = room.lock();
            for (shard, result) in results.into_iter().enumerate() {
                let reply = result?;
                admitted += reply.admitted;
                r.learn_admitted(shard, &reply);
                if let Some(credit) = orders[shard].credit {
                    r.shards[shard].credit = credit;
                }
            }
            r.record.id.clone()
        };
        if admitted > 0 {
            // The other instances' mirrors learn of it before their next answer; should the count
            // fail, at their next tick.
            if let Err(error) = self.queue_changed(&id).await {
                tracing::warn!(%error, room = %id, "an admission could not be counted in qg:versions");
            }
        }
        let credit = orders.iter().filter_map(|o| o.credit).sum();
        Ok((admitted, credit, waits_ms))
    }

    /// Runs the operator admissions other instances asked this one (the lease holder) for.
    pub(super) async fn serve_admit_requests(
        &self,
        id: &RoomId,
        room: &Arc<Mutex<Room>>,
        fence: Fence,
        now: u64,
    ) -> StoreResult<()> {
        loop {
            let key = keys::admit_requests(id);
            let request: Option<String> = self
                .redis
                .call(|mut conn| async move { conn.lpop(key, None).await })
                .await?;
            let Some(request) = request else {
                return Ok(());
            };
            let mut parts = request.split(':');
            let (Some(request_id), Some(Ok(count))) =
                (parts.next(), parts.next().map(str::parse::<u64>))
            else {
                continue;
            };
            let request_id = request_id.to_owned();
            // The tick began before the operator asked: visitors who joined in between are
            // admitted too (the batch takes only stamps before its `now`).
            let asked_at = parts.next().and_then(|n| n.parse::<u64>().ok());
            let now = asked_at.map_or(now, |asked_at| asked_at.max(now));
            self.sync_room(room, now, Some(fence)).await?;
            let (done, _, _) = self
                .admit_batch(room, Batch::Operator { count }, fence, now)
                .await?;
            let key = keys::admit_result(&request_id);
            self.redis
                .call(|mut conn| async move { conn.set_ex::<_, _, ()>(key, done, 60).await })
                .await?;
        }
    }

    /// An operator admission on an instance that does not hold the lease: handed to the one
    /// that does, through Redis, and answered once it has run it.
    pub(super) async fn ask_lease_holder(
        &self,
        id: &RoomId,
        count: u64,
        now: u64,
    ) -> StoreResult<u64> {
        let request = format!("{:016x}", u64::from_be_bytes(crate::clock::random_bytes()));
        let key = keys::admit_requests(id);
        let body = format!("{request}:{count}:{now}");
        self.redis
            .call(|mut conn| async move { conn.rpush::<_, _, ()>(key, body).await })
            .await?;
        let deadline = tokio::time::Instant::now() + OPERATOR_WAIT;
        let result_key = keys::admit_result(&request);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let key = result_key.clone();
            let done: Option<u64> = self
                .redis
                .call(|mut conn| async move { conn.get(key).await })
                .await?;
            if let Some(done) = done {
                return Ok(done);
            }
        }
        Err(StoreError::Unavailable(
            "the scheduler holding the admission lease did not answer".into(),
        ))
    }

    /// Takes or renews the admission lease for `holder`; `None` while another holds it.
    pub(super) async fn take_lease(
        &self,
        holder: &str,
        ttl_ms: u64,
        now: u64,
    ) -> StoreResult<Option<Fence>> {
        let lease_keys = [keys::LEASE_HOLDER.to_owned(), keys::LEASE_FENCE.to_owned()];
        let reply = self
            .admission
            .script::<LeaseReply>(
                &scripts::LEASE,
                &lease_keys,
                &[holder.into(), ttl_ms.into()],
            )
            .await;
        let held = match reply {
            Ok(reply) => reply.fence,
            Err(err) => {
                // Not on the replicas: a failover could hand this fence to another scheduler.
                *self.lease.lock() = None;
                return Err(err);
            }
        };
        // Counted from before the call: the lease may have started earlier than we learn it.
        *self.lease.lock() = held.map(|f| (f, now + ttl_ms));
        Ok(held)
    }

    /// The fence of the lease this instance holds at `now`, if it holds one.
    pub(super) fn held_fence(&self, now: u64) -> Option<Fence> {
        self.lease
            .lock()
            .filter(|&(_, until)| until > now)
            .map(|(fence, _)| fence)
    }

    /// Tells every shard whether the room is paused (a paused shard opens no entry credit and
    /// admits nobody directly), dropping the credit on a pause or when asked.
    pub(super) async fn pause_shards(
        &self,
        room: &Arc<Mutex<Room>>,
        paused: bool,
        drop_credit: bool,
    ) -> StoreResult<()> {
        let shard_keys: Vec<Arc<[String]>> =
            room.lock().shards.iter().map(|s| s.keys.clone()).collect();
        let calls = shard_keys
            .iter()
            .map(|keys| async move { self.on(keys).pause(paused, drop_credit).await });
        for result in futures::future::join_all(calls).await {
            result?;
        }
        Ok(())
    }
}
