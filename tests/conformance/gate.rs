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

pub async fn the_dashboard_page_needs_no_key_but_every_call_does(t: &Target) {
    let page = t.send(t.client.get(t.api("/admin/ui"))).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text.contains(r#"var api = "/_qg/v1/admin";"#));
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    // What the page calls needs the key.
    let rooms = t.send(t.client.get(t.api("/admin/rooms"))).await;
    assert_error(&rooms, 401, "unauthorized", "the rooms without a key");
    // Only GET is the page.
    let post = t.send(t.client.post(t.api("/admin/ui"))).await;
    assert_eq!(post.status, 405, "{}", post.text);
}

pub async fn pages_speak_the_visitor_s_language(t: &Target) {
    let room = unique("lang");
    let config = json!({"max_active": 5, "paths": [format!("/{room}")]});
    t.put_room(&room, config.clone()).await;
    t.pause(&room).await;
    let path = format!("/{room}/tickets");
    let page = |cookies: Vec<(String, String)>, path: String, accept_language: &'static str| {
        let headers = [
            ("accept", "text/html"),
            ("accept-language", accept_language),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document"),
        ];
        async move {
            t.request(reqwest::Method::GET, &path, &cookies, &headers)
                .await
        }
    };
    // The browser's languages by weight: Korean first.
    let korean = page(vec![], path.clone(), "ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7").await;
    assert_eq!(korean.status, 200, "{}", korean.text);
    assert_eq!(korean.header("content-language"), Some("ko"));
    assert!(
        korean
            .header("vary")
            .is_some_and(|v| v.to_ascii_lowercase().contains("accept-language")),
        "{:?}",
        korean.header("vary")
    );
    assert!(korean.text.contains(r#"<html lang="ko" dir="ltr">"#));
    assert!(
        korean.text.contains("대기열에 들어와 있습니다"),
        "{}",
        korean.text
    );
    assert!(korean.text.contains("내 대기 순서"));
    let ticket = korean
        .cookie(&format!("qg_ticket_{room}"))
        .expect("a ticket cookie");
    let cookies = vec![(format!("qg_ticket_{room}"), ticket)];

    // `?lang=` wins over the header, and the place is the same.
    let german = page(cookies.clone(), format!("{path}?lang=de"), "ko").await;
    assert_eq!(german.header("content-language"), Some("de"));
    assert!(german.text.contains(r#"<html lang="de" dir="ltr">"#));
    assert!(german.text.contains("Sie sind in der Warteschlange"));
    assert!(german
        .text
        .contains(r#"aria-labelledby="position-label">1</dd>"#));
    assert!(german
        .text
        .contains(r#"lang="de" aria-current="true">Deutsch</a>"#));
    // A region finds its script; a language the pages do not speak, or a made-up one, gets
    // English.
    let taiwan = page(cookies.clone(), path.clone(), "zh-TW,zh;q=0.9").await;
    assert_eq!(taiwan.header("content-language"), Some("zh-Hant"));
    assert!(taiwan.text.contains("您正在排隊"));
    for header in ["nl-NL,nl;q=0.9", "x;;q=,,", "*"] {
        let english = page(cookies.clone(), format!("{path}?lang=xx-%00"), header).await;
        assert_eq!(english.status, 200, "{header}: {}", english.text);
        assert_eq!(english.header("content-language"), Some("en"), "{header}");
        assert!(english.text.contains("You are in line"));
    }
    // JSON answers are the same whatever the language.
    let json_answer = t
        .request(
            reqwest::Method::GET,
            &path,
            &cookies,
            &[("accept", "application/json"), ("accept-language", "ja")],
        )
        .await;
    assert_eq!(json_answer.json["position"], 1, "{}", json_answer.text);

    // A proof-of-work room's challenge page, in Spanish.
    let pow_room = unique("lang-pow");
    t.put_room(
        &pow_room,
        json!({"max_active": 5, "paths": [format!("/{pow_room}")],
               "challenge": {"kind": "pow", "difficulty": 4}}),
    )
    .await;
    let challenge = page(vec![], format!("/{pow_room}"), "es-MX,es;q=0.9").await;
    assert_eq!(challenge.header("x-queuegate-status"), Some("challenge"));
    assert_eq!(challenge.header("content-language"), Some("es"));
    assert!(
        challenge
            .text
            .contains("Un momento antes de entrar en la fila"),
        "{}",
        challenge.text
    );

    // The closed room's page, in Japanese.
    let mut closed = config;
    closed["mode"] = json!("closed");
    t.put_room(&room, closed).await;
    let shut = page(vec![], path.clone(), "ja-JP,ja;q=0.9").await;
    assert_eq!(shut.status, 403, "{}", shut.text);
    assert_eq!(shut.header("content-language"), Some("ja"));
    assert!(
        shut.text.contains("この待合室は閉じています"),
        "{}",
        shut.text
    );
}
