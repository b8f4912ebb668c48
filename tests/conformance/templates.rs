//! A room's own page template: put, read back, previewed, shown at the gate in the visitor's
//! language, refused with its line when it does not compile, removed.

use reqwest::Method;
use serde_json::json;

use super::{assert_error, unique};
use crate::support::{Reply, Target};

/// Every page, in the room's own words, with what the visitor's language and numbers give.
const TEMPLATE: &str = r#"<!doctype html>
<html lang="{{ lang }}" dir="{{ dir }}"><head><title>{{ title }}</title>
{% if refresh_s %}<meta http-equiv="refresh" content="{{ refresh_s }}">{% endif %}</head>
<body><main data-qg-state="{{ state }}">
<h1>Acme sale: {{ title }}</h1>
{% if state == "waiting" and placed %}<p id="position">{{ position_text }}</p><p id="eta">{{ eta_text }}</p>{% endif %}
<p id="message">{{ message }}</p>
<p id="escaped">{{ "<b>not bold</b>" }}</p>
{% for l in languages %}<a href="?lang={{ l.tag }}"{% if l.current %} aria-current="true"{% endif %}>{{ l.name }}</a>{% endfor %}
</main></body></html>
"#;

async fn put_template(t: &Target, room: &str, content_type: &str, body: String) -> Reply {
    t.send(
        t.admin(Method::PUT, &format!("/rooms/{room}/template"))
            .header("content-type", content_type)
            .body(body),
    )
    .await
}

async fn preview(t: &Target, room: &str, query: &str) -> Reply {
    t.send(t.admin(Method::GET, &format!("/rooms/{room}/preview?{query}")))
        .await
}

async fn korean_page(t: &Target, path: &str, cookies: &[(String, String)]) -> Reply {
    let headers = [
        ("accept", "text/html"),
        ("accept-language", "ko-KR,ko;q=0.9"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-dest", "document"),
    ];
    t.request(Method::GET, path, cookies, &headers).await
}

pub async fn a_room_s_own_template_is_what_its_visitors_see(t: &Target) {
    let room = unique("tpl");
    // One shard: every target knows a waiting visitor's exact place (at the edge, a place in a
    // room of several shards is estimated from summaries up to a second old).
    let config = json!({"max_active": 5, "shards": 1, "paths": [format!("/{room}")]});
    t.put_room(&room, config.clone()).await;
    t.pause(&room).await;
    let path = format!("/{room}/tickets");

    // Without one, the built-in pages; nothing to read back.
    let reply = t
        .send(t.admin(Method::GET, &format!("/rooms/{room}/template")))
        .await;
    assert_error(&reply, 404, "not_found", "no template yet");
    let built_in = preview(t, &room, "state=full&lang=ko").await;
    assert_eq!(built_in.status, 200, "{}", built_in.text);
    assert_eq!(built_in.header("x-queuegate-template"), Some("built-in"));
    assert!(
        built_in.text.contains(r#"<html lang="ko""#),
        "{}",
        built_in.text
    );

    // What is not a template is refused, and changes nothing.
    let reply = put_template(t, &room, "application/json", TEMPLATE.to_owned()).await;
    assert_error(
        &reply,
        415,
        "unsupported_media_type",
        "a template sent as JSON",
    );
    let broken = "<p>fine</p>\n<p>{{ title }}</p>\n{% if state == %}\n".to_owned();
    let reply = put_template(t, &room, "text/html", broken).await;
    assert_error(
        &reply,
        422,
        "invalid_template",
        "a template that does not compile",
    );
    assert_eq!(reply.json["line"], 3, "{}", reply.text);
    let failing = "ok\n{% if state == \"full\" %}{{ 1 // 0 }}{% endif %}".to_owned();
    let reply = put_template(t, &room, "text/html; charset=utf-8", failing).await;
    assert_error(
        &reply,
        422,
        "invalid_template",
        "a template that fails on a page",
    );
    assert_eq!(reply.json["line"], 2, "{}", reply.text);
    assert!(reply.text.contains("full page"), "{}", reply.text);
    let huge = format!("{}<p>{{{{ title }}}}</p>", " ".repeat(1024 * 1024));
    let reply = put_template(t, &room, "text/html", huge).await;
    assert_error(&reply, 413, "body_too_large", "a template over 1 MiB");
    assert!(t.room(&room).await.get("template").is_none());

    // A good one is kept, named by its hash, and read back as sent.
    let reply = put_template(t, &room, "text/html; charset=utf-8", TEMPLATE.to_owned()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let hash = reply.json["template"]["hash"]
        .as_str()
        .expect("a hash")
        .to_owned();
    assert_eq!(reply.json["template"]["bytes"], TEMPLATE.len());
    assert_eq!(t.room(&room).await["template"]["hash"], hash.as_str());
    let back = t
        .send(t.admin(Method::GET, &format!("/rooms/{room}/template")))
        .await;
    assert_eq!(back.status, 200);
    assert_eq!(back.text, TEMPLATE);

    // A visitor's page: the room's words around the visitor's place, in Korean, escaped.
    let first = korean_page(t, &path, &[]).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.header("x-queuegate-status"), Some("waiting"));
    assert_eq!(first.header("content-language"), Some("ko"));
    assert!(
        first.text.contains(r#"<html lang="ko" dir="ltr">"#),
        "{}",
        first.text
    );
    assert!(
        first.text.contains(r#"data-qg-state="waiting""#),
        "{}",
        first.text
    );
    assert!(
        first.text.contains("Acme sale: 대기열에 들어와 있습니다"),
        "{}",
        first.text
    );
    assert!(
        first.text.contains(r#"<p id="position">1</p>"#),
        "{}",
        first.text
    );
    assert!(
        first.text.contains("&lt;b&gt;not bold&lt;"),
        "{}",
        first.text
    );
    assert!(first
        .text
        .contains(r#"<a href="?lang=ko" aria-current="true">한국어</a>"#));
    let ticket = first
        .cookie(&format!("qg_ticket_{room}"))
        .expect("the page gives a ticket");
    let cookies = vec![(format!("qg_ticket_{room}"), ticket)];
    let second = korean_page(t, &path, &[]).await;
    assert!(
        second.text.contains(r#"<p id="position">2</p>"#),
        "{}",
        second.text
    );
    let again = korean_page(t, &path, &cookies).await;
    assert!(
        again.text.contains(r#"<p id="position">1</p>"#),
        "{}",
        again.text
    );
    // JSON clients get JSON, whatever the template.
    let json = t.page(&path, &cookies, true).await;
    assert_eq!(json.json["position"], 1, "{}", json.text);

    // The preview shows every page with made-up numbers, in the language asked for.
    for state in [
        "waiting",
        "prequeue",
        "random",
        "full",
        "closed",
        "unavailable",
        "too_many_joins",
        "invite_required",
        "invite_used",
        "challenge_failed",
    ] {
        let page = preview(t, &room, &format!("state={state}&lang=ja")).await;
        assert_eq!(page.status, 200, "{state}: {}", page.text);
        assert_eq!(page.header("x-queuegate-template"), Some("room"), "{state}");
        assert_eq!(page.header("content-language"), Some("ja"), "{state}");
        assert!(
            page.text.contains(&format!(r#"data-qg-state="{state}""#)),
            "{state}: {}",
            page.text
        );
    }
    let waiting = preview(t, &room, "state=waiting&lang=de").await;
    assert!(
        waiting.text.contains(r#"<p id="position">1.234</p>"#),
        "{}",
        waiting.text
    );
    let reply = preview(t, &room, "state=admitted").await;
    assert_error(
        &reply,
        400,
        "invalid_request",
        "a state there is no page for",
    );
    let reply = preview(t, &unique("nosuch"), "state=full").await;
    assert_error(&reply, 404, "unknown_room", "a preview of no room");
    let reply = t
        .send(t.client.get(t.api(&format!("/admin/rooms/{room}/preview"))))
        .await;
    assert_error(&reply, 401, "unauthorized", "a preview without the key");

    // The room's refusals are its own pages too.
    let mut closed = config.clone();
    closed["mode"] = json!("closed");
    t.put_room(&room, closed).await;
    let page = korean_page(t, &format!("/{room}/other"), &[]).await;
    assert_eq!(page.status, 403, "{}", page.text);
    assert_eq!(page.header("x-queuegate-status"), Some("room_closed"));
    assert!(
        page.text.contains(r#"data-qg-state="closed""#),
        "{}",
        page.text
    );
    t.put_room(&room, config).await;

    // Another template replaces it at once; removing it brings the built-in page back.
    let other = "<p>{{ state }} in {{ lang }} #{{ position }}</p>".to_owned();
    let reply = put_template(t, &room, "text/html", other).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_ne!(reply.json["template"]["hash"], hash.as_str());
    let page = korean_page(t, &path, &cookies).await;
    assert_eq!(page.text, "<p>waiting in ko #1</p>");
    let reply = t
        .send(t.admin(Method::DELETE, &format!("/rooms/{room}/template")))
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert!(t.room(&room).await.get("template").is_none());
    let page = korean_page(t, &path, &cookies).await;
    assert!(
        page.text.contains("대기열에 들어와 있습니다"),
        "{}",
        page.text
    );
    assert!(!page.text.contains("Acme"), "{}", page.text);
}
