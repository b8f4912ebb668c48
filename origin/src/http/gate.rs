//! The gate: every request outside the API prefix. A path no room protects goes straight to the
//! upstream; on a protected path a live pass goes through, and everyone else gets the waiting
//! page (joining the queue if they have no place yet), or goes straight in when the room has a
//! free slot and nobody waits.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use queuegate::api::{pass_cookie_name, ticket_cookie_name, wants_json};
use queuegate::page::{unavailable_page, waiting_page};
use queuegate::visitor::Answer;
use queuegate::{ErrorCode, Pass, Place, RoomId};

use super::error::{AppError, RETRY_AFTER_S};
use super::extract::{accept, cookie, Source};
use super::proxy::{forward, Visitor};
use super::public::{add_no_store_and_cookies, is_admitted, join_room};
use crate::config::UnavailablePolicy;
use crate::server::{AppState, Shared};

pub async fn gate(State(s): State<AppState>, req: Request) -> Response {
    let room = s.routes.current().room_for(req.uri().path()).cloned();
    let Some(room) = room else {
        s.metrics.gate(None, "unprotected");
        return forward(&s, req, None, &[]).await;
    };
    let json = wants_json(accept(req.headers()));
    match decide(&s, &room, req.headers()).await {
        Ok(Decision::Unprotected) => forward(&s, req, None, &[]).await,
        Ok(Decision::Through { place, cookies }) => {
            let visitor = place.map(|place| Visitor { room: &room, place });
            forward(&s, req, visitor, &cookies).await
        }
        Ok(Decision::Wait(answer)) => waiting_response(&s, &room, answer, json),
        Err(err) if err.0.code == ErrorCode::StoreUnavailable => match s.on_store_unavailable {
            UnavailablePolicy::Open => {
                s.metrics.gate(Some(&room), "open");
                forward(&s, req, None, &[]).await
            }
            UnavailablePolicy::Closed => {
                s.metrics.gate(Some(&room), "closed");
                unavailable_response(err, json)
            }
        },
        Err(err) => err.into_response(),
    }
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

async fn decide(s: &Shared, room: &RoomId, headers: &HeaderMap) -> Result<Decision, AppError> {
    let Some(record) = s.store.room(room).await? else {
        return Ok(Decision::Unprotected);
    };
    let now = s.now();
    let ctx = s.context(&record);

    if let Some(pass) = cookie(headers, &pass_cookie_name(room))
        .and_then(|token| Pass::decode(token, &s.keys, room, now).ok())
    {
        let renew = pass.wants_renewal(now);
        if let Some(expires_at) = s.store.session(room, pass.place, renew, now).await? {
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
    let (answer, outcome) = join_room(s, &record, None, ticket, now).await?;
    s.metrics.join(room, outcome);
    if is_admitted(&answer) {
        s.metrics.gate(Some(room), "entered");
        return Ok(Decision::Through {
            place: answer.pass.as_ref().map(|p| p.place),
            cookies: answer.set_cookies,
        });
    }
    s.metrics.gate(Some(room), "waiting");
    Ok(Decision::Wait(answer))
}

/// The store is away and the room fails closed: a page that retries by itself, or the error.
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
    response
}

fn waiting_response(s: &Shared, room: &RoomId, answer: Answer, json: bool) -> Response {
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
