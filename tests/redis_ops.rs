//! The on-prem variant under failure: fencing of an old scheduler, failover between origin
//! instances, nothing acknowledged lost when Redis or an origin is killed, and the policy while
//! Redis is down. Real redis-server and real origin processes, killed with SIGKILL.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use queuegate::{RoomConfig, RoomId, Ticket};
use queuegate_origin::store::redis::connect_single;
use queuegate_origin::store::{Decision, Scheduling, Store, StoreError};
use reqwest::Method;
use serde_json::{json, Value};
use support::process::OriginProcess;
use support::redis::{command, RedisServer};
use support::{Reply, Target, Upstream};
use tokio::sync::Mutex;

fn now_ms() -> u64 {
    queuegate_origin::clock::system_now()
}

fn ticket_of(reply: &Reply) -> String {
    reply.json["ticket"]
        .as_str()
        .unwrap_or_else(|| panic!("a ticket in {}", reply.text))
        .to_owned()
}

fn status_of(reply: &Reply) -> String {
    reply.json["status"].as_str().unwrap_or("").to_owned()
}

/// An old scheduler that lost its lease (paused, partitioned) cannot admit anywhere once a
/// newer one has begun: every shard checks the fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_scheduler_cannot_admit() {
    let redis = RedisServer::start();
    let timeout = Duration::from_secs(2);
    let old = connect_single(&redis.url(), timeout, None).unwrap();
    let new = connect_single(&redis.url(), timeout, None).unwrap();
    let room = RoomId::parse("fenced").unwrap();
    let config = RoomConfig {
        max_active: 100,
        shards: 3,
        ..RoomConfig::default()
    };
    // No scheduler runs here, so no entry credit: everyone waits.
    let (record, _) = old.put_room(&room, config, 7, now_ms()).await.unwrap();
    for _ in 0..10 {
        old.join(&record, None, now_ms()).await.unwrap();
    }
    let old_fence = old
        .acquire_lease("old", 300, now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(new.acquire_lease("new", 300, now_ms()).await.unwrap(), None);
    // The old holder stops renewing (a long pause); its lease runs out in Redis.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let new_fence = new
        .acquire_lease("new", 300, now_ms())
        .await
        .unwrap()
        .unwrap();
    assert!(new_fence > old_fence);
    let grant = |n| {
        move |_| Decision {
            grant: n,
            rate: None,
        }
    };
    let round = new
        .schedule(&record, new_fence, now_ms(), &mut grant(3))
        .await
        .unwrap();
    assert_eq!(round.admitted, 3);
    // The old scheduler wakes up and carries on with its tick: refused everywhere.
    assert_eq!(
        old.schedule(&record, old_fence, now_ms(), &mut grant(5))
            .await,
        Err(StoreError::Fenced)
    );
    assert!(old.admit_now(&record, 5, now_ms()).await.is_err());
    let stats = new.stats(&record, now_ms(), true).await.unwrap();
    assert_eq!(stats.admitted_total, 3);
    assert_eq!(stats.waiting, 7);
}

/// The instance that holds the lease, from Redis.
fn leader_port(redis: &RedisServer) -> Option<u16> {
    let reply = command(redis.port, "GET {qg:lease}:holder")?;
    // "$<len>\r\n127.0.0.1:PORT-xxxx\r\n"
    let holder = reply.lines().nth(1)?;
    holder.split(['-', ':']).nth(1)?.parse().ok()
}

/// Three instances share a room; the leader dies; a follower takes over within the lease and
/// goes on admitting as slots free, never over capacity and never admitting anyone twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_takes_over_when_the_leader_dies() {
    let redis = RedisServer::start();
    let url = redis.url();
    let args = ["--redis", url.as_str(), "--tick-ms", "100"];
    let mut instances: Vec<OriginProcess> = (0..3).map(|_| OriginProcess::start(&args)).collect();
    let targets: Vec<Target> = instances.iter().map(OriginProcess::target).collect();
    let room = "failover";
    targets[0]
        .put_room(
            room,
            json!({"max_active": 4, "admit_per_minute": 600000, "shards": 3, "claim_window_s": 60}),
        )
        .await;
    targets[0].pause(room).await;
    // Thirty visitors, one after the other, through all three instances.
    let mut tickets = Vec::new();
    for i in 0..30 {
        let reply = targets[i % 3].join(room, None).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        tickets.push(ticket_of(&reply));
    }
    targets[1].resume(room).await;

    let mut admitted: Vec<usize> = Vec::new();
    let mut passes: BTreeMap<usize, String> = BTreeMap::new();
    // Polls everyone through the live instances until `want` have been admitted.
    async fn poll_until(
        want: usize,
        targets: &[&Target],
        room: &str,
        tickets: &[String],
        admitted: &mut Vec<usize>,
        passes: &mut BTreeMap<usize, String>,
    ) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while admitted.len() < want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {admitted:?} admitted"
            );
            for (i, ticket) in tickets.iter().enumerate() {
                let t = targets[i % targets.len()];
                let reply = t.status(room, ticket).await;
                if status_of(&reply) == "admitted" && !admitted.contains(&i) {
                    admitted.push(i);
                    passes.insert(i, reply.json["pass"].as_str().unwrap().to_owned());
                }
            }
            let view = targets[0].room(room).await;
            let stats = &view["stats"];
            let held = stats["active"].as_u64().unwrap()
                + stats["admitted"].as_u64().unwrap()
                + stats["entry_credit"].as_u64().unwrap();
            assert!(held <= 4, "over capacity: {view}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let all: Vec<&Target> = targets.iter().collect();
    poll_until(4, &all, room, &tickets, &mut admitted, &mut passes).await;
    assert_eq!(admitted.len(), 4);

    let leader = leader_port(&redis).expect("a lease holder");
    let dead = instances
        .iter()
        .position(|p| p.port == leader)
        .expect("the leader is one of ours");
    instances[dead].kill();
    let live: Vec<&Target> = targets
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != dead)
        .map(|(_, t)| t)
        .collect();
    // Two visitors leave: their slots go to the next two in line, admitted by the new leader.
    for i in &admitted[..2] {
        let reply = live[0].leave(room, &passes[i]).await;
        assert_eq!(status_of(&reply), "left", "{}", reply.text);
    }
    poll_until(6, &live, room, &tickets, &mut admitted, &mut passes).await;
    let new_leader = leader_port(&redis).expect("a new lease holder");
    assert_ne!(new_leader, leader);
    // First come, first served: the six admitted are the first six to join.
    let mut sorted = admitted.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..6).collect::<Vec<_>>());
    let view = live[0].room(room).await;
    assert_eq!(view["stats"]["admitted_total"], 6, "{view}");

    // The new leader freezes (SIGSTOP): another takes over; when the frozen one wakes up, its
    // stale tick is fenced off and admits nobody.
    let frozen = instances.iter().position(|p| p.port == new_leader).unwrap();
    instances[frozen].signal("STOP");
    let survivor = live
        .iter()
        .find(|t| !t.base.ends_with(&format!(":{new_leader}")))
        .copied()
        .unwrap();
    let leaver = admitted[2];
    assert_eq!(
        status_of(&survivor.leave(room, &passes[&leaver]).await),
        "left"
    );
    poll_until(7, &[survivor], room, &tickets, &mut admitted, &mut passes).await;
    instances[frozen].signal("CONT");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let view = survivor.room(room).await;
    assert_eq!(view["stats"]["admitted_total"], 7, "{view}");
    let unique: HashSet<usize> = admitted.iter().copied().collect();
    assert_eq!(unique.len(), admitted.len(), "someone was admitted twice");
}

/// What a load generator saw acknowledged (and what it tried without an answer).
#[derive(Default)]
struct Acknowledged {
    joined: Vec<String>,
    left: HashSet<String>,
    tried_to_leave: HashSet<String>,
    arrived: HashSet<String>,
    errors: u64,
}

/// A request to a target that may be down: `None` unless it answered 200.
async fn ok(target: &Target, req: reqwest::RequestBuilder) -> Option<Reply> {
    target.try_send(req).await.ok().filter(|r| r.status == 200)
}

/// Joins, leaves, admissions and arrivals through one origin until told to stop. Only what the
/// origin answered with 200 counts as acknowledged.
async fn generate_load(
    target: Arc<Target>,
    room: &'static str,
    seen: Arc<Mutex<Acknowledged>>,
    stop: Arc<AtomicBool>,
) {
    let t = &target;
    let mut i = 0usize;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let join = t.client.post(t.api(&format!("/rooms/{room}/join")));
        let Some(reply) = ok(t, join).await else {
            seen.lock().await.errors += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let pick = {
            let mut seen = seen.lock().await;
            seen.joined.push(ticket_of(&reply));
            let n = seen.joined.len();
            let pick = seen.joined[(i * 7919) % n].clone();
            (!seen.arrived.contains(&pick)).then_some(pick)
        };
        if i % 5 == 0 {
            if let Some(pick) = pick {
                seen.lock().await.tried_to_leave.insert(pick.clone());
                let leave = t
                    .client
                    .post(t.api(&format!("/rooms/{room}/leave")))
                    .bearer_auth(&pick);
                if ok(t, leave).await.is_some() {
                    seen.lock().await.left.insert(pick);
                }
            }
        } else if i % 7 == 0 {
            let admit = t
                .admin(Method::POST, &format!("/rooms/{room}/admit"))
                .json(&json!({"count": 2}));
            if ok(t, admit).await.is_none() {
                continue;
            }
            // The admitted are at the front of the line: they arrive now.
            let joined = seen.lock().await.joined.clone();
            for ticket in joined {
                {
                    let seen = seen.lock().await;
                    if seen.tried_to_leave.contains(&ticket) || seen.arrived.contains(&ticket) {
                        continue;
                    }
                }
                let poll = t
                    .client
                    .get(t.api(&format!("/rooms/{room}/status")))
                    .bearer_auth(&ticket);
                match ok(t, poll).await.map(|r| status_of(&r)).as_deref() {
                    Some("admitted") => {
                        seen.lock().await.arrived.insert(ticket);
                    }
                    Some("expired") | Some("left") => {}
                    _ => break,
                }
            }
        }
    }
}

/// With AOF on, killing Redis or the origin mid-load loses no acknowledged join, admission or
/// leave, and first come, first served holds afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_when_redis_or_an_origin_is_killed() {
    let mut redis = RedisServer::start_durable();
    let url = redis.url();
    let mut origin = OriginProcess::start(&["--redis", &url, "--tick-ms", "100"]);
    let target = Arc::new(origin.target());
    let room = "durable";
    target
        .put_room(
            room,
            json!({"max_active": 100000, "shards": 4, "claim_window_s": 600, "session_ttl_s": 3600}),
        )
        .await;
    target.pause(room).await;
    let seen = Arc::new(Mutex::new(Acknowledged::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(generate_load(
                target.clone(),
                room,
                seen.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    origin.restart();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.expect("a load worker");
    }
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner();
    assert!(
        seen.joined.len() > 50,
        "too little load: {}",
        seen.joined.len()
    );
    assert!(seen.errors > 0, "the kills were felt");

    // Every acknowledged join, leave and arrival is still there.
    let keys = &target.keys;
    let room_id = RoomId::parse(room).unwrap();
    let mut waiting: Vec<(u64, String)> = Vec::new();
    for ticket in &seen.joined {
        let reply = target.status(room, ticket).await;
        let status = status_of(&reply);
        if seen.left.contains(ticket) {
            assert_eq!(status, "left", "an acknowledged leave: {}", reply.text);
        } else if seen.arrived.contains(ticket) {
            assert_eq!(
                status, "admitted",
                "an acknowledged arrival: {}",
                reply.text
            );
        } else {
            // Joined for sure; maybe admitted since, maybe left by a leave that got no answer.
            let allowed: &[&str] = if seen.tried_to_leave.contains(ticket) {
                &["waiting", "admitted", "left"]
            } else {
                &["waiting", "admitted"]
            };
            assert!(
                allowed.contains(&status.as_str()),
                "an acknowledged join: {}",
                reply.text
            );
        }
        if status == "waiting" {
            let decoded = Ticket::decode(ticket, keys, &room_id, now_ms()).unwrap();
            waiting.push((decoded.joined_us, ticket.clone()));
        }
    }
    // First come, first served afterwards: after each batch, everyone admitted joined before
    // everyone still waiting. (Joins whose answer was lost to a kill may wait among them too,
    // so the check is on order, not on who exactly.)
    waiting.sort();
    while !waiting.is_empty() {
        let batch = (waiting.len() as u64 / 6).max(1);
        assert!(target.admit(room, batch).await > 0, "admissions stalled");
        let mut still = Vec::new();
        let mut newest_admitted = 0;
        for (stamp, ticket) in waiting {
            match status_of(&target.status(room, &ticket).await).as_str() {
                "waiting" => still.push((stamp, ticket)),
                "admitted" => newest_admitted = newest_admitted.max(stamp),
                other => panic!("{ticket}: {other}"),
            }
        }
        if let Some((oldest_waiting, _)) = still.first() {
            assert!(
                newest_admitted < *oldest_waiting,
                "admitted a visitor stamped {newest_admitted} before one stamped {oldest_waiting}"
            );
        }
        waiting = still;
    }
}

/// While Redis is away, the gate fails closed (a waiting page, 503) or open (through) as
/// configured, nothing hangs, /healthz says so, and everything recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_or_open_and_recovers() {
    let upstream = Upstream::start().await;
    let mut redis = RedisServer::start_durable();
    let url = redis.url();
    let common = [
        "--redis",
        url.as_str(),
        "--tick-ms",
        "100",
        "--store-timeout-ms",
        "300",
    ];
    let up = upstream.url();
    let closed = OriginProcess::start(&[&common[..], &["--upstream", &up]].concat());
    let open = OriginProcess::start(
        &[
            &common[..],
            &["--upstream", &up, "--on-store-unavailable", "open"],
        ]
        .concat(),
    );
    let (tc, to) = (closed.target(), open.target());
    tc.put_room("down", json!({"max_active": 1, "paths": ["/app"]}))
        .await;
    tc.pause("down").await;
    let waiting = ticket_of(&tc.join("down", None).await);
    // Both instances know the room before Redis goes (the second at once): its JSON page
    // request is gated and takes a place.
    let known = to.page("/app/x", &[], true).await;
    assert_eq!(known.json["status"], "waiting", "{}", known.text);
    // With appendfsync everysec Redis holds writes back (up to 2 s) while the disk finishes the
    // previous fsync, and a SIGKILL loses what it held (the durability table says so): the
    // outage starts once the append-only file has everything acknowledged.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !support::redis::command(redis.port, "INFO persistence")
        .is_some_and(|info| info.contains("aof_buffer_length:0\r\n"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the AOF never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    redis.kill();
    let started = tokio::time::Instant::now();
    let health = tc.send(tc.client.get(tc.api("/healthz"))).await;
    assert_eq!(health.status, 503, "{}", health.text);
    assert_eq!(health.json["status"], "unavailable");
    assert_eq!(health.json["gate"], "closed");
    let join = tc.join("down", None).await;
    assert_eq!(join.status, 503, "{}", join.text);
    assert_eq!(join.error_code(), Some("store_unavailable"));
    assert!(join.header("retry-after").is_some());
    let page = tc.page("/app/x", &[], false).await;
    assert_eq!(page.status, 503);
    assert!(page.text.contains("One moment"), "{}", page.text);
    assert!(page.header("x-upstream").is_none());
    let json_page = tc.page("/app/x", &[], true).await;
    assert_eq!(json_page.error_code(), Some("store_unavailable"));
    // A waiting visitor's poll is not answered from a mirror that may be behind what another
    // instance told someone: the page asks again later, and the place stays.
    let poll = tc.status("down", &waiting).await;
    assert_eq!(
        poll.error_code(),
        Some("store_unavailable"),
        "{}",
        poll.text
    );
    assert!(poll.header("retry-after").is_some());
    // Failing open: through to the application.
    let through = to.page("/app/x", &[], false).await;
    assert_eq!(
        through.header("x-upstream"),
        Some("yes"),
        "{}",
        through.text
    );
    assert_eq!(
        to.send(to.client.get(to.api("/healthz"))).await.json["gate"],
        "open"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answers while Redis is down must not hang: {:?}",
        started.elapsed()
    );

    redis.restart();
    // Both instances: each reconnects on its own, and the open one is asked last.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for t in [&tc, &to] {
        loop {
            let health = t.send(t.client.get(t.api("/healthz"))).await;
            if health.status == 200 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no recovery: {}",
                health.text
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // After a failed read an instance waits a second before reading again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let poll = loop {
        let poll = tc.status("down", &waiting).await;
        if poll.status != 503 || tokio::time::Instant::now() > deadline {
            break poll;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status_of(&poll), "waiting", "{}", poll.text);
    assert_eq!(poll.json["position"], 1, "{}", poll.text);
    let again = tc.join("down", None).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json["position"], 3);
    let view: Value = tc.room("down").await;
    assert_eq!(view["stats"]["waiting"], 3);
    assert_eq!(to.page("/app/x", &[], true).await.json["status"], "waiting");
}
