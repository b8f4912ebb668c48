//! The accept loop, with what a stranger's connections may cost bounded: at most
//! `max_connections` at once (kept below the process's file limit), a request head in
//! `header_timeout` (from the first byte of each head, and a new connection's first head from
//! when it opened) and of at most `max_header_bytes`, no connection left open idle (no request in
//! flight and nothing read or written) for longer than `idle_timeout`, and a shutdown that waits
//! for the requests in flight at most `shutdown_timeout`.
//!
//! A WebSocket the gate passed on (the application answered `101`) leaves hyper: the visitor's
//! upgraded connection and the application's are joined here, byte for byte, and stay under the
//! same bounds: the tunnel keeps its connection's place among the `max_connections`, is closed
//! once nothing has moved either way for `idle_timeout`, and is closed when shutdown begins (a
//! WebSocket client reconnects; waiting for one to end could take for ever).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use queuegate::service::AppError;
use queuegate::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

/// What a connection may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: default_max_connections(),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 16 * 1024,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// Connections at once by default: room for everything else the process holds open (Redis,
/// the upstream's pool, logs) under its file limit, and at most 100,000.
pub fn default_max_connections() -> usize {
    let soft = file_limit().unwrap_or(1024);
    soft.saturating_sub(soft / 8 + 64).clamp(16, 100_000)
}

fn file_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and reads nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    ok.then(|| usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX))
}

/// What a connection has been doing, for the idle watch.
struct Activity {
    /// Microseconds since the process started, of the last byte read or written.
    last_io: AtomicU64,
    opened_at: u64,
    in_flight: AtomicUsize,
    /// Requests whose head has arrived.
    requests: AtomicU64,
}

fn micros() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

impl Activity {
    fn touch(&self) {
        self.last_io.store(micros(), Ordering::Relaxed);
    }

    /// Whether the connection has outstayed its welcome: no request head within the header
    /// timeout of opening (hyper times a head only once its first bytes came), or nothing in
    /// flight and nothing moving for the idle timeout.
    fn expired(&self, limits: &Limits) -> bool {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return false;
        }
        let now = micros();
        if self.requests.load(Ordering::Relaxed) == 0 {
            return Duration::from_micros(now.saturating_sub(self.opened_at))
                >= limits.header_timeout;
        }
        Duration::from_micros(now.saturating_sub(self.last_io.load(Ordering::Relaxed)))
            >= limits.idle_timeout
    }
}

/// The socket, noting each byte that moves.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Resolves once the connection has outstayed its welcome.
async fn expiry(activity: Arc<Activity>, limits: Limits) {
    let shortest = limits.header_timeout.min(limits.idle_timeout);
    let check = (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::time::sleep(check).await;
        if activity.expired(&limits) {
            return;
        }
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// What a WebSocket the gate passed on keeps of its connection: its place among the connections,
/// its activity for the idle watch, and the shutdown to end with.
#[derive(Clone)]
struct Tunnel {
    permit: Arc<OwnedSemaphorePermit>,
    activity: Arc<Activity>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
}

impl Tunnel {
    /// Joins the visitor's connection to the application's once hyper has sent the `101`; any
    /// other answer goes out as it is. A `101` without both sides (a visitor's request hyper
    /// would not upgrade) cannot be passed on: the visitor gets a 502 and the application's side
    /// is dropped, closing it.
    fn open(self, visitor_side: Option<OnUpgrade>, mut response: Response) -> Response {
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return response;
        }
        let upstream_side = response.extensions_mut().remove::<OnUpgrade>();
        let (Some(visitor_side), Some(upstream_side)) = (visitor_side, upstream_side) else {
            return AppError::new(
                ErrorCode::UpstreamUnavailable,
                "the upstream switched protocols on a connection that cannot follow",
            )
            .into_response();
        };
        tokio::spawn(self.run(visitor_side, upstream_side));
        response
    }

    async fn run(self, visitor_side: OnUpgrade, upstream_side: OnUpgrade) {
        let Tunnel {
            permit: _permit,
            activity,
            limits,
            mut shutdown,
        } = self;
        let joined = async {
            let (visitor, upstream) = futures::future::try_join(visitor_side, upstream_side)
                .await
                .map_err(std::io::Error::other)?;
            let (mut visitor, mut upstream) = (TokioIo::new(visitor), TokioIo::new(upstream));
            tokio::io::copy_bidirectional(&mut visitor, &mut upstream).await
        };
        // The visitor's socket notes every byte either way (it reads one side's and writes the
        // other's), so its activity is the tunnel's.
        tokio::select! {
            ended = joined => {
                if let Err(err) = ended {
                    tracing::debug!(error = %err, "a WebSocket tunnel ended");
                }
            }
            _ = expiry(activity, limits) => tracing::debug!("an idle WebSocket tunnel is closed"),
            _ = stopped(&mut shutdown) => {}
        }
    }
}

/// Serves `app` on `listener` until `shutdown` turns true, then lets the requests in flight
/// finish for at most `limits.shutdown_timeout`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore stays open"),
            _ = stopped(&mut shutdown) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, most likely: let connections close first.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let opened_at = micros();
        let activity = Arc::new(Activity {
            last_io: AtomicU64::new(opened_at),
            opened_at,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
        });
        let io = Watched {
            stream,
            activity: activity.clone(),
        };
        // Shared with the tunnel an upgrade may become, which outlives hyper's connection.
        let permit = Arc::new(permit);
        let counted = activity.clone();
        let service = app.clone().map_request(move |mut req: Request| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            req
        });
        let tunnel = Tunnel {
            permit: permit.clone(),
            activity: activity.clone(),
            limits,
            shutdown: shutdown.clone(),
        };
        let service = tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            let service = service.clone();
            let counted = counted.clone();
            let tunnel = tunnel.clone();
            counted.in_flight.fetch_add(1, Ordering::Relaxed);
            counted.requests.fetch_add(1, Ordering::Relaxed);
            // The visitor's side of an upgrade, taken before the router sees the request: the
            // router answers, this joins. The application's side comes back in the answer.
            let visitor_side = req.extensions_mut().remove::<OnUpgrade>();
            async move {
                let response = service.oneshot(req.map(axum::body::Body::new)).await;
                let response = response.map(|response| tunnel.open(visitor_side, response));
                counted.in_flight.fetch_sub(1, Ordering::Relaxed);
                counted.touch();
                response
            }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = connection => {}
                // Dropping the connection closes its socket: nothing was in flight.
                _ = expiry(activity, limits) => {}
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.shutdown_timeout) => {
            tracing::warn!(
                timeout_ms = limits.shutdown_timeout.as_millis() as u64,
                "connections still open at the shutdown deadline are closed"
            );
        }
    }
    Ok(())
}
