//! The public and admin API's request and response bodies, cookie names and header parsing, as
//! both deployments serve them.

use serde::{Deserialize, Serialize};

use crate::controller::RoomLoad;
use crate::error::{ApiError, ErrorCode};
use crate::plan::{ShardOrder, ShardReading};
use crate::room::{RoomConfig, RoomId};

pub const DEFAULT_API_PREFIX: &str = "/_qg/v1";
/// The largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const MAX_USER_ID_LEN: usize = 128;

/// The cookie that holds a visitor's ticket for `room`.
pub fn ticket_cookie_name(room: &RoomId) -> String {
    format!("qg_ticket_{room}")
}

/// The cookie that holds a visitor's pass for `room`.
pub fn pass_cookie_name(room: &RoomId) -> String {
    format!("qg_pass_{room}")
}

/// A `Set-Cookie` value. `max_age_s` of 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age_s: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; Max-Age={max_age_s}; HttpOnly; SameSite=Lax{secure}")
}

/// Finds a cookie's value in `Cookie` header values.
pub fn find_cookie<'a>(headers: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    headers
        .into_iter()
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Whether a request wants JSON rather than the HTML waiting page.
pub fn wants_json(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        let a = a.to_ascii_lowercase();
        a.contains("application/json") && !a.contains("text/html")
    })
}

/// `POST .../join` body. Empty bodies are allowed; unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct JoinRequest {
    /// One place per user id; the place is handed back only with its ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// A user id the application signed (see [`crate::apptoken`]): the place is handed back on
    /// any device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_token: Option<String>,
    /// The answer to the room's challenge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<crate::challenge::ChallengeAnswer>,
    /// An invite to an invite-only room (see [`crate::invite`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<String>,
}

impl JoinRequest {
    pub fn from_body(body: &[u8]) -> Result<JoinRequest, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(JoinRequest::default());
        }
        let req: JoinRequest = parse_json(body)?;
        if let Some(user) = &req.user_id {
            validate_user_id(user)?;
        }
        if req
            .user_token
            .as_ref()
            .is_some_and(|t| t.is_empty() || t.len() > crate::apptoken::MAX_TOKEN_LEN)
        {
            return Err(ApiError::new(
                ErrorCode::InvalidUserToken,
                "the user token is empty or too long",
            ));
        }
        if let Some(answer) = &req.challenge {
            answer.validate()?;
        }
        if req
            .invite
            .as_ref()
            .is_some_and(|t| t.len() > crate::apptoken::MAX_TOKEN_LEN)
        {
            return Err(ApiError::new(
                ErrorCode::InviteRequired,
                "the invite is too long to be one",
            ));
        }
        Ok(req)
    }
}

pub fn validate_user_id(user: &str) -> Result<(), ApiError> {
    if user.is_empty() || user.len() > MAX_USER_ID_LEN || user.chars().any(char::is_control) {
        return Err(ApiError::new(
            ErrorCode::InvalidUserId,
            format!("user_id must be 1-{MAX_USER_ID_LEN} bytes without control characters"),
        ));
    }
    Ok(())
}

/// Parses a JSON body, telling a syntax error from a well-formed body of the wrong shape. Both
/// are `invalid_json`: the body is not the object the endpoint takes.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::new(ErrorCode::InvalidJson, e.to_string()))
}

/// Where a visitor stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub enum VisitorStatus {
    Waiting,
    Admitted,
    Left,
    Expired,
    /// The room's line is full (`max_waiting`): no place was taken; try again later.
    Full,
}

impl VisitorStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            VisitorStatus::Waiting => "waiting",
            VisitorStatus::Admitted => "admitted",
            VisitorStatus::Left => "left",
            VisitorStatus::Expired => "expired",
            VisitorStatus::Full => "full",
        }
    }
}

/// The body of join, status and leave, and of the gate's JSON waiting response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct VisitorResponse {
    pub room: String,
    pub status: VisitorStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// 1 = next in line. Only while waiting; `null` in a pre-queue, before the sale opens, and
    /// in a random draw.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_or_null"
    )]
    pub position: Option<Option<u64>>,
    /// When the sale opens (Unix ms), while waiting in a pre-queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<u64>,
    /// `true` while waiting in a room in random mode: each admission draws among everyone
    /// waiting, so there is no place in line, and `eta_seconds` is the average wait of a draw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random: Option<bool>,
    /// Only while waiting; `null` when the room admits nobody at the moment (paused or full).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_or_null"
    )]
    pub eta_seconds: Option<Option<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_after_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_expires_at: Option<u64>,
}

impl VisitorResponse {
    pub fn new(room: &RoomId, status: VisitorStatus) -> Self {
        VisitorResponse {
            room: room.as_str().to_owned(),
            status,
            ticket_id: None,
            ticket: None,
            position: None,
            opens_at: None,
            random: None,
            eta_seconds: None,
            poll_after_ms: None,
            pass: None,
            pass_expires_at: None,
        }
    }
}

/// Reads a field that is present, possibly `null`, as `Some(..)`; serde would read `null` as an
/// absent field.
fn present_or_null<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `POST .../admin/rooms/{room}/admit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct AdmitRequest {
    pub count: u64,
}

pub const MAX_ADMIT_COUNT: u64 = 10_000_000;

impl AdmitRequest {
    pub fn from_body(body: &[u8]) -> Result<AdmitRequest, ApiError> {
        let req: AdmitRequest = parse_json(body)?;
        if req.count > MAX_ADMIT_COUNT {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("count: at most {MAX_ADMIT_COUNT}"),
            ));
        }
        Ok(req)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct AdmitResponse {
    pub admitted: u64,
}

/// `POST .../admin/rooms/{room}/revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct RevokeRequest {
    pub ticket_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct RevokeResponse {
    pub ticket_id: String,
    pub revoked: bool,
}

/// A room's live numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct RoomStats {
    /// In the queue, neither admitted nor gone.
    pub waiting: u64,
    /// Admitted but not arrived yet, within the claim window.
    pub admitted: u64,
    /// Sessions in the application.
    pub active: u64,
    /// Admissions ever made (batches, direct entries and operator admissions).
    pub admitted_total: u64,
    /// Admissions per minute measured while visitors waited; `null` until measured.
    pub admit_rate_per_min: Option<f64>,
    /// Slots the scheduler has opened for direct entry until its next tick.
    pub entry_credit: u64,
    /// Places ended, ever, because their visitors stopped asking (`abandon_after_s`).
    #[serde(default)]
    pub abandoned_total: u64,
    /// Admissions ended, ever, because their visitors never came for them and stopped asking
    /// (`abandon_after_s`); each was given back to the admission rate.
    #[serde(default)]
    pub no_shows_total: u64,
    /// Visitors who joined, ever (a place in the queue, or straight in when nobody waited),
    /// since the room's queue last started again.
    #[serde(default)]
    pub joined_total: u64,
    /// Visitors who left the queue themselves, ever, since the room's queue last started again.
    #[serde(default)]
    pub left_total: u64,
}

impl RoomStats {
    /// The numbers from a room's load, its measured rate and the credit its shards hold.
    pub fn new(load: RoomLoad, admit_rate_per_min: Option<f64>, entry_credit: u64) -> RoomStats {
        RoomStats {
            waiting: load.waiting,
            admitted: load.admitted,
            active: load.active,
            admitted_total: load.admitted_total,
            admit_rate_per_min,
            entry_credit,
            abandoned_total: 0,
            no_shows_total: load.no_shows_total,
            joined_total: 0,
            left_total: 0,
        }
    }

    /// With the counts of those who came and of those who left the queue themselves.
    pub fn with_flow(mut self, (joined_total, left_total): (u64, u64)) -> RoomStats {
        self.joined_total = joined_total;
        self.left_total = left_total;
        self
    }

    /// With the count of places ended because their visitors stopped asking.
    pub fn with_abandoned(mut self, abandoned_total: u64) -> RoomStats {
        self.abandoned_total = abandoned_total;
        self
    }
}

/// `GET .../admin/rooms/{room}`: the configuration, flattened, plus state and stats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct RoomView {
    pub id: RoomId,
    #[serde(flatten)]
    pub config: RoomConfig,
    pub paused: bool,
    /// Scheduled events, by id (as the events API shows them, without their state).
    #[serde(default, skip_serializing_if = "crate::event::Events::is_empty")]
    #[cfg_attr(feature = "service", schema(value_type = std::collections::HashMap<String, crate::event::Event>))]
    pub events: crate::event::Events,
    /// The room's own page template, when it has one (`PUT .../template`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<crate::template::TemplateRef>,
    pub stats: RoomStats,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct RoomList {
    pub rooms: Vec<RoomView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let headers = ["a=1; qg_ticket_demo=abc", "qg_pass_demo=\"def\""];
        assert_eq!(
            find_cookie(headers.iter().copied(), "qg_ticket_demo"),
            Some("abc")
        );
        assert_eq!(
            find_cookie(headers.iter().copied(), "qg_pass_demo"),
            Some("def")
        );
        assert_eq!(find_cookie(headers.iter().copied(), "qg_pass"), None);
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }

    #[test]
    fn json_is_chosen_only_when_asked_for() {
        assert!(wants_json(Some("application/json")));
        assert!(!wants_json(Some("text/html,application/json;q=0.9")));
        assert!(!wants_json(Some("*/*")));
        assert!(!wants_json(None));
    }

    #[test]
    fn join_bodies() {
        assert_eq!(JoinRequest::from_body(b"").unwrap(), JoinRequest::default());
        assert_eq!(
            JoinRequest::from_body(br#"{"user_id":"u1","extra":1}"#)
                .unwrap()
                .user_id
                .as_deref(),
            Some("u1")
        );
        let bad = [
            &br#"{"user_id":"#[..],
            br#"[1,2]"#,
            br#"{"user_id":5}"#,
            b"\xff\xfe",
        ];
        for body in bad {
            assert_eq!(
                JoinRequest::from_body(body).unwrap_err().code,
                ErrorCode::InvalidJson
            );
        }
        let long = format!(r#"{{"user_id":"{}"}}"#, "x".repeat(129));
        for body in [
            &br#"{"user_id":""}"#[..],
            br#"{"user_id":"a\nb"}"#,
            long.as_bytes(),
        ] {
            assert_eq!(
                JoinRequest::from_body(body).unwrap_err().code,
                ErrorCode::InvalidUserId
            );
        }
    }

    #[test]
    fn room_view_flattens_the_config_and_reads_back() {
        let view = RoomView {
            id: RoomId::parse("demo").unwrap(),
            config: RoomConfig::default(),
            paused: false,
            // The scheduler driving the edge learns of events from here.
            events: crate::event::Events::from([(
                "launch".to_owned(),
                crate::event::Event {
                    prequeue_at: 1,
                    start_at: 2,
                    end_at: 3,
                    shuffle: false,
                    seed: None,
                    seed_sha256: None,
                    max_active: Some(5),
                    admit_per_minute: None,
                    mode: None,
                },
            )]),
            template: Some(crate::template::TemplateRef::of("<p>ours</p>")),
            stats: RoomStats::default(),
        };
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["events"]["launch"]["max_active"], 5);
        assert_eq!(json["max_active"], 100);
        assert_eq!(json["mode"], "fifo");
        assert_eq!(json["stats"]["waiting"], 0);
        let back: RoomView = serde_json::from_value(json).unwrap();
        assert_eq!(back, view);
    }

    #[test]
    fn waiting_response_has_the_contract_fields() {
        let mut r = VisitorResponse::new(&RoomId::parse("demo").unwrap(), VisitorStatus::Waiting);
        r.position = Some(Some(3));
        r.eta_seconds = Some(None);
        r.poll_after_ms = Some(1000);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["status"], "waiting");
        assert_eq!(json["position"], 3);
        assert!(json["eta_seconds"].is_null());
        assert!(json.get("pass").is_none());
        let back: VisitorResponse = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }
}

/// The scheduler's side of the admin API, which the edge serves so that the origin's scheduler can
/// drive it: `POST {prefix}/admin/lease`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct LeaseRequest {
    pub holder: String,
    pub ttl_ms: u64,
}

/// The longest lease a scheduler may ask for, and the longest holder name.
pub const MAX_LEASE_MS: u64 = 10 * 60 * 1000;
pub const MAX_HOLDER_LEN: usize = 128;

impl LeaseRequest {
    pub fn from_body(body: &[u8]) -> Result<LeaseRequest, ApiError> {
        let req: LeaseRequest = parse_json(body)?;
        if req.holder.is_empty()
            || req.holder.len() > MAX_HOLDER_LEN
            || req.holder.chars().any(char::is_control)
        {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("holder: 1-{MAX_HOLDER_LEN} bytes without control characters"),
            ));
        }
        if req.ttl_ms == 0 || req.ttl_ms > MAX_LEASE_MS {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("ttl_ms: 1 to {MAX_LEASE_MS}"),
            ));
        }
        Ok(req)
    }
}

/// The fencing token of the lease, or 0 while another holder has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct LeaseResponse {
    pub fence: u64,
}

/// `POST {prefix}/admin/rooms/{room}/schedule`: a scheduler's batch under its lease, in one
/// call per shard. Without `orders`, the shards only raise the fence, end what expired and report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct ScheduleRequest {
    pub fence: u64,
    /// One order per shard, from [`crate::plan::plan`].
    #[serde(default)]
    pub orders: Option<Vec<ShardOrder>>,
    /// How many of each shard's next waiting visitors to list in the readings.
    #[serde(default)]
    pub heads: u64,
    /// The admission rate the scheduler measured while visitors waited (per minute).
    #[serde(default)]
    pub admit_rate_per_min: Option<f64>,
    /// The room's report minute as the scheduler's last tick left it, for the store to keep
    /// ([`crate::report`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_minute: Option<crate::report::ReportMinute>,
}

/// The most heads a schedule request may ask each shard for.
pub const MAX_HEADS: u64 = 100_000;

impl ScheduleRequest {
    pub fn from_body(body: &[u8], shards: u16) -> Result<ScheduleRequest, ApiError> {
        let req: ScheduleRequest = parse_json(body)?;
        let invalid = |m: String| Err(ApiError::new(ErrorCode::InvalidRequest, m));
        if req.heads > MAX_HEADS {
            return invalid(format!("heads: at most {MAX_HEADS}"));
        }
        if let Some(orders) = &req.orders {
            if orders.len() != usize::from(shards) {
                return invalid(format!("orders: one per shard ({shards})"));
            }
        }
        if req
            .admit_rate_per_min
            .is_some_and(|r| !r.is_finite() || r < 0.0)
        {
            return invalid("admit_rate_per_min: a rate per minute".into());
        }
        if req
            .report_minute
            .as_ref()
            .is_some_and(|m| m.minute_ms % crate::report::MINUTE_MS != 0)
        {
            return invalid("report_minute: minute_ms is the start of a minute".into());
        }
        Ok(req)
    }
}

/// What a schedule request did and found: how many the orders admitted, and each shard's
/// reading after its order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct ScheduleResponse {
    pub admitted: u64,
    pub shards: Vec<ShardReading>,
}
