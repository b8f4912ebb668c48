//! The shuffle of a scheduled event's pre-queue, which anyone can check.
//!
//! When a shuffled event is created, the server draws a secret 32-byte seed and publishes its
//! SHA-256 (`seed_sha256`); from `start_at` on it publishes the seed itself. At the opening each
//! shard puts its pre-queued visitors (those whose join stamp falls in `[prequeue_at, start_at)`
//! and who still wait) in the order of their key
//!
//! ```text
//! key = SHA-256(seed bytes || ticket_id as UTF-8)      ticket_id = "{epoch:08x}-{shard}-{seq}"
//! ```
//!
//! ascending, and gives each a new join stamp from its key (the first 8 bytes of the key, read
//! big-endian, scaled into the pre-queue's microseconds). Positions and admission order visitors
//! across shards by join stamp, so the whole room's pre-queue is admitted in key order: the rank
//! of a visitor is the rank of its key among all pre-queued visitors. Two keys whose scaled
//! stamps fall in the same microsecond are an exception the README states: within a shard the
//! later key is moved up a microsecond; across shards, the lower shard goes first.
//!
//! The permutation is held per shard as a map from a ticket's seq to the seq that now holds its
//! place in the queue ([`crate::queue::ShardQueue::locate`]), so tickets issued before the
//! opening stay valid.

use sha2::{Digest, Sha256};

use crate::event::Events;

/// The seed's length in bytes.
pub const SEED_LEN: usize = 32;

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from lowercase or uppercase hex; `None` for anything else.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// SHA-256 of the seed, hex: what an event publishes before its opening.
pub fn seed_sha256(seed: &[u8]) -> String {
    hex(&Sha256::digest(seed))
}

/// A pre-queued visitor's key: SHA-256(seed || ticket_id).
pub fn rank_key(seed: &[u8], ticket_id: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(seed);
    hash.update(ticket_id.as_bytes());
    hash.finalize().into()
}

/// A shuffle due in a room: one started, shuffled event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShuffleSpec {
    pub seed: Vec<u8>,
    /// The pre-queue, in join-stamp microseconds: `[prequeue_us, start_us)`.
    pub prequeue_us: u64,
    pub start_us: u64,
}

impl ShuffleSpec {
    /// The shuffles of `events` that have started by `now` and that a shard which last shuffled
    /// at `shuffled_us` (the `start_us` of its last shuffle, 0 for none) has not applied, oldest
    /// first.
    pub fn due(events: &Events, shuffled_us: u64, now: u64) -> Vec<ShuffleSpec> {
        let mut due: Vec<ShuffleSpec> = events
            .values()
            .filter(|e| e.shuffle && e.start_at <= now)
            .filter(|e| e.start_at.saturating_mul(1000) > shuffled_us)
            .filter_map(|e| {
                let seed = from_hex(e.seed.as_deref()?)?;
                Some(ShuffleSpec {
                    seed,
                    prequeue_us: e.prequeue_at.saturating_mul(1000),
                    start_us: e.start_at.saturating_mul(1000),
                })
            })
            .collect();
        due.sort_by_key(|s| s.start_us);
        due
    }

    /// Whether a shuffle that started by `now` may have moved the place of a ticket stamped
    /// `joined_us`: its seq and stamp may no longer be where the place is.
    pub fn moved(events: &Events, joined_us: u64, now: u64) -> bool {
        events.values().any(|e| {
            e.shuffle
                && e.start_at <= now
                && (e.prequeue_at.saturating_mul(1000)..e.start_at.saturating_mul(1000))
                    .contains(&joined_us)
        })
    }

    /// Whether a place that joined at `joined_us` was in this event's pre-queue.
    pub fn covers(&self, joined_us: u64) -> bool {
        (self.prequeue_us..self.start_us).contains(&joined_us)
    }

    /// The join stamp a key gives: its first 8 bytes scaled into the pre-queue.
    pub fn stamp_of(&self, key: &[u8; 32]) -> u64 {
        let span = u128::from(self.start_us.saturating_sub(self.prequeue_us));
        let top = u128::from(u64::from_be_bytes(key[..8].try_into().expect("8 bytes")));
        self.prequeue_us + ((top * span) >> 64) as u64
    }

    /// The new order of a shard's block of pre-queued seqs `first..=last` (all still waiting or
    /// left, none admitted, never shuffled before), whose seq `first - 1` has stamp `floor`.
    pub fn permute(
        &self,
        epoch: u32,
        shard: u16,
        first: u64,
        last: u64,
        floor: u64,
    ) -> Permutation {
        let mut keyed: Vec<([u8; 32], u64)> = (first..=last)
            .map(|seq| {
                let id = crate::Place { epoch, shard, seq }.ticket_id();
                (rank_key(&self.seed, &id), seq)
            })
            .collect();
        keyed.sort_unstable();
        let mut stamps = Vec::with_capacity(keyed.len());
        let mut previous = floor;
        for (key, _) in &keyed {
            let stamp = self.stamp_of(key).max(previous + 1);
            stamps.push(stamp);
            previous = stamp;
        }
        Permutation {
            first,
            order: keyed.into_iter().map(|(_, seq)| seq).collect(),
            stamps,
        }
    }
}

/// A shard's block of pre-queued seqs in their new order: seq `first + i` of the queue now holds
/// the place of ticket seq `order[i]`, with stamp `stamps[i]` (strictly increasing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permutation {
    pub first: u64,
    pub order: Vec<u64>,
    pub stamps: Vec<u64>,
}

impl Permutation {
    /// `(ticket seq, queue seq)` of every place in the block.
    pub fn moves(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.order
            .iter()
            .enumerate()
            .map(|(i, &ticket)| (ticket, self.first + i as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ShuffleSpec {
        ShuffleSpec {
            seed: vec![7; SEED_LEN],
            prequeue_us: 1_000_000,
            start_us: 61_000_000,
        }
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(from_hex("00AB10"), Some(vec![0, 0xab, 0x10]));
        for bad in ["0", "zz", "é1"] {
            assert_eq!(from_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_order_is_the_order_of_the_keys() {
        let spec = spec();
        let perm = spec.permute(0xdead_beef, 2, 5, 104, 999_999);
        let mut expected: Vec<u64> = (5..=104).collect();
        expected.sort_by_key(|&seq| rank_key(&spec.seed, &format!("deadbeef-2-{seq}")));
        assert_eq!(perm.order, expected);
        assert!(perm.stamps.windows(2).all(|w| w[0] < w[1]));
        assert!(perm.stamps.iter().all(|&s| spec.covers(s)));
        // Each stamp is the key's, bar a collision.
        let key = rank_key(&spec.seed, &format!("deadbeef-2-{}", perm.order[0]));
        assert_eq!(perm.stamps[0], spec.stamp_of(&key));
        // A seq holds the place of exactly one ticket.
        let mut moved: Vec<u64> = perm.moves().map(|(_, to)| to).collect();
        moved.sort_unstable();
        assert_eq!(moved, (5..=104).collect::<Vec<_>>());
    }

    #[test]
    fn stamps_stay_above_the_floor() {
        let spec = ShuffleSpec {
            prequeue_us: 0,
            start_us: 2,
            ..spec()
        };
        let perm = spec.permute(1, 0, 1, 10, 0);
        assert_eq!(perm.stamps, (1..=10).collect::<Vec<_>>());
    }
}
