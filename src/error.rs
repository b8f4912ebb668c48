//! Error codes shared by the edge and the origin: a stable string, an HTTP status and a JSON body.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code. Clients match on [`ErrorCode::as_str`]; the set can grow,
/// so match with a wildcard arm.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The body is not valid JSON, or not the JSON object the endpoint takes.
    InvalidJson,
    /// The body is larger than the server accepts.
    BodyTooLarge,
    /// The body did not arrive in time.
    RequestTimeout,
    /// The server holds as many update streams as it takes: poll the status instead.
    TooManyStreams,
    /// A room id that is not 1-64 characters of `a-z`, `0-9`, `-`, `_`.
    InvalidRoomId,
    /// A room configuration value is missing, of the wrong type or out of range.
    InvalidConfig,
    /// A room's page template that does not compile, or fails to render one of the pages: the
    /// body says on which line (`line`) and what is wrong (`detail`).
    InvalidTemplate,
    /// A body of a type the endpoint does not take (a page template is `text/html`).
    UnsupportedMediaType,
    /// A `user_id` that is empty, too long or has control characters.
    InvalidUserId,
    /// A `user_token` that is not an HS256 JWT signed with one of the application's keys, or has
    /// expired.
    InvalidUserToken,
    /// A join names a user id that already holds a place, without that place's ticket or a user
    /// token proving the user.
    UserAlreadyQueued,
    /// A request field other than the above is out of range.
    InvalidRequest,
    /// A request path whose meaning depends on the server (an encoded `/` or `\`, a `..` above
    /// the root), or a request target that is not a path.
    InvalidPath,
    /// A join from a client (an IPv4 address or an IPv6 /64) over its room's join limit; retry
    /// after the `Retry-After` delay.
    TooManyJoins,
    /// The room asks a joining client to pass a challenge first: the body carries it
    /// (`challenge`).
    ChallengeRequired,
    /// A challenge answer that is wrong, expired, for another client, or used before.
    ChallengeFailed,
    /// The room is invite-only and the join brought no good invite.
    InviteRequired,
    /// The invite was good, and has been used.
    InviteUsed,
    /// The room takes no joins (its mode is `closed`).
    RoomClosed,
    /// No such room.
    UnknownRoom,
    /// No ticket was presented where one is needed.
    TicketRequired,
    /// The ticket is malformed, forged or altered.
    InvalidTicket,
    /// The ticket's signature is good but it has expired.
    TicketExpired,
    /// The ticket was issued for another room.
    TicketWrongRoom,
    /// The pass is malformed, forged or altered.
    InvalidPass,
    /// The pass's signature is good but it has expired.
    PassExpired,
    /// The pass was issued for another room.
    PassWrongRoom,
    /// No visitor has that ticket id.
    UnknownTicket,
    /// The admin API needs `Authorization: Bearer <admin key>`.
    Unauthorized,
    /// A change that the room's current state does not allow (such as changing its shard count).
    Conflict,
    /// An admission from a scheduler whose lease a newer scheduler has taken over.
    Fenced,
    /// No route at that path.
    NotFound,
    /// The route exists but not for this method.
    MethodNotAllowed,
    /// The queue store cannot be reached; retry after the `Retry-After` delay.
    StoreUnavailable,
    /// The application behind the gate could not be reached.
    UpstreamUnavailable,
    /// The room's siteverify provider could not be reached, did not answer in time, or gave no
    /// answer it could read: the widget's response was neither accepted nor refused. Retry
    /// after the `Retry-After` delay.
    ChallengeUnavailable,
    /// A bug: never expected.
    Internal,
}

impl ErrorCode {
    /// Every code, for documentation and tests.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::InvalidJson,
        ErrorCode::BodyTooLarge,
        ErrorCode::RequestTimeout,
        ErrorCode::TooManyStreams,
        ErrorCode::InvalidRoomId,
        ErrorCode::InvalidConfig,
        ErrorCode::InvalidTemplate,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::InvalidUserId,
        ErrorCode::InvalidUserToken,
        ErrorCode::UserAlreadyQueued,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidPath,
        ErrorCode::TooManyJoins,
        ErrorCode::ChallengeRequired,
        ErrorCode::ChallengeFailed,
        ErrorCode::InviteRequired,
        ErrorCode::InviteUsed,
        ErrorCode::RoomClosed,
        ErrorCode::UnknownRoom,
        ErrorCode::TicketRequired,
        ErrorCode::InvalidTicket,
        ErrorCode::TicketExpired,
        ErrorCode::TicketWrongRoom,
        ErrorCode::InvalidPass,
        ErrorCode::PassExpired,
        ErrorCode::PassWrongRoom,
        ErrorCode::UnknownTicket,
        ErrorCode::Unauthorized,
        ErrorCode::Conflict,
        ErrorCode::Fenced,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::StoreUnavailable,
        ErrorCode::UpstreamUnavailable,
        ErrorCode::ChallengeUnavailable,
        ErrorCode::Internal,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::TooManyStreams => "too_many_streams",
            ErrorCode::InvalidRoomId => "invalid_room_id",
            ErrorCode::InvalidConfig => "invalid_config",
            ErrorCode::InvalidTemplate => "invalid_template",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::InvalidUserId => "invalid_user_id",
            ErrorCode::InvalidUserToken => "invalid_user_token",
            ErrorCode::UserAlreadyQueued => "user_already_queued",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::TooManyJoins => "too_many_joins",
            ErrorCode::ChallengeRequired => "challenge_required",
            ErrorCode::ChallengeFailed => "challenge_failed",
            ErrorCode::InviteRequired => "invite_required",
            ErrorCode::InviteUsed => "invite_used",
            ErrorCode::RoomClosed => "room_closed",
            ErrorCode::UnknownRoom => "unknown_room",
            ErrorCode::TicketRequired => "ticket_required",
            ErrorCode::InvalidTicket => "invalid_ticket",
            ErrorCode::TicketExpired => "ticket_expired",
            ErrorCode::TicketWrongRoom => "ticket_wrong_room",
            ErrorCode::InvalidPass => "invalid_pass",
            ErrorCode::PassExpired => "pass_expired",
            ErrorCode::PassWrongRoom => "pass_wrong_room",
            ErrorCode::UnknownTicket => "unknown_ticket",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Fenced => "fenced",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::ChallengeUnavailable => "challenge_unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidJson
            | ErrorCode::InvalidRoomId
            | ErrorCode::InvalidUserId
            | ErrorCode::InvalidRequest
            | ErrorCode::InvalidPath => 400,
            ErrorCode::InvalidConfig | ErrorCode::InvalidTemplate => 422,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::BodyTooLarge => 413,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::TicketRequired
            | ErrorCode::InvalidTicket
            | ErrorCode::TicketExpired
            | ErrorCode::InvalidPass
            | ErrorCode::PassExpired
            | ErrorCode::InvalidUserToken
            | ErrorCode::Unauthorized => 401,
            ErrorCode::TicketWrongRoom | ErrorCode::PassWrongRoom => 403,
            ErrorCode::UnknownRoom | ErrorCode::UnknownTicket | ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::TooManyJoins | ErrorCode::TooManyStreams => 429,
            ErrorCode::ChallengeRequired
            | ErrorCode::ChallengeFailed
            | ErrorCode::InviteRequired
            | ErrorCode::InviteUsed
            | ErrorCode::RoomClosed => 403,
            ErrorCode::Conflict | ErrorCode::Fenced | ErrorCode::UserAlreadyQueued => 409,
            ErrorCode::UpstreamUnavailable => 502,
            ErrorCode::StoreUnavailable | ErrorCode::ChallengeUnavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// Whether the same request may succeed later without change.
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::StoreUnavailable
                | ErrorCode::UpstreamUnavailable
                | ErrorCode::ChallengeUnavailable
        )
    }

    pub fn parse(code: &str) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as the API reports it: `{"error":{"code":"...","message":"..."}}`, with any fields
/// the error carries beside it (such as the `position` of a place a user id already holds).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            extra: serde_json::Map::new(),
        }
    }

    /// The error with `value` beside it in the body, as `name`.
    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(name.to_owned(), value.into());
        self
    }

    pub fn status(&self) -> u16 {
        self.code.http_status()
    }

    pub fn to_body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str().to_owned(),
                message: self.message.clone(),
            },
            extra: self.extra.clone(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.to_body()).unwrap_or_else(|_| {
            r#"{"error":{"code":"internal","message":"error body could not be encoded"}}"#.into()
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    #[serde(flatten, default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {code}");
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
        }
    }

    #[test]
    fn only_infrastructure_errors_are_5xx() {
        for code in ErrorCode::ALL {
            let server_side = matches!(
                code,
                ErrorCode::StoreUnavailable
                    | ErrorCode::UpstreamUnavailable
                    | ErrorCode::ChallengeUnavailable
                    | ErrorCode::Internal
            );
            assert_eq!(code.http_status() >= 500, server_side, "{code}");
        }
    }

    #[test]
    fn body_has_the_documented_shape() {
        let err = ApiError::new(ErrorCode::UnknownRoom, "no room \"x\"");
        let value: serde_json::Value = serde_json::from_str(&err.to_json()).unwrap();
        assert_eq!(value["error"]["code"], "unknown_room");
        assert_eq!(value["error"]["message"], "no room \"x\"");
        assert_eq!(err.status(), 404);
    }
}
