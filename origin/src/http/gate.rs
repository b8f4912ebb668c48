//! The gate: every request outside the API prefix. A path no room protects goes straight to the
//! upstream; on a protected path a live pass goes through, and everyone else gets the waiting
//! page (joining the queue if they have no place yet), or goes straight in when the room has a
//! free slot and nobody waits.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use queuegate::api::{pass_cookie_name, ticket_cookie_name, wants_json};
use queuegate::page::WaitingPage;
use queuegate::visitor::Answer;
use queuegate::{Pass, RoomId};

use super::error::AppError;
use super::extract::{accept, cookie, Source};
use super::proxy::{forward, Visitor};
use super::public::{add_no_store_and_cookies, is_admitted, join_room};
use crate::server::{AppState, Shared};

pub async fn gate(State(s): State<AppState>, req: Request) -> Response {
    let room = s.routes.current().room_for(req.uri().path()).cloned();
    let Some(room) = room else {
        s.metrics.gate(None, "unprotected");
        return forward(&s, req, None, &[]).await;
    };
    match gated(&s, &room, req).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn gated(s: &Shared, room: &RoomId, req: Request) -> Result<Response, AppError> {
    let Some(record) = s.store.room(room).await? else {
        // The room went away after the route table was built: the path is unprotected now.
        return Ok(forward(s, req, None, &[]).await);
    };
    let now = s.now();
    let ctx = s.context(&record);

    if let Some(pass) = cookie(req.headers(), &pass_cookie_name(room))
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
            let visitor = Visitor {
                room,
                place: pass.place,
            };
            return Ok(forward(s, req, Some(visitor), &cookies).await);
        }
    }

    let ticket = cookie(req.headers(), &ticket_cookie_name(room)).map(|t| (t, Source::Cookie));
    let (answer, outcome) = join_room(s, &record, None, ticket, now).await?;
    s.metrics.join(room, outcome);
    if is_admitted(&answer) {
        s.metrics.gate(Some(room), "entered");
        let place = answer.pass.as_ref().map(|p| p.place);
        let visitor = place.map(|place| Visitor { room, place });
        return Ok(forward(s, req, visitor, &answer.set_cookies).await);
    }
    s.metrics.gate(Some(room), "waiting");
    Ok(waiting_response(
        s,
        room,
        answer,
        wants_json(accept(req.headers())),
    ))
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
        let status_url = format!("{}/rooms/{}/status", s.prefix, room);
        let page = WaitingPage {
            room,
            ticket_id: answer.body.ticket_id.as_deref().unwrap_or(""),
            position: answer.body.position.unwrap_or(0),
            eta_seconds: answer.body.eta_seconds.flatten(),
            poll_after_ms: answer.body.poll_after_ms.unwrap_or(1000),
            status_url: &status_url,
        };
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            page.render(),
        )
            .into_response()
    };
    let headers = response.headers_mut();
    add_no_store_and_cookies(headers, &answer.set_cookies);
    headers.insert("x-queuegate-status", HeaderValue::from_static("waiting"));
    response
}
