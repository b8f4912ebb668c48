//! Random operations on a shard, for the property tests of the shard and its snapshot.

use proptest::prelude::*;

use super::{Op, Outcome, Shard, Timing};

pub const T: Timing = Timing {
    session_ttl_ms: 3_000,
    claim_window_ms: 1_000,
};

/// An operation with its seqs as fractions of the queue, made concrete against the shard it is
/// about to change (so that it mostly names seqs that exist).
#[derive(Debug, Clone)]
pub enum Step {
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

pub fn step() -> impl Strategy<Value = (Step, u16)> {
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

pub fn steps(max: usize) -> impl Strategy<Value = Vec<(Step, u16)>> {
    prop::collection::vec(step(), 0..max)
}

/// The op a step makes against `shard` at `now`: seqs from 0 to one past the tail.
pub fn op(shard: &Shard, step: &Step, now: u64) -> Op {
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
pub fn run(shard: &mut Shard, steps: &[(Step, u16)], mut now: u64) -> (Vec<Outcome>, u64) {
    let mut outcomes = Vec::new();
    for (step, dt) in steps {
        now += u64::from(*dt);
        outcomes.push(shard.apply(&op(shard, step, now)));
    }
    (outcomes, now)
}
