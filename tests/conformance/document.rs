//! The API document: every route the suite calls is in it, with its method, and the error codes
//! it names are the server's own.

use queuegate::error::ErrorCode;
use serde_json::Value;

use crate::support::Target;

/// Every route of the API (under the prefix), as the README lists them.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/rooms/{room}/join"),
    ("get", "/rooms/{room}/status"),
    ("get", "/rooms/{room}/stream"),
    ("post", "/rooms/{room}/leave"),
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/admin/ui"),
    ("get", "/admin/rooms"),
    ("get", "/admin/rooms/{room}"),
    ("put", "/admin/rooms/{room}"),
    ("post", "/admin/rooms/{room}/admit"),
    ("post", "/admin/rooms/{room}/pause"),
    ("post", "/admin/rooms/{room}/resume"),
    ("post", "/admin/rooms/{room}/revoke"),
    ("get", "/admin/rooms/{room}/events"),
    ("get", "/admin/rooms/{room}/events/{event}"),
    ("put", "/admin/rooms/{room}/events/{event}"),
    ("delete", "/admin/rooms/{room}/events/{event}"),
    ("get", "/admin/rooms/{room}/template"),
    ("put", "/admin/rooms/{room}/template"),
    ("delete", "/admin/rooms/{room}/template"),
    ("get", "/admin/rooms/{room}/preview"),
    ("get", "/admin/rooms/{room}/report"),
    ("post", "/admin/lease"),
    ("post", "/admin/rooms/{room}/schedule"),
];

pub async fn the_api_document_lists_every_route(t: &Target) {
    let reply = t.send(t.client.get(t.api("/openapi.json"))).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let doc = &reply.json;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["servers"][0]["url"], "/_qg/v1");
    let paths = doc["paths"].as_object().expect("paths");
    let mut listed = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().expect("a path item").keys() {
            listed.push((method.as_str(), path.as_str()));
        }
    }
    listed.sort();
    let mut expected = ROUTES.to_vec();
    expected.sort();
    assert_eq!(listed, expected, "the document's routes");

    for (method, path) in ROUTES {
        let op = &paths[*path][*method];
        assert!(op["summary"].is_string(), "{method} {path}: a summary");
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path}"
        );
        // Every admin route but the dashboard page needs the key.
        let needs_key = path.starts_with("/admin/") && *path != "/admin/ui";
        let secured = op["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get("admin_key").is_some()));
        assert_eq!(
            secured, needs_key,
            "{method} {path}: security {}",
            op["security"]
        );
    }
    // A route's errors are the one error body, whose codes are the server's.
    let join_429 = &paths["/rooms/{room}/join"]["post"]["responses"]["429"];
    assert_eq!(
        join_429["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    let codes: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("the codes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let ours: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(codes, ours);
    // The bodies are the server's own types.
    let visitor = &doc["components"]["schemas"]["VisitorResponse"]["properties"];
    for field in [
        "room",
        "status",
        "ticket",
        "position",
        "eta_seconds",
        "poll_after_ms",
    ] {
        assert!(
            visitor.get(field).is_some(),
            "VisitorResponse.{field}: {visitor}"
        );
    }
}
