//! What keeps every instance's view as new as Redis when a request arrives: one hash of
//! counters, `qg:versions`, with `rooms` (any room's record changed) and `q:<room>` (a room's
//! queue changed where a mirror cannot see it coming: an admission batch, a leave). Writers
//! increment a counter after their write; before an instance answers from its cache or its
//! mirror, it reads the hash (one read shared by every request waiting at that moment, one at a
//! time per instance), reads the rooms again if `rooms` moved, and brings a room's mirror up to
//! date before answering from it if its `q:` counter moved. So an answer never comes from a
//! view older than what another instance had already answered: behind a load balancer, a
//! visitor sees what one instance would show.
//!
//! The same hash says whether this instance is alone: each instance that answers stamps its
//! own field `i:<instance>` with the time (at most once a second, in the read it makes
//! anyway). Joins that land through other instances reach a mirror only when it catches up,
//! so the answers to a fresh join and to its first polls catch up first; an instance that has
//! seen no other answer for a while has nothing to catch up with, and skips that cost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use queuegate::RoomId;
use redis::aio::ConnectionLike;
use redis::AsyncCommands;

use super::keys;
use super::mirror::Room;
use super::store::{RedisStore, LATE_JOIN_MARGIN_MS};
use crate::store::{StoreError, StoreResult};

/// The hash's field for the rooms' records.
const ROOMS_FIELD: &str = "rooms";

fn queue_field(room: &RoomId) -> String {
    format!("q:{room}")
}

/// After a failed read of the versions, how long callers go on without trying again.
const FAILED_READ_MS: u64 = 1_000;

/// The prefix of an instance's field, stamped with when it last answered.
const INSTANCE_PREFIX: &str = "i:";
/// How often an instance stamps its field (in a read it makes anyway).
const STAMP_EVERY_MS: u64 = 1_000;
/// How long after its last stamp another instance counts as answering, at the least: longer
/// than a join can take to land and than the polls after a join catch up for (the store's
/// timeout and `LATE_JOIN_MARGIN_MS` after that; see `answering_ms`), so that none of its
/// joins can still land unseen.
const ANSWERING_MS: u64 = 15_000;
/// A field not stamped for this long belongs to an instance that is gone: removed.
const GONE_MS: u64 = 600_000;

/// Which versions this instance's cache holds, and the reads of them.
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
    /// This instance's field, and when it last stamped it.
    instance: String,
    stamped_at: AtomicU64,
    /// Another instance answered lately (as the last read found): until a read says so,
    /// assumed.
    others: AtomicBool,
}

impl Default for Versions {
    fn default() -> Self {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).expect("the system's random source");
        Versions {
            started: AtomicU64::default(),
            done: AtomicU64::default(),
            rooms: AtomicU64::default(),
            failed_at: AtomicU64::default(),
            check: tokio::sync::Mutex::default(),
            instance: format!("{INSTANCE_PREFIX}{:016x}", u64::from_le_bytes(id)),
            stamped_at: AtomicU64::default(),
            others: AtomicBool::new(true),
        }
    }
}

/// Whether a read of the hash at `now` finds another instance than `me` answering lately; and
/// the fields of instances gone long ago.
fn others_answering(
    current: &HashMap<String, u64>,
    me: &str,
    now: u64,
    answering_ms: u64,
) -> (bool, Vec<String>) {
    let mut others = false;
    let mut gone = Vec::new();
    for (field, &stamped) in current {
        if field == me || !field.starts_with(INSTANCE_PREFIX) {
            continue;
        }
        // A stamp ahead of this instance's clock counts as answering.
        others |= stamped + answering_ms > now;
        if stamped + GONE_MS < now {
            gone.push(field.clone());
        }
    }
    (others, gone)
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

    /// Whether another instance answered lately, as the last read found.
    pub(super) fn others_answering(&self) -> bool {
        self.others.load(Ordering::SeqCst)
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
        let stamp = now >= versions.stamped_at.load(Ordering::SeqCst) + STAMP_EVERY_MS;
        let read = async {
            let mut pipe = redis::pipe();
            if stamp {
                pipe.hset(keys::VERSIONS, &versions.instance, now).ignore();
            }
            pipe.hgetall(keys::VERSIONS);
            let (current,): (HashMap<String, u64>,) = self
                .redis
                .call(|mut conn| async move { pipe.query_async(&mut conn).await })
                .await?;
            if stamp {
                versions.stamped_at.store(now, Ordering::SeqCst);
            }
            let timeout = self.redis.timeout().as_millis() as u64;
            let answering_ms = ANSWERING_MS.max(2 * (timeout + LATE_JOIN_MARGIN_MS));
            let (others, gone) = others_answering(&current, &versions.instance, now, answering_ms);
            versions.others.store(others, Ordering::SeqCst);
            if !gone.is_empty() {
                self.redis
                    .call(
                        |mut conn| async move { conn.hdel::<_, _, ()>(keys::VERSIONS, gone).await },
                    )
                    .await?;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(fields: &[(&str, u64)]) -> HashMap<String, u64> {
        fields.iter().map(|&(f, v)| (f.to_owned(), v)).collect()
    }

    #[test]
    fn others_answer_until_their_stamps_age() {
        let now = 1_000_000;
        let current = hash(&[("rooms", 7), ("q:sale", 3), ("i:me", now)]);
        assert_eq!(
            others_answering(&current, "i:me", now, ANSWERING_MS),
            (false, vec![])
        );
        let current = hash(&[("i:me", now), ("i:other", now - ANSWERING_MS + 1)]);
        assert!(others_answering(&current, "i:me", now, ANSWERING_MS).0);
        let current = hash(&[("i:other", now - ANSWERING_MS)]);
        assert!(!others_answering(&current, "i:me", now, ANSWERING_MS).0);
        // A clock ahead of this one's still answers.
        let current = hash(&[("i:other", now + 60_000)]);
        assert!(others_answering(&current, "i:me", now, ANSWERING_MS).0);
        let current = hash(&[("i:old", now - GONE_MS - 1), ("i:other", now)]);
        assert_eq!(
            others_answering(&current, "i:me", now, ANSWERING_MS),
            (true, vec!["i:old".to_owned()])
        );
    }
}
