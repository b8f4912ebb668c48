//! The gate: invisible while there is room, the waiting page, unprotected paths, health.

use super::*;

pub async fn the_gate_is_invisible_while_there_is_room(t: &Target) {
    let room = open_room(t, "open", 50).await;
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
