//! A shard's queue as positions see it: the join stamps in sequence order, who left, and how far
//! admission has come. The embedded store keeps its queue in it; the Redis store keeps a mirror
//! of each shard in it, so that both compute positions and admission plans with this one code.
//!
//! A waiting visitor costs 8 bytes (the stamp) and a bit (left or not). Positions come from a
//! binary search over the stamps and a Fenwick tree of leavers: O(log n) at any depth.

use crate::order::plan_fifo;

#[derive(Debug, Clone, Default)]
pub struct ShardQueue {
    /// Seq `n` is at index `n - 1`. Strictly increasing.
    stamps: Vec<u64>,
    left: LeftSet,
    /// Every seq up to this one has been admitted (or left while waiting).
    admitted_seq: u64,
    /// Leavers among the seqs above `admitted_seq`.
    left_waiting: u64,
    /// After a shuffle ([`crate::shuffle`]): by ticket seq (index `seq - 1`), how far its place
    /// moved in the queue (0 for places no shuffle moved).
    moved: Vec<i32>,
    /// The inverse of `moved`: by place seq (index `seq - 1`), how far from it is the ticket
    /// seq whose place it holds (0 for its own).
    holder: Vec<i32>,
    /// The `start_us` of the last shuffle applied (0: none).
    shuffled_us: u64,
}

/// Equal when no question can tell them apart: moves of 0 are no moves, however far the
/// vectors that keep them reach.
impl PartialEq for ShardQueue {
    fn eq(&self, other: &Self) -> bool {
        fn trimmed(v: &[i32]) -> &[i32] {
            &v[..v.len() - v.iter().rev().take_while(|&&d| d == 0).count()]
        }
        self.stamps == other.stamps
            && self.left == other.left
            && self.admitted_seq == other.admitted_seq
            && self.left_waiting == other.left_waiting
            && trimmed(&self.moved) == trimmed(&other.moved)
            && trimmed(&self.holder) == trimmed(&other.holder)
            && self.shuffled_us == other.shuffled_us
    }
}

impl Eq for ShardQueue {}

impl ShardQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// The last seq handed out (0 when empty).
    pub fn tail(&self) -> u64 {
        self.stamps.len() as u64
    }

    pub fn admitted_seq(&self) -> u64 {
        self.admitted_seq
    }

    pub fn left_waiting(&self) -> u64 {
        self.left_waiting
    }

    /// Visitors in the queue who have neither been admitted nor left.
    pub fn waiting(&self) -> u64 {
        self.tail() - self.admitted_seq - self.left_waiting
    }

    pub fn contains(&self, seq: u64) -> bool {
        seq >= 1 && seq <= self.tail()
    }

    pub fn stamp(&self, seq: u64) -> Option<u64> {
        seq.checked_sub(1)
            .and_then(|i| self.stamps.get(i as usize))
            .copied()
    }

    pub fn is_left(&self, seq: u64) -> bool {
        seq >= 1 && self.left.contains(seq - 1)
    }

    pub fn is_waiting(&self, seq: u64) -> bool {
        seq > self.admitted_seq && self.contains(seq) && !self.is_left(seq)
    }

    /// Appends a visitor; `stamp` must exceed every stamp so far. Returns the new seq.
    pub fn push(&mut self, stamp: u64) -> u64 {
        debug_assert!(self.stamps.last().is_none_or(|&last| last < stamp));
        self.stamps.push(stamp);
        self.tail()
    }

    /// The last stamp handed out, or 0.
    pub fn last_stamp(&self) -> u64 {
        self.stamps.last().copied().unwrap_or(0)
    }

    /// Appends stamps a mirror read from its source (the bytes after what it already had).
    pub fn extend_from_be_bytes(&mut self, bytes: &[u8]) {
        self.stamps.extend(
            bytes
                .chunks_exact(8)
                .map(|b| u64::from_be_bytes(b.try_into().expect("chunks of 8"))),
        );
    }

    /// The join stamps of seqs `first..=last` (all handed out), 8 bytes each, big-endian: the
    /// bytes [`ShardQueue::extend_from_be_bytes`] reads.
    pub fn stamps_be_bytes(&self, first: u64, last: u64) -> Vec<u8> {
        let from = (first.max(1) - 1) as usize;
        let to = (last.min(self.tail())) as usize;
        self.stamps
            .get(from..to.max(from))
            .unwrap_or_default()
            .iter()
            .flat_map(|s| s.to_be_bytes())
            .collect()
    }

    /// Who left, as bit words: bit `(seq - 1) % 64` of word `(seq - 1) / 64` is set for a
    /// leaver.
    pub fn left_words(&self) -> &[u64] {
        &self.left.words
    }

    /// A queue from what [`ShardQueue::stamps_be_bytes`] and [`ShardQueue::left_words`] gave
    /// out and how far admission had come; `None` when the parts do not fit together (stamps not
    /// strictly increasing, leavers or admission beyond the last seq).
    pub fn from_parts(stamps: Vec<u64>, left_words: Vec<u64>, admitted_seq: u64) -> Option<Self> {
        if stamps.windows(2).any(|w| w[0] >= w[1]) {
            return None;
        }
        let tail = stamps.len() as u64;
        let beyond = |(i, &w): (usize, &u64)| {
            let first = i as u64 * 64;
            match tail.checked_sub(first) {
                Some(n) if n >= 64 => false,
                Some(n) => w >> n != 0,
                None => w != 0,
            }
        };
        if admitted_seq > tail || left_words.iter().enumerate().any(beyond) {
            return None;
        }
        let left = LeftSet::from_words(left_words);
        let left_waiting = left.count_below(tail) - left.count_below(admitted_seq);
        Some(ShardQueue {
            stamps,
            left,
            admitted_seq,
            left_waiting,
            moved: Vec::new(),
            holder: Vec::new(),
            shuffled_us: 0,
        })
    }

    /// The seq that holds the place of the ticket with `ticket_seq`: itself unless a shuffle
    /// moved it.
    pub fn locate(&self, ticket_seq: u64) -> u64 {
        let delta = ticket_seq
            .checked_sub(1)
            .and_then(|i| self.moved.get(usize::try_from(i).ok()?))
            .copied()
            .unwrap_or(0);
        ticket_seq.saturating_add_signed(i64::from(delta))
    }

    /// The `start_us` of the last shuffle applied to this queue (0: none).
    pub fn shuffled_us(&self) -> u64 {
        self.shuffled_us
    }

    /// How far each ticket seq's place moved (index `seq - 1`), as [`ShardQueue::locate`] reads
    /// it: what a snapshot or a mirror keeps of the shuffles.
    pub fn moved(&self) -> &[i32] {
        &self.moved
    }

    /// This queue with the moves and the last shuffle a snapshot or a mirror read.
    pub fn with_moves(mut self, moved: Vec<i32>, shuffled_us: u64) -> Self {
        self.holder = Vec::new();
        for (i, &delta) in moved.iter().enumerate() {
            if delta != 0 {
                let ticket = i as u64 + 1;
                self.set_holder(ticket.saturating_add_signed(i64::from(delta)), ticket);
            }
        }
        self.moved = moved;
        self.shuffled_us = shuffled_us;
        self
    }

    /// The ticket seq whose place `seq` holds: itself unless a shuffle or a draw moved it.
    pub fn ticket_at(&self, seq: u64) -> u64 {
        let delta = seq
            .checked_sub(1)
            .and_then(|i| self.holder.get(usize::try_from(i).ok()?))
            .copied()
            .unwrap_or(0);
        seq.saturating_add_signed(i64::from(delta))
    }

    /// Puts the ticket `ticket` at place `seq` (one half of a swap, as a draw or a mirror
    /// reading a draw's log does it).
    pub fn place_ticket(&mut self, ticket: u64, seq: u64) {
        if ticket == 0 || seq == 0 {
            return;
        }
        let i = (ticket - 1) as usize;
        if self.moved.len() <= i {
            self.moved.resize(i + 1, 0);
        }
        self.moved[i] = delta(ticket, seq);
        self.set_holder(seq, ticket);
    }

    fn set_holder(&mut self, seq: u64, ticket: u64) {
        let i = (seq - 1) as usize;
        if self.holder.len() <= i {
            self.holder.resize(i + 1, 0);
        }
        self.holder[i] = delta(seq, ticket);
    }

    /// Swaps the tickets of two places.
    pub fn swap(&mut self, a: u64, b: u64) {
        let (ta, tb) = (self.ticket_at(a), self.ticket_at(b));
        self.place_ticket(ta, b);
        self.place_ticket(tb, a);
    }

    /// A draw of `count` among the waiting ([`crate::draw`]): the swaps `(head, drawn)` that put
    /// `count` waiting places drawn uniformly with `seed` at the head of the line, where
    /// admission takes them. Drawn places already at the head stay; no swaps when `count`
    /// takes everyone waiting.
    pub fn draw_swaps(&self, count: u64, seed: u64) -> Vec<(u64, u64)> {
        use std::collections::BTreeSet;
        let waiting = self.waiting();
        let count = count.min(waiting);
        if count == 0 || count == waiting {
            return Vec::new();
        }
        let mut rng = crate::draw::DrawRng::new(seed, 0);
        let first = self.admitted_seq + 1;
        let span = self.tail() - self.admitted_seq;
        let mut drawn = BTreeSet::new();
        if waiting.saturating_mul(16) < span {
            // Mostly leavers: draw among a list of the waiting rather than by rejection.
            let mut places: Vec<u64> = (first..=self.tail())
                .filter(|&s| !self.is_left(s))
                .collect();
            for i in 0..count as usize {
                let j = i + rng.below((places.len() - i) as u64) as usize;
                places.swap(i, j);
                drawn.insert(places[i]);
            }
        } else {
            while (drawn.len() as u64) < count {
                let seq = first + rng.below(span);
                if !self.is_left(seq) {
                    drawn.insert(seq);
                }
            }
        }
        let heads: Vec<u64> = self.heads(count).into_iter().map(|(s, _)| s).collect();
        let head_set: BTreeSet<u64> = heads.iter().copied().collect();
        let freed = heads.iter().copied().filter(|s| !drawn.contains(s));
        let beyond = drawn.iter().copied().filter(|s| !head_set.contains(s));
        freed.zip(beyond).collect()
    }

    /// The block a shuffle of the pre-queue `[prequeue_us, start_us)` reorders: the waiting or
    /// left seqs `first..=last` whose stamps fall in it, above admission (`last` is `first - 1`
    /// when there are none), and the stamp before them.
    pub fn prequeue_block(&self, prequeue_us: u64, start_us: u64) -> (u64, u64, u64) {
        let first = (self.stamps.partition_point(|&s| s < prequeue_us) as u64 + 1)
            .max(self.admitted_seq + 1);
        let last = (self.stamps.partition_point(|&s| s < start_us) as u64).max(first - 1);
        (first, last, self.stamp(first - 1).unwrap_or(0))
    }

    /// Applies a shuffle's new order to its block (see [`ShardQueue::prequeue_block`]) and
    /// records it as the last shuffle, `start_us`.
    pub fn apply_shuffle(&mut self, perm: &crate::shuffle::Permutation, start_us: u64) {
        self.shuffled_us = self.shuffled_us.max(start_us);
        let Some(last) = (perm.first + perm.order.len() as u64).checked_sub(1) else {
            return;
        };
        if perm.order.is_empty() || last > self.tail() || perm.first <= self.admitted_seq {
            debug_assert!(perm.order.is_empty(), "a shuffle outside the waiting queue");
            return;
        }
        let was_left: Vec<bool> = perm.order.iter().map(|&s| self.is_left(s)).collect();
        let mut words = self.left.words.clone();
        if self.moved.len() < last as usize {
            self.moved.resize(last as usize, 0);
        }
        for (i, (ticket, seq)) in perm.moves().enumerate() {
            self.stamps[(seq - 1) as usize] = perm.stamps[i];
            let (word, bit) = (((seq - 1) / 64) as usize, 1u64 << ((seq - 1) % 64));
            if words.len() <= word {
                words.resize(word + 1, 0);
            }
            if was_left[i] {
                words[word] |= bit;
            } else {
                words[word] &= !bit;
            }
            self.moved[(ticket - 1) as usize] = delta(ticket, seq);
            self.set_holder(seq, ticket);
        }
        self.left = LeftSet::from_words(words);
    }

    /// Marks `seq` as left. `true` if it was not already; a waiting leaver stops counting as
    /// waiting.
    pub fn mark_left(&mut self, seq: u64) -> bool {
        if !self.contains(seq) || self.is_left(seq) {
            return false;
        }
        self.left.insert(seq - 1);
        if seq > self.admitted_seq {
            self.left_waiting += 1;
        }
        true
    }

    /// Join stamps of the waiting visitors, in order.
    pub fn waiting_stamps(&self) -> impl Iterator<Item = u64> + '_ {
        (self.admitted_seq + 1..=self.tail())
            .filter(|&seq| !self.is_left(seq))
            .map(|seq| self.stamps[(seq - 1) as usize])
    }

    /// `(seq, stamp)` of the next `n` waiting visitors, in order.
    pub fn heads(&self, n: u64) -> Vec<(u64, u64)> {
        (self.admitted_seq + 1..=self.tail())
            .filter(|&seq| !self.is_left(seq))
            .take(usize::try_from(n).unwrap_or(usize::MAX))
            .map(|seq| (seq, self.stamps[(seq - 1) as usize]))
            .collect()
    }

    /// How many waiting visitors joined before `stamp`.
    pub fn waiting_before(&self, stamp: u64) -> u64 {
        let joined_before = self.stamps.partition_point(|&s| s < stamp) as u64;
        if joined_before <= self.admitted_seq {
            return 0;
        }
        let left_between =
            self.left.count_below(joined_before) - self.left.count_below(self.admitted_seq);
        joined_before - self.admitted_seq - left_between
    }

    /// Admits the next `count` waiting visitors (leavers are skipped). Returns the seq range
    /// the admission covers, leavers included, or `None` when `count` is 0.
    ///
    /// # Panics
    /// If fewer than `count` visitors wait.
    pub fn admit(&mut self, count: u64) -> Option<(u64, u64)> {
        if count == 0 {
            return None;
        }
        assert!(count <= self.waiting(), "admitting more than wait");
        let first = self.admitted_seq + 1;
        let mut seq = self.admitted_seq;
        let mut taken = 0;
        while taken < count {
            seq += 1;
            if self.is_left(seq) {
                self.left_waiting -= 1;
            } else {
                taken += 1;
            }
        }
        self.admitted_seq = seq;
        Some((first, seq))
    }

    /// The seq of the `n`-th waiting visitor (1 = next in line), leavers skipped.
    pub fn nth_waiting(&self, n: u64) -> Option<u64> {
        if n == 0 || n > self.waiting() {
            return None;
        }
        let mut seq = self.admitted_seq;
        let mut taken = 0;
        while taken < n {
            seq += 1;
            if !self.is_left(seq) {
                taken += 1;
            }
        }
        Some(seq)
    }

    /// Moves admission up to `seq` (a mirror learning what its source admitted). Returns how
    /// many waiting visitors that admitted.
    pub fn admit_through(&mut self, seq: u64) -> u64 {
        let seq = seq.min(self.tail());
        if seq <= self.admitted_seq {
            return 0;
        }
        let left = self.left.count_below(seq) - self.left.count_below(self.admitted_seq);
        let admitted = seq - self.admitted_seq - left;
        self.left_waiting -= left;
        self.admitted_seq = seq;
        admitted
    }
}

/// How far `to` is from `from`, as the moves keep it.
fn delta(from: u64, to: u64) -> i32 {
    i32::try_from(to as i64 - from as i64).expect("a queue of fewer than 2^31 places")
}

/// A shard's queue in brief, for servers that do not hold the queue itself (edge isolates):
/// how far admission has come and a sample of the waiting visitors, from which positions are
/// estimated. With no more waiting visitors than samples, the sample is the whole queue and the
/// estimate exact.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueSummary {
    pub admitted_seq: u64,
    pub tail: u64,
    pub waiting: u64,
    /// `(rank, seq, stamp)` of sampled waiting visitors, rank 0 = next in line, in order; the
    /// first and the last waiting visitor are always in it.
    pub samples: Vec<(u64, u64, u64)>,
    /// Seqs above `admitted_seq` that left, the most recent first, up to as many as samples:
    /// a leaver polling an old ticket learns it left without asking the shard.
    pub left: Vec<u64>,
    /// When the summary was published (Unix ms), and how many joined the shard a minute before
    /// that: a visitor of another shard who joined since counts those who likely joined here
    /// meanwhile, instead of learning of them a tick later, when the position would rise.
    #[serde(default)]
    pub taken_at: u64,
    #[serde(default)]
    pub arrivals_per_min: u64,
    /// How far the shard's history had come when it was read (its last logged operation): of
    /// two summaries of one shard, the one with the higher version is the newer, whichever was
    /// published last.
    #[serde(default)]
    pub version: u64,
    /// Whether a ticket seq above `admitted_seq` holds a place at or below it (a random mode's
    /// draw took it in): a ticket above admission may then be admitted, and only the shard can
    /// tell.
    #[serde(default)]
    pub moved_ahead: bool,
}

impl ShardQueue {
    /// The summary of this queue with at most `max_samples` samples.
    pub fn summary(&self, max_samples: usize) -> QueueSummary {
        let waiting = self.waiting();
        let max_samples = max_samples.max(2) as u64;
        let step = waiting.div_ceil(max_samples - 1).max(1);
        let mut samples = Vec::new();
        let mut left = Vec::new();
        let mut rank = 0;
        let mut moved_ahead = false;
        for seq in self.admitted_seq + 1..=self.tail() {
            moved_ahead = moved_ahead || self.locate(seq) <= self.admitted_seq;
            if self.is_left(seq) {
                left.push(seq);
                continue;
            }
            if rank % step == 0 || rank + 1 == waiting {
                samples.push((rank, seq, self.stamps[(seq - 1) as usize]));
            }
            rank += 1;
        }
        left.reverse();
        left.truncate(max_samples as usize);
        QueueSummary {
            admitted_seq: self.admitted_seq,
            tail: self.tail(),
            waiting,
            samples,
            left,
            taken_at: 0,
            arrivals_per_min: 0,
            version: 0,
            moved_ahead,
        }
    }
}

/// What a room's shards' summaries become when `incoming` is published over `current`: each
/// shard's newer summary.
pub fn merge_summaries(current: &[QueueSummary], incoming: Vec<QueueSummary>) -> Vec<QueueSummary> {
    if current.len() != incoming.len() {
        return incoming;
    }
    incoming
        .into_iter()
        .zip(current)
        .map(|(new, old)| new.newest(Some(old)))
        .collect()
}

/// A summary's arrival rate extends at most this far past the summary.
const MAX_EXTRAPOLATION_MS: u64 = 2_000;
/// Publications closer together than this keep the previous arrival rate.
const MIN_RATE_INTERVAL_MS: u64 = 250;

impl QueueSummary {
    /// The summary stamped with the shard's version.
    pub fn at_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// Of this summary and `other`, both of one shard, the newer (this one on a tie): a
    /// publication planned before another may land after it, and must not undo what it told.
    pub fn newest(self, other: Option<&QueueSummary>) -> QueueSummary {
        match other {
            Some(other) if other.version > self.version => other.clone(),
            _ => self,
        }
    }

    /// This summary as published at `now`, with the arrival rate since `previous` (the shard's
    /// summary published before it).
    pub fn observed(mut self, now: u64, previous: Option<&QueueSummary>) -> Self {
        self.taken_at = now;
        self.arrivals_per_min = match previous {
            Some(p) if p.taken_at > 0 && now >= p.taken_at + MIN_RATE_INTERVAL_MS => {
                self.tail.saturating_sub(p.tail) * 60_000 / (now - p.taken_at)
            }
            Some(p) => p.arrivals_per_min,
            None => 0,
        };
        self
    }

    /// About how many joined the shard between the summary and `stamp` (µs).
    fn joined_since(&self, stamp: u64) -> f64 {
        let since_ms = (stamp / 1000)
            .saturating_sub(self.taken_at)
            .min(MAX_EXTRAPOLATION_MS);
        if self.taken_at == 0 {
            return 0.0;
        }
        self.arrivals_per_min as f64 * since_ms as f64 / 60_000.0
    }

    /// About how many waiting visitors come before the visitor keyed `key`, by seq when it is
    /// this shard's own visitor, by stamp otherwise.
    fn before(&self, key: u64, by_seq: bool) -> f64 {
        let key_of = |&(_, seq, stamp): &(u64, u64, u64)| if by_seq { seq } else { stamp };
        let i = self.samples.partition_point(|s| key_of(s) < key);
        if i == self.samples.len() {
            // Past every sample: everyone known waits before; for an own visitor newer than
            // the summary, so do those between the summary's tail and it.
            let newer = if by_seq {
                key.saturating_sub(self.tail.max(self.admitted_seq) + 1) as f64
            } else {
                self.joined_since(key)
            };
            return self.waiting as f64 + newer;
        }
        if i == 0 {
            return 0.0;
        }
        let (rank, ..) = self.samples[i - 1];
        let below = self.samples[i - 1];
        let above = self.samples[i];
        let span = (key_of(&above) - key_of(&below)) as f64;
        let fraction = (key - key_of(&below)) as f64 / span;
        rank as f64 + 1.0 + fraction * (above.0 - below.0 - 1) as f64
    }
}

/// The position of the visitor at `seq` (stamp `joined_us`) of shard `own`, estimated from
/// summaries of all the room's shards: exact while each shard waits no more visitors than its
/// summary samples.
pub fn estimate_position(summaries: &[QueueSummary], own: usize, seq: u64, joined_us: u64) -> u64 {
    let ahead: f64 = summaries
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i == own {
                s.before(seq, true)
            } else {
                s.before(joined_us, false)
            }
        })
        .sum();
    1 + ahead.round() as u64
}

/// The position of a visitor whose own shard counted `own_ahead` waiting before it exactly, the
/// other shards estimated from their summaries.
pub fn position_with_own(
    summaries: &[QueueSummary],
    own: usize,
    own_ahead: u64,
    joined_us: u64,
) -> u64 {
    let others: f64 = summaries
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != own)
        .map(|(_, s)| s.before(joined_us, false))
        .sum();
    1 + own_ahead + others.round() as u64
}

/// 1 + the waiting visitors across `shards` who joined before `joined_us`. Within a shard,
/// earlier seqs have earlier stamps, so the own shard needs no special case.
pub fn position<'a>(shards: impl IntoIterator<Item = &'a ShardQueue>, joined_us: u64) -> u64 {
    1 + shards
        .into_iter()
        .map(|s| s.waiting_before(joined_us))
        .sum::<u64>()
}

/// How many of each shard's waiting visitors a batch of `n` admits, oldest first across shards.
/// Only visitors stamped before `cutoff` take part: a mirror read shard by shard has seen every
/// visitor who joined before its first read began, but maybe not those who joined during it.
pub fn plan_admission<'a>(
    shards: impl IntoIterator<Item = &'a ShardQueue>,
    n: u64,
    cutoff: Option<u64>,
) -> Vec<u64> {
    let cutoff = cutoff.unwrap_or(u64::MAX);
    plan_fifo(
        shards
            .into_iter()
            .map(|s| s.waiting_stamps().take_while(move |&stamp| stamp < cutoff))
            .collect(),
        n,
    )
}

/// A set of indexes with a Fenwick tree over its 64-bit words' counts, so that the members
/// below any index are counted in O(log n). Costs one bit per index plus 8 bytes per 64.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeftSet {
    words: Vec<u64>,
    /// 1-based Fenwick tree: `tree[i]` sums the counts of words `i - lowbit(i) .. i`.
    tree: Vec<u64>,
}

impl LeftSet {
    pub fn contains(&self, i: u64) -> bool {
        self.words
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn insert(&mut self, i: u64) {
        let word = (i / 64) as usize;
        while self.words.len() <= word {
            self.push_word();
        }
        let bit = 1 << (i % 64);
        if self.words[word] & bit != 0 {
            return;
        }
        self.words[word] |= bit;
        let mut node = word + 1;
        while node < self.tree.len() {
            self.tree[node] += 1;
            node += node & node.wrapping_neg();
        }
    }

    /// The set with these words, its tree built in O(n): the tree [`LeftSet::insert`] would
    /// have built.
    fn from_words(words: Vec<u64>) -> Self {
        if words.is_empty() {
            return Self::default();
        }
        let mut tree = vec![0u64; words.len() + 1];
        for node in 1..tree.len() {
            tree[node] += u64::from(words[node - 1].count_ones());
            let parent = node + (node & node.wrapping_neg());
            if parent < tree.len() {
                tree[parent] += tree[node];
            }
        }
        LeftSet { words, tree }
    }

    /// Appends an empty word; its tree node sums the words it covers, all already present.
    fn push_word(&mut self) {
        if self.tree.is_empty() {
            self.tree.push(0);
        }
        self.words.push(0);
        let node = self.words.len();
        let covered_from = node - (node & node.wrapping_neg());
        let sum = self.words_prefix(node - 1) - self.words_prefix(covered_from);
        self.tree.push(sum);
    }

    /// Members in the first `words` words.
    fn words_prefix(&self, words: usize) -> u64 {
        let mut sum = 0;
        let mut node = words;
        while node > 0 {
            sum += self.tree[node];
            node &= node - 1;
        }
        sum
    }

    /// Members below index `i`.
    pub fn count_below(&self, i: u64) -> u64 {
        let word = (i / 64) as usize;
        if word >= self.words.len() {
            return self.words_prefix(self.words.len());
        }
        let partial = self.words[word] & ((1u64 << (i % 64)) - 1);
        self.words_prefix(word) + u64::from(partial.count_ones())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publication_never_undoes_a_newer_one() {
        let mut queue = ShardQueue::new();
        for stamp in 1..=4 {
            queue.push(stamp);
        }
        let before = queue.summary(8).at_version(4);
        queue.admit_through(2);
        let after = queue.summary(8).at_version(5);
        // The newer summary (admission through 2) was published first; the older one lands
        // after it, from a batch planned before.
        let kept = merge_summaries(std::slice::from_ref(&after), vec![before.clone()]);
        assert_eq!(kept, vec![after.clone()]);
        assert_eq!(merge_summaries(&[before], vec![after.clone()]), vec![after]);
    }
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn left_set_counts_like_a_plain_set() {
        let mut set = LeftSet::default();
        let mut plain = BTreeSet::new();
        let mut x: u64 = 12345;
        for _ in 0..5000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let i = (x >> 33) % 20_000;
            set.insert(i);
            plain.insert(i);
            let probe = (x >> 13) % 21_000;
            assert_eq!(set.count_below(probe), plain.range(..probe).count() as u64);
            assert!(set.contains(i));
        }
    }

    #[test]
    fn a_queue_rebuilt_from_its_parts_is_the_same_queue() {
        let mut q = ShardQueue::new();
        for stamp in 1..=300u64 {
            q.push(stamp * 3);
        }
        for seq in [2, 64, 65, 130, 200, 299] {
            q.mark_left(seq);
        }
        q.admit(100);
        assert_eq!(q.admitted_seq(), 103, "leavers 2, 64 and 65 skipped");
        let stamps: Vec<u64> = q
            .stamps_be_bytes(1, q.tail())
            .chunks_exact(8)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(stamps.len(), 300);
        assert_eq!(
            q.stamps_be_bytes(299, 300),
            [897u64, 900].map(u64::to_be_bytes).concat()
        );
        let rebuilt =
            ShardQueue::from_parts(stamps.clone(), q.left_words().to_vec(), q.admitted_seq());
        assert_eq!(rebuilt.as_ref(), Some(&q), "the Fenwick tree too");
        // Parts that do not fit: stamps out of order, a leaver or admission past the tail.
        let mut swapped = stamps.clone();
        swapped.swap(3, 4);
        assert!(ShardQueue::from_parts(swapped, vec![], 0).is_none());
        assert!(
            ShardQueue::from_parts(stamps[..298].to_vec(), q.left_words().to_vec(), 0).is_none()
        );
        assert!(ShardQueue::from_parts(stamps, vec![], 301).is_none());
        assert_eq!(
            ShardQueue::from_parts(vec![], vec![], 0),
            Some(ShardQueue::new())
        );
    }

    fn shard(stamps: &[u64]) -> ShardQueue {
        let mut q = ShardQueue::new();
        for &s in stamps {
            q.push(s);
        }
        q
    }

    #[test]
    fn admission_skips_leavers_and_mirrors_agree() {
        let mut q = shard(&[1, 2, 3, 4, 5, 6]);
        q.mark_left(2);
        q.mark_left(3);
        assert_eq!(q.waiting(), 4);
        assert_eq!(q.admit(2), Some((1, 4)));
        assert_eq!(q.waiting(), 2);
        assert_eq!(q.left_waiting(), 0);

        let mut mirror = shard(&[1, 2, 3, 4, 5, 6]);
        mirror.mark_left(2);
        mirror.mark_left(3);
        assert_eq!(mirror.nth_waiting(2), Some(4));
        assert_eq!(mirror.nth_waiting(5), None);
        assert_eq!(mirror.admit_through(4), 2);
        assert_eq!(mirror, q);
        // An admitted visitor who leaves later does not count as a waiting leaver.
        assert!(q.mark_left(1));
        assert_eq!(q.left_waiting(), 0);
        assert!(!q.mark_left(1));
    }

    #[test]
    fn stamps_round_trip_through_bytes() {
        let mut q = ShardQueue::new();
        let bytes: Vec<u8> = [7u64, 9, 1 << 40]
            .iter()
            .flat_map(|s| s.to_be_bytes())
            .collect();
        q.extend_from_be_bytes(&bytes);
        assert_eq!(q.tail(), 3);
        assert_eq!(q.stamp(3), Some(1 << 40));
        assert_eq!(q.last_stamp(), 1 << 40);
    }

    #[test]
    fn the_cutoff_keeps_late_joiners_out_of_a_plan() {
        let shards = [shard(&[1, 4, 9]), shard(&[2, 3, 10])];
        assert_eq!(plan_admission(&shards, 10, Some(5)), [2, 2]);
        assert_eq!(plan_admission(&shards, 10, None), [3, 3]);
    }

    #[test]
    fn estimates_are_exact_on_small_queues_and_close_on_big_ones() {
        let mut shards = vec![ShardQueue::new(), ShardQueue::new()];
        for stamp in 1..=2000u64 {
            shards[(stamp % 2) as usize].push(stamp);
        }
        shards[1].mark_left(3);
        shards[0].admit(10);
        let full: Vec<QueueSummary> = shards.iter().map(|q| q.summary(100_000)).collect();
        let sparse: Vec<QueueSummary> = shards.iter().map(|q| q.summary(16)).collect();
        for (own, queue) in shards.iter().enumerate() {
            for seq in queue.admitted_seq() + 1..=queue.tail() {
                if !queue.is_waiting(seq) {
                    continue;
                }
                let stamp = queue.stamp(seq).unwrap();
                let exact = position(&shards, stamp);
                assert_eq!(estimate_position(&full, own, seq, stamp), exact);
                let estimate = estimate_position(&sparse, own, seq, stamp);
                assert!(estimate.abs_diff(exact) <= 2, "{estimate} vs {exact}");
            }
        }
        // A visitor newer than the summaries counts everyone they know of, and in its own shard
        // everyone between the summary's tail and it.
        let empty = ShardQueue::new().summary(16);
        assert_eq!(estimate_position(&[empty.clone(), empty], 0, 3, 99), 3);
        let mut newer = shards[0].clone();
        let seq = newer.push(5000);
        assert_eq!(
            estimate_position(&full, 0, seq, 5000),
            1 + shards[0].waiting() + shards[1].waiting()
        );
    }

    #[test]
    fn joins_elsewhere_since_the_summary_are_counted_at_the_measured_rate() {
        // Shard 1 took 100 joins in the second between two publications: 6,000 a minute.
        let mut other = ShardQueue::new();
        for stamp in 1..=100u64 {
            other.push(stamp);
        }
        let first = ShardQueue::new().summary(16).observed(9_000, None);
        let second = other.summary(16).observed(10_000, Some(&first));
        assert_eq!(second.arrivals_per_min, 6_000);
        let own = ShardQueue::new().summary(16).observed(10_000, None);
        let summaries = [own, second];
        // A visitor of shard 0 who joined half a second after the publication: the 100 known
        // to wait in shard 1, and about 50 more who joined there meanwhile.
        assert_eq!(
            estimate_position(&summaries, 0, 1, 10_500_000),
            1 + 100 + 50
        );
        assert_eq!(
            position_with_own(&summaries, 0, 0, 10_500_000),
            1 + 100 + 50
        );
        // Never more than two seconds' worth, however old the summary.
        assert_eq!(
            estimate_position(&summaries, 0, 1, 99_000_000),
            1 + 100 + 200
        );
        // A second publication soon after keeps the rate it had.
        let soon = other.summary(16).observed(10_100, Some(&summaries[1]));
        assert_eq!(soon.arrivals_per_min, 6_000);
    }

    proptest! {
        #[test]
        fn positions_match_a_count_over_all_shards(
            joins in proptest::collection::vec(0usize..3, 1..200),
            leaves in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
            admitted in proptest::collection::vec(0u64..30, 3),
        ) {
            let mut shards = vec![ShardQueue::new(), ShardQueue::new(), ShardQueue::new()];
            let mut all = Vec::new();
            for (stamp, &s) in joins.iter().enumerate() {
                let stamp = stamp as u64 + 1;
                let seq = shards[s].push(stamp);
                all.push((s, seq, stamp));
            }
            for leave in leaves {
                let (s, seq, _) = all[leave.index(all.len())];
                shards[s].mark_left(seq);
            }
            for (s, n) in admitted.iter().enumerate() {
                let n = (*n).min(shards[s].waiting());
                shards[s].admit(n);
            }
            for &(s, seq, stamp) in &all {
                if !shards[s].is_waiting(seq) {
                    continue;
                }
                let ahead = all
                    .iter()
                    .filter(|&&(s2, seq2, stamp2)| stamp2 < stamp && shards[s2].is_waiting(seq2))
                    .count() as u64;
                prop_assert_eq!(position(&shards, stamp), ahead + 1);
            }
            let waiting: u64 = shards.iter().map(ShardQueue::waiting).sum();
            let counted = all.iter().filter(|&&(s, seq, _)| shards[s].is_waiting(seq)).count() as u64;
            prop_assert_eq!(waiting, counted);
        }
    }
}
