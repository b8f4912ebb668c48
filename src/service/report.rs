//! The admin API's after-sale report: `/rooms/{room}/report`, minute by minute, as JSON or, for
//! a client that asks for `text/csv` first, as CSV. What a minute counts is the core's
//! ([`crate::report`]); the admission scheduler keeps the minutes in the store.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::AppError;
use super::extract::{query_value, RoomParam};
use super::openapi::ErrorBody;
use super::public::record_now;
use super::state::Service;
use crate::error::ErrorCode;
use crate::report::Report;

pub fn router() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new().routes(routes!(report))
}

#[utoipa::path(
    get,
    path = "/rooms/{room}/report",
    tag = "rooms",
    summary = "The room's report, minute by minute",
    description = "Joins, admissions, leaves, abandonments, no-shows, the peak of those waiting \
                   and the time in queue (p50/p90/p99) of each minute the admission scheduler \
                   ran, the last two days of them, oldest first; the current minute as it \
                   stands. `Accept: text/csv` gives the minutes as CSV.",
    params(
        crate::service::openapi::RoomPath,
        ("since_ms" = Option<u64>, Query, description = "Only the minutes that began then or later (Unix ms); all of them when absent"),
    ),
    responses(
        (status = 200, description = "The minutes and their sums", content(
            (Report = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "invalid_request: since_ms is not a number", body = ErrorBody),
        (status = 404, description = "unknown_room", body = ErrorBody),
        crate::service::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
async fn report(
    State(s): State<Arc<Service>>,
    RoomParam(room): RoomParam,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let since_ms = match query_value(uri.query(), "since_ms") {
        None => 0,
        Some(v) => v.parse::<u64>().map_err(|_| {
            AppError::new(
                ErrorCode::InvalidRequest,
                "since_ms: Unix milliseconds, a whole number",
            )
        })?,
    };
    let now = s.now();
    record_now(&s, &room, now).await?;
    let minutes = s.store.report(&room, since_ms, now).await?;
    let report = Report::new(room.as_str().to_owned(), minutes);
    if !wants_csv(&headers) {
        return Ok(Json(report).into_response());
    }
    let mut response = report.to_csv(utc_minute).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8; header=present"),
    );
    // A room id is [a-z0-9-] (RoomId::parse), so it needs no quoting beyond the quotes.
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename=\"queuegate-{}-report.csv\"",
        room.as_str()
    )) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// A minute's start, in UTC, as RFC 3339 to the second.
fn utc_minute(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Whether `Accept` ranks `text/csv` above JSON (the answer when it says nothing, or ties).
fn wants_csv(headers: &HeaderMap) -> bool {
    let ranges: Vec<(String, f32)> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|range| {
            let mut parts = range.split(';');
            let media = parts.next()?.trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            Some((media, q))
        })
        .collect();
    // The most specific range that matches gives the quality (RFC 9110, 12.5.1).
    let quality = |media: &str| {
        let kind = media.split('/').next().unwrap_or("");
        let any_sub = format!("{kind}/*");
        [media, any_sub.as_str(), "*/*"]
            .iter()
            .find_map(|want| ranges.iter().find(|(m, _)| m == want).map(|(_, q)| *q))
            .unwrap_or(0.0)
    };
    let csv = quality("text/csv");
    csv > 0.0 && csv > quality("application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn csv_is_given_to_those_who_rank_it_first() {
        assert!(wants_csv(&accept("text/csv")));
        assert!(wants_csv(&accept("text/csv, application/json;q=0.5")));
        assert!(wants_csv(&accept("text/*")));
        assert!(!wants_csv(&HeaderMap::new()));
        assert!(!wants_csv(&accept("*/*")));
        assert!(!wants_csv(&accept("application/json, text/csv")));
        assert!(!wants_csv(&accept("text/csv;q=0, */*")));
        assert!(!wants_csv(&accept("text/html")));
    }

    #[test]
    fn a_minute_is_named_in_utc() {
        assert_eq!(utc_minute(1_800_000_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(utc_minute(0), "1970-01-01T00:00:00Z");
    }
}
