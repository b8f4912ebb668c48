//! The edge: queuegate as a Cloudflare Worker. Requests go through the same router as on the
//! origin ([`crate::service`]); what this shell adds is the worker's entry point, its settings,
//! the runtime's clock and timers, `fetch` as the upstream, and the queue in Durable Objects: one
//! [`ShardObject`] per room shard (the core's shard state machine, persisted as its operation
//! log) and one [`Registry`] (rooms, published shard summaries, the scheduler's lease), behind
//! the [`store::DurableStore`]. The origin's scheduler drives admission through the admin API
//! (`queuegate-origin schedule --edge URL`).

mod batch;
mod isolate;
mod protocol;
mod registry;
mod request;
mod respond;
mod shard_log;
mod shard_object;
mod store;
mod upstream;

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use futures::future::BoxFuture;
use tower_service::Service as _;
use worker::send::SendFuture;
use worker::{event, Context, Env};

use crate::api::DEFAULT_API_PREFIX;
use crate::error::{ApiError, ErrorCode};
use crate::keys::SigningKeys;
use crate::service::{
    error_response, router, ClientAddr, Demo, Fault, Metrics, Platform, Service, ServiceParts,
    UnavailablePolicy, Upstream, DEFAULT_BODY_TIMEOUT_MS, DEFAULT_UPSTREAM_TIMEOUT_MS,
    MIN_ADMIN_KEY_LEN,
};

// The Durable Object classes, exported to the runtime by `#[durable_object]`.
pub use registry::Registry;
pub use shard_object::ShardObject;

#[event(fetch)]
async fn fetch(
    req: worker::web_sys::Request,
    env: Env,
    _ctx: Context,
) -> worker::Result<axum::http::Response<Body>> {
    let mut router = match service_router(&env) {
        Ok(router) => router,
        Err(err) => {
            worker::console_error!("{}: {}", err.code.as_str(), err.message);
            return Ok(error_response(&err));
        }
    };
    let mut req = match request::from_runtime(req) {
        Ok(req) => req,
        Err(e) => {
            let err = ApiError::new(ErrorCode::InvalidRequest, format!("the request: {e}"));
            return Ok(error_response(&err));
        }
    };
    // Cloudflare sets the client's address; nobody else can reach the worker.
    if let Some(ip) = req
        .headers()
        .get("cf-connecting-ip")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<IpAddr>().ok())
    {
        req.extensions_mut().insert(ClientAddr(ip));
    }
    let response = match router.call(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if let Some(Fault(err)) = response.extensions().get::<Fault>() {
        // What the server could not do is worth a line in the log (`wrangler tail`); what the
        // client did wrong is answered and forgotten.
        worker::console_error!("{}: {}", err.code.as_str(), err.message);
    }
    Ok(response)
}

/// The worker's settings, from its vars and secrets.
struct Settings {
    admin_key: String,
    keys: SigningKeys,
    app_keys: Option<SigningKeys>,
    prefix: String,
    upstream: Option<String>,
    secure_cookies: bool,
    on_store_unavailable: UnavailablePolicy,
    upstream_timeout_ms: u64,
    body_timeout_ms: u64,
}

const SETTINGS: [&str; 9] = [
    "QUEUEGATE_ADMIN_KEY",
    "QUEUEGATE_SIGNING_KEYS",
    "QUEUEGATE_UPSTREAM",
    "QUEUEGATE_API_PREFIX",
    "QUEUEGATE_SECURE_COOKIES",
    "QUEUEGATE_ON_STORE_UNAVAILABLE",
    "QUEUEGATE_UPSTREAM_TIMEOUT_MS",
    "QUEUEGATE_APP_KEYS",
    "QUEUEGATE_BODY_TIMEOUT_MS",
];

fn setting(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .or_else(|_| env.var(name).map(|v| v.to_string()))
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

impl Settings {
    fn read(values: &[Option<String>; 9]) -> Result<Settings, ApiError> {
        let misconfigured = |what: String| ApiError::new(ErrorCode::Internal, what);
        let [admin, keys, upstream, prefix, secure, policy, timeout, app_keys, body_timeout] =
            values.clone();
        let milliseconds = |name: &str, value: Option<String>, default: u64| match value {
            Some(ms) => ms
                .parse::<u64>()
                .ok()
                .filter(|&ms| ms > 0)
                .ok_or_else(|| misconfigured(format!("{name}: {ms:?}"))),
            None => Ok(default),
        };
        let app_keys = app_keys
            .map(|k| {
                SigningKeys::parse(&k)
                    .map_err(|e| misconfigured(format!("QUEUEGATE_APP_KEYS: {e}")))
            })
            .transpose()?;
        let admin_key =
            admin.ok_or_else(|| misconfigured("QUEUEGATE_ADMIN_KEY is not set".into()))?;
        if admin_key.len() < MIN_ADMIN_KEY_LEN {
            return Err(misconfigured(format!(
                "QUEUEGATE_ADMIN_KEY must be at least {MIN_ADMIN_KEY_LEN} bytes"
            )));
        }
        let keys = keys
            .ok_or_else(|| misconfigured("QUEUEGATE_SIGNING_KEYS is not set".into()))
            .and_then(|k| {
                SigningKeys::parse(&k)
                    .map_err(|e| misconfigured(format!("QUEUEGATE_SIGNING_KEYS: {e}")))
            })?;
        let on_store_unavailable = match policy {
            Some(p) => p
                .parse()
                .map_err(|e| misconfigured(format!("QUEUEGATE_ON_STORE_UNAVAILABLE: {e}")))?,
            None => UnavailablePolicy::default(),
        };
        let upstream_timeout_ms = milliseconds(
            "QUEUEGATE_UPSTREAM_TIMEOUT_MS",
            timeout,
            DEFAULT_UPSTREAM_TIMEOUT_MS,
        )?;
        let body_timeout_ms = milliseconds(
            "QUEUEGATE_BODY_TIMEOUT_MS",
            body_timeout,
            DEFAULT_BODY_TIMEOUT_MS,
        )?;
        Ok(Settings {
            admin_key,
            keys,
            app_keys,
            prefix: prefix.unwrap_or_else(|| DEFAULT_API_PREFIX.to_owned()),
            upstream: upstream.map(|u| u.trim_end_matches('/').to_owned()),
            secure_cookies: secure.is_some_and(|s| s == "true" || s == "1"),
            on_store_unavailable,
            upstream_timeout_ms,
            body_timeout_ms,
        })
    }
}

thread_local! {
    /// The router this isolate built, and the settings it was built from.
    static ROUTER: RefCell<Option<([Option<String>; 9], axum::Router)>> = const { RefCell::new(None) };
}

/// The isolate's router, built on its first request (and again if the settings change).
fn service_router(env: &Env) -> Result<axum::Router, ApiError> {
    let values = SETTINGS.map(|name| setting(env, name));
    if let Some(router) = ROUTER.with(|r| {
        r.borrow()
            .as_ref()
            .filter(|(from, _)| *from == values)
            .map(|(_, router)| router.clone())
    }) {
        return Ok(router);
    }
    let settings = Settings::read(&values)?;
    let platform: Arc<dyn Platform> = Arc::new(Runtime);
    let upstream: Arc<dyn Upstream> = match settings.upstream {
        Some(base) => Arc::new(upstream::Fetch { base }),
        None => Arc::new(Demo {
            prefix: settings.prefix.clone(),
        }),
    };
    let service = Service::new(ServiceParts {
        store: Arc::new(store::DurableStore::new(env.clone(), platform.clone())),
        upstream,
        http_client: Arc::new(upstream::FetchClient),
        platform,
        keys: settings.keys,
        app_keys: settings.app_keys,
        admin_key: settings.admin_key,
        prefix: settings.prefix,
        secure_cookies: settings.secure_cookies,
        // The worker's client address comes from Cloudflare, which nobody else can reach.
        trusted_proxies: Vec::new(),
        on_store_unavailable: settings.on_store_unavailable,
        upstream_timeout_ms: settings.upstream_timeout_ms,
        body_timeout_ms: settings.body_timeout_ms,
        metrics: Arc::new(Metrics::new()),
        on_rooms_changed: None,
    });
    let router = router(Arc::new(service));
    ROUTER.with(|r| *r.borrow_mut() = Some((values, router.clone())));
    Ok(router)
}

/// The runtime's clock, timers and randomness. Its clock moves in whole milliseconds (and only
/// across I/O), so durations are measured in milliseconds here.
struct Runtime;

impl Platform for Runtime {
    fn now(&self) -> u64 {
        worker::Date::now().as_millis()
    }

    fn micros(&self) -> u64 {
        worker::Date::now().as_millis() * 1000
    }

    fn sleep(&self, ms: u64) -> BoxFuture<'static, ()> {
        let delay = worker::Delay::from(std::time::Duration::from_millis(ms));
        Box::pin(SendFuture::new(delay))
    }

    /// The runtime's cryptographic source (`crypto.getRandomValues`): a shuffled event's seed
    /// must not be guessable.
    fn random(&self, buf: &mut [u8]) {
        use wasm_bindgen::JsCast;
        use worker::js_sys::{global, Function, Reflect, Uint8Array};
        let crypto = Reflect::get(&global(), &"crypto".into()).expect("the runtime has crypto");
        let fill: Function = Reflect::get(&crypto, &"getRandomValues".into())
            .ok()
            .and_then(|f| f.dyn_into().ok())
            .expect("the runtime has crypto.getRandomValues");
        for chunk in buf.chunks_mut(65_536) {
            let array = Uint8Array::new_with_length(chunk.len() as u32);
            fill.call1(&crypto, &array)
                .expect("crypto.getRandomValues fills a small array");
            array.copy_to(chunk);
        }
    }
}
