//! A siteverify provider on 127.0.0.1 that speaks Cloudflare's Turnstile protocol: a form POST
//! of `secret`, `response` and optionally `remoteip` and `idempotency_key`, answered with
//! `{"success": bool, "error-codes": [...], "challenge_ts", "hostname", ...}`.
//!
//! Cloudflare's own endpoint (`https://challenges.cloudflare.com/turnstile/v0/siteverify`)
//! cannot be reached from the machine these tests run on, so the suite checks queuegate against
//! this one, which answers as Cloudflare documents: a response `pass-<anything>` passes once,
//! and the same response again is refused with `timeout-or-duplicate`; any other response is
//! refused with `invalid-input-response`; a secret that is not the provider's is refused with
//! `invalid-input-secret`. A few responses make it misbehave, as a provider having a bad day
//! would: `garbage-*` gets an HTML page, `huge-*` a reply of a mebibyte, `down-*` a 503, and
//! `slow-*` its answer after ten seconds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The provider, stopped when dropped.
pub struct Provider {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

struct State {
    secret: String,
    /// The responses that passed once.
    spent: Mutex<Vec<String>>,
    /// Every form received, in order.
    forms: Mutex<Vec<HashMap<String, String>>>,
}

impl Provider {
    pub async fn start(secret: &str) -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State {
            secret: secret.to_owned(),
            spent: Mutex::default(),
            forms: Mutex::default(),
        });
        let shared = state.clone();
        let app = axum::Router::new().route(
            "/turnstile/v0/siteverify",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let state = shared.clone();
                async move { siteverify(&state, &headers, &body).await }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Provider { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/turnstile/v0/siteverify", self.addr)
    }

    /// Every form the provider received.
    pub fn forms(&self) -> Vec<HashMap<String, String>> {
        self.state.forms.lock().unwrap().clone()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A URL where no provider listens: a port that was free a moment ago, closed again.
pub async fn closed_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/turnstile/v0/siteverify")
}

fn reply(status: StatusCode, success: bool, codes: &[&str]) -> Response {
    let mut body = json!({"success": success, "error-codes": codes, "messages": []});
    if success {
        body["challenge_ts"] = json!("2026-11-30T12:00:00.000Z");
        body["hostname"] = json!("127.0.0.1");
        body["action"] = json!("");
        body["cdata"] = json!("");
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn siteverify(state: &State, headers: &HeaderMap, body: &[u8]) -> Response {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return reply(StatusCode::BAD_REQUEST, false, &["bad-request"]);
    }
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    state.forms.lock().unwrap().push(form.clone());
    let (Some(secret), Some(response)) = (form.get("secret"), form.get("response")) else {
        let missing = if form.contains_key("secret") {
            "missing-input-response"
        } else {
            "missing-input-secret"
        };
        return reply(StatusCode::OK, false, &[missing]);
    };
    if *secret != state.secret {
        return reply(StatusCode::OK, false, &["invalid-input-secret"]);
    }
    if response.starts_with("garbage-") {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>Sign in to the hotel wifi</body></html>",
        )
            .into_response();
    }
    if response.starts_with("huge-") {
        let mut body = vec![b' '; 1 << 20];
        body.extend_from_slice(br#"{"success":true,"error-codes":[]}"#);
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
    }
    if response.starts_with("down-") {
        return (StatusCode::SERVICE_UNAVAILABLE, "upstream connect error").into_response();
    }
    if response.starts_with("slow-") {
        tokio::time::sleep(Duration::from_secs(10)).await;
        return reply(StatusCode::OK, true, &[]);
    }
    if !response.starts_with("pass-") {
        return reply(StatusCode::OK, false, &["invalid-input-response"]);
    }
    let mut spent = state.spent.lock().unwrap();
    if spent.contains(response) {
        return reply(StatusCode::OK, false, &["timeout-or-duplicate"]);
    }
    spent.push(response.clone());
    reply(StatusCode::OK, true, &[])
}
