//! What every handler shares: the store, the upstream, the HTTP client, the platform, the keys and the settings
//! both deployments take.

use std::sync::Arc;

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use super::client::Client;
use super::forward::Upstream;
use super::metrics::Metrics;
use super::siteverify::HttpClient;
use super::store::Store;
use crate::keys::SigningKeys;
use crate::room::RoomRecord;
use crate::template::TemplateCache;
use crate::visitor::RoomContext;

/// The shortest admin key a deployment takes: it is the key to every room.
pub const MIN_ADMIN_KEY_LEN: usize = 32;

/// What a shell provides that the request layer may not take for itself: time, timers and
/// randomness. The origin reads the system clock (or a manual one in tests); the worker reads the
/// runtime's.
pub trait Platform: Send + Sync + 'static {
    /// Unix milliseconds.
    fn now(&self) -> u64;
    /// A monotonic microsecond counter, to measure how long something took.
    fn micros(&self) -> u64;
    /// Resolves after `ms` milliseconds.
    fn sleep(&self, ms: u64) -> BoxFuture<'static, ()>;
    /// Fills `buf` with random bytes.
    fn random(&self, buf: &mut [u8]);
}

/// What the gate does while the store cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnavailablePolicy {
    /// Protected paths show a page that retries by itself, with status 503; the API answers 503.
    #[default]
    Closed,
    /// Protected paths let every visitor through; the API answers 503.
    Open,
}

impl UnavailablePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            UnavailablePolicy::Closed => "closed",
            UnavailablePolicy::Open => "open",
        }
    }
}

impl std::str::FromStr for UnavailablePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "closed" => Ok(UnavailablePolicy::Closed),
            "open" => Ok(UnavailablePolicy::Open),
            other => Err(format!("{other:?}: expected closed or open")),
        }
    }
}

impl std::fmt::Display for UnavailablePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The request layer's state.
pub struct Service {
    pub store: Arc<dyn Store>,
    pub upstream: Arc<dyn Upstream>,
    /// For the calls the request layer makes itself (a room's siteverify URL).
    pub http_client: Arc<dyn HttpClient>,
    pub platform: Arc<dyn Platform>,
    pub keys: SigningKeys,
    /// The keys the application signs user tokens with (`QUEUEGATE_APP_KEYS`), if any.
    pub app_keys: Option<SigningKeys>,
    admin_key_digest: [u8; 32],
    /// Where the API lives, such as `/_qg/v1`.
    pub prefix: String,
    /// Cookies are `Secure` always (else only when the visitor's request came over HTTPS).
    pub secure_cookies: bool,
    /// The proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub on_store_unavailable: UnavailablePolicy,
    /// How long the application may take to start its answer, and then between two pieces of
    /// its body.
    pub upstream_timeout_ms: u64,
    /// How long a request body may take to arrive (the API's), or pause (one forwarded).
    pub body_timeout_ms: u64,
    pub metrics: Arc<Metrics>,
    /// Called when a room was created, changed or resumed, so an in-process scheduler can look
    /// at it at once instead of at its next tick.
    pub on_rooms_changed: Option<Arc<dyn Fn() + Send + Sync>>,
    /// The rooms' page templates, compiled.
    pub(crate) templates: TemplateCache,
    /// The visitors' update streams open now.
    pub(crate) streams: super::streams::OpenStreams,
}

/// Everything a [`Service`] is made of.
pub struct ServiceParts {
    pub store: Arc<dyn Store>,
    pub upstream: Arc<dyn Upstream>,
    pub http_client: Arc<dyn HttpClient>,
    pub platform: Arc<dyn Platform>,
    pub keys: SigningKeys,
    pub app_keys: Option<SigningKeys>,
    pub admin_key: String,
    pub prefix: String,
    pub secure_cookies: bool,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub on_store_unavailable: UnavailablePolicy,
    pub upstream_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub metrics: Arc<Metrics>,
    pub on_rooms_changed: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Service {
    pub fn new(parts: ServiceParts) -> Service {
        Service {
            store: parts.store,
            upstream: parts.upstream,
            http_client: parts.http_client,
            platform: parts.platform,
            keys: parts.keys,
            app_keys: parts.app_keys,
            admin_key_digest: key_digest(&parts.admin_key),
            prefix: parts.prefix,
            secure_cookies: parts.secure_cookies,
            trusted_proxies: parts.trusted_proxies,
            on_store_unavailable: parts.on_store_unavailable,
            upstream_timeout_ms: parts.upstream_timeout_ms,
            body_timeout_ms: parts.body_timeout_ms,
            metrics: parts.metrics,
            on_rooms_changed: parts.on_rooms_changed,
            templates: TemplateCache::default(),
            streams: Default::default(),
        }
    }

    pub fn now(&self) -> u64 {
        self.platform.now()
    }

    /// Whether `presented` is the admin key. Digests are compared in constant time, whatever
    /// the lengths.
    pub fn is_admin_key(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(key_digest(presented).ct_eq(&self.admin_key_digest))
    }

    /// What shapes the answers to `client` about the room: cookies are `Secure` when the
    /// deployment says so or the client's request came over HTTPS.
    pub fn context<'a>(&'a self, record: &'a RoomRecord, client: &Client) -> RoomContext<'a> {
        RoomContext {
            room: &record.id,
            config: &record.config,
            paused: record.paused,
            opens_at: record.opens_at,
            opening_shuffled: record
                .opens_at
                .is_some_and(|at| crate::event::opening_shuffles(&record.events, at)),
            measured_rate: record.measured_rate,
            keys: &self.keys,
            secure_cookies: self.secure_cookies || client.https,
        }
    }

    /// A fresh queue epoch for a new room.
    pub fn random_epoch(&self) -> u32 {
        let mut bytes = [0u8; 4];
        self.platform.random(&mut bytes);
        u32::from_be_bytes(bytes)
    }

    /// Random bytes from the platform's source (a shuffled event's seed).
    pub fn random_bytes<const N: usize>(&self) -> [u8; N] {
        let mut bytes = [0u8; N];
        self.platform.random(&mut bytes);
        bytes
    }

    pub(crate) fn rooms_changed(&self) {
        if let Some(hook) = &self.on_rooms_changed {
            hook();
        }
    }
}

fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}
