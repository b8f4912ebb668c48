//! The conformance suite against the origin on Redis: one real redis-server per case. (The
//! whole suite on a Redis Cluster runs in `tests/balanced.rs`, through nginx over three
//! instances.)

mod conformance;
mod support;

use queuegate_origin::config::StoreConfig;
use support::redis::RedisServer;

macro_rules! redis_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let redis = RedisServer::start();
                let server = support::origin_on(&StoreConfig::Redis { url: redis.url(), timeout_ms: None, replicas: None }).await;
                conformance::$case(&server.target).await;
                server.stop().await;
            }
        )*
    };
}

for_each_case!(redis_cases);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_input_never_gets_a_5xx() {
    let redis = RedisServer::start();
    let server = support::origin_on(&StoreConfig::Redis {
        url: redis.url(),
        timeout_ms: None,
        replicas: None,
    })
    .await;
    conformance::random_input_never_gets_a_5xx(&server.target, 600).await;
    server.stop().await;
}

/// Room ids a stranger makes up cost the origin no memory and Redis at most a read a second
/// (with the instance's own ticks besides): 600 joins to 600 made-up rooms over about two
/// seconds cost a handful of record reads, not 600.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_rooms_cost_at_most_a_read_a_second() {
    let redis = RedisServer::start();
    let server = support::origin_on(&StoreConfig::Redis {
        url: redis.url(),
        timeout_ms: None,
        replicas: None,
    })
    .await;
    let t = &server.target;
    // Every command Redis runs from now on, as `MONITOR` shows them: the record reads are the
    // `HGETALL`s of `qg:room:<id>` (the versions, `qg:versions`, are read with one too).
    let mut monitor = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "monitor"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("redis-cli runs");
    let output = monitor.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(output)
            .lines()
            .map_while(Result::ok)
            .filter(|line| line.to_ascii_lowercase().contains("\"hgetall\" \"qg:room:"))
            .count() as u64
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    for i in 0..600 {
        let reply = t.join(&format!("made-up-{i}"), None).await;
        assert_eq!(reply.error_code(), Some("unknown_room"), "{}", reply.text);
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let seconds = started.elapsed().as_secs() + 1;
    let _ = monitor.kill();
    let _ = monitor.wait();
    let reads = lines.join().unwrap();
    // One a second for the made-up ids; the scheduler's ticks read no records while there are
    // no rooms.
    assert!(reads <= seconds + 1, "{reads} record reads in {seconds} s");
    server.stop().await;
}

/// A join limit on Redis is shared by every instance, and concurrent joins from one client
/// through two instances are decided one after the other (the compare-and-set script): with a
/// burst of 3 (and one a minute after), 3 of 12 concurrent joins get places, whichever instance
/// took them. The state is one key per room and client, expiring once it means nothing.
/// Two origin instances on one Redis.
async fn two_instances(redis: &RedisServer) -> (support::Embedded, support::Embedded) {
    let store = StoreConfig::Redis {
        url: redis.url(),
        timeout_ms: None,
        replicas: None,
    };
    (
        support::origin_on(&store).await,
        support::origin_on(&store).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_limit_is_shared_by_all_instances() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    let room = "shared-limit";
    a.target
        .put_room(
            room,
            serde_json::json!({"max_active": 5,
                "join_limit": {"per_client_per_min": 1, "burst": 3}}),
        )
        .await;
    a.target.pause(room).await;
    // b learns of the room within a second (it answers a room id it did not know as unknown
    // for that long).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let view = b
            .target
            .send(
                b.target
                    .admin(reqwest::Method::GET, &format!("/rooms/{room}")),
            )
            .await;
        if view.status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "b never saw the room");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let joins = (0..12).map(|i| {
        let t = if i % 2 == 0 { &a.target } else { &b.target };
        t.join(room, None)
    });
    let replies = futures::future::join_all(joins).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let limited = replies
        .iter()
        .filter(|r| r.status == 429 && r.error_code() == Some("too_many_joins"))
        .count();
    assert_eq!(
        (ok, limited),
        (3, 9),
        "{:?}",
        replies.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    a.target
        .wait_for_room(room, std::time::Duration::from_secs(10), |v| {
            v["stats"]["waiting"] == 3
        })
        .await;
    let pttl = support::redis::command(redis.port, &format!("PTTL qg:jl:{room}:127.0.0.1"))
        .unwrap_or_default();
    let pttl: i64 = pttl.trim().trim_start_matches(':').parse().unwrap_or(-100);
    assert!((1..=180_000).contains(&pttl), "PTTL {pttl}");

    // With a penalty, refusals through either instance count together, and the penalty ends
    // the places the client took through both.
    let room = "shared-penalty";
    a.target
        .put_room(
            room,
            serde_json::json!({"max_active": 5,
                "join_limit": {"per_client_per_min": 1, "burst": 2, "penalize_after": 4}}),
        )
        .await;
    a.target.pause(room).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while b
        .target
        .send(
            b.target
                .admin(reqwest::Method::GET, &format!("/rooms/{room}")),
        )
        .await
        .status
        != 200
    {
        assert!(std::time::Instant::now() < deadline, "b never saw the room");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let places = [
        a.target.join(room, None).await,
        b.target.join(room, None).await,
    ];
    let tickets: Vec<String> = places
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.text);
            r.json["ticket"].as_str().unwrap().to_owned()
        })
        .collect();
    let mut retry_after = Vec::new();
    for i in 0..5 {
        let t = if i % 2 == 0 { &a.target } else { &b.target };
        let reply = t.join(room, None).await;
        assert_eq!(reply.error_code(), Some("too_many_joins"), "{}", reply.text);
        retry_after.push(reply.header("retry-after").unwrap().parse::<u64>().unwrap());
    }
    assert!(retry_after[..4].iter().all(|&s| s <= 60), "{retry_after:?}");
    assert!(retry_after[4] > 500, "the default penalty: {retry_after:?}");
    for (ticket, t) in tickets.iter().zip([&b.target, &a.target]) {
        let reply = t.status(room, ticket).await;
        assert_ne!(reply.json["status"], "waiting", "{}", reply.text);
    }
    a.target
        .wait_for_room(room, std::time::Duration::from_secs(10), |v| {
            v["stats"]["waiting"] == 0
        })
        .await;
    a.stop().await;
    b.stop().await;
}

/// An event written through one instance is checked against on every other at once: an
/// instance whose copy of the room has not seen it yet refuses an overlapping event (409), and
/// keeps both events of a non-overlapping pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_written_through_two_instances_never_overlap() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    let room = "events-two";
    a.target
        .put_room(room, serde_json::json!({"paths": ["/events-two"]}))
        .await;
    let now = a.target.now();
    let event = |from: u64| {
        serde_json::json!({"prequeue_at": now + from, "start_at": now + from + 1_000,
                           "end_at": now + from + 2_000})
    };
    async fn put(
        t: &support::Target,
        room: &str,
        id: &str,
        body: serde_json::Value,
    ) -> support::Reply {
        t.send(
            t.admin(reqwest::Method::PUT, &format!("/rooms/{room}/events/{id}"))
                .json(&body),
        )
        .await
    }
    // b knows the room, without events.
    let listed = b
        .target
        .send(
            b.target
                .admin(reqwest::Method::GET, &format!("/rooms/{room}/events")),
        )
        .await;
    assert_eq!(
        listed.json["events"],
        serde_json::json!([]),
        "{}",
        listed.text
    );
    let sale = put(&a.target, room, "sale", event(3_600_000)).await;
    assert_eq!(sale.status, 201, "{}", sale.text);
    let overlapping = put(&b.target, room, "other", event(3_600_500)).await;
    assert_eq!(overlapping.status, 409, "{}", overlapping.text);
    assert_eq!(overlapping.json["error"]["code"], "conflict");
    let encore = put(&b.target, room, "encore", event(3_700_000)).await;
    assert_eq!(encore.status, 201, "{}", encore.text);
    let record = a.target.room(room).await;
    let mut ids: Vec<_> = record["events"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    ids.sort();
    assert_eq!(ids, ["encore", "sale"], "{record}");
    a.stop().await;
    b.stop().await;
}

/// A room created or changed through one instance governs every instance from the moment the
/// change is answered: no stranger reaches the application through an instance that has not
/// heard of the room yet, and its id is known everywhere at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_changes_reach_every_instance_at_once() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    for round in 0..5 {
        let room = format!("fresh-{round}");
        let path = format!("/{room}/x");
        // b has built its table of rooms without this one.
        let before = b.target.page(&path, &[], false).await;
        assert_eq!(before.header("x-upstream"), Some("yes"), "{}", before.text);
        // ... and was just asked for the id (an instance reads an unknown id at most once a
        // second).
        let unknown = b.target.join(&room, None).await;
        assert_eq!(unknown.status, 404, "{}", unknown.text);
        a.target
            .put_room(
                &room,
                serde_json::json!({"max_active": 5, "paths": [format!("/{room}")]}),
            )
            .await;
        a.target.pause(&room).await;
        let joined = b.target.join(&room, None).await;
        assert_eq!(joined.status, 200, "round {round}: {}", joined.text);
        assert_eq!(joined.json["status"], "waiting", "{}", joined.text);
        let gated = b.target.page(&path, &[], false).await;
        assert_eq!(
            gated.header("x-queuegate-status"),
            Some("waiting"),
            "round {round}: a stranger passed b: {}",
            gated.text
        );
        assert!(gated.header("x-upstream").is_none(), "{}", gated.text);
        // A changed path moves the gate at once too.
        let moved = format!("/{room}-moved");
        a.target
            .put_room(
                &room,
                serde_json::json!({"max_active": 5, "paths": [moved.clone()]}),
            )
            .await;
        let gated = b.target.page(&format!("{moved}/y"), &[], false).await;
        assert_eq!(
            gated.header("x-queuegate-status"),
            Some("waiting"),
            "round {round}: {}",
            gated.text
        );
    }
}

/// A page template put through one instance is what the other shows on its next page, and so is
/// its replacement and its removal: the text lives in Redis, the record names it by hash, and
/// each instance compiles each text once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_put_through_one_instance_shows_on_every_instance() {
    let redis = RedisServer::start();
    let (a, b) = two_instances(&redis).await;
    let room = "shared-template";
    a.target
        .put_room(
            room,
            serde_json::json!({"max_active": 5, "paths": [format!("/{room}")]}),
        )
        .await;
    a.target.pause(room).await;
    let path = format!("/{room}/x");
    let before = b.target.page(&path, &[], false).await;
    assert!(before.text.contains("<title>You are in line</title>"));
    for text in ["<p>one {{ state }}</p>", "<p>two {{ state }}</p>"] {
        let put = a
            .target
            .send(
                a.target
                    .admin(reqwest::Method::PUT, &format!("/rooms/{room}/template"))
                    .header("content-type", "text/html")
                    .body(text),
            )
            .await;
        assert_eq!(put.status, 200, "{}", put.text);
        let page = b.target.page(&path, &[], false).await;
        assert_eq!(page.text, text.replace("{{ state }}", "waiting"));
    }
    let removed = a
        .target
        .send(
            a.target
                .admin(reqwest::Method::DELETE, &format!("/rooms/{room}/template")),
        )
        .await;
    assert_eq!(removed.status, 204, "{}", removed.text);
    let after = b.target.page(&path, &[], false).await;
    assert!(
        after.text.contains("<title>You are in line</title>"),
        "the built-in page again"
    );
    assert!(
        !after.text.contains("<p>two"),
        "the removed template is gone"
    );
}

/// The report's minute when the admission lease moves mid-minute (as it did under load in the
/// balanced suite): the new holder counts from its first tick and must not take back what the
/// one before it counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_moving_mid_minute_takes_no_count_back() {
    use queuegate::report::ReportMinute;
    use queuegate::{RoomConfig, RoomId};
    use queuegate_origin::clock::{system_now, Clock};
    use queuegate_origin::scheduler::Scheduler;
    use queuegate_origin::store::redis::connect_single;
    use queuegate_origin::store::Store;
    use std::sync::Arc;
    use std::time::Duration;

    let redis = RedisServer::start();
    let store = Arc::new(connect_single(&redis.url(), Duration::from_millis(1000), None).unwrap());
    // The lease runs on Redis's clock, so this runs on the real one, within one minute: it
    // begins at least 10 s before the minute ends.
    if system_now() % 60_000 > 50_000 {
        tokio::time::sleep(Duration::from_millis(60_000 - system_now() % 60_000 + 50)).await;
    }
    let now = system_now;
    let minute = now() - now() % 60_000;
    let room = RoomId::parse("lease-moves").unwrap();
    let config = RoomConfig {
        max_active: 100,
        shards: 2,
        ..RoomConfig::default()
    };
    store.put_room(&room, config, 7, now()).await.unwrap();
    store.set_paused(&room, true, now()).await.unwrap();
    let record = store.room(&room, now()).await.unwrap().unwrap();
    let tick = Duration::from_millis(200);
    let mut first = Scheduler::new(store.clone(), Clock::System, tick, "first".into());
    let mut second = Scheduler::new(store.clone(), Clock::System, tick, "second".into());
    let counted = |report: Vec<ReportMinute>| {
        report
            .iter()
            .find(|m| m.minute_ms == minute)
            .map(|m| (m.joins, m.peak_waiting))
    };

    assert!(first.tick(now()).await.unwrap().leader);
    for _ in 0..6 {
        store.join(&record, None, now()).await.unwrap();
    }
    assert!(first.tick(now()).await.unwrap().leader);
    let report = store.report(&room, 0, now()).await.unwrap();
    assert_eq!(counted(report), Some((6, 6)));

    // The first holder stops ticking; its lease (three ticks) runs out and the second takes it.
    assert!(!second.tick(now()).await.unwrap().leader);
    tokio::time::sleep(tick * 4).await;
    assert!(second.tick(now()).await.unwrap().leader);
    store.join(&record, None, now()).await.unwrap();
    assert!(second.tick(now()).await.unwrap().leader);
    // Each count is the higher of the two schedulers': none taken back (the second counted one
    // join from its first tick, the first six).
    let report = store.report(&room, 0, now()).await.unwrap();
    assert_eq!(counted(report), Some((6, 7)));
}
