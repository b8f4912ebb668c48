//! A shard as bytes, so that a store need not replay its whole log: the state (everything but
//! the visitors, rewritten each time) and the visitors in segments of consecutive seqs (their
//! join stamps and user ids). Stamps never change once given out, so a segment whose seqs have
//! all been handed out never needs writing again; only the last, partial one and the state do.
//!
//! Format, version [`SNAPSHOT_VERSION`]; every integer is a big-endian `u64` unless said:
//!
//! - state: `"QGS"`, version (1 byte), tail (seqs handed out), admitted seq, admitted total,
//!   unclaimed; the leaver bit words (count, words: bit `(seq - 1) % 64` of word
//!   `(seq - 1) / 64`); the open grants, oldest first (count; each first seq, last seq, admitted
//!   at, unresolved, and its resolved bit words as count and words); the sessions in seq order
//!   (count; each seq, expires at).
//! - visitors: `"QGV"`, version (1 byte), first seq, count, the count join stamps (8 bytes
//!   each), then the user ids whose place is in the segment, in seq order (count; each seq,
//!   length as a big-endian `u32`, UTF-8 bytes).
//!
//! A user id's place only ever moves to a newer seq, so a segment written before its user moved
//! on keeps a stale entry that a newer segment overrides: restoring the segments in order
//! rebuilds the user ids exactly.

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::{Grant, Shard};
use crate::queue::ShardQueue;

/// The snapshot format this code writes and reads.
pub const SNAPSHOT_VERSION: u8 = 1;

const STATE_MAGIC: &[u8; 3] = b"QGS";
const VISITORS_MAGIC: &[u8; 3] = b"QGV";

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the shard snapshot: {0}")]
pub struct SnapshotError(String);

fn bad<T>(what: impl Into<String>) -> Result<T, SnapshotError> {
    Err(SnapshotError(what.into()))
}

struct Writer(Vec<u8>);

impl Writer {
    fn new(magic: &[u8; 3]) -> Self {
        let mut bytes = magic.to_vec();
        bytes.push(SNAPSHOT_VERSION);
        Writer(bytes)
    }

    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    fn words(&mut self, words: &[u64]) {
        self.u64(words.len() as u64);
        for &w in words {
            self.u64(w);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], magic: &[u8; 3], what: &'static str) -> Result<Self, SnapshotError> {
        let mut r = Reader { bytes, what };
        if r.take(3)? != magic {
            return bad(format!("{what}: not a queuegate shard snapshot"));
        }
        match r.take(1)?[0] {
            SNAPSHOT_VERSION => Ok(r),
            v => bad(format!(
                "{what}: format version {v}, this code reads {SNAPSHOT_VERSION}"
            )),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if self.bytes.len() < n {
            return bad(format!("{}: cut short", self.what));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, SnapshotError> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    /// A count of items of at least `min_size` bytes each, checked against what is left, so
    /// that a corrupt count cannot make a huge allocation.
    fn count(&mut self, min_size: usize) -> Result<usize, SnapshotError> {
        let n = self.u64()?;
        match usize::try_from(n) {
            Ok(n) if n.saturating_mul(min_size) <= self.bytes.len() => Ok(n),
            _ => bad(format!("{}: a count of {n} overruns it", self.what)),
        }
    }

    fn words(&mut self) -> Result<Vec<u64>, SnapshotError> {
        let n = self.count(8)?;
        (0..n).map(|_| self.u64()).collect()
    }

    fn end(&self) -> Result<(), SnapshotError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            bad(format!(
                "{}: {} bytes past its end",
                self.what,
                self.bytes.len()
            ))
        }
    }
}

impl Shard {
    /// The part of a snapshot written anew each time: counters, leavers, open grants, sessions.
    /// About a bit per visitor, plus what is in flight (grants, sessions).
    pub fn snapshot_state(&self) -> Vec<u8> {
        let queue = &self.queue;
        let mut w = Writer::new(STATE_MAGIC);
        w.u64(queue.tail());
        w.u64(queue.admitted_seq());
        w.u64(self.admitted_total);
        w.u64(self.unclaimed);
        w.words(queue.left_words());
        w.u64(self.grants.len() as u64);
        for g in &self.grants {
            w.u64(g.first_seq);
            w.u64(g.last_seq);
            w.u64(g.admitted_at);
            w.u64(g.unresolved);
            w.words(&g.resolved);
        }
        let mut sessions: Vec<(u64, u64)> = self.sessions.iter().map(|(&s, &e)| (s, e)).collect();
        sessions.sort_unstable();
        w.u64(sessions.len() as u64);
        for (seq, expires_at) in sessions {
            w.u64(seq);
            w.u64(expires_at);
        }
        w.0
    }

    /// The visitors from `from_seq` to the last seq handed out, as segments of `per_segment`
    /// seqs (the last one may be shorter): `(first seq, bytes)`, about 8 bytes a visitor plus
    /// its user id. One pass over the user ids, however many segments.
    pub fn snapshot_visitors(&self, from_seq: u64, per_segment: u64) -> Vec<(u64, Vec<u8>)> {
        let from_seq = from_seq.max(1);
        let per_segment = per_segment.max(1);
        let tail = self.queue.tail();
        if from_seq > tail {
            return Vec::new();
        }
        let segments = (tail - from_seq) / per_segment + 1;
        let mut users: Vec<Vec<(u64, &str)>> = vec![Vec::new(); segments as usize];
        for (user, &seq) in &self.users {
            if seq >= from_seq {
                users[((seq - from_seq) / per_segment) as usize].push((seq, user));
            }
        }
        users
            .into_iter()
            .enumerate()
            .map(|(i, mut users)| {
                let first = from_seq + i as u64 * per_segment;
                let last = (first + per_segment - 1).min(tail);
                let mut w = Writer::new(VISITORS_MAGIC);
                w.u64(first);
                w.u64(last - first + 1);
                w.0.extend(self.queue.stamps_be_bytes(first, last));
                users.sort_unstable();
                w.u64(users.len() as u64);
                for (seq, user) in users {
                    w.u64(seq);
                    w.0.extend_from_slice(&(user.len() as u32).to_be_bytes());
                    w.0.extend_from_slice(user.as_bytes());
                }
                (first, w.0)
            })
            .collect()
    }

    /// The shard a snapshot holds: its state and its visitor segments in seq order, which must
    /// cover every seq from 1 to the state's tail. Segments may come from different snapshots
    /// (written once, when full) as long as they fit together.
    pub fn restore<'a>(
        state: &[u8],
        segments: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Shard, SnapshotError> {
        let mut r = Reader::new(state, STATE_MAGIC, "state")?;
        let tail = r.u64()?;
        let admitted_seq = r.u64()?;
        let admitted_total = r.u64()?;
        let unclaimed = r.u64()?;
        let left_words = r.words()?;
        let mut grants = VecDeque::new();
        for _ in 0..r.count(40)? {
            grants.push_back(Grant {
                first_seq: r.u64()?,
                last_seq: r.u64()?,
                admitted_at: r.u64()?,
                unresolved: r.u64()?,
                resolved: r.words()?,
            });
        }
        let mut sessions = HashMap::new();
        let mut session_expiry = BTreeSet::new();
        for _ in 0..r.count(16)? {
            let (seq, expires_at) = (r.u64()?, r.u64()?);
            if seq == 0 || seq > admitted_seq || sessions.insert(seq, expires_at).is_some() {
                return bad(format!("state: a session at seq {seq}"));
            }
            session_expiry.insert((expires_at, seq));
        }
        r.end()?;

        let mut stamps = Vec::with_capacity(usize::try_from(tail).unwrap_or(0).min(1 << 24));
        let mut users = HashMap::new();
        for bytes in segments {
            read_segment(bytes, &mut stamps, &mut users)?;
        }
        if stamps.len() as u64 != tail {
            return bad(format!(
                "the segments hold {} visitors, the state {tail}",
                stamps.len()
            ));
        }
        let Some(queue) = ShardQueue::from_parts(stamps, left_words, admitted_seq) else {
            return bad("the queue's parts do not fit together");
        };
        let mut previous = 0;
        for g in &grants {
            let len = g.last_seq.checked_sub(g.first_seq).map(|d| d + 1);
            let fits = g.first_seq > previous
                && g.last_seq <= admitted_seq
                && len.is_some_and(|len| {
                    g.unresolved <= len && g.resolved.len() as u64 * 64 <= len + 63
                });
            if !fits {
                return bad(format!(
                    "state: a grant of seqs {}..={}",
                    g.first_seq, g.last_seq
                ));
            }
            previous = g.last_seq;
        }
        let shard = Shard {
            queue,
            grants,
            sessions,
            session_expiry,
            users,
            unclaimed,
            admitted_total,
        };
        if !shard.is_consistent() {
            return bad("state: its counters disagree with what they count");
        }
        Ok(shard)
    }
}

/// Appends a segment's stamps (it must start at the next seq) and its user ids.
fn read_segment(
    bytes: &[u8],
    stamps: &mut Vec<u64>,
    users: &mut HashMap<String, u64>,
) -> Result<(), SnapshotError> {
    let mut r = Reader::new(bytes, VISITORS_MAGIC, "visitors")?;
    let first = r.u64()?;
    let expected = stamps.len() as u64 + 1;
    if first != expected {
        return bad(format!(
            "visitors: a segment from seq {first} where {expected} was due"
        ));
    }
    let count = r.count(8)?;
    let last = first + count as u64 - 1;
    let previous = stamps.last().copied();
    let raw = r.take(count * 8)?;
    stamps.extend(
        raw.chunks_exact(8)
            .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes"))),
    );
    if previous.is_some_and(|p| count > 0 && stamps[first as usize - 1] <= p) {
        return bad(format!("visitors: stamps go back at seq {first}"));
    }
    let mut previous_seq = 0;
    for _ in 0..r.count(12)? {
        let seq = r.u64()?;
        let len = u32::from_be_bytes(r.take(4)?.try_into().expect("4 bytes")) as usize;
        let user = std::str::from_utf8(r.take(len)?)
            .map_err(|_| SnapshotError("visitors: a user id that is not UTF-8".into()))?;
        if seq < first || seq > last || seq <= previous_seq {
            return bad(format!("visitors: a user id at seq {seq}"));
        }
        previous_seq = seq;
        users.insert(user.to_owned(), seq);
    }
    r.end()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::shard::{Op, Timing};

    const T: Timing = Timing {
        session_ttl_ms: 3_000,
        claim_window_ms: 1_000,
    };

    /// An operation with its seqs as fractions of the queue, made concrete against the shard
    /// it is about to change (so that it mostly names seqs that exist).
    #[derive(Debug, Clone)]
    enum Step {
        Join {
            user: Option<u8>,
            jitter: u16,
            enter: bool,
        },
        Visit(prop::sample::Index),
        End(prop::sample::Index),
        Session(prop::sample::Index, bool),
        Expire,
        Admit(prop::sample::Index),
    }

    fn step() -> impl Strategy<Value = (Step, u16)> {
        let step = prop_oneof![
            6 => (prop::option::of(0u8..12), 0u16..3000, prop::bool::weighted(0.2))
                .prop_map(|(user, jitter, enter)| Step::Join { user, jitter, enter }),
            3 => any::<prop::sample::Index>().prop_map(Step::Visit),
            2 => any::<prop::sample::Index>().prop_map(Step::End),
            2 => (any::<prop::sample::Index>(), any::<bool>()).prop_map(|(i, r)| Step::Session(i, r)),
            1 => Just(Step::Expire),
            2 => any::<prop::sample::Index>().prop_map(Step::Admit),
        ];
        (step, 0u16..400)
    }

    fn steps(max: usize) -> impl Strategy<Value = Vec<(Step, u16)>> {
        prop::collection::vec(step(), 0..max)
    }

    /// The op a step makes against `shard` at `now`: seqs from 0 to one past the tail.
    fn op(shard: &Shard, step: &Step, now: u64) -> Op {
        let seq = |i: &prop::sample::Index| i.index(shard.queue().tail() as usize + 2) as u64;
        match step {
            Step::Join {
                user,
                jitter,
                enter,
            } => Op::Join {
                user: user.map(|u| format!("user-{u}")),
                // Now and then below the last stamp, which the shard raises.
                stamp: (now * 1000 + u64::from(*jitter)).saturating_sub(1500),
                enter: *enter && shard.queue().waiting() == 0,
                now,
                timing: T,
            },
            Step::Visit(i) => Op::Visit {
                seq: seq(i),
                now,
                timing: T,
            },
            Step::End(i) => Op::End { seq: seq(i), now },
            Step::Session(i, renew) => Op::Session {
                seq: seq(i),
                renew: *renew,
                now,
                timing: T,
            },
            Step::Expire => Op::Expire { now, timing: T },
            Step::Admit(i) => Op::AdmitThrough { upto: seq(i), now },
        }
    }

    /// Runs `steps` on `shard` from time `now`, returning the outcomes and the time after.
    fn run(shard: &mut Shard, steps: &[(Step, u16)], mut now: u64) -> (Vec<Outcome>, u64) {
        let mut outcomes = Vec::new();
        for (step, dt) in steps {
            now += u64::from(*dt);
            outcomes.push(shard.apply(&op(shard, step, now)));
        }
        (outcomes, now)
    }

    use crate::shard::Outcome;

    fn restored(state: &[u8], segments: &[(u64, Vec<u8>)]) -> Shard {
        Shard::restore(state, segments.iter().map(|(_, b)| b.as_slice()))
            .expect("the snapshot restores")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// restore(snapshot(shard)) is the same shard: the same state, and the same outcomes
        /// for whatever comes next, as a replay of the log after the snapshot needs.
        #[test]
        fn a_restored_shard_answers_like_the_original(
            before in steps(300),
            after in steps(200),
            per_segment in 1u64..40,
        ) {
            let mut shard = Shard::new();
            let (_, now) = run(&mut shard, &before, 1_000);
            let segments = shard.snapshot_visitors(1, per_segment);
            let mut copy = restored(&shard.snapshot_state(), &segments);
            prop_assert_eq!(&copy, &shard);
            let mut again = shard.clone();
            let (want, _) = run(&mut shard, &after, now);
            let mut got = Vec::new();
            let mut t = now;
            for (step, dt) in &after {
                t += u64::from(*dt);
                // Both get the op the original made, as a log replays it.
                let op = op(&again, step, t);
                again.apply(&op);
                got.push(copy.apply(&op));
            }
            prop_assert_eq!(got, want);
            prop_assert_eq!(&copy, &shard);
            prop_assert_eq!(copy.snapshot_state(), shard.snapshot_state());
        }

        /// Segments written when full are not written again: an old full segment, restored
        /// with a later state and the segments written since, still gives the same shard
        /// (user ids that moved to a newer seq since are overridden by the newer segment).
        #[test]
        fn full_segments_written_earlier_need_no_rewrite(
            first in steps(250),
            second in steps(250),
            third in steps(100),
            per_segment in 1u64..30,
        ) {
            let mut shard = Shard::new();
            let (_, now) = run(&mut shard, &first, 1_000);
            let full = shard.queue().tail() / per_segment;
            let mut stored = shard.snapshot_visitors(1, per_segment);
            stored.truncate(full as usize);
            let (_, now) = run(&mut shard, &second, now);
            stored.extend(shard.snapshot_visitors(full * per_segment + 1, per_segment));
            let mut copy = restored(&shard.snapshot_state(), &stored);
            prop_assert_eq!(&copy, &shard);
            let (want, _) = run(&mut shard, &third, now);
            let (got, _) = run(&mut copy, &third, now);
            prop_assert_eq!(got, want);
            prop_assert_eq!(&copy, &shard);
        }
    }

    fn sample() -> Shard {
        let mut shard = Shard::new();
        for stamp in 1..=100u64 {
            let user = (stamp % 10 == 0).then(|| format!("u{stamp}"));
            shard.join(user.as_deref(), stamp * 10, false, 0, T);
        }
        shard.end(7, 0);
        shard.admit(20, 5);
        shard.visit(3, 6, T);
        shard
    }

    #[test]
    fn stamps_take_eight_bytes_a_visitor() {
        let shard = sample();
        let segments = shard.snapshot_visitors(1, 64);
        assert_eq!(
            segments.iter().map(|(first, _)| *first).collect::<Vec<_>>(),
            [1, 65]
        );
        // Header 4 + first 8 + count 8 + stamps + user count 8 + 6 ids (seq 8, length 4, "u10").
        assert_eq!(
            segments[0].1.len(),
            4 + 8 + 8 + 64 * 8 + 8 + 6 * (8 + 4 + 3)
        );
        let tail = shard.snapshot_visitors(65, 64);
        assert_eq!(tail, segments[1..]);
        assert!(shard.snapshot_visitors(101, 64).is_empty());
        // The state: a bit per visitor in words, not a word per visitor.
        assert!(
            shard.snapshot_state().len() < 200,
            "{}",
            shard.snapshot_state().len()
        );
    }

    #[test]
    fn what_does_not_fit_together_is_refused() {
        let shard = sample();
        let state = shard.snapshot_state();
        let segments = shard.snapshot_visitors(1, 40);
        let all: Vec<&[u8]> = segments.iter().map(|(_, b)| b.as_slice()).collect();
        assert_eq!(Shard::restore(&state, all.clone()).unwrap(), shard);
        // A segment missing, at the end or in the middle.
        assert!(Shard::restore(&state, all[..2].to_vec()).is_err());
        assert!(Shard::restore(&state, [all[0], all[2]]).is_err());
        // Cut short, or another version.
        assert!(Shard::restore(&state[..state.len() - 1], all.clone()).is_err());
        let mut newer = state.clone();
        newer[3] = SNAPSHOT_VERSION + 1;
        let err = Shard::restore(&newer, all.clone()).unwrap_err();
        assert!(err.to_string().contains("version"), "{err}");
        let mut cut = segments[2].1.clone();
        cut.pop();
        assert!(Shard::restore(&state, [all[0], all[1], &cut]).is_err());
        // A count that would overrun the bytes is refused, not allocated.
        let mut huge = state.clone();
        huge[4 + 32..4 + 40].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(Shard::restore(&huge, all).is_err());
        // An empty shard: a state and no segments.
        let empty = Shard::new();
        assert_eq!(Shard::restore(&empty.snapshot_state(), []).unwrap(), empty);
    }
}
