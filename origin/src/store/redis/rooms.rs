//! Room records in Redis (a hash per room, and the set of room ids) and this instance's cache of
//! them, which also holds each room's mirror.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use queuegate::event::Events;
use queuegate::report::{ReportMinute, KEPT_MINUTES};
use queuegate::service::RouteTable;
use queuegate::template::TemplateRef;
use queuegate::{RoomConfig, RoomId};
use redis::aio::ConnectionLike;
use redis::AsyncCommands;

use super::keys;
use super::mirror::Room;
use super::store::RedisStore;
use crate::store::{RoomRecord, StoreError, StoreResult};

/// After reading a room id Redis does not know, how long other unknown ids are answered unknown
/// without a read.
const UNKNOWN_ROOM_MS: u64 = 1_000;

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
        let created = self
            .redis
            .call(|mut conn| async move {
                let created: bool = conn.hset_nx(&key, "epoch", format!("{epoch:08x}")).await?;
                conn.hset::<_, _, _, ()>(&key, "config", json).await?;
                conn.sadd::<_, _, ()>(keys::ROOMS, id).await?;
                Ok(created)
            })
            .await?;
        self.rooms_changed().await?;
        Ok(created)
    }

    pub(super) async fn write_paused(&self, id: &RoomId, paused: bool) -> StoreResult<()> {
        let key = keys::room(id);
        self.redis
            .call(|mut conn| async move {
                conn.hset::<_, _, _, ()>(key, "paused", if paused { "1" } else { "0" })
                    .await
            })
            .await?;
        self.rooms_changed().await
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
        self.rooms_changed().await?;
        Ok(Ok(()))
    }

    /// Keeps a page template's text under its hash, then names it in the room's record (or
    /// removes the name): an instance that reads the name finds the text. The text the room
    /// named before stays a minute, for instances that have not read the change yet.
    pub(super) async fn write_template(
        &self,
        id: &RoomId,
        template: Option<&str>,
        previous: Option<&TemplateRef>,
    ) -> StoreResult<Option<TemplateRef>> {
        let room_key = keys::room(id);
        let reference = template.map(TemplateRef::of);
        let text = template.map(str::to_owned);
        let named = reference.clone();
        let stale = previous
            .filter(|p| reference.as_ref() != Some(*p))
            .map(|p| keys::template(id, &p.hash));
        let id = id.clone();
        self.redis
            .call(|mut conn| async move {
                match (text, named) {
                    (Some(text), Some(reference)) => {
                        conn.set::<_, _, ()>(keys::template(&id, &reference.hash), text)
                            .await?;
                        let json =
                            serde_json::to_string(&reference).expect("a reference serializes");
                        conn.hset::<_, _, _, ()>(&room_key, "template", json)
                            .await?;
                    }
                    _ => conn.hdel::<_, _, ()>(&room_key, "template").await?,
                }
                if let Some(stale) = stale {
                    conn.expire::<_, ()>(stale, 60).await?;
                }
                Ok(())
            })
            .await?;
        self.rooms_changed().await?;
        Ok(reference)
    }

    /// Merges `row` into the room's report minute it is of ([`ReportMinute::merged`]), keeping
    /// the last [`KEPT_MINUTES`]. Read, then written: one scheduler writes at a time, and should
    /// two overlap as the lease moves, the merge only ever keeps the higher counts.
    pub(super) async fn write_minute(&self, id: &RoomId, row: &ReportMinute) -> StoreResult<()> {
        let key = keys::report(id);
        let minute = row.minute_ms;
        let kept = self.read_minutes(id, minute).await?;
        let row = match kept.iter().find(|m| m.minute_ms == minute) {
            Some(kept) => row.clone().merged(kept),
            None => row.clone(),
        };
        let json = serde_json::to_string(&row).expect("a report minute serializes");
        self.redis
            .call(|mut conn| async move {
                redis::pipe()
                    .atomic()
                    .zrembyscore(&key, minute, minute)
                    .ignore()
                    .zadd(&key, json, minute)
                    .ignore()
                    .zremrangebyrank(&key, 0, -(KEPT_MINUTES as isize) - 1)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
    }

    /// The room's report minutes that began at `since_ms` or later, oldest first.
    pub(super) async fn read_minutes(
        &self,
        id: &RoomId,
        since_ms: u64,
    ) -> StoreResult<Vec<ReportMinute>> {
        let key = keys::report(id);
        let rows: Vec<String> = self
            .redis
            .call(|mut conn| async move { conn.zrangebyscore(key, since_ms, "+inf").await })
            .await?;
        rows.iter()
            .map(|row| {
                serde_json::from_str(row)
                    .map_err(|e| StoreError::Unavailable(format!("a report minute in Redis: {e}")))
            })
            .collect()
    }

    /// A page template's text by its hash, while Redis keeps it.
    pub(super) async fn read_template(
        &self,
        id: &RoomId,
        reference: &TemplateRef,
    ) -> StoreResult<Option<String>> {
        let key = keys::template(id, &reference.hash);
        self.redis
            .call(|mut conn| async move { conn.get(key).await })
            .await
    }

    /// The room's mirror, fetching the record when this instance has not seen the room.
    pub(super) async fn mirror(&self, id: &RoomId, now: u64) -> StoreResult<Arc<Mutex<Room>>> {
        // Nothing is answered from a view older than what Redis held when the caller arrived:
        // while the versions cannot be read, the view may be behind what another instance
        // already answered, so nothing is answered from it.
        self.fresh(now).await?;
        let room = self.cached_mirror(id, now).await?;
        self.queue_current(&room, now).await?;
        // Nobody sees a pre-queue unshuffled after its opening, whatever it asks.
        self.shuffle_due(&room, now).await?;
        Ok(room)
    }

    async fn cached_mirror(&self, id: &RoomId, now: u64) -> StoreResult<Arc<Mutex<Room>>> {
        let cached = self.rooms.read().get(id).cloned();
        if let Some(room) = cached {
            return Ok(room);
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
        template: fields
            .get("template")
            .and_then(|t| serde_json::from_str(t).ok()),
        opens_at: None,
    })
}

/// A room's events as stored: JSON, `{}` when the room never had any.
fn parse_events(json: &str) -> Events {
    serde_json::from_str(json).unwrap_or_default()
}
