//! What keeps every instance's view as new as Redis when a request arrives: one hash of
//! counters, `qg:versions`, with `rooms` (any room's record changed) and `q:<room>` (a room's
//! queue changed where a mirror cannot see it coming: an admission batch, a leave). Writers
//! increment a counter after their write; before an instance answers from its cache or its
//! mirror, it reads the hash (one read shared by every request waiting at that moment, one at a
//! time per instance), reads the rooms again if `rooms` moved, and brings a room's mirror up to
//! date before answering from it if its `q:` counter moved. So an answer never comes from a
//! view older than what another instance had already answered: behind a load balancer, a
//! visitor sees what one instance would show.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use queuegate::RoomId;
use redis::aio::ConnectionLike;
use redis::AsyncCommands;

use super::keys;
use super::mirror::Room;
use super::store::RedisStore;
use crate::store::{StoreError, StoreResult};

/// The hash's field for the rooms' records.
const ROOMS_FIELD: &str = "rooms";

fn queue_field(room: &RoomId) -> String {
    format!("q:{room}")
}

/// After a failed read of the versions, how long callers go on without trying again.
const FAILED_READ_MS: u64 = 1_000;

/// Which versions this instance's cache holds, and the reads of them.
#[derive(Default)]
pub(super) struct Versions {
    /// Reads started, and the newest one finished (each numbered as it starts).
    started: AtomicU64,
    done: AtomicU64,
    /// The rooms' version the cache was last read at.
    rooms: AtomicU64,
    /// When a read last failed (Unix ms): for a second after, callers go on without one rather
    /// than each wait for Redis's timeout.
    failed_at: AtomicU64,
    check: tokio::sync::Mutex<()>,
}

/// A room's queue version: the newest this instance read, and the one its mirror was last
/// brought up to; and the catch-ups of the mirror, numbered as they start, so that callers at
/// once share one.
#[derive(Debug, Default)]
pub(super) struct QueueVersion {
    pub read: u64,
    pub synced: u64,
    started: u64,
    done: u64,
    /// One catch-up at a time per room: callers behind it find it done.
    catching_up: Arc<tokio::sync::Mutex<()>>,
}

impl Versions {
    /// Redis was reached: a failed read no longer holds the next one back.
    pub(super) fn reachable(&self) {
        self.failed_at.store(0, Ordering::SeqCst);
    }
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// Counts a change to a room's record (after it is written).
    pub(super) async fn rooms_changed(&self) -> StoreResult<()> {
        self.redis
            .call(|mut conn| async move {
                conn.hincr::<_, _, _, ()>(keys::VERSIONS, ROOMS_FIELD, 1)
                    .await
            })
            .await
    }

    /// Counts a change to a room's queue that mirrors cannot see coming (after it is written).
    pub(super) async fn queue_changed(&self, room: &RoomId) -> StoreResult<()> {
        let field = queue_field(room);
        self.redis
            .call(
                |mut conn| async move { conn.hincr::<_, _, _, ()>(keys::VERSIONS, field, 1).await },
            )
            .await
    }

    /// Brings this instance's rooms (their records, the route table) and what it knows of the
    /// queues' versions up to what Redis held when the caller arrived: a read of the versions
    /// that started after that. Callers at once share one read (so a crowd costs a read a
    /// round trip, and each caller waits at most two).
    pub(super) async fn fresh(&self, now: u64) -> StoreResult<()> {
        let versions = &self.versions;
        if now < versions.failed_at.load(Ordering::SeqCst) + FAILED_READ_MS {
            return Err(StoreError::Unavailable(
                "the versions could not be read a moment ago".into(),
            ));
        }
        let arrived = versions.started.load(Ordering::SeqCst);
        if versions.done.load(Ordering::SeqCst) > arrived {
            return Ok(());
        }
        let _one_at_a_time = versions.check.lock().await;
        if versions.done.load(Ordering::SeqCst) > arrived {
            return Ok(());
        }
        let ticket = versions.started.fetch_add(1, Ordering::SeqCst) + 1;
        let read = async {
            let current: HashMap<String, u64> = self
                .redis
                .call(|mut conn| async move { conn.hgetall(keys::VERSIONS).await })
                .await?;
            let rooms = current.get(ROOMS_FIELD).copied().unwrap_or(0);
            if rooms != versions.rooms.load(Ordering::SeqCst) {
                self.all_rooms().await?;
                versions.rooms.store(rooms, Ordering::SeqCst);
            }
            let mirrors: Vec<(RoomId, Arc<Mutex<Room>>)> = self
                .rooms
                .read()
                .iter()
                .map(|(id, room)| (id.clone(), room.clone()))
                .collect();
            for (id, room) in mirrors {
                if let Some(&version) = current.get(&queue_field(&id)) {
                    let mut r = room.lock();
                    r.queue_version.read = r.queue_version.read.max(version);
                }
            }
            StoreResult::Ok(())
        };
        if let Err(error) = read.await {
            versions.failed_at.store(now, Ordering::SeqCst);
            return Err(error);
        }
        versions.done.store(ticket, Ordering::SeqCst);
        Ok(())
    }

    /// Brings the room's mirror up to the newest queue version read, if it is behind.
    pub(super) async fn queue_current(&self, room: &Arc<Mutex<Room>>, now: u64) -> StoreResult<()> {
        let wanted = {
            let r = room.lock();
            if r.queue_version.synced >= r.queue_version.read {
                return Ok(());
            }
            r.queue_version.read
        };
        self.caught_up_since_arrival(room, now).await?;
        let mut r = room.lock();
        r.queue_version.synced = r.queue_version.synced.max(wanted);
        Ok(())
    }

    /// Brings every shard of the room's mirror up to what Redis held when the caller arrived:
    /// a catch-up that began after that (callers at once share one; each waits for two at most).
    pub(super) async fn caught_up_since_arrival(
        &self,
        room: &Arc<Mutex<Room>>,
        now: u64,
    ) -> StoreResult<()> {
        let (arrived, lock) = {
            let r = room.lock();
            (r.queue_version.started, r.queue_version.catching_up.clone())
        };
        let _one_at_a_time = lock.lock().await;
        let ticket = {
            let mut r = room.lock();
            if r.queue_version.done > arrived {
                return Ok(());
            }
            r.queue_version.started += 1;
            r.queue_version.started
        };
        self.sync_room(room, now, None).await?;
        let mut r = room.lock();
        r.queue_version.done = r.queue_version.done.max(ticket);
        Ok(())
    }
}
