//! Configuration: command-line flags over environment variables over a TOML file over defaults.
//! Secrets come only from the environment.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use queuegate::api::DEFAULT_API_PREFIX;
use queuegate::keys::KeyError;
pub use queuegate::service::UnavailablePolicy;
use queuegate::{ApiError, RoomConfig, RoomId, SigningKeys};
use serde::Deserialize;

use crate::clock::random_bytes;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_TICK_MS: u64 = 1000;
pub const ENV_ADMIN_KEY: &str = "QUEUEGATE_ADMIN_KEY";
pub const ENV_SIGNING_KEYS: &str = "QUEUEGATE_SIGNING_KEYS";
pub const ENV_APP_KEYS: &str = "QUEUEGATE_APP_KEYS";
pub use queuegate::service::MIN_ADMIN_KEY_LEN;

/// Flags of `queuegate-origin serve`. Each can also come from the environment variable named.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// A TOML configuration file (see the README). Without one, a demo room protects every
    /// path.
    #[arg(long, env = "QUEUEGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "QUEUEGATE_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Serve the admin API and metrics on this address instead, and not on --listen (which
    /// then serves visitors only).
    #[arg(long, env = "QUEUEGATE_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,

    /// The application behind the gate, an http:// URL. Without one, a built-in demo page
    /// stands in.
    #[arg(long, env = "QUEUEGATE_UPSTREAM", value_name = "URL")]
    pub upstream: Option<String>,

    /// Where queuegate's own API lives [default: /_qg/v1].
    #[arg(long, env = "QUEUEGATE_API_PREFIX", value_name = "PATH")]
    pub api_prefix: Option<String>,

    /// The scheduler's tick in milliseconds [default: 1000].
    #[arg(long, env = "QUEUEGATE_TICK_MS", value_name = "MS")]
    pub tick_ms: Option<u64>,

    /// Worker threads of the async runtime [default: one per core]. One is best when a load
    /// generator shares a small machine.
    #[arg(long, env = "QUEUEGATE_WORKERS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,

    /// Keep the queue in Redis at this URL (redis://host:port/db) instead of in memory.
    #[arg(
        long,
        env = "QUEUEGATE_REDIS",
        value_name = "URL",
        conflicts_with = "redis_cluster"
    )]
    pub redis: Option<String>,

    /// Keep the queue in a Redis Cluster; give one or more of its nodes, comma-separated.
    #[arg(
        long,
        env = "QUEUEGATE_REDIS_CLUSTER",
        value_name = "URL,...",
        value_delimiter = ','
    )]
    pub redis_cluster: Option<Vec<String>>,

    /// How long a Redis call may take before it counts as failed [default: 500].
    #[arg(long, env = "QUEUEGATE_STORE_TIMEOUT_MS", value_name = "MS")]
    pub store_timeout_ms: Option<u64>,

    /// How many Redis replicas must acknowledge the scheduler's writes (the admission lease,
    /// the reads a batch is planned from, the batch) before it acts on them, and visitors'
    /// joins and leaves before they are answered; 0 waits for none [default: read from Redis:
    /// the replicas the cluster lists for the master written to (for joins and leaves, those
    /// not flagged failing), or those connected to a single server].
    #[arg(long, env = "QUEUEGATE_REDIS_REPLICAS", value_name = "N", value_parser = clap::value_parser!(u32).range(0..=64))]
    pub redis_replicas: Option<u32>,

    /// What the gate does while the store cannot be reached: `closed` shows a waiting page
    /// (503), `open` lets visitors through [default: closed].
    #[arg(
        long,
        env = "QUEUEGATE_ON_STORE_UNAVAILABLE",
        value_name = "closed|open"
    )]
    pub on_store_unavailable: Option<UnavailablePolicy>,

    /// How long the application may take to start its answer, in milliseconds, before the
    /// visitor gets 502 `upstream_unavailable` [default: 60000].
    #[arg(long, env = "QUEUEGATE_UPSTREAM_TIMEOUT_MS", value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub upstream_timeout_ms: Option<u64>,

    /// How long a request body may take to arrive (the API's), or pause (one forwarded to the
    /// application), in milliseconds [default: 10000].
    #[arg(long, env = "QUEUEGATE_BODY_TIMEOUT_MS", value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_ms: Option<u64>,

    /// Most connections open at once; more wait to be accepted [default: below the process's
    /// file limit, at most 100000].
    #[arg(long, env = "QUEUEGATE_MAX_CONNECTIONS", value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: Option<u64>,

    /// How long a connection may take to send a request's head, in milliseconds [default:
    /// 10000].
    #[arg(long, env = "QUEUEGATE_HEADER_TIMEOUT_MS", value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_ms: Option<u64>,

    /// How long a connection may stay open with no request in flight and nothing sent either
    /// way, in milliseconds [default: 60000].
    #[arg(long, env = "QUEUEGATE_IDLE_TIMEOUT_MS", value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_ms: Option<u64>,

    /// The largest request head (request line and headers), in bytes; a larger one gets 431
    /// [default: 16384, at least 8192].
    #[arg(long, env = "QUEUEGATE_MAX_HEADER_BYTES", value_name = "BYTES", value_parser = clap::value_parser!(u64).range(8192..=1_048_576))]
    pub max_header_bytes: Option<u64>,

    /// On SIGTERM, how long requests in flight may take to finish before their connections are
    /// closed, in milliseconds [default: 10000].
    #[arg(long, env = "QUEUEGATE_SHUTDOWN_TIMEOUT_MS", value_name = "MS")]
    pub shutdown_timeout_ms: Option<u64>,

    /// Proxies in front of queuegate whose X-Forwarded-For and X-Forwarded-Proto are believed:
    /// addresses or CIDRs, comma-separated (e.g. 10.0.0.0/8,127.0.0.1). Without any, the client
    /// is the TCP peer and what it says of itself is ignored.
    #[arg(
        long,
        env = "QUEUEGATE_TRUSTED_PROXIES",
        value_name = "CIDR,...",
        value_delimiter = ','
    )]
    pub trusted_proxies: Option<Vec<String>>,

    /// Mark cookies `Secure` on every answer (they are whenever the visitor's request came over
    /// HTTPS, as a trusted proxy's X-Forwarded-Proto tells).
    #[arg(long, env = "QUEUEGATE_SECURE_COOKIES", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true")]
    pub secure_cookies: Option<bool>,
}

/// Flags of `queuegate-origin schedule`: the admission scheduler for rooms the edge serves.
/// The admin key comes from `QUEUEGATE_ADMIN_KEY`.
#[derive(Debug, Clone, Args)]
pub struct ScheduleArgs {
    /// The edge worker's base URL, e.g. https://queue.example.com or http://127.0.0.1:8787.
    #[arg(long, env = "QUEUEGATE_EDGE", value_name = "URL")]
    pub edge: String,

    /// Where the worker's API lives [default: /_qg/v1].
    #[arg(long, env = "QUEUEGATE_API_PREFIX", value_name = "PATH")]
    pub api_prefix: Option<String>,

    /// The scheduler's tick in milliseconds [default: 1000].
    #[arg(long, env = "QUEUEGATE_TICK_MS", value_name = "MS")]
    pub tick_ms: Option<u64>,

    /// How long a call to the edge may take [default: 5000].
    #[arg(long, env = "QUEUEGATE_EDGE_TIMEOUT_MS", value_name = "MS")]
    pub timeout_ms: Option<u64>,
}

/// The TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub upstream: Option<String>,
    pub upstream_timeout_ms: Option<u64>,
    pub body_timeout_ms: Option<u64>,
    pub max_connections: Option<u64>,
    pub header_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_header_bytes: Option<u64>,
    pub shutdown_timeout_ms: Option<u64>,
    pub api_prefix: Option<String>,
    pub tick_ms: Option<u64>,
    pub secure_cookies: Option<bool>,
    pub trusted_proxies: Option<Vec<String>>,
    pub on_store_unavailable: Option<UnavailablePolicy>,
    pub store: StoreConfig,
    /// Rooms by id, each a room configuration (the admin API's fields).
    pub rooms: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum StoreConfig {
    /// The embedded in-process store.
    #[default]
    Memory,
    /// One Redis server (or a primary behind a proxy).
    Redis {
        url: String,
        #[serde(default)]
        timeout_ms: Option<u64>,
        /// Replicas that must acknowledge the scheduler's writes and visitors' joins and
        /// leaves; `None`: read from Redis.
        #[serde(default)]
        replicas: Option<u32>,
    },
    /// A Redis Cluster, reached through any of `urls`.
    RedisCluster {
        urls: Vec<String>,
        #[serde(default)]
        timeout_ms: Option<u64>,
        #[serde(default)]
        replicas: Option<u32>,
    },
}

pub const DEFAULT_STORE_TIMEOUT_MS: u64 = 500;

impl StoreConfig {
    pub fn timeout(&self) -> Duration {
        let ms = match self {
            StoreConfig::Memory => None,
            StoreConfig::Redis { timeout_ms, .. }
            | StoreConfig::RedisCluster { timeout_ms, .. } => *timeout_ms,
        };
        Duration::from_millis(ms.unwrap_or(DEFAULT_STORE_TIMEOUT_MS))
    }
}

/// Everything `serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Where the admin API and metrics are served, when not on `listen`.
    pub admin_listen: Option<SocketAddr>,
    pub upstream: Option<String>,
    pub upstream_timeout_ms: u64,
    pub body_timeout_ms: u64,
    /// What connections may cost.
    pub limits: crate::listener::Limits,
    pub api_prefix: String,
    pub tick: Duration,
    pub secure_cookies: bool,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub store: StoreConfig,
    pub on_store_unavailable: UnavailablePolicy,
    pub rooms: Vec<(RoomId, RoomConfig)>,
    pub admin_key: String,
    pub signing_keys: SigningKeys,
    /// The keys the application signs user tokens with, if it does.
    pub app_keys: Option<SigningKeys>,
    /// Secrets that were not configured and were generated for this run.
    pub generated: Vec<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("room {room:?}: {error}")]
    Room { room: String, error: ApiError },
    #[error("{ENV_SIGNING_KEYS}: {0}")]
    Keys(#[from] KeyError),
    #[error("{ENV_APP_KEYS}: {0}")]
    AppKeys(KeyError),
    #[error("{0}")]
    Invalid(String),
}

/// The demo room a server without a configuration file starts with: small enough that a few
/// browser tabs or a curl loop fill it.
pub fn demo_room() -> (RoomId, RoomConfig) {
    (
        RoomId::parse("demo").expect("valid id"),
        RoomConfig {
            paths: vec!["/".into()],
            max_active: 2,
            admit_per_minute: 60,
            session_ttl_s: 60,
            claim_window_s: 30,
            shards: 2,
            ..RoomConfig::default()
        },
    )
}

impl Settings {
    /// Resolves flags (already merged with the environment by clap), the file they name, and
    /// the secrets from `env`.
    pub fn resolve(
        args: &ServeArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(path) => Some(read_file(path)?),
            None => None,
        };
        let file_or_default = file.clone().unwrap_or_default();
        let limits = limits(args, &file_or_default);
        let api_prefix = args
            .api_prefix
            .clone()
            .or(file_or_default.api_prefix)
            .unwrap_or_else(|| DEFAULT_API_PREFIX.to_owned());
        validate_prefix(&api_prefix)?;
        let tick_ms = args
            .tick_ms
            .or(file_or_default.tick_ms)
            .unwrap_or(DEFAULT_TICK_MS);
        if !(10..=60_000).contains(&tick_ms) {
            return Err(ConfigError::Invalid(format!(
                "tick_ms: {tick_ms} is out of range 10..=60000"
            )));
        }
        let rooms = match &file {
            Some(file) => file
                .rooms
                .iter()
                .map(|(id, value)| {
                    let room_err = |error| ConfigError::Room {
                        room: id.clone(),
                        error,
                    };
                    let room = RoomId::parse(id).map_err(room_err)?;
                    let config =
                        RoomConfig::from_value(value.clone(), &api_prefix).map_err(room_err)?;
                    Ok((room, config))
                })
                .collect::<Result<Vec<_>, ConfigError>>()?,
            None => vec![demo_room()],
        };
        let mut generated = Vec::new();
        let admin_key = match env(ENV_ADMIN_KEY).filter(|k| !k.trim().is_empty()) {
            Some(key) if key.trim().len() < MIN_ADMIN_KEY_LEN => {
                return Err(ConfigError::Invalid(format!(
                    "{ENV_ADMIN_KEY} must be at least {MIN_ADMIN_KEY_LEN} bytes: it is the key to \
                     every room"
                )))
            }
            Some(key) => key.trim().to_owned(),
            None => {
                generated.push(ENV_ADMIN_KEY);
                hex(&random_bytes::<16>())
            }
        };
        let signing_keys = match env(ENV_SIGNING_KEYS).filter(|k| !k.trim().is_empty()) {
            Some(spec) => SigningKeys::parse(&spec)?,
            None => {
                generated.push(ENV_SIGNING_KEYS);
                SigningKeys::from_random("gen", random_bytes())
            }
        };
        let trusted_proxies = args
            .trusted_proxies
            .clone()
            .or(file_or_default.trusted_proxies.clone())
            .unwrap_or_default()
            .iter()
            .map(|cidr| parse_cidr(cidr))
            .collect::<Result<Vec<_>, _>>()?;
        let app_keys = env(ENV_APP_KEYS)
            .filter(|k| !k.trim().is_empty())
            .map(|spec| SigningKeys::parse(&spec).map_err(ConfigError::AppKeys))
            .transpose()?;
        Ok(Settings {
            admin_listen: args.admin_listen.or(file_or_default.admin_listen),
            listen: args
                .listen
                .or(file_or_default.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default")),
            upstream: args.upstream.clone().or(file_or_default.upstream),
            upstream_timeout_ms: args
                .upstream_timeout_ms
                .or(file_or_default.upstream_timeout_ms)
                .filter(|&ms| ms > 0)
                .unwrap_or(queuegate::service::DEFAULT_UPSTREAM_TIMEOUT_MS),
            body_timeout_ms: args
                .body_timeout_ms
                .or(file_or_default.body_timeout_ms)
                .filter(|&ms| ms > 0)
                .unwrap_or(queuegate::service::DEFAULT_BODY_TIMEOUT_MS),
            limits,
            api_prefix,
            tick: Duration::from_millis(tick_ms),
            secure_cookies: args
                .secure_cookies
                .or(file_or_default.secure_cookies)
                .unwrap_or(false),
            trusted_proxies,
            store: match (&args.redis, &args.redis_cluster) {
                (Some(url), _) => StoreConfig::Redis {
                    url: url.clone(),
                    timeout_ms: args.store_timeout_ms,
                    replicas: args.redis_replicas,
                },
                (None, Some(urls)) => StoreConfig::RedisCluster {
                    urls: urls.clone(),
                    timeout_ms: args.store_timeout_ms,
                    replicas: args.redis_replicas,
                },
                (None, None) => match file_or_default.store {
                    StoreConfig::Redis {
                        url,
                        timeout_ms,
                        replicas,
                    } => StoreConfig::Redis {
                        url,
                        timeout_ms: args.store_timeout_ms.or(timeout_ms),
                        replicas: args.redis_replicas.or(replicas),
                    },
                    StoreConfig::RedisCluster {
                        urls,
                        timeout_ms,
                        replicas,
                    } => StoreConfig::RedisCluster {
                        urls,
                        timeout_ms: args.store_timeout_ms.or(timeout_ms),
                        replicas: args.redis_replicas.or(replicas),
                    },
                    StoreConfig::Memory => StoreConfig::Memory,
                },
            },
            on_store_unavailable: args
                .on_store_unavailable
                .or(file_or_default.on_store_unavailable)
                .unwrap_or_default(),
            rooms,
            admin_key,
            signing_keys,
            app_keys,
            generated,
        })
    }
}

/// The connection limits: flags over the file over the defaults.
fn limits(args: &ServeArgs, file: &FileConfig) -> crate::listener::Limits {
    let defaults = crate::listener::Limits::default();
    let ms = |flag: Option<u64>, key: Option<u64>, default: Duration| {
        flag.or(key).map_or(default, Duration::from_millis)
    };
    crate::listener::Limits {
        max_connections: args
            .max_connections
            .or(file.max_connections)
            .map_or(defaults.max_connections, |n| n as usize),
        header_timeout: ms(
            args.header_timeout_ms,
            file.header_timeout_ms,
            defaults.header_timeout,
        ),
        idle_timeout: ms(
            args.idle_timeout_ms,
            file.idle_timeout_ms,
            defaults.idle_timeout,
        ),
        max_header_bytes: args
            .max_header_bytes
            .or(file.max_header_bytes)
            .map_or(defaults.max_header_bytes, |n| n as usize),
        shutdown_timeout: ms(
            args.shutdown_timeout_ms,
            file.shutdown_timeout_ms,
            defaults.shutdown_timeout,
        ),
    }
}

/// A trusted proxy: an address range, or one address.
fn parse_cidr(text: &str) -> Result<ipnet::IpNet, ConfigError> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            ConfigError::Invalid(format!(
                "trusted_proxies: {text:?} is not an address or CIDR"
            ))
        })
}

fn read_file(path: &PathBuf) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })
}

fn validate_prefix(prefix: &str) -> Result<(), ConfigError> {
    let ok = prefix.len() >= 2
        && prefix.starts_with('/')
        && !prefix.ends_with('/')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "api_prefix {prefix:?} must be a path like /_qg/v1: starting with '/', not ending with one"
        )))
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn no_configuration_means_the_demo_room_and_generated_secrets() {
        let s = Settings::resolve(&ServeArgs::default(), no_env).unwrap();
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(s.rooms, vec![demo_room()]);
        assert_eq!(s.generated, [ENV_ADMIN_KEY, ENV_SIGNING_KEYS]);
        assert_eq!(s.api_prefix, "/_qg/v1");
        assert_eq!(s.admin_key.len(), 32);
    }

    #[test]
    fn flags_beat_the_file_and_secrets_come_from_the_environment() {
        let mut file = tempfile();
        writeln!(
            file.1,
            r#"
listen = "127.0.0.1:9000"
upstream = "http://127.0.0.1:3000"
tick_ms = 250
[rooms.sale]
paths = ["/tickets"]
max_active = 500
admit_per_minute = 1000
"#
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.0.clone()),
            listen: Some("127.0.0.1:9999".parse().unwrap()),
            ..ServeArgs::default()
        };
        let env = |name: &str| match name {
            ENV_ADMIN_KEY => Some("admin-secret-of-at-least-32-bytes".to_owned()),
            ENV_SIGNING_KEYS => Some("k1:0123456789abcdef0123".to_owned()),
            _ => None,
        };
        let s = Settings::resolve(&args, env).unwrap();
        assert_eq!(s.listen.port(), 9999);
        assert_eq!(s.upstream.as_deref(), Some("http://127.0.0.1:3000"));
        assert_eq!(s.tick, Duration::from_millis(250));
        assert_eq!(s.rooms.len(), 1);
        assert_eq!(s.rooms[0].0.as_str(), "sale");
        assert_eq!(s.rooms[0].1.max_active, 500);
        assert_eq!(s.rooms[0].1.shards, RoomConfig::default().shards);
        assert_eq!(s.admin_key, "admin-secret-of-at-least-32-bytes");
        assert_eq!(s.signing_keys.signer().kid(), "k1");
        assert!(s.generated.is_empty());
        std::fs::remove_file(file.0).unwrap();
    }

    #[test]
    fn bad_files_name_what_is_wrong() {
        for (text, expected) in [
            ("listen = 5", "listen"),
            ("unknown_key = 1", "unknown_key"),
            ("[rooms.sale]\nmax_active = 0", "max_active"),
            ("[rooms.Sale]\n", "Sale"),
            ("[rooms.sale]\nbogus = 1", "bogus"),
            ("tick_ms = 1", "tick_ms"),
            ("api_prefix = \"nope\"", "api_prefix"),
            ("[store]\nkind = \"etcd\"", "etcd"),
        ] {
            let mut file = tempfile();
            write!(file.1, "{text}").unwrap();
            let args = ServeArgs {
                config: Some(file.0.clone()),
                ..ServeArgs::default()
            };
            let err = Settings::resolve(&args, no_env).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
            std::fs::remove_file(file.0).unwrap();
        }
    }

    #[test]
    fn the_example_file_is_valid() {
        let path = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../queuegate.example.toml"
        ));
        let args = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        let s = Settings::resolve(&args, no_env).unwrap();
        assert_eq!(s.rooms.len(), 1);
        assert_eq!(s.rooms[0].1.paths, ["/tickets", "/checkout"]);
    }

    #[test]
    fn redis_comes_from_a_flag_or_the_file() {
        let args = ServeArgs {
            redis: Some("redis://127.0.0.1:6390".into()),
            store_timeout_ms: Some(250),
            redis_replicas: Some(1),
            on_store_unavailable: Some(UnavailablePolicy::Open),
            ..ServeArgs::default()
        };
        let s = Settings::resolve(&args, no_env).unwrap();
        assert_eq!(
            s.store,
            StoreConfig::Redis {
                url: "redis://127.0.0.1:6390".into(),
                timeout_ms: Some(250),
                replicas: Some(1),
            }
        );
        assert_eq!(s.store.timeout(), Duration::from_millis(250));
        assert_eq!(s.on_store_unavailable, UnavailablePolicy::Open);

        let mut file = tempfile();
        write!(
            file.1,
            "on_store_unavailable = \"open\"\n[store]\nkind = \"redis-cluster\"\nurls = [\"redis://127.0.0.1:7000\"]\nreplicas = 0\n"
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.0.clone()),
            ..ServeArgs::default()
        };
        let s = Settings::resolve(&args, no_env).unwrap();
        assert_eq!(
            s.store,
            StoreConfig::RedisCluster {
                urls: vec!["redis://127.0.0.1:7000".into()],
                timeout_ms: None,
                replicas: Some(0),
            }
        );
        assert_eq!(s.on_store_unavailable, UnavailablePolicy::Open);
        std::fs::remove_file(file.0).unwrap();
    }

    #[test]
    fn short_admin_keys_are_refused() {
        let env = |name: &str| (name == ENV_ADMIN_KEY).then(|| "x".repeat(31));
        let err = Settings::resolve(&ServeArgs::default(), env).unwrap_err();
        assert!(err.to_string().contains("32 bytes"), "{err}");
    }

    #[test]
    fn bad_signing_keys_are_refused() {
        let env = |name: &str| (name == ENV_SIGNING_KEYS).then(|| "k1:short".to_owned());
        assert!(matches!(
            Settings::resolve(&ServeArgs::default(), env),
            Err(ConfigError::Keys(KeyError::ShortSecret(_)))
        ));
    }

    fn tempfile() -> (PathBuf, std::fs::File) {
        let path = std::env::temp_dir().join(format!(
            "queuegate-config-{}.toml",
            hex(&random_bytes::<8>())
        ));
        let file = std::fs::File::create(&path).unwrap();
        (path, file)
    }
}
