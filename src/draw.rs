//! Random mode's draws: each admission picks uniformly among everyone waiting, the way
//! Cloudflare's random queueing does, so a visitor's chance at every batch is the same as anyone
//! else's however late they joined.
//!
//! A batch is planned once, from a 64-bit seed the scheduler draws from the platform's
//! cryptographic source: the seed first splits the batch over the shards (a multivariate
//! hypergeometric draw by their waiting counts, so that the room as a whole draws uniformly),
//! then each shard draws its share among its own waiting places
//! ([`crate::queue::ShardQueue::draw_swaps`]) from a seed derived for it. Everything follows from
//! the seed, so an edge shard object that logs the seed replays the same draw.
//!
//! A shard admits in queue order; a draw keeps that by swapping the drawn visitors' places with
//! those of the visitors at the head of the line ([`crate::queue::ShardQueue::swap`]), then
//! admitting the head as in FIFO mode. Tickets keep their seqs and find their place through the
//! same map a shuffle uses ([`crate::queue::ShardQueue::locate`]).

use sha2::{Digest, Sha256};

/// A stream of random numbers from a seed: SHA-256 of the seed, a domain and a counter.
/// Deterministic on every platform (the edge replays a logged draw with it).
#[derive(Debug, Clone)]
pub struct DrawRng {
    seed: u64,
    domain: u64,
    counter: u64,
    buffer: [u64; 4],
    used: usize,
}

impl DrawRng {
    pub fn new(seed: u64, domain: u64) -> Self {
        DrawRng {
            seed,
            domain,
            counter: 0,
            buffer: [0; 4],
            used: 4,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        if self.used == 4 {
            let mut hash = Sha256::new();
            hash.update(b"queuegate draw");
            hash.update(self.seed.to_be_bytes());
            hash.update(self.domain.to_be_bytes());
            hash.update(self.counter.to_be_bytes());
            let out: [u8; 32] = hash.finalize().into();
            for (i, word) in self.buffer.iter_mut().enumerate() {
                *word = u64::from_be_bytes(out[8 * i..8 * i + 8].try_into().expect("8 bytes"));
            }
            self.counter += 1;
            self.used = 0;
        }
        self.used += 1;
        self.buffer[self.used - 1]
    }

    /// Uniform in `0..n` (`n` > 0), without the bias of a plain remainder.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        // The largest multiple of n that fits: draws at or above it are drawn again.
        let zone = u64::MAX - (u64::MAX % n + 1) % n;
        loop {
            let x = self.next_u64();
            if x <= zone {
                return x % n;
            }
        }
    }
}

/// The seed a shard's part of a batch draws with.
pub fn shard_seed(seed: u64, shard: usize) -> u64 {
    DrawRng::new(seed, u64::MAX - shard as u64).next_u64()
}

/// How many of `count` admissions each shard gives, when each admission draws uniformly among
/// everyone waiting in the room (`waiting[i]` in shard `i`): one after another, each picks a
/// visitor of shard `i` with probability waiting there / waiting in all. `count` above the total
/// waiting takes everyone.
pub fn split(count: u64, waiting: &[u64], seed: u64) -> Vec<u64> {
    let mut left: Vec<u64> = waiting.to_vec();
    let mut takes = vec![0; waiting.len()];
    let mut total: u64 = left.iter().sum();
    let mut rng = DrawRng::new(seed, u64::MAX - 1_000_000);
    for _ in 0..count.min(total) {
        let mut pick = rng.below(total);
        let shard = left
            .iter()
            .position(|&n| {
                if pick < n {
                    true
                } else {
                    pick -= n;
                    false
                }
            })
            .expect("pick is below the total");
        left[shard] -= 1;
        takes[shard] += 1;
        total -= 1;
    }
    takes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_the_seeds_and_below_stays_below() {
        let a: Vec<u64> = (0..10)
            .scan(DrawRng::new(7, 0), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..10)
            .scan(DrawRng::new(7, 0), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..10)
            .scan(DrawRng::new(8, 0), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut rng = DrawRng::new(1, 2);
        let mut seen = [0u32; 3];
        for _ in 0..3000 {
            seen[rng.below(3) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (900..1100).contains(&n)), "{seen:?}");
    }

    #[test]
    fn a_split_gives_each_shard_its_share_of_the_waiting() {
        assert_eq!(split(10, &[3, 0, 4], 1), vec![3, 0, 4]);
        assert_eq!(split(0, &[3, 4], 1), vec![0, 0]);
        // Over many batches, a shard with three times the waiting gets three times the draws.
        let (mut small, mut big) = (0, 0);
        for seed in 0..500 {
            let takes = split(8, &[100, 300], seed);
            assert_eq!(takes.iter().sum::<u64>(), 8);
            small += takes[0];
            big += takes[1];
        }
        let share = small as f64 / (small + big) as f64;
        assert!((0.22..0.28).contains(&share), "{share}");
    }
}
