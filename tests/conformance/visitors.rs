//! The public API: joins, positions, admission, leaving.

use super::*;

pub async fn join_returns_a_ticket_and_a_place(t: &Target) {
    let room = paused_room(t, "join", json!({"max_active": 5, "shards": 2})).await;
    let reply = t.join(&room, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(status_of(&reply), "waiting");
    assert_eq!(reply.json["position"], 1);
    assert_eq!(reply.json["room"], room.as_str());
    assert!(reply.json["ticket_id"].is_string());
    // Paused: nobody is being let in, so the honest estimate is "unknown".
    assert!(reply.json["eta_seconds"].is_null(), "{}", reply.text);
    assert!(reply.json["poll_after_ms"].as_u64().unwrap() >= 1000);
    let ticket = ticket_of(&reply);
    assert_eq!(
        reply.cookie(&format!("qg_ticket_{room}")).as_deref(),
        Some(ticket.as_str())
    );
    let cookie = reply
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("qg_ticket_"))
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));

    let second = t.join(&room, None).await;
    position_settles(t, &room, &ticket_of(&second), 2).await;
    t.resume(&room).await;
    let view = t.room(&room).await;
    assert!(view["stats"]["waiting"].as_u64().unwrap() <= 2);
}

pub async fn status_tracks_position_then_admission(t: &Target) {
    let room = paused_room(t, "status", json!({"max_active": 10, "shards": 3})).await;
    let mut tickets = Vec::new();
    for _ in 0..3 {
        tickets.push(ticket_of(&t.join(&room, None).await));
    }
    position_settles(t, &room, &tickets[2], 3).await;
    let third = t.status(&room, &tickets[2]).await;
    assert_eq!(status_of(&third), "waiting");
    assert!(third.json.get("pass").is_none());

    assert_eq!(t.admit(&room, 1).await, 1);
    let first = t.status(&room, &tickets[0]).await;
    assert_eq!(status_of(&first), "admitted", "{}", first.text);
    let pass = pass_of(&first);
    assert_eq!(
        first.cookie(&format!("qg_pass_{room}")).as_deref(),
        Some(pass.as_str())
    );
    assert!(first.json["pass_expires_at"].as_u64().unwrap() > now_ms());
    position_settles(t, &room, &tickets[2], 2).await;

    // The admitted visitor is active now; stats agree.
    let view = t.room(&room).await;
    assert_eq!(view["stats"]["active"], 1, "{view}");
    assert_eq!(view["stats"]["waiting"], 2, "{view}");
    assert_eq!(view["stats"]["admitted_total"], 1, "{view}");
    // Asking again does not admit twice.
    let again = t.status(&room, &tickets[0]).await;
    assert_eq!(status_of(&again), "admitted");
    assert_eq!(t.room(&room).await["stats"]["active"], 1);
}

pub async fn leave_frees_the_place_and_the_slot(t: &Target) {
    let room = unique("leave");
    t.put_room(
        &room,
        json!({"max_active": 1, "shards": 2, "paths": [format!("/{room}")]}),
    )
    .await;
    t.pause(&room).await;
    let a = ticket_of(&t.join(&room, None).await);
    let b = ticket_of(&t.join(&room, None).await);
    let c = ticket_of(&t.join(&room, None).await);

    // A waiting visitor leaves: the one behind moves up and the leaver stays gone.
    let left = t.leave(&room, &b).await;
    assert_eq!(left.status, 200, "{}", left.text);
    assert_eq!(status_of(&left), "left");
    let cleared = left.set_cookies();
    assert!(cleared
        .iter()
        .any(|c| c.starts_with(&format!("qg_ticket_{room}=;")) && c.contains("Max-Age=0")));
    assert_eq!(status_of(&t.status(&room, &b).await), "left");
    position_settles(t, &room, &c, 2).await;
    assert_eq!(
        status_of(&t.leave(&room, &b).await),
        "left",
        "leave is idempotent"
    );

    // An admitted visitor leaves with the pass: the slot goes to the next one.
    assert_eq!(t.admit(&room, 5).await, 1);
    let admitted = t.status(&room, &a).await;
    let pass = pass_of(&admitted);
    assert_eq!(t.admit(&room, 5).await, 0, "full");
    assert_eq!(status_of(&t.leave(&room, &pass).await), "left");
    assert_eq!(t.room(&room).await["stats"]["active"], 0);
    assert_eq!(
        t.admit(&room, 5).await,
        1,
        "the freed slot goes to the next visitor"
    );
    assert_eq!(status_of(&t.status(&room, &c).await), "admitted");
    // The leaver's pass no longer opens the gate.
    let page = t
        .page(
            &format!("/{room}/x"),
            &[(format!("qg_pass_{room}"), pass)],
            true,
        )
        .await;
    assert!(page.header("x-upstream").is_none(), "{}", page.text);
}

pub async fn leavers_are_never_admitted(t: &Target) {
    let room = paused_room(t, "leavers", json!({"max_active": 50, "shards": 2})).await;
    let tickets: Vec<String> = futures_join(t, &room, 6).await;
    for i in [0, 2, 3] {
        assert_eq!(status_of(&t.leave(&room, &tickets[i]).await), "left");
    }
    assert_eq!(t.admit(&room, 10).await, 3, "only the three still waiting");
    for (i, ticket) in tickets.iter().enumerate() {
        let expected = if [0, 2, 3].contains(&i) {
            "left"
        } else {
            "admitted"
        };
        assert_eq!(
            status_of(&t.status(&room, ticket).await),
            expected,
            "visitor {i}"
        );
    }
}
