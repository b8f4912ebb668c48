//! `GET /rooms/{room}/stream`: the visitor's answer pushed as server-sent events whenever it
//! changes ([`crate::stream`] decides what to write and when). Each tick reads the answer the way
//! a status call does: on Redis a waiting visitor's place is answered from the instance's mirror
//! (after the versions read every request in flight shares), at the edge from the shard summaries
//! the isolate reads once a second for all its visitors: a stream makes no store call of its own
//! per update.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::client::Client;
use super::error::AppError;
use super::extract::RoomParam;
use super::openapi::ErrorBody;
use super::public::{add_no_store_and_cookies, presented_ticket, status_answer};
use super::state::Service;
use crate::error::ErrorCode;
use crate::room::RoomId;
use crate::stream::{UpdateStream, TICK_MS};

/// The most streams one process (or isolate) holds open; more are refused with 429
/// `too_many_streams`, and the waiting page polls instead.
pub const MAX_STREAMS: u64 = 20_000;

/// The most streams one visitor (one place: a ticket and its renewals) holds open at once, in
/// as many tabs: one client's ticket cannot take the streams of many.
pub const MAX_STREAMS_PER_VISITOR: u32 = 4;

/// How many streams are open, in all and per visitor.
#[derive(Debug, Default)]
pub struct OpenStreams(Mutex<Counts>);

#[derive(Debug, Default)]
struct Counts {
    total: u64,
    by_visitor: HashMap<String, u32>,
}

/// One open stream, counted until it is dropped (the client went away, or the stream ended).
struct Held {
    s: Arc<Service>,
    visitor: String,
}

impl Held {
    /// Counts a stream for `visitor` (room and ticket id), or the 429 that refuses it.
    fn open(s: &Arc<Service>, visitor: String) -> Result<Held, AppError> {
        let mut counts = s.streams.0.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= MAX_STREAMS {
            return Err(AppError::new(
                ErrorCode::TooManyStreams,
                format!("this server holds {MAX_STREAMS} streams: poll the status instead"),
            ));
        }
        let open = counts.by_visitor.entry(visitor.clone()).or_default();
        if *open >= MAX_STREAMS_PER_VISITOR {
            return Err(AppError::new(
                ErrorCode::TooManyStreams,
                format!(
                    "this visitor has {MAX_STREAMS_PER_VISITOR} streams open: poll the status instead"
                ),
            ));
        }
        *open += 1;
        counts.total += 1;
        s.metrics.streams(counts.total);
        Ok(Held {
            s: s.clone(),
            visitor,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut counts = self.s.streams.0.lock().unwrap_or_else(|e| e.into_inner());
        counts.total -= 1;
        if let Some(open) = counts.by_visitor.get_mut(&self.visitor) {
            *open -= 1;
            if *open == 0 {
                counts.by_visitor.remove(&self.visitor);
            }
        }
        self.s.metrics.streams(counts.total);
    }
}

/// What a stream carries from one tick to the next.
struct Ticking {
    held: Held,
    room: RoomId,
    client: Client,
    /// The newest ticket: each answer renews it, so the stream never outlives the one it holds.
    token: String,
    updates: UpdateStream,
    /// What to write before the next read.
    pending: Option<String>,
}

#[utoipa::path(
    get,
    path = "/rooms/{room}/stream",
    tag = "visitors",
    summary = "The status, pushed as server-sent events",
    params(crate::service::openapi::RoomPath),
    responses(
        (status = 200, description = "text/event-stream: the visitor answer as an event whenever it changes (id: a digest of it; Last-Event-ID resumes), event: heartbeat after 15 s of silence, event: error with the error JSON when the ticket stops being good", body = String, content_type = "text/event-stream"),
        (status = 429, description = "too_many_streams: the server's 20,000, or this visitor's 4; poll the status instead", body = ErrorBody),
        crate::service::openapi::TicketErrors,
    ),
    security(("ticket" = []))
)]
pub async fn stream(
    State(s): State<Arc<Service>>,
    RoomParam(room): RoomParam,
    client: Client,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let now = s.now();
    let token = presented_ticket(&headers, &room);
    // A stream that cannot begin (no such room, a bad ticket) is the status call's error.
    let (record, answer) = status_answer(&s, &room, &client, token, now).await?;
    let visitor = format!("{room}/{}", answer.body.ticket_id.as_deref().unwrap_or(""));
    let held = Held::open(&s, visitor)?;
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let mut updates = UpdateStream::new(last_event_id, record.config.ticket_ttl_ms(), now);
    let mut pending = updates.opening();
    if let Some(event) = updates.on_answer(&answer.body, now) {
        pending.push_str(&event);
    }
    let ticking = Ticking {
        held,
        room,
        client,
        token: answer
            .body
            .ticket
            .clone()
            .or(token.map(str::to_owned))
            .unwrap_or_default(),
        updates,
        pending: Some(pending),
    };
    let body = futures::stream::unfold(ticking, next_frame);
    let mut response = (StatusCode::OK, Body::from_stream(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    // nginx and other proxies in front must pass each event on as it comes.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    add_no_store_and_cookies(headers, &answer.set_cookies);
    Ok(response)
}

/// The next piece of the stream: waits a tick at a time until there is something to write, or
/// the stream is over.
async fn next_frame(mut t: Ticking) -> Option<(Result<Bytes, std::convert::Infallible>, Ticking)> {
    loop {
        if let Some(frame) = t.pending.take() {
            return Some((Ok(Bytes::from(frame)), t));
        }
        let s = t.held.s.clone();
        if t.updates.is_over(s.now()) {
            return None;
        }
        s.platform.sleep(TICK_MS).await;
        let now = s.now();
        t.pending = match status_answer(&s, &t.room, &t.client, Some(&t.token), now).await {
            Ok((_, answer)) => {
                if let Some(renewed) = &answer.body.ticket {
                    t.token.clone_from(renewed);
                }
                t.updates.on_answer(&answer.body, now)
            }
            Err(err) if err.code().is_retryable() => t.updates.on_unavailable(now),
            Err(err) => Some(t.updates.on_error(&err.0.to_json())),
        };
    }
}
