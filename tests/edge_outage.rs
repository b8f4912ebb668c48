//! The edge while its Durable Objects cannot be reached: the gate follows the outage policy
//! (`QUEUEGATE_ON_STORE_UNAVAILABLE`) exactly as the origin does while Redis is away, and
//! /healthz says which. The outage is real: `wrangler dev` runs the production worker with its
//! Durable Object bindings pointed at a worker that is not running (`script_name`), so every call
//! to them fails in the runtime, as a namespace that cannot be reached would.

mod support;

use std::path::PathBuf;

use support::edge::WranglerDev;
use support::{Target, Upstream};

/// The project's wrangler.toml with the Durable Objects bound to a worker nobody runs.
fn outage_config() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = std::fs::read_to_string(root.join("wrangler.toml")).expect("wrangler.toml");
    let config = config
        .replace(
            "main = \"build/index.js\"",
            &format!("main = \"{}\"", root.join("build/index.js").display()),
        )
        .replace(
            "class_name = \"Registry\" }",
            "class_name = \"Registry\", script_name = \"queuegate-absent\" }",
        )
        .replace(
            "class_name = \"ShardObject\" }",
            "class_name = \"ShardObject\", script_name = \"queuegate-absent\" }",
        );
    assert!(config.contains("queuegate-absent"), "{config}");
    let path = std::env::temp_dir().join(format!(
        "queuegate-outage-{}-{}.toml",
        std::process::id(),
        support::redis::free_port()
    ));
    std::fs::write(&path, config).expect("the config");
    path
}

async fn health(t: &Target) -> support::Reply {
    t.send(t.client.get(t.api("/healthz"))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_stays_closed_while_durable_objects_fail() {
    let upstream = Upstream::start().await;
    let dev = WranglerDev::start_with(Some(&upstream.url()), &outage_config(), &[]);
    let t = dev.target();
    let health = health(&t).await;
    assert_eq!(health.status, 503, "{}", health.text);
    assert_eq!(health.json["status"], "unavailable");
    assert_eq!(health.json["gate"], "closed");
    assert_eq!(health.json["error"]["code"], "store_unavailable");
    // A browser on any path gets the page that retries by itself, never the application.
    let page = t.page("/shop/cart", &[], false).await;
    assert_eq!(page.status, 503, "{}", page.text);
    assert!(page.header("x-upstream").is_none());
    assert_eq!(page.header("x-queuegate-status"), Some("unavailable"));
    assert_eq!(page.header("retry-after"), Some("2"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    // An API client gets the error.
    let json = t.page("/shop/cart", &[], true).await;
    assert_eq!(json.status, 503);
    assert_eq!(json.error_code(), Some("store_unavailable"));
    let join = t.join("any", None).await;
    assert_eq!(join.status, 503, "{}", join.text);
    assert_eq!(join.error_code(), Some("store_unavailable"));
    assert_eq!(join.header("retry-after"), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_opens_while_durable_objects_fail_when_told_to() {
    let upstream = Upstream::start().await;
    let dev = WranglerDev::start_with(
        Some(&upstream.url()),
        &outage_config(),
        &[("QUEUEGATE_ON_STORE_UNAVAILABLE", "open")],
    );
    let t = dev.target();
    let health = health(&t).await;
    assert_eq!(health.status, 503, "{}", health.text);
    assert_eq!(health.json["gate"], "open");
    let page = t.page("/shop/cart", &[], false).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.header("x-upstream"), Some("yes"));
    assert!(
        page.text.starts_with("upstream /shop/cart"),
        "{}",
        page.text
    );
    // The API still says what is wrong.
    let join = t.join("any", None).await;
    assert_eq!(join.status, 503, "{}", join.text);
    assert_eq!(join.error_code(), Some("store_unavailable"));
}
