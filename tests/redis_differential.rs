//! The Lua shard scripts against the core's shard. For random sequences of operations on one
//! shard, the scripts (called through the store's own code: `store::redis::testing`) and
//! `queuegate::shard::Shard`, the reference the embedded store and the edge run, give the same
//! answers step by step, Redis holds the same counters, and the store's mirrors (the calling
//! instance's and another's that only syncs) agree with the core's queue. One redis-server for
//! the whole property, emptied between cases.
//!
//! Also: a batch under an older fence is refused as `StoreError::Fenced`, by the scripts and
//! through the store, on one node and on a cluster.

mod support;

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use queuegate::shard::{Op, Outcome, Shard, ShardJoin, Standing};
use queuegate::shuffle::ShuffleSpec;
use queuegate::{RoomConfig, RoomId};
use queuegate_origin::store::redis::testing::{Counters, ScriptShard};
use queuegate_origin::store::redis::{connect_cluster, connect_single};
use queuegate_origin::store::{Fence, OriginStore, StoreError};
use support::redis::{RedisCluster, RedisServer};

/// Unix milliseconds when every case starts; stamps are a thousand times that.
const START: u64 = 1_700_000_000_000;
/// The fence every batch of the property runs under (the lease is not what it tests).
const FENCE: Fence = Fence(1);

/// A seq to visit, end or check, picked when the step runs: among the admitted (where most
/// of the scripts' work is) or among all handed out and one on either side of them.
#[derive(Debug, Clone, Copy)]
struct Pick {
    admitted: bool,
    n: u64,
}

impl Pick {
    fn seq(self, core: &Shard) -> u64 {
        let queue = core.queue();
        match queue.admitted_seq() {
            admitted if self.admitted && admitted > 0 => 1 + self.n % admitted,
            _ => self.n % (queue.tail() + 2),
        }
    }
}

fn pick() -> impl Strategy<Value = Pick> {
    (any::<bool>(), any::<u64>()).prop_map(|(admitted, n)| Pick { admitted, n })
}

/// One operation on the shard, in terms that stay meaningful whatever the shard holds.
#[derive(Debug, Clone)]
enum Step {
    /// Joins at the same time, each with one of four user ids (so that they repeat) or none,
    /// stamped `early` µs before now (a stamp below the last one is raised); with `enter`, the
    /// scheduler opened one slot of entry credit before. The joins after the first go to Redis
    /// as one batch.
    Join {
        joins: Vec<(Option<u8>, u64)>,
        enter: bool,
    },
    Visit {
        pick: Pick,
    },
    End {
        pick: Pick,
    },
    Session {
        pick: Pick,
        renew: bool,
    },
    /// Ends what is over; the mirrors read the shard `max_bytes` at a time.
    Expire {
        max_bytes: u64,
    },
    /// Admits through `take` seqs past `back` seqs before the admitted ones.
    Admit {
        back: u64,
        take: u64,
        operator: bool,
    },
    Pause(bool),
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (join(), any::<bool>()).prop_map(|(join, enter)| Step::Join { joins: vec![join], enter }),
        1 => (proptest::collection::vec(join(), 2..6), any::<bool>())
            .prop_map(|(joins, enter)| Step::Join { joins, enter }),
        3 => pick().prop_map(|pick| Step::Visit { pick }),
        2 => pick().prop_map(|pick| Step::End { pick }),
        2 => (pick(), any::<bool>()).prop_map(|(pick, renew)| Step::Session { pick, renew }),
        1 => prop_oneof![Just(8u64), Just(24), Just(4 << 20)]
            .prop_map(|max_bytes| Step::Expire { max_bytes }),
        3 => (0u64..3, 0u64..6, any::<bool>())
            .prop_map(|(back, take, operator)| Step::Admit { back, take, operator }),
        1 => any::<bool>().prop_map(Step::Pause),
        // Quarter seconds, so that time often lands right on the end of a session or a claim
        // window (whole seconds), or a millisecond or two, to land just past it.
        3 => prop_oneof![3 => (0u64..12).prop_map(|n| n * 250), 1 => 1u64..3].prop_map(Step::Wait),
    ]
}

fn join() -> impl Strategy<Value = (Option<u8>, u64)> {
    (proptest::option::of(0u8..4), 0u64..3_000_000)
}

/// A case: the session ttl and claim window (seconds), and the steps.
fn case() -> impl Strategy<Value = (u64, u64, Vec<Step>)> {
    (1u64..=6, 1u64..=3, proptest::collection::vec(step(), 1..60))
}

/// Runs `steps` on the core's shard and on the scripts, comparing as it goes.
async fn run_case(
    redis: &ScriptShard,
    (ttl_s, window_s, steps): &(u64, u64, Vec<Step>),
) -> Result<(), TestCaseError> {
    redis.reset(*ttl_s, *window_s).await.map_err(store)?;
    let timing = redis.timing();
    let mut core = Shard::new();
    let mut now = START;
    let mut paused = false;
    // The shard's entry credit, which the core leaves to its caller: the scheduler's batches
    // set it (none while paused), a pause drops it, an entry at once takes one.
    let mut credit = 0;
    for (i, step) in steps.iter().enumerate() {
        let at = format!("step {i}, {step:?}, at +{} ms", now - START);
        match step {
            Step::Join { joins, enter } => {
                // The scheduler opens credit (or none) as its batches do: an empty admission.
                redis
                    .admit(FENCE, 0, now, u64::from(*enter), false)
                    .await
                    .map_err(store)?;
                credit = u64::from(*enter && !paused);
                let joins: Vec<(Option<String>, u64)> = joins
                    .iter()
                    .map(|(user, early)| (user.map(|u| format!("user-{u}")), now * 1000 - early))
                    .collect();
                let calls: Vec<(Option<&str>, u64)> = joins
                    .iter()
                    .map(|(user, stamp)| (user.as_deref(), *stamp))
                    .collect();
                let replies = redis.join_many(&calls, now).await.map_err(store)?;
                for (j, ((user, stamp), got)) in joins.into_iter().zip(replies).enumerate() {
                    let enter = credit > 0 && core.queue().waiting() == 0;
                    let want = core.apply(&Op::Join {
                        user,
                        stamp,
                        enter,
                        now,
                        timing,
                    });
                    let got = ShardJoin {
                        existing: got.existing,
                        seq: got.seq,
                        stamp: got.stamp,
                        standing: got.standing,
                    };
                    prop_assert_eq!(Outcome::Join(got), want, "join {}, {}", j, at);
                    if !got.existing && got.standing != Standing::Waiting {
                        credit -= 1;
                    }
                }
            }
            Step::Visit { pick } => {
                let seq = pick.seq(&core);
                let want = core.apply(&Op::Visit { seq, now, timing });
                let got = redis.visit(seq, now).await.map_err(store)?;
                prop_assert_eq!(Outcome::Visit(got), want, "{}", at);
            }
            Step::End { pick } => {
                let seq = pick.seq(&core);
                let want = core.apply(&Op::End { seq, now });
                let got = redis.leave(seq, now).await.map_err(store)?;
                prop_assert_eq!(Outcome::End(got), want, "{}", at);
            }
            Step::Session { pick, renew } => {
                let seq = pick.seq(&core);
                let want = core.apply(&Op::Session {
                    seq,
                    renew: *renew,
                    now,
                    timing,
                });
                let got = redis.session(seq, *renew, now).await.map_err(store)?;
                prop_assert_eq!(Outcome::Session(got), want, "{}", at);
            }
            Step::Expire { max_bytes } => {
                core.apply(&Op::Expire { now, timing });
                let reply = redis.sync(now, None, *max_bytes).await.map_err(store)?;
                let reported = Counters {
                    tail: reply.stamp_bytes / 8,
                    admitted_seq: reply.admitted_seq,
                    left_waiting: reply.left_waiting,
                    unclaimed: reply.unclaimed,
                    credit: reply.credit,
                    admitted_total: reply.admitted_total,
                    active: reply.active,
                };
                prop_assert_eq!(reported, counters_of(&core, credit), "{}", at);
                check_mirrors(redis, &core, credit, &at)?;
            }
            Step::Admit {
                back,
                take,
                operator,
            } => {
                let upto = core.queue().admitted_seq().saturating_sub(*back) + take;
                // A paused shard refuses the scheduler's batches (an operator's go ahead).
                let want = if paused && !operator {
                    0
                } else {
                    match core.apply(&Op::AdmitThrough { upto, now }) {
                        Outcome::Admitted(n) => n,
                        other => unreachable!("{other:?}"),
                    }
                };
                let got = redis
                    .admit(FENCE, upto, now, 0, *operator)
                    .await
                    .map_err(store)?;
                prop_assert_eq!(got.admitted, want, "{}", at);
                prop_assert_eq!(got.admitted_seq, core.queue().admitted_seq(), "{}", at);
                if !operator {
                    credit = 0;
                }
            }
            Step::Pause(p) => {
                redis.pause(*p).await.map_err(store)?;
                paused = *p;
                if paused {
                    credit = 0;
                }
            }
            Step::Wait(ms) => now += ms,
        }
        prop_assert!(core.is_consistent(), "{}", at);
        let counters = redis.counters().await.map_err(store)?;
        prop_assert_eq!(counters, counters_of(&core, credit), "{}", at);
        // The calling instance's mirror learns every change it made at once.
        let [own, _] = redis.mirrors();
        prop_assert_eq!(own.tail(), core.queue().tail(), "{}", at);
        prop_assert_eq!(own.admitted_seq(), core.queue().admitted_seq(), "{}", at);
        prop_assert_eq!(own.waiting(), core.queue().waiting(), "{}", at);
        prop_assert_eq!(own.heads(u64::MAX), core.queue().heads(u64::MAX), "{}", at);
    }
    // Both mirrors after a last sync, whatever the steps were.
    core.apply(&Op::Expire { now, timing });
    redis.sync(now, None, 16).await.map_err(store)?;
    check_mirrors(redis, &core, credit, "the last sync")
}

/// Right after a sync, both mirrors read as the core's shard: what the scheduler plans from,
/// and every stamp.
fn check_mirrors(
    redis: &ScriptShard,
    core: &Shard,
    credit: u64,
    at: &str,
) -> Result<(), TestCaseError> {
    let want = core.reading(8, credit);
    for (which, reading) in ["own", "other"].iter().zip(redis.readings(8)) {
        prop_assert_eq!(&reading, &want, "{} mirror, {}", which, at);
    }
    for (which, mirror) in ["own", "other"].iter().zip(redis.mirrors()) {
        prop_assert_eq!(
            mirror.tail(),
            core.queue().tail(),
            "{} mirror, {}",
            which,
            at
        );
        for seq in 1..=mirror.tail() {
            prop_assert_eq!(
                mirror.stamp(seq),
                core.queue().stamp(seq),
                "{} mirror, seq {}, {}",
                which,
                seq,
                at
            );
        }
    }
    Ok(())
}

/// The counters Redis should hold for the core's shard and the credit modelled beside it.
fn counters_of(core: &Shard, credit: u64) -> Counters {
    let queue = core.queue();
    Counters {
        tail: queue.tail(),
        admitted_seq: queue.admitted_seq(),
        left_waiting: queue.left_waiting(),
        unclaimed: core.unclaimed(),
        credit,
        admitted_total: core.admitted_total(),
        active: core.active(),
    }
}

fn store(err: StoreError) -> TestCaseError {
    TestCaseError::fail(format!("the scripts failed: {err}"))
}

#[test]
fn the_lua_scripts_answer_as_the_core_shard() {
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let shard = runtime
        .block_on(ScriptShard::open(&server.url(), 1, 1))
        .unwrap();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(400);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_time: 60_000,
        ..Config::default()
    });
    let result = runner.run(&case(), |case| {
        runtime.block_on(async {
            // A case takes milliseconds; a sync that never catches up must fail, not hang.
            let limit = Duration::from_secs(10);
            match tokio::time::timeout(limit, run_case(&shard, &case)).await {
                Ok(result) => result,
                Err(_) => Err(TestCaseError::fail("the case did not finish in 10 s")),
            }
        })
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

/// A shuffle of a pre-queue and the end of places whose visitors stopped asking, in the scripts
/// and in the core's shard: the same places moved to the same seqs with the same stamps, the
/// same leaver kept, the same places ended, and both mirrors reading it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripts_shuffle_and_end_the_unseen_as_the_core_does() {
    let server = RedisServer::start();
    let redis = ScriptShard::open(&server.url(), 600, 120).await.unwrap();
    let timing = redis.timing();
    let mut core = Shard::new();
    let prequeue = START;
    let start = START + 5_000;
    // One visitor from before the pre-queue, eleven in it, one of whom leaves.
    let early = redis
        .join(None, (prequeue - 1) * 1000, prequeue - 1)
        .await
        .unwrap();
    core.join(None, (prequeue - 1) * 1000, false, prequeue - 1, timing);
    assert_eq!(early.seq, 1);
    for i in 0..11 {
        let stamp = prequeue * 1000 + i * 100_000;
        redis.join(None, stamp, prequeue + i).await.unwrap();
        core.join(None, stamp, false, prequeue + i, timing);
    }
    assert_eq!(redis.leave(4, prequeue + 20).await.unwrap(), Some(true));
    core.end(4, prequeue + 20);
    let spec = ShuffleSpec {
        seed: vec![0x5e; 32],
        prequeue_us: prequeue * 1000,
        start_us: start * 1000,
    };
    assert_eq!(redis.shuffle(&spec, start).await.unwrap(), Some(11));
    assert_eq!(core.shuffle(1, 0, &spec), 11);
    // Once: a second call finds it applied.
    assert_eq!(redis.shuffle(&spec, start).await.unwrap(), Some(0));
    redis.sync(start, None, 1 << 20).await.unwrap();
    for mirror in redis.mirrors() {
        assert_eq!(mirror.shuffled_us(), spec.start_us);
        for ticket in 1..=12 {
            let seq = core.queue().locate(ticket);
            assert_eq!(mirror.locate(ticket), seq, "ticket seq {ticket}");
            assert_eq!(mirror.stamp(seq), core.queue().stamp(seq), "seq {seq}");
            assert_eq!(mirror.is_left(seq), core.queue().is_left(seq), "seq {seq}");
        }
    }
    assert_ne!(
        (2..=12).map(|t| core.queue().locate(t)).collect::<Vec<_>>(),
        (2..=12).collect::<Vec<_>>(),
        "the seed left the pre-queue in join order"
    );
    // A visit by ticket finds the moved place, and the leaver stays left.
    assert_eq!(redis.visit(4, start).await.unwrap(), Standing::Left);
    assert_eq!(core.visit(4, start, timing), Standing::Left);

    // Ticket seqs 2, 5 and 9 keep asking (a visit through the scripts, seen from a mirror); the
    // others stop. Four seconds unseen ends a place.
    redis.set_abandon_after(4);
    let later = start + 10_000;
    for ticket in [2, 5] {
        assert_eq!(
            redis.visit(ticket, later - 1_000).await.unwrap(),
            Standing::Waiting
        );
        assert_eq!(core.visit(ticket, later - 1_000, timing), Standing::Waiting);
    }
    assert_eq!(redis.seen(&[9], later - 1_000).await.unwrap(), 1);
    core.seen(9, later - 1_000);
    redis.sync(later, Some(FENCE), 1 << 20).await.unwrap();
    core.apply(&Op::Expire { now: later, timing });
    let ended = core.abandon_unseen(later, 4_000);
    assert!(
        matches!(ended, Some(Op::Abandon { ref seqs, .. }) if seqs.len() == 8),
        "{ended:?}"
    );
    redis.sync(later, None, 1 << 20).await.unwrap();
    check_mirrors(&redis, &core, 0, "after the unseen ended").unwrap();
    assert_eq!(redis.counters().await.unwrap(), counters_of(&core, 0));
    for ticket in [2, 5, 9] {
        assert_eq!(redis.visit(ticket, later).await.unwrap(), Standing::Waiting);
    }
    assert_eq!(redis.visit(12, later).await.unwrap(), Standing::Left);
}

/// Admissions nobody came for, in the scripts and in the core's shard: each batch is looked at
/// once it is `abandon_after_s` old, the unclaimed of it end as leavers and are counted, those
/// who came keep their sessions, and a batch younger than that is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripts_end_admissions_nobody_came_for_as_the_core_does() {
    let server = RedisServer::start();
    let redis = ScriptShard::open(&server.url(), 600, 120).await.unwrap();
    redis.set_abandon_after(4);
    let timing = redis.timing();
    let mut core = Shard::new();
    for i in 0..10 {
        let stamp = START * 1000 + i;
        redis.join(None, stamp, START).await.unwrap();
        core.join(None, stamp, false, START, timing);
    }
    redis.sync(START, Some(FENCE), 1 << 20).await.unwrap();
    for (upto, at) in [(4, START + 1_000), (8, START + 3_000)] {
        redis.admit(FENCE, upto, at, 0, true).await.unwrap();
        core.admit_through(upto, at);
    }
    // Seqs 1 and 5 come for their admissions; the others of the two batches never do.
    for seq in [1, 5] {
        let now = START + 3_500;
        assert_eq!(
            redis.visit(seq, now).await.unwrap(),
            core.visit(seq, now, timing)
        );
    }
    let mut ended = Vec::new();
    for now in [START + 5_000, START + 8_000] {
        redis.sync(now, Some(FENCE), 1 << 20).await.unwrap();
        core.apply(&Op::Expire { now, timing });
        if let Some(Op::Abandon { seqs, .. }) = core.abandon_unseen(now, 4_000) {
            ended.push(seqs);
        }
        redis.sync(now, None, 1 << 20).await.unwrap();
        check_mirrors(&redis, &core, 0, "after the no-shows ended").unwrap();
        assert_eq!(redis.counters().await.unwrap(), counters_of(&core, 0));
    }
    // The first batch at the first look (with the waiting 9 and 10, unseen since they joined),
    // the second only once it was old enough.
    assert_eq!(ended, vec![vec![9, 10, 2, 3, 4], vec![6, 7, 8]]);
    assert_eq!(core.no_shows_total(), 6);
    assert_eq!(core.unclaimed(), 0);
    for seq in 1..=10 {
        let now = START + 9_000;
        assert_eq!(
            redis.visit(seq, now).await.unwrap(),
            core.visit(seq, now, timing),
            "seq {seq}"
        );
    }
    assert_eq!(core.visit(2, START + 9_000, timing), Standing::Left);
}

/// A batch under an older fence is refused by the scripts as `Fenced`, and admits nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripts_refuse_an_older_fence() {
    let server = RedisServer::start();
    let shard = ScriptShard::open(&server.url(), 60, 60).await.unwrap();
    for i in 0..3 {
        shard.join(None, START * 1000 + i, START).await.unwrap();
    }
    // The newer scheduler raises the fence as it syncs.
    shard.sync(START, Some(Fence(2)), 1 << 20).await.unwrap();
    let stale = shard.admit(Fence(1), 3, START, 0, false).await;
    assert_eq!(stale, Err(StoreError::Fenced));
    let stale = shard.sync(START, Some(Fence(1)), 1 << 20).await;
    assert_eq!(stale.map(|_| ()), Err(StoreError::Fenced));
    assert_eq!(shard.counters().await.unwrap().admitted_seq, 0);
    let current = shard.admit(Fence(2), 2, START, 0, false).await.unwrap();
    assert_eq!((current.admitted, current.admitted_seq), (2, 2));
}

/// Two instances on one Redis: the one whose lease ran out in Redis (it does not know yet)
/// admits after the other took the lease and admitted, and is answered `Fenced`.
async fn a_stale_lease_holder_is_fenced(old: &dyn OriginStore, new: &dyn OriginStore) {
    let room = RoomId::parse("fenced").unwrap();
    let config = RoomConfig {
        max_active: 100,
        shards: 3,
        ..RoomConfig::default()
    };
    // No scheduler runs here, so no entry credit: everyone waits.
    let (record, _) = old.put_room(&room, config, 7, START).await.unwrap();
    for i in 0..6 {
        old.join(&record, None, START + i).await.unwrap();
    }
    let old_fence = old.acquire_lease("old", 200, START).await.unwrap();
    let old_fence = old_fence.expect("the lease is free");
    // The old holder stops renewing: Redis ends its lease (in Redis's own time).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let new_fence = new.acquire_lease("new", 10_000, START + 400).await.unwrap();
    assert!(new_fence.expect("the lease ran out") > old_fence);
    assert_eq!(new.admit_now(&record, 2, START + 400).await, Ok(2));
    // The old holder carries on as if its lease still ran (`now` is within it, for it).
    assert_eq!(
        old.admit_now(&record, 2, START + 100).await,
        Err(StoreError::Fenced)
    );
    let stats = new.stats(&record, START + 400, true).await.unwrap();
    assert_eq!((stats.admitted_total, stats.waiting), (2, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_lease_holder_is_fenced_on_one_node() {
    let server = RedisServer::start();
    let timeout = Duration::from_secs(2);
    let old = connect_single(&server.url(), timeout, None).unwrap();
    let new = connect_single(&server.url(), timeout, None).unwrap();
    a_stale_lease_holder_is_fenced(&old, &new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_lease_holder_is_fenced_on_a_cluster() {
    let cluster = RedisCluster::start();
    let timeout = Duration::from_secs(2);
    let old = connect_cluster(&cluster.urls(), timeout, None)
        .await
        .unwrap();
    let new = connect_cluster(&cluster.urls(), timeout, None)
        .await
        .unwrap();
    a_stale_lease_holder_is_fenced(&old, &new).await;
}

/// Random mode's draws: the script swaps the places the core's draw picks (sent by the caller
/// from its mirror), admits the head, and logs the moves, from which another instance's mirror
/// learns where each ticket's place went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripts_draw_as_the_core_does() {
    let server = RedisServer::start();
    let redis = ScriptShard::open(&server.url(), 600, 120).await.unwrap();
    let timing = redis.timing();
    let mut core = Shard::new();
    for i in 0..20 {
        let stamp = START * 1000 + i;
        redis.join(None, stamp, START).await.unwrap();
        core.join(None, stamp, false, START, timing);
    }
    for seq in [3, 11] {
        assert_eq!(redis.leave(seq, START + 1).await.unwrap(), Some(true));
        core.end(seq, START + 1);
    }
    redis.sync(START + 2, Some(FENCE), 1 << 20).await.unwrap();
    for (round, (count, seed)) in [(5, 0xfeed), (4, 0xbeef), (30, 7)].into_iter().enumerate() {
        let now = START + 10 + round as u64;
        let reply = redis.draw(FENCE, count, seed, now).await.unwrap();
        assert_eq!(reply.admitted, core.draw(count, seed, now), "round {round}");
        for mirror in redis.mirrors() {
            for ticket in 1..=20 {
                assert_eq!(
                    mirror.locate(ticket),
                    core.queue().locate(ticket),
                    "round {round}: ticket seq {ticket}"
                );
            }
        }
        check_mirrors(&redis, &core, 0, "after a draw").unwrap();
        assert_eq!(redis.counters().await.unwrap(), counters_of(&core, 0));
    }
    // Who was admitted and who still waits, ticket by ticket, as the core says.
    for ticket in 1..=20 {
        let now = START + 100;
        assert_eq!(
            redis.visit(ticket, now).await.unwrap(),
            core.visit(ticket, now, timing),
            "ticket seq {ticket}"
        );
    }
    assert_ne!(
        (1..=20).map(|t| core.queue().locate(t)).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>(),
        "the draws took the head of the line"
    );
}

/// A join that reaches Redis after its deadline (it waited at a paused instance, or in a
/// connection that was reconnecting, after its caller was told it failed) changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_past_its_deadline_changes_nothing() {
    let server = RedisServer::start();
    let redis = ScriptShard::open(&server.url(), 600, 120).await.unwrap();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let late = redis
        .join_by(Some("u"), START * 1000, START, wall - 1)
        .await;
    assert!(
        matches!(late, Err(StoreError::Unavailable(ref why)) if why.contains("LATE")),
        "{late:?}"
    );
    assert_eq!(redis.counters().await.unwrap().tail, 0);
    let timely = redis
        .join_by(Some("u"), START * 1000, START, wall + 60_000)
        .await
        .unwrap();
    assert_eq!((timely.existing, timely.seq), (false, 1));
}
