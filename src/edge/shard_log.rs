//! The shard object's storage: its [`Shard`] as a snapshot plus the log of the operations that
//! changed it since, in the object's SQLite storage, and a small table of settings beside it.
//!
//! - `ops(id, op)`: the log, one JSON [`Op`] a row. Ids are given out here, one above the
//!   highest ever used (SQLite would hand out a deleted id again once the table is empty).
//! - `snapshot(blob, part, data)`: blob 0 is the shard's state ([`Shard::snapshot_state`]), blob
//!   `s > 0` the visitors from seq `s` ([`Shard::snapshot_visitors`], [`SEGMENT_VISITORS`] a
//!   segment); a value longer than [`PART_BYTES`] is split into parts (Durable Object SQLite
//!   takes at most 2 MB a value).
//! - `meta(k, v)`: the shard object's settings (credit, pause, fence) and `snapshot_through`, the
//!   last log id the snapshot covers (absent: no snapshot yet, replay the whole log, as an object
//!   written before snapshots has only its log).
//!
//! A snapshot is written once the log since the last one holds as many bytes as that snapshot
//! rewrote (its state and its last, partial segment), and at least [`MIN_TAIL_BYTES`]: the
//! writes stay within about twice the log's own, each visitor's stamp is written once more when
//! its segment fills, and a cold start reads the snapshot and at most that much log. The state,
//! the segments that changed, `snapshot_through` and the deletion of the log rows it covers are
//! one transaction (`transactionSync`): a crash or an error leaves the previous snapshot and the
//! whole log, never a snapshot without the ops it covers.

use std::collections::HashMap;

use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use worker::{Error, Result, SqlStorage, SqlStorageValue, Storage};

use crate::shard::{Op, Shard};

/// Visitors a snapshot segment holds: 16 KiB of stamps (about 280 KB at most with 128-byte user
/// ids). A full segment is written once; a cold start after 200,000 joins reads 98.
pub const SEGMENT_VISITORS: u64 = 2048;
/// The log since the last snapshot may grow to this many bytes (about 900 joins) before the
/// next snapshot is due, or to as many as that snapshot rewrote, if more.
pub const MIN_TAIL_BYTES: u64 = 128 * 1024;
/// The longest value the snapshot table holds in one row.
const PART_BYTES: usize = 1 << 20;
/// How many log rows a replay reads at a time.
const REPLAY_PAGE: i64 = 5_000;
/// The snapshot table's key of the state.
const STATE_BLOB: i64 = 0;
const THROUGH_KEY: &str = "snapshot_through";

#[wasm_bindgen]
extern "C" {
    /// `ctx.storage`, for `transactionSync`, which worker 0.8.7 does not bind.
    type SyncTransactions;

    #[wasm_bindgen(method, catch, js_name = transactionSync)]
    fn transaction_sync(
        this: &SyncTransactions,
        body: &mut dyn FnMut() -> std::result::Result<JsValue, JsValue>,
    ) -> std::result::Result<JsValue, JsValue>;
}

#[derive(Deserialize)]
struct LogRow {
    id: i64,
    op: String,
}

#[derive(Deserialize)]
struct ClientRow {
    record: String,
    until: i64,
}

#[derive(Deserialize)]
struct SpentRow {
    until: i64,
}

#[derive(Deserialize)]
struct MetaRow {
    k: String,
    v: i64,
}

/// The log and snapshot of one shard object.
pub struct ShardLog {
    storage: Storage,
    sql: SqlStorage,
    /// The id the next log row gets.
    next_id: i64,
    /// Rows and bytes of log since the snapshot.
    tail_rows: u64,
    tail_bytes: u64,
    /// Seqs the stored segments hold, and the first seq of the last of them (0: none).
    stored_tail: u64,
    last_segment: u64,
    /// What the last snapshot wrote that the next one writes again.
    rewrite_bytes: u64,
    /// After a snapshot failed: the log bytes at which to try again.
    retry_at: u64,
    /// A shuffle changed stamps that stored segments hold.
    restamped: bool,
    /// The settings as loaded.
    settings: HashMap<String, u64>,
}

impl ShardLog {
    /// Opens the storage (creating its tables) and rebuilds the shard: the snapshot, if any,
    /// then the log after it.
    pub fn open(storage: Storage) -> Result<(ShardLog, Shard)> {
        let sql = storage.sql();
        for table in [
            "ops(id INTEGER PRIMARY KEY, op TEXT NOT NULL)",
            "meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL)",
            "spent(k TEXT PRIMARY KEY, until INTEGER NOT NULL)",
            "client_records(k TEXT PRIMARY KEY, record TEXT NOT NULL, until INTEGER NOT NULL)",
            "snapshot(blob INTEGER NOT NULL, part INTEGER NOT NULL, data BLOB NOT NULL, \
             PRIMARY KEY (blob, part))",
        ] {
            sql.exec(&format!("CREATE TABLE IF NOT EXISTS {table}"), None)?;
        }
        // Where join-limit states were kept before client records: short-lived, so dropped.
        sql.exec("DROP TABLE IF EXISTS join_limits", None)?;
        let mut settings = HashMap::new();
        for row in sql
            .exec("SELECT k, v FROM meta", None)?
            .to_array::<MetaRow>()?
        {
            settings.insert(row.k, u64::try_from(row.v).unwrap_or(0));
        }
        let through = settings.remove(THROUGH_KEY);
        let mut log = ShardLog {
            storage,
            sql,
            next_id: 1,
            tail_rows: 0,
            tail_bytes: 0,
            stored_tail: 0,
            last_segment: 0,
            rewrite_bytes: 0,
            retry_at: 0,
            restamped: false,
            settings,
        };
        let mut shard = match through {
            Some(_) => log.read_snapshot()?,
            None => Shard::new(),
        };
        let through = through.map_or(0, |t| t as i64);
        let mut last = through;
        loop {
            let rows: Vec<LogRow> = log
                .sql
                .exec(
                    "SELECT id, op FROM ops WHERE id > ? ORDER BY id LIMIT ?",
                    vec![last.into(), REPLAY_PAGE.into()],
                )?
                .to_array()?;
            let Some(tail) = rows.last() else {
                break;
            };
            last = tail.id;
            for row in &rows {
                let op: Op = serde_json::from_str(&row.op)
                    .map_err(|e| Error::RustError(format!("log row {}: {e}", row.id)))?;
                shard.apply(&op);
                // Segments stored before the shuffle hold the stamps it changed.
                log.restamped |= matches!(op, Op::Shuffle { .. });
                log.tail_rows += 1;
                log.tail_bytes += row.op.len() as u64;
            }
        }
        // The rows up to `through` went with the snapshot that covers them.
        log.next_id = last.max(through) + 1;
        Ok((log, shard))
    }

    fn read_snapshot(&mut self) -> Result<Shard> {
        let mut blobs: Vec<(i64, Vec<u8>)> = Vec::new();
        let cursor = self.sql.exec(
            "SELECT blob, part, data FROM snapshot ORDER BY blob, part",
            None,
        )?;
        for row in cursor.raw() {
            let row = row?;
            let (Some(SqlStorageValue::Integer(blob)), Some(SqlStorageValue::Blob(data))) =
                (row.first(), row.get(2))
            else {
                return Err(Error::RustError("a snapshot row of the wrong types".into()));
            };
            match blobs.last_mut() {
                Some((key, bytes)) if key == blob => bytes.extend_from_slice(data),
                _ => blobs.push((*blob, data.clone())),
            }
        }
        let Some((STATE_BLOB, state)) = blobs.first() else {
            return Err(Error::RustError("the snapshot has no state".into()));
        };
        let segments = &blobs[1..];
        let shard = Shard::restore(state, segments.iter().map(|(_, b)| b.as_slice()))
            .map_err(|e| Error::RustError(e.to_string()))?;
        self.stored_tail = shard.queue().tail();
        self.last_segment = segments.last().map_or(0, |(s, _)| *s as u64);
        self.rewrite_bytes = state.len() as u64
            + segments
                .last()
                .filter(|_| self.last_segment_is_partial())
                .map_or(0, |(_, b)| b.len() as u64);
        Ok(shard)
    }

    fn last_segment_is_partial(&self) -> bool {
        self.last_segment > 0 && self.stored_tail + 1 - self.last_segment < SEGMENT_VISITORS
    }

    /// A setting (credit, pause, fence) as loaded.
    pub fn setting(&self, key: &str) -> u64 {
        self.settings.get(key).copied().unwrap_or(0)
    }

    pub fn set_setting(&self, key: &str, value: u64) -> Result<()> {
        self.sql.exec(
            "INSERT INTO meta(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
            vec![key.into(), (value as i64).into()],
        )?;
        Ok(())
    }

    /// Records `key` as used until `until`; whether this was its first use (one whose record
    /// ran out counts as none). Drops a few records that ran out each time, so the table holds
    /// about what is unexpired.
    pub fn spend_once(&self, key: &str, until: u64, now: u64) -> Result<bool> {
        let now = now as i64;
        self.sql.exec(
            "DELETE FROM spent WHERE rowid IN (SELECT rowid FROM spent WHERE until <= ? LIMIT 8)",
            vec![now.into()],
        )?;
        let held: Vec<SpentRow> = self
            .sql
            .exec("SELECT until FROM spent WHERE k = ?", vec![key.into()])?
            .to_array()?;
        if held.iter().any(|row| row.until > now) {
            return Ok(false);
        }
        self.sql.exec(
            "INSERT INTO spent(k, until) VALUES (?, ?) \
             ON CONFLICT(k) DO UPDATE SET until = excluded.until",
            vec![key.into(), (until as i64).into()],
        )?;
        Ok(true)
    }

    /// Applies `op` to a client's record (see [`crate::limit::record::apply_kept`]), keeping
    /// it beside the shard; drops a few records that ran out each time.
    pub fn limit_client(
        &self,
        key: &str,
        limit: &crate::limit::JoinLimit,
        op: crate::limit::record::LimitOp,
        now: u64,
    ) -> Result<crate::limit::record::Outcome> {
        self.sql.exec(
            "DELETE FROM client_records WHERE rowid IN \
             (SELECT rowid FROM client_records WHERE until <= ? LIMIT 8)",
            vec![(now as i64).into()],
        )?;
        let kept = self
            .sql
            .exec(
                "SELECT record, until FROM client_records WHERE k = ?",
                vec![key.into()],
            )?
            .to_array::<ClientRow>()?
            .into_iter()
            .next();
        let entry = kept
            .as_ref()
            .map(|row| (row.record.as_str(), row.until as u64));
        let (outcome, keep) = crate::limit::record::apply_kept(entry, op, now, limit);
        if let Some((record, until)) = keep {
            self.sql.exec(
                "INSERT INTO client_records(k, record, until) VALUES (?, ?, ?) \
                 ON CONFLICT(k) DO UPDATE SET record = excluded.record, until = excluded.until",
                vec![key.into(), record.into(), (until as i64).into()],
            )?;
        }
        Ok(outcome)
    }

    /// Logs an operation that changed the shard.
    /// The id of the last operation logged: how far the shard's history has come.
    pub fn version(&self) -> u64 {
        u64::try_from(self.next_id - 1).unwrap_or(0)
    }

    pub fn append(&mut self, op: &Op) -> Result<()> {
        let line = serde_json::to_string(op).map_err(|e| Error::RustError(e.to_string()))?;
        let bytes = line.len() as u64;
        self.sql.exec(
            "INSERT INTO ops(id, op) VALUES (?, ?)",
            vec![self.next_id.into(), line.into()],
        )?;
        self.next_id += 1;
        self.tail_rows += 1;
        self.tail_bytes += bytes;
        Ok(())
    }

    /// A shuffle changed stamps already stored: the next snapshot writes every segment.
    pub fn restamped(&mut self) {
        self.restamped = true;
    }

    /// Whether the log since the last snapshot has grown enough for the next one.
    pub fn snapshot_due(&self) -> bool {
        self.tail_rows > 0
            && self.tail_bytes >= MIN_TAIL_BYTES.max(self.rewrite_bytes).max(self.retry_at)
    }

    /// Log rows since the last snapshot.
    pub fn tail_rows(&self) -> u64 {
        self.tail_rows
    }

    /// Writes `shard` (which must be what the log holds, every op applied) as the snapshot and
    /// deletes the log rows it covers, in one transaction.
    pub fn snapshot(&mut self, shard: &Shard) -> Result<()> {
        let through = self.next_id - 1;
        let from = if self.restamped {
            1
        } else if self.last_segment_is_partial() {
            self.last_segment
        } else {
            self.stored_tail + 1
        };
        let segments = shard.snapshot_visitors(from, SEGMENT_VISITORS);
        let state = shard.snapshot_state();
        // Should it fail, the next try waits for as much log again.
        self.retry_at = self.tail_bytes + MIN_TAIL_BYTES;
        in_transaction(&self.storage, || {
            self.write_blob(STATE_BLOB, &state)?;
            for (first, bytes) in &segments {
                self.write_blob(*first as i64, bytes)?;
            }
            self.set_setting(THROUGH_KEY, through as u64)?;
            self.sql
                .exec("DELETE FROM ops WHERE id <= ?", vec![through.into()])?;
            Ok(())
        })?;
        let tail = shard.queue().tail();
        self.stored_tail = tail;
        self.restamped = false;
        if let Some((first, _)) = segments.last() {
            self.last_segment = *first;
        }
        let partial = segments
            .last()
            .filter(|(first, _)| tail + 1 - first < SEGMENT_VISITORS)
            .map_or(0, |(_, b)| b.len() as u64);
        self.rewrite_bytes = state.len() as u64 + partial;
        self.tail_rows = 0;
        self.tail_bytes = 0;
        self.retry_at = 0;
        Ok(())
    }

    fn write_blob(&self, blob: i64, bytes: &[u8]) -> Result<()> {
        self.sql
            .exec("DELETE FROM snapshot WHERE blob = ?", vec![blob.into()])?;
        let parts: Vec<&[u8]> = if bytes.is_empty() {
            vec![&[]]
        } else {
            bytes.chunks(PART_BYTES).collect()
        };
        for (part, data) in parts.into_iter().enumerate() {
            self.sql.exec(
                "INSERT INTO snapshot(blob, part, data) VALUES (?, ?, ?)",
                vec![blob.into(), (part as i64).into(), data.to_vec().into()],
            )?;
        }
        Ok(())
    }
}

/// Runs `body` in one storage transaction (`transactionSync`): an error rolls back every write
/// it made.
fn in_transaction(storage: &Storage, mut body: impl FnMut() -> Result<()>) -> Result<()> {
    let mut failure = None;
    let outcome = {
        let mut run = || {
            body().map(|()| JsValue::UNDEFINED).map_err(|e| {
                let message = JsValue::from_str(&e.to_string());
                failure = Some(e);
                message
            })
        };
        storage
            .as_raw()
            .unchecked_ref::<SyncTransactions>()
            .transaction_sync(&mut run)
    };
    match outcome {
        Ok(_) => Ok(()),
        Err(js) => Err(failure.unwrap_or_else(|| Error::from(js))),
    }
}
