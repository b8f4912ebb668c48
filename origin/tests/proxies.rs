//! Who the client is, behind trusted proxies and without: what the application gets in
//! X-Forwarded-For and -Proto, and whether cookies are `Secure`. Through the whole origin
//! application without a socket; the peer address is what a socket would have given.

mod common;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use common::recorded_app;
use queuegate::service::ClientAddr;
use queuegate_origin::config::ServeArgs;
use tower::ServiceExt;

fn behind(trusted: &[&str]) -> (axum::Router, std::sync::Arc<common::Recorder>) {
    recorded_app(ServeArgs {
        trusted_proxies: Some(trusted.iter().map(|s| s.to_string()).collect()),
        ..ServeArgs::default()
    })
}

async fn from(app: &axum::Router, peer: &str, method: &str, path: &str) -> (StatusCode, HeaderMap) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "shop.example")
        .header("x-forwarded-for", "1.2.3.4, 198.51.100.7")
        .header("x-forwarded-proto", "https")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ClientAddr(peer.parse().unwrap()));
    let response = app.clone().oneshot(req).await.unwrap();
    (response.status(), response.headers().clone())
}

#[tokio::test]
async fn a_trusted_proxys_chain_and_scheme_are_passed_on() {
    let (app, recorder) = behind(&["10.0.0.0/8"]);
    let (status, _) = from(&app, "10.0.0.2", "GET", "/page").await;
    assert_eq!(status, StatusCode::OK);
    let (_, headers) = recorder.0.lock().unwrap()[0].clone();
    // The chain from the client on: 198.51.100.7 reached the trusted proxy; what stood left
    // of it (1.2.3.4) was the client's own say and is dropped.
    assert_eq!(headers["x-forwarded-for"], "198.51.100.7, 10.0.0.2");
    assert_eq!(headers["x-forwarded-proto"], "https");
    assert_eq!(headers["x-forwarded-host"], "shop.example");
}

#[tokio::test]
async fn a_client_is_not_a_trusted_proxy_by_saying_so() {
    let (app, recorder) = behind(&["10.0.0.0/8"]);
    let (status, _) = from(&app, "203.0.113.9", "GET", "/page").await;
    assert_eq!(status, StatusCode::OK);
    let (_, headers) = recorder.0.lock().unwrap()[0].clone();
    assert_eq!(headers["x-forwarded-for"], "203.0.113.9");
    assert_eq!(headers["x-forwarded-proto"], "http");
}

#[tokio::test]
async fn cookies_are_secure_when_the_visitor_came_over_https() {
    let (app, _) = behind(&["10.0.0.0/8"]);
    let put = Request::put("/_qg/v1/admin/rooms/r")
        .header(header::HOST, "shop.example")
        .header(header::AUTHORIZATION, format!("Bearer {}", common::ADMIN))
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(
        app.clone().oneshot(put).await.unwrap().status(),
        StatusCode::CREATED
    );
    for (peer, secure) in [("10.0.0.2", true), ("203.0.113.9", false)] {
        let (status, headers) = from(&app, peer, "POST", "/_qg/v1/rooms/r/join").await;
        assert_eq!(status, StatusCode::OK);
        let cookie = headers[header::SET_COOKIE].to_str().unwrap().to_owned();
        assert_eq!(
            cookie.ends_with("; Secure"),
            secure,
            "from {peer}: {cookie}"
        );
    }
}
