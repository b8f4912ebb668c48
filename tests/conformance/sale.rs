//! What the application behind the gate can tell queuegate about a visitor.

use super::*;

pub async fn the_application_can_end_a_session_with_a_header(t: &Target) {
    let room = open_room(t, "revoke", 50).await;
    let entered = t.page(&format!("/{room}/buy"), &[], false).await;
    assert_eq!(
        entered.header("x-upstream"),
        Some("yes"),
        "{}",
        entered.text
    );
    let pass = entered
        .cookie(&format!("qg_pass_{room}"))
        .expect("a pass cookie");
    let ticket = entered
        .cookie(&format!("qg_ticket_{room}"))
        .expect("a ticket cookie");
    let cookies = vec![
        (format!("qg_pass_{room}"), pass),
        (format!("qg_ticket_{room}"), ticket.clone()),
    ];
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["active"] == 1
    })
    .await;

    // The purchase completes: the application says so, and the header never reaches the visitor.
    let done = t.page(&format!("/{room}/done"), &cookies, false).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.text, "done");
    assert!(
        done.header("x-queuegate-command").is_none(),
        "{:?}",
        done.headers
    );

    // The session is over and its slot free at once.
    let status = t.status(&room, &ticket).await;
    assert_eq!(status.json["status"], "left", "{}", status.text);
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["active"] == 0
    })
    .await;
    // The old pass no longer passes: whatever the visitor gets next is for a new place (in this
    // open room it may walk straight in again, as someone else).
    let visitor_of = |text: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix("visitor="))
            .map(str::to_owned)
    };
    let old_visitor = visitor_of(&entered.text).expect("the application saw the visitor");
    let again = t.page(&format!("/{room}/buy"), &cookies, false).await;
    assert_ne!(visitor_of(&again.text), Some(old_visitor), "{}", again.text);
    // A stranger's header on an unprotected path is dropped and does nothing.
    let free = t
        .page(&format!("/{}/done", unique("free")), &[], false)
        .await;
    assert_eq!(free.text, "done");
    assert!(free.header("x-queuegate-command").is_none());
}

pub async fn requests_matching_a_bypass_rule_skip_the_queue(t: &Target) {
    let room = unique("bypass");
    let view = t
        .put_room(
            &room,
            json!({"max_active": 5, "paths": [format!("/{room}")], "bypass": [
                {"paths": [format!("/{room}/static")], "extensions": ["css"]},
                {"header": {"name": "X-Probe", "value": "s3cret"}},
                {"cidrs": ["127.0.0.2/32"], "methods": ["POST"]},
            ]}),
        )
        .await;
    assert_eq!(view["bypass"].as_array().map(Vec::len), Some(3), "{view}");
    t.pause(&room).await;
    let through = |reply: &Reply| {
        reply.header("x-upstream") == Some("yes") && reply.header("set-cookie").is_none()
    };

    let css = t
        .page(&format!("/{room}/static/site.css"), &[], false)
        .await;
    assert!(through(&css), "a stylesheet: {}", css.text);
    let js = t.page(&format!("/{room}/static/app.js"), &[], false).await;
    assert!(!through(&js), "not a listed extension: {}", js.text);
    let probe = t
        .request(
            Method::GET,
            &format!("/{room}/health"),
            &[],
            &[("x-probe", "s3cret")],
        )
        .await;
    assert!(through(&probe), "the probe's header: {}", probe.text);
    let wrong = t
        .request(
            Method::GET,
            &format!("/{room}/health"),
            &[],
            &[("x-probe", "s3cret2")],
        )
        .await;
    assert!(!through(&wrong), "a wrong value: {}", wrong.text);
    let hook = t
        .send(another_client().post(t.url(&format!("/{room}/payment-callback"))))
        .await;
    assert!(
        through(&hook),
        "a POST from the listed range: {}",
        hook.text
    );
    let stranger = t
        .send(t.client.post(t.url(&format!("/{room}/payment-callback"))))
        .await;
    assert!(
        !through(&stranger),
        "a POST from elsewhere: {}",
        stranger.text
    );
    // None that bypassed took a place or a slot; the script's navigation, which did not, waits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = &t.room(&room).await["stats"];
    assert_eq!(stats["waiting"], 1, "{stats}");
    assert_eq!(stats["active"], 0, "{stats}");

    let reply = t
        .send(
            t.admin(Method::PUT, &format!("/rooms/{}", unique("badbypass")))
                .json(&json!({"bypass": [{}]})),
        )
        .await;
    assert_error(&reply, 422, "invalid_config", "an empty rule");
}

pub async fn a_closed_room_takes_no_joins_and_keeps_its_places(t: &Target) {
    let room = unique("closed");
    let config = json!({"max_active": 5, "paths": [format!("/{room}")], "queueing_status": 202});
    t.put_room(&room, config.clone()).await;
    t.pause(&room).await;
    let first = t.page(&format!("/{room}"), &[], true).await;
    // The waiting answer carries the room's queueing status.
    assert_eq!(first.status, 202, "{}", first.text);
    assert_eq!(first.json["status"], "waiting", "{}", first.text);
    let ticket = ticket_of(&first);

    let mut closed = config;
    closed["mode"] = json!("closed");
    let view = t.put_room(&room, closed).await;
    assert_eq!(view["mode"], "closed", "{view}");
    assert_error(&t.join(&room, None).await, 403, "room_closed", "a join");
    let page = t.page(&format!("/{room}"), &[], false).await;
    assert_eq!(page.status, 403, "{}", page.text);
    assert_eq!(page.header("x-queuegate-status"), Some("room_closed"));
    assert!(page.text.contains("closed"), "{}", page.text);
    // Whoever holds a place keeps it.
    let cookie = [(format!("qg_ticket_{room}"), ticket.clone())];
    let kept = t.page(&format!("/{room}"), &cookie, true).await;
    assert_eq!(kept.json["position"], 1, "{}", kept.text);
    assert_eq!(t.status(&room, &ticket).await.json["status"], "waiting");

    for bad in [json!({"queueing_status": 500}), json!({"mode": "lifo"})] {
        let reply = t
            .send(
                t.admin(Method::PUT, &format!("/rooms/{}", unique("badmode")))
                    .json(&bad),
            )
            .await;
        assert_error(&reply, 422, "invalid_config", &bad.to_string());
    }
}

pub async fn a_room_for_a_host_gates_that_host_only(t: &Target) {
    let room = unique("hosted");
    let view = t
        .put_room(
            &room,
            json!({"max_active": 5, "paths": [format!("/{room}")], "hosts": ["shop.test"]}),
        )
        .await;
    assert_eq!(view["hosts"], json!(["shop.test"]), "{view}");
    t.pause(&room).await;
    let navigate = |host: &'static str| {
        let path = format!("/{room}/page");
        async move {
            t.request(
                Method::GET,
                &path,
                &[],
                &[
                    ("host", host),
                    ("accept", "application/json"),
                    ("sec-fetch-mode", "navigate"),
                    ("sec-fetch-dest", "document"),
                ],
            )
            .await
        }
    };
    for host in ["shop.test", "SHOP.test:8080"] {
        let gated = navigate(host).await;
        assert_eq!(
            gated.header("x-queuegate-status"),
            Some("waiting"),
            "{host}: {}",
            gated.text
        );
    }
    let other = navigate("other.test").await;
    assert_eq!(other.header("x-upstream"), Some("yes"), "{}", other.text);
    let reply = t
        .send(
            t.admin(Method::PUT, &format!("/rooms/{}", unique("badhost")))
                .json(&json!({"hosts": ["Shop.test:80"]})),
        )
        .await;
    assert_error(&reply, 422, "invalid_config", "a host with a port");
}

pub async fn a_full_line_takes_no_more_places(t: &Target) {
    let room = unique("capped");
    let view = t
        .put_room(
            &room,
            json!({"max_active": 5, "paths": [format!("/{room}")], "max_waiting": 2}),
        )
        .await;
    assert_eq!(view["max_waiting"], 2, "{view}");
    t.pause(&room).await;
    let first = t.join(&room, None).await;
    assert_eq!(first.json["status"], "waiting", "{}", first.text);
    // Joins until the line says it is full. One instance knows its count at once; at the edge an
    // isolate learns it within a second or so, so a few more may get in first (a soft cap).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let full = loop {
        let reply = t.join(&room, None).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        if reply.json["status"] == "full" {
            break reply;
        }
        assert_eq!(reply.json["status"], "waiting", "{}", reply.text);
        assert!(tokio::time::Instant::now() < deadline, "never full");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(full.json["ticket"].is_null(), "{}", full.text);
    assert!(full.set_cookies().is_empty(), "{}", full.text);
    let waiting = t.room(&room).await["stats"]["waiting"].as_u64().unwrap();
    // A soft cap: counted as the instance last knew the room (the README says so), so joins
    // through other instances within a tick, or isolates at the edge, pass it by a few.
    let slack = if t.behind_runtime_front {
        8
    } else if t.behind_nginx {
        3
    } else {
        0
    };
    assert!((2..=2 + slack).contains(&waiting), "waiting {waiting}");

    let page = t.page(&format!("/{room}"), &[], false).await;
    assert_eq!(
        page.header("x-queuegate-status"),
        Some("full"),
        "{}",
        page.text
    );
    assert!(page.text.contains("The line is full"), "{}", page.text);
    assert!(page.header("retry-after").is_some());
    assert!(page.header("set-cookie").is_none());
    // Whoever holds a place keeps it.
    let cookie = [(format!("qg_ticket_{room}"), ticket_of(&first))];
    let kept = t.page(&format!("/{room}"), &cookie, true).await;
    assert_eq!(kept.json["position"], 1, "{}", kept.text);
}

pub async fn a_passthrough_room_queues_nobody(t: &Target) {
    let room = unique("through");
    let config = json!({"max_active": 1, "paths": [format!("/{room}")]});
    t.put_room(&room, config.clone()).await;
    t.pause(&room).await;
    let held = t.join(&room, None).await;
    assert_eq!(held.json["status"], "waiting", "{}", held.text);

    let mut through = config.clone();
    through["mode"] = json!("passthrough");
    assert_eq!(t.put_room(&room, through).await["mode"], "passthrough");
    for n in 0..3 {
        let page = t.page(&format!("/{room}/x"), &[], false).await;
        assert_eq!(page.header("x-upstream"), Some("yes"), "{n}: {}", page.text);
        assert!(page.header("set-cookie").is_none(), "{}", page.text);
    }
    let joined = t.join(&room, None).await;
    assert_eq!(joined.status, 200, "{}", joined.text);
    assert_eq!(joined.json["status"], "admitted", "{}", joined.text);
    assert!(joined.json["ticket"].is_null(), "{}", joined.text);
    // The room's numbers stay live: the place held before is still counted.
    assert_eq!(t.room(&room).await["stats"]["waiting"], 1);
    // Back to a line: the gate queues again.
    t.put_room(&room, config).await;
    let page = t.page(&format!("/{room}/x"), &[], false).await;
    assert_eq!(
        page.header("x-queuegate-status"),
        Some("waiting"),
        "{}",
        page.text
    );
}

/// A waiting visitor who stops asking (closed the tab) loses the place after the room's
/// `abandon_after_s`, before admission reaches it: it takes neither an admission nor a slot, and
/// the visitor behind moves up. One who keeps asking keeps the place however long it waits.
pub async fn a_visitor_who_stops_asking_gives_up_the_place(t: &Target) {
    let room = paused_room(
        t,
        "abandon",
        json!({"max_active": 10, "admit_per_minute": 60000, "abandon_after_s": 4,
               "paths": [format!("/{room_path}", room_path = "abandon")]}),
    )
    .await;
    let gone = t.join(&room, None).await;
    assert_eq!(status_of(&gone), "waiting", "{}", gone.text);
    // Told to ask at least four times within the room's abandon_after_s.
    assert!(
        gone.json["poll_after_ms"].as_u64().unwrap() <= 1_000,
        "{}",
        gone.text
    );
    let present = t.join(&room, None).await;
    let present_ticket = ticket_of(&present);
    // Second in line (at the edge a position at join is an estimate that settles within a
    // tick or two).
    position_settles(t, &room, &present_ticket, 2).await;
    // Only the second visitor asks, once a second, until the first's place is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        t.advance(Duration::from_secs(1)).await;
        let reply = t.status(&room, &present_ticket).await;
        assert_eq!(status_of(&reply), "waiting", "{}", reply.text);
        if reply.json["position"] == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place of a visitor who stopped asking is still ahead: {}",
            reply.text
        );
    }
    let back = t.status(&room, &ticket_of(&gone)).await;
    assert_eq!(status_of(&back), "left", "{}", back.text);
    t.resume(&room).await;
    status_becomes(
        t,
        &room,
        &present_ticket,
        "admitted",
        Duration::from_secs(20),
    )
    .await;
    // One admission: the place given up took none, and the room counts it as abandoned.
    let stats = t.room(&room).await;
    assert_eq!(stats["stats"]["admitted_total"], 1, "{stats}");
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["abandoned_total"] == 1
    })
    .await;
}

/// An admitted visitor who never comes for the admission (closed the tab just before the turn
/// came) gives it back once unseen for the room's `abandon_after_s`, not at the end of the claim
/// window: the slot frees and the admission is refunded to the rate, so the visitor behind, who
/// keeps asking, comes in at once although the room admits one a minute and holds one.
pub async fn an_admitted_visitor_who_never_comes_gives_the_admission_back(t: &Target) {
    let room = paused_room(
        t,
        "noshow",
        json!({"max_active": 1, "admit_per_minute": 1, "abandon_after_s": 4, "shards": 1,
               "claim_window_s": 120, "paths": [format!("/{room_path}", room_path = "noshow")]}),
    )
    .await;
    let gone = ticket_of(&t.join(&room, None).await);
    let present = ticket_of(&t.join(&room, None).await);
    // The first in line, seen just now, is admitted (the bucket's one admission) and never
    // asks again.
    assert_eq!(status_of(&t.status(&room, &gone).await), "waiting");
    assert_eq!(t.admit(&room, 1).await, 1);
    t.resume(&room).await;
    let mut admitted = false;
    for _ in 0..30 {
        t.advance(Duration::from_secs(1)).await;
        let reply = t.status(&room, &present).await;
        if status_of(&reply) == "admitted" {
            admitted = true;
            break;
        }
        assert_eq!(status_of(&reply), "waiting", "{}", reply.text);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        admitted,
        "the visitor behind a no-show was not admitted within 30 s: {}",
        t.room(&room).await
    );
    let back = t.status(&room, &gone).await;
    assert_eq!(status_of(&back), "left", "{}", back.text);
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["no_shows_total"] == 1 && v["stats"]["admitted_total"] == 2
    })
    .await;
}

/// In random mode each admission draws among everyone waiting, wherever they joined: nobody is
/// shown a place in line, each is admitted once, and the page says how the line works.
pub async fn a_random_room_draws_among_everyone_waiting(t: &Target) {
    let room = unique("random");
    let view = t
        .put_room(
            &room,
            json!({"max_active": 100, "mode": "random", "shards": 2,
                   "paths": [format!("/{room}")]}),
        )
        .await;
    assert_eq!(view["mode"], "random", "{view}");
    t.pause(&room).await;
    let mut tickets = Vec::new();
    for n in 0..30 {
        let joined = t.join(&room, None).await;
        assert_eq!(status_of(&joined), "waiting", "{n}: {}", joined.text);
        assert!(joined.json["position"].is_null(), "{n}: {}", joined.text);
        assert_eq!(joined.json["random"], true, "{n}: {}", joined.text);
        tickets.push(ticket_of(&joined));
    }
    // Polls find the admitted (at the edge within a publication or two).
    let admitted_within = |want: usize| {
        let tickets = tickets.clone();
        let room = room.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            loop {
                let mut admitted = Vec::new();
                for (i, ticket) in tickets.iter().enumerate() {
                    let reply = t.status(&room, ticket).await;
                    match status_of(&reply) {
                        "admitted" => admitted.push(i),
                        "waiting" => assert!(reply.json["position"].is_null(), "{}", reply.text),
                        other => panic!("{i}: {other}: {}", reply.text),
                    }
                }
                if admitted.len() >= want || tokio::time::Instant::now() > deadline {
                    return admitted;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(t.admit(&room, 6).await, 6);
    let first = admitted_within(6).await;
    assert_eq!(first.len(), 6, "{first:?}");
    // The first six in join order would come up once in 593,775 draws.
    assert_ne!(
        first,
        (0..6).collect::<Vec<_>>(),
        "the draw took the head of the line"
    );
    assert_eq!(t.admit(&room, 100).await, 24);
    let all = admitted_within(30).await;
    assert_eq!(all.len(), 30, "{all:?}");
    assert_eq!(waiting(t, &room).await, 0);
    // A browser arriving now is told it waits for a draw, not a place.
    let page = t.page(&format!("/{room}/x"), &[], false).await;
    assert_eq!(
        page.header("x-queuegate-status"),
        Some("waiting"),
        "{}",
        page.text
    );
    assert!(page.text.contains("drawn at random"), "{}", page.text);
}
