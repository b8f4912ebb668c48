//! The public API: join, status, leave; and joining with a presented ticket, which the gate
//! shares.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::access::{may_join, record_place, Credentials, Verdict};
use super::client::Client;
use super::error::AppError;
use super::extract::{presented, LimitedBody, RoomParam, Source};
use super::metrics::JoinOutcome;
use super::openapi::ErrorBody;
use super::state::Service;
use crate::api::{
    pass_cookie_name, ticket_cookie_name, JoinRequest, VisitorResponse, VisitorStatus,
};
use crate::error::{ApiError, ErrorCode};
use crate::room::{Mode, RoomId, RoomRecord};
use crate::token::{looks_like_pass, Pass, Place, Ticket};
use crate::visitor::{Answer, VisitorState};

#[utoipa::path(
    post,
    path = "/rooms/{room}/join",
    tag = "visitors",
    summary = "Join the room",
    params(crate::service::openapi::RoomPath),
    request_body(content = crate::api::JoinRequest, description = "Optional: a user id or user token, a challenge answer, an invite", content_type = "application/json"),
    responses(
        (status = 200, description = "The visitor answer: waiting (with a ticket and place), admitted, or full", body = crate::api::VisitorResponse),
        (status = 400, description = "invalid_json, invalid_user_id, invalid_request", body = ErrorBody),
        (status = 401, description = "invalid_user_token", body = ErrorBody),
        (status = 403, description = "challenge_required (the challenge beside the error), challenge_failed, invite_required, invite_used, room_closed", body = ErrorBody),
        (status = 404, description = "unknown_room", body = ErrorBody),
        (status = 408, description = "request_timeout", body = ErrorBody),
        (status = 409, description = "user_already_queued", body = ErrorBody),
        (status = 413, description = "body_too_large", body = ErrorBody),
        (status = 429, description = "too_many_joins (Retry-After, retry_after_s)", body = ErrorBody),
        (status = 503, description = "store_unavailable, challenge_unavailable (Retry-After)", body = ErrorBody),
    ),
    security(("ticket" = []))
)]
pub async fn join(
    State(s): State<Arc<Service>>,
    RoomParam(room): RoomParam,
    client: Client,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> Result<Response, AppError> {
    let now = s.now();
    let request = JoinRequest::from_body(&body)?;
    let record = in_effect(&s, &room, now).await?;
    let user = user_of(&s, &request, now)?;
    let presented = presented(&headers, &ticket_cookie_name(&room));
    let credentials = Credentials {
        challenge: request.challenge.as_ref(),
        invite: request.invite.as_deref(),
        navigation: false,
    };
    let (answer, outcome) =
        join_room(&s, &record, &client, user, credentials, presented, now).await?;
    s.metrics.join(&room, outcome);
    Ok(visitor_response(answer))
}

/// When a client told the line is full may try again.
pub const FULL_RETRY_MS: u64 = 30_000;

/// Who a join is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum User {
    /// Nobody in particular: a new place each time (unless a live ticket is presented).
    Anyone,
    /// A user id the client says: one place per id, handed back only with its ticket.
    Claimed(String),
    /// A user id the application signed: the place is handed back on any device.
    Proven(String),
}

impl User {
    fn id(&self) -> Option<&str> {
        match self {
            User::Anyone => None,
            User::Claimed(id) | User::Proven(id) => Some(id),
        }
    }
}

/// The user a join names: a user token's, checked against the application's keys, else the
/// plain user id.
fn user_of(s: &Service, request: &JoinRequest, now: u64) -> Result<User, AppError> {
    let Some(token) = &request.user_token else {
        return Ok(request.user_id.clone().map_or(User::Anyone, User::Claimed));
    };
    let keys = s.app_keys.as_ref().ok_or_else(|| {
        AppError::new(
            ErrorCode::InvalidUserToken,
            "this deployment has no application keys (QUEUEGATE_APP_KEYS) to check user tokens",
        )
    })?;
    let user = crate::apptoken::verify_user(token, keys, now)?;
    if request.user_id.as_ref().is_some_and(|id| *id != user) {
        return Err(AppError::new(
            ErrorCode::InvalidRequest,
            "user_id and the user token name different users",
        ));
    }
    Ok(User::Proven(user))
}

#[utoipa::path(
    get,
    path = "/rooms/{room}/status",
    tag = "visitors",
    summary = "Where the ticket holder stands",
    params(crate::service::openapi::RoomPath),
    responses(
        (status = 200, description = "The visitor answer; once admitted, with the pass", body = crate::api::VisitorResponse),
        crate::service::openapi::TicketErrors,
    ),
    security(("ticket" = []))
)]
pub async fn status(
    State(s): State<Arc<Service>>,
    RoomParam(room): RoomParam,
    client: Client,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let now = s.now();
    let token = presented_ticket(&headers, &room);
    let (_, answer) = status_answer(&s, &room, &client, token, now).await?;
    Ok(visitor_response(answer))
}

/// The ticket a status call or a stream presents, as a bearer token or in the room's cookie.
pub fn presented_ticket<'a>(headers: &'a HeaderMap, room: &RoomId) -> Option<&'a str> {
    presented(headers, &ticket_cookie_name(room)).map(|(token, _)| token)
}

/// Where the holder of ticket `token` stands at `now`, as `status` answers it (renewing the
/// ticket), with the room as it is in effect. A room that does not exist is told before a
/// missing ticket.
pub async fn status_answer(
    s: &Service,
    room: &RoomId,
    client: &Client,
    token: Option<&str>,
    now: u64,
) -> Result<(RoomRecord, Answer), AppError> {
    let record = in_effect(s, room, now).await?;
    let token = token.ok_or_else(|| {
        AppError::new(
            ErrorCode::TicketRequired,
            "send the ticket in the room's ticket cookie or as Authorization: Bearer",
        )
    })?;
    let ticket = Ticket::decode(token, &s.keys, room, now).map_err(|e| e.for_ticket())?;
    let state = visit(s, &record, &ticket, now).await?;
    let answer = s
        .context(&record, client)
        .answer(&ticket, state, false, now);
    Ok((record, answer))
}

#[utoipa::path(
    post,
    path = "/rooms/{room}/leave",
    tag = "visitors",
    summary = "Leave the queue or the application (idempotent)",
    params(crate::service::openapi::RoomPath),
    responses(
        (status = 200, description = "status left (or expired for a place the room never gave out)", body = crate::api::VisitorResponse),
        crate::service::openapi::TicketErrors,
    ),
    security(("ticket" = []))
)]
pub async fn leave(
    State(s): State<Arc<Service>>,
    RoomParam(room): RoomParam,
    client: Client,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let now = s.now();
    let record = in_effect(&s, &room, now).await?;
    let (place, decoy) = presented_place(&s, &record, &headers, now)?;
    // A place in the infinite queue is held by no store: leaving it touches nothing (its place
    // may be a real visitor's).
    let state = match decoy {
        true => VisitorState::Left,
        false => match end(&s, &record, place, now).await? {
            Some(_) => VisitorState::Left,
            None => VisitorState::Expired,
        },
    };
    let mut body = VisitorResponse::new(&room, state.status());
    body.ticket_id = Some(place.ticket_id());
    Ok(visitor_response(Answer {
        body,
        set_cookies: s.context(&record, &client).clear_cookies().to_vec(),
        pass: None,
    }))
}

/// The room, or `unknown_room`.
pub async fn record(s: &Service, room: &RoomId, now: u64) -> Result<RoomRecord, AppError> {
    s.store
        .room(room, now)
        .await?
        .ok_or_else(|| unknown_room(room))
}

fn unknown_room(room: &RoomId) -> AppError {
    AppError::new(
        ErrorCode::UnknownRoom,
        format!("no room {:?}", room.as_str()),
    )
}

/// [`record`] as the store holds it now, past this instance's copy ([`Store::room_now`]).
pub async fn record_now(s: &Service, room: &RoomId, now: u64) -> Result<RoomRecord, AppError> {
    s.store
        .room_now(room, now)
        .await?
        .ok_or_else(|| unknown_room(room))
}

/// The room as its events make it now ([`RoomRecord::in_effect`]): what every decision about
/// a visitor reads.
pub async fn in_effect(s: &Service, room: &RoomId, now: u64) -> Result<RoomRecord, AppError> {
    Ok(record(s, room, now).await?.in_effect(now))
}

/// Whether the room ever gave out `place`: the queue of its epoch, one of its shards.
pub fn is_of_room(record: &RoomRecord, place: Place) -> bool {
    place.epoch == record.epoch && place.shard < record.config.shards
}

/// Where the ticket's holder stands; a place of another queue is gone.
pub async fn visit(
    s: &Service,
    record: &RoomRecord,
    ticket: &Ticket,
    now: u64,
) -> Result<VisitorState, AppError> {
    if !is_of_room(record, ticket.place) {
        return Ok(VisitorState::Expired);
    }
    if ticket.decoy {
        let position = crate::decoy::position(ticket.joined_us, now);
        return Ok(VisitorState::Waiting { position });
    }
    let state = s.store.visit(record, ticket, now).await?;
    drawn(s, record, state, now).await
}

/// A waiting visitor's state in random mode, where a place has no rank: the position becomes how
/// many wait in the room (as this instance last knew), from which the answer tells the average
/// wait of a draw.
async fn drawn(
    s: &Service,
    record: &RoomRecord,
    state: VisitorState,
    now: u64,
) -> Result<VisitorState, AppError> {
    match state {
        VisitorState::Waiting { position } if record.config.mode == Mode::Random => {
            let waiting = s.store.stats(record, now, false).await?.waiting;
            Ok(VisitorState::Waiting {
                position: waiting.max(position).max(1),
            })
        }
        other => Ok(other),
    }
}

/// Ends the place; `None` when the room never gave it out.
pub async fn end(
    s: &Service,
    record: &RoomRecord,
    place: Place,
    now: u64,
) -> Result<Option<bool>, AppError> {
    if !is_of_room(record, place) {
        return Ok(None);
    }
    Ok(s.store.end(record, place, now).await?)
}

/// Joins the room, keeping the place of a visitor who presents a live ticket. A bad bearer ticket
/// is refused; a bad or stale cookie is ignored and the visitor gets a new place, if the room's
/// access rules let it have one (see [`super::access`]). A place a user id already holds is
/// handed back only to a user token; a plain user id gets 409 `user_already_queued`, with where
/// that place stands and no ticket.
pub async fn join_room(
    s: &Service,
    record: &RoomRecord,
    client: &Client,
    user: User,
    credentials: Credentials<'_>,
    presented: Option<(&str, Source)>,
    now: u64,
) -> Result<(Answer, JoinOutcome), AppError> {
    if record.config.mode == Mode::Passthrough {
        let answer = Answer {
            body: VisitorResponse::new(&record.id, VisitorStatus::Admitted),
            set_cookies: Vec::new(),
            pass: None,
        };
        return Ok((answer, JoinOutcome::Passthrough));
    }
    if let Some(answer) = kept_place(s, record, client, presented, now).await? {
        return Ok((answer, JoinOutcome::Kept));
    }
    if let Some(max) = record.config.max_waiting {
        // As this instance last knew the room: a soft cap, which joins at once on several
        // instances can pass by a few.
        if s.store.stats(record, now, false).await?.waiting >= max {
            let mut body = VisitorResponse::new(&record.id, VisitorStatus::Full);
            body.poll_after_ms = Some(FULL_RETRY_MS);
            let answer = Answer {
                body,
                set_cookies: Vec::new(),
                pass: None,
            };
            return Ok((answer, JoinOutcome::Full));
        }
    }
    if may_join(s, record, client, credentials, now).await? == Verdict::Decoy {
        return Ok((decoy(s, record, client, now).await?, JoinOutcome::Decoyed));
    }
    let ctx = s.context(record, client);
    // A join that waited (at a frozen instance, say) is as old as its arrival at the proxy in
    // front: the store refuses one past its deadline.
    let now = client.arrived(now);
    let joined = s.store.join(record, user.id(), now).await?;
    if joined.existing && matches!(user, User::Claimed(_)) {
        return Err(already_queued(joined.state).into());
    }
    if !joined.existing
        && record_place(s, record, client, joined.place, now).await? == Verdict::Decoy
    {
        return Ok((decoy(s, record, client, now).await?, JoinOutcome::Decoyed));
    }
    let ticket = ctx.new_ticket(joined.place, joined.joined_us, now);
    let state = drawn(s, record, joined.state, now).await?;
    let outcome = match (joined.existing, state) {
        (true, _) => JoinOutcome::Kept,
        (false, VisitorState::Admitted { .. }) => JoinOutcome::Entered,
        (false, _) => JoinOutcome::Queued,
    };
    Ok((ctx.answer(&ticket, state, true, now), outcome))
}

/// A place in the infinite queue, starting behind everyone waiting now (as the store last
/// knew them: no fresh read for a suspicious client).
async fn decoy(
    s: &Service,
    record: &RoomRecord,
    client: &Client,
    now: u64,
) -> Result<Answer, AppError> {
    let stats = s.store.stats(record, now, false).await?;
    let mut random = [0u8; 8];
    s.platform.random(&mut random);
    let place = crate::decoy::place(
        record.epoch,
        record.config.shards,
        stats.admitted_total + stats.waiting,
        u64::from_le_bytes(random),
    );
    let joined_us = crate::decoy::joined_us(now, stats.waiting + 1);
    let ctx = s.context(record, client);
    let ticket = ctx.decoy_ticket(place, joined_us, now);
    let position = crate::decoy::position(joined_us, now);
    Ok(ctx.answer(&ticket, VisitorState::Waiting { position }, true, now))
}

/// The answer for the place a presented ticket holds, if it still waits or was admitted. A bad
/// bearer ticket is refused; a bad or stale cookie is `None`, as is no ticket.
pub async fn kept_place(
    s: &Service,
    record: &RoomRecord,
    client: &Client,
    presented: Option<(&str, Source)>,
    now: u64,
) -> Result<Option<Answer>, AppError> {
    let Some((token, source)) = presented else {
        return Ok(None);
    };
    match Ticket::decode(token, &s.keys, &record.id, now) {
        Ok(ticket) => {
            let state = visit(s, record, &ticket, now).await?;
            if matches!(
                state,
                VisitorState::Waiting { .. } | VisitorState::Admitted { .. }
            ) {
                let ctx = s.context(record, client);
                return Ok(Some(ctx.answer(&ticket, state, false, now)));
            }
            Ok(None)
        }
        Err(e) if source == Source::Bearer => Err(e.for_ticket().into()),
        Err(_) => Ok(None),
    }
}

fn already_queued(state: VisitorState) -> ApiError {
    let err = ApiError::new(
        ErrorCode::UserAlreadyQueued,
        "this user id already holds a place: send that place's ticket, or a user token from the \
         application",
    )
    .with("status", state.status().as_str());
    match state {
        VisitorState::Waiting { position } => err.with("position", position),
        _ => err,
    }
}

/// The place named by the presented ticket or pass (bearer first, then cookies), and whether it
/// is a place in the infinite queue.
fn presented_place(
    s: &Service,
    record: &RoomRecord,
    headers: &HeaderMap,
    now: u64,
) -> Result<(Place, bool), AppError> {
    let room = &record.id;
    if let Some((token, _)) = presented(headers, &ticket_cookie_name(room)) {
        if looks_like_pass(token) {
            let pass = Pass::decode(token, &s.keys, room, now).map_err(|e| e.for_pass())?;
            return Ok((pass.place, false));
        }
        let ticket = Ticket::decode(token, &s.keys, room, now).map_err(|e| e.for_ticket())?;
        return Ok((ticket.place, ticket.decoy));
    }
    if let Some((token, _)) = presented(headers, &pass_cookie_name(room)) {
        let pass = Pass::decode(token, &s.keys, room, now).map_err(|e| e.for_pass())?;
        return Ok((pass.place, false));
    }
    Err(AppError::new(
        ErrorCode::TicketRequired,
        "send the ticket (or pass) in the room's cookie or as Authorization: Bearer",
    ))
}

/// A visitor answer as a JSON response with its cookies.
pub fn visitor_response(answer: Answer) -> Response {
    let body = serde_json::to_string(&answer.body).unwrap_or_default();
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    add_no_store_and_cookies(headers, &answer.set_cookies);
    response
}

pub fn add_no_store_and_cookies(headers: &mut HeaderMap, cookies: &[String]) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
}
