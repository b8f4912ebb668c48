//! The conformance suite against the origin on the embedded store, one server per case.

mod conformance;
mod support;

macro_rules! conformance_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let server = support::embedded().await;
                conformance::$case(&server.target).await;
                server.stop().await;
            }
        )*
    };
}

conformance_cases!(
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
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_input_never_gets_a_5xx() {
    let server = support::embedded().await;
    conformance::random_input_never_gets_a_5xx(&server.target, 600).await;
    server.stop().await;
}
