//! The server: shared state, the router and the process around them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use queuegate::{ErrorCode, RoomContext, RoomId, SigningKeys};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::clock::{random_epoch, Clock};
use crate::config::{Settings, UnavailablePolicy};
use crate::http::error::{error_response, AppError};
use crate::http::proxy::{HttpUpstream, Upstream};
use crate::http::{admin, gate, public};
use crate::metrics::Metrics;
use crate::routes::{RouteTable, Routes};
use crate::scheduler::Scheduler;
use crate::store::{RoomRecord, Store};

/// State every handler shares.
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub keys: SigningKeys,
    pub admin_key_digest: [u8; 32],
    pub prefix: String,
    pub secure_cookies: bool,
    pub routes: Arc<Routes>,
    pub upstream: Upstream,
    pub metrics: Arc<Metrics>,
    pub wake_scheduler: Arc<Notify>,
    pub clock: Clock,
    pub on_store_unavailable: UnavailablePolicy,
}

pub type AppState = Arc<Shared>;

impl Shared {
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// The room, or `unknown_room`.
    pub async fn record(&self, room: &RoomId) -> Result<RoomRecord, AppError> {
        self.store.room(room).await?.ok_or_else(|| {
            AppError::new(
                ErrorCode::UnknownRoom,
                format!("no room {:?}", room.as_str()),
            )
        })
    }

    pub fn context<'a>(&'a self, record: &'a RoomRecord) -> RoomContext<'a> {
        RoomContext {
            room: &record.id,
            config: &record.config,
            paused: record.paused,
            measured_rate: record.measured_rate,
            keys: &self.keys,
            secure_cookies: self.secure_cookies,
        }
    }

    /// Rebuilds the route table and lets the scheduler look at the rooms at once.
    pub async fn rooms_changed(&self) {
        let build = self.routes.begin();
        match self.store.rooms().await {
            Ok(records) => self.routes.finish(build, RouteTable::build(&records)),
            Err(err) => tracing::warn!(error = %err, "could not reload the rooms"),
        }
        self.wake_scheduler.notify_one();
    }
}

pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route("/rooms", get(admin::list_rooms))
        .route("/rooms/{room}", get(admin::get_room).put(admin::put_room))
        .route("/rooms/{room}/admit", post(admin::admit))
        .route("/rooms/{room}/pause", post(admin::pause))
        .route("/rooms/{room}/resume", post(admin::resume))
        .route("/rooms/{room}/revoke", post(admin::revoke))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            admin::require_admin,
        ));
    let api = Router::new()
        .route("/rooms/{room}/join", post(public::join))
        .route("/rooms/{room}/status", get(public::status))
        .route("/rooms/{room}/leave", post(public::leave))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .nest("/admin", admin)
        .fallback(api_not_found)
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .nest(&state.prefix, api)
        .fallback(gate::gate)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .with_state(state)
}

async fn healthz(State(s): State<AppState>) -> Response {
    match s.store.health().await {
        Ok(()) => {
            Json(serde_json::json!({"status": "ok", "store": s.store.kind()})).into_response()
        }
        Err(err) => {
            let err = queuegate::ApiError::from(err);
            let policy = match s.on_store_unavailable {
                UnavailablePolicy::Closed => "closed",
                UnavailablePolicy::Open => "open",
            };
            let body = serde_json::json!({
                "status": "unavailable",
                "store": s.store.kind(),
                "gate": policy,
                "error": err.to_body().error,
            });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn api_not_found() -> AppError {
    AppError::new(ErrorCode::NotFound, "no such API route")
}

async fn method_not_allowed() -> AppError {
    AppError::new(
        ErrorCode::MethodNotAllowed,
        "that method is not allowed here",
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    error_response(&queuegate::ApiError::new(
        ErrorCode::Internal,
        "internal error",
    ))
}

/// Counts and times every request by route.
async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let route = match req.extensions().get::<MatchedPath>() {
        Some(path) => path.as_str().to_owned(),
        None if req.uri().path().starts_with(&s.prefix) => "unmatched".to_owned(),
        None => "gate".to_owned(),
    };
    let start = Instant::now();
    let response = next.run(req).await;
    s.metrics
        .request(&route, response.status().as_u16(), start.elapsed());
    response
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_key: String,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    scheduler: JoinHandle<()>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets requests in flight finish, stops the scheduler.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        let _ = self.scheduler.await;
    }

    /// Resolves when the server stops by itself or `shutdown` is sent.
    pub async fn wait(self) -> std::io::Result<()> {
        let result = self.server.await.unwrap_or(Ok(()));
        let _ = self.shutdown.send(true);
        let _ = self.scheduler.await;
        result
    }

    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Upstream(#[from] crate::http::proxy::BadUpstream),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("room {room}: {error}")]
    Room { room: RoomId, error: String },
}

/// Binds, puts the configured rooms into the store, and starts the server and the scheduler.
pub async fn start(
    settings: &Settings,
    store: Arc<dyn Store>,
    clock: Clock,
) -> Result<Running, StartError> {
    let upstream = match &settings.upstream {
        Some(url) => Upstream::Http(HttpUpstream::new(url)?),
        None => Upstream::Demo,
    };
    for (room, config) in &settings.rooms {
        store
            .put_room(room, config.clone(), random_epoch(), clock.now())
            .await
            .map_err(|e| StartError::Room {
                room: room.clone(),
                error: e.to_string(),
            })?;
    }
    let listener =
        TcpListener::bind(settings.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: settings.listen,
                source,
            })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: settings.listen,
        source,
    })?;
    let metrics = Arc::new(Metrics::new());
    let routes = Arc::new(Routes::default());
    let wake = Arc::new(Notify::new());
    let state = Arc::new(Shared {
        store: store.clone(),
        keys: settings.signing_keys.clone(),
        admin_key_digest: admin::key_digest(&settings.admin_key),
        prefix: settings.api_prefix.clone(),
        secure_cookies: settings.secure_cookies,
        routes: routes.clone(),
        upstream,
        metrics: metrics.clone(),
        wake_scheduler: wake.clone(),
        clock: clock.clone(),
        on_store_unavailable: settings.on_store_unavailable,
    });
    state.rooms_changed().await;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let holder = format!(
        "{}-{}",
        addr,
        crate::config::hex(&crate::clock::random_bytes::<4>())
    );
    let scheduler = Scheduler::new(store, clock, settings.tick, holder)
        .with_metrics(metrics)
        .with_routes(routes);
    let scheduler = tokio::spawn(scheduler.run(wake, shutdown_rx.clone()));
    let app = router(state.clone());
    let mut stop = shutdown_rx;
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await
    });
    Ok(Running {
        addr,
        admin_key: settings.admin_key.clone(),
        state,
        shutdown,
        server,
        scheduler,
    })
}
