//! The edge worker under real `wrangler dev`: the conformance suite, the origin's scheduler
//! driving it end to end, and queue state across a restart of `wrangler dev`.

mod conformance;
mod support;

use std::time::Duration;

use serde_json::json;
use support::edge::{EdgeScheduler, WranglerDev};
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
