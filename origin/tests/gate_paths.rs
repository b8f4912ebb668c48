//! No spelling of a path lets a request without a pass reach the application under a protected
//! prefix: for any request target, what the upstream gets, read the way a lenient server would
//! read it (every escape decoded, `\` taken for `/`, dot segments resolved, repeated slashes
//! collapsed, segment parameters dropped), is never under the room's prefix. Through the whole
//! origin application, without a socket, with an upstream that records what reaches it.

mod common;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode, Uri};
use common::{recorded_app, ADMIN};
use proptest::prelude::*;
use queuegate_origin::config::ServeArgs;
use tower::ServiceExt;

fn setup() -> (axum::Router, std::sync::Arc<common::Recorder>) {
    recorded_app(ServeArgs::default())
}

/// The path as a server that decodes everything and forgives everything would read it.
fn leniently(target: &str) -> String {
    let path = target.split('?').next().unwrap_or("");
    let mut bytes = Vec::new();
    let raw = path.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            raw[i],
            raw.get(i + 1).copied().and_then(hex),
            raw.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                bytes.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                bytes.push(b);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&bytes).replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        let segment = segment.split(';').next().unwrap_or("");
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    format!("/{}", segments.join("/"))
}

fn under_h(path: &str) -> bool {
    path == "/h" || path.starts_with("/h/")
}

async fn put_protected_room(app: &axum::Router) {
    let req = Request::put("/_qg/v1/admin/rooms/h")
        .header(header::HOST, "queue.example")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .body(Body::from(r#"{"paths": ["/h"], "max_active": 1}"#))
        .unwrap();
    assert_eq!(
        app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::CREATED
    );
    // Paused: nobody gets in without a pass, however the path is spelled.
    let req = Request::post("/_qg/v1/admin/rooms/h/pause")
        .header(header::HOST, "queue.example")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::OK
    );
}

async fn get(app: &axum::Router, target: &str) -> StatusCode {
    let req = Request::get(target)
        .header(header::HOST, "queue.example")
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(req).await.unwrap().status()
}

#[tokio::test]
async fn the_findings_are_refused_or_gated() {
    let (app, recorder) = setup();
    put_protected_room(&app).await;
    for (target, want) in [
        ("/%68/x", StatusCode::OK),
        ("//h/x", StatusCode::OK),
        ("/x/../h/x", StatusCode::OK),
        ("/h;jsessionid=1/x", StatusCode::OK),
        ("/h%2fx", StatusCode::BAD_REQUEST),
        ("/h%5Cx", StatusCode::BAD_REQUEST),
        ("/..", StatusCode::BAD_REQUEST),
        ("/../h/x", StatusCode::BAD_REQUEST),
        // The admin API, however it is spelled, asks for its key.
        ("/_qg/v1/../../_qg/v1/admin/rooms", StatusCode::UNAUTHORIZED),
        ("/x/..//_qg/v1/admin/rooms", StatusCode::UNAUTHORIZED),
    ] {
        assert_eq!(get(&app, target).await, want, "{target}");
    }
    assert_eq!(recorder.targets(), Vec::<String>::new());
    // What no room protects still goes through, on the path that was decided.
    assert_eq!(get(&app, "/x/../about/./me?q=%2F").await, StatusCode::OK);
    assert_eq!(recorder.targets(), vec!["/about/me?q=%2F".to_owned()]);
}

/// Targets such as `CONNECT host:443` and `OPTIONS *` are not paths: refused, never proxied.
#[tokio::test]
async fn a_target_that_is_not_a_path_is_refused() {
    let (app, recorder) = setup();
    for (method, target) in [("CONNECT", "example.com:443"), ("OPTIONS", "*")] {
        let req = Request::builder()
            .method(method)
            .uri(target)
            .header(header::HOST, "queue.example")
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(req).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{method} {target}"
        );
    }
    assert!(recorder.targets().is_empty());
}

fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "/", "/", "h", "H", "x", ".", "..", "%2e", "%2E", "%68", "%48", "%2f", "%5c", "%25", ";",
        "a", "%", "//", "%2e%2e", "?", "#", "\\", "%00", "~", "%7e", "%3b", "%3B", "%2e;", "..;",
    ])
}

proptest! {
    // PROPTEST_CASES asks for more (a long run); CI runs 2,000.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000)
    ))]

    #[test]
    fn no_target_reaches_a_protected_prefix_without_a_pass(
        pieces in proptest::collection::vec(piece(), 1..12),
    ) {
        let target = format!("/{}", pieces.concat());
        // A target the HTTP parser refuses never reaches the application at all.
        prop_assume!(target.parse::<Uri>().is_ok());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let leaked = runtime.block_on(async {
            let (app, recorder) = setup();
            put_protected_room(&app).await;
            let status = get(&app, &target).await;
            let reached = recorder.targets();
            (status, reached)
        });
        for path in &leaked.1 {
            prop_assert!(!under_h(&leniently(path)), "{} reached the application as {}", target, path);
        }
    }
}
