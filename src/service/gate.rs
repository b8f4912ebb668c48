//! The gate: every request outside the API prefix. A path no room protects goes straight to the
//! upstream; on a protected path a live pass goes through, and everyone else gets the waiting
//! page (joining the queue if they have no place yet), or goes straight in when the room has a
//! free slot and nobody waits. Only a page navigation joins: any other request without a place
//! (an image, a fetch, a HEAD, a prefetch; see [`super::navigation`]) gets the waiting answer
//! and no place. While the store cannot be reached, the room's outage policy decides.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::access::Credentials;
use super::client::Client;
use super::error::{AppError, RETRY_AFTER_S};
use super::extract::{accept, cookie, Source};
use super::forward::{forward, Visitor};
use super::metrics::JoinOutcome;
use super::navigation::{arrival, Arrival};
use super::public::{add_no_store_and_cookies, join_room, kept_place, User};
use super::state::{Service, UnavailablePolicy};
use crate::api::{
    pass_cookie_name, ticket_cookie_name, wants_json, VisitorResponse, VisitorStatus,
};
use crate::error::ErrorCode;
use crate::page::{too_many_joins_page, unavailable_page, waiting_page};
use crate::room::RoomId;
use crate::token::{Pass, Place};
use crate::visitor::Answer;

pub async fn gate(State(s): State<Arc<Service>>, req: Request) -> Response {
    let now = s.now();
    let json = wants_json(accept(req.headers()));
    let table = match s.store.route_table(now).await {
        Ok(table) => table,
        // Which room the path belongs to is unknown: every path is treated as protected.
        Err(err) => return outage(&s, None, err.into(), req, json).await,
    };
    let Some(room) = table
        .room_for(&crate::path::match_key(req.uri().path()))
        .cloned()
    else {
        s.metrics.gate(None, "unprotected");
        return forward(&s, req, None, &[]).await;
    };
    let client = req
        .extensions()
        .get::<Client>()
        .cloned()
        .unwrap_or_default();
    let arrival = arrival(req.method(), req.headers());
    match decide(&s, &room, &client, req.headers(), arrival, now).await {
        Ok(Decision::Unprotected) => forward(&s, req, None, &[]).await,
        Ok(Decision::Through { place, cookies }) => {
            let visitor = place.map(|place| Visitor { room: &room, place });
            forward(&s, req, visitor, &cookies).await
        }
        Ok(Decision::Wait(answer)) => waiting_response(&s, &room, answer, json),
        Err(err) if err.code() == ErrorCode::StoreUnavailable => {
            outage(&s, Some(&room), err, req, json).await
        }
        Err(err) if err.code() == ErrorCode::TooManyJoins && !json => too_many_joins(err),
        Err(err) => err.into_response(),
    }
}

/// A browser over its room's join limit: the same 429 and `Retry-After` as the JSON answer,
/// as a page that tries again by itself.
fn too_many_joins(err: AppError) -> Response {
    let mut response = err.into_response();
    let retry_s = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(RETRY_AFTER_S);
    *response.body_mut() = axum::body::Body::from(too_many_joins_page(retry_s));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        "x-queuegate-status",
        HeaderValue::from_static("too_many_joins"),
    );
    response
}

/// What the gate does with a request on a protected path.
enum Decision {
    /// The room is gone: the path is not protected any more.
    Unprotected,
    /// Let it through, for this visitor, setting these cookies.
    Through {
        place: Option<Place>,
        cookies: Vec<String>,
    },
    /// Show the waiting page.
    Wait(Answer),
}

async fn decide(
    s: &Service,
    room: &RoomId,
    client: &Client,
    headers: &HeaderMap,
    arrival: Arrival,
    now: u64,
) -> Result<Decision, AppError> {
    let Some(record) = s.store.room(room, now).await? else {
        return Ok(Decision::Unprotected);
    };
    let ctx = s.context(&record, client);

    if let Some(pass) = cookie(headers, &pass_cookie_name(room))
        .and_then(|token| Pass::decode(token, &s.keys, room, now).ok())
        .filter(|pass| super::public::is_of_room(&record, pass.place))
    {
        let renew = pass.wants_renewal(now);
        if let Some(expires_at) = s.store.session(&record, pass.place, renew, now).await? {
            let cookies = if renew {
                let renewed = ctx.new_pass(pass.place, expires_at, now);
                vec![ctx.pass_cookie(&renewed.encode(&s.keys), expires_at, now)]
            } else {
                Vec::new()
            };
            s.metrics.gate(Some(room), "passed");
            return Ok(Decision::Through {
                place: Some(pass.place),
                cookies,
            });
        }
    }

    let ticket = cookie(headers, &ticket_cookie_name(room)).map(|t| (t, Source::Cookie));
    let answer = match arrival {
        Arrival::Navigation => {
            let (answer, outcome) = join_room(
                s,
                &record,
                client,
                User::Anyone,
                Credentials::default(),
                ticket,
                now,
            )
            .await?;
            s.metrics.join(room, outcome);
            answer
        }
        // Not a page navigation: answered for the place it holds, never given one.
        Arrival::Held(reason) => match kept_place(s, &record, client, ticket, now).await? {
            Some(answer) => {
                s.metrics.join(room, JoinOutcome::Kept);
                answer
            }
            None => {
                s.metrics.held(room, reason.as_str());
                s.metrics.gate(Some(room), "held");
                return Ok(Decision::Wait(no_place(room)));
            }
        },
    };
    if let Some(pass) = &answer.pass {
        s.metrics.gate(Some(room), "entered");
        return Ok(Decision::Through {
            place: Some(pass.place),
            cookies: answer.set_cookies,
        });
    }
    s.metrics.gate(Some(room), "waiting");
    Ok(Decision::Wait(answer))
}

/// The waiting answer for a request that holds no place and gets none: waiting, with no ticket,
/// no position and no cookie.
fn no_place(room: &RoomId) -> Answer {
    let mut body = VisitorResponse::new(room, VisitorStatus::Waiting);
    body.poll_after_ms = Some(crate::estimate::MIN_POLL_MS);
    Answer {
        body,
        set_cookies: Vec::new(),
        pass: None,
    }
}

/// The store is away: the policy lets everyone through, or the gate stays closed with a page
/// that retries by itself (or the error, for JSON clients).
async fn outage(
    s: &Service,
    room: Option<&RoomId>,
    err: AppError,
    req: Request,
    json: bool,
) -> Response {
    tracing::warn!(error = %err.0, "the store is unavailable at the gate");
    match s.on_store_unavailable {
        UnavailablePolicy::Open => {
            s.metrics.gate(room, "open");
            forward(s, req, None, &[]).await
        }
        UnavailablePolicy::Closed => {
            s.metrics.gate(room, "closed");
            unavailable_response(err, json)
        }
    }
}

fn unavailable_response(err: AppError, json: bool) -> Response {
    if json {
        return err.into_response();
    }
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        unavailable_page(RETRY_AFTER_S),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
    headers.insert(
        "x-queuegate-status",
        HeaderValue::from_static("unavailable"),
    );
    response.extensions_mut().insert(super::error::Fault(err.0));
    response
}

fn waiting_response(s: &Service, room: &RoomId, answer: Answer, json: bool) -> Response {
    let mut response = if json {
        let body = serde_json::to_string(&answer.body).unwrap_or_default();
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    } else {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            waiting_page(room, &answer.body, &s.prefix),
        )
            .into_response()
    };
    let headers = response.headers_mut();
    add_no_store_and_cookies(headers, &answer.set_cookies);
    headers.insert("x-queuegate-status", HeaderValue::from_static("waiting"));
    response
}
