//! `/healthz` and `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::state::Service;
use crate::error::ApiError;

/// 200 while the store can serve; 503 with what the gate does meanwhile otherwise.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    summary = "Whether the store can serve",
    responses((status = 200, description = "{\"status\": \"ok\", \"store\": kind}", body = Object), (status = 503, description = "The store cannot serve", body = Object))
)]
pub async fn healthz(State(s): State<Arc<Service>>) -> Response {
    let now = s.now();
    let (status, body) = match s.store.health(now).await {
        Ok(()) => (
            StatusCode::OK,
            serde_json::json!({
                "status": "ok",
                "store": s.store.kind(),
            }),
        ),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({
                "status": "unavailable",
                "store": s.store.kind(),
                "gate": s.on_store_unavailable.as_str(),
                "error": ApiError::from(err).to_body().error,
            }),
        ),
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"))
)]
pub async fn metrics(State(s): State<Arc<Service>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(&s.store.calls()),
    )
        .into_response()
}
