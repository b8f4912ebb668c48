//! The scheduler's writes wait for the replicas (`--redis-replicas`, `WAIT`) on one server:
//! without a replica the scheduler's writes are sent as before; with one that acknowledges
//! they go through (the scripts loaded, a stale lease holder still fenced); when fewer
//! acknowledge than needed, the lease is not taken, so the tick admits no one, and the
//! shortfall is counted. The failover itself is in `tests/redis_failover.rs`.

mod support;

use std::time::{Duration, Instant};

use queuegate::controller::RoomLoad;
use queuegate::{RoomConfig, RoomId};
use queuegate_origin::store::redis::connect_single;
use queuegate_origin::store::{Decision, RoomRecord, Scheduling, Store, StoreError};
use support::redis::{command, RedisServer};

fn now_ms() -> u64 {
    queuegate_origin::clock::system_now()
}

/// A count from the store's calls (`queuegate_store_calls_total{kind}`), 0 when absent.
fn calls(store: &impl Store, kind: &str) -> u64 {
    store
        .calls()
        .into_iter()
        .find(|&(k, _)| k == kind)
        .map_or(0, |(_, n)| n)
}

/// A master and a replica of it, linked.
fn master_and_replica() -> (RedisServer, RedisServer) {
    let master = RedisServer::start();
    let port = master.port.to_string();
    let replica = RedisServer::start_with(&[
        "--save",
        "",
        "--appendonly",
        "no",
        "--replicaof",
        "127.0.0.1",
        &port,
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !master.info("replication").contains("connected_slaves:1")
        || !replica
            .info("replication")
            .contains("master_link_status:up")
    {
        assert!(Instant::now() < deadline, "the replica did not link");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Linked is not yet streaming: until the replica has loaded the master's first sync, a
    // write waits for it longer than a visitor's write may (100 ms), and the setup's joins
    // would fail on a busy machine. A write it acknowledges says it is streaming.
    while command(master.port, "SET qg:test:warm 1").is_none()
        || command(master.port, "WAIT 1 1000").as_deref() != Some(":1\r\n")
    {
        assert!(
            Instant::now() < deadline,
            "the replica acknowledged no write"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (master, replica)
}

/// A room of three shards with ten visitors waiting; returns its record.
async fn room_with_visitors(store: &impl Store, name: &str) -> RoomRecord {
    let config = RoomConfig {
        max_active: 100,
        shards: 3,
        ..RoomConfig::default()
    };
    let room = RoomId::parse(name).unwrap();
    let (record, _) = store.put_room(&room, config, 7, now_ms()).await.unwrap();
    for _ in 0..10 {
        store.join(&record, None, now_ms()).await.unwrap();
    }
    record
}

fn grant(n: u64) -> impl FnMut(RoomLoad) -> Decision {
    move |_| Decision {
        grant: n,
        rate: None,
    }
}

/// No replica, nothing configured: no `WAIT` is sent, the scheduler admits as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_replicas_nothing_waits() {
    let redis = RedisServer::start();
    let store = connect_single(&redis.url(), Duration::from_secs(2), None).unwrap();
    let record = room_with_visitors(&store, "alone").await;
    let fence = store
        .acquire_lease("a", 1000, now_ms())
        .await
        .unwrap()
        .unwrap();
    let round = store
        .schedule(&record, fence, now_ms(), &mut grant(3))
        .await
        .unwrap();
    assert_eq!(round.admitted, 3);
    assert_eq!(calls(&store, "redis_wait"), 0);
    assert_eq!(calls(&store, "redis_wait_short"), 0);
}

/// A replica that acknowledges: counted from the server (or configured), every scheduler write
/// waits for it, and a stale lease holder is still refused by its fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_replica_the_scheduler_waits_for_it() {
    let (master, replica) = master_and_replica();
    let timeout = Duration::from_secs(2);
    for configured in [None, Some(1)] {
        let old = connect_single(&master.url(), timeout, configured).unwrap();
        let new = connect_single(&master.url(), timeout, configured).unwrap();
        let name = if configured.is_some() {
            "configured"
        } else {
            "read"
        };
        let record = room_with_visitors(&old, name).await;
        let old_fence = old
            .acquire_lease("old", 300, now_ms())
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let new_fence = new
            .acquire_lease("new", 300, now_ms())
            .await
            .unwrap()
            .unwrap();
        assert!(new_fence > old_fence);
        let round = new
            .schedule(&record, new_fence, now_ms(), &mut grant(3))
            .await
            .unwrap();
        assert_eq!(round.admitted, 3);
        assert_eq!(
            old.schedule(&record, old_fence, now_ms(), &mut grant(5))
                .await,
            Err(StoreError::Fenced)
        );
        assert!(calls(&new, "redis_wait") >= 2, "{:?}", new.calls());
        assert_eq!(calls(&new, "redis_wait_short"), 0);
        // Released for the next round.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // What the scheduler acted on is on the replica: the master dies, the replica takes over.
    let mut master = master;
    master.kill();
    command(replica.port, "REPLICAOF NO ONE").expect("the replica answers");
    let promoted = connect_single(&replica.url(), timeout, None).unwrap();
    let rooms = Store::rooms(&promoted, now_ms()).await.unwrap();
    assert_eq!(rooms.len(), 2);
    for record in &rooms {
        let stats = promoted.stats(record, now_ms(), true).await.unwrap();
        assert_eq!(
            (stats.admitted_total, stats.waiting),
            (3, 7),
            "{:?}",
            record.id
        );
    }
}

/// A replica is required but none acknowledges (it is stopped): the lease is not taken, so
/// the tick fails before any batch and no one is admitted; the shortfall is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_the_replicas_miss_fails_the_tick() {
    let (master, replica) = master_and_replica();
    let store = connect_single(&master.url(), Duration::from_millis(1000), Some(1)).unwrap();
    let record = room_with_visitors(&store, "short").await;
    replica.signal("STOP");
    let started = Instant::now();
    let lease = store.acquire_lease("a", 1000, now_ms()).await;
    replica.signal("CONT");
    match lease {
        Err(StoreError::Unavailable(msg)) => {
            assert!(msg.contains("0 of 1 replicas acknowledged"), "{msg}")
        }
        other => panic!("the lease without its replica: {other:?}"),
    }
    // WAIT gives up at half the call's timeout.
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(calls(&store, "redis_wait_short"), 1);
    let stats = store.stats(&record, now_ms(), true).await.unwrap();
    assert_eq!(stats.admitted_total, 0);
    assert_eq!(stats.waiting, 10);
    // The replica is back: the lease is taken and the scheduler admits.
    let deadline = Instant::now() + Duration::from_secs(10);
    let fence = loop {
        match store.acquire_lease("a", 1000, now_ms()).await {
            Ok(Some(fence)) => break fence,
            other => assert!(Instant::now() < deadline, "no lease: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let round = store
        .schedule(&record, fence, now_ms(), &mut grant(2))
        .await
        .unwrap();
    assert_eq!(round.admitted, 2);
}

/// What `WAIT` adds to a scheduler tick (not run by default; numbers in BENCHMARKS.md):
/// `cargo test --release -p queuegate --test redis_replicas -- --ignored --nocapture`.
/// One room of three shards with visitors waiting and admissions every tick, on a master with
/// one replica on this machine: ticks without `WAIT` (`--redis-replicas 0`) and with it (1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn tick_cost_of_waiting_for_a_replica() {
    use queuegate_origin::clock::Clock;
    use queuegate_origin::scheduler::Scheduler;
    use std::sync::Arc;

    let (master, _replica) = master_and_replica();
    const TICKS: usize = 300;
    for (name, replicas) in [("no WAIT", 0), ("WAIT 1", 1), ("no WAIT", 0), ("WAIT 1", 1)] {
        // One room a round: the scheduler ticks every room Redis holds.
        command(master.port, "FLUSHALL").expect("the master answers");
        let store = Arc::new(
            connect_single(&master.url(), Duration::from_secs(2), Some(replicas)).unwrap(),
        );
        let room = RoomId::parse(&format!("cost-{replicas}-{}", now_ms())).unwrap();
        let config = RoomConfig {
            max_active: 10_000_000,
            admit_per_minute: 600_000,
            shards: 3,
            ..RoomConfig::default()
        };
        store.put_room(&room, config, 7, now_ms()).await.unwrap();
        let record = store.room(&room, now_ms()).await.unwrap().unwrap();
        for _ in 0..3_000 {
            store.join(&record, None, now_ms()).await.unwrap();
        }
        // The lease of the previous round runs out.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let holder = format!("cost-{replicas}");
        let mut scheduler = Scheduler::new(
            store.clone(),
            Clock::System,
            Duration::from_millis(100),
            holder,
        );
        let mut took = Vec::with_capacity(TICKS);
        let mut admitted = 0;
        for _ in 0..TICKS {
            let started = Instant::now();
            let report = scheduler.tick(now_ms()).await.unwrap();
            took.push(started.elapsed());
            admitted += report.admitted;
            // Visitors keep arriving, as in a sale.
            for _ in 0..5 {
                store.join(&record, None, now_ms()).await.unwrap();
            }
        }
        took.sort();
        let at = |q: f64| took[((TICKS as f64 * q) as usize).min(TICKS - 1)];
        let mean = took.iter().sum::<Duration>() / TICKS as u32;
        println!(
            "{name}: {TICKS} ticks, {admitted} admitted, mean {mean:?}, p50 {:?}, p99 {:?}, \
             max {:?}; {} WAITs a tick",
            at(0.5),
            at(0.99),
            took[TICKS - 1],
            calls(&*store, "redis_wait") as f64 / TICKS as f64,
        );
    }
}
