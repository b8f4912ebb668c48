//! The infinite queue: what a room that sets `suspicious: "infinite_queue"` gives a client over
//! its join limit or failing its challenge. The client gets a ticket like any other, for a place
//! that no store holds, whose position moves forward the way a slow queue's does and never
//! reaches the front. Nothing tells it apart from a real ticket without the signing key (its MAC
//! is made under a separate domain; see [`crate::token`]), and it costs no store anything.
//!
//! Where the place started is kept in the ticket itself, in the low bits of its join stamp
//! (microseconds: the stamp stays within a second of the truth).

use crate::token::Place;

/// The low bits of a decoy's join stamp that hold its starting position.
const START_BITS: u32 = 20;
const START_MASK: u64 = (1 << START_BITS) - 1;
/// The distance to the floor halves in this time.
const HALF_LIFE_MS: u64 = 15 * 60 * 1000;

/// The join stamp of a decoy place joined at `now` (Unix ms), starting at `start_position`.
pub fn joined_us(now: u64, start_position: u64) -> u64 {
    (now.saturating_mul(1000) & !START_MASK) | start_position.clamp(1, START_MASK)
}

/// A plausible place for a decoy: the room's epoch, a shard drawn from `random`, and a sequence
/// number near where the shard's queue would be after `joins` joins in all.
pub fn place(epoch: u32, shards: u16, joins: u64, random: u64) -> Place {
    let shards = u64::from(shards.max(1));
    Place {
        epoch,
        shard: (random % shards) as u16,
        seq: joins / shards + 1 + (random >> 16) % 8,
    }
}

/// Where a decoy that joined with stamp `joined_us` stands at `now`: from its starting position
/// towards a floor of a quarter of it (at least 3, or the start if lower), the distance halving
/// every 15 minutes. Never rises, never reaches the front unless it started there.
pub fn position(joined_us: u64, now: u64) -> u64 {
    let start = (joined_us & START_MASK).max(1);
    let floor = (start / 4).max(3).min(start);
    let elapsed = now
        .saturating_mul(1000)
        .saturating_sub(joined_us & !START_MASK)
        / 1000;
    let halvings = elapsed as f64 / HALF_LIFE_MS as f64;
    let above = (start - floor) as f64 * 0.5f64.powf(halvings);
    floor + above.round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_123;

    #[test]
    fn a_decoy_moves_forward_slowly_and_never_reaches_the_front() {
        let stamp = joined_us(NOW, 400);
        assert!(stamp.abs_diff(NOW * 1000) < 1_100_000, "within a second");
        assert_eq!(position(stamp, NOW), 400);
        let mut last = 400;
        for minute in 1..=24 * 60 {
            let p = position(stamp, NOW + minute * 60_000);
            assert!(p <= last, "never rises");
            assert!(p >= 100, "floor: a quarter");
            last = p;
        }
        assert!(position(stamp, NOW + 15 * 60_000) <= 250);
        assert_eq!(last, 100);
    }

    #[test]
    fn a_short_queue_stays_short_and_never_says_next() {
        assert_eq!(position(joined_us(NOW, 1), NOW + 3_600_000), 1);
        let stamp = joined_us(NOW, 7);
        assert_eq!(position(stamp, NOW), 7);
        assert_eq!(position(stamp, NOW + 86_400_000), 3);
    }

    #[test]
    fn a_place_is_within_the_room() {
        for random in [0, 1, u64::MAX, 0xdead_beef] {
            let p = place(9, 4, 1000, random);
            assert_eq!(p.epoch, 9);
            assert!(p.shard < 4);
            assert!((251..=258).contains(&p.seq), "{p:?}");
        }
    }
}
