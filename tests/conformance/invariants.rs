//! Invariants 1-3 of DESIGN.md: capacity, FIFO across shards, idempotence.

use super::*;

// ---- Invariant 1: capacity ----

pub async fn capacity_is_never_exceeded(t: &Target) {
    let room = unique("capacity");
    t.put_room(
        &room,
        json!({"max_active": 3, "admit_per_minute": 600000, "shards": 4,
               "claim_window_s": 60, "session_ttl_s": 600}),
    )
    .await;
    // Thirty visitors arrive at once.
    let joins: Vec<_> = (0..30).map(|_| t.join(&room, None)).collect();
    let tickets: Vec<String> = futures::future::join_all(joins)
        .await
        .iter()
        .map(ticket_of)
        .collect();

    let mut ever_admitted: HashSet<usize> = HashSet::new();
    let mut passes = Vec::new();
    let mut leaves = 0;
    // Generous: under `wrangler dev` on a loaded machine a round takes seconds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    // Rounds: everybody polls; each round, one admitted visitor leaves; at most
    // 3 + leaves may ever have been admitted, and the room never reports more than 3 in.
    while ever_admitted.len() < 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "admissions stalled at {}",
            ever_admitted.len()
        );
        let polls = tickets.iter().map(|ticket| t.status(&room, ticket));
        let replies = futures::future::join_all(polls).await;
        for (i, reply) in replies.iter().enumerate() {
            match status_of(reply) {
                "admitted" => {
                    if ever_admitted.insert(i) {
                        passes.push(pass_of(reply));
                    }
                }
                "waiting" | "left" => {}
                other => panic!("unexpected status {other}: {}", reply.text),
            }
        }
        assert!(
            ever_admitted.len() <= 3 + leaves,
            "{} admitted with {} leaves and max_active 3",
            ever_admitted.len(),
            leaves
        );
        let view = t.room(&room).await;
        let stats = &view["stats"];
        let in_room = stats["active"].as_u64().unwrap()
            + stats["admitted"].as_u64().unwrap()
            + stats["entry_credit"].as_u64().unwrap();
        assert!(in_room <= 3, "{view}");
        if ever_admitted.len() == 3 + leaves {
            let pass = passes[leaves].clone();
            assert_eq!(status_of(&t.leave(&room, &pass).await), "left");
            leaves += 1;
        }
        tokio::time::sleep(t.tick).await;
    }
}

pub async fn unclaimed_admissions_expire_after_the_claim_window(t: &Target) {
    let room = paused_room(
        t,
        "claim",
        json!({"max_active": 1, "claim_window_s": 1, "shards": 1}),
    )
    .await;
    let a = ticket_of(&t.join(&room, None).await);
    let b = ticket_of(&t.join(&room, None).await);
    assert_eq!(t.admit(&room, 1).await, 1);
    assert_eq!(t.room(&room).await["stats"]["admitted"], 1);
    // Nobody claims the slot; after the window it is free again and `a` has lost it.
    t.advance(Duration::from_millis(1_100)).await;
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["admitted"] == 0
    })
    .await;
    assert_eq!(status_of(&t.status(&room, &a).await), "expired");
    assert_eq!(t.admit(&room, 1).await, 1);
    assert_eq!(status_of(&t.status(&room, &b).await), "admitted");
}

pub async fn sessions_end_after_their_ttl(t: &Target) {
    let room = paused_room(
        t,
        "ttl",
        json!({"max_active": 1, "session_ttl_s": 1, "shards": 1}),
    )
    .await;
    let a = ticket_of(&t.join(&room, None).await);
    assert_eq!(t.admit(&room, 1).await, 1);
    assert_eq!(status_of(&t.status(&room, &a).await), "admitted");
    assert_eq!(t.room(&room).await["stats"]["active"], 1);
    t.advance(Duration::from_millis(1_100)).await;
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["active"] == 0
    })
    .await;
    assert_eq!(status_of(&t.status(&room, &a).await), "expired");
}

// ---- Invariant 2: FIFO across shards ----

pub async fn admission_is_fifo_across_shards(t: &Target) {
    let room = paused_room(t, "fifo", json!({"max_active": 1000, "shards": 4})).await;
    let mut tickets = Vec::new();
    for _ in 0..40 {
        tickets.push(ticket_of(&t.join(&room, None).await));
    }
    let leavers: HashSet<usize> = [3, 4, 17, 30, 39].into_iter().collect();
    for &i in &leavers {
        t.leave(&room, &tickets[i]).await;
    }
    let order: Vec<usize> = (0..40).filter(|i| !leavers.contains(i)).collect();
    let mut admitted = 0;
    for batch in [1u64, 3, 7, 2, 10, 5, 20] {
        admitted += t.admit(&room, batch).await as usize;
        let expected: HashSet<usize> = order.iter().take(admitted).copied().collect();
        for (i, ticket) in tickets.iter().enumerate() {
            let status = status_of(&t.status(&room, ticket).await).to_owned();
            let want = if leavers.contains(&i) {
                "left"
            } else if expected.contains(&i) {
                "admitted"
            } else {
                "waiting"
            };
            assert_eq!(status, want, "visitor {i} after {admitted} admitted");
        }
    }
    assert_eq!(admitted, order.len());
}

pub async fn positions_only_fall(t: &Target) {
    let room = paused_room(t, "positions", json!({"max_active": 1000, "shards": 3})).await;
    let tickets = futures_join(t, &room, 12).await;
    let last = tickets.last().unwrap();
    position_settles(t, &room, last, 12).await;
    let mut previous = t.status(&room, last).await.json["position"]
        .as_u64()
        .unwrap();
    assert_eq!(previous, 12);
    for (step, ticket) in tickets.iter().enumerate().take(5) {
        match step % 3 {
            0 => {
                t.leave(&room, ticket).await;
            }
            1 => {
                t.join(&room, None).await; // behind: must not move anyone ahead of it
            }
            _ => {
                t.admit(&room, 1).await;
            }
        }
        // A leave or an admission ahead moves the visitor up: at once where the store knows
        // every place, within a second or two at the edge, whose isolates estimate a place in
        // another shard from summaries up to a second old. Never up, meanwhile or after.
        let moves_up = step % 3 != 1;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let now = loop {
            let now = t.status(&room, last).await.json["position"]
                .as_u64()
                .unwrap();
            assert!(now <= previous, "position rose from {previous} to {now}");
            if !moves_up || now < previous {
                break now;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "a leave or an admission ahead moves the visitor up (still {now} after 5 s)"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        previous = now;
    }
}

// ---- Invariant 3: idempotence ----

pub async fn refreshes_keep_the_place(t: &Target) {
    let room = paused_room(t, "refresh", json!({"max_active": 5})).await;
    let first = t.join(&room, None).await;
    let ticket = ticket_of(&first);
    let id = first.json["ticket_id"].clone();
    t.join(&room, None).await;

    // Join again with the ticket as a bearer token, then as the cookie: same place.
    let by_bearer = t
        .send(
            t.client
                .post(t.api(&format!("/rooms/{room}/join")))
                .bearer_auth(&ticket),
        )
        .await;
    assert_eq!(by_bearer.json["ticket_id"], id, "{}", by_bearer.text);
    assert_eq!(by_bearer.json["position"], 1);
    let by_cookie = t
        .send(
            t.client
                .post(t.api(&format!("/rooms/{room}/join")))
                .header("cookie", format!("qg_ticket_{room}={ticket}")),
        )
        .await;
    assert_eq!(by_cookie.json["ticket_id"], id);
    assert_eq!(t.room(&room).await["stats"]["waiting"], 2);
}

pub async fn one_user_id_holds_one_place(t: &Target) {
    let room = paused_room(t, "users", json!({"max_active": 5, "shards": 4})).await;
    let first = t.join(&room, Some("alice")).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let id = first.json["ticket_id"].clone();
    // Ten joins at once with the same user id and no ticket: one place, and nobody else gets it.
    let joins: Vec<_> = (0..10).map(|_| t.join(&room, Some("alice"))).collect();
    for reply in futures::future::join_all(joins).await {
        assert_error(&reply, 409, "user_already_queued", "the same user id again");
        assert_eq!(reply.json["status"], "waiting", "{}", reply.text);
        assert_eq!(reply.json["position"], 1, "{}", reply.text);
        assert!(reply.json.get("ticket").is_none(), "{}", reply.text);
        assert!(reply.set_cookies().is_empty(), "{}", reply.text);
    }
    // With that place's ticket, it is the same place.
    let kept = t
        .send(
            t.client
                .post(t.api(&format!("/rooms/{room}/join")))
                .bearer_auth(ticket_of(&first))
                .json(&json!({"user_id": "alice"})),
        )
        .await;
    assert_eq!(kept.json["ticket_id"], id, "{}", kept.text);
    let bob = t.join(&room, Some("bob")).await;
    assert_ne!(bob.json["ticket_id"], id);
    position_settles(t, &room, &ticket_of(&bob), 2).await;
    assert_eq!(t.room(&room).await["stats"]["waiting"], 2);

    // After leaving, the same user id gets a new place at the back.
    t.leave(&room, &ticket_of(&first)).await;
    let again = t.join(&room, Some("alice")).await;
    assert_ne!(again.json["ticket_id"], id);
    position_settles(t, &room, &ticket_of(&again), 2).await;
}
