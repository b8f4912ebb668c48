//! Extractors whose rejections are our error codes, and the token lookups every route shares.

use std::sync::Arc;

use futures::future::{select, Either};

use super::error::AppError;
use super::state::Service;
use crate::api::{bearer_token, find_cookie, MAX_BODY_BYTES};
use crate::error::ErrorCode;
use crate::room::RoomId;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use bytes::BytesMut;
use http_body_util::BodyExt;

/// The `{room}` path segment, validated.
pub struct RoomParam(pub RoomId);

impl<S: Send + Sync> FromRequestParts<S> for RoomParam {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::new(ErrorCode::InvalidRoomId, e.body_text()))?;
        Ok(RoomParam(RoomId::parse(&raw)?))
    }
}

/// The `{room}` and `{event}` path segments, validated.
pub struct RoomEventParams(pub RoomId, pub String);

impl<S: Send + Sync> FromRequestParts<S> for RoomEventParams {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((room, event)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::new(ErrorCode::InvalidRequest, e.body_text()))?;
        crate::event::check_event_id(&event)?;
        Ok(RoomEventParams(RoomId::parse(&room)?, event))
    }
}

/// A request body of at most [`MAX_BODY_BYTES`]; larger ones get `body_too_large`.
pub struct LimitedBody(pub Bytes);

impl FromRequest<Arc<Service>> for LimitedBody {
    type Rejection = AppError;

    async fn from_request(req: Request, s: &Arc<Service>) -> Result<Self, Self::Rejection> {
        read_within(s, req, MAX_BODY_BYTES).await.map(LimitedBody)
    }
}

/// The request's body, of at most `limit` bytes, within the deployment's body timeout.
pub async fn read_within(s: &Service, req: Request, limit: usize) -> Result<Bytes, AppError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let read = read_body(req.into_body(), declared, limit);
    match select(Box::pin(read), s.platform.sleep(s.body_timeout_ms)).await {
        Either::Left((body, _)) => body,
        Either::Right(_) => Err(AppError::new(
            ErrorCode::RequestTimeout,
            format!("the body did not arrive within {} ms", s.body_timeout_ms),
        )),
    }
}

/// The first value of `name` in a query string, decoded.
pub fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// How much of a body over the limit is still read (and thrown away) before the answer, so
/// that a proxy in front, still sending, is not cut off mid-request.
pub const DRAIN_BYTES: u64 = 1 << 20;

/// Reads a body of at most `limit` bytes. One over it is read on to its end (up to
/// [`DRAIN_BYTES`]) and refused; one declared larger than that is refused unread.
pub async fn read_body(body: Body, declared: Option<u64>, limit: usize) -> Result<Bytes, AppError> {
    let too_large = || {
        AppError::new(
            ErrorCode::BodyTooLarge,
            format!("the body is larger than {limit} bytes"),
        )
    };
    if declared.is_some_and(|n| n > DRAIN_BYTES) {
        return Err(too_large());
    }
    let mut body = body;
    let mut kept = BytesMut::new();
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            AppError::new(
                ErrorCode::InvalidRequest,
                format!("the body could not be read: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len() as u64;
        if seen <= limit as u64 {
            kept.extend_from_slice(&data);
        } else if seen > DRAIN_BYTES {
            break;
        }
    }
    if seen > limit as u64 {
        return Err(too_large());
    }
    Ok(kept.freeze())
}

/// Where a token came from: an explicit `Authorization: Bearer` header is the client's claim and
/// is refused when bad; a cookie may be stale and is then ignored where a fresh start makes sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Bearer,
    Cookie,
}

/// The bearer token, if the request has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
}

/// A cookie's value.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    find_cookie(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        name,
    )
    .filter(|v| !v.is_empty())
}

/// The bearer token if any, else the named cookie.
pub fn presented<'a>(headers: &'a HeaderMap, cookie_name: &str) -> Option<(&'a str, Source)> {
    bearer(headers)
        .map(|t| (t, Source::Bearer))
        .or_else(|| cookie(headers, cookie_name).map(|t| (t, Source::Cookie)))
}

pub fn accept(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
}
