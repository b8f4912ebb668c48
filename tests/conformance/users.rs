//! Two ways to name a user: a plain `user_id` holds one place, handed back only with its ticket;
//! a `user_token` the application signed (HS256, a `kid` among `QUEUEGATE_APP_KEYS`) proves the
//! user and hands the place, its ticket and its pass back on any device.

use super::*;
use queuegate::SigningKeys;

use crate::support::{user_token, APP_KEYS};

async fn join_with(t: &Target, room: &str, body: Value) -> Reply {
    t.send(
        t.client
            .post(t.api(&format!("/rooms/{room}/join")))
            .json(&body),
    )
    .await
}

pub async fn a_user_token_hands_the_place_back_on_any_device(t: &Target) {
    let room = paused_room(t, "tokens", json!({"max_active": 5, "shards": 4})).await;
    let first = join_with(t, &room, json!({"user_token": user_token("carol")})).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let id = first.json["ticket_id"].clone();
    // Another device, no cookie: the same place, with a ticket for it.
    let other = join_with(t, &room, json!({"user_token": user_token("carol")})).await;
    assert_eq!(other.status, 200, "{}", other.text);
    assert_eq!(other.json["ticket_id"], id);
    assert_eq!(other.json["position"], 1);
    let ticket = ticket_of(&other);
    assert_eq!(status_of(&t.status(&room, &ticket).await), "waiting");
    // The plain user id is not enough to take it.
    let claimed = t.join(&room, Some("carol")).await;
    assert_error(&claimed, 409, "user_already_queued", "a plain user id");
    // Once admitted, the token brings the pass along.
    assert_eq!(t.admit(&room, 1).await, 1);
    let admitted = join_with(t, &room, json!({"user_token": user_token("carol")})).await;
    assert_eq!(status_of(&admitted), "admitted", "{}", admitted.text);
    assert_eq!(admitted.json["ticket_id"], id);
    assert!(admitted.json["pass"].is_string(), "{}", admitted.text);
    // A token and a user id that disagree.
    let both = join_with(
        t,
        &room,
        json!({"user_token": user_token("dave"), "user_id": "carol"}),
    )
    .await;
    assert_error(&both, 400, "invalid_request", "token and user id disagree");
    assert_eq!(t.room(&room).await["stats"]["admitted_total"], 1);
}

pub async fn user_tokens_not_signed_by_the_application_are_refused(t: &Target) {
    let room = paused_room(t, "badtokens", json!({"max_active": 5})).await;
    let app = SigningKeys::parse(APP_KEYS).unwrap();
    let stranger = SigningKeys::parse("app1:somebody-elses-secret").unwrap();
    let in_a_minute = now_ms() / 1000 + 60;
    let genuine = user_token("erin");
    let parts: Vec<&str> = genuine.split('.').collect();
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"app1"}"#);
    let cases = [
        (
            "another key",
            queuegate::apptoken::sign(&json!({"sub": "erin", "exp": in_a_minute}), &stranger),
        ),
        (
            "expired",
            queuegate::apptoken::sign(&json!({"sub": "erin", "exp": now_ms() / 1000 - 1}), &app),
        ),
        (
            "another user written in",
            format!(
                "{}.{}.{}",
                parts[0],
                URL_SAFE_NO_PAD.encode(json!({"sub": "mallory", "exp": in_a_minute}).to_string()),
                parts[2]
            ),
        ),
        ("alg none", format!("{none_header}.{}.", parts[1])),
        ("not a JWT", "not-a-jwt".to_owned()),
    ];
    for (what, token) in cases {
        let reply = join_with(t, &room, json!({ "user_token": token })).await;
        assert_error(&reply, 401, "invalid_user_token", what);
    }
    assert_eq!(t.room(&room).await["stats"]["waiting"], 0);
}
