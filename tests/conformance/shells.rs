//! What the two shells once decided each their own way (issue 9's drift cases), now decided once
//! in the request layer: revoking a place the room never gave out, the headers the application
//! gets, the upstream's timeout, `Cache-Control` on every API answer, bodies over the limit, and
//! pass renewal on the target's clock.

use std::time::Duration;

use queuegate::{Pass, RoomId};
use reqwest::Method;
use serde_json::{json, Value};

use super::{assert_error, now_ms, open_room, paused_room, status_of, ticket_of, unique};
use crate::support::{raw_body, raw_request, Target};

pub async fn revoking_a_place_the_room_never_gave_out_is_404(t: &Target) {
    let room = paused_room(t, "revoke404", json!({"max_active": 5, "shards": 2})).await;
    let joined = t.join(&room, None).await;
    let id = joined.json["ticket_id"].as_str().unwrap().to_owned();
    let epoch = id.split('-').next().unwrap();
    let revoke = |ticket_id: String| {
        t.admin(Method::POST, &format!("/rooms/{room}/revoke"))
            .json(&json!({ "ticket_id": ticket_id }))
    };
    for (what, ticket_id) in [
        ("a shard the room does not have", format!("{epoch}-2-1")),
        (
            "a seq the shard never gave out",
            format!("{epoch}-0-999999"),
        ),
    ] {
        let reply = t.send(revoke(ticket_id)).await;
        assert_error(&reply, 404, "unknown_ticket", what);
    }
    let reply = t.send(revoke(id)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["revoked"], true);
}

/// The headers the application behind the gate got, from the test upstream's `/echo`.
fn first<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    echo[name][0].as_str()
}

pub async fn the_application_gets_the_headers_queuegate_sets(t: &Target) {
    let spoofed = |req: reqwest::RequestBuilder| {
        req.header("x-forwarded-host", "evil.example")
            .header("x-forwarded-proto", "gopher")
            .header("x-forwarded-for", "198.51.100.1")
            .header("x-queuegate-visitor", "forged")
            .header("X-Queuegate-Room", "forged")
            .header("x-queuegate-anything", "forged")
            .header("x_queuegate_visitor", "forged")
            .header("forwarded", "for=198.51.100.1;proto=https")
            .header("x-real-ip", "198.51.100.1")
            .header("proxy-connection", "keep-alive")
            .header("cookie", "a=1; qg_ticket_x=t; qg_pass_x=p; b=2")
    };
    // An unprotected path: straight through, for nobody in particular.
    let path = format!("/{}/echo", unique("free"));
    let reply = t.send(spoofed(t.client.get(t.url(&path)))).await;
    assert_eq!(reply.header("x-upstream"), Some("yes"), "{}", reply.text);
    let echo = &reply.json;
    let host = t.base.trim_start_matches("http://");
    assert_eq!(first(echo, "x-forwarded-host"), Some(host), "{echo}");
    assert_eq!(first(echo, "x-forwarded-proto"), Some("http"), "{echo}");
    // The client said 198.51.100.1 of itself; no trusted proxy passed that on. Behind a
    // trusted proxy, the chain goes on with the proxy: the client comes first either way.
    let client = first(echo, "x-forwarded-for").and_then(|f| f.split(',').next());
    assert_eq!(client, Some("127.0.0.1"), "{echo}");
    assert_eq!(first(echo, "cookie"), Some("a=1; b=2"), "{echo}");
    for gone in [
        "x-queuegate-visitor",
        "x-queuegate-room",
        "x-queuegate-anything",
        "x_queuegate_visitor",
        "forwarded",
        "x-real-ip",
        "proxy-connection",
    ] {
        assert!(
            echo.get(gone).is_none(),
            "{gone} reached the application: {echo}"
        );
    }

    // A visitor the gate lets in is named by queuegate alone.
    let room = open_room(t, "named", 5).await;
    let reply = t
        .send(spoofed(
            t.client
                .get(t.url(&format!("/{room}/echo")))
                .header("sec-fetch-mode", "navigate")
                .header("sec-fetch-dest", "document"),
        ))
        .await;
    assert_eq!(reply.header("x-upstream"), Some("yes"), "{}", reply.text);
    let pass = reply.cookie(&format!("qg_pass_{room}")).expect("a pass");
    let pass = Pass::decode(&pass, &t.keys, &RoomId::parse(&room).unwrap(), now_ms()).unwrap();
    let echo = &reply.json;
    assert_eq!(
        first(echo, "x-queuegate-room"),
        Some(room.as_str()),
        "{echo}"
    );
    assert_eq!(
        first(echo, "x-queuegate-visitor"),
        Some(pass.place.ticket_id().as_str()),
        "{echo}"
    );
    assert!(echo.get("x-queuegate-anything").is_none(), "{echo}");
    assert_eq!(first(echo, "cookie"), Some("a=1; b=2"), "{echo}");
}

/// A header the request's `Connection` header names is the hop's business (RFC 9110): it never
/// reaches the application. Sent over a raw connection, as a client would.
pub async fn headers_named_in_connection_are_dropped(t: &Target) {
    if t.behind_runtime_front {
        // The edge: `Connection` is consumed in front of the worker (Cloudflare, wrangler dev's
        // proxy), which alone can act on it; the request layer's own handling of it is tested
        // in its unit tests.
        eprintln!("conformance: no Connection header reaches this target's server");
        return;
    }
    if t.behind_nginx {
        // nginx consumes `Connection` and passes on the headers it named (it cannot know them
        // for hop-by-hop headers), so the instance behind it cannot tell them from the rest.
        // The operator section of the README says so.
        eprintln!("conformance: nginx passes on the headers a Connection header names");
        return;
    }
    let path = format!("/{}/echo", unique("hop"));
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close, X-Private\r\nX-Private: 1\r\nX-Kept: 1\r\n\r\n",
        t.base.trim_start_matches("http://")
    );
    let answer = raw_request(&t.base, head.as_bytes()).await;
    let echo: Value = serde_json::from_str(&raw_body(&answer)).expect("the echo");
    assert_eq!(first(&echo, "x-kept"), Some("1"), "{answer}");
    assert!(echo.get("x-private").is_none(), "{answer}");
}

pub async fn a_slow_upstream_is_cut_off(t: &Target) {
    // The test upstream takes five seconds on /slow; the targets give it one.
    let reply = t
        .page(&format!("/{}/slow", unique("slow")), &[], true)
        .await;
    assert_error(&reply, 502, "upstream_unavailable", "a slow upstream");
    assert_eq!(reply.header("retry-after"), Some("2"), "{}", reply.text);
}

pub async fn an_upstream_that_stalls_midway_is_cut_off(t: &Target) {
    // The test upstream sends its head and "begin " at once, then nothing for five seconds; the
    // targets let it pause one.
    let resp = t
        .client
        .get(t.url(&format!("/{}/stall", unique("stall"))))
        .send()
        .await
        .expect("the head arrives");
    assert_eq!(resp.headers()["x-upstream"], "yes");
    match resp.text().await {
        Err(_) => {}
        Ok(body) => assert!(!body.contains("end"), "the whole body came: {body}"),
    }
}

pub async fn every_api_answer_is_no_store(t: &Target) {
    let room = paused_room(t, "nostore", json!({"max_active": 5})).await;
    let joined = t.join(&room, None).await;
    let ticket = ticket_of(&joined);
    let id = joined.json["ticket_id"].as_str().unwrap().to_owned();
    let c = &t.client;
    let requests: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("healthz", c.get(t.api("/healthz"))),
        ("metrics", c.get(t.api("/metrics"))),
        ("join", c.post(t.api(&format!("/rooms/{room}/join")))),
        (
            "status",
            c.get(t.api(&format!("/rooms/{room}/status")))
                .bearer_auth(&ticket),
        ),
        ("list rooms", t.admin(Method::GET, "/rooms")),
        ("get room", t.admin(Method::GET, &format!("/rooms/{room}"))),
        (
            "put room",
            t.admin(Method::PUT, &format!("/rooms/{room}"))
                .json(&json!({"max_active": 5})),
        ),
        (
            "pause",
            t.admin(Method::POST, &format!("/rooms/{room}/pause")),
        ),
        (
            "admit",
            t.admin(Method::POST, &format!("/rooms/{room}/admit"))
                .json(&json!({"count": 0})),
        ),
        (
            "revoke",
            t.admin(Method::POST, &format!("/rooms/{room}/revoke"))
                .json(&json!({ "ticket_id": id })),
        ),
        (
            "leave",
            c.post(t.api(&format!("/rooms/{room}/leave")))
                .bearer_auth(&ticket),
        ),
        ("unknown route", c.get(t.api("/nope"))),
        (
            "wrong method",
            c.delete(t.api(&format!("/rooms/{room}/join"))),
        ),
        ("no admin key", c.get(t.api("/admin/rooms"))),
    ];
    for (what, req) in requests {
        let reply = t.send(req).await;
        assert!(
            reply.status < 500,
            "{what}: {} {}",
            reply.status,
            reply.text
        );
        assert_eq!(
            reply.header("cache-control"),
            Some("no-store"),
            "{what}: {}",
            reply.status
        );
    }
}

pub async fn a_body_over_the_limit_is_refused_and_the_server_goes_on(t: &Target) {
    let room = paused_room(t, "bigbody", json!({"max_active": 5})).await;
    let join = t.api(&format!("/rooms/{room}/join"));
    let host = t.base.trim_start_matches("http://").to_owned();
    let over = "x".repeat(200 * 1024);
    // Declared, and read on to its end before the answer.
    let reply = t
        .send(
            t.client
                .post(&join)
                .header("connection", "close")
                .body(over.clone()),
        )
        .await;
    assert_error(&reply, 413, "body_too_large", "declared length");
    assert_eq!(status_of(&t.join(&room, None).await), "waiting");
    // Chunked, with no length to go by.
    let path = join.trim_start_matches(&t.base);
    let mut chunked = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..25 {
        chunked.extend_from_slice(format!("{:x}\r\n", 8192).as_bytes());
        chunked.extend_from_slice(&[b'x'; 8192]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_request(&t.base, &chunked).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(raw_body(&answer).contains("body_too_large"), "{answer}");
    assert_eq!(status_of(&t.join(&room, None).await), "waiting");
    // Declared far larger than anything the API takes: refused without reading it. The client
    // may see the refusal or the connection closing under it; either way the server goes on.
    let huge = "x".repeat(3 * 1024 * 1024);
    if let Ok(reply) = t
        .try_send(
            t.client
                .post(&join)
                .header("connection", "close")
                .body(huge),
        )
        .await
    {
        assert_error(&reply, 413, "body_too_large", "declared far over");
    }
    assert_eq!(status_of(&t.join(&room, None).await), "waiting");
    assert_eq!(t.room(&room).await["stats"]["waiting"], 3);
}

pub async fn passes_renew_past_half_their_life(t: &Target) {
    let room = unique("renew");
    t.put_room(
        &room,
        json!({"max_active": 5, "session_ttl_s": 4, "paths": [format!("/{room}")]}),
    )
    .await;
    t.pause(&room).await;
    let ticket = ticket_of(&t.join(&room, None).await);
    t.admit(&room, 1).await;
    let first_pass = super::pass_of(&t.status(&room, &ticket).await);
    let cookie = format!("qg_pass_{room}");
    let page = format!("/{room}/page");
    // Early in its life the pass goes through as it is.
    let early = t
        .page(&page, &[(cookie.clone(), first_pass.clone())], true)
        .await;
    assert_eq!(early.header("x-upstream"), Some("yes"), "{}", early.text);
    assert!(early.cookie(&cookie).is_none(), "renewed too early");
    // Past half its life, a request through the gate renews it.
    t.advance(Duration::from_millis(2_500)).await;
    let late = t
        .page(&page, &[(cookie.clone(), first_pass.clone())], true)
        .await;
    assert_eq!(late.header("x-upstream"), Some("yes"), "{}", late.text);
    let renewed = late.cookie(&cookie).expect("a renewed pass");
    assert_ne!(renewed, first_pass);
    // After the first pass's expiry the renewed one still goes through, the first does not.
    t.advance(Duration::from_millis(2_500)).await;
    let kept = t.page(&page, &[(cookie.clone(), renewed)], true).await;
    assert_eq!(kept.header("x-upstream"), Some("yes"), "{}", kept.text);
    let stale = t.page(&page, &[(cookie, first_pass)], true).await;
    assert!(stale.header("x-upstream").is_none(), "{}", stale.text);
}
