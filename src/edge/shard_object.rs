//! The shard object: one shard of one room (`{room}:{epoch}:{shard}`), the core's [`Shard`]
//! state machine held in memory and persisted in the object's SQLite storage as the log of the
//! operations that changed it. A restarted object replays its log; the entry credit, the pause
//! and the scheduler's fence are kept beside it in a small table.
//!
//! Every operation runs without an await between reading and writing the state, so each is
//! atomic; the runtime holds the answer until the writes are durable.

use std::cell::RefCell;

use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

use super::protocol::*;
use super::respond::{error, operation, Answer};
use crate::error::ErrorCode;
use crate::shard::{Op, Outcome, Shard, Standing};

/// How many waiting visitors a summary samples.
pub const SUMMARY_SAMPLES: usize = 256;
/// How many log rows a replay reads at a time.
const REPLAY_PAGE: i64 = 5_000;

struct Loaded {
    shard: Shard,
    credit: u64,
    paused: bool,
    fence: u64,
}

#[durable_object]
pub struct ShardObject {
    sql: SqlStorage,
    loaded: RefCell<Option<Loaded>>,
}

#[derive(Deserialize)]
struct LogRow {
    id: i64,
    op: String,
}

#[derive(Deserialize)]
struct MetaRow {
    k: String,
    v: i64,
}

impl DurableObject for ShardObject {
    fn new(state: State, _env: Env) -> Self {
        ShardObject {
            sql: state.storage().sql(),
            loaded: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        let body = req.bytes().await?;
        // From here on, no await: the operation is atomic.
        if let Err(e) = self.ensure_loaded() {
            return error(
                ErrorCode::Internal,
                &format!("the shard could not load: {e}"),
            );
        }
        match path.as_str() {
            "/join" => operation(&body, |r: JoinReq| self.join(r)),
            "/visit" => operation(&body, |r: VisitReq| self.visit(r)),
            "/end" => operation(&body, |r: EndReq| self.end(r)),
            "/session" => operation(&body, |r: SessionReq| self.session(r)),
            "/batch" => operation(&body, |r: BatchReq| self.batch(r)),
            "/pause" => operation(&body, |r: PauseReq| self.pause(r)),
            _ => error(ErrorCode::NotFound, "no such shard operation"),
        }
    }
}

impl ShardObject {
    fn ensure_loaded(&self) -> Result<()> {
        if self.loaded.borrow().is_some() {
            return Ok(());
        }
        self.sql.exec(
            "CREATE TABLE IF NOT EXISTS ops(id INTEGER PRIMARY KEY, op TEXT NOT NULL)",
            None,
        )?;
        self.sql.exec(
            "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL)",
            None,
        )?;
        let mut shard = Shard::new();
        let mut last = 0i64;
        loop {
            let rows: Vec<LogRow> = self
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
                    .map_err(|e| worker::Error::RustError(format!("log row {}: {e}", row.id)))?;
                shard.apply(&op);
            }
        }
        let mut loaded = Loaded {
            shard,
            credit: 0,
            paused: false,
            fence: 0,
        };
        let meta: Vec<MetaRow> = self.sql.exec("SELECT k, v FROM meta", None)?.to_array()?;
        for row in meta {
            let v = u64::try_from(row.v).unwrap_or(0);
            match row.k.as_str() {
                "credit" => loaded.credit = v,
                "paused" => loaded.paused = v != 0,
                "fence" => loaded.fence = v,
                _ => {}
            }
        }
        *self.loaded.borrow_mut() = Some(loaded);
        Ok(())
    }

    /// Applies an operation; logs it when `changed` says it changed the shard.
    fn apply(&self, op: Op, changed: impl FnOnce(&Shard, &Outcome) -> bool) -> Answer<Outcome> {
        let mut guard = self.loaded.borrow_mut();
        let loaded = guard.as_mut().expect("loaded before any operation");
        let outcome = loaded.shard.apply(&op);
        if changed(&loaded.shard, &outcome) {
            let line = serde_json::to_string(&op).expect("an op serializes");
            self.sql
                .exec("INSERT INTO ops(op) VALUES (?)", vec![line.into()])
                .map_err(|e| (ErrorCode::Internal, format!("the log: {e}")))?;
        }
        Ok(outcome)
    }

    fn set_meta(&self, key: &str, value: u64) -> Answer<()> {
        self.sql
            .exec(
                "INSERT INTO meta(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                vec![key.into(), (value as i64).into()],
            )
            .map(|_| ())
            .map_err(|e| (ErrorCode::Internal, format!("the meta table: {e}")))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Loaded) -> T) -> T {
        let mut guard = self.loaded.borrow_mut();
        f(guard.as_mut().expect("loaded before any operation"))
    }

    /// Counters that tell whether a visit or a session check changed anything.
    fn counts(&self) -> (u64, u64) {
        self.with(|l| (l.shard.active(), l.shard.unclaimed()))
    }

    fn join(&self, req: JoinReq) -> Answer<JoinRes> {
        let mut results = Vec::with_capacity(req.jobs.len());
        for job in req.jobs {
            let (enter, credit) = self.with(|l| {
                (
                    l.credit > 0 && !l.paused && l.shard.queue().waiting() == 0,
                    l.credit,
                )
            });
            let op = Op::Join {
                user: job.user,
                stamp: job.stamp,
                enter,
                now: req.now,
                timing: req.timing,
            };
            let Outcome::Join(joined) = self.apply(op, |_, _| true)? else {
                unreachable!("a join answers a join");
            };
            if enter && !joined.existing {
                self.with(|l| l.credit = credit - 1);
                self.set_meta("credit", credit - 1)?;
            }
            let ahead = match joined.standing {
                Standing::Waiting => self.with(|l| l.shard.queue().waiting_before(joined.stamp)),
                _ => 0,
            };
            results.push(JoinedIn { joined, ahead });
        }
        Ok(JoinRes { results })
    }

    fn visit(&self, req: VisitReq) -> Answer<VisitRes> {
        let before = self.counts();
        let op = Op::Visit {
            seq: req.seq,
            now: req.now,
            timing: req.timing,
        };
        let Outcome::Visit(standing) =
            self.apply(op, |shard, _| (shard.active(), shard.unclaimed()) != before)?
        else {
            unreachable!("a visit answers a visit");
        };
        let (stamp, ahead) = self.with(|l| {
            let queue = l.shard.queue();
            let stamp = queue.stamp(req.seq).unwrap_or(0);
            let ahead = match standing {
                Standing::Waiting => queue.waiting_before(stamp),
                _ => 0,
            };
            (stamp, ahead)
        });
        Ok(VisitRes {
            standing,
            stamp,
            ahead,
        })
    }

    fn end(&self, req: EndReq) -> Answer<EndRes> {
        let op = Op::End {
            seq: req.seq,
            now: req.now,
        };
        let Outcome::End(ended) = self.apply(op, |_, o| matches!(o, Outcome::End(Some(_))))? else {
            unreachable!("an end answers an end");
        };
        Ok(EndRes {
            ended,
            report: self.report(0, 0),
        })
    }

    fn session(&self, req: SessionReq) -> Answer<SessionRes> {
        let before = self.counts();
        let op = Op::Session {
            seq: req.seq,
            renew: req.renew,
            now: req.now,
            timing: req.timing,
        };
        let renew = req.renew;
        let Outcome::Session(expires_at) = self.apply(op, |shard, outcome| {
            (renew && matches!(outcome, Outcome::Session(Some(_))))
                || (shard.active(), shard.unclaimed()) != before
        })?
        else {
            unreachable!("a session check answers a session check");
        };
        Ok(SessionRes { expires_at })
    }

    fn check_fence(&self, fence: u64) -> Answer<()> {
        if fence == 0 {
            return Ok(());
        }
        let current = self.with(|l| l.fence);
        if fence < current {
            return Err((
                ErrorCode::Fenced,
                "fenced: a newer scheduler holds the admission lease".into(),
            ));
        }
        if fence > current {
            self.with(|l| l.fence = fence);
            self.set_meta("fence", fence)?;
        }
        Ok(())
    }

    fn report(&self, heads: u64, admitted: u64) -> ShardReport {
        self.with(|l| ShardReport {
            reading: l.shard.reading(heads, l.credit),
            summary: l.shard.queue().summary(SUMMARY_SAMPLES),
            admitted,
        })
    }

    fn batch(&self, req: BatchReq) -> Answer<ShardReport> {
        self.check_fence(req.fence)?;
        if self.with(|l| l.shard.would_expire(req.now, req.timing)) {
            self.apply(
                Op::Expire {
                    now: req.now,
                    timing: req.timing,
                },
                |_, _| true,
            )?;
        }
        let Some(order) = req.order else {
            return Ok(self.report(req.heads, 0));
        };
        let (paused, before) = self.with(|l| (l.paused, l.shard.queue().admitted_seq()));
        // A pause that reached the shard after the batch was planned still stops it.
        let upto = if paused && !req.operator {
            0
        } else {
            order.through_seq
        };
        let Outcome::Admitted(admitted) = self
            .apply(Op::AdmitThrough { upto, now: req.now }, |shard, _| {
                shard.queue().admitted_seq() != before
            })?
        else {
            unreachable!("an admission answers an admission");
        };
        if let Some(credit) = order.credit {
            let left = if order.carry {
                self.with(|l| l.credit)
            } else {
                0
            };
            let credit = if paused { 0 } else { credit + left };
            self.with(|l| l.credit = credit);
            self.set_meta("credit", credit)?;
        }
        Ok(self.report(req.heads, admitted))
    }

    fn pause(&self, req: PauseReq) -> Answer<ShardReport> {
        self.with(|l| l.paused = req.paused);
        self.set_meta("paused", u64::from(req.paused))?;
        if req.paused || req.drop_credit {
            self.with(|l| l.credit = 0);
            self.set_meta("credit", 0)?;
        }
        Ok(self.report(0, 0))
    }
}
