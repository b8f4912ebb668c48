//! This instance's mirror of a room's shards: the join stamps, the leavers and how far admission
//! has come in each, read from Redis a change at a time. Waiting visitors' polls, positions and
//! the scheduler's plan are answered from it without a round trip.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use queuegate::api::RoomStats;
use queuegate::controller::RoomLoad;
use queuegate::plan::ShardReading;
use queuegate::queue::ShardQueue;
use queuegate::shard::{Standing, Timing};
use queuegate::shuffle::ShuffleSpec;
use queuegate::Place;
use redis::aio::ConnectionLike;

use super::replies::{AdmitReply, JoinReply, QueueReply, SyncReply};
use super::scripts::{OnShard, SyncFrom};
use super::store::RedisStore;
use super::{batch, keys};
use crate::store::{Fence, RoomRecord, StoreError, StoreResult};

/// The most stamp or left-log bytes one sync reads (half a million visitors).
const MAX_SYNC_BYTES: u64 = 4 << 20;
/// An instance tells Redis who it saw waiting this often, at most.
const SEEN_EVERY_MS: u64 = 1_000;
/// The most seen visitors an instance keeps for one shard between two sends (a poll over it is
/// forgotten; its visitor asks again long before its place could end).
const MAX_SEEN_BATCH: usize = 200_000;

/// One shard of a room as this instance sees it.
pub(super) struct ShardState {
    pub keys: Arc<[String]>,
    /// This shard's joins on this instance, sent in batches.
    pub joins: Arc<batch::JoinBatcher>,
    /// Stamps this instance's joins learned ahead of the mirror's tail (joins on one shard can
    /// answer out of order); they join the mirror once the seqs before them arrive.
    pending: BTreeMap<u64, u64>,
    /// Bytes of the left log already applied, and the last seq among them (unknown after a
    /// reload).
    left_bytes: u64,
    last_left: Option<u64>,
    /// Bytes of the draws' move log already applied.
    move_bytes: u64,
    /// Ticket seqs of waiting visitors this instance answered from the mirror since it last
    /// told Redis, and when it last did.
    seen: std::collections::BTreeSet<u64>,
    seen_sent_at: u64,
    pub unclaimed: u64,
    pub credit: u64,
    pub admitted_total: u64,
    pub active: u64,
    pub abandoned_total: u64,
    pub no_shows_total: u64,
    pub left_total: u64,
}

/// A room: its record and the mirror of its shards.
pub(super) struct Room {
    pub record: RoomRecord,
    /// When this instance last changed the record itself; a record read from Redis before that
    /// is older than what it holds and does not replace it.
    pub changed: Instant,
    pub queues: Vec<ShardQueue>,
    pub shards: Vec<ShardState>,
    pub queue_version: super::versions::QueueVersion,
}

impl Room {
    pub fn new(record: RoomRecord) -> Room {
        let n = record.config.shards;
        Room {
            changed: Instant::now(),
            queues: vec![ShardQueue::new(); usize::from(n)],
            shards: (0..n)
                .map(|s| ShardState {
                    keys: keys::shard(&record.id, record.epoch, s).into(),
                    joins: Arc::default(),
                    pending: BTreeMap::new(),
                    left_bytes: 0,
                    last_left: None,
                    move_bytes: 0,
                    seen: Default::default(),
                    seen_sent_at: 0,
                    unclaimed: 0,
                    credit: 0,
                    admitted_total: 0,
                    active: 0,
                    abandoned_total: 0,
                    no_shows_total: 0,
                    left_total: 0,
                })
                .collect(),
            queue_version: Default::default(),
            record,
        }
    }

    pub fn timing(&self) -> Timing {
        Timing {
            session_ttl_ms: self.record.config.session_ttl_ms(),
            claim_window_ms: self.record.config.claim_window_ms(),
        }
    }

    /// Whether `place` is of this room's queue (its epoch, one of its shards).
    pub fn holds(&self, place: Place) -> bool {
        place.epoch == self.record.epoch && usize::from(place.shard) < self.queues.len()
    }

    pub fn load(&self) -> RoomLoad {
        RoomLoad {
            waiting: self.queues.iter().map(ShardQueue::waiting).sum(),
            active: self.shards.iter().map(|s| s.active).sum(),
            admitted: self.shards.iter().map(|s| s.unclaimed).sum(),
            admitted_total: self.shards.iter().map(|s| s.admitted_total).sum(),
            no_shows_total: self.shards.iter().map(|s| s.no_shows_total).sum(),
        }
    }

    fn credit(&self) -> u64 {
        self.shards.iter().map(|s| s.credit).sum()
    }

    pub fn stats(&self) -> RoomStats {
        RoomStats::new(self.load(), self.record.measured_rate, self.credit())
            .with_abandoned(self.shards.iter().map(|s| s.abandoned_total).sum())
            .with_flow((
                self.queues.iter().map(ShardQueue::tail).sum(),
                self.shards.iter().map(|s| s.left_total).sum(),
            ))
    }

    /// Each shard as the mirror holds it, with its next `heads` waiting visitors stamped before
    /// `cutoff`.
    pub fn readings(&self, heads: u64, cutoff: u64) -> Vec<ShardReading> {
        self.queues
            .iter()
            .zip(&self.shards)
            .map(|(queue, state)| {
                let listed: Vec<(u64, u64)> = queue
                    .heads(heads)
                    .into_iter()
                    .take_while(|&(_, stamp)| stamp < cutoff)
                    .collect();
                let waiting = queue.waiting();
                ShardReading {
                    active: state.active,
                    unclaimed: state.unclaimed,
                    credit: state.credit,
                    waiting,
                    admitted_total: state.admitted_total,
                    // Those stamped from the cutoff on may not all be in the mirror yet.
                    listed_below: ShardReading::bound(&listed, waiting).min(cutoff),
                    heads: listed,
                    shuffled_us: queue.shuffled_us(),
                    abandoned_total: state.abandoned_total,
                    no_shows_total: state.no_shows_total,
                    joined_total: queue.tail(),
                    left_total: state.left_total,
                }
            })
            .collect()
    }

    /// Takes in what a join of this instance learned: a new place's stamp, and whether the
    /// shard let the visitor in at once.
    pub fn learn_join(&mut self, shard: usize, join: &JoinReply) {
        if join.existing {
            return;
        }
        self.learn_stamp(shard, join.seq, join.stamp);
        if let Standing::Admitted { .. } = join.standing {
            // Let in at once: the shard admitted through this seq.
            let queue = &mut self.queues[shard];
            queue.admit_through(join.seq.min(queue.tail()));
        }
    }

    /// Notes a waiting visitor this instance answered from the mirror, for Redis to learn.
    pub fn note_seen(&mut self, shard: usize, ticket_seq: u64) {
        let seen = &mut self.shards[shard].seen;
        if seen.len() < MAX_SEEN_BATCH {
            seen.insert(ticket_seq);
        }
    }

    /// Who was seen, to send now (at most once a second).
    fn seen_to_send(&mut self, shard: usize, now: u64) -> Vec<u64> {
        let state = &mut self.shards[shard];
        if state.seen.is_empty() || now < state.seen_sent_at + SEEN_EVERY_MS {
            return Vec::new();
        }
        state.seen_sent_at = now;
        std::mem::take(&mut state.seen).into_iter().collect()
    }

    /// Takes in a leave (or a visit that found the visitor gone) through this instance.
    pub fn learn_left(&mut self, shard: usize, seq: u64) {
        self.queues[shard].mark_left(seq);
    }

    /// Takes in how far an admission through this instance brought the shard.
    pub fn learn_admitted(&mut self, shard: usize, admit: &AdmitReply) {
        let queue = &mut self.queues[shard];
        queue.admit_through(admit.admitted_seq.min(queue.tail()));
    }

    /// Adds a stamp a join of this instance learned: at the tail at once, or pending until the
    /// seqs before it are known.
    fn learn_stamp(&mut self, shard: usize, seq: u64, stamp: u64) {
        let queue = &self.queues[shard];
        if seq > queue.tail() {
            self.shards[shard].pending.insert(seq, stamp);
        }
        self.fold_pending(shard);
    }

    /// Moves pending stamps that now follow the tail into the mirror, and forgets those a sync
    /// brought already.
    fn fold_pending(&mut self, shard: usize) {
        let queue = &mut self.queues[shard];
        let pending = &mut self.shards[shard].pending;
        while let Some(entry) = pending.first_entry() {
            let seq = *entry.key();
            if seq <= queue.tail() {
                entry.remove();
            } else if seq == queue.tail() + 1 {
                queue.push(entry.remove());
            } else {
                break;
            }
        }
    }

    /// Where a sync of `shard` should read from: the stamp, left-log and move-log bytes
    /// applied.
    fn sync_from(&self, shard: usize) -> SyncFrom {
        SyncFrom {
            stamps: self.queues[shard].tail() * 8,
            lefts: self.shards[shard].left_bytes,
            moves: self.shards[shard].move_bytes,
        }
    }

    /// Replaces the mirror of `shard` with the whole queue read after a shuffle.
    pub(super) fn reload(&mut self, shard: usize, reply: &QueueReply) -> StoreResult<()> {
        let queue = reply.queue().ok_or_else(|| {
            StoreError::Unavailable("a shard's queue read back does not fit together".into())
        })?;
        self.queues[shard] = queue;
        self.shards[shard].left_bytes = reply.left_log_bytes;
        // Unknown until the next leaver is read.
        self.shards[shard].last_left = None;
        self.shards[shard].move_bytes = reply.move_log_bytes;
        self.fold_pending(shard);
        Ok(())
    }

    /// Whether Redis holds less of the shard than the mirror read up to `from` (or other bytes
    /// where the mirror's last ones were).
    fn rewound(&self, shard: usize, from: SyncFrom, reply: &SyncReply) -> bool {
        if reply.stamp_bytes < from.stamps
            || reply.left_bytes < from.lefts
            || reply.move_bytes < from.moves
        {
            return true;
        }
        let queue = &self.queues[shard];
        let last_stamp = queue.stamp(from.stamps / 8).map(u64::to_be_bytes);
        if last_stamp.is_some_and(|mine| reply.stamp_before != mine) {
            return true;
        }
        let last_left = self.shards[shard].last_left.map(u64::to_be_bytes);
        from.lefts == self.shards[shard].left_bytes
            && last_left.is_some_and(|mine| reply.left_before != mine)
    }

    /// Applies a sync reply; returns whether more bytes wait to be read.
    fn apply(&mut self, shard: usize, from: SyncFrom, reply: &SyncReply) -> bool {
        // A concurrent sync may have applied these bytes already: apply only from where we are.
        if self.queues[shard].tail() * 8 == from.stamps {
            self.queues[shard].extend_from_be_bytes(&reply.stamps);
            self.fold_pending(shard);
        }
        let queue = &mut self.queues[shard];
        let state = &mut self.shards[shard];
        if state.move_bytes == from.moves {
            // Each move puts a ticket at a place, whatever it held before: the log read in order
            // ends where Redis is.
            for chunk in reply.moves.chunks_exact(16) {
                let ticket = u64::from_be_bytes(chunk[..8].try_into().expect("8 bytes"));
                let seq = u64::from_be_bytes(chunk[8..].try_into().expect("8 bytes"));
                queue.place_ticket(ticket, seq);
                state.move_bytes += 16;
            }
        }
        if state.left_bytes == from.lefts {
            for chunk in reply.lefts.chunks_exact(8) {
                let seq = u64::from_be_bytes(chunk.try_into().expect("chunks of 8"));
                if !queue.contains(seq) {
                    // Its stamp is beyond what this read brought: take it up next time.
                    break;
                }
                queue.mark_left(seq);
                state.left_bytes += 8;
                state.last_left = Some(seq);
            }
        }
        queue.admit_through(reply.admitted_seq.min(queue.tail()));
        state.unclaimed = reply.unclaimed;
        state.credit = reply.credit;
        state.admitted_total = reply.admitted_total;
        state.abandoned_total = reply.abandoned_total;
        state.no_shows_total = reply.no_shows_total;
        state.left_total = reply.left_total;
        state.active = reply.active;
        queue.tail() * 8 < reply.stamp_bytes
            || state.left_bytes < reply.left_bytes
            || state.move_bytes < reply.move_bytes
    }
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// Brings the mirror of one shard up to date (and, with a fence, raises the shard's fence).
    pub(super) async fn sync_shard(
        &self,
        room: &Arc<Mutex<Room>>,
        shard: usize,
        now: u64,
        fence: Option<Fence>,
    ) -> StoreResult<()> {
        let keys = room.lock().shards[shard].keys.clone();
        // A fenced read is the scheduler's: the plan is made only from what the replicas have.
        let on = match fence {
            Some(_) => self.on_admission(&keys),
            None => self.on(&keys),
        };
        catch_up(&on, room, shard, now, fence, MAX_SYNC_BYTES).await?;
        Ok(())
    }

    /// Brings the mirror of every shard of the room up to date (and raises their fences).
    pub(super) async fn sync_room(
        &self,
        room: &Arc<Mutex<Room>>,
        now: u64,
        fence: Option<Fence>,
    ) -> StoreResult<()> {
        let shards = room.lock().queues.len();
        let syncs = (0..shards).map(|s| self.sync_shard(room, s, now, fence));
        for result in futures::future::join_all(syncs).await {
            result?;
        }
        Ok(())
    }
}

/// Reads one shard into the mirror, `max_bytes` of stamps and of the left log at a time, until
/// nothing more waits; raises the shard's fence first when given one. Returns the last report.
pub(super) async fn catch_up<C>(
    on: &OnShard<'_, C>,
    room: &Mutex<Room>,
    shard: usize,
    now: u64,
    fence: Option<Fence>,
    max_bytes: u64,
) -> StoreResult<SyncReply>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    let seen = room.lock().seen_to_send(shard, now);
    if !seen.is_empty() {
        on.seen(now, &seen).await?;
    }
    let mut fence = fence;
    loop {
        let (from, window, abandon_after) = {
            let r = room.lock();
            let config = &r.record.config;
            (
                r.sync_from(shard),
                config.claim_window_ms(),
                config.abandon_after_ms(),
            )
        };
        let reply = on
            .sync(now, window, abandon_after, from, max_bytes, fence.take())
            .await?;
        let shuffled_us = room.lock().queues[shard].shuffled_us();
        if reply.shuffled_us != shuffled_us {
            // A shuffle moved stamps and leavers that reading on from here would miss.
            let queue = on.queue().await?;
            room.lock().reload(shard, &queue)?;
            continue;
        }
        if room.lock().rewound(shard, from, &reply) {
            // Redis no longer holds what this mirror read: a replica that had not received the
            // last writes took over. Reading on would take new places for old ones.
            tracing::warn!(
                shard,
                "a shard went back in Redis (a failover?): read again whole"
            );
            let queue = on.queue().await?;
            let mut r = room.lock();
            // Stamps this instance's joins learned may be of joins Redis no longer has.
            r.shards[shard].pending.clear();
            r.reload(shard, &queue)?;
            continue;
        }
        if !room.lock().apply(shard, from, &reply) {
            return Ok(reply);
        }
    }
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// Applies the shuffles of the room's events that have started by `now` to every shard that
    /// has not had them (whichever instance gets there first; the script applies each once),
    /// and brings the mirror to the shuffled queue. Nothing to do, and no round trip, once the
    /// mirror has seen them.
    pub(super) async fn shuffle_due(&self, room: &Arc<Mutex<Room>>, now: u64) -> StoreResult<()> {
        let due = {
            let r = room.lock();
            let shuffled_us = r.queues.iter().map(ShardQueue::shuffled_us).min();
            ShuffleSpec::due(&r.record.events, shuffled_us.unwrap_or(0), now)
        };
        for spec in due {
            let shards = room.lock().queues.len();
            for shard in 0..shards {
                self.shuffle_shard(room, shard, &spec, now).await?;
            }
        }
        Ok(())
    }

    async fn shuffle_shard(
        &self,
        room: &Arc<Mutex<Room>>,
        shard: usize,
        spec: &ShuffleSpec,
        now: u64,
    ) -> StoreResult<()> {
        const TRIES: usize = 3;
        let (keys, epoch) = {
            let r = room.lock();
            (r.shards[shard].keys.clone(), r.record.epoch)
        };
        let on = self.on(&keys);
        for _ in 0..TRIES {
            catch_up(&on, room, shard, now, None, MAX_SYNC_BYTES).await?;
            let perm = {
                let r = room.lock();
                let queue = &r.queues[shard];
                if queue.shuffled_us() >= spec.start_us {
                    return Ok(());
                }
                let (first, last, floor) = queue.prequeue_block(spec.prequeue_us, spec.start_us);
                spec.permute(epoch, shard as u16, first, last, floor)
            };
            if on.shuffle(spec, &perm).await?.is_some() {
                let queue = on.queue().await?;
                return room.lock().reload(shard, &queue);
            }
        }
        Err(StoreError::Unavailable(format!(
            "the pre-queue of shard {shard} kept changing while it was shuffled"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use queuegate::{RoomConfig, RoomId};

    fn room() -> Room {
        Room::new(RoomRecord {
            id: RoomId::parse("rewound").unwrap(),
            config: RoomConfig {
                shards: 1,
                ..RoomConfig::default()
            },
            paused: false,
            epoch: 1,
            measured_rate: None,
            events: Default::default(),
            template: None,
            opens_at: None,
        })
    }

    fn bytes(values: &[u64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    /// A failover to a replica that missed the last writes takes a shard back: the mirror sees
    /// it whether Redis now holds less than it read or, new joins having filled the gap, other
    /// stamps or leavers where its last ones were.
    #[test]
    fn a_shard_redis_took_back_is_noticed() {
        let mut r = room();
        let start = r.sync_from(0);
        let read = SyncReply {
            stamp_bytes: 24,
            stamps: bytes(&[10, 20, 30]),
            left_bytes: 8,
            lefts: bytes(&[2]),
            ..SyncReply::default()
        };
        assert!(!r.rewound(0, start, &read));
        r.apply(0, start, &read);
        let from = r.sync_from(0);
        let same = SyncReply {
            stamp_bytes: 24,
            left_bytes: 8,
            stamp_before: bytes(&[30]),
            left_before: bytes(&[2]),
            ..SyncReply::default()
        };
        assert!(!r.rewound(0, from, &same));
        let shorter = SyncReply {
            stamp_bytes: 16,
            stamp_before: Vec::new(),
            ..same.clone()
        };
        assert!(r.rewound(0, from, &shorter));
        let other_stamps = SyncReply {
            stamp_bytes: 32,
            stamp_before: bytes(&[31]),
            ..same.clone()
        };
        assert!(r.rewound(0, from, &other_stamps));
        let other_leaver = SyncReply {
            left_before: bytes(&[1]),
            ..same.clone()
        };
        assert!(r.rewound(0, from, &other_leaver));
        let fewer_leavers = SyncReply {
            left_bytes: 0,
            left_before: Vec::new(),
            ..same
        };
        assert!(r.rewound(0, from, &fewer_leavers));
    }
}
