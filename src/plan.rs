//! The admission plan: from what each shard of a room holds, which of its waiting visitors a batch
//! admits and how much entry credit each shard opens. Every batch is planned here, on every store
//! (the embedded store, Redis, and the edge through the origin's scheduler), so a batch means the
//! same everywhere:
//!
//! - capacity: active sessions, admitted visitors who have not arrived yet and the entry credit
//!   that may still be spent never exceed `max_active`;
//! - order: the oldest waiting visitors across all shards go first (by join stamp);
//! - entry credit (slots for visitors who arrive while nobody waits) opens only from what is
//!   left of a scheduler's grant once nobody waits, and is replaced, not added to, by the next
//!   batch;
//! - an operator's batch goes ahead in a paused room, leaves the credit alone and keeps clear of
//!   it.

use serde::{Deserialize, Serialize};

use crate::controller::RoomLoad;
use crate::order::plan_fifo;
use crate::room::{Mode, RoomConfig};

/// What one shard holds, as a store read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct ShardReading {
    /// Sessions in the application.
    pub active: u64,
    /// Admitted visitors who have not arrived yet, inside their claim window.
    pub unclaimed: u64,
    /// Entry credit the shard holds.
    pub credit: u64,
    /// Visitors waiting in the shard.
    pub waiting: u64,
    /// Admissions ever made from the shard.
    pub admitted_total: u64,
    /// `(seq, stamp)` of the next waiting visitors, oldest first.
    pub heads: Vec<(u64, u64)>,
    /// Every waiting visitor of the shard stamped below this is in `heads` (`u64::MAX` when
    /// `heads` lists them all). A batch never goes past it in any shard: the visitors the list
    /// leaves out may be older than another shard's.
    pub listed_below: u64,
    /// The `start_us` of the shard's last shuffle when read ([`crate::shuffle`]): the seqs of
    /// `heads` are of that order.
    #[serde(default)]
    pub shuffled_us: u64,
    /// Places the shard ended because their visitors stopped asking, ever.
    #[serde(default)]
    pub abandoned_total: u64,
    /// Admissions the shard ended because their visitors never came for them, ever.
    #[serde(default)]
    pub no_shows_total: u64,
    /// Visitors who joined the shard, ever (its last seq).
    #[serde(default)]
    pub joined_total: u64,
    /// Visitors who left the shard's queue themselves, ever.
    #[serde(default)]
    pub left_total: u64,
}

impl ShardReading {
    /// `listed_below` for a list of heads cut off after `heads` entries of `waiting`.
    pub fn bound(heads: &[(u64, u64)], waiting: u64) -> u64 {
        match heads.last() {
            Some(&(_, stamp)) if (heads.len() as u64) < waiting => stamp + 1,
            None if waiting > 0 => 0,
            _ => u64::MAX,
        }
    }
}

/// The room's load from its shards' readings.
pub fn load_of(shards: &[ShardReading]) -> RoomLoad {
    RoomLoad {
        waiting: shards.iter().map(|s| s.waiting).sum(),
        active: shards.iter().map(|s| s.active).sum(),
        admitted: shards.iter().map(|s| s.unclaimed).sum(),
        admitted_total: shards.iter().map(|s| s.admitted_total).sum(),
        no_shows_total: shards.iter().map(|s| s.no_shows_total).sum(),
    }
}

/// Places the room's shards ended because their visitors stopped asking.
pub fn abandoned_of(shards: &[ShardReading]) -> u64 {
    shards.iter().map(|s| s.abandoned_total).sum()
}

/// Those who joined the room's shards, and those who left their queues themselves, ever.
pub fn flow_of(shards: &[ShardReading]) -> (u64, u64) {
    (
        shards.iter().map(|s| s.joined_total).sum(),
        shards.iter().map(|s| s.left_total).sum(),
    )
}

/// How long (ms) each visitor a plan admits from the head of the queue had waited at `now`:
/// the join stamps of the listed heads it takes. A random mode's draws are not of the heads,
/// so they are not measured.
pub fn admitted_waits(shards: &[ShardReading], plan: &Plan, now: u64) -> Vec<u64> {
    shards
        .iter()
        .zip(&plan.orders)
        .filter(|(_, order)| order.draw.is_none())
        .flat_map(|(reading, order)| {
            let take = usize::try_from(order.take).unwrap_or(usize::MAX);
            reading.heads.iter().take(take)
        })
        .map(|&(_, stamp_us)| now.saturating_sub(stamp_us / 1000))
        .collect()
}

/// Who asks for the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// The scheduler, with the controller's grant: admits from the queue, then opens what is left
    /// of the grant as entry credit if nobody waits.
    Scheduler { grant: u64 },
    /// An operator (`POST .../admit`): admits up to `count`, outside the rate budget.
    Operator { count: u64 },
}

/// How current the readings are when the batch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Read just before the batch, with nothing admitted in between (a store that reads and
    /// admits under one lock, or behind the fence the read raised).
    Current,
    /// Read at the end of the previous batch (the edge, where a tick reads and admits in one call
    /// per shard): the credit that batch opened may have been spent since, so it counts as taken.
    Previous,
}

/// What one shard does in a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct ShardOrder {
    /// How many of the listed heads to admit.
    pub take: u64,
    /// The seq of the last of them (0 when `take` is 0): the shard admits every waiting visitor
    /// through it, skipping those who left since the reading.
    pub through_seq: u64,
    /// The shard's entry credit from now on; `None` leaves it as it is.
    pub credit: Option<u64>,
    /// Add what is left of the shard's credit on top of `credit`. A plan from a previous reading
    /// counted that credit as spent, so the capacity it stands for is still free; without this,
    /// credit nobody used would close every other batch.
    #[serde(default)]
    pub carry: bool,
    /// The reading's `shuffled_us`: a shard shuffled since admits nothing by this order (its
    /// `through_seq` names a place of the old order).
    #[serde(default)]
    pub shuffled_us: u64,
    /// Random mode ([`crate::draw`]): the shard admits `take` waiting visitors drawn with this
    /// seed, wherever they are in the line, instead of those through `through_seq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draw: Option<u64>,
}

/// A planned batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// One order per shard, in shard order.
    pub orders: Vec<ShardOrder>,
    /// Visitors the batch admits from the queue (fewer if some left since the reading).
    pub admitted: u64,
    /// Entry credit the batch opens across all shards (0 for an operator's batch).
    pub credit: u64,
}

/// Plans a batch for a room from its shards' readings. `seed` (from the platform's random
/// source) is what a room in random mode draws with.
pub fn plan(
    config: &RoomConfig,
    paused: bool,
    shards: &[ShardReading],
    batch: Batch,
    freshness: Freshness,
    seed: u64,
) -> Plan {
    let load = load_of(shards);
    let credit_open: u64 = shards.iter().map(|s| s.credit).sum();
    let (count, operator) = match batch {
        // A pause that came after the grant was computed still stops the batch.
        Batch::Scheduler { grant } => (if paused { 0 } else { grant }, false),
        Batch::Operator { count } => (count, true),
    };
    // Credit is capacity promised to whoever arrives next: an operator keeps clear of it, and a
    // stale reading cannot tell how much of it was spent.
    let credit_taken = operator || freshness == Freshness::Previous;
    let reserved = if credit_taken { credit_open } else { 0 };
    let free = load.free(config).saturating_sub(reserved);
    let wanted = count.min(free);
    let random = config.mode == Mode::Random;
    let barrier = shards.iter().map(|s| s.listed_below).min().unwrap_or(0);
    let takes = if random {
        let waiting: Vec<u64> = shards.iter().map(|s| s.waiting).collect();
        crate::draw::split(wanted, &waiting, seed)
    } else {
        plan_fifo(
            shards
                .iter()
                .map(|s| {
                    s.heads
                        .iter()
                        .map(|&(_, stamp)| stamp)
                        .take_while(move |&stamp| stamp < barrier)
                })
                .collect(),
            wanted,
        )
    };
    let admitted: u64 = takes.iter().sum();
    let (credits, carry): (Vec<Option<u64>>, bool) = if operator {
        (vec![None; shards.len()], false)
    } else if paused || load.waiting > admitted {
        // People still wait after the batch (the capacity ran out, or the reading's heads left
        // some out): no direct entry past them.
        (vec![Some(0); shards.len()], false)
    } else {
        let open = (count - admitted).min(free - admitted);
        (split(open, shards.len()), freshness == Freshness::Previous)
    };
    let orders = takes
        .iter()
        .zip(shards)
        .zip(&credits)
        .enumerate()
        .map(|(i, ((&take, shard), &credit))| ShardOrder {
            take,
            through_seq: match take {
                0 => 0,
                _ if random => 0,
                n => shard.heads[(n - 1) as usize].0,
            },
            credit,
            carry,
            shuffled_us: shard.shuffled_us,
            draw: (random && take > 0).then(|| crate::draw::shard_seed(seed, i)),
        })
        .collect();
    Plan {
        orders,
        admitted,
        credit: credits.iter().map(|c| c.unwrap_or(0)).sum(),
    }
}

/// `total` split as evenly as it goes over `parts`, the first parts taking the remainder.
fn split(total: u64, parts: usize) -> Vec<Option<u64>> {
    let n = parts.max(1) as u64;
    (0..n)
        .map(|i| Some(total / n + u64::from(i < total % n)))
        .take(parts)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config(max_active: u64) -> RoomConfig {
        RoomConfig {
            max_active,
            ..RoomConfig::default()
        }
    }

    fn shard(stamps: &[u64], active: u64, credit: u64) -> ShardReading {
        let heads: Vec<(u64, u64)> = stamps
            .iter()
            .enumerate()
            .map(|(i, &s)| (i as u64 + 1, s))
            .collect();
        ShardReading {
            active,
            credit,
            waiting: heads.len() as u64,
            listed_below: u64::MAX,
            heads,
            ..ShardReading::default()
        }
    }

    #[test]
    fn admits_the_oldest_across_shards_within_capacity() {
        let shards = [shard(&[1, 4, 9], 2, 0), shard(&[2, 3, 10], 1, 0)];
        let p = plan(
            &config(7),
            false,
            &shards,
            Batch::Scheduler { grant: 10 },
            Freshness::Current,
            0,
        );
        // 3 active of 7: four admitted, stamps 1-4; people still wait, so no credit.
        assert_eq!(p.admitted, 4);
        assert_eq!(p.orders[0].through_seq, 2);
        assert_eq!(p.orders[1].through_seq, 2);
        assert_eq!(p.credit, 0);
        assert!(p.orders.iter().all(|o| o.credit == Some(0)));
    }

    #[test]
    fn random_mode_draws_over_all_waiting_within_capacity() {
        let mut readings = [shard(&[1, 4, 9], 2, 0), shard(&[2, 3, 10], 1, 0)];
        // Only the first heads are listed; a draw reaches everyone waiting.
        readings[1].waiting = 300;
        let random = RoomConfig {
            mode: Mode::Random,
            ..config(7)
        };
        let planned = |config: &RoomConfig| {
            plan(
                config,
                false,
                &readings,
                Batch::Scheduler { grant: 10 },
                Freshness::Current,
                42,
            )
        };
        let p = planned(&random);
        assert_eq!(p.admitted, 4);
        assert_eq!(p.orders.iter().map(|o| o.take).sum::<u64>(), 4);
        for (i, order) in p.orders.iter().enumerate() {
            assert_eq!(order.draw.is_some(), order.take > 0);
            assert_eq!(order.through_seq, 0);
            if let Some(seed) = order.draw {
                assert_eq!(seed, crate::draw::shard_seed(42, i));
            }
        }
        // The same seed plans the same; FIFO plans carry no draw.
        assert_eq!(planned(&random), p);
        assert!(planned(&config(7)).orders.iter().all(|o| o.draw.is_none()));
    }

    #[test]
    fn what_is_left_of_the_grant_opens_as_credit_when_nobody_waits() {
        let shards = [shard(&[1], 0, 5), shard(&[], 0, 0), shard(&[], 0, 0)];
        let p = plan(
            &config(100),
            false,
            &shards,
            Batch::Scheduler { grant: 8 },
            Freshness::Current,
            0,
        );
        assert_eq!(p.admitted, 1);
        assert_eq!(p.credit, 7);
        let credits: Vec<_> = p.orders.iter().map(|o| o.credit.unwrap()).collect();
        assert_eq!(credits, [3, 2, 2]);
        // Read a batch ago, the 5 of credit then open count as taken: 100 - 5 - 1 left.
        let p = plan(
            &config(7),
            false,
            &shards,
            Batch::Scheduler { grant: 8 },
            Freshness::Previous,
            0,
        );
        assert_eq!((p.admitted, p.credit), (1, 1));
    }

    #[test]
    fn credit_nobody_spent_is_carried_over_a_stale_reading() {
        // Read a batch ago: all 50 slots were opened as credit. The stale plan counts them as
        // taken and opens nothing new, but tells each shard to keep what it has left.
        let shards = [shard(&[], 0, 25), shard(&[], 0, 25)];
        let p = plan(
            &config(50),
            false,
            &shards,
            Batch::Scheduler { grant: 100 },
            Freshness::Previous,
            0,
        );
        assert_eq!(p.credit, 0);
        assert!(p.orders.iter().all(|o| o.carry && o.credit == Some(0)));
        // A current reading replaces the credit and never carries.
        let p = plan(
            &config(50),
            false,
            &shards,
            Batch::Scheduler { grant: 100 },
            Freshness::Current,
            0,
        );
        assert_eq!(p.credit, 50);
        assert!(p.orders.iter().all(|o| !o.carry));
        // People waiting close the credit, carried or not.
        let shards = [shard(&[1], 0, 25), shard(&[], 0, 25)];
        let p = plan(
            &config(50),
            false,
            &shards,
            Batch::Scheduler { grant: 0 },
            Freshness::Previous,
            0,
        );
        assert!(p.orders.iter().all(|o| !o.carry && o.credit == Some(0)));
    }

    #[test]
    fn operators_keep_clear_of_credit_and_a_pause() {
        let shards = [shard(&[1, 2, 3], 0, 2)];
        let p = plan(
            &config(4),
            true,
            &shards,
            Batch::Operator { count: 10 },
            Freshness::Current,
            0,
        );
        assert_eq!(p.admitted, 2);
        assert_eq!(p.orders[0].credit, None);
        let p = plan(
            &config(4),
            true,
            &shards,
            Batch::Scheduler { grant: 10 },
            Freshness::Current,
            0,
        );
        assert_eq!((p.admitted, p.credit), (0, 0));
    }

    #[test]
    fn the_waits_measured_are_those_of_the_heads_a_batch_takes() {
        // Stamps in microseconds; the batch at 60 s takes stamps 1 s, 4 s (shard 0) and 2 s,
        // 3 s (shard 1).
        let s = 1_000_000;
        let shards = [
            shard(&[s, 4 * s, 9 * s], 2, 0),
            shard(&[2 * s, 3 * s, 10 * s], 1, 0),
        ];
        let p = plan(
            &config(7),
            false,
            &shards,
            Batch::Scheduler { grant: 10 },
            Freshness::Current,
            0,
        );
        let mut waits = admitted_waits(&shards, &p, 60_000);
        waits.sort_unstable();
        assert_eq!(waits, vec![56_000, 57_000, 58_000, 59_000]);
        assert_eq!(waits.len() as u64, p.admitted);
        // A draw takes anyone waiting: not measured.
        let mut drawn = p.clone();
        drawn.orders[0].draw = Some(7);
        assert_eq!(admitted_waits(&shards, &drawn, 60_000).len(), 2);
    }

    #[test]
    fn a_cut_list_is_a_barrier_for_every_shard() {
        // Shard 0 lists only its first two waiting (stamps 1 and 5); its third may be older than
        // shard 1's stamp 7, so the batch stops before 7.
        let mut cut = shard(&[1, 5], 0, 0);
        cut.waiting = 3;
        cut.listed_below = ShardReading::bound(&cut.heads, cut.waiting);
        let shards = [cut, shard(&[2, 7, 8], 0, 0)];
        let p = plan(
            &config(100),
            false,
            &shards,
            Batch::Scheduler { grant: 5 },
            Freshness::Current,
            0,
        );
        assert_eq!(p.admitted, 3);
        assert_eq!(p.credit, 0, "people still wait");
    }

    proptest! {
        #[test]
        fn never_over_capacity_and_always_oldest_first(
            max_active in 0u64..50,
            grant in 0u64..60,
            operator in any::<bool>(),
            previous in any::<bool>(),
            shards in proptest::collection::vec(
                (proptest::collection::vec(1u64..1000, 0..20), 0u64..10, 0u64..10, 0u64..5),
                1..5,
            ),
        ) {
            let readings: Vec<ShardReading> = shards
                .iter()
                .map(|(stamps, active, unclaimed, credit)| {
                    let mut stamps = stamps.clone();
                    stamps.sort_unstable();
                    stamps.dedup();
                    let mut r = shard(&stamps, *active, *credit);
                    r.unclaimed = *unclaimed;
                    r
                })
                .collect();
            let batch = if operator { Batch::Operator { count: grant } } else { Batch::Scheduler { grant } };
            let freshness = if previous { Freshness::Previous } else { Freshness::Current };
            let p = plan(&config(max_active), false, &readings, batch, freshness, 0);
            let load = load_of(&readings);
            let credit_now: u64 = readings.iter().map(|r| r.credit).sum();
            // Capacity: what was in use (with the old credit where it is kept or may have been
            // spent) plus what the batch admits and opens never passes max_active.
            let reserved = if operator || previous { credit_now } else { 0 };
            let base = load.active + load.admitted + reserved;
            prop_assert!(base + p.admitted + p.credit <= max_active.max(base));
            if base >= max_active {
                prop_assert_eq!(p.admitted + p.credit, 0);
            }
            prop_assert!(p.admitted <= grant);
            // Oldest first: every admitted stamp is older than every stamp left waiting.
            let mut admitted = Vec::new();
            let mut waiting = Vec::new();
            for (r, o) in readings.iter().zip(&p.orders) {
                for (i, &(_, stamp)) in r.heads.iter().enumerate() {
                    if (i as u64) < o.take { admitted.push(stamp) } else { waiting.push(stamp) }
                }
            }
            if let (Some(a), Some(w)) = (admitted.iter().max(), waiting.iter().min()) {
                prop_assert!(a <= w, "admitted {} after waiting {}", a, w);
            }
            if p.credit > 0 {
                prop_assert!(waiting.is_empty(), "credit opened while people wait");
            }
        }
    }
}
