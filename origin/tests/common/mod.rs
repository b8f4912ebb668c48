//! The whole origin application without a socket, for tests that drive its router with
//! `tower::ServiceExt::oneshot`: built from settings, on the embedded store and a manual clock,
//! in front of an upstream that records what reaches it.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use queuegate::service::{Metrics, Upstream, UpstreamError};
use queuegate_origin::clock::Clock;
use queuegate_origin::config::{ServeArgs, Settings};
use queuegate_origin::http_client::ReqwestClient;
use queuegate_origin::server::{app, service};
use queuegate_origin::store::memory::MemoryStore;

pub const ADMIN: &str = "origin-tests-admin-key-0123456789abcdef";

/// What reached the application: each request's target and headers.
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<(String, HeaderMap)>>);

impl Recorder {
    pub fn targets(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(t, _)| t.clone())
            .collect()
    }
}

#[async_trait]
impl Upstream for Recorder {
    async fn send(&self, req: Request) -> Result<Response, UpstreamError> {
        self.0
            .lock()
            .unwrap()
            .push((req.uri().to_string(), req.headers().clone()));
        Ok((StatusCode::OK, "application").into_response())
    }
}

/// The application for `args` (the test keys added), and what reaches its upstream.
pub fn recorded_app(args: ServeArgs) -> (Router, Arc<Recorder>) {
    let env = |name: &str| match name {
        "QUEUEGATE_ADMIN_KEY" => Some(ADMIN.to_owned()),
        "QUEUEGATE_SIGNING_KEYS" => Some("k1:origin-tests-signing-secret".to_owned()),
        _ => None,
    };
    let settings = Settings::resolve(&args, env).expect("settings");
    let recorder = Arc::new(Recorder::default());
    let (clock, _) = Clock::manual(1_800_000_000_000);
    let service = service(
        &settings,
        Arc::new(MemoryStore::new()),
        recorder.clone(),
        Arc::new(ReqwestClient::new().expect("an HTTP client")),
        clock,
        Arc::new(Metrics::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    (app(Arc::new(service)), recorder)
}
