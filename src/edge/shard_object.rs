//! The shard object: one shard of one room (`{room}:{epoch}:{shard}`), the core's [`Shard`]
//! state machine held in memory and persisted in the object's SQLite storage as a snapshot and
//! the log of the operations that changed it since ([`ShardLog`]). A restarted object restores
//! the snapshot and replays the log after it; the entry credit, the pause and the scheduler's
//! fence are kept beside them in a small table.
//!
//! Every operation runs without an await between reading and writing the state, so each is
//! atomic; the runtime holds the answer until the writes are durable. A snapshot, when due, is
//! written after the operation, in the same synchronous stretch.

use std::cell::{Cell, RefCell};

use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use super::protocol::*;
use super::respond::{error, operation, Answer};
use super::shard_log::ShardLog;
use crate::error::ErrorCode;
use crate::shard::{Op, Outcome, Shard, Standing};

/// How many waiting visitors a summary samples.
pub const SUMMARY_SAMPLES: usize = 256;

struct Loaded {
    shard: Shard,
    log: ShardLog,
    credit: u64,
    paused: bool,
    fence: u64,
}

#[durable_object]
pub struct ShardObject {
    state: State,
    loaded: RefCell<Option<Loaded>>,
    /// A write failed during this operation: what is in memory may be ahead of storage.
    write_failed: Cell<bool>,
}

impl DurableObject for ShardObject {
    fn new(state: State, _env: Env) -> Self {
        ShardObject {
            state,
            loaded: RefCell::new(None),
            write_failed: Cell::new(false),
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
        let response = match path.as_str() {
            "/join" => operation(&body, |r: JoinReq| self.join(r)),
            "/visit" => operation(&body, |r: VisitReq| self.visit(r)),
            "/shuffle" => operation(&body, |r: ShuffleReq| self.shuffle(r)),
            "/seen" => operation(&body, |r: SeenReq| self.seen(r)),
            "/end" => operation(&body, |r: EndReq| self.end(r)),
            "/session" => operation(&body, |r: SessionReq| self.session(r)),
            "/batch" => operation(&body, |r: BatchReq| self.batch(r)),
            "/pause" => operation(&body, |r: PauseReq| self.pause(r)),
            "/spend" => operation(&body, |r: SpendReq| self.spend(r)),
            "/limit_client" => operation(&body, |r: LimitClientReq| self.limit_client(r)),
            _ => error(ErrorCode::NotFound, "no such shard operation"),
        };
        self.settle();
        response
    }
}

impl ShardObject {
    fn ensure_loaded(&self) -> Result<()> {
        if self.loaded.borrow().is_some() {
            return Ok(());
        }
        let (log, mut shard) = ShardLog::open(self.state.storage())?;
        // Who was seen when is not stored: everyone counts as seen now.
        shard.seen_all(worker::Date::now().as_millis());
        *self.loaded.borrow_mut() = Some(Loaded {
            shard,
            credit: log.setting("credit"),
            paused: log.setting("paused") != 0,
            fence: log.setting("fence"),
            log,
        });
        Ok(())
    }

    /// After an operation: forgets the state if a write failed (the next operation loads what
    /// storage holds), else writes a snapshot if one is due. A snapshot that fails is logged
    /// and left for a later operation; the log still holds everything.
    fn settle(&self) {
        let mut guard = self.loaded.borrow_mut();
        if self.write_failed.replace(false) {
            *guard = None;
            return;
        }
        let Some(loaded) = guard.as_mut() else {
            return;
        };
        if !loaded.log.snapshot_due() {
            return;
        }
        let rows = loaded.log.tail_rows();
        if let Err(e) = loaded.log.snapshot(&loaded.shard) {
            worker::console_error!("shard snapshot after {rows} log rows failed: {e}");
        }
    }

    /// Notes a failed write, so that the state is reloaded after the operation.
    fn storage<T>(&self, result: Result<T>, what: &str) -> Answer<T> {
        result.map_err(|e| {
            self.write_failed.set(true);
            (ErrorCode::Internal, format!("{what}: {e}"))
        })
    }

    /// Applies an operation; logs it when `changed` says it changed the shard.
    fn apply(&self, op: Op, changed: impl FnOnce(&Shard, &Outcome) -> bool) -> Answer<Outcome> {
        let mut guard = self.loaded.borrow_mut();
        let loaded = guard.as_mut().expect("loaded before any operation");
        let outcome = loaded.shard.apply(&op);
        if changed(&loaded.shard, &outcome) {
            self.storage(loaded.log.append(&op), "the log")?;
        }
        Ok(outcome)
    }

    fn set_meta(&self, key: &str, value: u64) -> Answer<()> {
        let guard = self.loaded.borrow();
        let loaded = guard.as_ref().expect("loaded before any operation");
        self.storage(loaded.log.set_setting(key, value), "the meta table")
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
                    !job.hold && l.credit > 0 && !l.paused && l.shard.queue().waiting() == 0,
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

    /// Single-use keys live in the shard's storage beside its queue, outside the shard's state
    /// machine: they order nothing.
    fn spend(&self, req: SpendReq) -> Answer<SpendRes> {
        let first = self.with(|l| l.log.spend_once(&req.key, req.until, req.now));
        Ok(SpendRes {
            first: self.storage(first, "the spent keys")?,
        })
    }

    /// Join-limit states live beside the queue like spent keys: one object decides for a
    /// client, so the limit holds across isolates.
    fn limit_client(&self, req: LimitClientReq) -> Answer<LimitClientRes> {
        let outcome = self.with(|l| l.log.limit_client(&req.client, &req.limit, req.op, req.now));
        Ok(LimitClientRes {
            outcome: self.storage(outcome, "the client records")?,
        })
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
            let stamp = queue.stamp(queue.locate(req.seq)).unwrap_or(0);
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

    /// Applies a shuffle of the pre-queue, once: its stamps change, so the next snapshot
    /// writes every segment again.
    fn shuffle(&self, req: ShuffleReq) -> Answer<ShardReport> {
        let due = self.with(|l| req.start_us > l.shard.queue().shuffled_us());
        if due {
            let op = Op::Shuffle {
                epoch: req.epoch,
                shard: req.shard,
                seed: req.seed,
                prequeue_us: req.prequeue_us,
                start_us: req.start_us,
            };
            self.apply(op, |_, _| true)?;
            self.with(|l| l.log.restamped());
        }
        Ok(self.report(0, 0))
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
            summary: l
                .shard
                .queue()
                .summary(SUMMARY_SAMPLES)
                .at_version(l.log.version()),
            admitted,
        })
    }

    /// Notes waiting visitors as seen (soft state: nothing is logged).
    fn seen(&self, req: SeenReq) -> Answer<()> {
        self.with(|l| {
            for &seq in &req.seqs {
                l.shard.seen(seq, req.now);
            }
        });
        Ok(())
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
        if req.abandon_after_ms > 0 {
            let unseen = self.with(|l| l.shard.unseen(req.now, req.abandon_after_ms));
            if !unseen.is_empty() {
                let op = Op::Abandon {
                    seqs: unseen,
                    now: req.now,
                };
                self.apply(op, |_, _| true)?;
            }
        }
        let Some(order) = req.order else {
            return Ok(self.report(req.heads, 0));
        };
        let (paused, before, shuffled_us) = self.with(|l| {
            let queue = l.shard.queue();
            (l.paused, queue.admitted_seq(), queue.shuffled_us())
        });
        if order.shuffled_us < shuffled_us {
            // Planned from the order before a shuffle: its seqs name other places now. The
            // next tick plans again.
            return Ok(self.report(req.heads, 0));
        }
        // A pause that reached the shard after the batch was planned still stops it.
        let held = paused && !req.operator;
        let op = match order.draw {
            // Random mode: the draw is logged by its seed, so a replay draws the same.
            Some(seed) => Op::Draw {
                count: if held { 0 } else { order.take },
                seed,
                now: req.now,
            },
            None => Op::AdmitThrough {
                upto: if held { 0 } else { order.through_seq },
                now: req.now,
            },
        };
        let Outcome::Admitted(admitted) =
            self.apply(op, |shard, _| shard.queue().admitted_seq() != before)?
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
