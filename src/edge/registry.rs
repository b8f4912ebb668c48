//! The registry object (one for the whole deployment): every room's record, what was last
//! published of its shards (the summaries isolates answer polls from), and the scheduler's
//! admission lease with its fencing counter. Small, and read by each isolate at most once a
//! second.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

use super::protocol::*;
use super::respond::{error, json, operation, Answer};
use crate::api::LeaseResponse;
use crate::error::ErrorCode;
use crate::queue::merge_summaries;
use crate::report::{ReportMinute, KEPT_MINUTES, MINUTE_MS};
use crate::room::RoomRecord;
use crate::template::TemplateRef;

#[durable_object]
pub struct Registry {
    sql: SqlStorage,
    rooms: RefCell<Option<BTreeMap<String, RoomEntry>>>,
}

#[derive(Deserialize)]
struct Row {
    id: String,
    entry: String,
}

#[derive(Deserialize)]
struct LeaseRow {
    holder: String,
    expires: i64,
    fence: i64,
}

impl DurableObject for Registry {
    fn new(state: State, _env: Env) -> Self {
        Registry {
            sql: state.storage().sql(),
            rooms: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        let body = req.bytes().await?;
        if let Err(e) = self.ensure_loaded() {
            return error(
                ErrorCode::Internal,
                &format!("the registry could not load: {e}"),
            );
        }
        match path.as_str() {
            "/rooms" => json(&RoomsRes {
                rooms: self.entries(),
            }),
            "/put" => operation(&body, |r: PutReq| self.put(r)),
            "/patch" => operation(&body, |r: PatchReq| self.patch(r)),
            "/set_template" => operation(&body, |r: SetTemplateReq| self.set_template(r)),
            "/template" => operation(&body, |r: TemplateReq| self.template(r)),
            "/publish" => operation(&body, |r: PublishReq| self.publish(r)),
            "/report" => operation(&body, |r: ReportReq| self.report(r)),
            "/publish_shard" => operation(&body, |r: PublishShardReq| self.publish_shard(r)),
            "/lease" => operation(&body, |r: LeaseReq| self.lease(r)),
            "/bump_fence" => operation(&body, |_: serde_json::Value| self.bump_fence()),
            _ => error(ErrorCode::NotFound, "no such registry operation"),
        }
    }
}

impl Registry {
    fn ensure_loaded(&self) -> Result<()> {
        if self.rooms.borrow().is_some() {
            return Ok(());
        }
        self.sql.exec(
            "CREATE TABLE IF NOT EXISTS rooms(id TEXT PRIMARY KEY, entry TEXT NOT NULL)",
            None,
        )?;
        self.sql.exec(
            "CREATE TABLE IF NOT EXISTS lease(k INTEGER PRIMARY KEY, holder TEXT NOT NULL, \
             expires INTEGER NOT NULL, fence INTEGER NOT NULL)",
            None,
        )?;
        // A room's page template, apart from its entry: the entries are read by every isolate
        // each second, a template only when one compiles it.
        self.sql.exec(
            "CREATE TABLE IF NOT EXISTS templates(id TEXT PRIMARY KEY, hash TEXT NOT NULL, \
             text TEXT NOT NULL)",
            None,
        )?;
        // A room's report minutes, written each tick by the scheduler's batch and read only
        // when an operator asks.
        self.sql.exec(
            "CREATE TABLE IF NOT EXISTS report(id TEXT NOT NULL, minute INTEGER NOT NULL, \
             row TEXT NOT NULL, PRIMARY KEY(id, minute))",
            None,
        )?;
        let rows: Vec<Row> = self
            .sql
            .exec("SELECT id, entry FROM rooms", None)?
            .to_array()?;
        let mut rooms = BTreeMap::new();
        for row in rows {
            let entry: RoomEntry = serde_json::from_str(&row.entry)
                .map_err(|e| worker::Error::RustError(format!("room {}: {e}", row.id)))?;
            rooms.insert(row.id, entry);
        }
        *self.rooms.borrow_mut() = Some(rooms);
        Ok(())
    }

    fn entries(&self) -> Vec<RoomEntry> {
        self.rooms
            .borrow()
            .as_ref()
            .map(|rooms| rooms.values().cloned().collect())
            .unwrap_or_default()
    }

    fn store(&self, entry: RoomEntry) -> Answer<RoomEntry> {
        let id = entry.record.id.as_str().to_owned();
        let text = serde_json::to_string(&entry).expect("an entry serializes");
        self.sql
            .exec(
                "INSERT INTO rooms(id, entry) VALUES (?, ?) \
                 ON CONFLICT(id) DO UPDATE SET entry = excluded.entry",
                vec![id.clone().into(), text.into()],
            )
            .map_err(|e| (ErrorCode::Internal, format!("the rooms table: {e}")))?;
        if let Some(rooms) = self.rooms.borrow_mut().as_mut() {
            rooms.insert(id, entry.clone());
        }
        Ok(entry)
    }

    fn get(&self, id: &str) -> Option<RoomEntry> {
        self.rooms
            .borrow()
            .as_ref()
            .and_then(|r| r.get(id).cloned())
    }

    fn put(&self, req: PutReq) -> Answer<PutRes> {
        match self.get(req.id.as_str()) {
            Some(mut entry) => {
                if entry.record.config.shards != req.config.shards {
                    return Err((
                        ErrorCode::Conflict,
                        format!(
                            "shards: a room keeps its shard count ({}) for life",
                            entry.record.config.shards
                        ),
                    ));
                }
                entry.record.config = req.config;
                let entry = self.store(entry)?;
                Ok(PutRes {
                    record: entry.record,
                    created: false,
                })
            }
            None => {
                let entry = self.store(RoomEntry {
                    record: RoomRecord {
                        id: req.id,
                        config: req.config,
                        paused: false,
                        epoch: req.epoch,
                        measured_rate: None,
                        events: Default::default(),
                        template: None,
                        opens_at: None,
                    },
                    summaries: Vec::new(),
                    stats: Default::default(),
                })?;
                Ok(PutRes {
                    record: entry.record,
                    created: true,
                })
            }
        }
    }

    fn patch(&self, req: PatchReq) -> Answer<PatchRes> {
        let Some(mut entry) = self.get(req.id.as_str()) else {
            return Err((
                ErrorCode::UnknownRoom,
                format!("no room {:?}", req.id.as_str()),
            ));
        };
        if req
            .events_from
            .as_ref()
            .is_some_and(|from| *from != entry.record.events)
        {
            return Ok(PatchRes {
                record: entry.record,
                applied: false,
            });
        }
        if let Some(paused) = req.paused {
            entry.record.paused = paused;
        }
        if let Some(events) = req.events {
            entry.record.events = events;
        }
        Ok(PatchRes {
            record: self.store(entry)?.record,
            applied: true,
        })
    }

    fn set_template(&self, req: SetTemplateReq) -> Answer<RoomRecord> {
        let Some(mut entry) = self.get(req.id.as_str()) else {
            return Err((
                ErrorCode::UnknownRoom,
                format!("no room {:?}", req.id.as_str()),
            ));
        };
        let id = req.id.as_str().to_owned();
        let table = |e: worker::Error| (ErrorCode::Internal, format!("the templates table: {e}"));
        entry.record.template = match req.template {
            Some(text) => {
                let reference = TemplateRef::of(&text);
                self.sql
                    .exec(
                        "INSERT INTO templates(id, hash, text) VALUES (?, ?, ?) \
                         ON CONFLICT(id) DO UPDATE SET hash = excluded.hash, text = excluded.text",
                        vec![id.into(), reference.hash.clone().into(), text.into()],
                    )
                    .map_err(table)?;
                Some(reference)
            }
            None => {
                self.sql
                    .exec("DELETE FROM templates WHERE id = ?", vec![id.into()])
                    .map_err(table)?;
                None
            }
        };
        Ok(self.store(entry)?.record)
    }

    fn template(&self, req: TemplateReq) -> Answer<TemplateRes> {
        #[derive(Deserialize)]
        struct TextRow {
            text: String,
        }
        let rows: Vec<TextRow> = self
            .sql
            .exec(
                "SELECT text FROM templates WHERE id = ? AND hash = ?",
                vec![req.id.as_str().into(), req.hash.into()],
            )
            .and_then(|c| c.to_array())
            .map_err(|e| (ErrorCode::Internal, format!("the templates table: {e}")))?;
        Ok(TemplateRes {
            text: rows.into_iter().next().map(|r| r.text),
        })
    }

    fn publish(&self, req: PublishReq) -> Answer<()> {
        let Some(mut entry) = self.get(req.id.as_str()) else {
            return Err((
                ErrorCode::UnknownRoom,
                format!("no room {:?}", req.id.as_str()),
            ));
        };
        entry.summaries = merge_summaries(&entry.summaries, req.summaries);
        entry.stats = req.stats;
        // A publication planned before another may land after it: the waiting count follows
        // the summaries kept.
        entry.stats.waiting = entry.summaries.iter().map(|s| s.waiting).sum();
        if let Some(rate) = req.rate {
            entry.record.measured_rate = rate;
        }
        entry.stats.admit_rate_per_min = entry.record.measured_rate;
        if let Some(minute) = &req.minute {
            self.keep_minute(req.id.as_str(), minute)?;
        }
        self.store(entry).map(|_| ())
    }

    /// Merges `row` into the room's minute it is of ([`ReportMinute::merged`]); drops those
    /// beyond [`KEPT_MINUTES`].
    fn keep_minute(&self, id: &str, row: &ReportMinute) -> Answer<()> {
        let table = |e: worker::Error| (ErrorCode::Internal, format!("the report table: {e}"));
        let minute = i64::try_from(row.minute_ms).unwrap_or(i64::MAX);
        let kept = self.minutes(id, row.minute_ms)?;
        let row = match kept.iter().find(|m| m.minute_ms == row.minute_ms) {
            Some(kept) => row.clone().merged(kept),
            None => row.clone(),
        };
        let text = serde_json::to_string(&row).expect("a report minute serializes");
        self.sql
            .exec(
                "INSERT INTO report(id, minute, row) VALUES (?, ?, ?) \
                 ON CONFLICT(id, minute) DO UPDATE SET row = excluded.row",
                vec![id.into(), minute.into(), text.into()],
            )
            .map_err(table)?;
        let oldest = minute - (KEPT_MINUTES as i64 - 1) * MINUTE_MS as i64;
        self.sql
            .exec(
                "DELETE FROM report WHERE id = ? AND minute < ?",
                vec![id.into(), oldest.into()],
            )
            .map_err(table)?;
        Ok(())
    }

    fn report(&self, req: ReportReq) -> Answer<ReportRes> {
        Ok(ReportRes {
            minutes: self.minutes(req.id.as_str(), req.since_ms)?,
        })
    }

    /// The room's minutes that began at `since_ms` or later, oldest first.
    fn minutes(&self, id: &str, since_ms: u64) -> Answer<Vec<ReportMinute>> {
        #[derive(Deserialize)]
        struct MinuteRow {
            row: String,
        }
        let table = |e: String| (ErrorCode::Internal, format!("the report table: {e}"));
        let rows: Vec<MinuteRow> = self
            .sql
            .exec(
                "SELECT row FROM report WHERE id = ? AND minute >= ? ORDER BY minute",
                vec![
                    id.into(),
                    i64::try_from(since_ms).unwrap_or(i64::MAX).into(),
                ],
            )
            .and_then(|c| c.to_array())
            .map_err(|e| table(e.to_string()))?;
        rows.iter()
            .map(|r| serde_json::from_str(&r.row).map_err(|e| table(e.to_string())))
            .collect()
    }

    fn publish_shard(&self, req: PublishShardReq) -> Answer<()> {
        let Some(mut entry) = self.get(req.id.as_str()) else {
            return Err((
                ErrorCode::UnknownRoom,
                format!("no room {:?}", req.id.as_str()),
            ));
        };
        let shard = usize::from(req.shard);
        if shard >= usize::from(entry.record.config.shards) {
            return Err((ErrorCode::InvalidRequest, "no such shard".into()));
        }
        if entry.summaries.len() <= shard {
            // Nothing published for the room yet: one shard alone would mislead.
            return Ok(());
        }
        entry.summaries[shard] = req.summary.newest(entry.summaries.get(shard));
        entry.stats.waiting = entry.summaries.iter().map(|s| s.waiting).sum();
        self.store(entry).map(|_| ())
    }

    fn lease_row(&self) -> Answer<Option<LeaseRow>> {
        let rows: Vec<LeaseRow> = self
            .sql
            .exec("SELECT holder, expires, fence FROM lease WHERE k = 1", None)
            .and_then(|c| c.to_array())
            .map_err(|e| (ErrorCode::Internal, format!("the lease table: {e}")))?;
        Ok(rows.into_iter().next())
    }

    fn lease(&self, req: LeaseReq) -> Answer<LeaseResponse> {
        let now = req.now as i64;
        let current = self.lease_row()?;
        let fence = match current {
            Some(row) if row.holder == req.holder => row.fence,
            Some(row) if row.expires > now => return Ok(LeaseResponse { fence: 0 }),
            Some(row) => row.fence + 1,
            None => 1,
        };
        self.sql
            .exec(
                "INSERT INTO lease(k, holder, expires, fence) VALUES (1, ?, ?, ?) \
                 ON CONFLICT(k) DO UPDATE SET holder = excluded.holder, \
                 expires = excluded.expires, fence = excluded.fence",
                vec![
                    req.holder.into(),
                    (now + req.ttl_ms as i64).into(),
                    fence.into(),
                ],
            )
            .map_err(|e| (ErrorCode::Internal, format!("the lease table: {e}")))?;
        Ok(LeaseResponse {
            fence: fence as u64,
        })
    }

    /// A new fence for an operator's admission, the holder and expiry of the lease unchanged: a
    /// batch the scheduler planned before the operator admitted is refused, and the scheduler
    /// reads the room afresh before its next one.
    fn bump_fence(&self) -> Answer<LeaseResponse> {
        let (holder, expires, fence) = match self.lease_row()? {
            Some(row) => (row.holder, row.expires, row.fence + 1),
            None => (String::new(), 0, 1),
        };
        self.sql
            .exec(
                "INSERT INTO lease(k, holder, expires, fence) VALUES (1, ?, ?, ?) \
                 ON CONFLICT(k) DO UPDATE SET fence = excluded.fence",
                vec![holder.into(), expires.into(), fence.into()],
            )
            .map_err(|e| (ErrorCode::Internal, format!("the lease table: {e}")))?;
        Ok(LeaseResponse {
            fence: fence as u64,
        })
    }
}
