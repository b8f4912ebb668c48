//! One shard of a room as a deterministic state machine: its queue, the batches admitted from it
//! whose claim window is open, its sessions and its user ids. The embedded store keeps a room as
//! a set of these; an edge shard object keeps one, and persists it as the log of the operations
//! that changed it ([`Op`]): replaying the log rebuilds the same shard. A snapshot (see
//! [`Shard::snapshot_state`] and [`Shard::snapshot_visitors`]) lets it replay only the ops since.
//!
//! Decisions that span shards (FIFO order, capacity, entry at once) are the caller's: a join is
//! told whether it may enter at once, an admission is told how far to go.

use std::collections::{BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::plan::ShardReading;
use crate::queue::ShardQueue;
use crate::shuffle::ShuffleSpec;

mod snapshot;
#[cfg(test)]
mod testing;
mod users;
pub use snapshot::{SnapshotError, SNAPSHOT_VERSION};
use users::Users;
pub use users::{user_hash, UserKey};

/// Where a visitor of this shard stands. Positions span shards and are the caller's to compute
/// from the queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Standing {
    Waiting,
    Admitted { session_expires_at: u64 },
    Left,
    Expired,
}

/// Unix seconds of `now` (ms), as the seen times keep them.
fn unix_seconds(now: u64) -> u32 {
    u32::try_from(now / 1000).unwrap_or(u32::MAX)
}

/// What a join did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardJoin {
    /// The user id already held this place.
    pub existing: bool,
    pub seq: u64,
    pub stamp: u64,
    pub standing: Standing,
}

/// The timing a shard needs from its room's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    pub session_ttl_ms: u64,
    pub claim_window_ms: u64,
}

/// An operation that changes a shard, as an edge shard object logs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Join {
        /// The user id as the visitor sent it: logs written before the shard kept only a
        /// [`UserKey`] read the same, and the key is computed again on replay.
        user: Option<String>,
        stamp: u64,
        enter: bool,
        now: u64,
        timing: Timing,
    },
    Visit {
        seq: u64,
        now: u64,
        timing: Timing,
    },
    End {
        seq: u64,
        now: u64,
    },
    Session {
        seq: u64,
        renew: bool,
        now: u64,
        timing: Timing,
    },
    Expire {
        now: u64,
        timing: Timing,
    },
    AdmitThrough {
        upto: u64,
        now: u64,
    },
    /// A scheduled event's shuffle of the pre-queue ([`crate::shuffle`]); the shard's epoch and
    /// index name its tickets.
    Shuffle {
        epoch: u32,
        shard: u16,
        /// Hex.
        seed: String,
        prequeue_us: u64,
        start_us: u64,
    },
    /// Ends the places of waiting visitors who stopped asking, and the admissions of admitted
    /// visitors who never came for them (queue seqs, from [`Shard::unseen`]).
    Abandon {
        seqs: Vec<u64>,
        now: u64,
    },
    /// Random mode's batch ([`crate::draw`]): admits `count` waiting visitors drawn with `seed`.
    Draw {
        count: u64,
        seed: u64,
        now: u64,
    },
}

/// What applying an [`Op`] answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Join(ShardJoin),
    Visit(Standing),
    End(Option<bool>),
    Session(Option<u64>),
    Expire,
    Admitted(u64),
    /// How many places the shuffle reordered.
    Shuffled(u64),
    /// How many places were abandoned.
    Abandoned(u64),
}

/// A run of seqs admitted together, and which of them arrived or left since.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Grant {
    first_seq: u64,
    last_seq: u64,
    admitted_at: u64,
    /// Bit `seq - first_seq` set: arrived or left.
    resolved: Vec<u64>,
    unresolved: u64,
}

impl Grant {
    fn is_resolved(&self, seq: u64) -> bool {
        let bit = seq - self.first_seq;
        self.resolved
            .get((bit / 64) as usize)
            .is_some_and(|w| w & (1 << (bit % 64)) != 0)
    }

    /// Marks `seq` as arrived or left; `true` if it was still unresolved.
    fn resolve(&mut self, seq: u64) -> bool {
        if self.is_resolved(seq) {
            return false;
        }
        let bit = seq - self.first_seq;
        let word = (bit / 64) as usize;
        if word >= self.resolved.len() {
            self.resolved.resize(word + 1, 0);
        }
        self.resolved[word] |= 1 << (bit % 64);
        self.unresolved -= 1;
        true
    }
}

#[derive(Debug, Clone, Default)]
pub struct Shard {
    queue: ShardQueue,
    /// Oldest first.
    grants: VecDeque<Grant>,
    sessions: HashMap<u64, u64>,
    session_expiry: BTreeSet<(u64, u64)>,
    users: Users,
    unclaimed: u64,
    admitted_total: u64,
    /// When each waiting place (by queue seq, index `seq - 1`) was last seen, in Unix seconds:
    /// soft state, neither logged nor in a snapshot (a shard built again takes everyone as seen
    /// then, [`Shard::seen_all`]). What it decides, [`Op::Abandon`], is logged.
    seen: Vec<u32>,
    /// Where the next look for unseen places beyond the head goes on from (soft state).
    sweep_cursor: u64,
    abandoned_total: u64,
    /// The last admitted seq looked at for a visitor who never came (soft state: a shard built
    /// again looks at its open grants again, harmlessly).
    no_show_cursor: u64,
    /// Admissions ended because their visitors never came for them and stopped asking.
    no_shows_total: u64,
    /// Places in the queue their visitors left themselves.
    left_total: u64,
}

/// The waiting places at the head of the line that each look for unseen places checks: those
/// admission reaches next.
pub const SWEEP_HEAD: u64 = 4_096;
/// And this many more beyond them, from where the last look stopped, round the line: a look
/// costs the same however long the line (the whole of a line of 1,000,000 in about 250 looks).
pub const SWEEP_MORE: u64 = 4_096;

/// Two shards are equal when no operation can tell them apart. The user entries of ended places
/// (which no join sees), the sweep's count and who was seen when (soft state) are left out: a
/// shard restored from a snapshot, which keeps only live entries, equals the shard it was taken
/// from.
impl PartialEq for Shard {
    fn eq(&self, other: &Self) -> bool {
        let live = |shard: &Shard| shard.live_users().count();
        self.queue == other.queue
            && self.grants == other.grants
            && self.sessions == other.sessions
            && self.session_expiry == other.session_expiry
            && self.unclaimed == other.unclaimed
            && self.admitted_total == other.admitted_total
            && self.abandoned_total == other.abandoned_total
            && self.no_shows_total == other.no_shows_total
            && self.left_total == other.left_total
            && live(self) == live(other)
            && self
                .live_users()
                .all(|(user, seq)| other.users.get(user) == Some(seq))
    }
}

impl Eq for Shard {}

impl Shard {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn queue(&self) -> &ShardQueue {
        &self.queue
    }

    /// Sessions in the application.
    pub fn active(&self) -> u64 {
        self.sessions.len() as u64
    }

    /// Admitted visitors who have not arrived yet, inside their claim window.
    pub fn unclaimed(&self) -> u64 {
        self.unclaimed
    }

    /// Admissions ever made from this shard (batches and entries at once).
    pub fn admitted_total(&self) -> u64 {
        self.admitted_total
    }

    /// User ids the shard keeps an entry for: those with a live place, and those whose place
    /// ended since the last sweep.
    pub fn user_entries(&self) -> usize {
        self.users.len()
    }

    /// What the shard holds, for an admission plan: its counters, `credit` (kept by the caller)
    /// and the next `heads` waiting visitors.
    pub fn reading(&self, heads: u64, credit: u64) -> ShardReading {
        let waiting = self.queue.waiting();
        let heads = self.queue.heads(heads);
        ShardReading {
            active: self.active(),
            unclaimed: self.unclaimed,
            credit,
            waiting,
            admitted_total: self.admitted_total,
            listed_below: ShardReading::bound(&heads, waiting),
            heads,
            shuffled_us: self.queue.shuffled_us(),
            abandoned_total: self.abandoned_total,
            no_shows_total: self.no_shows_total,
            joined_total: self.queue.tail(),
            left_total: self.left_total,
        }
    }

    /// Whether the shard's counters agree with what they count (for tests and debug checks).
    pub fn is_consistent(&self) -> bool {
        let unresolved: u64 = self.grants.iter().map(|g| g.unresolved).sum();
        unresolved == self.unclaimed
            && self.sessions.len() == self.session_expiry.len()
            && self
                .session_expiry
                .iter()
                .all(|(expires_at, seq)| self.sessions.get(seq) == Some(expires_at))
            && self.users.iter().all(|(_, seq)| self.queue.contains(seq))
    }

    pub fn apply(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Join {
                user,
                stamp,
                enter,
                now,
                timing,
            } => Outcome::Join(self.join(user.as_deref(), *stamp, *enter, *now, *timing)),
            Op::Visit { seq, now, timing } => Outcome::Visit(self.visit(*seq, *now, *timing)),
            Op::End { seq, now } => Outcome::End(self.end(*seq, *now)),
            Op::Session {
                seq,
                renew,
                now,
                timing,
            } => Outcome::Session(self.session(*seq, *renew, *now, *timing)),
            Op::Expire { now, timing } => {
                self.expire(*now, *timing);
                Outcome::Expire
            }
            Op::AdmitThrough { upto, now } => Outcome::Admitted(self.admit_through(*upto, *now)),
            Op::Shuffle {
                epoch,
                shard,
                seed,
                prequeue_us,
                start_us,
            } => {
                let spec = ShuffleSpec {
                    seed: crate::shuffle::from_hex(seed).unwrap_or_default(),
                    prequeue_us: *prequeue_us,
                    start_us: *start_us,
                };
                Outcome::Shuffled(self.shuffle(*epoch, *shard, &spec))
            }
            Op::Abandon { seqs, .. } => Outcome::Abandoned(self.abandon(seqs)),
            Op::Draw { count, seed, now } => Outcome::Admitted(self.draw(*count, *seed, *now)),
        }
    }

    /// Notes that the visitor with ticket seq `seq` was seen waiting at `now` (a visit notes it
    /// too; this is for a poll answered without one).
    pub fn seen(&mut self, seq: u64, now: u64) {
        let seq = self.queue.locate(seq);
        if self.queue.is_waiting(seq) {
            self.mark_seen(seq, now);
        }
    }

    fn mark_seen(&mut self, seq: u64, now: u64) {
        let i = (seq - 1) as usize;
        if self.seen.len() <= i {
            self.seen.resize(i + 1, 0);
        }
        self.seen[i] = self.seen[i].max(unix_seconds(now));
    }

    /// Takes every place as seen at `now` at the latest (a shard rebuilt from its log, which
    /// does not keep who was seen when).
    pub fn seen_all(&mut self, now: u64) {
        let tail = self.queue.tail() as usize;
        self.seen.resize(tail, 0);
        let now = unix_seconds(now);
        for seen in &mut self.seen {
            *seen = (*seen).max(now);
        }
    }

    /// Ends the places of waiting visitors not seen for `after_ms` by `now`, and the admissions
    /// of those admitted who have not come for them in that time (as an [`Op::Abandon`], which it
    /// returns for a log, or `None` if there were none).
    pub fn abandon_unseen(&mut self, now: u64, after_ms: u64) -> Option<Op> {
        let seqs = self.unseen(now, after_ms);
        if seqs.is_empty() {
            return None;
        }
        let op = Op::Abandon { seqs, now };
        self.apply(&op);
        Some(op)
    }

    /// Waiting places (queue seqs) not seen for `after_ms` by `now`: of the first
    /// [`SWEEP_HEAD`] waiting, and of [`SWEEP_MORE`] beyond them from where the last look
    /// stopped; then the admitted places no visitor came for ([`Shard::no_shows`]).
    pub fn unseen(&mut self, now: u64, after_ms: u64) -> Vec<u64> {
        let mut seqs = self.unseen_waiting(now, after_ms);
        seqs.extend(self.no_shows(now, after_ms));
        seqs
    }

    fn unseen_waiting(&mut self, now: u64, after_ms: u64) -> Vec<u64> {
        let before = unix_seconds(now.saturating_sub(after_ms));
        let tail = self.queue.tail();
        let head_end = (self.queue.admitted_seq() + SWEEP_HEAD).min(tail);
        let mut from = self.sweep_cursor.max(head_end + 1);
        if from > tail {
            from = head_end + 1;
        }
        let more_end = (from + SWEEP_MORE - 1).min(tail);
        self.sweep_cursor = more_end + 1;
        let unseen = |seq: &u64| {
            let seen = self.seen.get((seq - 1) as usize).copied().unwrap_or(0);
            seen < before && !self.queue.is_left(*seq)
        };
        (self.queue.admitted_seq() + 1..=head_end)
            .chain(from..=more_end)
            .filter(unseen)
            .collect()
    }

    /// Admitted places whose visitors have not come for them although `after_ms` has passed
    /// since the admission, and who were not seen in the last half of that time either. A
    /// visitor who is still there asks at least four times within it ([`crate::visitor`]) and
    /// comes in at the first ask after the admission, so what is left unclaimed then is someone
    /// who left just before the turn came. (One who asked a store that had not yet heard of the
    /// admission, an instance's mirror a tick behind, was seen since, and is left alone; the
    /// half keeps that clear of the seen times' whole seconds.) Each grant is looked at once,
    /// when it is `after_ms` old: each admitted seq costs one look in its life.
    fn no_shows(&mut self, now: u64, after_ms: u64) -> Vec<u64> {
        let before = unix_seconds(now.saturating_sub(after_ms / 2));
        let mut found = Vec::new();
        for grant in &self.grants {
            if grant.admitted_at.saturating_add(after_ms) > now {
                break;
            }
            if grant.last_seq <= self.no_show_cursor {
                continue;
            }
            let from = grant.first_seq.max(self.no_show_cursor + 1);
            if grant.unresolved > 0 {
                found.extend((from..=grant.last_seq).filter(|&seq| {
                    let seen = self.seen.get((seq - 1) as usize).copied().unwrap_or(0);
                    !grant.is_resolved(seq) && seen < before
                }));
            }
            self.no_show_cursor = grant.last_seq;
        }
        found
    }

    /// Ends the places of `seqs` (queue seqs) still waiting, and the admissions of those still
    /// unclaimed; returns how many places (admissions not counted).
    pub fn abandon(&mut self, seqs: &[u64]) -> u64 {
        let mut ended = 0;
        let mut no_shows = 0;
        for &seq in seqs {
            if self.queue.is_waiting(seq) {
                if self.queue.mark_left(seq) {
                    ended += 1;
                }
                continue;
            }
            let unclaimed = self.grant_of(seq).is_some_and(|g| g.resolve(seq));
            if unclaimed {
                self.queue.mark_left(seq);
                self.unclaimed -= 1;
                no_shows += 1;
            }
        }
        self.users.ended(ended + no_shows);
        self.abandoned_total += ended;
        self.no_shows_total += no_shows;
        ended
    }

    /// Admissions ended because their visitors never came for them ([`Shard::no_shows`]).
    pub fn no_shows_total(&self) -> u64 {
        self.no_shows_total
    }

    /// Places in the queue their visitors left themselves.
    pub fn left_total(&self) -> u64 {
        self.left_total
    }

    /// Places ended because their visitors stopped asking.
    pub fn abandoned_total(&self) -> u64 {
        self.abandoned_total
    }

    /// Puts the pre-queue of `spec` in its shuffled order (once: a shuffle at or before the
    /// last one applied does nothing). Returns how many places it reordered.
    pub fn shuffle(&mut self, epoch: u32, shard: u16, spec: &ShuffleSpec) -> u64 {
        if spec.start_us <= self.queue.shuffled_us() {
            return 0;
        }
        let (first, last, floor) = self.queue.prequeue_block(spec.prequeue_us, spec.start_us);
        let perm = spec.permute(epoch, shard, first, last, floor);
        self.queue.apply_shuffle(&perm, spec.start_us);
        // When each was last seen moves with the place.
        let seen_of = |seen: &[u32], seq: u64| seen.get((seq - 1) as usize).copied().unwrap_or(0);
        let moved: Vec<(u64, u32)> = perm
            .moves()
            .map(|(ticket, seq)| (seq, seen_of(&self.seen, ticket)))
            .collect();
        for (seq, seen) in moved {
            let i = (seq - 1) as usize;
            if self.seen.len() <= i {
                self.seen.resize(i + 1, 0);
            }
            self.seen[i] = seen;
        }
        perm.order.len() as u64
    }

    /// Random mode's batch ([`crate::draw`]): admits `count` waiting visitors (fewer if fewer
    /// wait) drawn uniformly with `seed`. Returns how many.
    pub fn draw(&mut self, count: u64, seed: u64, now: u64) -> u64 {
        let swaps = self.queue.draw_swaps(count, seed);
        self.swap_places(&swaps);
        self.admit(count, now)
    }

    /// Swaps the visitors of each pair of waiting places (a draw's swaps, as
    /// [`crate::queue::ShardQueue::draw_swaps`] gives them); a pair of which either place no
    /// longer waits is passed over.
    pub fn swap_places(&mut self, swaps: &[(u64, u64)]) {
        for &(a, b) in swaps {
            if !self.queue.is_waiting(a) || !self.queue.is_waiting(b) {
                continue;
            }
            self.queue.swap(a, b);
            // When each was last seen moves with the visitor.
            let top = a.max(b) as usize;
            if self.seen.len() < top {
                self.seen.resize(top, 0);
            }
            self.seen.swap((a - 1) as usize, (b - 1) as usize);
        }
    }

    /// The op that applies `spec` to shard `shard` of epoch `epoch`.
    pub fn shuffle_op(epoch: u32, shard: u16, spec: &ShuffleSpec) -> Op {
        Op::Shuffle {
            epoch,
            shard,
            seed: crate::shuffle::hex(&spec.seed),
            prequeue_us: spec.prequeue_us,
            start_us: spec.start_us,
        }
    }

    /// Gives a visitor a place (or, for a user id with a live place, that place). With `enter`,
    /// the caller has found a free slot and nobody waiting: the visitor is admitted at once.
    pub fn join(
        &mut self,
        user: Option<&str>,
        stamp: u64,
        enter: bool,
        now: u64,
        timing: Timing,
    ) -> ShardJoin {
        let user = user.map(UserKey::of);
        if let Some(seq) = user.and_then(|u| self.users.get(&u)) {
            let standing = self.visit(seq, now, timing);
            if matches!(standing, Standing::Waiting | Standing::Admitted { .. }) {
                return ShardJoin {
                    existing: true,
                    seq,
                    stamp: self.queue.stamp(self.queue.locate(seq)).unwrap_or(0),
                    standing,
                };
            }
        }
        let stamp = stamp.max(self.queue.last_stamp() + 1);
        let seq = self.queue.push(stamp);
        self.mark_seen(seq, now);
        if let Some(user) = user {
            self.users.insert(user, seq);
        }
        let standing = if enter {
            // Nobody waits: every earlier seq was admitted or left.
            self.queue.admit_through(seq);
            self.admitted_total += 1;
            Standing::Admitted {
                session_expires_at: self.start_session(seq, now, timing),
            }
        } else {
            Standing::Waiting
        };
        ShardJoin {
            existing: false,
            seq,
            stamp,
            standing,
        }
    }

    /// Where the visitor with ticket seq `seq` stands; an admitted visitor inside the claim
    /// window arrives now.
    pub fn visit(&mut self, seq: u64, now: u64, timing: Timing) -> Standing {
        let seq = self.queue.locate(seq);
        if !self.queue.contains(seq) {
            return Standing::Expired;
        }
        if self.queue.is_left(seq) {
            return Standing::Left;
        }
        if seq > self.queue.admitted_seq() {
            self.mark_seen(seq, now);
            return Standing::Waiting;
        }
        if let Some(&expires_at) = self.sessions.get(&seq) {
            if expires_at > now {
                return Standing::Admitted {
                    session_expires_at: expires_at,
                };
            }
            self.end_session(seq);
            self.users.ended(1);
            return Standing::Expired;
        }
        let claimed = self
            .grant_of(seq)
            .filter(|g| g.admitted_at + timing.claim_window_ms > now)
            .is_some_and(|g| g.resolve(seq));
        if !claimed {
            return Standing::Expired;
        }
        self.unclaimed -= 1;
        Standing::Admitted {
            session_expires_at: self.start_session(seq, now, timing),
        }
    }

    /// Ends whatever the visitor holds: a place in the queue, an unclaimed admission or a
    /// session, and marks the visitor as left for good. `None` when the shard never gave out
    /// `seq`; else whether something was ended.
    pub fn end(&mut self, seq: u64, now: u64) -> Option<bool> {
        let seq = self.queue.locate(seq);
        if !self.queue.contains(seq) {
            return None;
        }
        let waiting = self.queue.is_waiting(seq);
        if !self.queue.mark_left(seq) {
            return Some(false);
        }
        self.users.ended(1);
        if waiting {
            self.left_total += 1;
            return Some(true);
        }
        if self.grant_of(seq).is_some_and(|g| g.resolve(seq)) {
            self.unclaimed -= 1;
            return Some(true);
        }
        let live = self
            .sessions
            .get(&seq)
            .is_some_and(|&expires_at| expires_at > now);
        Some(self.end_session(seq) && live)
    }

    /// Whether the session at `seq` is live, and its expiry; with `renew`, pushed out first.
    pub fn session(&mut self, seq: u64, renew: bool, now: u64, timing: Timing) -> Option<u64> {
        let seq = self.queue.locate(seq);
        if self.queue.is_left(seq) {
            return None;
        }
        let expires_at = *self.sessions.get(&seq)?;
        if expires_at <= now {
            self.end_session(seq);
            self.users.ended(1);
            return None;
        }
        if !renew {
            return Some(expires_at);
        }
        self.end_session(seq);
        Some(self.start_session(seq, now, timing))
    }

    /// Ends sessions past their TTL and admissions past their claim window, and sweeps the user
    /// entries of ended places once enough have ended.
    pub fn expire(&mut self, now: u64, timing: Timing) {
        while let Some(&(expires_at, seq)) = self.session_expiry.first() {
            if expires_at > now {
                break;
            }
            self.session_expiry.pop_first();
            self.sessions.remove(&seq);
            self.users.ended(1);
        }
        while let Some(grant) = self.grants.front() {
            if grant.admitted_at + timing.claim_window_ms > now {
                break;
            }
            self.unclaimed -= grant.unresolved;
            self.users.ended(grant.unresolved);
            self.grants.pop_front();
        }
        if self.users.sweep_due() {
            self.sweep();
        }
    }

    /// Whether expiring at `now` would change anything (so that a log need not record it). A
    /// sweep due counts: an edge shard then logs the expiry, and a replay sweeps where the
    /// original did.
    pub fn would_expire(&self, now: u64, timing: Timing) -> bool {
        self.session_expiry
            .first()
            .is_some_and(|&(expires_at, _)| expires_at <= now)
            || self
                .grants
                .front()
                .is_some_and(|g| g.admitted_at + timing.claim_window_ms <= now)
            || self.users.sweep_due()
    }

    /// Drops the user entries of ended places.
    fn sweep(&mut self) {
        let mut users = std::mem::take(&mut self.users);
        users.sweep(|seq| self.holds_place(self.queue.locate(seq)));
        self.users = users;
    }

    /// Whether `seq` still holds a place: waiting, admitted inside an open grant, or in a session
    /// (one past its TTL counts until an expiry ends it). Once false, false for good: a leaver
    /// stays one, and no session starts for a place whose claim is gone, so an entry dropped
    /// for it could never have been handed back.
    fn holds_place(&self, seq: u64) -> bool {
        if !self.queue.contains(seq) || self.queue.is_left(seq) {
            return false;
        }
        seq > self.queue.admitted_seq()
            || self.sessions.contains_key(&seq)
            || self
                .grant_index(seq)
                .is_some_and(|i| !self.grants[i].is_resolved(seq))
    }

    /// The user entries whose place is live.
    fn live_users(&self) -> impl Iterator<Item = (&UserKey, u64)> {
        self.users
            .iter()
            .filter(|&(_, seq)| self.holds_place(self.queue.locate(seq)))
    }

    /// Admits every waiting visitor through `upto` as one batch; returns how many.
    pub fn admit_through(&mut self, upto: u64, now: u64) -> u64 {
        let first_seq = self.queue.admitted_seq() + 1;
        let admitted = self.queue.admit_through(upto);
        if admitted == 0 {
            return 0;
        }
        let last_seq = self.queue.admitted_seq();
        let mut grant = Grant {
            first_seq,
            last_seq,
            admitted_at: now,
            resolved: Vec::new(),
            unresolved: admitted + (last_seq - first_seq + 1 - admitted),
        };
        // Leavers inside the run have nothing to claim.
        for seq in first_seq..=last_seq {
            if self.queue.is_left(seq) {
                grant.resolve(seq);
            }
        }
        self.grants.push_back(grant);
        self.unclaimed += admitted;
        self.admitted_total += admitted;
        admitted
    }

    /// Admits the next `count` waiting visitors; returns how many (fewer if fewer wait).
    pub fn admit(&mut self, count: u64, now: u64) -> u64 {
        let count = count.min(self.queue.waiting());
        match self.queue.nth_waiting(count) {
            Some(upto) => self.admit_through(upto, now),
            None => 0,
        }
    }

    fn start_session(&mut self, seq: u64, now: u64, timing: Timing) -> u64 {
        let expires_at = now + timing.session_ttl_ms;
        self.sessions.insert(seq, expires_at);
        self.session_expiry.insert((expires_at, seq));
        expires_at
    }

    fn end_session(&mut self, seq: u64) -> bool {
        match self.sessions.remove(&seq) {
            Some(expires_at) => {
                self.session_expiry.remove(&(expires_at, seq));
                true
            }
            None => false,
        }
    }

    /// The still-open grant that admitted `seq`.
    fn grant_of(&mut self, seq: u64) -> Option<&mut Grant> {
        let i = self.grant_index(seq)?;
        self.grants.get_mut(i)
    }

    fn grant_index(&self, seq: u64) -> Option<usize> {
        let i = self.grants.partition_point(|g| g.last_seq < seq);
        self.grants.get(i).filter(|g| g.first_seq <= seq).map(|_| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        session_ttl_ms: 30_000,
        claim_window_ms: 10_000,
    };

    /// A shuffle of the pre-queue from 1 ms to 2 ms (in join-stamp microseconds).
    fn spec(seed: u8) -> ShuffleSpec {
        ShuffleSpec {
            seed: vec![seed; 32],
            prequeue_us: 1_000,
            start_us: 2_000,
        }
    }

    /// The shard a snapshot of `shard` restores (segments of 4 visitors).
    fn restored(shard: &Shard) -> Shard {
        let segments = shard.snapshot_visitors(1, 4);
        Shard::restore(
            &shard.snapshot_state(),
            segments.iter().map(|(_, b)| b.as_slice()),
        )
        .unwrap()
    }

    #[test]
    fn replaying_the_log_rebuilds_the_same_shard() {
        let ops = vec![
            Op::Join {
                user: Some("a".into()),
                stamp: 10,
                enter: false,
                now: 1,
                timing: T,
            },
            Op::Join {
                user: None,
                stamp: 11,
                enter: false,
                now: 2,
                timing: T,
            },
            Op::Join {
                user: Some("a".into()),
                stamp: 12,
                enter: false,
                now: 3,
                timing: T,
            },
            Op::Join {
                user: None,
                stamp: 5,
                enter: false,
                now: 4,
                timing: T,
            },
            Op::End { seq: 2, now: 5 },
            Op::AdmitThrough { upto: 3, now: 6 },
            Op::Visit {
                seq: 1,
                now: 7,
                timing: T,
            },
            Op::Session {
                seq: 1,
                renew: true,
                now: 8,
                timing: T,
            },
            Op::Expire {
                now: 20_000,
                timing: T,
            },
        ];
        let mut live = Shard::new();
        let outcomes: Vec<Outcome> = ops.iter().map(|op| live.apply(op)).collect();
        let encoded: Vec<String> = ops
            .iter()
            .map(|op| serde_json::to_string(op).unwrap())
            .collect();
        let mut replayed = Shard::new();
        let again: Vec<Outcome> = encoded
            .iter()
            .map(|line| replayed.apply(&serde_json::from_str(line).unwrap()))
            .collect();
        assert_eq!(outcomes, again);
        assert_eq!(replayed.queue(), live.queue());
        assert_eq!(replayed.active(), 1);
        assert_eq!(replayed.unclaimed(), 0, "seq 3 lost its claim window");
        // The same user joined twice: one place. A stamp below the last one is raised.
        assert_eq!(
            outcomes[2],
            Outcome::Join(ShardJoin {
                existing: true,
                seq: 1,
                stamp: 10,
                standing: Standing::Waiting
            })
        );
        assert!(matches!(
            outcomes[3],
            Outcome::Join(ShardJoin {
                stamp: 12,
                seq: 3,
                ..
            })
        ));
        assert_eq!(outcomes[5], Outcome::Admitted(2));
    }

    #[test]
    fn admission_skips_leavers_and_claims_once() {
        let mut shard = Shard::new();
        for stamp in 1..=4 {
            shard.join(None, stamp, false, 0, T);
        }
        shard.end(2, 0);
        assert_eq!(shard.admit(2, 0), 2);
        assert_eq!(shard.queue().admitted_seq(), 3);
        assert_eq!(shard.unclaimed(), 2);
        assert!(matches!(shard.visit(3, 1, T), Standing::Admitted { .. }));
        assert_eq!(shard.unclaimed(), 1);
        assert!(matches!(shard.visit(3, 2, T), Standing::Admitted { .. }));
        assert_eq!(shard.visit(2, 2, T), Standing::Left);
        assert_eq!(shard.visit(4, 2, T), Standing::Waiting);
        assert_eq!(shard.end(3, 3), Some(true));
        assert_eq!(shard.active(), 0);
        assert_eq!(shard.end(99, 3), None);
    }

    #[test]
    fn a_shuffle_reorders_the_prequeue_and_tickets_keep_their_places() {
        let spec = spec(3);
        let mut shard = Shard::new();
        // One visitor from before the pre-queue, eight in it (one leaves), one after the start.
        shard.join(Some("early"), 500, false, 0, T);
        for stamp in 0..8 {
            shard.join(Some(&format!("u{stamp}")), 1_000 + stamp * 10, false, 1, T);
        }
        shard.end(4, 1);
        let op = Shard::shuffle_op(7, 1, &spec);
        assert_eq!(shard.apply(&op), Outcome::Shuffled(8));
        // Once only.
        assert_eq!(shard.apply(&op), Outcome::Shuffled(0));
        shard.join(None, 2_500, false, 3, T);
        assert!(shard.is_consistent());

        let key = |seq: u64| crate::shuffle::rank_key(&spec.seed, &format!("00000007-1-{seq}"));
        let mut expected: Vec<u64> = (2..=9).filter(|&s| s != 4).collect();
        expected.sort_by_key(|&s| key(s));
        let mut order = vec![1];
        order.extend(expected);
        order.push(10);
        // Admission goes in that order, by ticket seq; the leaver stays left.
        let mut admitted = Vec::new();
        for _ in 0..order.len() {
            shard.admit(1, 5);
            let new: Vec<u64> = (1..=10)
                .filter(|s| !admitted.contains(s))
                .filter(|&s| matches!(shard.clone().visit(s, 5, T), Standing::Admitted { .. }))
                .collect();
            admitted.extend(new);
        }
        assert_eq!(admitted, order);
        assert_eq!(shard.visit(4, 6, T), Standing::Left);
        // A user id's second join finds its place where the shuffle put it.
        let again = shard.join(Some("u3"), 3_000, false, 6, T);
        assert!(again.existing);
        assert_eq!(again.seq, 5);
        assert_eq!(again.stamp, spec.stamp_of(&key(5)).max(again.stamp));
        assert!(spec.covers(again.stamp));
        // A snapshot keeps the moves.
        let copy = restored(&shard);
        assert_eq!(copy, shard);
        assert_eq!(copy.queue().locate(5), shard.queue().locate(5));
    }

    /// The ticket seqs `1..=n` that a visit finds admitted (on a copy: a visit claims).
    fn admitted_tickets(shard: &Shard, n: u64) -> Vec<u64> {
        (1..=n)
            .filter(|&s| matches!(shard.clone().visit(s, 5, T), Standing::Admitted { .. }))
            .collect()
    }

    #[test]
    fn a_draw_admits_among_all_waiting_and_tickets_keep_their_places() {
        let mut shard = Shard::new();
        for stamp in 1..=12 {
            shard.join(Some(&format!("u{stamp}")), stamp, false, 1, T);
        }
        shard.end(5, 1);
        shard.end(9, 1);
        let op = Op::Draw {
            count: 4,
            seed: 77,
            now: 2,
        };
        let mut replayed = shard.clone();
        assert_eq!(shard.apply(&op), Outcome::Admitted(4));
        assert!(shard.is_consistent());
        let first = admitted_tickets(&shard, 12);
        assert_eq!(first.len(), 4);
        assert!(!first.contains(&5) && !first.contains(&9), "{first:?}");
        assert_ne!(
            first,
            vec![1, 2, 3, 4],
            "a draw of 4 among 10 took the head"
        );
        for seq in (1..=12).filter(|s| !first.contains(s) && ![5, 9].contains(s)) {
            assert_eq!(shard.clone().visit(seq, 5, T), Standing::Waiting, "{seq}");
        }
        assert_eq!(shard.visit(5, 5, T), Standing::Left);
        // A user id's second join finds its place where the draw put it.
        let again = shard.join(Some(&format!("u{}", first[0])), 99, false, 5, T);
        assert!(again.existing && again.seq == first[0]);
        assert!(matches!(again.standing, Standing::Admitted { .. }));
        // The log replays the same draw; a snapshot keeps the moves.
        replayed.apply(&op);
        assert_eq!(admitted_tickets(&replayed, 12), first);
        let copy = restored(&shard);
        assert_eq!(copy, shard);
        assert_eq!(admitted_tickets(&copy, 12), admitted_tickets(&shard, 12));
        // Draws go on until everyone still waiting is in, each once.
        shard.draw(3, 78, 6);
        shard.draw(50, 79, 7);
        assert_eq!(shard.queue().waiting(), 0);
        assert_eq!(shard.admitted_total(), 10);
        assert!(shard.is_consistent());
    }

    #[test]
    fn every_waiting_visitor_is_as_likely_to_be_drawn() {
        // 8 wait (seq 1 already admitted, seqs 2 and 11 left); 2000 draws of 2.
        let mut base = Shard::new();
        for stamp in 1..=11 {
            base.join(None, stamp, false, 1, T);
        }
        base.admit(1, 1);
        base.end(2, 1);
        base.end(11, 1);
        let mut picked = [0u32; 12];
        for seed in 0..2_000 {
            let mut shard = base.clone();
            assert_eq!(shard.draw(2, seed, 2), 2);
            for seq in admitted_tickets(&shard, 11) {
                picked[seq as usize] += 1;
            }
        }
        // Seq 1 was admitted before the draws, so it shows as admitted each time.
        assert_eq!((picked[2], picked[11]), (0, 0));
        // Each of the 8 waiting: 2000 * 2 / 8 = 500 expected (sd about 19).
        for seq in 3..=10 {
            assert!((430..570).contains(&picked[seq]), "{picked:?}");
        }
    }

    #[test]
    fn a_draw_among_mostly_leavers_is_still_exact() {
        let mut shard = Shard::new();
        for stamp in 1..=200 {
            shard.join(None, stamp, false, 1, T);
        }
        for seq in (1..=200).filter(|s| s % 50 != 0) {
            shard.end(seq, 1);
        }
        assert_eq!(shard.draw(2, 5, 2), 2);
        let admitted = admitted_tickets(&shard, 200);
        assert_eq!(admitted.len(), 2);
        assert!(admitted.iter().all(|s| s % 50 == 0), "{admitted:?}");
    }

    #[test]
    fn places_not_seen_for_long_end_before_admission() {
        let mut shard = Shard::new();
        for stamp in 1..=3 {
            shard.join(None, stamp, false, 1_000, T);
        }
        // Seq 1 keeps asking, seq 2 asks once, seq 3 never again.
        shard.visit(1, 9_000, T);
        shard.seen(2, 5_000);
        assert_eq!(shard.unseen(10_000, 9_000), Vec::<u64>::new());
        assert_eq!(shard.unseen(10_000, 6_000), vec![3]);
        let op = shard.abandon_unseen(12_000, 6_000).unwrap();
        assert_eq!(
            op,
            Op::Abandon {
                seqs: vec![2, 3],
                now: 12_000
            }
        );
        assert_eq!(shard.abandoned_total(), 2);
        assert_eq!(shard.queue().waiting(), 1);
        assert_eq!(shard.visit(3, 12_000, T), Standing::Left);
        // Admission reaches the one who stayed, and only it.
        assert_eq!(shard.admit(5, 12_000), 1);
        assert!(shard.is_consistent());
        // Replayed, the log ends the same places; a shard rebuilt counts everyone as seen.
        let mut replayed = Shard::new();
        for stamp in 1..=3 {
            replayed.join(None, stamp, false, 1_000, T);
        }
        replayed.seen_all(11_000);
        assert_eq!(replayed.unseen(12_000, 6_000), Vec::<u64>::new());
        replayed.apply(&op);
        replayed.admit(5, 12_000);
        assert_eq!(replayed, shard);
        assert_eq!(restored(&shard).abandoned_total(), 2);
    }

    #[test]
    fn those_who_leave_the_queue_are_counted_apart_from_other_endings() {
        let mut shard = Shard::new();
        for stamp in 1..=5 {
            shard.join(None, stamp, false, 1_000, T);
        }
        assert_eq!(shard.admit(2, 2_000), 2);
        // Seq 4 leaves the queue; seq 1 leaves after its admission; seq 4 again is no news.
        assert_eq!(shard.end(4, 3_000), Some(true));
        assert_eq!(shard.end(1, 3_000), Some(true));
        assert_eq!(shard.end(4, 3_000), Some(false));
        assert_eq!(shard.left_total(), 1);
        let reading = shard.reading(10, 0);
        assert_eq!((reading.joined_total, reading.left_total), (5, 1));
        assert_eq!(restored(&shard).left_total(), 1);
    }

    #[test]
    fn admissions_nobody_came_for_end_once_unseen_for_long() {
        let mut shard = Shard::new();
        for stamp in 1..=6 {
            shard.join(None, stamp, false, 1_000, T);
        }
        assert_eq!(shard.admit(3, 2_000), 3);
        // Seq 1 comes at once; seqs 2 and 3 never do. The batch is looked at only once it is
        // 6 s old, and then only once.
        assert!(matches!(
            shard.visit(1, 2_500, T),
            Standing::Admitted { .. }
        ));
        assert_eq!(shard.unseen(7_000, 6_000), Vec::<u64>::new());
        let op = shard.abandon_unseen(8_000, 6_000).unwrap();
        assert_eq!(
            op,
            Op::Abandon {
                seqs: vec![4, 5, 6, 2, 3],
                now: 8_000
            }
        );
        // The waiting 4-6 (unseen since joining) count as abandoned, 2 and 3 as no-shows.
        assert_eq!(shard.abandoned_total(), 3);
        assert_eq!(shard.no_shows_total(), 2);
        assert_eq!(shard.unclaimed(), 0);
        assert_eq!(shard.visit(2, 8_000, T), Standing::Left);
        assert!(matches!(
            shard.visit(1, 8_000, T),
            Standing::Admitted { .. }
        ));
        assert_eq!(shard.unseen(20_000, 6_000), Vec::<u64>::new());
        assert!(shard.is_consistent());
        // A batch whose visitor was seen just before it was admitted, and came: not a no-show.
        shard.join(None, 7, false, 20_000, T);
        assert_eq!(shard.admit(1, 21_000), 1);
        assert!(matches!(
            shard.visit(7, 22_000, T),
            Standing::Admitted { .. }
        ));
        assert_eq!(shard.unseen(30_000, 6_000), Vec::<u64>::new());
        // Replayed from the log, and restored from a snapshot, the count stays.
        let mut replayed = Shard::new();
        for stamp in 1..=6 {
            replayed.join(None, stamp, false, 1_000, T);
        }
        replayed.admit(3, 2_000);
        replayed.visit(1, 2_500, T);
        replayed.apply(&op);
        assert_eq!(replayed.no_shows_total(), 2);
        assert_eq!(replayed.unclaimed(), 0);
        assert_eq!(restored(&shard).no_shows_total(), 2);
        assert_eq!(restored(&shard), shard);
    }

    #[test]
    fn a_shuffle_moves_when_each_was_seen_with_the_place() {
        let spec = spec(5);
        let mut shard = Shard::new();
        for stamp in 0..6 {
            shard.join(None, 1_000 + stamp, false, 1_000, T);
        }
        // Only ticket seq 4 keeps asking.
        shard.seen(4, 50_000);
        shard.shuffle(0, 0, &spec);
        let moved = shard.queue().locate(4);
        assert_eq!(shard.unseen(60_000, 20_000).len(), 5);
        assert!(!shard.unseen(60_000, 20_000).contains(&moved));
    }

    #[test]
    fn a_look_for_unseen_places_costs_the_same_however_long_the_line() {
        let mut shard = Shard::new();
        for stamp in 1..=10_000 {
            shard.join(None, stamp, false, 0, T);
        }
        let look = |shard: &mut Shard| shard.unseen(10_000, 1_000);
        // The head, and as many again beyond it.
        let first = look(&mut shard);
        assert_eq!(first.len() as u64, SWEEP_HEAD + SWEEP_MORE);
        assert_eq!(first.last(), Some(&(SWEEP_HEAD + SWEEP_MORE)));
        // The head again, and on from there to the end of the line.
        let second = look(&mut shard);
        assert_eq!(
            second.len() as u64,
            SWEEP_HEAD + (10_000 - SWEEP_HEAD - SWEEP_MORE)
        );
        assert_eq!(second.last(), Some(&10_000));
        // Then round again, from just past the head.
        let third = look(&mut shard);
        assert_eq!(third[SWEEP_HEAD as usize], SWEEP_HEAD + 1);
    }
}
