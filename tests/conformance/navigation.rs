//! Only page navigations take places at the gate: images, fetches, HEADs and prefetches of a
//! protected path get the waiting answer without joining.

use super::*;

/// What a request is, its method and its headers.
type Case = (
    &'static str,
    reqwest::Method,
    &'static [(&'static str, &'static str)],
);

/// The reply is the gate's waiting answer, and it gave out no ticket.
fn assert_held(reply: &Reply, room: &str, what: &str) {
    assert_eq!(reply.status, 200, "{what}: {}", reply.text);
    assert_eq!(
        reply.header("x-queuegate-status"),
        Some("waiting"),
        "{what}: {}",
        reply.text
    );
    assert!(
        reply.header("x-upstream").is_none(),
        "{what}: {}",
        reply.text
    );
    assert_eq!(
        reply.header("cache-control"),
        Some("no-store"),
        "{what}: {}",
        reply.text
    );
    assert!(
        reply.cookie(&format!("qg_ticket_{room}")).is_none(),
        "{what} got a ticket: {:?}",
        reply.set_cookies()
    );
    assert!(
        reply.cookie(&format!("qg_pass_{room}")).is_none(),
        "{what} got a pass: {:?}",
        reply.set_cookies()
    );
}

pub async fn only_navigations_take_places(t: &Target) {
    let room = unique("nav");
    t.put_room(
        &room,
        json!({"max_active": 1, "admit_per_minute": 60000, "paths": [format!("/{room}")]}),
    )
    .await;
    t.pause(&room).await;
    let path = format!("/{room}/tickets");
    let held: [Case; 6] = [
        (
            "an image",
            reqwest::Method::GET,
            &[
                ("accept", "image/avif,image/webp,*/*"),
                ("sec-fetch-mode", "no-cors"),
                ("sec-fetch-dest", "image"),
            ],
        ),
        (
            "a fetch",
            reqwest::Method::GET,
            &[
                ("accept", "application/json"),
                ("sec-fetch-mode", "cors"),
                ("sec-fetch-dest", "empty"),
            ],
        ),
        (
            "a fetch asking for HTML",
            reqwest::Method::GET,
            &[
                ("accept", "text/html"),
                ("sec-fetch-mode", "cors"),
                ("sec-fetch-dest", "empty"),
            ],
        ),
        (
            "a HEAD",
            reqwest::Method::HEAD,
            &[
                ("accept", "text/html"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "document"),
            ],
        ),
        (
            "a prefetch",
            reqwest::Method::GET,
            &[
                ("accept", "text/html"),
                ("sec-purpose", "prefetch"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "document"),
            ],
        ),
        ("curl", reqwest::Method::GET, &[("accept", "*/*")]),
    ];
    for (what, method, headers) in held.iter().cloned() {
        let reply = t.request(method, &path, &[], headers).await;
        assert_held(&reply, &room, what);
    }
    // A link preview of an old kind, asking for JSON.
    let json = t
        .request(
            reqwest::Method::GET,
            &path,
            &[],
            &[("accept", "application/json"), ("purpose", "prefetch")],
        )
        .await;
    assert_held(&json, &room, "a JSON prefetch");
    assert_eq!(status_of(&json), "waiting", "{}", json.text);
    assert!(json.json.get("ticket").is_none(), "{}", json.text);
    assert!(json.json.get("position").is_none(), "{}", json.text);
    let view = t.room(&room).await;
    assert_eq!(view["stats"]["waiting"], 0, "{view}");

    // A navigation takes the first place; a browser that sends no Sec-Fetch-* headers but asks
    // for HTML takes the second.
    let navigation = t.page(&path, &[], false).await;
    assert_eq!(navigation.header("x-queuegate-status"), Some("waiting"));
    let first = navigation
        .cookie(&format!("qg_ticket_{room}"))
        .expect("a navigation takes a place");
    let old_browser = t
        .request(
            reqwest::Method::GET,
            &path,
            &[],
            &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
        )
        .await;
    let second = old_browser
        .cookie(&format!("qg_ticket_{room}"))
        .expect("an old browser's page request takes a place");
    position_settles(t, &room, &first, 1).await;
    position_settles(t, &room, &second, 2).await;
    t.wait_for_room(&room, Duration::from_secs(10), |v| {
        v["stats"]["waiting"] == 2
    })
    .await;

    // The waiting visitor's own images and fetches are answered for the place it holds.
    let cookies = vec![(format!("qg_ticket_{room}"), first.clone())];
    let fetch = t
        .request(
            reqwest::Method::GET,
            &path,
            &cookies,
            &[
                ("accept", "application/json"),
                ("sec-fetch-mode", "cors"),
                ("sec-fetch-dest", "empty"),
            ],
        )
        .await;
    assert_eq!(status_of(&fetch), "waiting", "{}", fetch.text);
    assert_eq!(fetch.json["position"], 1, "{}", fetch.text);
    assert_eq!(
        fetch.json["ticket_id"],
        t.status(&room, &first).await.json["ticket_id"]
    );
    // And once admitted, its next fetch goes through with a pass.
    assert_eq!(t.admit(&room, 1).await, 1);
    let image = t
        .request(
            reqwest::Method::GET,
            &path,
            &cookies,
            &[("sec-fetch-mode", "no-cors"), ("sec-fetch-dest", "image")],
        )
        .await;
    assert_eq!(image.header("x-upstream"), Some("yes"), "{}", image.text);
    assert!(image.cookie(&format!("qg_pass_{room}")).is_some());
    let view = t.room(&room).await;
    assert_eq!(view["stats"]["waiting"], 1, "{view}");
}

pub async fn requests_that_are_not_navigations_never_enter_an_open_room(t: &Target) {
    let room = open_room(t, "navopen", 50).await;
    let path = format!("/{room}/logo.png");
    let image = t
        .request(
            reqwest::Method::GET,
            &path,
            &[],
            &[("sec-fetch-mode", "no-cors"), ("sec-fetch-dest", "image")],
        )
        .await;
    assert_held(&image, &room, "an image");
    let view = t.room(&room).await;
    assert_eq!(view["stats"]["active"], 0, "{view}");
    assert_eq!(view["stats"]["admitted"], 0, "{view}");
    // The page it is on enters, and then its images go through on the pass.
    let page = t.page(&format!("/{room}/"), &[], false).await;
    assert_eq!(page.header("x-upstream"), Some("yes"), "{}", page.text);
    let pass = page.cookie(&format!("qg_pass_{room}")).expect("a pass");
    let image = t
        .request(
            reqwest::Method::GET,
            &path,
            &[(format!("qg_pass_{room}"), pass)],
            &[("sec-fetch-mode", "no-cors"), ("sec-fetch-dest", "image")],
        )
        .await;
    assert_eq!(image.header("x-upstream"), Some("yes"), "{}", image.text);
}
