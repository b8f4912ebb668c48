//! The conformance suite: what every store and both servers must do, driven over HTTP only.
//!
//! Each case creates its own room, so cases can share a target. A case pauses its room where it
//! needs admissions to happen only when it says (`admit N`), and otherwise lets the target's
//! scheduler run. Invariants 1-4 and 6 of DESIGN.md are proven here.
#![allow(dead_code)]

mod shells;

pub use shells::*;

use std::collections::HashSet;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use queuegate::{Pass, Place, RoomId, Ticket};
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{Reply, Target};

/// Calls `$m!` with the name of every case, so each target lists the same cases.
#[macro_export]
macro_rules! for_each_case {
    ($m:ident) => {
        $m!(
            join_returns_a_ticket_and_a_place,
            status_tracks_position_then_admission,
            leave_frees_the_place_and_the_slot,
            leavers_are_never_admitted,
            capacity_is_never_exceeded,
            unclaimed_admissions_expire_after_the_claim_window,
            sessions_end_after_their_ttl,
            admission_is_fifo_across_shards,
            positions_only_fall,
            refreshes_keep_the_place,
            one_user_id_holds_one_place,
            forged_and_altered_tickets_are_refused,
            tickets_of_other_keys_rooms_or_times_are_refused,
            passes_are_bound_to_room_ticket_and_time,
            revoked_sessions_lose_the_gate,
            the_admin_api_needs_the_key,
            rooms_are_created_read_and_updated,
            the_scheduler_admits_at_the_configured_rate,
            the_gate_is_invisible_while_there_is_room,
            the_gate_queues_browsers_and_lets_them_in,
            unprotected_paths_pass_straight_through,
            health_and_metrics_answer,
            bad_input_gets_a_4xx_with_a_stable_code,
            revoking_a_place_the_room_never_gave_out_is_404,
            the_application_gets_the_headers_queuegate_sets,
            headers_named_in_connection_are_dropped,
            a_slow_upstream_is_cut_off,
            every_api_answer_is_no_store,
            a_body_over_the_limit_is_refused_and_the_server_goes_on,
            passes_renew_past_half_their_life,
        );
    };
}

/// Every case, run one after another against one target (for targets that are costly to
/// start, such as a cluster or `wrangler dev`).
pub async fn run_all(t: &Target) {
    macro_rules! run {
        ($($case:ident),* $(,)?) => {
            $(
                eprintln!("conformance: {}", stringify!($case));
                $case(t).await;
            )*
        };
    }
    for_each_case!(run);
    random_input_never_gets_a_5xx(t, 200).await;
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", N.fetch_add(1, Ordering::Relaxed))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A paused room: nobody is admitted unless the test says so.
async fn paused_room(t: &Target, prefix: &str, config: Value) -> String {
    let room = unique(prefix);
    t.put_room(&room, config).await;
    t.pause(&room).await;
    room
}

fn ticket_of(reply: &Reply) -> String {
    reply.json["ticket"]
        .as_str()
        .unwrap_or_else(|| panic!("a ticket in {}", reply.text))
        .to_owned()
}

fn pass_of(reply: &Reply) -> String {
    reply.json["pass"]
        .as_str()
        .unwrap_or_else(|| panic!("a pass in {}", reply.text))
        .to_owned()
}

fn status_of(reply: &Reply) -> &str {
    reply.json["status"].as_str().unwrap_or("")
}

/// Polls a ticket's status until its position is `want`. A server that answers polls from a
/// summary of the queue (the edge) learns of another visitor's join within a second or so.
async fn position_settles(t: &Target, room: &str, ticket: &str, want: u64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let reply = t.status(room, ticket).await;
        if reply.json["position"] == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "position never became {want}: {}",
            reply.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn assert_error(reply: &Reply, status: u16, code: &str, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.text);
    assert_eq!(reply.error_code(), Some(code), "{what}: {}", reply.text);
    assert!(
        reply.json["error"]["message"].is_string(),
        "{what}: error has a message: {}",
        reply.text
    );
    let content_type = reply.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("application/json"),
        "{what}: {content_type}"
    );
}

// ---- The public API ----

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

async fn futures_join(t: &Target, room: &str, n: usize) -> Vec<String> {
    let mut tickets = Vec::new();
    for _ in 0..n {
        tickets.push(ticket_of(&t.join(room, None).await));
    }
    tickets
}

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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // Rounds: everybody polls; each round, one admitted visitor leaves; at most
    // 3 + leaves may ever have been admitted, and the room never reports more than 3 in.
    while ever_admitted.len() < 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "admissions stalled at {}",
            ever_admitted.len()
        );
        for (i, ticket) in tickets.iter().enumerate() {
            let reply = t.status(&room, ticket).await;
            match status_of(&reply) {
                "admitted" => {
                    if ever_admitted.insert(i) {
                        passes.push(pass_of(&reply));
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
        let now = t.status(&room, last).await.json["position"]
            .as_u64()
            .unwrap();
        assert!(now <= previous, "position rose from {previous} to {now}");
        if step % 3 != 1 {
            assert!(
                now < previous,
                "a leave or an admission ahead moves the visitor up"
            );
        }
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
    let id = first.json["ticket_id"].clone();
    // Ten joins at once with the same user id: one place.
    let joins: Vec<_> = (0..10).map(|_| t.join(&room, Some("alice"))).collect();
    for reply in futures::future::join_all(joins).await {
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json["ticket_id"], id);
        assert_eq!(reply.json["position"], 1);
    }
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

// ---- Invariant 4: authenticity ----

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

// ---- The admin API ----

pub async fn rooms_are_created_read_and_updated(t: &Target) {
    let room = unique("crud");
    let config = json!({
        "paths": [format!("/{room}"), format!("/{room}-b/")],
        "max_active": 7, "admit_per_minute": 90, "session_ttl_s": 300,
        "claim_window_s": 45, "mode": "fifo", "shards": 3
    });
    let created = t
        .send(
            t.admin(Method::PUT, &format!("/rooms/{room}"))
                .json(&config),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let view = t.room(&room).await;
    for (key, value) in config.as_object().unwrap() {
        assert_eq!(&view[key], value, "{key}");
    }
    assert_eq!(view["id"], room.as_str());
    assert_eq!(view["paused"], false);
    for key in ["waiting", "admitted", "active", "admitted_total"] {
        assert!(view["stats"][key].is_u64(), "stats.{key} in {view}");
    }
    let mut updated = config.clone();
    updated["max_active"] = json!(9);
    let reply = t
        .send(
            t.admin(Method::PUT, &format!("/rooms/{room}"))
                .json(&updated),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(t.room(&room).await["max_active"], 9);

    // The shard count is fixed for life.
    updated["shards"] = json!(5);
    let reply = t
        .send(
            t.admin(Method::PUT, &format!("/rooms/{room}"))
                .json(&updated),
        )
        .await;
    assert_error(&reply, 409, "conflict", "shards change");

    // Pause and resume show in the view.
    t.pause(&room).await;
    assert_eq!(t.room(&room).await["paused"], true);
    t.resume(&room).await;
    assert_eq!(t.room(&room).await["paused"], false);

    let list = t.send(t.admin(Method::GET, "/rooms")).await;
    assert_eq!(list.status, 200);
    assert!(list.json["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == room.as_str()));
}

pub async fn the_scheduler_admits_at_the_configured_rate(t: &Target) {
    let room = paused_room(
        t,
        "rate",
        json!({"max_active": 1000, "admit_per_minute": 600, "shards": 2}),
    )
    .await;
    futures_join(t, &room, 40).await;
    t.resume(&room).await;
    // 600 a minute is 10 a second; the bucket starts with two ticks' worth.
    let view = t
        .wait_for_room(&room, Duration::from_secs(20), |v| {
            v["stats"]["admitted_total"].as_u64().unwrap() >= 30
        })
        .await;
    assert!(view["stats"]["waiting"].as_u64().unwrap() <= 10, "{view}");
    // The estimate given to a visitor who joins now follows the rate measured while people
    // waited (never above the configured one): on a slow server it is slower, and says so.
    let measured = |view: &serde_json::Value| {
        view["stats"]["admit_rate_per_min"]
            .as_f64()
            .map_or(600.0, |r| r.min(600.0))
    };
    let before = measured(&t.room(&room).await);
    let late = t.join(&room, None).await;
    let after = measured(&t.room(&room).await);
    let position = late.json["position"].as_u64().unwrap();
    let eta = late.json["eta_seconds"].as_u64().unwrap();
    let eta_at = |rate: f64| (position as f64 * 60.0 / rate).ceil() as u64;
    let (low, high) = (eta_at(before.max(after)), eta_at(before.min(after)));
    assert!(
        eta + 1 >= low && eta <= high + 1,
        "eta {eta} for position {position}, at {before:.0}-{after:.0} a minute: {low}-{high}"
    );
}

// ---- The gate ----

pub async fn the_gate_is_invisible_while_there_is_room(t: &Target) {
    let room = unique("open");
    t.put_room(
        &room,
        json!({"max_active": 50, "admit_per_minute": 60000, "paths": [format!("/{room}")]}),
    )
    .await;
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["entry_credit"].as_u64().unwrap() > 0
    })
    .await;
    let reply = t.page(&format!("/{room}/shop?x=1"), &[], false).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-upstream"), Some("yes"), "{}", reply.text);
    assert!(reply.text.starts_with(&format!("upstream /{room}/shop")));
    assert!(reply.cookie(&format!("qg_pass_{room}")).is_some());
    assert!(reply.cookie(&format!("qg_ticket_{room}")).is_some());
    // The application sees the visitor id but none of queuegate's cookies.
    assert!(!reply.text.contains("visitor=-"), "{}", reply.text);
    assert!(!reply.text.contains("qg_"), "{}", reply.text);

    // So does a join through the API.
    let joined = t.join(&room, None).await;
    assert_eq!(status_of(&joined), "admitted", "{}", joined.text);
    assert!(joined.json["pass"].is_string());
}

pub async fn the_gate_queues_browsers_and_lets_them_in(t: &Target) {
    let room = unique("gate");
    t.put_room(
        &room,
        json!({"max_active": 1, "admit_per_minute": 60000, "paths": [format!("/{room}")]}),
    )
    .await;
    t.pause(&room).await;
    let path = format!("/{room}/tickets");
    // A browser with no cookies gets the waiting page and a ticket.
    let first = t.page(&path, &[], false).await;
    assert_eq!(first.status, 200);
    assert!(first.header("x-upstream").is_none());
    assert!(first
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(first.text.contains("You are in line"), "{}", first.text);
    assert!(first.text.contains(r#"id="position""#));
    assert!(first.text.contains(r#"http-equiv="refresh""#));
    let ticket = first
        .cookie(&format!("qg_ticket_{room}"))
        .expect("a ticket cookie");
    let cookies = vec![(format!("qg_ticket_{room}"), ticket)];
    // An API client asking for JSON gets the same as a status call.
    let second = t.page(&path, &[], true).await;
    assert_eq!(status_of(&second), "waiting");
    position_settles(t, &room, &ticket_of(&second), 2).await;
    // Refreshing keeps the place.
    let again = t.page(&path, &cookies, true).await;
    assert_eq!(again.json["position"], 1);
    // Admitted: the next refresh goes through with a pass.
    assert_eq!(t.admit(&room, 1).await, 1);
    let inside = t.page(&path, &cookies, false).await;
    assert_eq!(inside.header("x-upstream"), Some("yes"), "{}", inside.text);
    let pass = inside
        .cookie(&format!("qg_pass_{room}"))
        .expect("a pass cookie");
    let with_pass = vec![(format!("qg_pass_{room}"), pass)];
    let later = t.page(&format!("{path}/more"), &with_pass, false).await;
    assert_eq!(later.header("x-upstream"), Some("yes"));
    assert!(later.text.starts_with(&format!("upstream {path}/more")));
}

pub async fn unprotected_paths_pass_straight_through(t: &Target) {
    let room = unique("scoped");
    t.put_room(
        &room,
        json!({"max_active": 1, "paths": [format!("/{room}")]}),
    )
    .await;
    t.pause(&room).await;
    let reply = t.page(&format!("/{room}-not-this/page"), &[], false).await;
    assert_eq!(reply.header("x-upstream"), Some("yes"));
    assert!(reply.set_cookies().is_empty());
}

pub async fn health_and_metrics_answer(t: &Target) {
    let health = t.send(t.client.get(t.api("/healthz"))).await;
    assert_eq!(health.status, 200, "{}", health.text);
    assert_eq!(health.json["status"], "ok");
    let metrics = t.send(t.client.get(t.api("/metrics"))).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.text.contains("queuegate_"), "{}", metrics.text);
}

// ---- Invariant 6: bad input ----

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
            "invalid_room_id",
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
        if reply.status >= 400 {
            assert!(
                reply.error_code().is_some(),
                "{method} {path}: {}",
                reply.text
            );
        }
    }
}
