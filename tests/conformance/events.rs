//! Scheduled events: a pre-queue that admits nobody, an opening in join order, the event's
//! overrides while it runs, and the room's own settings after.

use super::*;

async fn put_event(t: &Target, room: &str, event: &str, body: Value) -> Reply {
    t.send(
        t.admin(
            reqwest::Method::PUT,
            &format!("/rooms/{room}/events/{event}"),
        )
        .json(&body),
    )
    .await
}

/// The ids of the room's events, as its list answers them.
async fn event_ids(t: &Target, room: &str) -> Vec<String> {
    let list = t
        .send(t.admin(reqwest::Method::GET, &format!("/rooms/{room}/events")))
        .await;
    list.json["events"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {}", list.text))
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn get_event(t: &Target, room: &str, event: &str) -> Reply {
    t.send(t.admin(
        reqwest::Method::GET,
        &format!("/rooms/{room}/events/{event}"),
    ))
    .await
}

pub async fn events_are_checked_and_never_overlap(t: &Target) {
    let room = unique("events");
    t.put_room(&room, json!({"paths": [format!("/{room}")]}))
        .await;
    let now = t.now();
    let (pre, start, end) = (now + 3_600_000, now + 7_200_000, now + 10_800_000);
    for (body, what) in [
        (
            json!({"prequeue_at": start, "start_at": pre, "end_at": end}),
            "a pre-queue after the start",
        ),
        (
            json!({"prequeue_at": pre, "start_at": end, "end_at": start}),
            "an end before the start",
        ),
        (
            json!({"prequeue_at": 1, "start_at": 2, "end_at": 3}),
            "an event already over",
        ),
        (
            json!({"prequeue_at": pre, "start_at": start, "end_at": end, "max_active": 0}),
            "no slots",
        ),
        (
            json!({"prequeue_at": pre, "start_at": start, "end_at": end, "mode": "lottery"}),
            "a mode",
        ),
        (
            json!({"prequeue_at": start - 999, "start_at": start, "end_at": end, "shuffle": true}),
            "a shuffled pre-queue under a second",
        ),
        (
            json!({"prequeue_at": pre, "start_at": start, "end_at": end, "shuffle": true,
                   "seed": "00"}),
            "a seed of the caller's",
        ),
        (
            json!({"prequeue_at": pre, "start_at": start, "end_at": end, "extra": 1}),
            "an unknown field",
        ),
        (json!({"prequeue_at": pre, "start_at": start}), "no end"),
    ] {
        assert_error(
            &put_event(t, &room, "sale", body).await,
            422,
            "invalid_config",
            what,
        );
    }
    let bad_id = put_event(t, &room, "Big%20Sale", json!({})).await;
    assert_error(&bad_id, 400, "invalid_request", "an event id");
    let missing = get_event(t, &room, "sale").await;
    assert_error(&missing, 404, "not_found", "no such event");

    let body =
        json!({"prequeue_at": pre, "start_at": start, "end_at": end, "admit_per_minute": 30});
    let created = put_event(t, &room, "sale", body.clone()).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["state"], "scheduled");
    assert_eq!(created.json["admit_per_minute"], 30);
    let overlapping = json!({"prequeue_at": start, "start_at": end, "end_at": end + 1});
    assert_error(
        &put_event(t, &room, "other", overlapping).await,
        409,
        "conflict",
        "an overlapping event",
    );
    // The same event moved is no overlap with itself; one that follows it is fine.
    let moved = put_event(
        t,
        &room,
        "sale",
        json!({"prequeue_at": pre, "start_at": start, "end_at": end - 1}),
    )
    .await;
    assert_eq!(moved.status, 200, "{}", moved.text);
    let next = json!({"prequeue_at": end, "start_at": end + 1, "end_at": end + 2});
    assert_eq!(put_event(t, &room, "encore", next).await.status, 201);
    assert_eq!(event_ids(t, &room).await, ["encore", "sale"]);
    assert!(t.room(&room).await["events"]["sale"].is_object());
    // Changing the room keeps its events.
    t.put_room(
        &room,
        json!({"paths": [format!("/{room}")], "max_active": 7}),
    )
    .await;
    assert_eq!(get_event(t, &room, "sale").await.status, 200);
    let deleted = t
        .send(t.admin(
            reqwest::Method::DELETE,
            &format!("/rooms/{room}/events/sale"),
        ))
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_error(
        &get_event(t, &room, "sale").await,
        404,
        "not_found",
        "deleted",
    );
    // Without the admin key, nothing.
    let stranger = t
        .send(t.client.get(t.api(&format!("/admin/rooms/{room}/events"))))
        .await;
    assert_error(&stranger, 401, "unauthorized", "no admin key");
}

/// Operators writing overlapping events at once (or one of them through a copy of the room that
/// has not seen the other's write yet) keep exactly one: the others are told 409 `conflict`.
pub async fn overlapping_events_written_at_once_keep_one(t: &Target) {
    let room = unique("events-race");
    t.put_room(&room, json!({"paths": [format!("/{room}")]}))
        .await;
    let now = t.now();
    let ids: Vec<String> = (0..6).map(|n| format!("sale-{n}")).collect();
    let writers = ids.iter().zip(0..).map(|(id, n)| {
        let body = json!({"prequeue_at": now + 3_600_000 + n, "start_at": now + 7_200_000,
                          "end_at": now + 10_800_000});
        put_event(t, &room, id, body)
    });
    let replies = futures::future::join_all(writers).await;
    let kept: Vec<_> = replies.iter().filter(|r| r.status == 201).collect();
    assert_eq!(
        kept.len(),
        1,
        "{:?}",
        replies.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    for refused in replies.iter().filter(|r| r.status != 201) {
        assert_error(refused, 409, "conflict", "an overlapping event");
    }
    assert_eq!(
        event_ids(t, &room).await,
        [kept[0].json["id"].as_str().unwrap()]
    );
}

/// The life of an event on the target's clock: visitors join the pre-queue and are told when
/// the sale opens, nobody is admitted before it however much room there is, the opening admits
/// in join order within the event's `max_active`, and at the end the room's own settings return.
pub async fn an_event_opens_its_prequeue_in_join_order(t: &Target) {
    let room = unique("opening");
    t.put_room(
        &room,
        json!({"max_active": 50, "admit_per_minute": 60000, "paths": [format!("/{room}")]}),
    )
    .await;
    let now = t.now();
    // Long enough, on a real clock, for the joins and checks below.
    let start = now + 8_000;
    // On a real clock, long enough to see the event's capacity hold after the opening (the
    // edge tells a visitor of an admission a second or two late).
    let end = start + 15_000;
    let created = put_event(
        t,
        &room,
        "launch",
        json!({"prequeue_at": now, "start_at": start, "end_at": end, "max_active": 2}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["state"], "prequeue", "{}", created.text);
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["entry_credit"] == 0
    })
    .await;

    let mut tickets = Vec::new();
    for _ in 0..3 {
        let joined = t.join(&room, None).await;
        assert_eq!(joined.status, 200, "{}", joined.text);
        assert_eq!(status_of(&joined), "waiting", "{}", joined.text);
        assert!(joined.json["position"].is_null(), "{}", joined.text);
        assert!(joined.json["eta_seconds"].is_null(), "{}", joined.text);
        assert_eq!(joined.json["opens_at"], start, "{}", joined.text);
        tickets.push(ticket_of(&joined));
    }
    // A browser at the gate gets the pre-queue page, with the opening time in it.
    let page = t.page(&format!("/{room}/tickets"), &[], false).await;
    assert_eq!(
        page.header("x-queuegate-status"),
        Some("waiting"),
        "{}",
        page.text
    );
    assert!(page.header("x-upstream").is_none());
    assert!(page.text.contains("data-opens-at=\""), "{}", page.text);
    // Capacity is free, and the scheduler ticks, yet nobody is let in.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let held = t.status(&room, &tickets[0]).await;
    assert_eq!(status_of(&held), "waiting", "{}", held.text);
    assert_eq!(t.room(&room).await["stats"]["admitted_total"], 0);

    // The opening: the first two, in join order, within the event's two slots.
    t.advance_to(start).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let first = t.status(&room, &tickets[0]).await;
        let second = t.status(&room, &tickets[1]).await;
        if status_of(&first) == "admitted" && status_of(&second) == "admitted" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first two were not admitted: {} / {}",
            first.text,
            second.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let third = t.status(&room, &tickets[2]).await;
    assert!(
        t.now() < end,
        "too slow to see the event run: {} ms past its end",
        t.now() - end
    );
    assert_eq!(
        status_of(&third),
        "waiting",
        "{}\n{}",
        third.text,
        t.room(&room).await
    );
    assert_eq!(third.json["position"], 1, "{}", third.text);
    assert!(third.json.get("opens_at").is_none(), "{}", third.text);
    // Nor can an operator let more in than the event's slots.
    assert_eq!(t.admit(&room, 5).await, 0);
    let state = get_event(t, &room, "launch").await;
    assert_eq!(state.json["state"], "running", "{}", state.text);

    // The end: the room's own 50 slots again, and the third goes in.
    t.advance_to(end).await;
    status_becomes(t, &room, &tickets[2], "admitted", Duration::from_secs(20)).await;
    assert_eq!(get_event(t, &room, "launch").await.json["state"], "ended");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// A shuffled pre-queue: the event publishes the seed's hash from its creation and the seed from
/// the opening, and the room admits the pre-queue in the order an auditor recomputes from them
/// (the README's formula, computed here with sha2 alone), across shards; a visitor who joins
/// after the opening waits behind the whole pre-queue.
pub async fn a_shuffled_prequeue_opens_in_the_order_its_seed_gives(t: &Target) {
    let room = unique("shuffle");
    t.put_room(
        &room,
        json!({"max_active": 1000, "admit_per_minute": 60000, "shards": 2,
               "paths": [format!("/{room}")]}),
    )
    .await;
    let now = t.now();
    // Long enough, on a real clock, for the joins below.
    let start = now + 8_000;
    let created = put_event(
        t,
        &room,
        "drop",
        json!({"prequeue_at": now, "start_at": start, "end_at": start + 600_000,
               "shuffle": true, "admit_per_minute": 60}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let seed_sha256 = created.json["seed_sha256"].as_str().unwrap().to_owned();
    assert_eq!(seed_sha256.len(), 64, "{}", created.text);
    assert!(created.json.get("seed").is_none(), "{}", created.text);
    let listed = t.room(&room).await;
    assert_eq!(
        listed["events"]["drop"]["seed_sha256"],
        seed_sha256.as_str()
    );
    assert!(listed["events"]["drop"].get("seed").is_none(), "{listed}");
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["entry_credit"] == 0
    })
    .await;

    let mut visitors = Vec::new();
    for _ in 0..10 {
        let joined = t.join(&room, None).await;
        assert_eq!(status_of(&joined), "waiting", "{}", joined.text);
        let id = joined.json["ticket_id"].as_str().unwrap().to_owned();
        visitors.push((id, ticket_of(&joined)));
    }
    // Changing the pre-queue of an event under way is refused.
    let moved = put_event(
        t,
        &room,
        "drop",
        json!({"prequeue_at": now, "start_at": start + 1, "end_at": start + 600_000,
               "shuffle": true, "admit_per_minute": 60}),
    )
    .await;
    assert_error(&moved, 409, "conflict", "a pre-queue under way moved");

    t.advance_to(start).await;
    let opened = get_event(t, &room, "drop").await;
    let seed = opened.json["seed"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        sha256_hex(&hex_bytes(&seed)),
        seed_sha256,
        "{}",
        opened.text
    );
    assert_eq!(opened.json["seed_sha256"], seed_sha256.as_str());
    let late = t.join(&room, None).await;
    assert_eq!(status_of(&late), "waiting", "{}", late.text);

    // The order an auditor recomputes: SHA-256(seed bytes || ticket_id), ascending.
    let seed = hex_bytes(&seed);
    visitors.sort_by_key(|(id, _)| {
        let mut bytes = seed.clone();
        bytes.extend_from_slice(id.as_bytes());
        sha256_hex(&bytes)
    });
    let identity: Vec<String> = {
        let mut ids: Vec<String> = visitors.iter().map(|(id, _)| id.clone()).collect();
        ids.sort_by_key(|id| id.rsplit('-').next().unwrap().parse::<u64>().unwrap());
        ids
    };
    assert_ne!(
        visitors
            .iter()
            .map(|(id, _)| id.clone())
            .collect::<Vec<_>>(),
        identity,
        "the seed left the join order as it was (a chance of 1 in 3.6 million)"
    );
    // The event admits one a second. Polled from the last in the order to the first: once a
    // visitor is seen admitted, everyone before them in the order must be too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        // The late joiner is asked first: once it is in, everyone in the pre-queue, asked after,
        // must be in too (admissions are never taken back, so this order has no race).
        let late_reply = t.status(&room, &ticket_of(&late)).await;
        let late_admitted = status_of(&late_reply) == "admitted";
        let mut admitted_seen = false;
        let mut admitted = 0;
        // Polled later, a place earlier in the order can only stand further ahead.
        let mut behind = u64::MAX;
        for (rank, (id, ticket)) in visitors.iter().enumerate().rev() {
            let reply = t.status(&room, ticket).await;
            let status = status_of(&reply);
            if status == "admitted" {
                admitted_seen = true;
                admitted += 1;
            } else {
                let position = reply.json["position"].as_u64().unwrap_or(u64::MAX);
                assert!(
                    position < behind,
                    "{id} (rank {rank}) at position {position}, not ahead of the next in the \
                     order ({behind})"
                );
                behind = position;
                assert!(
                    !admitted_seen,
                    "{id} (rank {rank}) still waits while a later one was admitted: {}",
                    reply.text
                );
                assert_eq!(status, "waiting", "{}", reply.text);
            }
        }
        if admitted < visitors.len() {
            assert!(
                !late_admitted,
                "the late joiner was in while {} of the pre-queue were not: {}",
                visitors.len() - admitted,
                late_reply.text
            );
            assert_eq!(status_of(&late_reply), "waiting", "{}", late_reply.text);
        }
        if admitted == visitors.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {admitted} of the pre-queue admitted"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}
