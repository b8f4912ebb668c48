//! The conformance suite: what every store and both servers must do, driven over HTTP only.
//!
//! Each case creates its own room, so cases can share a target. A case pauses its room where it
//! needs admissions to happen only when it says (`admit N`), and otherwise lets the target's
//! scheduler run. Invariants 1-4 and 6 of DESIGN.md are proven here.
#![allow(dead_code)]

mod access;
mod authenticity;
mod document;
mod events;
mod gate;
mod input;
mod invariants;
mod limits;
mod navigation;
mod operators;
mod paths;
mod report;
mod sale;
mod shells;
mod siteverify;
mod streams;
mod templates;
mod users;
mod visitors;
mod websocket;

pub use access::*;
pub use authenticity::*;
pub use document::*;
pub use events::*;
pub use gate::*;
pub use input::*;
pub use invariants::*;
pub use limits::*;
pub use navigation::*;
pub use operators::*;
pub use paths::*;
pub use report::*;
pub use sale::*;
pub use shells::*;
pub use siteverify::*;
pub use streams::*;
pub use templates::*;
pub use users::*;
pub use visitors::*;
pub use websocket::*;

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
            only_navigations_take_places,
            requests_that_are_not_navigations_never_enter_an_open_room,
            unprotected_paths_pass_straight_through,
            pages_speak_the_visitor_s_language,
            the_api_document_lists_every_route,
            a_stream_pushes_each_change_of_the_answer,
            a_room_s_own_template_is_what_its_visitors_see,
            the_report_counts_each_minute,
            the_dashboard_page_needs_no_key_but_every_call_does,
            health_and_metrics_answer,
            bad_input_gets_a_4xx_with_a_stable_code,
            revoking_a_place_the_room_never_gave_out_is_404,
            the_application_gets_the_headers_queuegate_sets,
            headers_named_in_connection_are_dropped,
            a_slow_upstream_is_cut_off,
            an_upstream_that_stalls_midway_is_cut_off,
            every_api_answer_is_no_store,
            a_body_over_the_limit_is_refused_and_the_server_goes_on,
            passes_renew_past_half_their_life,
            every_spelling_of_a_protected_path_is_gated,
            a_target_that_is_not_a_path_never_reaches_the_application,
            a_user_token_hands_the_place_back_on_any_device,
            user_tokens_not_signed_by_the_application_are_refused,
            an_admitted_visitors_websocket_reaches_the_application,
            a_websocket_handshake_renews_the_pass,
            a_websocket_from_anyone_the_gate_holds_gets_the_waiting_answer,
            websockets_on_unprotected_paths_pass_straight_through,
            other_upgrades_never_reach_the_application,
            joins_over_the_client_limit_get_429_and_take_no_place,
            a_room_without_a_join_limit_takes_every_join,
            join_limits_out_of_range_are_refused,
            a_client_that_keeps_knocking_loses_its_places,
            proof_of_work_rooms_take_each_solved_challenge_once,
            a_room_may_let_browsers_without_script_join_unchallenged,
            invite_only_rooms_take_each_invite_once,
            suspicious_clients_can_be_sent_to_an_infinite_queue,
            a_siteverify_room_asks_for_the_widgets_response,
            a_good_widget_response_gets_a_place_once,
            a_room_with_the_wrong_secret_fails_every_check,
            a_provider_that_gives_no_verdict_gets_challenge_unavailable,
            a_failed_check_goes_to_the_infinite_queue_when_the_room_says_so,
            the_application_can_end_a_session_with_a_header,
            requests_matching_a_bypass_rule_skip_the_queue,
            a_closed_room_takes_no_joins_and_keeps_its_places,
            a_room_for_a_host_gates_that_host_only,
            a_full_line_takes_no_more_places,
            a_passthrough_room_queues_nobody,
            a_random_room_draws_among_everyone_waiting,
            a_visitor_who_stops_asking_gives_up_the_place,
            an_admitted_visitor_who_never_comes_gives_the_admission_back,
            events_are_checked_and_never_overlap,
            overlapping_events_written_at_once_keep_one,
            an_event_opens_its_prequeue_in_join_order,
            a_shuffled_prequeue_opens_in_the_order_its_seed_gives,
        );
    };
}

/// Every case, run one after another against one target (for targets that are costly to
/// start, such as a cluster or `wrangler dev`).
pub async fn run_all(t: &Target) {
    // CONFORMANCE_ONLY=a,b runs only the cases whose names contain `a` or `b`: for working on a
    // few cases against a target that is slow to start.
    let only = std::env::var("CONFORMANCE_ONLY").unwrap_or_default();
    let chosen = |name: &str| only.is_empty() || only.split(',').any(|part| name.contains(part));
    // Every chosen case runs, whichever fail: a slow target shows all its failures in one run.
    let mut failed: Vec<&str> = Vec::new();
    macro_rules! run {
        ($($case:ident),* $(,)?) => {
            $(
                if chosen(stringify!($case)) {
                    eprintln!("conformance: {}", stringify!($case));
                    let case = std::panic::AssertUnwindSafe($case(t));
                    if futures::FutureExt::catch_unwind(case).await.is_err() {
                        failed.push(stringify!($case));
                    }
                }
            )*
        };
    }
    for_each_case!(run);
    if chosen("random_input_never_gets_a_5xx") {
        let case = std::panic::AssertUnwindSafe(random_input_never_gets_a_5xx(t, 200));
        if futures::FutureExt::catch_unwind(case).await.is_err() {
            failed.push("random_input_never_gets_a_5xx");
        }
    }
    assert!(failed.is_empty(), "conformance cases failed: {failed:?}");
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

/// A room gating `/<room>`, with `max_active` places, once it has entry credit: a visitor the
/// gate meets now walks straight in.
async fn open_room(t: &Target, prefix: &str, max_active: u32) -> String {
    let room = unique(prefix);
    t.put_room(
        &room,
        json!({"max_active": max_active, "admit_per_minute": 60000, "paths": [format!("/{room}")]}),
    )
    .await;
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["entry_credit"].as_u64().unwrap() > 0
    })
    .await;
    room
}

/// A client whose requests come from 127.0.0.2 (Linux routes all of 127.0.0.0/8 to the
/// loopback interface): another client than the suite's, by its connection alone.
fn another_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(3))
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .expect("a client")
}

/// How many wait in the room, as its admin view says.
async fn waiting(t: &Target, room: &str) -> u64 {
    t.room(room).await["stats"]["waiting"].as_u64().unwrap()
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

/// Polls a ticket's status until it is `want`, for at most `within`.
async fn status_becomes(t: &Target, room: &str, ticket: &str, want: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let reply = t.status(room, ticket).await;
        if status_of(&reply) == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {want}: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
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

async fn futures_join(t: &Target, room: &str, n: usize) -> Vec<String> {
    let mut tickets = Vec::new();
    for _ in 0..n {
        tickets.push(ticket_of(&t.join(room, None).await));
    }
    tickets
}
