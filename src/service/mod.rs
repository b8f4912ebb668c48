//! The request layer: one axum router that both deployments serve, compiled for the host (the
//! origin, under hyper) and for wasm32 (the worker, under workerd). Every decision about a request
//! is made here, once: which room a path belongs to, who the visitor is, whether the gate lets the
//! request through, what the waiting answer says, which headers reach the application, how errors
//! and a store outage are answered, what the admin API accepts.
//!
//! A shell supplies the rest through four traits: a [`Store`] (the embedded store, Redis or the
//! Durable Objects), an [`Upstream`] (a hyper client on the origin, `fetch` at the edge), an
//! [`HttpClient`] for the request layer's own calls (a siteverify URL) and a [`Platform`] (the
//! clock, timers and random bytes). It inserts the client's address into each
//! request as a [`ClientAddr`] extension. Nothing here does IO of its own or reads a clock.

mod access;
mod admin;
mod client;
mod dashboard;
mod error;
mod events;
mod extract;
mod forward;
mod gate;
mod health;
mod metrics;
mod navigation;
pub mod openapi;
mod pages;
mod public;
mod report;
mod routes;
mod siteverify;
mod stall;
mod state;
mod store;
mod streams;
mod target;
mod templates;

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::middleware;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use access::{Credentials, Verdict};
pub use client::{client_of, Client};
pub use error::{error_response, AppError, Fault, RETRY_AFTER_S};
pub use forward::{
    clean_response_headers, ClientAddr, Demo, Upstream, UpstreamError, Visitor,
    DEFAULT_BODY_TIMEOUT_MS, DEFAULT_UPSTREAM_TIMEOUT_MS,
};
pub use metrics::{JoinOutcome, Metrics};
pub use navigation::{arrival, Arrival, HeldReason};
pub use routes::{RouteTable, Routes};
pub use siteverify::HttpClient;
pub use state::{Platform, Service, ServiceParts, UnavailablePolicy, MIN_ADMIN_KEY_LEN};
pub use store::{Fence, Joined, RemoteScheduling, Store, StoreError, StoreResult};

/// What one listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// The public API, the gate, the admin API, health and metrics.
    Everything,
    /// The public API, the gate and health: where the admin API and metrics have a listener of
    /// their own.
    Visitors,
    /// The admin API, metrics and health, and nothing a visitor asks for.
    Operators,
}

/// The router: the public API, the admin API and health under the API prefix, the gate for
/// every other path.
pub fn router(service: Arc<Service>) -> Router {
    router_for(service, Serves::Everything)
}

/// The router for a listener that serves `serves`.
pub fn router_for(service: Arc<Service>, serves: Serves) -> Router {
    // Each route with its document (utoipa-axum): the document lists exactly what is served.
    let mut api = OpenApiRouter::new().routes(routes!(health::healthz));
    if serves != Serves::Operators {
        api = api
            .routes(routes!(public::join))
            .routes(routes!(public::status))
            .routes(routes!(streams::stream))
            .routes(routes!(public::leave));
    }
    if serves != Serves::Visitors {
        api = api
            .routes(routes!(health::metrics))
            .nest("/admin", admin::router(service.clone()));
    }
    let (api, document) = api.split_for_parts();
    let document = openapi::document(document, &service.prefix);
    let api = api
        .route(
            "/openapi.json",
            get(move || std::future::ready(openapi::serve(&document))),
        )
        .fallback(error::api_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        // Every answer of the API is about one visitor or one moment: no cache keeps any.
        .layer(middleware::map_response(no_store));
    let outside_api = match serves {
        Serves::Operators => Router::new().fallback(error::not_found),
        _ => Router::new().fallback(gate::gate),
    };
    let routed = outside_api
        .nest(&service.prefix, api)
        .layer(middleware::from_fn_with_state(
            service.clone(),
            metrics::track,
        ))
        .with_state(service.clone());
    // The target is normalised before anything routes on it: a layer of the router itself would
    // run after routing.
    Router::new()
        .fallback_service(routed)
        .layer(middleware::from_fn_with_state(service, target::normalise))
}

async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
