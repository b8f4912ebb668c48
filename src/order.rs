//! FIFO across shards: which visitors a batch admits when the queue is split over shards.
//!
//! Each shard is ordered by sequence number; across shards the join stamp decides. A batch of
//! `n` takes the `n` smallest stamps among all shards' waiting visitors, which is a k-way merge
//! of the shards' heads.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// How many of each shard's next waiting visitors a batch of `n` admits. `heads[i]` yields the
/// join stamps of shard `i`'s waiting visitors in queue order (leavers already skipped); it need
/// not yield more than `n`. Ties go to the lower shard index.
pub fn plan_fifo<I>(heads: Vec<I>, n: u64) -> Vec<u64>
where
    I: Iterator<Item = u64>,
{
    let mut counts = vec![0u64; heads.len()];
    let mut heads: Vec<_> = heads.into_iter().map(Iterator::peekable).collect();
    let mut heap = BinaryHeap::with_capacity(heads.len());
    for (shard, head) in heads.iter_mut().enumerate() {
        if let Some(&stamp) = head.peek() {
            heap.push(Reverse((stamp, shard)));
        }
    }
    let mut left = n;
    while left > 0 {
        let Some(Reverse((_, shard))) = heap.pop() else {
            break;
        };
        counts[shard] += 1;
        left -= 1;
        let head = &mut heads[shard];
        head.next();
        if let Some(&stamp) = head.peek() {
            heap.push(Reverse((stamp, shard)));
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn merges_by_stamp() {
        let shards = [vec![1, 4, 9], vec![2, 3, 10], vec![5]];
        let counts = plan_fifo(shards.iter().map(|s| s.iter().copied()).collect(), 5);
        assert_eq!(counts, [2, 2, 1]);
    }

    #[test]
    fn takes_what_there_is() {
        let shards = [vec![1], vec![]];
        let counts = plan_fifo(shards.iter().map(|s| s.iter().copied()).collect(), 10);
        assert_eq!(counts, [1, 0]);
    }

    proptest! {
        #[test]
        fn admits_exactly_the_oldest(
            stamps in proptest::collection::hash_set(0u64..100_000, 0..300),
            shard_of in proptest::collection::vec(0usize..5, 300),
            n in 0u64..400,
        ) {
            let mut all: Vec<u64> = stamps.into_iter().collect();
            all.sort_unstable();
            let mut shards = vec![Vec::new(); 5];
            for (i, stamp) in all.iter().enumerate() {
                shards[shard_of[i]].push(*stamp);
            }
            let counts = plan_fifo(shards.iter().map(|s| s.iter().copied()).collect(), n);
            let mut admitted: Vec<u64> = shards
                .iter()
                .zip(&counts)
                .flat_map(|(s, &c)| s[..c as usize].iter().copied())
                .collect();
            admitted.sort_unstable();
            let expected = &all[..(n as usize).min(all.len())];
            prop_assert_eq!(admitted.as_slice(), expected);
        }
    }
}
