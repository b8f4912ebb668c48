//! The user ids of a shard: the place each one holds, kept as a 128-bit key and a 6-byte seq
//! (22 bytes an entry however long the id, and its index), and let go once the place has ended.

use std::hash::{BuildHasher, RandomState};

use hashbrown::hash_table::{self, HashTable};
use sha2::{Digest, Sha256};

/// A user id as a shard keeps it: the first 128 bits of its SHA-256. Whatever the id's length
/// (up to 128 bytes), an entry costs the same, and the id itself is never held. SHA-256, unlike
/// the standard library's seeded hasher, gives the same key in every process, platform and
/// version, as an edge shard replaying its log or reading its snapshot in another isolate needs.
///
/// Two ids with one key would share a place (the second would be handed the first one's). By
/// chance: among n ids the odds of any such pair are about n^2 / 2^129, about 2^-69 for a billion
/// ids. On purpose: finding a pair takes about 2^64 SHA-256 hashes (a birthday search, as the
/// preimage of a given id's key takes 2^128), and yields only two ids of the finder's own, which
/// it could as well have sent as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserKey([u8; 16]);

impl UserKey {
    pub fn of(user: &str) -> UserKey {
        let digest = Sha256::digest(user.as_bytes());
        UserKey(digest[..16].try_into().expect("16 of SHA-256's 32 bytes"))
    }

    pub fn from_bytes(bytes: [u8; 16]) -> UserKey {
        UserKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

/// A seq in 6 bytes, so that an entry takes 22 bytes rather than 24. A shard would need 2^48
/// joins, and 2 PiB of join stamps, to outgrow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seq48([u8; 6]);

impl Seq48 {
    fn new(seq: u64) -> Option<Seq48> {
        (seq >> 48 == 0).then(|| {
            let b = seq.to_le_bytes();
            Seq48([b[0], b[1], b[2], b[3], b[4], b[5]])
        })
    }

    fn get(self) -> u64 {
        let [a, b, c, d, e, f] = self.0;
        u64::from_le_bytes([a, b, c, d, e, f, 0, 0])
    }
}

/// A user id's place: 22 bytes, byte-aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    user: UserKey,
    seq: Seq48,
}

/// A sweep of the user map waits for at least this many ended places, so that a small map is not
/// swept (and, at the edge, an expiry logged) for each one.
pub(super) const SWEEP_MIN: u64 = 16;

/// The place of each user id. An entry may outlive its place until the next sweep: a join
/// checks the place before handing it back, so a stale entry changes no answer.
///
/// The entries lie side by side, 22 bytes each, and a hash table holds only their index, 4 bytes
/// and a control byte a bucket: at the table's load of 7/16 to 7/8, 28 to 34 bytes a user id
/// (the entries' vector, when it has just doubled, has room it has not touched yet). A table of
/// the entries themselves would take 26 to 53. The table hashes the keys with the standard
/// library's seeded hasher, not as they are: keys are SHA-256 of ids a stranger chooses, and a
/// few million tries find ids whose keys agree in the low bits a table indexes by.
#[derive(Debug, Clone, Default)]
pub(super) struct Users {
    entries: Vec<Entry>,
    /// Indexes into `entries`, by the hash of the entry's key.
    index: HashTable<u32>,
    hasher: RandomState,
    /// Places ended since the last sweep, counted where they end (a place that ends twice, say
    /// its claim window closes and then it leaves, counts twice). Every stale entry is among
    /// them, so sweeping once they reach half the map keeps the stale entries fewer than the live
    /// ones (or than [`SWEEP_MIN`]) for O(1) a place: no reverse index from seq to user, which
    /// would cost more than the entries it frees.
    ended: u64,
}

impl Users {
    /// The seq of `user`'s place, maybe ended.
    pub(super) fn get(&self, user: &UserKey) -> Option<u64> {
        let hash = self.hasher.hash_one(user);
        self.index
            .find(hash, |&i| self.entries[i as usize].user == *user)
            .map(|&i| self.entries[i as usize].seq.get())
    }

    /// Gives `user` the place `seq`; `false` (and nothing kept) for a seq past 2^48 or a 2^32nd
    /// entry, which a shard never reaches: its user id would just get a new place each time.
    pub(super) fn insert(&mut self, user: UserKey, seq: u64) -> bool {
        let (Some(seq), Ok(next)) = (Seq48::new(seq), u32::try_from(self.entries.len())) else {
            return false;
        };
        let hash = self.hasher.hash_one(user);
        let (entries, hasher) = (&self.entries, &self.hasher);
        let found = self.index.entry(
            hash,
            |&i| entries[i as usize].user == user,
            |&i| hasher.hash_one(entries[i as usize].user),
        );
        match found {
            hash_table::Entry::Occupied(at) => self.entries[*at.get() as usize].seq = seq,
            hash_table::Entry::Vacant(at) => {
                at.insert(next);
                self.entries.push(Entry { user, seq });
            }
        }
        true
    }

    /// Entries kept: live places, and ended ones not swept yet.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&UserKey, u64)> {
        self.entries.iter().map(|e| (&e.user, e.seq.get()))
    }

    /// Counts `places` that just ended, for the next sweep.
    pub(super) fn ended(&mut self, places: u64) {
        self.ended += places;
    }

    pub(super) fn sweep_due(&self) -> bool {
        !self.entries.is_empty() && self.ended >= SWEEP_MIN.max(self.entries.len() as u64 / 2)
    }

    /// Drops the entries whose place has ended (`holds_place` false, which must stay false for
    /// good) and indexes the rest again, O(entries). Memory goes back once mostly empty (down
    /// to twice what is left, so that it takes the map halving again to shrink it again).
    pub(super) fn sweep(&mut self, holds_place: impl Fn(u64) -> bool) {
        self.entries.retain(|e| holds_place(e.seq.get()));
        let len = self.entries.len();
        if self.entries.capacity() > len * 4 {
            self.entries.shrink_to(len * 2);
        }
        if self.index.capacity() > len * 4 {
            self.index = HashTable::with_capacity(len);
        } else {
            self.index.clear();
        }
        let hasher = &self.hasher;
        for (i, e) in self.entries.iter().enumerate() {
            let hash = hasher.hash_one(e.user);
            self.index.insert_unique(hash, i as u32, |&j| {
                hasher.hash_one(self.entries[j as usize].user)
            });
        }
        self.ended = 0;
    }
}

/// The shard a user id lives in. FNV-1a: stable across processes, platforms and versions,
/// unlike the standard library's seeded hasher, so every server agrees.
pub fn user_hash(user: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in user.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::shard::testing::{op, steps};
    use crate::shard::{Op, Outcome, Shard, Standing, Timing};

    const T: Timing = Timing {
        session_ttl_ms: 30_000,
        claim_window_ms: 10_000,
    };

    #[test]
    fn user_entries_go_once_their_places_end() {
        let mut shard = Shard::new();
        let user = |seq: u64| format!("user-{seq}");
        for seq in 1..=200 {
            shard.join(Some(&user(seq)), seq, false, 0, T);
        }
        // 60 leave: too few to sweep 200 entries for.
        for seq in 1..=60 {
            shard.end(seq, 0);
        }
        shard.expire(0, T);
        assert_eq!(shard.user_entries(), 200);
        // 100 admitted, half of them arrive; the other half's claim window runs out.
        assert_eq!(shard.admit(100, 0), 100);
        for seq in 61..=110 {
            assert!(matches!(shard.visit(seq, 1, T), Standing::Admitted { .. }));
        }
        assert!(shard.would_expire(T.claim_window_ms, T));
        shard.expire(T.claim_window_ms, T);
        assert_eq!(shard.user_entries(), 90, "50 sessions and 40 waiting");
        // The sessions run out.
        shard.expire(1 + T.session_ttl_ms, T);
        assert_eq!(shard.user_entries(), 40);
        assert!(!shard.would_expire(1 + T.session_ttl_ms, T));
        // The waiting keep their place; the others get a new one.
        let now = 2 + T.session_ttl_ms;
        let kept = shard.join(Some(&user(161)), 1_000, false, now, T);
        assert!(kept.existing && kept.seq == 161, "{kept:?}");
        for seq in [1, 61, 111] {
            let new = shard.join(Some(&user(seq)), 1_000 + seq, false, now, T);
            assert!(!new.existing && new.seq > 200, "{seq}: {new:?}");
        }
        // The table's memory is given back as the map empties.
        for seq in 161..=203 {
            shard.end(seq, now);
        }
        shard.expire(now, T);
        assert_eq!(shard.user_entries(), 0);
        assert_eq!(shard.users.entries.capacity(), 0);
        assert_eq!(shard.users.index.capacity(), 0);
    }

    #[test]
    fn a_room_without_user_ids_logs_no_sweep() {
        let mut shard = Shard::new();
        for stamp in 1..=100 {
            shard.join(None, stamp, false, 0, T);
            shard.end(stamp, 0);
        }
        assert!(!shard.would_expire(0, T));
    }

    #[test]
    fn a_user_key_is_sha256_cut_to_128_bits() {
        // SHA-256("abc"), a FIPS 180-2 test vector: the key must not change with the platform or
        // the version, as snapshots keep it.
        assert_eq!(
            UserKey::of("abc").as_bytes(),
            &[
                0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
                0x22, 0x23
            ]
        );
        for seq in [0, 1, 0xffff_ffff, (1 << 48) - 1] {
            assert_eq!(Seq48::new(seq).map(Seq48::get), Some(seq));
        }
        assert_eq!(Seq48::new(1 << 48), None);
        assert_eq!(std::mem::size_of::<Entry>(), 22);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The user map against a model that never forgets a user id (the shard before it
        /// swept): a join with a user id gets the model's place back exactly when that place is
        /// live; every live place has its entry; every stale entry is counted for the next
        /// sweep; and after an expiry the stale entries are fewer than the live ones (or than
        /// SWEEP_MIN).
        #[test]
        fn user_ids_keep_live_places_and_let_ended_ones_go(run in steps(600)) {
            let mut shard = Shard::new();
            let mut model: HashMap<String, u64> = HashMap::new();
            let mut now = 1_000;
            for (step, dt) in &run {
                now += u64::from(*dt);
                let op = op(&shard, step, now);
                let timing = crate::shard::testing::T;
                let live = |seq: u64| {
                    matches!(
                        shard.clone().visit(seq, now, timing),
                        Standing::Waiting | Standing::Admitted { .. }
                    )
                };
                let expected = match &op {
                    Op::Join { user: Some(user), .. } => {
                        model.get(user).copied().filter(|&seq| live(seq))
                    }
                    _ => None,
                };
                let outcome = shard.apply(&op);
                if let (Op::Join { user: Some(user), .. }, Outcome::Join(joined)) = (&op, outcome) {
                    prop_assert_eq!(joined.existing, expected.is_some());
                    prop_assert_eq!(joined.seq, expected.unwrap_or(joined.seq));
                    model.insert(user.clone(), joined.seq);
                }
                let mut holding = 0;
                for (user, &seq) in &model {
                    if shard.holds_place(seq) {
                        holding += 1;
                        prop_assert_eq!(shard.users.get(&UserKey::of(user)), Some(seq), "{}", user);
                    }
                }
                let stale = shard.user_entries() - holding;
                let ended = shard.users.ended;
                prop_assert!(stale as u64 <= ended, "{} stale, {} ended", stale, ended);
                if let Op::Expire { .. } = op {
                    prop_assert!((stale as u64) < SWEEP_MIN.max(holding as u64));
                }
                prop_assert!(shard.is_consistent());
            }
        }
    }
}
