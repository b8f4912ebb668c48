//! The admin API's scheduled events: `/rooms/{room}/events` and `/rooms/{room}/events/{event}`.
//! What an event does is the core's ([`crate::event`]); this reads and writes them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::AppError;
use super::extract::{LimitedBody, RoomEventParams, RoomParam};
use super::openapi::ErrorBody;
use super::public::record_now;
use super::state::Service;
use super::store::StoreError;
use crate::error::ErrorCode;
use crate::event::{self, Event, EventState, Events};
use crate::room::RoomId;

/// An event as the admin API shows it: its settings and where it stands now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventView {
    pub id: String,
    #[serde(flatten)]
    pub event: Event,
    pub state: EventState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventList {
    pub events: Vec<EventView>,
}

pub fn router() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(get_event, put_event, delete_event))
}

fn view(id: &str, event: &Event, now: u64) -> EventView {
    EventView {
        id: id.to_owned(),
        event: event.redacted(now),
        state: event.state(now),
    }
}

fn unknown_event(id: &str) -> AppError {
    AppError::new(ErrorCode::NotFound, format!("no event {id:?} in this room"))
}

#[utoipa::path(
    get,
    path = "/rooms/{room}/events",
    tag = "events",
    summary = "The room's scheduled events",
    params(crate::service::openapi::RoomPath),
    responses(
        (status = 200, description = "By id", body = EventList),
        (status = 404, description = "unknown_room", body = ErrorBody),
        crate::service::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
async fn list_events(
    State(s): State<Arc<Service>>,
    RoomParam(room): RoomParam,
) -> Result<Json<EventList>, AppError> {
    let now = s.now();
    let record = record_now(&s, &room, now).await?;
    let events = record
        .events
        .iter()
        .map(|(id, e)| view(id, e, now))
        .collect();
    Ok(Json(EventList { events }))
}

#[utoipa::path(
    get,
    path = "/rooms/{room}/events/{event}",
    tag = "events",
    summary = "One scheduled event",
    params(crate::service::openapi::RoomEventPath),
    responses(
        (status = 200, description = "The event view", body = EventView),
        (status = 404, description = "unknown_room, not_found", body = ErrorBody),
        crate::service::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
async fn get_event(
    State(s): State<Arc<Service>>,
    RoomEventParams(room, id): RoomEventParams,
) -> Result<Json<EventView>, AppError> {
    let now = s.now();
    let record = record_now(&s, &room, now).await?;
    let event = record.events.get(&id).ok_or_else(|| unknown_event(&id))?;
    Ok(Json(view(&id, event, now)))
}

#[utoipa::path(
    put,
    path = "/rooms/{room}/events/{event}",
    tag = "events",
    summary = "Create or replace a scheduled event",
    params(crate::service::openapi::RoomEventPath),
    request_body(content = crate::event::Event, content_type = "application/json"),
    responses(
        (status = 200, description = "Replaced", body = EventView),
        (status = 201, description = "Created", body = EventView),
        (status = 400, description = "invalid_json, invalid_request", body = ErrorBody),
        (status = 404, description = "unknown_room", body = ErrorBody),
        (status = 409, description = "conflict: it overlaps another event", body = ErrorBody),
        (status = 422, description = "invalid_config", body = ErrorBody),
        crate::service::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
async fn put_event(
    State(s): State<Arc<Service>>,
    RoomEventParams(room, id): RoomEventParams,
    LimitedBody(body): LimitedBody,
) -> Result<Response, AppError> {
    let now = s.now();
    let event = Event::from_json(&body, now)?;
    let (event, created) = change_events(&s, &room, now, |events| {
        let event = event
            .clone()
            .with_seed(events.get(&id), || s.random_bytes());
        let (events, created) = event::put(events, &id, event.clone(), now)?;
        Ok((events, (event, created)))
    })
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(&id, &event, now))).into_response())
}

#[utoipa::path(
    delete,
    path = "/rooms/{room}/events/{event}",
    tag = "events",
    summary = "Remove a scheduled event",
    params(crate::service::openapi::RoomEventPath),
    responses(
        (status = 200, description = "The event as it was", body = EventView),
        (status = 404, description = "unknown_room, not_found", body = ErrorBody),
        crate::service::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
async fn delete_event(
    State(s): State<Arc<Service>>,
    RoomEventParams(room, id): RoomEventParams,
) -> Result<Json<EventView>, AppError> {
    let now = s.now();
    let event = change_events(&s, &room, now, |events| {
        let mut events = events.clone();
        let event = events.remove(&id).ok_or_else(|| unknown_event(&id))?;
        Ok((events, event))
    })
    .await?;
    Ok(Json(view(&id, &event, now)))
}

/// How many times a change is decided again on the events another write left, before the
/// operator is told to retry.
const CHANGE_ATTEMPTS: usize = 5;

/// Decides a change of the room's events on the events as read and writes it only if they are
/// still those: on a stale copy (another instance's or isolate's write not yet seen) or beside
/// another operator's write, the change is decided again on what the store holds, so no event
/// is checked for overlap against a list that is no longer the room's.
async fn change_events<T>(
    s: &Service,
    room: &RoomId,
    now: u64,
    decide: impl Fn(&Events) -> Result<(Events, T), AppError>,
) -> Result<T, AppError> {
    for _ in 0..CHANGE_ATTEMPTS {
        let from = record_now(s, room, now).await?.events;
        let (to, decided) = decide(&from)?;
        match s.store.set_events(room, &from, to, now).await {
            Ok(_) => {
                s.rooms_changed();
                return Ok(decided);
            }
            Err(StoreError::EventsChanged) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(StoreError::EventsChanged.into())
}
