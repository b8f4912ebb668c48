//! Invariant 6: bad input gets a 4xx with a stable code, never a 5xx.

use super::*;

pub async fn bad_input_gets_a_4xx_with_a_stable_code(t: &Target) {
    let room = paused_room(t, "bad", json!({"max_active": 5})).await;
    let join = t.api(&format!("/rooms/{room}/join"));
    let c = &t.client;
    let big = "x".repeat(200 * 1024);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "malformed json",
            c.post(&join).body("{\"user_id\":"),
            400,
            "invalid_json",
        ),
        (
            "json array",
            c.post(&join).body("[1,2]"),
            400,
            "invalid_json",
        ),
        (
            "user id of the wrong type",
            c.post(&join).body(r#"{"user_id":5}"#),
            400,
            "invalid_json",
        ),
        (
            "binary body",
            c.post(&join).body(vec![0xffu8, 0xfe, 0x00]),
            400,
            "invalid_json",
        ),
        (
            "empty user id",
            c.post(&join).body(r#"{"user_id":""}"#),
            400,
            "invalid_user_id",
        ),
        (
            "control character",
            c.post(&join).body("{\"user_id\":\"a\\u0000b\"}"),
            400,
            "invalid_user_id",
        ),
        (
            "oversized body",
            // The server answers before reading the body and drops the connection: keep it
            // out of the client's pool.
            c.post(&join)
                .header("connection", "close")
                .body(big.clone()),
            413,
            "body_too_large",
        ),
        (
            "unknown room",
            c.post(t.api("/rooms/no-such-room/join")),
            404,
            "unknown_room",
        ),
        (
            "unknown room status",
            c.get(t.api("/rooms/no-such-room/status")),
            404,
            "unknown_room",
        ),
        (
            "upper-case room",
            c.post(t.api("/rooms/BadRoom/join")),
            400,
            "invalid_room_id",
        ),
        (
            "long room id",
            c.post(t.api(&format!("/rooms/{}/join", "a".repeat(65)))),
            400,
            "invalid_room_id",
        ),
        (
            "encoded slash",
            c.post(t.api("/rooms/a%2Fb/join")),
            400,
            "invalid_path",
        ),
        (
            "bad percent encoding",
            c.post(t.api("/rooms/%ff%fe/join")),
            400,
            "invalid_room_id",
        ),
        (
            "no ticket",
            c.get(t.api(&format!("/rooms/{room}/status"))),
            401,
            "ticket_required",
        ),
        (
            "no ticket to leave",
            c.post(t.api(&format!("/rooms/{room}/leave"))),
            401,
            "ticket_required",
        ),
        ("unknown api route", c.get(t.api("/nope")), 404, "not_found"),
        (
            "wrong method",
            c.delete(t.api(&format!("/rooms/{room}/join"))),
            405,
            "method_not_allowed",
        ),
        ("get on join", c.get(&join), 405, "method_not_allowed"),
    ];
    for (what, req, status, code) in cases {
        assert_error(&t.send(req).await, status, code, what);
    }

    type AdminCase = (&'static str, Method, String, Vec<u8>, u16, &'static str);
    let admin_cases: Vec<AdminCase> = vec![
        (
            "config not json",
            Method::PUT,
            format!("/rooms/{room}"),
            b"max_active=3".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "zero capacity",
            Method::PUT,
            format!("/rooms/{room}"),
            br#"{"max_active":0}"#.to_vec(),
            422,
            "invalid_config",
        ),
        (
            "negative capacity",
            Method::PUT,
            format!("/rooms/{room}"),
            br#"{"max_active":-5}"#.to_vec(),
            422,
            "invalid_config",
        ),
        (
            "huge capacity",
            Method::PUT,
            format!("/rooms/{room}"),
            br#"{"max_active":1e300}"#.to_vec(),
            422,
            "invalid_config",
        ),
        (
            "capacity as text",
            Method::PUT,
            format!("/rooms/{room}"),
            br#"{"max_active":"ten"}"#.to_vec(),
            422,
            "invalid_config",
        ),
        (
            "absurd ttl",
            Method::PUT,
            format!("/rooms/{room}"),
            br#"{"session_ttl_s":99999999999999}"#.to_vec(),
            422,
            "invalid_config",
        ),
        (
            "zero rate",
            Method::PUT,
            format!("/rooms/{room}"),
            br#"{"admit_per_minute":0}"#.to_vec(),
            422,
            "invalid_config",
        ),
        (
            "unknown mode",
            Method::PUT,
            format!("/rooms/{room}"),
            br#"{"mode":"lottery"}"#.to_vec(),
            422,
            "invalid_config",
        ),
        (
            "unknown field",
            Method::PUT,
            format!("/rooms/{room}"),
            br#"{"max_actve":3}"#.to_vec(),
            422,
            "invalid_config",
        ),
        (
            "relative path",
            Method::PUT,
            format!("/rooms/{room}"),
            br#"{"paths":["shop"]}"#.to_vec(),
            422,
            "invalid_config",
        ),
        (
            "api path",
            Method::PUT,
            format!("/rooms/{room}"),
            br#"{"paths":["/_qg/v1/x"]}"#.to_vec(),
            422,
            "invalid_config",
        ),
        (
            "too many shards",
            Method::PUT,
            format!("/rooms/{room}"),
            br#"{"shards":100000}"#.to_vec(),
            422,
            "invalid_config",
        ),
        (
            "bad room id",
            Method::PUT,
            "/rooms/Bad_Room".to_owned(),
            b"{}".to_vec(),
            400,
            "invalid_room_id",
        ),
        (
            "admit text",
            Method::POST,
            format!("/rooms/{room}/admit"),
            br#"{"count":"all"}"#.to_vec(),
            400,
            "invalid_json",
        ),
        (
            "admit negative",
            Method::POST,
            format!("/rooms/{room}/admit"),
            br#"{"count":-1}"#.to_vec(),
            400,
            "invalid_json",
        ),
        (
            "admit absurd",
            Method::POST,
            format!("/rooms/{room}/admit"),
            br#"{"count":99999999999}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "admit nothing",
            Method::POST,
            format!("/rooms/{room}/admit"),
            b"".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "admit unknown room",
            Method::POST,
            "/rooms/no-such-room/admit".to_owned(),
            br#"{"count":1}"#.to_vec(),
            404,
            "unknown_room",
        ),
        (
            "revoke bad id",
            Method::POST,
            format!("/rooms/{room}/revoke"),
            br#"{"ticket_id":"nope"}"#.to_vec(),
            404,
            "unknown_ticket",
        ),
        (
            "revoke other epoch",
            Method::POST,
            format!("/rooms/{room}/revoke"),
            br#"{"ticket_id":"00000000-0-1"}"#.to_vec(),
            404,
            "unknown_ticket",
        ),
        (
            "pause unknown room",
            Method::POST,
            "/rooms/no-such-room/pause".to_owned(),
            b"".to_vec(),
            404,
            "unknown_room",
        ),
        (
            "oversized config",
            Method::PUT,
            format!("/rooms/{room}"),
            big.clone().into_bytes(),
            413,
            "body_too_large",
        ),
        (
            "unknown admin route",
            Method::GET,
            "/nope".to_owned(),
            b"".to_vec(),
            404,
            "not_found",
        ),
    ];
    for (what, method, path, body, status, code) in admin_cases {
        let reply = t
            .send(
                t.admin(method, &path)
                    .header("connection", "close")
                    .body(body),
            )
            .await;
        assert_error(&reply, status, code, what);
    }
    // None of that changed the room.
    let view = t.room(&room).await;
    assert_eq!(view["max_active"], 5);
    assert_eq!(view["stats"]["waiting"], 0);
}

/// Random bytes, paths and headers: the answer is never a 5xx and every API error has the
/// documented shape.
pub async fn random_input_never_gets_a_5xx(t: &Target, cases: usize) {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    let room = paused_room(t, "fuzz", json!({"max_active": 5})).await;
    let ticket = ticket_of(&t.join(&room, None).await);
    let mut runner = TestRunner::deterministic();
    let segment = proptest::string::string_regex("[A-Za-z0-9%._~-]{0,12}").unwrap();
    let body = proptest::collection::vec(proptest::num::u8::ANY, 0..300);
    let token = proptest::string::string_regex("[ -~]{0,120}").unwrap();
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ];
    for i in 0..cases {
        let seg = segment.new_tree(&mut runner).unwrap().current();
        let bytes = body.new_tree(&mut runner).unwrap().current();
        let tok = token.new_tree(&mut runner).unwrap().current();
        let method = methods[i % methods.len()].clone();
        let path = match i % 6 {
            0 => format!("/rooms/{room}/join"),
            1 => format!("/rooms/{room}/status"),
            2 => format!("/rooms/{seg}/join"),
            3 => format!("/admin/rooms/{room}"),
            4 => format!("/admin/rooms/{seg}/admit"),
            _ => format!("/{seg}"),
        };
        let mut req = t
            .client
            .request(method.clone(), t.api(&path))
            .body(bytes.clone());
        req = match i % 4 {
            0 => req.header("authorization", format!("Bearer {tok}")),
            1 => req.header("cookie", format!("qg_ticket_{room}={tok}")),
            2 => req.bearer_auth(&t.admin_key),
            _ => req.bearer_auth(&ticket),
        };
        let reply = t.send(req).await;
        assert!(
            reply.status < 500,
            "{method} {path} -> {}: {}",
            reply.status,
            reply.text
        );
        // nginx in front refuses a malformed target itself, with its own page.
        let by_nginx = t.behind_nginx && reply.status == 400 && reply.text.contains("nginx");
        if reply.status >= 400 && !by_nginx {
            assert!(
                reply.error_code().is_some(),
                "{method} {path}: {}",
                reply.text
            );
        }
    }
}
