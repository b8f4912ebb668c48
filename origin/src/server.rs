//! The on-prem process around the request layer: the service built from the settings, the
//! router with what only a native server adds (the client's address from the socket, panics
//! caught), the listener and the scheduler.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::middleware;
use axum::response::Response;
use axum::Router;
use queuegate::service::{
    error_response, ClientAddr, Demo, HttpClient, Metrics, Serves, Service, ServiceParts, Upstream,
};
use queuegate::{ApiError, ErrorCode, RoomId};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::clock::{random_epoch, Clock};
use crate::config::Settings;
use crate::http_client::ReqwestClient;
use crate::scheduler::Scheduler;
use crate::store::{OriginStore, Store};
use crate::upstream::{BadUpstream, HttpUpstream};

/// The application the settings name: an HTTP upstream, or the built-in demo page.
pub fn upstream(settings: &Settings) -> Result<Arc<dyn Upstream>, BadUpstream> {
    Ok(match &settings.upstream {
        Some(url) => Arc::new(HttpUpstream::new(url)?),
        None => Arc::new(Demo {
            prefix: settings.api_prefix.clone(),
        }),
    })
}

/// The request layer's state for these settings, on `store`, in front of `upstream`, with
/// `http_client` for its own calls.
pub fn service(
    settings: &Settings,
    store: Arc<dyn OriginStore>,
    upstream: Arc<dyn Upstream>,
    http_client: Arc<dyn HttpClient>,
    clock: Clock,
    metrics: Arc<Metrics>,
    wake_scheduler: Arc<Notify>,
) -> Service {
    Service::new(ServiceParts {
        store,
        upstream,
        http_client,
        platform: Arc::new(clock),
        keys: settings.signing_keys.clone(),
        app_keys: settings.app_keys.clone(),
        admin_key: settings.admin_key.clone(),
        prefix: settings.api_prefix.clone(),
        secure_cookies: settings.secure_cookies,
        trusted_proxies: settings.trusted_proxies.clone(),
        on_store_unavailable: settings.on_store_unavailable,
        upstream_timeout_ms: settings.upstream_timeout_ms,
        body_timeout_ms: settings.body_timeout_ms,
        metrics,
        on_rooms_changed: Some(Arc::new(move || wake_scheduler.notify_one())),
    })
}

/// The whole HTTP application: the shared router, with the client's address taken from the
/// connection and a panicking handler answered with 500 `internal`.
pub fn app(service: Arc<Service>) -> Router {
    app_for(service, Serves::Everything)
}

/// The application for a listener that serves `serves`.
pub fn app_for(service: Arc<Service>, serves: Serves) -> Router {
    queuegate::service::router_for(service, serves)
        .layer(middleware::map_request(client_addr))
        .layer(middleware::from_fn(
            crate::unread_body::close_if_body_unread,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
}

async fn client_addr(mut req: Request) -> Request {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        req.extensions_mut().insert(ClientAddr(peer.ip()));
    }
    req
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    error_response(&ApiError::new(ErrorCode::Internal, "internal error"))
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    /// Where the admin API and metrics are served, when not on `addr`.
    pub admin_addr: Option<SocketAddr>,
    pub admin_key: String,
    pub service: Arc<Service>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    admin_server: Option<JoinHandle<std::io::Result<()>>>,
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
        if let Some(admin) = self.admin_server {
            let _ = admin.await;
        }
        let _ = self.scheduler.await;
    }

    /// Resolves when the server stops by itself or `shutdown` is sent.
    pub async fn wait(self) -> std::io::Result<()> {
        let result = self.server.await.unwrap_or(Ok(()));
        let _ = self.shutdown.send(true);
        if let Some(admin) = self.admin_server {
            let _ = admin.await;
        }
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
    Upstream(#[from] BadUpstream),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("room {room}: {error}")]
    Room { room: RoomId, error: String },
    #[error("{0}")]
    HttpClient(String),
}

/// Binds, puts the configured rooms into the store, and starts the server and the scheduler.
pub async fn start(
    settings: &Settings,
    store: Arc<dyn OriginStore>,
    clock: Clock,
) -> Result<Running, StartError> {
    for (room, config) in &settings.rooms {
        store
            .put_room(room, config.clone(), random_epoch(), clock.now())
            .await
            .map_err(|e| StartError::Room {
                room: room.clone(),
                error: e.to_string(),
            })?;
    }
    // Every room the store knows, before the first visitor: the gate's routes, and (on Redis)
    // the rooms this instance answers for without a read. Redis may be away: the scheduler's
    // ticks catch up then.
    if let Err(err) = Store::rooms(&*store, clock.now()).await {
        tracing::warn!(error = %err, "could not read the rooms at start");
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
    let wake = Arc::new(Notify::new());
    let service = Arc::new(service(
        settings,
        store.clone(),
        upstream(settings)?,
        Arc::new(ReqwestClient::new().map_err(StartError::HttpClient)?),
        clock.clone(),
        metrics.clone(),
        wake.clone(),
    ));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let holder = format!(
        "{}-{}",
        addr,
        crate::config::hex(&crate::clock::random_bytes::<4>())
    );
    let scheduler = Scheduler::new(store, clock, settings.tick, holder).with_metrics(metrics);
    let scheduler = tokio::spawn(scheduler.run(wake, shutdown_rx.clone()));
    let (visitors, admin_listener) = match settings.admin_listen {
        None => (Serves::Everything, None),
        Some(admin) => {
            let listener = TcpListener::bind(admin)
                .await
                .map_err(|source| StartError::Listen {
                    addr: admin,
                    source,
                })?;
            (Serves::Visitors, Some(listener))
        }
    };
    let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    let admin_server = admin_listener.map(|listener| {
        tokio::spawn(crate::listener::serve(
            listener,
            app_for(service.clone(), Serves::Operators),
            settings.limits,
            shutdown_rx.clone(),
        ))
    });
    let server = tokio::spawn(crate::listener::serve(
        listener,
        app_for(service.clone(), visitors),
        settings.limits,
        shutdown_rx,
    ));
    Ok(Running {
        addr,
        admin_addr,
        admin_server,
        admin_key: settings.admin_key.clone(),
        service,
        shutdown,
        server,
        scheduler,
    })
}
