//! Room identity and configuration, with validation that both deployments apply the same way.

use crate::event::Events;
use serde::{Deserialize, Serialize};

use crate::bypass::BypassRule;
use crate::challenge::Challenge;
use crate::error::{ApiError, ErrorCode};
use crate::limit::JoinLimit;
use crate::template::TemplateRef;

/// A room as a store keeps it: its configuration and the state the scheduler and the operator
/// set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomRecord {
    pub id: RoomId,
    pub config: RoomConfig,
    pub paused: bool,
    /// The queue's incarnation; tickets of another epoch have no place here.
    pub epoch: u32,
    /// Admissions per minute measured while visitors waited, as the scheduler last published it.
    pub measured_rate: Option<f64>,
    /// Scheduled events ([`crate::event`]), by id.
    #[serde(default, skip_serializing_if = "Events::is_empty")]
    pub events: Events,
    /// The room's own page template ([`crate::template`]), by the hash of its text; the text is
    /// kept beside the record and read by [`crate::template::TemplateRef::hash`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRef>,
    /// When the sale opens, while an event holds the room in its pre-queue: set by
    /// [`RoomRecord::in_effect`], never stored.
    #[serde(skip)]
    pub opens_at: Option<u64>,
}

impl RoomRecord {
    /// The room as its events make it at `now`: the running event's overrides applied, and
    /// `opens_at` set while one is in its pre-queue. Every decision about a visitor reads the
    /// room through this; the admin API shows the room's own settings.
    pub fn in_effect(mut self, now: u64) -> RoomRecord {
        self.opens_at = crate::event::apply(&mut self.config, &self.events, now);
        self
    }

    /// Whether the room admits nobody now: paused by the operator, or in a pre-queue.
    pub fn holds_admission(&self) -> bool {
        self.paused || self.opens_at.is_some()
    }
}

/// The longest room id; keeps cookie names, store keys and tokens short.
pub const MAX_ROOM_ID_LEN: usize = 64;
pub const MAX_PATHS: usize = 32;
pub const MAX_PATH_LEN: usize = 256;
pub const MAX_SHARDS: u16 = 64;
pub const MAX_ACTIVE_LIMIT: u64 = 100_000_000;
pub const MAX_ADMIT_PER_MINUTE: u64 = 100_000_000;
pub const MAX_SESSION_TTL_S: u64 = 7 * 24 * 3600;
pub const MAX_CLAIM_WINDOW_S: u64 = 24 * 3600;
/// Two minutes: a browser polls a hidden tab's page about once a minute (Chrome's intensive
/// throttling after five minutes hidden), so a visitor who only switched tabs keeps the place.
pub const DEFAULT_ABANDON_AFTER_S: u64 = 120;
/// The shortest unseen time that ends a place: a few polls at the shortest interval.
pub const MIN_ABANDON_AFTER_S: u64 = 4;
pub const MAX_TICKET_TTL_S: u64 = 7 * 24 * 3600;

/// A validated room id: 1 to 64 characters of `a-z`, `0-9`, `-` and `_`, starting with a letter
/// or digit. Safe in a URL path, a cookie name and a Redis key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct RoomId(String);

impl RoomId {
    pub fn parse(id: &str) -> Result<RoomId, ApiError> {
        let valid_chars = id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        let valid_start = id
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if id.len() > MAX_ROOM_ID_LEN || !valid_chars || !valid_start {
            return Err(ApiError::new(
                ErrorCode::InvalidRoomId,
                format!(
                    "room id must be 1-{MAX_ROOM_ID_LEN} characters of a-z, 0-9, '-' and '_', \
                     starting with a letter or digit"
                ),
            ));
        }
        Ok(RoomId(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RoomId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RoomId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        RoomId::parse(&raw).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// How a room orders the visitors it admits.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub enum Mode {
    /// First come, first served across all shards.
    #[default]
    Fifo,
    /// Each admission draws uniformly among everyone waiting ([`crate::draw`]): positions are
    /// not shown, and the estimate is the average wait of a draw.
    Random,
    /// Nobody queues: the gate lets every request through without a pass, counted (as
    /// `passthrough` in the gate's metrics), and a join is answered `admitted` at once, without
    /// a place. The room's numbers go on showing whoever still holds a place or a session.
    Passthrough,
    /// No joins (403 `room_closed`, and a page saying so at the gate): the sale is over or not
    /// open. Those who hold places keep them and are admitted as before.
    Closed,
}

impl Mode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Fifo => "fifo",
            Mode::Random => "random",
            Mode::Closed => "closed",
            Mode::Passthrough => "passthrough",
        }
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        match raw.as_str() {
            "fifo" => Ok(Mode::Fifo),
            "closed" => Ok(Mode::Closed),
            "passthrough" => Ok(Mode::Passthrough),
            "random" => Ok(Mode::Random),
            _ => Err(serde::de::Error::custom(format!(
                "unknown mode \"{raw}\" (supported: \"fifo\", \"random\", \"passthrough\", \
                 \"closed\")"
            ))),
        }
    }
}

/// A room's configuration, as the admin API takes it and the config file holds it. Missing fields
/// take their defaults; [`RoomConfig::validate`] then checks every value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct RoomConfig {
    /// Path prefixes the room protects, each starting with `/`. A prefix matches itself and
    /// everything below it (`/shop` matches `/shop` and `/shop/cart`, not `/shopping`).
    pub paths: Vec<String>,
    /// Hosts the room is for (lowercase names without a port), or empty: every host. One
    /// deployment can serve several sites this way.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Most visitors in the application at once: active sessions plus admitted visitors who have
    /// not arrived yet.
    pub max_active: u64,
    /// Most admissions per minute, however much capacity is free.
    pub admit_per_minute: u64,
    /// A session ends this long after the visitor's last activity.
    pub session_ttl_s: u64,
    /// An admitted visitor who has not arrived after this long loses the slot.
    pub claim_window_s: u64,
    /// How long a ticket stays valid without a status poll renewing it.
    pub ticket_ttl_s: u64,
    pub mode: Mode,
    /// How many queue shards hold the room's waiting visitors. Fixed once the room exists.
    pub shards: u16,
    /// Joins per client (an IPv4 address or an IPv6 /64), or `None`: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_limit: Option<JoinLimit>,
    /// What a join must pass first, or `None`: nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge: Option<Challenge>,
    /// Who may join: anyone, or only a client with an invite from the application.
    pub access: Access,
    /// What a client over the join limit or failing its challenge gets.
    pub suspicious: Suspicious,
    /// Most visitors waiting: beyond it, a join gets status `full` and no place (`None`: no cap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_waiting: Option<u64>,
    /// The status of the gate's waiting answer: 200, 202 or 429 (for clients and monitors that
    /// read the status rather than the page).
    pub queueing_status: u16,
    /// Requests on the room's paths that go to the application without queueing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bypass: Vec<BypassRule>,
    /// A waiting visitor not seen (no poll, no visit to the gate, no join again) for this long
    /// has left: the place ends before admission reaches it, so that it takes neither a slot
    /// nor an admission (0: never). Waiting pages are told to poll at least four times as
    /// often.
    pub abandon_after_s: u64,
}

/// Who may join a room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub enum Access {
    #[default]
    Public,
    /// A join needs an invite (see [`crate::invite`]), each accepted once.
    Invite,
}

/// What a room does with a client over its join limit or failing its challenge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub enum Suspicious {
    /// An error that says why: 429 `too_many_joins`, 403 `challenge_failed`.
    #[default]
    Refuse,
    /// A place in a queue that never moves to the front (see [`crate::decoy`]): the answer looks
    /// like any other, so a bot cannot tell it was caught, and the place costs the store
    /// nothing.
    InfiniteQueue,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            paths: Vec::new(),
            hosts: Vec::new(),
            max_active: 100,
            admit_per_minute: 60,
            session_ttl_s: 600,
            claim_window_s: 120,
            ticket_ttl_s: 3600,
            mode: Mode::Fifo,
            shards: 4,
            join_limit: None,
            challenge: None,
            access: Access::Public,
            suspicious: Suspicious::Refuse,
            bypass: Vec::new(),
            queueing_status: 200,
            max_waiting: None,
            abandon_after_s: DEFAULT_ABANDON_AFTER_S,
        }
    }
}

impl RoomConfig {
    /// Checks every value. `reserved_prefix` is the API prefix: a room may not protect it.
    pub fn validate(&self, reserved_prefix: &str) -> Result<(), ApiError> {
        let invalid = |msg: String| Err(ApiError::new(ErrorCode::InvalidConfig, msg));
        if self.paths.len() > MAX_PATHS {
            return invalid(format!("paths: at most {MAX_PATHS} prefixes"));
        }
        for path in &self.paths {
            if let Err(msg) = validate_path(path, reserved_prefix) {
                return invalid(format!("paths: {path:?} {msg}"));
            }
        }
        if self.hosts.len() > MAX_PATHS {
            return invalid(format!("hosts: at most {MAX_PATHS} names"));
        }
        for host in &self.hosts {
            if !valid_host(host) {
                return invalid(format!(
                    "hosts: {host:?} is not a lowercase host name without a port"
                ));
            }
        }
        check_range("max_active", self.max_active, 1, MAX_ACTIVE_LIMIT)?;
        check_range(
            "admit_per_minute",
            self.admit_per_minute,
            1,
            MAX_ADMIT_PER_MINUTE,
        )?;
        check_range("session_ttl_s", self.session_ttl_s, 1, MAX_SESSION_TTL_S)?;
        check_range("claim_window_s", self.claim_window_s, 1, MAX_CLAIM_WINDOW_S)?;
        check_range("ticket_ttl_s", self.ticket_ttl_s, 10, MAX_TICKET_TTL_S)?;
        check_range("shards", u64::from(self.shards), 1, u64::from(MAX_SHARDS))?;
        if let Some(limit) = &self.join_limit {
            limit.validate()?;
        }
        if let Some(challenge) = &self.challenge {
            challenge.validate()?;
        }
        crate::bypass::validate(&self.bypass, reserved_prefix)?;
        if let Some(max) = self.max_waiting {
            check_range("max_waiting", max, 1, MAX_ACTIVE_LIMIT)?;
        }
        if self.abandon_after_s != 0 {
            check_range(
                "abandon_after_s",
                self.abandon_after_s,
                MIN_ABANDON_AFTER_S,
                MAX_TICKET_TTL_S,
            )?;
        }
        if ![200, 202, 429].contains(&self.queueing_status) {
            return invalid(format!(
                "queueing_status: {} is not one of 200, 202, 429",
                self.queueing_status
            ));
        }
        Ok(())
    }

    /// The fields a configuration may have.
    pub const FIELDS: &'static [&'static str] = &[
        "paths",
        "hosts",
        "max_active",
        "admit_per_minute",
        "session_ttl_s",
        "claim_window_s",
        "ticket_ttl_s",
        "mode",
        "shards",
        "join_limit",
        "challenge",
        "access",
        "suspicious",
        "bypass",
        "queueing_status",
        "max_waiting",
        "abandon_after_s",
    ];

    /// Parses a configuration from JSON, telling a syntax error (`invalid_json`) from a bad or
    /// unknown field (`invalid_config`), then validates it.
    pub fn from_json(body: &[u8], reserved_prefix: &str) -> Result<RoomConfig, ApiError> {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::new(ErrorCode::InvalidJson, e.to_string()))?;
        RoomConfig::from_value(value, reserved_prefix)
    }

    /// Reads a configuration from an already parsed value (JSON, or TOML read into JSON values),
    /// refusing unknown fields, then validates it.
    pub fn from_value(
        value: serde_json::Value,
        reserved_prefix: &str,
    ) -> Result<RoomConfig, ApiError> {
        let invalid = |msg: String| ApiError::new(ErrorCode::InvalidConfig, msg);
        let serde_json::Value::Object(fields) = &value else {
            return Err(invalid("a room configuration is a JSON object".into()));
        };
        if let Some(unknown) = fields.keys().find(|k| !Self::FIELDS.contains(&k.as_str())) {
            return Err(invalid(format!(
                "unknown field {unknown:?} (known: {})",
                Self::FIELDS.join(", ")
            )));
        }
        let config: RoomConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let field = e.path().to_string();
            invalid(format!("{field}: {}", e.into_inner()))
        })?;
        config.validate(reserved_prefix)?;
        Ok(config)
    }

    pub fn session_ttl_ms(&self) -> u64 {
        self.session_ttl_s * 1000
    }

    pub fn claim_window_ms(&self) -> u64 {
        self.claim_window_s * 1000
    }

    /// How long a waiting place may go unseen ([`RoomConfig::abandon_after_s`]); `None`: for
    /// ever.
    pub fn abandon_after_ms(&self) -> Option<u64> {
        (self.abandon_after_s > 0).then(|| self.abandon_after_s * 1000)
    }

    pub fn ticket_ttl_ms(&self) -> u64 {
        self.ticket_ttl_s * 1000
    }
}

pub(crate) fn check_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), ApiError> {
    if value < min || value > max {
        return Err(ApiError::new(
            ErrorCode::InvalidConfig,
            format!("{field}: {value} is out of range {min}..={max}"),
        ));
    }
    Ok(())
}

pub(crate) fn validate_path(path: &str, reserved_prefix: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("must start with '/'");
    }
    if path.len() > MAX_PATH_LEN {
        return Err("is too long");
    }
    if path
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'?' || b == b'#' || b >= 0x80)
    {
        return Err("must be a plain URL path without spaces, query or fragment");
    }
    // "/" protects the whole site: the API prefix is routed before the gate, so it stays
    // reachable. A path at or under the prefix could never be gated, and one between "/" and
    // the prefix (such as "/_qg") is almost certainly a mistake.
    if path != "/"
        && (path_has_prefix(reserved_prefix, path) || path_has_prefix(path, reserved_prefix))
    {
        return Err("overlaps queuegate's own API prefix");
    }
    Ok(())
}

/// A host name as rooms name hosts: 1 to 253 bytes of lowercase letters, digits, `-` and `.`,
/// labels of 1 to 63 bytes.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// The host a request is for, as rooms name hosts: lowercase, without a port or a final dot.
pub fn request_host(authority: &str) -> Option<String> {
    let host = match authority.rsplit_once(':') {
        // An IPv6 literal's colons are inside its brackets.
        Some((host, port))
            if (!authority.starts_with('[') || host.ends_with(']'))
                && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            host
        }
        _ => authority,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// Whether `path` is `prefix` or lies below it, on a segment boundary.
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return path.starts_with('/');
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "/_qg/v1";

    #[test]
    fn room_ids() {
        for ok in ["a", "demo", "sale-2026_x", "0", &"a".repeat(64)] {
            assert!(RoomId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "A",
            "a b",
            "a/b",
            "é",
            &"a".repeat(65),
            "a.b",
        ] {
            let err = RoomId::parse(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidRoomId, "{bad}");
        }
    }

    #[test]
    fn hosts_are_names_and_requests_are_read_without_their_port() {
        for (authority, want) in [
            ("Shop.Example:8443", Some("shop.example")),
            ("shop.example.", Some("shop.example")),
            ("[::1]:80", Some("[::1]")),
            ("[::1]", Some("[::1]")),
            ("", None),
        ] {
            assert_eq!(request_host(authority).as_deref(), want, "{authority}");
        }
        let with = |hosts: &[&str]| RoomConfig {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..RoomConfig::default()
        };
        assert!(with(&["a.example", "localhost"]).validate(PREFIX).is_ok());
        for bad in ["A.example", "a.example:80", "", "a..b", "*.example", "a b"] {
            assert!(with(&[bad]).validate(PREFIX).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_are_valid() {
        RoomConfig::default().validate(PREFIX).unwrap();
    }

    #[test]
    fn a_room_may_protect_the_whole_site() {
        let config = RoomConfig::from_json(br#"{"paths":["/"]}"#, PREFIX).unwrap();
        assert_eq!(config.paths, ["/"]);
    }

    #[test]
    fn absurd_values_are_refused_with_the_field_named() {
        let cases: &[(&str, &str)] = &[
            (r#"{"max_active":0}"#, "max_active"),
            (r#"{"max_active":-1}"#, "max_active"),
            (r#"{"max_active":1e30}"#, "max_active"),
            (r#"{"admit_per_minute":0}"#, "admit_per_minute"),
            (r#"{"session_ttl_s":99999999999}"#, "session_ttl_s"),
            (r#"{"claim_window_s":0}"#, "claim_window_s"),
            (r#"{"shards":0}"#, "shards"),
            (r#"{"shards":65}"#, "shards"),
            (r#"{"shards":70000}"#, "shards"),
            (r#"{"paths":["shop"]}"#, "paths"),
            (r#"{"paths":["/_qg"]}"#, "paths"),
            (r#"{"paths":["/_qg/v1/x"]}"#, "paths"),
            (r#"{"paths":"/shop"}"#, "paths"),
            (r#"{"mode":"lifo"}"#, "lifo"),
            (r#"{"max_actve":3}"#, "max_actve"),
            (r#"[1]"#, "object"),
            (
                r#"{"join_limit":{"per_client_per_min":0,"burst":3}}"#,
                "per_client_per_min",
            ),
            (
                r#"{"join_limit":{"per_client_per_min":6,"burst":0}}"#,
                "burst",
            ),
            (r#"{"join_limit":{"per_client_per_min":6}}"#, "burst"),
            (
                r#"{"join_limit":{"per_client_per_min":6,"burst":3,"x":1}}"#,
                "x",
            ),
            (r#"{"join_limit":6}"#, "join_limit"),
        ];
        for (body, field) in cases {
            let err = RoomConfig::from_json(body.as_bytes(), PREFIX).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidConfig, "{body}");
            assert!(err.message.contains(field), "{body}: {}", err.message);
        }
    }

    #[test]
    fn a_join_limit_is_optional_and_round_trips() {
        assert_eq!(RoomConfig::default().join_limit, None);
        let config = RoomConfig::from_json(
            br#"{"join_limit":{"per_client_per_min":6,"burst":3}}"#,
            PREFIX,
        )
        .unwrap();
        assert_eq!(
            config.join_limit,
            Some(JoinLimit {
                per_client_per_min: 6,
                burst: 3,
                penalize_after: None,
                penalty_s: None,
            })
        );
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(
            json["join_limit"],
            serde_json::json!({"per_client_per_min": 6, "burst": 3})
        );
        let config = RoomConfig::from_json(
            br#"{"join_limit":{"per_client_per_min":6,"burst":3,"penalize_after":10}}"#,
            PREFIX,
        )
        .unwrap();
        let limit = config.join_limit.unwrap();
        assert_eq!(limit.penalize_after, Some(10));
        assert_eq!(limit.penalty_ms(), 600_000, "the default penalty");
        // A room without one stores no field (records written before the field existed read
        // back the same).
        let json = serde_json::to_value(RoomConfig::default()).unwrap();
        assert!(json.get("join_limit").is_none());
    }

    #[test]
    fn syntax_errors_are_invalid_json() {
        for body in ["", "{", "nope", "{\"max_active\":}"] {
            let err = RoomConfig::from_json(body.as_bytes(), PREFIX).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidJson, "{body}");
        }
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(path_has_prefix("/shop", "/shop"));
        assert!(path_has_prefix("/shop/cart", "/shop"));
        assert!(path_has_prefix("/shop/cart", "/shop/"));
        assert!(!path_has_prefix("/shopping", "/shop"));
        assert!(path_has_prefix("/anything", "/"));
        assert!(path_has_prefix("/", "/"));
        assert!(!path_has_prefix("/sho", "/shop"));
    }
}
