//! What the application behind the gate can tell queuegate about a visitor.

use super::*;

pub async fn the_application_can_end_a_session_with_a_header(t: &Target) {
    let room = open_room(t, "revoke", 1).await;
    let entered = t.page(&format!("/{room}/buy"), &[], false).await;
    assert_eq!(
        entered.header("x-upstream"),
        Some("yes"),
        "{}",
        entered.text
    );
    let pass = entered
        .cookie(&format!("qg_pass_{room}"))
        .expect("a pass cookie");
    let ticket = entered
        .cookie(&format!("qg_ticket_{room}"))
        .expect("a ticket cookie");
    let cookies = vec![
        (format!("qg_pass_{room}"), pass),
        (format!("qg_ticket_{room}"), ticket.clone()),
    ];
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["active"] == 1
    })
    .await;

    // The purchase completes: the application says so, and the header never reaches the visitor.
    let done = t.page(&format!("/{room}/done"), &cookies, false).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.text, "done");
    assert!(
        done.header("x-queuegate-command").is_none(),
        "{:?}",
        done.headers
    );

    // The session is over and its slot free at once.
    let status = t.status(&room, &ticket).await;
    assert_eq!(status.json["status"], "left", "{}", status.text);
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["active"] == 0
    })
    .await;
    // The old pass no longer passes: whatever the visitor gets next is for a new place (in this
    // open room it may walk straight in again, as someone else).
    let visitor_of = |text: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix("visitor="))
            .map(str::to_owned)
    };
    let old_visitor = visitor_of(&entered.text).expect("the application saw the visitor");
    let again = t.page(&format!("/{room}/buy"), &cookies, false).await;
    assert_ne!(visitor_of(&again.text), Some(old_visitor), "{}", again.text);
    // A stranger's header on an unprotected path is dropped and does nothing.
    let free = t
        .page(&format!("/{}/done", unique("free")), &[], false)
        .await;
    assert_eq!(free.text, "done");
    assert!(free.header("x-queuegate-command").is_none());
}
