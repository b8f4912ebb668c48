//! One path, decided once: however a client spells a protected path, the gate matches the room on
//! the normalised path and the application gets exactly that path, or the request is refused with
//! 400 `invalid_path` when its meaning depends on the server. Sent as raw requests, since an HTTP
//! client would tidy the targets up first.

use super::*;
use crate::support::{raw_body, raw_request};

fn host(t: &Target) -> &str {
    t.base.trim_start_matches("http://")
}

/// The status code and whether the application answered, for a raw request line.
async fn raw(t: &Target, method: &str, target: &str) -> (Option<u16>, bool, String) {
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        host(t)
    );
    let answer = raw_request(&t.base, request.as_bytes()).await;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok());
    let upstream = answer.to_ascii_lowercase().contains("\r\nx-upstream: yes");
    (status, upstream, answer)
}

pub async fn every_spelling_of_a_protected_path_is_gated(t: &Target) {
    let room = unique("spelled");
    t.put_room(
        &room,
        json!({"max_active": 1, "paths": [format!("/{room}")]}),
    )
    .await;
    t.pause(&room).await;
    let (first, rest) = room.split_at(1);
    let escaped = format!("%{:02X}", first.as_bytes()[0]);
    for target in [
        format!("/{escaped}{rest}/x"),
        format!("//{room}/x"),
        format!("/x/../{room}/x"),
        format!("/{room}/./x"),
        format!("/{room};jsessionid=1/x"),
    ] {
        let (status, upstream, answer) = raw(t, "GET", &target).await;
        assert!(!upstream, "{target} reached the application: {answer}");
        assert_eq!(status, Some(200), "{target}: {answer}");
        let body: Value = serde_json::from_str(&raw_body(&answer)).unwrap_or(Value::Null);
        assert_eq!(body["status"], "waiting", "{target}: {answer}");
        assert_eq!(body["room"], room.as_str(), "{target}: {answer}");
    }
    let mut refused = vec![
        format!("/{room}%2fx"),
        format!("/{room}%2Fx"),
        format!("/{room}%5Cx"),
    ];
    let climbing = ["/..".to_owned(), format!("/../{room}/x")];
    if t.behind_runtime_front {
        // The runtime resolves dot segments before the worker sees the URL (as a browser
        // would): `/../{room}/x` arrives as `/{room}/x`, and is gated.
        let (status, upstream, answer) = raw(t, "GET", &climbing[1]).await;
        assert!(!upstream, "{}: {answer}", climbing[1]);
        assert_eq!(status, Some(200), "{}: {answer}", climbing[1]);
    } else if t.behind_nginx {
        // nginx refuses a path above the root itself, with its own 400.
        for target in &climbing {
            let (status, upstream, answer) = raw(t, "GET", target).await;
            assert!(!upstream, "{target} reached the application: {answer}");
            assert_eq!(status, Some(400), "{target}: {answer}");
        }
    } else {
        refused.extend(climbing);
    }
    for target in refused {
        let (status, upstream, answer) = raw(t, "GET", &target).await;
        assert!(!upstream, "{target} reached the application: {answer}");
        assert_eq!(status, Some(400), "{target}: {answer}");
        assert!(
            raw_body(&answer).contains("invalid_path"),
            "{target}: {answer}"
        );
    }
}

pub async fn a_target_that_is_not_a_path_never_reaches_the_application(t: &Target) {
    for (method, target) in [("OPTIONS", "*"), ("CONNECT", "example.com:443")] {
        let (status, upstream, answer) = raw(t, method, target).await;
        assert!(
            !upstream,
            "{method} {target} reached the application: {answer}"
        );
        if t.behind_runtime_front {
            // Answered (or dropped) by the runtime in front of the worker: wrangler dev's proxy
            // answers `OPTIONS *` with its own 500 and drops a CONNECT; the worker never sees
            // either.
            continue;
        }
        if t.behind_nginx {
            // nginx answers both with its own 400 (or 405) and passes neither on.
            assert!(
                matches!(status, Some(400 | 405)),
                "{method} {target}: {answer}"
            );
            continue;
        }
        assert_eq!(status, Some(400), "{method} {target}: {answer}");
        assert!(
            raw_body(&answer).contains("invalid_path"),
            "{method} {target}: {answer}"
        );
    }
}
