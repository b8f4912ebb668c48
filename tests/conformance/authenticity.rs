//! Invariant 4: tickets and passes not signed for this room, this time, this place are refused.

use super::*;

pub async fn forged_and_altered_tickets_are_refused(t: &Target) {
    let room = paused_room(t, "forged", json!({"max_active": 5})).await;
    let ticket = ticket_of(&t.join(&room, None).await);
    let raw = URL_SAFE_NO_PAD.decode(&ticket).unwrap();
    // Every byte position, changed: refused as invalid, never a 5xx.
    for i in 0..raw.len() {
        let mut bytes = raw.clone();
        bytes[i] ^= 0x5a;
        let tampered = URL_SAFE_NO_PAD.encode(&bytes);
        assert_error(
            &t.status(&room, &tampered).await,
            401,
            "invalid_ticket",
            &format!("byte {i}"),
        );
    }
    for junk in ["x", "", "AAAA", &"A".repeat(5000), "a.b.c", "%%%"] {
        let reply = t
            .send(
                t.client
                    .get(t.api(&format!("/rooms/{room}/status")))
                    .header("authorization", format!("Bearer {junk}")),
            )
            .await;
        assert!(
            reply.status == 401,
            "junk {junk:?}: {} {}",
            reply.status,
            reply.text
        );
    }
    // A join with a bad bearer ticket is refused too; a bad cookie is ignored (a new place).
    let last = if ticket.ends_with('A') { "B" } else { "A" };
    let bad = format!("{}{last}", &ticket[..ticket.len() - 1]);
    let reply = t
        .send(
            t.client
                .post(t.api(&format!("/rooms/{room}/join")))
                .bearer_auth(&bad),
        )
        .await;
    assert!(reply.status == 401, "{}", reply.text);
    let reply = t
        .send(
            t.client
                .post(t.api(&format!("/rooms/{room}/join")))
                .header("cookie", format!("qg_ticket_{room}={bad}")),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json["position"], 2);
}

pub async fn tickets_of_other_keys_rooms_or_times_are_refused(t: &Target) {
    let room = paused_room(t, "keys", json!({"max_active": 5})).await;
    let other_room = paused_room(t, "keys-other", json!({"max_active": 5})).await;
    let reply = t.join(&room, None).await;
    let ticket = ticket_of(&reply);
    let room_id = RoomId::parse(&room).unwrap();
    let genuine =
        Ticket::decode(&ticket, &t.keys, &room_id, now_ms()).expect("test holds the keys");

    // Signed with a key the target does not have.
    let foreign_keys =
        queuegate::SigningKeys::parse("test1:not-the-targets-secret-at-all").unwrap();
    let forged = genuine.encode(&foreign_keys);
    assert_error(
        &t.status(&room, &forged).await,
        401,
        "invalid_ticket",
        "foreign key",
    );

    // Expired.
    let mut expired = genuine.clone();
    expired.expires_at = now_ms() - 1;
    assert_error(
        &t.status(&room, &expired.encode(&t.keys)).await,
        401,
        "ticket_expired",
        "expired",
    );

    // For another room.
    assert_error(
        &t.status(&other_room, &ticket).await,
        403,
        "ticket_wrong_room",
        "wrong room",
    );

    // Signed with the previous key, still accepted while it is configured.
    let old_only = queuegate::SigningKeys::parse("old0:conformance-signing-secret-0000").unwrap();
    let rotated = genuine.encode(&old_only);
    let reply = t.status(&room, &rotated).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["ticket_id"], genuine.ticket_id());

    // A place the room never gave out (a genuine signature on an unknown place).
    let mut unknown = genuine.clone();
    unknown.place = Place {
        seq: 1_000_000,
        ..genuine.place
    };
    assert_eq!(
        status_of(&t.status(&room, &unknown.encode(&t.keys)).await),
        "expired"
    );

    // A pass is not a ticket.
    assert_eq!(t.admit(&room, 1).await, 1);
    let pass = pass_of(&t.status(&room, &ticket).await);
    assert_error(
        &t.status(&room, &pass).await,
        401,
        "invalid_ticket",
        "pass as ticket",
    );
}

pub async fn passes_are_bound_to_room_ticket_and_time(t: &Target) {
    let room = unique("passes");
    t.put_room(
        &room,
        json!({"max_active": 5, "paths": [format!("/{room}")]}),
    )
    .await;
    t.pause(&room).await;
    let other = unique("passes-other");
    t.put_room(
        &other,
        json!({"max_active": 5, "paths": [format!("/{other}")]}),
    )
    .await;
    t.pause(&other).await;
    let ticket = ticket_of(&t.join(&room, None).await);
    t.admit(&room, 1).await;
    let pass = pass_of(&t.status(&room, &ticket).await);
    let cookie = format!("qg_pass_{room}");

    let through = t
        .page(
            &format!("/{room}/page"),
            &[(cookie.clone(), pass.clone())],
            true,
        )
        .await;
    assert_eq!(
        through.header("x-upstream"),
        Some("yes"),
        "{}",
        through.text
    );
    assert!(through.text.starts_with(&format!("upstream /{room}/page")));

    let room_id = RoomId::parse(&room).unwrap();
    let genuine = Pass::decode(&pass, &t.keys, &room_id, now_ms()).unwrap();
    let mut refused: Vec<(String, String, String)> = Vec::new();
    // Altered.
    let mut raw = URL_SAFE_NO_PAD.decode(&pass).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    refused.push((
        "altered".into(),
        cookie.clone(),
        URL_SAFE_NO_PAD.encode(&raw),
    ));
    // Expired.
    let mut expired = genuine.clone();
    expired.expires_at = now_ms() - 1;
    refused.push(("expired".into(), cookie.clone(), expired.encode(&t.keys)));
    // Another room's cookie name with this room's pass, at the other room's gate.
    refused.push((
        "other room".into(),
        format!("qg_pass_{other}"),
        pass.clone(),
    ));
    // A genuine signature for a place that was never admitted.
    let mut stranger = genuine.clone();
    stranger.place.seq += 1;
    refused.push((
        "another ticket".into(),
        cookie.clone(),
        stranger.encode(&t.keys),
    ));
    for (what, name, value) in refused {
        let path = if name.ends_with(&other) {
            format!("/{other}/page")
        } else {
            format!("/{room}/page")
        };
        let reply = t.page(&path, &[(name, value)], true).await;
        assert!(
            reply.header("x-upstream").is_none(),
            "{what}: {}",
            reply.text
        );
        assert_eq!(reply.status, 200, "{what}: the waiting page");
        assert_eq!(status_of(&reply), "waiting", "{what}: {}", reply.text);
    }
}

pub async fn revoked_sessions_lose_the_gate(t: &Target) {
    let room = unique("revoke");
    t.put_room(
        &room,
        json!({"max_active": 5, "paths": [format!("/{room}")]}),
    )
    .await;
    t.pause(&room).await;
    let joined = t.join(&room, None).await;
    let ticket = ticket_of(&joined);
    let id = joined.json["ticket_id"].as_str().unwrap().to_owned();
    t.admit(&room, 1).await;
    let pass = pass_of(&t.status(&room, &ticket).await);
    let cookies = [(format!("qg_pass_{room}"), pass)];
    assert_eq!(
        t.page(&format!("/{room}/x"), &cookies, true)
            .await
            .header("x-upstream"),
        Some("yes")
    );
    let reply = t
        .send(
            t.admin(Method::POST, &format!("/rooms/{room}/revoke"))
                .json(&json!({ "ticket_id": id })),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["revoked"], true);
    let after = t.page(&format!("/{room}/x"), &cookies, true).await;
    assert!(
        after.header("x-upstream").is_none(),
        "{} {:?}",
        after.text,
        after.set_cookies()
    );
    assert_eq!(status_of(&t.status(&room, &ticket).await), "left");
    assert_eq!(t.room(&room).await["stats"]["active"], 0);
    // Revoking again ends nothing.
    let again = t
        .send(
            t.admin(Method::POST, &format!("/rooms/{room}/revoke"))
                .json(&json!({ "ticket_id": id })),
        )
        .await;
    assert_eq!(again.json["revoked"], false);
}

pub async fn the_admin_api_needs_the_key(t: &Target) {
    let room = unique("admin");
    for (what, auth) in [
        ("none", None),
        ("wrong", Some("Bearer wrong-key")),
        ("basic", Some("Basic Y29uZm9ybWFuY2U6eA==")),
        ("prefix", Some("Bearer conformance-admin")),
    ] {
        let mut req = t.client.get(t.api(&format!("/admin/rooms/{room}")));
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let reply = t.send(req).await;
        assert_error(&reply, 401, "unauthorized", what);
        assert!(reply.header("www-authenticate").is_some());
        let put = t
            .send(
                t.client
                    .put(t.api(&format!("/admin/rooms/{room}")))
                    .json(&json!({}))
                    .header("authorization", auth.unwrap_or("")),
            )
            .await;
        assert_error(&put, 401, "unauthorized", what);
    }
    // Nothing was created.
    let reply = t
        .send(t.admin(Method::GET, &format!("/rooms/{room}")))
        .await;
    assert_error(&reply, 404, "unknown_room", "not created");
}
