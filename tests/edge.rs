//! The edge worker under real `wrangler dev`: the conformance suite, the origin's scheduler
//! driving it end to end, and queue state across a restart of `wrangler dev`, from the log alone
//! and from a snapshot.

mod conformance;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde_json::json;
use support::edge::{object_storage, EdgeScheduler, WranglerDev};
use support::{Target, Upstream};

fn ticket_of(reply: &support::Reply) -> String {
    reply.json["ticket"]
        .as_str()
        .unwrap_or_else(|| panic!("a ticket in {}", reply.text))
        .to_owned()
}

fn status_of(reply: &support::Reply) -> String {
    reply.json["status"].as_str().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_on_the_edge() {
    let upstream = Upstream::start().await;
    let dev = WranglerDev::start(Some(&upstream.url()));
    let _scheduler = EdgeScheduler::start(&dev.url(), 100);
    conformance::run_all(&dev.target()).await;
}

/// Join, admission by the origin's scheduler, the pass, the gate to the upstream, leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_scheduler_drives_the_edge_end_to_end() {
    let upstream = Upstream::start().await;
    let dev = WranglerDev::start(Some(&upstream.url()));
    let t = dev.target();
    t.put_room(
        "e2e",
        json!({"max_active": 1, "admit_per_minute": 6000, "shards": 2, "paths": ["/shop"]}),
    )
    .await;
    // Nobody admits until the scheduler runs: the first visitor waits.
    let first = t.join("e2e", None).await;
    assert_eq!(status_of(&first), "waiting", "{}", first.text);
    let second = t.join("e2e", None).await;
    let _scheduler = EdgeScheduler::start(&dev.url(), 100);
    let ticket = ticket_of(&first);
    let pass = eventually_admitted(&t, "e2e", &ticket).await;
    // Through the gate with the pass, to the upstream.
    let page = t
        .page("/shop/cart", &[("qg_pass_e2e".into(), pass.clone())], false)
        .await;
    assert_eq!(page.header("x-upstream"), Some("yes"), "{}", page.text);
    assert!(
        page.text.starts_with("upstream /shop/cart"),
        "{}",
        page.text
    );
    // Capacity 1: the second waits until the first leaves, then the scheduler lets it in.
    assert_eq!(
        status_of(&t.status("e2e", &ticket_of(&second)).await),
        "waiting"
    );
    assert_eq!(status_of(&t.leave("e2e", &pass).await), "left");
    eventually_admitted(&t, "e2e", &ticket_of(&second)).await;
    let view = t.room("e2e").await;
    assert_eq!(view["stats"]["admitted_total"], 2, "{view}");
    assert!(
        view["stats"]["admit_rate_per_min"].is_number()
            || view["stats"]["admit_rate_per_min"].is_null()
    );
}

async fn eventually_admitted(t: &Target, room: &str, ticket: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let reply = t.status(room, ticket).await;
        if status_of(&reply) == "admitted" {
            return reply.json["pass"].as_str().unwrap().to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not admitted: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Durable Object storage persisted by `wrangler dev` keeps the queue across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_state_survives_a_wrangler_dev_restart() {
    let dev = WranglerDev::start(None);
    let t = dev.target();
    t.put_room("kept", json!({"max_active": 100, "shards": 3}))
        .await;
    t.pause("kept").await;
    let mut tickets = Vec::new();
    for _ in 0..9 {
        tickets.push(ticket_of(&t.join("kept", None).await));
    }
    assert_eq!(status_of(&t.leave("kept", &tickets[4]).await), "left");
    assert_eq!(t.admit("kept", 2).await, 2);
    assert_eq!(status_of(&t.status("kept", &tickets[0]).await), "admitted");

    let persist = dev.stop();
    let dev = WranglerDev::start_in(None, persist);
    let t = dev.target();
    let view = t.room("kept").await;
    assert_eq!(view["paused"], true, "{view}");
    assert_eq!(view["stats"]["waiting"], 6, "{view}");
    assert_eq!(view["stats"]["active"], 1, "{view}");
    assert_eq!(view["stats"]["admitted"], 1, "{view}");
    assert_eq!(status_of(&t.status("kept", &tickets[0]).await), "admitted");
    assert_eq!(status_of(&t.status("kept", &tickets[4]).await), "left");
    // First come, first served goes on where it stopped.
    assert_eq!(t.admit("kept", 3).await, 3);
    for (i, ticket) in tickets.iter().enumerate() {
        let want = match i {
            4 => "left",
            0..=5 => "admitted",
            _ => "waiting",
        };
        assert_eq!(
            status_of(&t.status("kept", ticket).await),
            want,
            "visitor {i}"
        );
    }
}

/// The seq of a join's or a status poll's ticket (`epoch-shard-seq`).
fn seq_of(reply: &support::Reply) -> u64 {
    reply.json["ticket_id"]
        .as_str()
        .and_then(|id| id.rsplit('-').next())
        .and_then(|seq| seq.parse().ok())
        .unwrap_or_else(|| panic!("a ticket id in {}", reply.text))
}

/// Each ticket's status, `concurrency` polls at a time.
async fn statuses(
    t: &Target,
    room: &str,
    tickets: &BTreeMap<u64, String>,
) -> BTreeMap<u64, String> {
    stream::iter(tickets.iter())
        .map(|(&seq, ticket)| async move { (seq, status_of(&t.status(room, ticket).await)) })
        .buffer_unordered(16)
        .collect()
        .await
}

/// A one-shard room with enough history for its shard object to write snapshots and truncate
/// its log (one is due every 128 KiB of log, about 900 joins; 2,048 visitors fill a segment,
/// which is not written again), then `wrangler dev` restarted on the same storage: the object
/// loads the snapshot and the log after it, and the queue goes on where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_state_survives_a_restart_from_a_snapshot() {
    const VISITORS: u64 = 4_000;
    let dev = WranglerDev::start(None);
    let t = dev.target();
    t.put_room(
        "snap",
        json!({"max_active": 1_000_000, "shards": 1, "claim_window_s": 3600, "session_ttl_s": 3600}),
    )
    .await;
    t.pause("snap").await;
    // Every tenth visitor has a user id, so that the snapshot's segments carry some.
    let joined: Vec<(u64, String, Option<String>)> = stream::iter(0..VISITORS)
        .map(|i| {
            let t = &t;
            async move {
                let user = (i % 10 == 0).then(|| format!("user-{i}"));
                let reply = t.join("snap", user.as_deref()).await;
                assert_eq!(status_of(&reply), "waiting", "{}", reply.text);
                (seq_of(&reply), ticket_of(&reply), user)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut tickets: BTreeMap<u64, String> = BTreeMap::new();
    let mut users: BTreeMap<u64, String> = BTreeMap::new();
    for (seq, ticket, user) in joined {
        assert!(tickets.insert(seq, ticket).is_none(), "seq {seq} twice");
        if let Some(user) = user {
            users.insert(seq, user);
        }
    }
    assert_eq!(
        tickets.keys().copied().collect::<Vec<_>>(),
        (1..=VISITORS).collect::<Vec<_>>()
    );

    // Leavers while waiting, then 1,000 admitted, of whom some arrive and some leave.
    let mut left: BTreeSet<u64> = (1..=VISITORS).filter(|s| s % 7 == 3).collect();
    let leave_all = |seqs: Vec<u64>| {
        let (t, tickets) = (&t, &tickets);
        stream::iter(seqs)
            .map(move |seq| async move {
                let mut reply = t.leave("snap", &tickets[&seq]).await;
                // wrangler dev's proxy fails a request now and then with a 503 of its own
                // (workers-sdk#14641) and resends only GET and HEAD; a leave is idempotent
                // (leaving again answers `left`), so it is sent once more, as the page would.
                if reply.status == 503 && reply.text.starts_with("Your worker restarted") {
                    eprintln!("wrangler dev's proxy: {}; leave sent again", reply.text);
                    reply = t.leave("snap", &tickets[&seq]).await;
                }
                assert_eq!(status_of(&reply), "left", "seq {seq}: {}", reply.text);
            })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
    };
    leave_all(left.iter().copied().collect()).await;
    assert_eq!(t.admit("snap", 1_000).await, 1_000);
    let admitted: BTreeSet<u64> = (1..=VISITORS)
        .filter(|s| !left.contains(s))
        .take(1_000)
        .collect();
    let arrived: BTreeSet<u64> = admitted.iter().copied().filter(|s| s % 5 == 1).collect();
    for &seq in &arrived {
        assert_eq!(
            status_of(&t.status("snap", &tickets[&seq]).await),
            "admitted"
        );
    }
    let gone: Vec<u64> = admitted.iter().copied().filter(|s| s % 11 == 0).collect();
    leave_all(gone.clone()).await;
    left.extend(gone);
    // A user who left from the first segment joins again: a new place, at the end.
    let (_, moved_user) = users
        .iter()
        .find(|(s, _)| **s <= 2_048 && left.contains(s) && !admitted.contains(s))
        .expect("a user id among the early leavers");
    let rejoined = t.join("snap", Some(moved_user)).await;
    assert_eq!(seq_of(&rejoined), VISITORS + 1, "{}", rejoined.text);
    tickets.insert(VISITORS + 1, ticket_of(&rejoined));
    users.insert(VISITORS + 1, moved_user.clone());

    let expected = |seq: u64| {
        if left.contains(&seq) {
            "left"
        } else if admitted.contains(&seq) {
            "admitted"
        } else {
            "waiting"
        }
    };
    let waiting: Vec<u64> = tickets
        .keys()
        .copied()
        .filter(|&s| expected(s) == "waiting")
        .collect();
    let stats = t.room("snap").await["stats"].clone();
    assert_eq!(stats["waiting"], waiting.len() as u64, "{stats}");
    assert_eq!(stats["active"], (&arrived - &left).len() as u64, "{stats}");
    assert_eq!(
        stats["admitted"],
        (&(&admitted - &arrived) - &left).len() as u64,
        "{stats}"
    );

    let persist = dev.stop();
    // The shard object wrote snapshots: the state and two segments (1..=2048, 2049..), and only
    // the log since the last one is left.
    let storage = object_storage(&persist, "snap:");
    assert_eq!(storage["snapshot_blobs"], json!([0, 1, 2049]), "{storage}");
    let through = storage["meta"]["snapshot_through"].as_u64().unwrap_or(0);
    assert!(through >= 3_000, "{storage}");
    let ops = &storage["tables"]["ops"];
    assert!(
        ops["rows"].as_u64().unwrap() == 0 || storage["ops_min_id"].as_u64().unwrap() > through,
        "{storage}"
    );
    assert!(ops["bytes"].as_u64().unwrap() <= 160 * 1024, "{storage}");

    let dev = WranglerDev::start_in(None, persist);
    let t = dev.target();
    assert_eq!(t.room("snap").await["stats"], stats);
    // Up to the last admitted seq the shard answers (and the admitted arrive now); beyond it, a
    // waiting visitor's poll is answered from the published summary, which lists only the most
    // recent leavers: the others are checked through the shard below (its count of the waiting,
    // exact positions, admission skipping them).
    let frontier = *admitted.last().unwrap();
    let now = statuses(&t, "snap", &tickets).await;
    for (seq, status) in &now {
        if *seq > frontier && left.contains(seq) {
            continue;
        }
        assert_eq!(status, expected(*seq), "seq {seq}");
    }
    // User ids kept their places: from the first segment, from the last, and the one who moved
    // on from the first segment to a new place. A waiting one learns its exact position.
    let early = waiting
        .iter()
        .find(|s| **s <= 2_048 && users.contains_key(s));
    let late = waiting
        .iter()
        .rev()
        .find(|s| **s > 2_048 && users.contains_key(s));
    for &seq in [early, late, Some(&(VISITORS + 1))].into_iter().flatten() {
        // A user token proves the user and gets the place back (a plain user id would get 409).
        let reply = t
            .send(
                t.client
                    .post(t.api("/rooms/snap/join"))
                    .json(&json!({"user_token": support::user_token(&users[&seq])})),
            )
            .await;
        assert_eq!(seq_of(&reply), seq, "{}", reply.text);
        let ahead = waiting.iter().take_while(|s| **s < seq).count() as u64;
        assert_eq!(reply.json["position"], ahead + 1, "{}", reply.text);
    }
    // First come, first served goes on where it stopped, and seqs after the last one.
    assert_eq!(t.admit("snap", 100).await, 100);
    for (i, &seq) in waiting.iter().take(101).enumerate() {
        let want = if i < 100 { "admitted" } else { "waiting" };
        assert_eq!(
            status_of(&t.status("snap", &tickets[&seq]).await),
            want,
            "seq {seq}"
        );
    }
    let newcomer = t.join("snap", None).await;
    assert_eq!(seq_of(&newcomer), VISITORS + 2, "{}", newcomer.text);
    assert_eq!(
        newcomer.json["position"],
        waiting.len() as u64 - 100 + 1,
        "{}",
        newcomer.text
    );
}
