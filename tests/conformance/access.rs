//! Who may take a place: proof-of-work challenges, invite-only rooms and the infinite queue for
//! suspicious clients. The suite's requests come from 127.0.0.1 and "another client" from
//! 127.0.0.2 (see limits.rs).

use queuegate::challenge::{leading_zero_bits, solve};
use queuegate::SigningKeys;

use super::*;
use crate::support::APP_KEYS;

/// A client whose requests come from 127.0.0.2.
fn another_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .expect("a client")
}

async fn join_with(t: &Target, client: &reqwest::Client, room: &str, body: Value) -> Reply {
    t.send(
        client
            .post(t.api(&format!("/rooms/{room}/join")))
            .json(&body),
    )
    .await
}

/// Asks for a challenge and checks its shape; returns the token.
async fn challenge_for(t: &Target, client: &reqwest::Client, room: &str, bits: u64) -> String {
    let reply = join_with(t, client, room, json!({})).await;
    assert_error(&reply, 403, "challenge_required", "a join without a proof");
    let challenge = &reply.json["challenge"];
    assert_eq!(challenge["kind"], "pow", "{}", reply.text);
    assert_eq!(challenge["difficulty"], bits, "{}", reply.text);
    assert!(
        challenge["expires_at"].as_u64().unwrap() > now_ms(),
        "{}",
        reply.text
    );
    assert!(reply.json["ticket"].is_null(), "{}", reply.text);
    challenge["token"].as_str().unwrap().to_owned()
}

async fn waiting(t: &Target, room: &str) -> u64 {
    t.room(room).await["stats"]["waiting"].as_u64().unwrap()
}

pub async fn proof_of_work_rooms_take_each_solved_challenge_once(t: &Target) {
    let room = unique("pow");
    let view = t
        .put_room(
            &room,
            json!({"max_active": 5, "paths": [format!("/{room}")],
                   "challenge": {"kind": "pow", "difficulty": 8}}),
        )
        .await;
    assert_eq!(
        view["challenge"],
        json!({"kind": "pow", "difficulty": 8, "noscript": "refuse"}),
        "{view}"
    );
    t.pause(&room).await;
    let me = &t.client;

    // A wrong nonce is refused; the right one gets a place, once.
    let token = challenge_for(t, me, &room, 8).await;
    let wrong = (0u64..)
        .map(|n| n.to_string())
        .find(|n| leading_zero_bits(&token, n) < 8)
        .unwrap();
    let refused = join_with(
        t,
        me,
        &room,
        json!({"challenge": {"token": token, "nonce": wrong}}),
    )
    .await;
    assert_error(&refused, 403, "challenge_failed", "a wrong nonce");
    let nonce = solve(&token, 8);
    let answer = json!({"challenge": {"token": token, "nonce": nonce}});
    let joined = join_with(t, me, &room, answer.clone()).await;
    assert_eq!(joined.status, 200, "a solved challenge: {}", joined.text);
    assert_eq!(joined.json["position"], 1, "{}", joined.text);
    let reused = join_with(t, me, &room, answer).await;
    assert_error(&reused, 403, "challenge_failed", "a solution used twice");

    // A challenge is bound to the client it was given to.
    let theirs = challenge_for(t, &another_client(), &room, 8).await;
    let stolen = json!({"challenge": {"token": theirs, "nonce": solve(&theirs, 8)}});
    let reply = join_with(t, me, &room, stolen.clone()).await;
    assert_error(
        &reply,
        403,
        "challenge_failed",
        "another client's challenge",
    );
    let reply = join_with(t, &another_client(), &room, stolen).await;
    assert_eq!(reply.status, 200, "its own client: {}", reply.text);

    // A browser without a place gets the page that solves the challenge, and no place yet.
    let page = t.page(&format!("/{room}"), &[], false).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.header("x-queuegate-status"), Some("challenge"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(page.text.contains("new Worker("), "{}", page.text);
    assert!(page.header("set-cookie").is_none(), "{}", page.text);
    // A client asking the gate for JSON gets the challenge itself.
    let json_page = t.page(&format!("/{room}"), &[], true).await;
    assert_error(&json_page, 403, "challenge_required", "the gate, in JSON");
    // One holding a place is answered for it.
    let cookie = [(format!("qg_ticket_{room}"), ticket_of(&joined))];
    let held = t.page(&format!("/{room}"), &cookie, true).await;
    assert_eq!(held.status, 200, "{}", held.text);
    assert_eq!(held.json["position"], 1, "{}", held.text);
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["waiting"] == 2
    })
    .await;
}

pub async fn a_room_may_let_browsers_without_script_join_unchallenged(t: &Target) {
    let room = unique("noscript");
    t.put_room(
        &room,
        json!({"max_active": 5, "paths": [format!("/{room}")],
               "challenge": {"kind": "pow", "difficulty": 8, "noscript": "join"}}),
    )
    .await;
    t.pause(&room).await;
    let page = t.page(&format!("/{room}"), &[], false).await;
    assert_eq!(
        page.header("x-queuegate-status"),
        Some("waiting"),
        "{}",
        page.text
    );
    assert!(page.cookie(&format!("qg_ticket_{room}")).is_some());
    // The API still asks for the proof.
    let reply = t.join(&room, None).await;
    assert_error(&reply, 403, "challenge_required", "an API join");
    for bad in [0, 33] {
        let reply = t
            .send(
                t.admin(Method::PUT, &format!("/rooms/{}", unique("badpow")))
                    .json(&json!({"challenge": {"kind": "pow", "difficulty": bad}})),
            )
            .await;
        assert_error(&reply, 422, "invalid_config", "difficulty out of range");
    }
}

fn invite(room: &str, jti: &str, client_ip: Option<&str>) -> String {
    let keys = SigningKeys::parse(APP_KEYS).unwrap();
    let mut claims = json!({"sub": room, "exp": now_ms() / 1000 + 60, "jti": jti});
    if let Some(ip) = client_ip {
        claims["client_ip"] = json!(ip);
    }
    queuegate::apptoken::sign(&claims, &keys)
}

pub async fn invite_only_rooms_take_each_invite_once(t: &Target) {
    let room = unique("vip");
    let view = t
        .put_room(
            &room,
            json!({"max_active": 5, "paths": [format!("/{room}")], "access": "invite"}),
        )
        .await;
    assert_eq!(view["access"], "invite", "{view}");
    t.pause(&room).await;
    let me = &t.client;

    let none = join_with(t, me, &room, json!({})).await;
    assert_error(&none, 403, "invite_required", "no invite");
    let other_room = join_with(
        t,
        me,
        &room,
        json!({"invite": invite("elsewhere", "a", None)}),
    )
    .await;
    assert_error(&other_room, 403, "invite_required", "another room's invite");
    let forged_keys = SigningKeys::parse("app1:not-the-application-secret").unwrap();
    let forged = queuegate::apptoken::sign(
        &json!({"sub": room, "exp": now_ms() / 1000 + 60, "jti": "f"}),
        &forged_keys,
    );
    let reply = join_with(t, me, &room, json!({ "invite": forged })).await;
    assert_error(&reply, 403, "invite_required", "a forged invite");

    let good = invite(&room, "inv-1", None);
    let joined = join_with(t, me, &room, json!({ "invite": good })).await;
    assert_eq!(joined.status, 200, "an invite: {}", joined.text);
    let again = join_with(t, &another_client(), &room, json!({ "invite": good })).await;
    assert_error(&again, 403, "invite_used", "the same invite again");

    // Bound to another client: not this one's.
    let bound = invite(&room, "inv-2", Some("127.0.0.2"));
    let reply = join_with(t, me, &room, json!({ "invite": bound })).await;
    assert_error(&reply, 403, "invite_required", "another client's invite");
    let reply = join_with(t, &another_client(), &room, json!({ "invite": bound })).await;
    assert_eq!(reply.status, 200, "its client: {}", reply.text);

    // At the gate: `?qg_invite=` on the URL, and a page that says why without one.
    let url = format!("/{room}?qg_invite={}", invite(&room, "inv-3", None));
    let page = t.page(&url, &[], true).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.json["status"], "waiting", "{}", page.text);
    let refused = t.page(&format!("/{room}"), &[], false).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert_eq!(
        refused.header("x-queuegate-status"),
        Some("invite_required")
    );
    assert!(refused.text.contains("by invitation"), "{}", refused.text);
    let used = t.page(&url, &[], true).await;
    assert_error(&used, 403, "invite_used", "a used invite at the gate");
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["waiting"] == 3
    })
    .await;
}

pub async fn suspicious_clients_can_be_sent_to_an_infinite_queue(t: &Target) {
    let room = unique("decoy");
    t.put_room(
        &room,
        json!({"max_active": 5, "paths": [format!("/{room}")], "suspicious": "infinite_queue",
               "join_limit": {"per_client_per_min": 1, "burst": 1}}),
    )
    .await;
    t.pause(&room).await;
    let real = t.join(&room, None).await;
    assert_eq!(real.status, 200, "{}", real.text);
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["waiting"] == 1
    })
    .await;

    // Over the limit: an answer like any other, for a place no store holds.
    let caught = t.join(&room, None).await;
    assert_eq!(caught.status, 200, "{}", caught.text);
    assert_eq!(caught.json["status"], "waiting", "{}", caught.text);
    let position = caught.json["position"].as_u64().unwrap();
    assert!(position >= 1, "{}", caught.text);
    let decoy = ticket_of(&caught);
    assert_eq!(decoy.len(), ticket_of(&real).len(), "looks like any ticket");
    assert!(caught.cookie(&format!("qg_ticket_{room}")).is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(waiting(t, &room).await, 1, "the decoy is in no store");

    // Admissions pass it by; its position never reaches the front.
    t.resume(&room).await;
    t.admit(&room, 5).await;
    let admitted = t.status(&room, &ticket_of(&real)).await;
    assert_eq!(admitted.json["status"], "admitted", "{}", admitted.text);
    let status = t.status(&room, &decoy).await;
    assert_eq!(status.json["status"], "waiting", "{}", status.text);
    assert!(status.json["position"].as_u64().unwrap() >= 1);
    assert!(status.json["pass"].is_null(), "{}", status.text);
    let cookie = [(format!("qg_ticket_{room}"), decoy.clone())];
    let page = t.page(&format!("/{room}"), &cookie, true).await;
    assert_eq!(page.header("x-queuegate-status"), Some("waiting"));

    // Leaving it touches no real place, whatever place it names.
    let left = t.leave(&room, &decoy).await;
    assert_eq!(left.status, 200, "{}", left.text);
    assert_eq!(left.json["status"], "left", "{}", left.text);
    let after = t.status(&room, &ticket_of(&real)).await;
    assert_eq!(after.json["status"], "admitted", "{}", after.text);

    // A failed challenge in such a room goes the same way.
    let pow_room = unique("decoy-pow");
    t.put_room(
        &pow_room,
        json!({"max_active": 5, "suspicious": "infinite_queue",
               "challenge": {"kind": "pow", "difficulty": 8}}),
    )
    .await;
    let token = challenge_for(t, &t.client, &pow_room, 8).await;
    let wrong = (0u64..)
        .map(|n| n.to_string())
        .find(|n| leading_zero_bits(&token, n) < 8)
        .unwrap();
    let reply = join_with(
        t,
        &t.client,
        &pow_room,
        json!({"challenge": {"token": token, "nonce": wrong}}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["status"], "waiting", "{}", reply.text);
    assert_eq!(waiting(t, &pow_room).await, 0);
}
