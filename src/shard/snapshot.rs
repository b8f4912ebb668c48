//! A shard as bytes, so that a store need not replay its whole log: the state (everything but
//! the visitors, rewritten each time) and the visitors in segments of consecutive seqs (their
//! join stamps and user ids). Stamps change only in a shuffle, so a segment whose seqs have all
//! been handed out needs writing again only after one (see [`Shard::shuffle`]); otherwise only
//! the last, partial one and the state do.
//!
//! Format, version [`SNAPSHOT_VERSION`]; every integer is a big-endian `u64` unless said:
//!
//! - state: `"QGS"`, version (1 byte), tail (seqs handed out), admitted seq, admitted total,
//!   unclaimed; the leaver bit words (count, words: bit `(seq - 1) % 64` of word
//!   `(seq - 1) / 64`); the open grants, oldest first (count; each first seq, last seq, admitted
//!   at, unresolved, and its resolved bit words as count and words); the sessions in seq order
//!   (count; each seq, expires at); the shuffles ([`crate::shuffle`]): the last one's
//!   `start_us`, the ticket seqs before the first one a shuffle moved (skip), a count, and that
//!   many moves from seq `skip + 1` on (big-endian `i32`, how far the place moved); the places
//!   abandoned and the admissions no visitor came for ([`super::Op::Abandon`]); the places
//!   their visitors left.
//! - visitors: `"QGV"`, version (1 byte), first seq, count, the count join stamps (8 bytes
//!   each), then the user ids the shard keeps whose place is in the segment, in seq order (count;
//!   each seq, and the id's [`UserKey`], 16 bytes).
//!
//! Version 3 is version 4 without the admissions no visitor came for; version 2 is version 3
//! without the shuffles. Version 1, read still (its segments may be
//! full, and so never rewritten), differs only in
//! the user ids: each is a length (big-endian `u32`) and the id's UTF-8 bytes, and is keyed on
//! reading.
//!
//! A user id's place only ever moves to a newer seq, so a segment written before its user moved
//! on keeps a stale entry, which a newer segment overrides: segments keep every entry the shard
//! holds, those of ended places not yet swept among them. The restore then drops the entries of
//! ended places. Once a sweep has dropped the newer entry, no newer segment overrides the old
//! one, but its place has ended for good by then: the user moved on because it had ended (left,
//! its session over, or its claim window closed), and the sweep runs in an expiry at a later time,
//! which first closes every grant whose window has closed. So restoring the segments in order
//! rebuilds the live user ids exactly. (Unless an operator lengthens the claim window in
//! between: a restore may then find the old place still unclaimed in its open grant and hand it
//! back to the user id, as it would to its ticket.)

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::{Grant, Shard, UserKey, Users};
use crate::queue::ShardQueue;

/// The snapshot format this code writes; it reads this one and versions 1 to 4.
pub const SNAPSHOT_VERSION: u8 = 5;
/// Version 1 kept each user id's bytes, not its key.
const PLAIN_USER_IDS: u8 = 1;
/// Version 2's state ends with the sessions: no shuffle had happened.
const UNSHUFFLED: u8 = 2;
/// Version 3's state ends with the places abandoned.
const WITHOUT_NO_SHOWS: u8 = 3;
/// Version 4's state ends with the admissions no visitor came for.
const WITHOUT_LEFT: u8 = 4;

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
    version: u8,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], magic: &[u8; 3], what: &'static str) -> Result<Self, SnapshotError> {
        let mut r = Reader {
            bytes,
            what,
            version: 0,
        };
        if r.take(3)? != magic {
            return bad(format!("{what}: not a queuegate shard snapshot"));
        }
        match r.take(1)?[0] {
            v @ (PLAIN_USER_IDS | UNSHUFFLED | WITHOUT_NO_SHOWS | WITHOUT_LEFT
            | SNAPSHOT_VERSION) => {
                r.version = v;
                Ok(r)
            }
            v => bad(format!(
                "{what}: format version {v}, this code reads {PLAIN_USER_IDS} to {SNAPSHOT_VERSION}"
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

    fn i32(&mut self) -> Result<i32, SnapshotError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes(b.try_into().expect("4 bytes")))
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
        // The shuffles' moves, from the first ticket seq one moved.
        let moved = queue.moved();
        let skip = moved.iter().take_while(|&&d| d == 0).count();
        w.u64(queue.shuffled_us());
        w.u64(skip as u64);
        w.u64((moved.len() - skip) as u64);
        for d in &moved[skip..] {
            w.0.extend_from_slice(&d.to_be_bytes());
        }
        w.u64(self.abandoned_total);
        w.u64(self.no_shows_total);
        w.u64(self.left_total);
        w.0
    }

    /// The visitors from `from_seq` to the last seq handed out, as segments of `per_segment`
    /// seqs (the last one may be shorter): `(first seq, bytes)`, 8 bytes a visitor and 24 more
    /// for each user id kept (live places, and ended ones not yet swept: right after an expiry,
    /// fewer of those than of live ones, or than 16). One pass over the user ids, however many segments.
    pub fn snapshot_visitors(&self, from_seq: u64, per_segment: u64) -> Vec<(u64, Vec<u8>)> {
        let from_seq = from_seq.max(1);
        let per_segment = per_segment.max(1);
        let tail = self.queue.tail();
        if from_seq > tail {
            return Vec::new();
        }
        let segments = (tail - from_seq) / per_segment + 1;
        let mut users: Vec<Vec<(u64, &UserKey)>> = vec![Vec::new(); segments as usize];
        for (user, seq) in self.users.iter() {
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
                    w.0.extend_from_slice(user.as_bytes());
                }
                (first, w.0)
            })
            .collect()
    }

    /// The shard a snapshot holds: its state and its visitor segments in seq order, which must
    /// cover every seq from 1 to the state's tail. Segments may come from different snapshots
    /// (written once, when full) and versions as long as they fit together. User ids whose place
    /// has ended are left out.
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
        let (mut shuffled_us, mut moved, mut abandoned_total) = (0, Vec::new(), 0);
        let (mut no_shows_total, mut left_total) = (0, 0);
        if r.version >= WITHOUT_NO_SHOWS {
            shuffled_us = r.u64()?;
            let skip = r.u64()?;
            let n = r.count(4)?;
            if skip.saturating_add(n as u64) > tail {
                return bad("state: moves beyond the last seq");
            }
            moved = vec![0; skip as usize];
            for _ in 0..n {
                moved.push(r.i32()?);
            }
            abandoned_total = r.u64()?;
        }
        if r.version >= WITHOUT_LEFT {
            no_shows_total = r.u64()?;
        }
        if r.version >= SNAPSHOT_VERSION {
            left_total = r.u64()?;
        }
        r.end()?;

        let mut stamps = Vec::with_capacity(usize::try_from(tail).unwrap_or(0).min(1 << 24));
        let mut users = Users::default();
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
        let queue = queue.with_moves(moved, shuffled_us);
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
        let mut shard = Shard {
            queue,
            grants,
            sessions,
            session_expiry,
            users,
            unclaimed,
            admitted_total,
            seen: Vec::new(),
            sweep_cursor: 0,
            abandoned_total,
            no_show_cursor: 0,
            no_shows_total,
            left_total,
        };
        shard.sweep();
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
    users: &mut Users,
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
    let plain = r.version == PLAIN_USER_IDS;
    let mut previous_seq = 0;
    for _ in 0..r.count(if plain { 12 } else { 24 })? {
        let seq = r.u64()?;
        let user = if plain {
            let len = u32::from_be_bytes(r.take(4)?.try_into().expect("4 bytes")) as usize;
            let user = std::str::from_utf8(r.take(len)?)
                .map_err(|_| SnapshotError("visitors: a user id that is not UTF-8".into()))?;
            UserKey::of(user)
        } else {
            UserKey::from_bytes(r.take(16)?.try_into().expect("16 bytes"))
        };
        if seq < first || seq > last || seq <= previous_seq || !users.insert(user, seq) {
            return bad(format!("visitors: a user id at seq {seq}"));
        }
        previous_seq = seq;
    }
    r.end()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::shard::testing::{op, run, steps, T};
    use crate::shard::users::SWEEP_MIN;

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
            // The copy holds only live user ids: what the original holds once swept.
            prop_assert_eq!(copy.user_entries(), copy.live_users().count());
            let mut swept = shard.clone();
            swept.sweep();
            prop_assert_eq!(copy.snapshot_visitors(1, per_segment), swept.snapshot_visitors(1, per_segment));
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
        /// with a later state and the segments written since, still gives the same shard (user
        /// ids that moved to a newer seq since are overridden by the newer segment, and those
        /// whose place ended since are dropped).
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
            prop_assert_eq!(copy.user_entries(), copy.live_users().count());
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
        // Header 4 + first 8 + count 8 + stamps + user count 8 + 6 ids (seq 8, key 16).
        assert_eq!(segments[0].1.len(), 4 + 8 + 8 + 64 * 8 + 8 + 6 * (8 + 16));
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
        // A segment of a version this code does not know, among ones it does: refused too, not
        // read as if it were one it knows.
        let mut unknown = segments[1].1.clone();
        unknown[3] = SNAPSHOT_VERSION + 1;
        let err = Shard::restore(&state, [all[0], &unknown, all[2]]).unwrap_err();
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

    #[test]
    fn user_ids_come_back_as_keys_and_ended_places_stay_out() {
        let mut shard = Shard::new();
        let long = "x".repeat(128);
        for (stamp, user) in [(1, "ann"), (2, long.as_str()), (3, "bob"), (4, "cy")] {
            shard.join(Some(user), stamp, false, 0, T);
        }
        shard.end(3, 0);
        let segments = shard.snapshot_visitors(1, 64);
        // Four ids of 24 bytes, however long the id: bob left, but no sweep has dropped him yet.
        assert_eq!(segments[0].1.len(), 4 + 8 + 8 + 4 * 8 + 8 + 4 * 24);
        let mut copy = restored(&shard.snapshot_state(), &segments);
        assert_eq!(copy, shard);
        assert_eq!(copy.user_entries(), 3);
        for (user, seq) in [("ann", 1), (long.as_str(), 2), ("cy", 4)] {
            let joined = copy.join(Some(user), 10, false, 1, T);
            assert!(joined.existing && joined.seq == seq, "{user}: {joined:?}");
        }
        assert!(!copy.join(Some("bob"), 10, false, 1, T).existing);
        // The snapshot holds no user id, only keys.
        assert!(!segments[0].1.windows(3).any(|w| w == b"ann"));
    }

    /// A user whose admission went unclaimed joins again once its claim window has closed, but
    /// before an expiry closes the grant; the new place then ends. The full segment written
    /// before still names the first place, which looks open until an expiry: the newer segment
    /// overrides it while the shard keeps the ended entry, and once a sweep has dropped that
    /// entry, the expiry that swept has closed the grant too.
    #[test]
    fn a_user_who_moved_on_from_an_unclaimed_admission_is_not_sent_back() {
        let mut shard = Shard::new();
        assert_eq!(shard.join(Some("ann"), 1, false, 0, T).seq, 1);
        assert_eq!(shard.admit(1, 0), 1);
        let old = shard.snapshot_visitors(1, 1);
        let now = T.claim_window_ms;
        let moved = shard.join(Some("ann"), 2, false, now, T);
        assert!(!moved.existing && moved.seq == 2, "{moved:?}");
        shard.end(2, now);
        assert!(shard.holds_place(1) && !shard.holds_place(2));
        let check = |shard: &Shard| {
            let mut stored = old.clone();
            stored.extend(shard.snapshot_visitors(2, 1));
            let mut copy = restored(&shard.snapshot_state(), &stored);
            assert_eq!(&copy, shard);
            let again = copy.join(Some("ann"), 1_000, false, now + 1, T);
            assert!(!again.existing && again.seq > 2, "{again:?}");
        };
        check(&shard);
        // Enough others leave for an expiry to sweep.
        for stamp in 3..3 + SWEEP_MIN {
            let seq = shard.join(None, stamp, false, now, T).seq;
            shard.end(seq, now);
        }
        shard.expire(now, T);
        assert_eq!(shard.user_entries(), 0);
        check(&shard);
    }

    /// Seqs `first..=last` as a version 1 segment: user ids as length and bytes.
    fn version_1_segment(shard: &Shard, first: u64, last: u64, users: &[(u64, &str)]) -> Vec<u8> {
        let mut w = Writer(b"QGV".to_vec());
        w.0.push(PLAIN_USER_IDS);
        w.u64(first);
        w.u64(last - first + 1);
        w.0.extend(shard.queue().stamps_be_bytes(first, last));
        w.u64(users.len() as u64);
        for (seq, user) in users {
            w.u64(*seq);
            w.0.extend_from_slice(&(user.len() as u32).to_be_bytes());
            w.0.extend_from_slice(user.as_bytes());
        }
        w.0
    }

    #[test]
    fn a_version_3_snapshot_is_read_without_no_shows() {
        let shard = sample();
        assert_eq!(shard.no_shows_total(), 0);
        let mut state = shard.snapshot_state();
        state[3] = WITHOUT_NO_SHOWS;
        state.truncate(state.len() - 16);
        let segments = shard.snapshot_visitors(1, 40);
        let copy = Shard::restore(&state, segments.iter().map(|(_, b)| b.as_slice())).unwrap();
        assert_eq!(copy, without_leavers_counted(&shard));
    }

    /// A shard as a snapshot written before the places left were counted restores it.
    fn without_leavers_counted(shard: &Shard) -> Shard {
        let mut shard = shard.clone();
        shard.left_total = 0;
        shard
    }

    #[test]
    fn a_version_4_snapshot_is_read_without_leavers_counted() {
        let mut shard = sample();
        let (waiting, before) = (shard.queue().admitted_seq() + 1, shard.left_total());
        assert_eq!(shard.end(waiting, 0), Some(true));
        assert_eq!(shard.left_total(), before + 1);
        let mut state = shard.snapshot_state();
        state[3] = WITHOUT_LEFT;
        state.truncate(state.len() - 8);
        let segments = shard.snapshot_visitors(1, 40);
        let copy = Shard::restore(&state, segments.iter().map(|(_, b)| b.as_slice())).unwrap();
        assert_eq!(copy.left_total(), 0);
        assert_eq!(copy, without_leavers_counted(&shard));
    }

    #[test]
    fn a_version_1_snapshot_is_read() {
        let mut shard = Shard::new();
        for (stamp, user) in [(1, "ann"), (2, "bob"), (3, "cy")] {
            shard.join(Some(user), stamp, false, 0, T);
        }
        shard.end(2, 0);
        let mut state = shard.snapshot_state();
        state[3] = PLAIN_USER_IDS;
        // Versions 1 and 2 end with the sessions, before the shuffles (none: 3 zeros), the
        // abandoned count, the no-shows' count and the leavers' count.
        state.truncate(state.len() - 48);
        // Written before bob left: the restore drops him.
        let all = [(1, "ann"), (2, "bob"), (3, "cy")];
        let segment = version_1_segment(&shard, 1, 3, &all);
        let mut copy = Shard::restore(&state, [segment.as_slice()]).unwrap();
        assert_eq!(copy, without_leavers_counted(&shard));
        assert_eq!(copy.user_entries(), 2);
        let again = copy.join(Some("cy"), 9, false, 1, T);
        assert!(again.existing && again.seq == 3, "{again:?}");
        // A full version 1 segment, never rewritten, before version 2 ones.
        let older = version_1_segment(&shard, 1, 2, &all[..2]);
        let newer = shard.snapshot_visitors(3, 2);
        let mixed = [older.as_slice(), &newer[0].1];
        assert_eq!(
            Shard::restore(&shard.snapshot_state(), mixed).unwrap(),
            shard
        );
    }
}
