//! The external challenge (`"challenge": {"kind": "siteverify", ...}` in a room's configuration):
//! a join brings the widget's response, which the server checks at the room's siteverify URL
//! with the room's secret, by the protocol Cloudflare documents for Turnstile.
//!
//! Cloudflare's own siteverify endpoint cannot be reached from the machine the suite runs on:
//! each case starts a local provider that speaks the same protocol
//! ([`crate::support::siteverify::Provider`]) on 127.0.0.1, and stops it when it ends. The
//! target reaches it as it would reach Cloudflare: the origin with its own HTTP client, the
//! edge (`wrangler dev`) with `fetch`; workerd under `wrangler dev` reaches 127.0.0.1.

use super::*;
use crate::support::siteverify::{closed_url, Provider};

const SECRET: &str = "0x4AAAAAAAconformance-secret";
const SITE_KEY: &str = "0x4AAAAAAAconformance-site-key";
const SCRIPT_URL: &str = "https://challenges.cloudflare.com/turnstile/v0/api.js";

/// A paused room whose joins are checked at `url` with `secret`, plus `extra` configuration.
async fn siteverify_room(t: &Target, url: &str, secret: &str, extra: Value) -> String {
    let mut config = json!({
        "max_active": 5,
        "challenge": {"kind": "siteverify", "url": url, "secret": secret,
                      "site_key": SITE_KEY, "script_url": SCRIPT_URL},
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    paused_room(t, "sv", config).await
}

async fn join_with(t: &Target, room: &str, response: &str) -> Reply {
    t.send(
        t.client
            .post(t.api(&format!("/rooms/{room}/join")))
            .json(&json!({"challenge": {"response": response}})),
    )
    .await
}

pub async fn a_siteverify_room_asks_for_the_widgets_response(t: &Target) {
    let provider = Provider::start(SECRET).await;
    let room = siteverify_room(t, &provider.url(), SECRET, json!({})).await;
    let view = t.room(&room).await;
    assert_eq!(view["challenge"]["kind"], "siteverify", "{view}");

    for reply in [
        t.join(&room, None).await,
        t.send(
            t.client
                .post(t.api(&format!("/rooms/{room}/join")))
                .json(&json!({"challenge": {}})),
        )
        .await,
    ] {
        assert_error(
            &reply,
            403,
            "challenge_required",
            "a join without a response",
        );
        let challenge = &reply.json["challenge"];
        assert_eq!(challenge["kind"], "siteverify", "{}", reply.text);
        assert_eq!(challenge["site_key"], SITE_KEY, "{}", reply.text);
        assert_eq!(challenge["script_url"], SCRIPT_URL, "{}", reply.text);
        assert!(reply.json["ticket"].is_null(), "{}", reply.text);
        assert!(reply.set_cookies().is_empty(), "{}", reply.text);
        // The secret is the server's: no answer shows it.
        assert!(!reply.text.contains(SECRET), "{}", reply.text);
    }
    // At the gate a browser without a place gets the widget's page and no place; a client
    // asking for JSON gets the error.
    let mut config = view.clone();
    for field in ["id", "paused", "stats"] {
        config.as_object_mut().unwrap().remove(field);
    }
    config["paths"] = json!([format!("/{room}")]);
    t.put_room(&room, config).await;
    let page = t.page(&format!("/{room}"), &[], false).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.header("x-queuegate-status"), Some("challenge"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(page.text.contains("turnstile.render"), "{}", page.text);
    assert!(page.text.contains(SITE_KEY), "{}", page.text);
    assert!(!page.text.contains(SECRET), "{}", page.text);
    assert!(page.set_cookies().is_empty(), "{}", page.text);
    let json_page = t.page(&format!("/{room}"), &[], true).await;
    assert_error(&json_page, 403, "challenge_required", "the gate, in JSON");
    assert!(provider.forms().is_empty(), "nothing to check yet");
    assert_eq!(waiting(t, &room).await, 0);
}

pub async fn a_good_widget_response_gets_a_place_once(t: &Target) {
    let provider = Provider::start(SECRET).await;
    let room = siteverify_room(t, &provider.url(), SECRET, json!({})).await;

    let joined = join_with(t, &room, "pass-one").await;
    assert_eq!(joined.status, 200, "{}", joined.text);
    assert_eq!(status_of(&joined), "waiting", "{}", joined.text);
    assert_eq!(joined.json["position"], 1, "{}", joined.text);
    let ticket = ticket_of(&joined);
    assert!(
        joined.cookie(&format!("qg_ticket_{room}")).is_some(),
        "the page reloads into its place by the cookie: {:?}",
        joined.set_cookies()
    );
    // What the provider got: the room's secret, the response, the client's address.
    let forms = provider.forms();
    assert_eq!(forms.len(), 1, "{forms:?}");
    assert_eq!(forms[0]["secret"], SECRET);
    assert_eq!(forms[0]["response"], "pass-one");
    assert_eq!(forms[0]["remoteip"], "127.0.0.1");

    // The same response again: the provider says it was used, and the join is refused.
    let again = join_with(t, &room, "pass-one").await;
    assert_error(&again, 403, "challenge_failed", "a response used before");
    assert!(again.json["ticket"].is_null(), "{}", again.text);
    // A response the provider never gave out.
    let forged = join_with(t, &room, "forged").await;
    assert_error(&forged, 403, "challenge_failed", "a forged response");

    // Another good response is another place; the first place is kept on a refresh without
    // asking the provider again.
    let second = join_with(t, &room, "pass-two").await;
    assert_eq!(second.status, 200, "{}", second.text);
    position_settles(t, &room, &ticket_of(&second), 2).await;
    let refresh = t
        .send(
            t.client
                .post(t.api(&format!("/rooms/{room}/join")))
                .bearer_auth(&ticket),
        )
        .await;
    assert_eq!(refresh.status, 200, "a refresh: {}", refresh.text);
    assert_eq!(refresh.json["position"], 1, "{}", refresh.text);
    assert_eq!(provider.forms().len(), 4);
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["waiting"] == 2
    })
    .await;
}

pub async fn a_room_with_the_wrong_secret_fails_every_check(t: &Target) {
    let provider = Provider::start(SECRET).await;
    let room = siteverify_room(t, &provider.url(), "0x4AAAAAAAnot-the-secret", json!({})).await;
    let reply = join_with(t, &room, "pass-wrong-secret").await;
    assert_error(
        &reply,
        403,
        "challenge_failed",
        "checked with a wrong secret",
    );
    let forms = provider.forms();
    assert_eq!(forms.len(), 1, "{forms:?}");
    assert_eq!(forms[0]["secret"], "0x4AAAAAAAnot-the-secret");
    assert_eq!(waiting(t, &room).await, 0);
}

/// A provider that cannot be reached, errs, answers what is no siteverify reply, answers too
/// much or too late gives no verdict: 503 `challenge_unavailable` with `Retry-After`, no place,
/// and never a refusal (which would send real visitors to the infinite queue).
pub async fn a_provider_that_gives_no_verdict_gets_challenge_unavailable(t: &Target) {
    let closed = closed_url().await;
    let down = siteverify_room(t, &closed, SECRET, json!({})).await;
    let reply = join_with(t, &down, "pass-nobody-home").await;
    assert_error(&reply, 503, "challenge_unavailable", "a closed port");
    assert!(reply.header("retry-after").is_some(), "{}", reply.text);

    let provider = Provider::start(SECRET).await;
    let room = siteverify_room(
        t,
        &provider.url(),
        SECRET,
        json!({"suspicious": "infinite_queue"}),
    )
    .await;
    for response in ["garbage-1", "down-1", "huge-1"] {
        let reply = join_with(t, &room, response).await;
        assert_error(&reply, 503, "challenge_unavailable", response);
        assert!(reply.json["ticket"].is_null(), "{response}: {}", reply.text);
    }
    let started = std::time::Instant::now();
    let reply = join_with(t, &room, "slow-1").await;
    assert_error(&reply, 503, "challenge_unavailable", "a provider too slow");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(9),
        "bounded by the 5 s limit: {took:?}"
    );
    // The provider came back: the same room takes a good response.
    assert_eq!(join_with(t, &room, "pass-back").await.status, 200);
    assert_eq!(waiting(t, &down).await, 0);
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["waiting"] == 1
    })
    .await;
}

/// With `"suspicious": "infinite_queue"`, a response the provider refuses gets an answer that
/// looks like any other (a ticket, a position, waiting), for a place nobody holds.
pub async fn a_failed_check_goes_to_the_infinite_queue_when_the_room_says_so(t: &Target) {
    let provider = Provider::start(SECRET).await;
    let room = siteverify_room(
        t,
        &provider.url(),
        SECRET,
        json!({"suspicious": "infinite_queue"}),
    )
    .await;
    assert_eq!(join_with(t, &room, "pass-real").await.status, 200);
    for response in ["forged", "pass-real"] {
        let decoy = join_with(t, &room, response).await;
        assert_eq!(decoy.status, 200, "{response}: {}", decoy.text);
        assert_eq!(status_of(&decoy), "waiting", "{response}: {}", decoy.text);
        // Behind everyone waiting as the store last knew them: a summary a moment old (the
        // edge's) may not count the real visitor yet.
        assert!(
            decoy.json["position"].as_u64().unwrap() >= 1,
            "{}",
            decoy.text
        );
        let ticket = ticket_of(&decoy);
        let status = t.status(&room, &ticket).await;
        assert_eq!(status_of(&status), "waiting", "{}", status.text);
    }
    // A join without a response is asked for one, not sent to the infinite queue.
    assert_error(
        &t.join(&room, None).await,
        403,
        "challenge_required",
        "no response",
    );
    // Only the real visitor holds a place.
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["waiting"] == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(waiting(t, &room).await, 1);
}
