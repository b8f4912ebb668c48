//! Room records in Redis (a hash per room, and the set of room ids) and this instance's cache of
//! them, which also holds each room's mirror.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use queuegate::event::Events;
use queuegate::service::RouteTable;
use queuegate::{RoomConfig, RoomId};
use redis::aio::ConnectionLike;
use redis::AsyncCommands;

use super::keys;
use super::mirror::Room;
use super::store::RedisStore;
use crate::store::{RoomRecord, StoreError, StoreResult};

/// Which rooms' version this instance's cache holds, and the reads of it ([`RedisStore::fresh_rooms`]).
#[derive(Default)]
pub(super) struct RoomsVersion {
    /// Reads started, and the newest one finished (each numbered as it starts).
    started: AtomicU64,
    done: AtomicU64,
    /// The version the cache was last read at.
    known: AtomicU64,
    /// When a read last failed (Unix ms): for a second after, callers go on without one rather
    /// than each wait for Redis's timeout.
    failed_at: AtomicU64,
    check: tokio::sync::Mutex<()>,
}

/// After reading a room id Redis does not know, how long other unknown ids are answered unknown
/// without a read.
const UNKNOWN_ROOM_MS: u64 = 1_000;
/// After a failed read of the rooms' version, how long callers go on without trying again.
const FAILED_READ_MS: u64 = 1_000;

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    pub(super) async fn fetch_record(&self, id: &RoomId) -> StoreResult<Option<RoomRecord>> {
        let key = keys::room(id);
        let fields: HashMap<String, String> = self
            .redis
            .call(|mut conn| async move { conn.hgetall(key).await })
            .await?;
        Ok(parse_record(id, &fields))
    }

    /// Writes a room's configuration, and its epoch if the room is new. Returns whether it is.
    pub(super) async fn write_record(
        &self,
        id: &RoomId,
        config: &RoomConfig,
        epoch: u32,
    ) -> StoreResult<bool> {
        let key = keys::room(id);
        let json = serde_json::to_string(config).expect("a config serializes");
        let id = id.as_str().to_owned();
        self.redis
            .call(|mut conn| async move {
                let created: bool = conn.hset_nx(&key, "epoch", format!("{epoch:08x}")).await?;
                conn.hset::<_, _, _, ()>(&key, "config", json).await?;
                conn.sadd::<_, _, ()>(keys::ROOMS, id).await?;
                conn.incr::<_, _, ()>(keys::ROOMS_VERSION, 1).await?;
                Ok(created)
            })
            .await
    }

    pub(super) async fn write_paused(&self, id: &RoomId, paused: bool) -> StoreResult<()> {
        let key = keys::room(id);
        self.redis
            .call(|mut conn| async move {
                conn.hset::<_, _, _, ()>(key, "paused", if paused { "1" } else { "0" })
                    .await?;
                conn.incr(keys::ROOMS_VERSION, 1).await
            })
            .await
    }

    /// Writes a room's events if it still holds `from` (compare and set); else answers the
    /// events it holds.
    pub(super) async fn write_events(
        &self,
        id: &RoomId,
        from: &Events,
        to: &Events,
    ) -> StoreResult<Result<(), Events>> {
        let key = keys::room(id);
        let from = serde_json::to_string(from).expect("events serialize");
        let to = serde_json::to_string(to).expect("events serialize");
        let (stored, held): (u64, String) = self
            .redis
            .script(
                &super::scripts::SET_EVENTS,
                &[key],
                &[from.as_str().into(), to.as_str().into()],
            )
            .await?;
        if stored != 1 {
            return Ok(Err(parse_events(&held)));
        }
        self.redis
            .call(|mut conn| async move { conn.incr::<_, _, ()>(keys::ROOMS_VERSION, 1).await })
            .await?;
        Ok(Ok(()))
    }

    /// Brings this instance's rooms (their records, the route table) up to what Redis held when
    /// the caller arrived: a read of the rooms' version that started after that, and the rooms
    /// read again if it moved. Callers at once share one read (one at a time per instance, so a
    /// crowd costs a read a round trip, and each caller waits at most two).
    pub(super) async fn fresh_rooms(&self, now: u64) -> StoreResult<()> {
        let version = &self.rooms_version;
        if now < version.failed_at.load(Ordering::SeqCst) + FAILED_READ_MS {
            return Err(StoreError::Unavailable(
                "the rooms' version could not be read a moment ago".into(),
            ));
        }
        let arrived = version.started.load(Ordering::SeqCst);
        if version.done.load(Ordering::SeqCst) > arrived {
            return Ok(());
        }
        let _one_at_a_time = version.check.lock().await;
        if version.done.load(Ordering::SeqCst) > arrived {
            return Ok(());
        }
        let ticket = version.started.fetch_add(1, Ordering::SeqCst) + 1;
        let read = async {
            let current: Option<u64> = self
                .redis
                .call(|mut conn| async move { conn.get(keys::ROOMS_VERSION).await })
                .await?;
            let current = current.unwrap_or(0);
            if current != version.known.load(Ordering::SeqCst) {
                self.all_rooms().await?;
                version.known.store(current, Ordering::SeqCst);
            }
            StoreResult::Ok(())
        };
        if let Err(error) = read.await {
            version.failed_at.store(now, Ordering::SeqCst);
            return Err(error);
        }
        version.done.store(ticket, Ordering::SeqCst);
        Ok(())
    }

    /// The room's mirror, fetching the record when this instance has not seen the room.
    pub(super) async fn mirror(&self, id: &RoomId, now: u64) -> StoreResult<Arc<Mutex<Room>>> {
        let room = self.cached_mirror(id, now).await?;
        // Nobody sees a pre-queue unshuffled after its opening, whatever it asks.
        self.shuffle_due(&room, now).await?;
        Ok(room)
    }

    async fn cached_mirror(&self, id: &RoomId, now: u64) -> StoreResult<Arc<Mutex<Room>>> {
        let cached = self.rooms.read().get(id).cloned();
        if let Some(room) = cached {
            return Ok(room);
        }
        // A room created through another instance is known here as soon as it exists.
        if self.fresh_rooms(now).await.is_ok() {
            if let Some(room) = self.rooms.read().get(id).cloned() {
                return Ok(room);
            }
        }
        {
            // One read a second for all the ids this instance does not know, whoever sends them.
            let mut until = self.unknown_until.lock();
            if *until > now {
                return Err(StoreError::UnknownRoom(id.clone()));
            }
            *until = now + UNKNOWN_ROOM_MS;
        }
        let started = Instant::now();
        match self.fetch_record(id).await? {
            Some(record) => Ok(self.install(record, started)),
            None => Err(StoreError::UnknownRoom(id.clone())),
        }
    }

    /// Puts a record read from Redis (the read began at `read_at`) into the cache; a new
    /// epoch starts a new mirror.
    pub(super) fn install(&self, record: RoomRecord, read_at: Instant) -> Arc<Mutex<Room>> {
        let mut rooms = self.rooms.write();
        if let Some(room) = rooms.get(&record.id) {
            let mut guard = room.lock();
            if guard.record.epoch == record.epoch
                && guard.record.config.shards == record.config.shards
            {
                if guard.changed < read_at {
                    guard.record = record;
                }
                return room.clone();
            }
        }
        let room = Arc::new(Mutex::new(Room::new(record.clone())));
        rooms.insert(record.id, room.clone());
        room
    }

    /// Every room in Redis, installed in this instance's cache and route table.
    pub(super) async fn all_rooms(&self) -> StoreResult<Vec<RoomRecord>> {
        let build = self.routes.begin();
        let read_at = Instant::now();
        let ids: Vec<String> = self
            .redis
            .call(|mut conn| async move { conn.smembers(keys::ROOMS).await })
            .await?;
        let mut records = Vec::new();
        for id in ids {
            let Ok(id) = RoomId::parse(&id) else {
                continue;
            };
            if let Some(record) = self.fetch_record(&id).await? {
                let room = self.install(record, read_at);
                records.push(room.lock().record.clone());
            }
        }
        records.sort_by(|a, b| a.id.cmp(&b.id));
        self.routes.finish(build, RouteTable::build(&records));
        Ok(records)
    }

    pub(super) async fn set_measured_rate(
        &self,
        id: &RoomId,
        rate: Option<f64>,
    ) -> StoreResult<()> {
        let key = keys::room(id);
        self.redis
            .call(|mut conn| async move {
                match rate {
                    Some(rate) => conn.hset::<_, _, _, ()>(key, "rate", rate).await,
                    None => conn.hdel::<_, _, ()>(key, "rate").await,
                }
            })
            .await?;
        if let Some(room) = self.rooms.read().get(id) {
            let mut r = room.lock();
            r.record.measured_rate = rate;
            r.changed = Instant::now();
        }
        Ok(())
    }
}

fn parse_record(id: &RoomId, fields: &HashMap<String, String>) -> Option<RoomRecord> {
    let epoch = u32::from_str_radix(fields.get("epoch")?, 16).ok()?;
    let config: RoomConfig = serde_json::from_str(fields.get("config")?).ok()?;
    Some(RoomRecord {
        id: id.clone(),
        config,
        paused: fields.get("paused").is_some_and(|p| p == "1"),
        epoch,
        measured_rate: fields.get("rate").and_then(|r| r.parse().ok()),
        events: fields
            .get("events")
            .map(|e| parse_events(e))
            .unwrap_or_default(),
        opens_at: None,
    })
}

/// A room's events as stored: JSON, `{}` when the room never had any.
fn parse_events(json: &str) -> Events {
    serde_json::from_str(json).unwrap_or_default()
}
