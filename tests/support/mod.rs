//! What the conformance suite needs from a target: where it is, its admin key and signing keys,
//! and an HTTP client; plus helpers to start the targets that run in-process.
#![allow(dead_code)]

pub mod edge;
pub mod nginx;
pub mod process;
pub mod redis;
pub mod siteverify;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::IntoResponse;
use queuegate::SigningKeys;
use queuegate_origin::clock::Clock;
use queuegate_origin::config::{ServeArgs, Settings, StoreConfig};
use queuegate_origin::server::{self, Running};
use queuegate_origin::store::memory::MemoryStore;
use queuegate_origin::store::OriginStore;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const ADMIN_KEY: &str = "conformance-admin-key-0123456789abcdef";
pub const SIGNING_KEYS: &str =
    "test1:conformance-signing-secret-0001,old0:conformance-signing-secret-0000";
/// The keys "the application" signs user tokens with, given to every target.
pub const APP_KEYS: &str = "app1:conformance-application-secret";

/// A user token for `user`, valid for a minute, as the application would sign it.
pub fn user_token(user: &str) -> String {
    let keys = SigningKeys::parse(APP_KEYS).unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    queuegate::apptoken::sign(&json!({"sub": user, "exp": exp}), &keys)
}

/// A server under test, reached over HTTP only.
pub struct Target {
    pub base: String,
    pub admin_key: String,
    /// The keys the target signs with, so tests can mint expired or foreign tokens.
    pub keys: SigningKeys,
    pub client: reqwest::Client,
    /// The scheduler's tick, to size waits for automatic admission.
    pub tick: Duration,
    /// The offset of the target's clock, where the test can move it (the origin in this
    /// process); elsewhere time passes for real.
    pub clock: Option<Arc<AtomicU64>>,
    /// The edge: the runtime (Cloudflare, `wrangler dev`'s proxy) parses every request in front
    /// of the worker. It consumes `Connection` (so the worker cannot tell which headers it named)
    /// and resolves dot segments (so the worker never sees a `..`).
    pub behind_runtime_front: bool,
    /// nginx in front (`tests/balanced.rs`): it refuses a target that climbs above the root or
    /// is not a path with its own 400, and passes on the headers a `Connection` header names.
    pub behind_nginx: bool,
}

/// The answer to a request: status, headers and the body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }

    /// The value a `Set-Cookie` header gives `name`, if any.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
    }

    pub fn error_code(&self) -> Option<&str> {
        self.json["error"]["code"].as_str()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How long the targets the tests start let the upstream take before answering 502.
pub const UPSTREAM_TIMEOUT_MS: u64 = 1_000;

impl Target {
    /// Lets `by` pass on the target's clock: at once where the test holds the clock, by
    /// sleeping elsewhere.
    pub async fn advance(&self, by: Duration) {
        match &self.clock {
            Some(offset) => {
                offset.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
            }
            None => tokio::time::sleep(by).await,
        }
    }

    /// The target's time (Unix ms): the real time, moved on by what the test advanced.
    pub fn now(&self) -> u64 {
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64;
        real + self.clock.as_ref().map_or(0, |o| o.load(Ordering::SeqCst))
    }

    /// Lets the target's clock reach `at` (Unix ms), as [`Target::advance`] does.
    pub async fn advance_to(&self, at: u64) {
        let now = self.now();
        if at > now {
            self.advance(Duration::from_millis(at - now)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/_qg/v1{}", self.base, path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let again = req.try_clone();
        let reply = self.try_send(req).await.expect("the target answers");
        // `wrangler dev`'s proxy now and then fails a request with this 503 of its own (the
        // worker logs nothing; it follows a response body the worker cut, as the stalling
        // upstream's), and resends only GET and HEAD itself. An idempotent request is sent
        // once more, as any client would; a POST is not, so a join is never made twice here.
        match again {
            Some(again)
                if self.behind_runtime_front
                    && reply.status == 503
                    && reply.text.starts_with("Your worker restarted mid-request")
                    && again
                        .try_clone()
                        .and_then(|r| r.build().ok())
                        .is_some_and(|r| r.method().is_idempotent()) =>
            {
                eprintln!("wrangler dev's proxy: {}; sent again", reply.text);
                self.try_send(again).await.expect("the target answers")
            }
            _ => reply,
        }
    }

    /// Like `send`, for a target that may be down.
    pub async fn try_send(&self, req: reqwest::RequestBuilder) -> Result<Reply, reqwest::Error> {
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            text,
            json,
        })
    }

    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.api(&format!("/admin{path}")))
            .bearer_auth(&self.admin_key)
    }

    /// Creates (or replaces) a room; panics unless the target accepts it.
    pub async fn put_room(&self, room: &str, config: Value) -> Value {
        let reply = self
            .send(
                self.admin(reqwest::Method::PUT, &format!("/rooms/{room}"))
                    .json(&config),
            )
            .await;
        assert!(
            reply.status == 200 || reply.status == 201,
            "PUT room {room}: {} {}",
            reply.status,
            reply.text
        );
        reply.json
    }

    pub async fn room(&self, room: &str) -> Value {
        let reply = self
            .send(self.admin(reqwest::Method::GET, &format!("/rooms/{room}")))
            .await;
        assert_eq!(reply.status, 200, "GET room {room}: {}", reply.text);
        reply.json
    }

    pub async fn pause(&self, room: &str) {
        let reply = self
            .send(self.admin(reqwest::Method::POST, &format!("/rooms/{room}/pause")))
            .await;
        assert_eq!(reply.status, 200, "pause: {}", reply.text);
    }

    pub async fn resume(&self, room: &str) {
        let reply = self
            .send(self.admin(reqwest::Method::POST, &format!("/rooms/{room}/resume")))
            .await;
        assert_eq!(reply.status, 200, "resume: {}", reply.text);
    }

    pub async fn admit(&self, room: &str, count: u64) -> u64 {
        let reply = self
            .send(
                self.admin(reqwest::Method::POST, &format!("/rooms/{room}/admit"))
                    .json(&json!({ "count": count })),
            )
            .await;
        assert_eq!(reply.status, 200, "admit: {}", reply.text);
        reply.json["admitted"].as_u64().expect("admitted count")
    }

    /// Joins with an optional user id; returns the reply (the ticket is in `json["ticket"]`).
    pub async fn join(&self, room: &str, user_id: Option<&str>) -> Reply {
        let mut req = self.client.post(self.api(&format!("/rooms/{room}/join")));
        if let Some(user) = user_id {
            req = req.json(&json!({ "user_id": user }));
        }
        self.send(req).await
    }

    pub async fn status(&self, room: &str, ticket: &str) -> Reply {
        self.send(
            self.client
                .get(self.api(&format!("/rooms/{room}/status")))
                .bearer_auth(ticket),
        )
        .await
    }

    pub async fn leave(&self, room: &str, token: &str) -> Reply {
        self.send(
            self.client
                .post(self.api(&format!("/rooms/{room}/leave")))
                .bearer_auth(token),
        )
        .await
    }

    /// A page navigation (`Sec-Fetch-Mode: navigate`, `Sec-Fetch-Dest: document`, the only kind
    /// of request that takes a place at the gate) of a (possibly protected) path with the given
    /// cookies, asking for JSON or HTML.
    pub async fn page(&self, path: &str, cookies: &[(String, String)], json: bool) -> Reply {
        let accept = if json {
            "application/json"
        } else {
            "text/html,application/xhtml+xml"
        };
        let headers = [
            ("accept", accept),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document"),
        ];
        self.request(reqwest::Method::GET, path, cookies, &headers)
            .await
    }

    /// A request of a (possibly protected) path with the given cookies and headers, and no
    /// others.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        cookies: &[(String, String)],
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        if !cookies.is_empty() {
            let header = cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            req = req.header("cookie", header);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.send(req).await
    }

    /// Polls until `check` passes on the room's admin view, or panics after `within`.
    pub async fn wait_for_room(
        &self,
        room: &str,
        within: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let view = self.room(room).await;
            if check(&view) {
                return view;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "room {room} did not reach the expected state: {view}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Sends `bytes` over a new TCP connection to `base` (`http://host:port`) and returns all it
/// answers until the server closes (ask with `Connection: close`), for requests no HTTP client
/// would send as they are.
pub async fn raw_request(base: &str, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The server may answer and close before the whole request is written.
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer));
    let _ = read.await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The body of a raw HTTP/1.1 answer, chunked or not.
pub fn raw_body(answer: &str) -> String {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_owned();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        // workerd (wrangler dev) closes a connection idle for 5 s: a request sent on one just as
        // it closes is reset. Never reuse a connection that old.
        .pool_idle_timeout(Duration::from_secs(3))
        .build()
        .expect("a client")
}

/// A small application to stand behind the gate: it answers `upstream <path>` and echoes the
/// visitor header the gate adds; a path ending in `/echo` answers every header it got as JSON,
/// one ending in `/done` answers `X-Queuegate-Command: revoke` (the application ends the visitor's
/// session),
/// one ending in `/slow` takes five seconds to answer, and one ending in `/stall` sends its
/// head and a first piece at once and the rest five seconds later. `/<one segment>/ws` is a
/// WebSocket (subprotocol `chat` if asked for) whose first message is the headers of its
/// handshake as JSON, and which then echoes every message back.
pub struct Upstream {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().route("/{segment}/ws", axum::routing::get(websocket_echo));
        let app = app.fallback(|req: Request| async move {
            if req.uri().path().ends_with("/slow") {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            if req.uri().path().ends_with("/stall") {
                // The head and a first piece at once, the rest five seconds later.
                let pieces = futures::stream::unfold(0, |i| async move {
                    match i {
                        0 => Some((Ok::<_, std::io::Error>("begin ".to_owned()), 1)),
                        1 => {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            Some((Ok("end".to_owned()), 2))
                        }
                        _ => None,
                    }
                });
                return (
                    [("x-upstream", "yes")],
                    axum::body::Body::from_stream(pieces),
                )
                    .into_response();
            }
            if req.uri().path().ends_with("/done") {
                // The application ends the visitor's session (a purchase completed).
                return (
                    [("x-upstream", "yes"), ("x-queuegate-command", "revoke")],
                    "done",
                )
                    .into_response();
            }
            if req.uri().path().ends_with("/echo") {
                return (
                    [("x-upstream", "yes")],
                    headers_json(req.headers()).to_string(),
                )
                    .into_response();
            }
            let visitor = req
                .headers()
                .get("x-queuegate-visitor")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            let cookies = req
                .headers()
                .get("cookie")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            (
                [("x-upstream", "yes")],
                format!(
                    "upstream {} visitor={visitor} cookies={cookies}",
                    req.uri().path()
                ),
            )
                .into_response()
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Upstream { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Every header as JSON, each name with the list of its values.
fn headers_json(headers: &axum::http::HeaderMap) -> Value {
    let mut json = serde_json::Map::new();
    for (name, value) in headers {
        let value = Value::String(value.to_str().unwrap_or("?").to_owned());
        match json.get_mut(name.as_str()) {
            Some(Value::Array(values)) => values.push(value),
            _ => {
                json.insert(name.as_str().to_owned(), Value::Array(vec![value]));
            }
        }
    }
    Value::Object(json)
}

async fn websocket_echo(
    ws: axum::extract::ws::WebSocketUpgrade,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::extract::ws::Message;
    let seen = headers_json(&headers).to_string();
    ws.protocols(["chat"])
        .on_upgrade(|mut socket| async move {
            if socket.send(Message::Text(seen.into())).await.is_err() {
                return;
            }
            while let Some(Ok(message)) = socket.recv().await {
                match message {
                    Message::Text(_) | Message::Binary(_) => {
                        if socket.send(message).await.is_err() {
                            return;
                        }
                    }
                    Message::Close(_) => return,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
        })
        .into_response()
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The origin on the embedded store, in this process, on a free port.
pub struct Embedded {
    pub target: Target,
    pub running: Option<Running>,
    pub upstream: Upstream,
}

impl Embedded {
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }
}

pub const TEST_TICK: Duration = Duration::from_millis(100);

/// The origin on the embedded store, on a clock the test can move ([`Target::advance`]).
pub async fn embedded() -> Embedded {
    let (clock, offset) = Clock::shifted();
    let mut server = embedded_with(Arc::new(MemoryStore::new()), clock).await;
    server.target.clock = Some(offset);
    server
}

/// The origin in this process on the store the configuration names (Redis, a cluster).
pub async fn origin_on(store: &StoreConfig) -> Embedded {
    let store = queuegate_origin::store::open(store)
        .await
        .expect("the store opens");
    embedded_with(store, Clock::System).await
}

/// The origin in this process on the store the configuration names, trusting the proxies in
/// `trusted` (CIDRs) to say who the client is: an instance behind a load balancer.
pub async fn origin_behind(store: &StoreConfig, trusted: &[&str]) -> Embedded {
    let store = queuegate_origin::store::open(store)
        .await
        .expect("the store opens");
    let trusted = trusted.iter().map(|s| s.to_string()).collect();
    embedded_with_args(store, Clock::System, |args| {
        args.trusted_proxies = Some(trusted)
    })
    .await
}

pub async fn embedded_with(store: Arc<dyn OriginStore>, clock: Clock) -> Embedded {
    embedded_with_args(store, clock, |_| {}).await
}

async fn embedded_with_args(
    store: Arc<dyn OriginStore>,
    clock: Clock,
    more: impl FnOnce(&mut ServeArgs),
) -> Embedded {
    let upstream = Upstream::start().await;
    let mut args = ServeArgs {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        upstream: Some(upstream.url()),
        upstream_timeout_ms: Some(UPSTREAM_TIMEOUT_MS),
        tick_ms: Some(TEST_TICK.as_millis() as u64),
        ..ServeArgs::default()
    };
    more(&mut args);
    let env = |name: &str| match name {
        "QUEUEGATE_ADMIN_KEY" => Some(ADMIN_KEY.to_owned()),
        "QUEUEGATE_SIGNING_KEYS" => Some(SIGNING_KEYS.to_owned()),
        "QUEUEGATE_APP_KEYS" => Some(APP_KEYS.to_owned()),
        _ => None,
    };
    let mut settings = Settings::resolve(&args, env).expect("settings");
    settings.rooms.clear();
    let running = server::start(&settings, store, clock).await.expect("start");
    Embedded {
        target: Target {
            base: running.url(),
            admin_key: ADMIN_KEY.to_owned(),
            keys: SigningKeys::parse(SIGNING_KEYS).unwrap(),
            client: client(),
            tick: TEST_TICK,
            clock: None,
            behind_runtime_front: false,
            behind_nginx: false,
        },
        running: Some(running),
        upstream,
    }
}
