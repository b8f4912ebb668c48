//! The admission lease across a Redis Cluster failover: real masters with a replica each, two
//! origin processes scheduling, and the master that holds the lease killed after it
//! acknowledged writes its replica never received. Replication is asynchronous, so the promoted
//! replica can hand out a fence again that a scheduler already admitted under; no fence may
//! ever be held by two schedulers, and the room never holds more than `max_active`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use support::process::OriginProcess;
use support::redis::{command, RedisCluster};
use support::Target;
use tokio::sync::Mutex;

const ROOM: &str = "failover";
const MAX_ACTIVE: u64 = 4;
const LEASE_HOLDER: &str = "{qg:lease}:holder";

/// The origin (by port) that holds the lease, as the Redis node on `port` says.
fn holder_port(port: u16) -> Option<u16> {
    let reply = command(port, &format!("GET {LEASE_HOLDER}"))?;
    // "$<len>\r\n127.0.0.1:PORT-xxxx\r\n"
    let holder = reply.lines().nth(1)?;
    holder.split(['-', ':']).nth(1)?.parse().ok()
}

/// Waits up to `within` for the origin on `origin_port` to hold the lease on the node `port`.
async fn wait_for_holder(port: u16, origin_port: u16, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while holder_port(port) != Some(origin_port) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "origin {origin_port} did not take the lease on {port}: {:?}",
            holder_port(port)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the metric `name` (with its labels) the origin reports.
async fn metric(t: &Target, name: &str) -> Option<u64> {
    let req = t
        .client
        .get(t.api("/metrics"))
        .timeout(Duration::from_millis(300));
    let reply = t.try_send(req).await.ok()?;
    reply.text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The fence of the lease the origin holds, from its metrics (0: it holds none).
async fn fence_of(t: &Target) -> Option<u64> {
    metric(t, "queuegate_scheduler_lease_fence").await
}

/// What the room holds (active, admitted and not arrived, entry credit), as the origin says.
async fn held_by_room(t: &Target) -> Option<u64> {
    let req = t
        .admin(Method::GET, &format!("/rooms/{ROOM}"))
        .timeout(Duration::from_millis(300));
    let reply = t.try_send(req).await.ok().filter(|r| r.status == 200)?;
    let stats = &reply.json["stats"];
    Some(stats["active"].as_u64()? + stats["admitted"].as_u64()? + stats["entry_credit"].as_u64()?)
}

/// What the watcher saw: the fences each origin reported holding, and the most the room held.
#[derive(Default)]
struct Seen {
    fences: BTreeMap<u64, BTreeSet<usize>>,
    most_held: u64,
}

/// Polls both origins until told to stop: the fence each holds and what the room holds.
async fn watch(targets: Arc<Vec<Target>>, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        for (i, t) in targets.iter().enumerate() {
            if let Some(fence) = fence_of(t).await.filter(|&f| f > 0) {
                seen.lock().await.fences.entry(fence).or_default().insert(i);
            }
            if let Some(held) = held_by_room(t).await {
                let mut seen = seen.lock().await;
                seen.most_held = seen.most_held.max(held);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls every ticket through `t`; returns the indexes of the admitted and their passes.
async fn admitted(t: &Target, tickets: &[String]) -> BTreeMap<usize, String> {
    let mut out = BTreeMap::new();
    for (i, ticket) in tickets.iter().enumerate() {
        let req = t
            .client
            .get(t.api(&format!("/rooms/{ROOM}/status")))
            .bearer_auth(ticket)
            .timeout(Duration::from_secs(2));
        if let Ok(reply) = t.try_send(req).await {
            if reply.json["status"] == "admitted" {
                out.insert(i, reply.json["pass"].as_str().unwrap_or("").to_owned());
            }
        }
    }
    out
}

/// Leaves with `pass`, retrying while the store is briefly away (the cluster client stalls
/// while it reads the slot map again and a stopped node keeps it waiting).
async fn leave(t: &Target, pass: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let req = t
            .client
            .post(t.api(&format!("/rooms/{ROOM}/leave")))
            .bearer_auth(pass)
            .timeout(Duration::from_secs(2));
        let reply = t.try_send(req).await;
        match &reply {
            Ok(r) if r.json["status"] == "left" => return,
            Ok(r) if r.status == 503 => {}
            Err(_) => {}
            Ok(r) => panic!("a leave: {} {}", r.status, r.text),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a leave never went through: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `t` reports at least `want` admissions in all.
async fn wait_admitted_total(t: &Target, want: u64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let req = t
            .admin(Method::GET, &format!("/rooms/{ROOM}"))
            .timeout(Duration::from_secs(1));
        if let Ok(reply) = t.try_send(req).await {
            if reply.json["stats"]["admitted_total"].as_u64() >= Some(want) {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than {want} admitted in all"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The master that holds the lease acknowledges a new leader's fence, and dies before its
/// replica has it (the replica is stopped and its link cut, so nothing in flight reaches it);
/// the replica is promoted. The other scheduler then takes the lease on the promoted replica:
/// it must not get a fence a scheduler already held. Afterwards the origins follow the
/// failover and admit again as slots free.
///
/// With `WAIT` (the origins read the replica count from the cluster: 1), the new leader's
/// lease write is never acknowledged by the replica, so it never holds that fence (its ticks
/// fail, counted as `redis_wait_short`); the promoted replica may then hand the same number to
/// the first, which is the only one to act on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_never_hands_one_fence_to_two_schedulers() {
    let mut cluster = RedisCluster::start_with_replicas();
    let urls = cluster.urls().join(",");
    let args = ["--redis-cluster", urls.as_str(), "--tick-ms", "100"];
    let origins: Vec<OriginProcess> = (0..2).map(|_| OriginProcess::start(&args)).collect();
    let targets: Arc<Vec<Target>> = Arc::new(origins.iter().map(OriginProcess::target).collect());
    let t0 = &targets[0];
    t0.put_room(
        ROOM,
        json!({"max_active": MAX_ACTIVE, "admit_per_minute": 600000, "shards": 3,
               "claim_window_s": 600, "session_ttl_s": 3600}),
    )
    .await;
    t0.pause(ROOM).await;
    let mut tickets = Vec::new();
    for i in 0..30 {
        let reply = targets[i % 2].join(ROOM, None).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        tickets.push(reply.json["ticket"].as_str().unwrap().to_owned());
    }
    t0.resume(ROOM).await;
    wait_admitted_total(t0, MAX_ACTIVE, Duration::from_secs(15)).await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch(targets.clone(), seen.clone(), stop.clone()));

    let master = cluster.master_of(LEASE_HOLDER, 0);
    let replica = cluster
        .replica_of(master)
        .expect("the lease's master has a replica");
    let master_port = cluster.nodes[master].port;
    let replica_port = cluster.nodes[replica].port;
    let first = holder_port(master_port).expect("a lease holder");
    let first = origins.iter().position(|o| o.port == first).unwrap();
    let second = 1 - first;

    // The replica stops and its link is cut: what the master acknowledges from now on exists
    // on the master alone (a stopped replica's kernel would still take in what was sent).
    cluster.nodes[replica].signal("STOP");
    command(master_port, "CLIENT KILL TYPE replica");
    assert!(
        cluster.nodes[master]
            .info("replication")
            .contains("connected_slaves:0"),
        "the replica's link is cut"
    );
    // The leader pauses; the other takes the lease on the master, which never replicates it.
    origins[first].signal("STOP");
    wait_for_holder(master_port, origins[second].port, Duration::from_secs(5)).await;
    // Two of the admitted leave: the new leader has slots to fill under its fence.
    let passes = admitted(&targets[second], &tickets).await;
    for pass in passes.values().take(2) {
        leave(&targets[second], pass).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;

    // The new leader pauses too; the master dies; its replica takes over with what it has.
    origins[second].signal("STOP");
    cluster.nodes[master].kill();
    cluster.nodes[replica].signal("CONT");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !cluster.is_master(replica) {
        command(replica_port, "CLUSTER FAILOVER TAKEOVER");
        assert!(
            std::time::Instant::now() < deadline,
            "the replica was not promoted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let live: Vec<usize> = (0..cluster.nodes.len()).filter(|&i| i != master).collect();
    cluster.wait_ok(&live, Duration::from_secs(20));

    // The first leader wakes up and takes the lease on the promoted replica.
    origins[first].signal("CONT");
    wait_for_holder(replica_port, origins[first].port, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    origins[second].signal("CONT");
    tokio::time::sleep(Duration::from_millis(800)).await;

    // The origins follow the failover: visitors leave, and the freed slots are filled.
    let before = {
        let view = targets[first].room(ROOM).await;
        view["stats"]["admitted_total"].as_u64().unwrap()
    };
    let passes = admitted(&targets[first], &tickets).await;
    assert!(passes.len() >= 2, "admitted after the failover: {passes:?}");
    for pass in passes.values().take(2) {
        leave(&targets[first], pass).await;
    }
    wait_admitted_total(&targets[first], before + 2, Duration::from_secs(15)).await;
    // The first write on a connection to the dead master fails (visitors' writes are never
    // sent twice: see connect_cluster), with a 503 its visitor asks again after.
    let mut join = targets[second].join(ROOM, None).await;
    for _ in 0..3 {
        if join.status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        join = targets[second].join(ROOM, None).await;
    }
    assert_eq!(join.status, 200, "a join after the failover: {}", join.text);

    stop.store(true, Ordering::SeqCst);
    watcher.await.unwrap();
    let seen = seen.lock().await;
    let shared: Vec<_> = seen
        .fences
        .iter()
        .filter(|(_, holders)| holders.len() > 1)
        .collect();
    assert!(
        shared.is_empty(),
        "one fence held by both schedulers (fences seen: {:?}; the room held {} at most)",
        seen.fences,
        seen.most_held
    );
    assert!(
        seen.most_held <= MAX_ACTIVE,
        "the room held {} (max_active {MAX_ACTIVE})",
        seen.most_held
    );
    // What kept the second from acting on its lease: the replica never acknowledged it.
    let short = r#"queuegate_store_calls_total{kind="redis_wait_short"}"#;
    let shortfalls = metric(&targets[second], short).await;
    assert!(
        shortfalls.is_some_and(|n| n > 0),
        "the second scheduler's writes came up short: {shortfalls:?}"
    );
    let view = targets[first].room(ROOM).await;
    let stats = &view["stats"];
    let held = stats["active"].as_u64().unwrap()
        + stats["admitted"].as_u64().unwrap()
        + stats["entry_credit"].as_u64().unwrap();
    assert!(held <= MAX_ACTIVE, "over capacity at the end: {view}");
}
