//! Per-client join limits (`join_limit` in a room's configuration): a client (an IPv4 address,
//! or an IPv6 /64) over its room's limit gets 429 `too_many_joins` with `Retry-After` and takes
//! no place; another client is not held back by it; a visitor who presents the ticket of a place
//! it holds keeps it without being counted; a room without a limit takes every join; a room
//! whose limit penalizes takes a client that keeps knocking for a bot and ends its places.
//!
//! The suite's requests come from 127.0.0.1; "another client" connects from 127.0.0.2 (Linux
//! routes all of 127.0.0.0/8 to the loopback interface), so each target tells the two apart by
//! the connection alone (the origin trusts no proxy here; at the edge `wrangler dev` sets
//! `CF-Connecting-IP` to the connection's address).

use super::*;

pub async fn joins_over_the_client_limit_get_429_and_take_no_place(t: &Target) {
    let room = unique("limited");
    let view = t
        .put_room(
            &room,
            json!({"max_active": 5, "paths": [format!("/{room}")],
                   "join_limit": {"per_client_per_min": 6, "burst": 3}}),
        )
        .await;
    assert_eq!(
        view["join_limit"],
        json!({"per_client_per_min": 6, "burst": 3}),
        "{view}"
    );
    t.pause(&room).await;
    let mut tickets = Vec::new();
    for n in 1..=3 {
        let reply = t.join(&room, None).await;
        assert_eq!(reply.status, 200, "join {n}: {}", reply.text);
        tickets.push(ticket_of(&reply));
    }
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["waiting"] == 3
    })
    .await;

    // The fourth, from the same client: refused, with when to try again, and no place.
    let fourth = t.join(&room, None).await;
    assert_error(&fourth, 429, "too_many_joins", "the fourth join");
    let retry: u64 = fourth
        .header("retry-after")
        .unwrap_or_else(|| panic!("Retry-After on {}", fourth.text))
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=10).contains(&retry), "Retry-After {retry}");
    assert!(fourth.json["ticket"].is_null(), "{}", fourth.text);
    // A page navigation from the same client is a join too.
    let page = t.page(&format!("/{room}"), &[], true).await;
    assert_error(&page, 429, "too_many_joins", "a navigation over the limit");
    assert!(page.header("retry-after").is_some(), "{}", page.text);
    assert!(
        page.header("set-cookie").is_none(),
        "no ticket cookie: {}",
        page.text
    );
    // A browser gets the same refusal as a page that tries again by itself.
    let html = t.page(&format!("/{room}"), &[], false).await;
    assert_eq!(html.status, 429, "{}", html.text);
    assert!(html.header("retry-after").is_some(), "{}", html.text);
    assert!(html.text.contains("Too many visitors"), "{}", html.text);
    assert!(html.header("set-cookie").is_none(), "{}", html.text);

    // Presenting a place already held is no new join: answered for that place, not refused.
    let again = t
        .send(
            t.client
                .post(t.api(&format!("/rooms/{room}/join")))
                .bearer_auth(&tickets[0]),
        )
        .await;
    assert_eq!(again.status, 200, "a refresh: {}", again.text);
    assert_eq!(again.json["position"], 1, "{}", again.text);
    let cookie = [(format!("qg_ticket_{room}"), tickets[1].clone())];
    let page = t.page(&format!("/{room}"), &cookie, true).await;
    assert_eq!(page.status, 200, "a refresh at the gate: {}", page.text);
    assert_eq!(page.json["position"], 2, "{}", page.text);

    // Another client is not held back.
    let other = another_client();
    let theirs = t
        .send(other.post(t.api(&format!("/rooms/{room}/join"))))
        .await;
    assert_eq!(theirs.status, 200, "another client: {}", theirs.text);
    // Fourth in line (at the edge a position given at a join is estimated from the other
    // shards' summaries, and may run ahead for a moment before it settles).
    position_settles(t, &room, &ticket_of(&theirs), 4).await;
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["waiting"] == 4
    })
    .await;
    // Nothing the refused joins did shows up later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(waiting(t, &room).await, 4);
}

pub async fn a_room_without_a_join_limit_takes_every_join(t: &Target) {
    let room = paused_room(t, "unlimited", json!({"max_active": 5})).await;
    assert!(t.room(&room).await["join_limit"].is_null());
    for n in 1..=12 {
        let reply = t.join(&room, None).await;
        assert_eq!(reply.status, 200, "join {n}: {}", reply.text);
    }
    // A limit set later applies from then on; taken off again, it is gone.
    t.put_room(
        &room,
        json!({"max_active": 5, "join_limit": {"per_client_per_min": 1, "burst": 1}}),
    )
    .await;
    assert_eq!(t.join(&room, None).await.status, 200);
    assert_error(
        &t.join(&room, None).await,
        429,
        "too_many_joins",
        "limit set",
    );
    t.put_room(&room, json!({"max_active": 5})).await;
    assert_eq!(t.join(&room, None).await.status, 200, "limit taken off");
}

pub async fn join_limits_out_of_range_are_refused(t: &Target) {
    let room = unique("badlimit");
    for (config, what) in [
        (
            json!({"join_limit": {"per_client_per_min": 0, "burst": 3}}),
            "per_client_per_min",
        ),
        (
            json!({"join_limit": {"per_client_per_min": 6, "burst": 0}}),
            "burst",
        ),
        (json!({"join_limit": {"per_client_per_min": 6}}), "burst"),
        (
            json!({"join_limit": {"per_client_per_min": 6, "burst": 3, "x": 1}}),
            "x",
        ),
        (json!({"join_limit": 6}), "join_limit"),
        (
            json!({"join_limit": {"per_client_per_min": 6, "burst": 3, "penalize_after": 0}}),
            "penalize_after",
        ),
        (
            json!({"join_limit": {"per_client_per_min": 6, "burst": 3, "penalty_s": 60}}),
            "penalty_s",
        ),
        (
            json!({"join_limit": {"per_client_per_min": 6, "burst": 3, "penalize_after": 3,
                                  "penalty_s": 0}}),
            "penalty_s",
        ),
    ] {
        let reply = t
            .send(
                t.admin(Method::PUT, &format!("/rooms/{room}"))
                    .json(&config),
            )
            .await;
        assert_error(&reply, 422, "invalid_config", &config.to_string());
        assert!(
            reply.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains(what),
            "{config}: {}",
            reply.text
        );
    }
}

/// A client refused `penalize_after` times in a row, each time before the Retry-After of the
/// refusal before, is taken for a bot: every place it took
/// lately ends (waiting or admitted), it is refused for `penalty_s`, or sent to the infinite
/// queue when the room says so, and nobody else is touched.
pub async fn a_client_that_keeps_knocking_loses_its_places(t: &Target) {
    let room = unique("penalty");
    let limit = json!({"per_client_per_min": 6, "burst": 3, "penalize_after": 3,
                       "penalty_s": 120});
    let config = json!({"max_active": 5, "paths": [format!("/{room}")], "join_limit": limit});
    let view = t.put_room(&room, config.clone()).await;
    assert_eq!(view["join_limit"], limit, "{view}");
    t.pause(&room).await;
    let mine = futures_join(t, &room, 3).await;
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["waiting"] == 3
    })
    .await;
    assert_eq!(t.admit(&room, 1).await, 1);
    status_becomes(t, &room, &mine[0], "admitted", Duration::from_secs(10)).await;
    let other = another_client();
    let theirs = t
        .send(other.post(t.api(&format!("/rooms/{room}/join"))))
        .await;
    assert_eq!(theirs.status, 200, "another client: {}", theirs.text);
    let theirs = ticket_of(&theirs);

    // Refusals are only refusals: the places stay. The first is news; only joins before the
    // Retry-After it gave count.
    for n in 1..=3 {
        let refused = t.join(&room, None).await;
        assert_error(&refused, 429, "too_many_joins", &format!("refusal {n}"));
        let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
        assert!(retry <= 10, "refusal {n}: Retry-After {retry}");
    }
    assert_eq!(status_of(&t.status(&room, &mine[1]).await), "waiting");

    // The third early one: taken for a bot, for the penalty's two minutes.
    let penalized = t.join(&room, None).await;
    assert_error(&penalized, 429, "too_many_joins", "the fourth refusal");
    let retry: u64 = penalized.header("retry-after").unwrap().parse().unwrap();
    assert!((110..=120).contains(&retry), "Retry-After {retry}");
    for (n, ticket) in mine.iter().enumerate() {
        let reply = t.status(&room, ticket).await;
        let status = status_of(&reply);
        assert!(
            status != "waiting" && status != "admitted",
            "place {n} of the client taken for a bot: {}",
            reply.text
        );
    }
    // Nobody else loses anything: the other client is now first.
    position_settles(t, &room, &theirs, 1).await;
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["waiting"] == 1 && v["stats"]["admitted"] == 0
    })
    .await;

    // Still penalized after the join limit alone would let it in again.
    let later = t.join(&room, None).await;
    assert_error(&later, 429, "too_many_joins", "during the penalty");
    assert!(later.json["ticket"].is_null(), "{}", later.text);

    // In a room that sends suspicious clients to the infinite queue, a penalized client gets a
    // place there: it looks like any other and is never admitted.
    let mut decoyed = config.clone();
    decoyed["suspicious"] = json!("infinite_queue");
    t.put_room(&room, decoyed).await;
    let decoy = t.join(&room, None).await;
    assert_eq!(decoy.status, 200, "{}", decoy.text);
    assert_eq!(status_of(&decoy), "waiting", "{}", decoy.text);
    assert!(decoy.json["ticket"].is_string(), "{}", decoy.text);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(waiting(t, &room).await, 1, "the decoy took no real place");
}
