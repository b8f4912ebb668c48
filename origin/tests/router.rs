//! The origin's whole HTTP application, every route, without a socket: requests go to the
//! router with `tower::ServiceExt::oneshot`, on the embedded store and a manual clock.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use http_body_util::BodyExt;
use queuegate::service::Metrics;
use queuegate_origin::clock::Clock;
use queuegate_origin::config::{ServeArgs, Settings};
use queuegate_origin::http_client::ReqwestClient;
use queuegate_origin::server::{app, service, upstream};
use queuegate_origin::store::memory::MemoryStore;
use serde_json::{json, Value};
use tower::ServiceExt;

const ADMIN: &str = "router-test-admin-key-0123456789abcdef";

fn router() -> Router {
    let env = |name: &str| match name {
        "QUEUEGATE_ADMIN_KEY" => Some(ADMIN.to_owned()),
        "QUEUEGATE_SIGNING_KEYS" => Some("k1:router-test-signing-secret".to_owned()),
        _ => None,
    };
    let settings = Settings::resolve(&ServeArgs::default(), env).expect("settings");
    let (clock, _) = Clock::manual(1_800_000_000_000);
    let service = service(
        &settings,
        Arc::new(MemoryStore::new()),
        upstream(&settings).expect("the demo page"),
        Arc::new(ReqwestClient::new().expect("an HTTP client")),
        clock,
        Arc::new(Metrics::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    app(Arc::new(service))
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
    json: Value,
}

async fn answer(response: Response) -> Answer {
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("a body").to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Answer {
        status: parts.status,
        headers: parts.headers,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

async fn send(app: &Router, method: Method, uri: &str, auth: Option<&str>, body: Value) -> Answer {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "queue.example");
    if let Some(token) = auth {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Value::Null => Body::empty(),
        body => Body::from(body.to_string()),
    };
    answer(app.clone().oneshot(req.body(body).unwrap()).await.unwrap()).await
}

/// A GET outside the API (the gate) with the given headers.
async fn page(app: &Router, path: &str, headers: &[(header::HeaderName, String)]) -> Answer {
    let mut req = Request::get(path).header(header::HOST, "queue.example");
    for (name, value) in headers {
        req = req.header(name, value);
    }
    answer(
        app.clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap(),
    )
    .await
}

fn api(a: &Answer, status: StatusCode, what: &str) {
    assert_eq!(a.status, status, "{what}: {}", a.text);
    assert_eq!(
        a.headers
            .get(header::CACHE_CONTROL)
            .map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "{what}"
    );
}

#[tokio::test]
async fn every_route_answers_through_the_router() {
    let app = router();
    let admin = Some(ADMIN);

    // Admin: create, update, read, list.
    let room = json!({"max_active": 1, "paths": ["/shop"], "shards": 2});
    let put = send(
        &app,
        Method::PUT,
        "/_qg/v1/admin/rooms/r",
        admin,
        room.clone(),
    )
    .await;
    api(&put, StatusCode::CREATED, "put (create)");
    let put = send(&app, Method::PUT, "/_qg/v1/admin/rooms/r", admin, room).await;
    api(&put, StatusCode::OK, "put (update)");
    let get = send(
        &app,
        Method::GET,
        "/_qg/v1/admin/rooms/r",
        admin,
        Value::Null,
    )
    .await;
    api(&get, StatusCode::OK, "get");
    assert_eq!(get.json["max_active"], 1);
    let list = send(&app, Method::GET, "/_qg/v1/admin/rooms", admin, Value::Null).await;
    api(&list, StatusCode::OK, "list");
    assert_eq!(list.json["rooms"][0]["id"], "r");
    let pause = send(
        &app,
        Method::POST,
        "/_qg/v1/admin/rooms/r/pause",
        admin,
        Value::Null,
    )
    .await;
    api(&pause, StatusCode::OK, "pause");
    assert_eq!(pause.json["paused"], true);

    // Public: join (waiting: the room is paused and has no credit), status.
    let join = send(
        &app,
        Method::POST,
        "/_qg/v1/rooms/r/join",
        None,
        Value::Null,
    )
    .await;
    api(&join, StatusCode::OK, "join");
    assert_eq!(join.json["status"], "waiting");
    let ticket = join.json["ticket"].as_str().unwrap().to_owned();
    let id = join.json["ticket_id"].as_str().unwrap().to_owned();
    let status = send(
        &app,
        Method::GET,
        "/_qg/v1/rooms/r/status",
        Some(&ticket),
        Value::Null,
    )
    .await;
    api(&status, StatusCode::OK, "status");
    assert_eq!(status.json["position"], 1);

    // Admin: admit by hand, then the visitor has a pass; revoke it.
    let admit = send(
        &app,
        Method::POST,
        "/_qg/v1/admin/rooms/r/admit",
        admin,
        json!({"count": 5}),
    )
    .await;
    api(&admit, StatusCode::OK, "admit");
    assert_eq!(admit.json["admitted"], 1);
    let status = send(
        &app,
        Method::GET,
        "/_qg/v1/rooms/r/status",
        Some(&ticket),
        Value::Null,
    )
    .await;
    assert_eq!(status.json["status"], "admitted", "{}", status.text);
    let pass = status.json["pass"].as_str().unwrap().to_owned();

    // The gate: the pass goes through to the built-in demo application, naming the visitor.
    let inside = page(
        &app,
        "/shop/cart",
        &[(header::COOKIE, format!("qg_pass_r={pass}"))],
    )
    .await;
    assert_eq!(inside.status, StatusCode::OK);
    assert!(inside.text.contains(&id), "{}", inside.text);
    // Without it, the waiting page (HTML) or the visitor answer (JSON).
    let waiting = page(&app, "/shop", &[]).await;
    assert_eq!(waiting.status, StatusCode::OK);
    assert_eq!(waiting.headers["x-queuegate-status"], "waiting");
    assert!(waiting.text.contains("You are in line"));
    let json = page(
        &app,
        "/shop",
        &[(header::ACCEPT, "application/json".into())],
    )
    .await;
    assert_eq!(json.json["status"], "waiting", "{}", json.text);
    // Neither was a page navigation (no Sec-Fetch-*, no text/html): no place, no cookie.
    for held in [&waiting, &json] {
        assert!(
            held.headers.get(header::SET_COOKIE).is_none(),
            "{:?}",
            held.headers
        );
    }
    assert!(json.json.get("ticket").is_none(), "{}", json.text);
    // A page navigation takes one.
    let navigation = page(
        &app,
        "/shop",
        &[
            (header::ACCEPT, "text/html".into()),
            (
                header::HeaderName::from_static("sec-fetch-mode"),
                "navigate".into(),
            ),
            (
                header::HeaderName::from_static("sec-fetch-dest"),
                "document".into(),
            ),
        ],
    )
    .await;
    assert_eq!(navigation.headers["x-queuegate-status"], "waiting");
    let cookie = navigation.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("qg_ticket_r="), "{cookie}");
    // A path no room protects goes straight through.
    let open = page(&app, "/about", &[]).await;
    assert_eq!(open.status, StatusCode::OK);
    assert!(open.headers.get("x-queuegate-status").is_none());

    let revoke = send(
        &app,
        Method::POST,
        "/_qg/v1/admin/rooms/r/revoke",
        admin,
        json!({"ticket_id": id}),
    )
    .await;
    api(&revoke, StatusCode::OK, "revoke");
    assert_eq!(revoke.json["revoked"], true);
    let leave = send(
        &app,
        Method::POST,
        "/_qg/v1/rooms/r/leave",
        Some(&ticket),
        Value::Null,
    )
    .await;
    api(&leave, StatusCode::OK, "leave");
    assert_eq!(leave.json["status"], "left");
    let resume = send(
        &app,
        Method::POST,
        "/_qg/v1/admin/rooms/r/resume",
        admin,
        Value::Null,
    )
    .await;
    api(&resume, StatusCode::OK, "resume");
    assert_eq!(resume.json["paused"], false);

    // The scheduler runs in this process: no interface for a remote one.
    for (path, body) in [
        (
            "/_qg/v1/admin/lease",
            json!({"holder": "x", "ttl_ms": 1000}),
        ),
        ("/_qg/v1/admin/rooms/r/schedule", json!({"fence": 1})),
    ] {
        let a = send(&app, Method::POST, path, admin, body).await;
        api(&a, StatusCode::NOT_FOUND, path);
        assert_eq!(a.json["error"]["code"], "not_found");
    }

    // Health and metrics.
    let health = send(&app, Method::GET, "/_qg/v1/healthz", None, Value::Null).await;
    api(&health, StatusCode::OK, "healthz");
    assert_eq!(health.json, json!({"status": "ok", "store": "memory"}));
    let metrics = send(&app, Method::GET, "/_qg/v1/metrics", None, Value::Null).await;
    api(&metrics, StatusCode::OK, "metrics");
    assert!(
        metrics.text.contains(
            "queuegate_http_requests_total{route=\"/_qg/v1/rooms/{room}/join\",status=\"200\"}"
        ),
        "{}",
        metrics.text
    );
    for line in [
        "queuegate_gate_held_total{room=\"r\",reason=\"not_html\"} 2",
        "queuegate_gate_requests_total{room=\"r\",outcome=\"held\"} 2",
        "queuegate_joins_total{room=\"r\",outcome=\"queued\"} 2",
    ] {
        assert!(metrics.text.contains(line), "{line}: {}", metrics.text);
    }
    assert!(metrics.text.ends_with("# EOF\n"));

    // Errors: no key, wrong key, no route, wrong method.
    let no_key = send(&app, Method::GET, "/_qg/v1/admin/rooms", None, Value::Null).await;
    api(&no_key, StatusCode::UNAUTHORIZED, "no key");
    assert!(no_key.headers.contains_key(header::WWW_AUTHENTICATE));
    let wrong = send(
        &app,
        Method::GET,
        "/_qg/v1/admin/rooms",
        Some("nope"),
        Value::Null,
    )
    .await;
    api(&wrong, StatusCode::UNAUTHORIZED, "wrong key");
    let missing = send(&app, Method::GET, "/_qg/v1/nope", None, Value::Null).await;
    api(&missing, StatusCode::NOT_FOUND, "no route");
    assert_eq!(missing.json["error"]["code"], "not_found");
    let method = send(
        &app,
        Method::DELETE,
        "/_qg/v1/rooms/r/join",
        None,
        Value::Null,
    )
    .await;
    api(&method, StatusCode::METHOD_NOT_ALLOWED, "wrong method");
    assert_eq!(method.json["error"]["code"], "method_not_allowed");
}

/// With `--admin-listen`, the visitors' listener serves no admin API and no metrics, and the
/// operators' serves nothing a visitor asks for.
#[tokio::test]
async fn visitors_and_operators_can_have_listeners_of_their_own() {
    use queuegate::service::Serves;
    use queuegate_origin::server::app_for;
    let env = |name: &str| match name {
        "QUEUEGATE_ADMIN_KEY" => Some(ADMIN.to_owned()),
        "QUEUEGATE_SIGNING_KEYS" => Some("k1:router-test-signing-secret".to_owned()),
        _ => None,
    };
    let settings = Settings::resolve(&ServeArgs::default(), env).expect("settings");
    let (clock, _) = Clock::manual(1_800_000_000_000);
    let service = Arc::new(service(
        &settings,
        Arc::new(MemoryStore::new()),
        upstream(&settings).expect("the demo page"),
        Arc::new(ReqwestClient::new().expect("an HTTP client")),
        clock,
        Arc::new(Metrics::new()),
        Arc::new(tokio::sync::Notify::new()),
    ));
    let visitors = app_for(service.clone(), Serves::Visitors);
    let operators = app_for(service, Serves::Operators);
    let admin = Some(ADMIN);
    let put = send(
        &operators,
        Method::PUT,
        "/_qg/v1/admin/rooms/r",
        admin,
        json!({"paths": ["/r"]}),
    )
    .await;
    api(&put, StatusCode::CREATED, "put on the operators' listener");
    for path in ["/_qg/v1/admin/rooms", "/_qg/v1/metrics"] {
        let a = send(&visitors, Method::GET, path, admin, Value::Null).await;
        api(&a, StatusCode::NOT_FOUND, path);
    }
    let join = send(
        &visitors,
        Method::POST,
        "/_qg/v1/rooms/r/join",
        None,
        Value::Null,
    )
    .await;
    api(&join, StatusCode::OK, "join on the visitors' listener");
    let join = send(
        &operators,
        Method::POST,
        "/_qg/v1/rooms/r/join",
        None,
        Value::Null,
    )
    .await;
    api(
        &join,
        StatusCode::NOT_FOUND,
        "join on the operators' listener",
    );
    assert_eq!(
        page(&operators, "/r", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(page(&visitors, "/r", &[]).await.status, StatusCode::OK);
    for listener in [&visitors, &operators] {
        let health = send(listener, Method::GET, "/_qg/v1/healthz", None, Value::Null).await;
        api(&health, StatusCode::OK, "healthz on both");
    }
}

/// Challenged, failed and decoyed joins are counted apart, so an operator sees an attack: a join
/// without a proof (challenged), a wrong answer in an infinite-queue room (failed, then decoyed:
/// a waiting answer), and a solved one (queued).
#[tokio::test]
async fn joins_that_meet_a_challenge_are_counted_by_outcome() {
    let app = router();
    let admin = Some(ADMIN);
    let config = json!({"max_active": 1, "suspicious": "infinite_queue",
                        "challenge": {"kind": "pow", "difficulty": 6}});
    let put = send(&app, Method::PUT, "/_qg/v1/admin/rooms/p", admin, config).await;
    api(&put, StatusCode::CREATED, "a proof-of-work room");
    let join = |body| send(&app, Method::POST, "/_qg/v1/rooms/p/join", None, body);

    let asked = join(json!({})).await;
    api(&asked, StatusCode::FORBIDDEN, "no proof");
    assert_eq!(asked.json["error"]["code"], "challenge_required");
    let token = asked.json["challenge"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = (0u64..)
        .map(|n| n.to_string())
        .find(|n| queuegate::challenge::leading_zero_bits(&token, n) < 6)
        .unwrap();
    let decoyed = join(json!({"challenge": {"token": token, "nonce": wrong}})).await;
    api(
        &decoyed,
        StatusCode::OK,
        "a wrong answer, in the infinite queue",
    );
    assert_eq!(decoyed.json["status"], "waiting", "{}", decoyed.text);
    let nonce = queuegate::challenge::solve(&token, 6);
    let queued = join(json!({"challenge": {"token": token, "nonce": nonce}})).await;
    api(&queued, StatusCode::OK, "a solved challenge");

    let metrics = send(&app, Method::GET, "/_qg/v1/metrics", None, Value::Null).await;
    for outcome in ["challenged", "failed", "decoyed"] {
        let line = format!("queuegate_joins_total{{room=\"p\",outcome=\"{outcome}\"}} 1");
        assert!(metrics.text.contains(&line), "{line}: {}", metrics.text);
    }
    let admitted_or_queued = ["queued", "entered"].iter().any(|outcome| {
        metrics.text.contains(&format!(
            "queuegate_joins_total{{room=\"p\",outcome=\"{outcome}\"}} 1"
        ))
    });
    assert!(admitted_or_queued, "{}", metrics.text);
}

/// A body refused before it is read leaves the rest of it on the connection: the answer says the
/// connection closes, or a client that pools connections sends its next request down one the
/// server is closing (a fresh clone's CI failed that way, with a broken pipe, after a 413).
#[tokio::test]
async fn a_body_refused_unread_closes_the_connection() {
    let app = router();
    let oversized = 2 * 1024 * 1024;
    let request = Request::builder()
        .method(Method::PUT)
        .uri("/_qg/v1/admin/rooms/big/template")
        .header(header::HOST, "queue.example")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .header(header::CONTENT_TYPE, "text/html")
        .header(header::CONTENT_LENGTH, oversized)
        .body(Body::from(vec![b' '; oversized]))
        .expect("a request");
    let refused = answer(app.clone().oneshot(request).await.expect("an answer")).await;
    api(
        &refused,
        StatusCode::PAYLOAD_TOO_LARGE,
        "an oversized template",
    );
    assert_eq!(
        refused.json["error"]["code"], "body_too_large",
        "{}",
        refused.text
    );
    assert_eq!(
        refused
            .headers
            .get(header::CONNECTION)
            .map(|v| v.to_str().unwrap()),
        Some("close")
    );

    // An answer to a body read to its end keeps the connection.
    let fine = send(
        &app,
        Method::GET,
        "/_qg/v1/admin/rooms",
        Some(ADMIN),
        Value::Null,
    )
    .await;
    assert!(fine.headers.get(header::CONNECTION).is_none());
}
