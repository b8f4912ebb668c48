//! The admin API's scheduled events: `/rooms/{room}/events` and `/rooms/{room}/events/{event}`.
//! What an event does is the core's ([`crate::event`]); this reads and writes them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::AppError;
use super::extract::{LimitedBody, RoomEventParams, RoomParam};
use super::public::record_now;
use super::state::Service;
use super::store::StoreError;
use crate::error::ErrorCode;
use crate::event::{self, Event, EventState, Events};
use crate::room::RoomId;

/// An event as the admin API shows it: its settings and where it stands now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    pub id: String,
    #[serde(flatten)]
    pub event: Event,
    pub state: EventState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventList {
    pub events: Vec<EventView>,
}

pub fn router() -> Router<Arc<Service>> {
    Router::new()
        .route("/rooms/{room}/events", get(list_events))
        .route(
            "/rooms/{room}/events/{event}",
            get(get_event).put(put_event).delete(delete_event),
        )
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

async fn get_event(
    State(s): State<Arc<Service>>,
    RoomEventParams(room, id): RoomEventParams,
) -> Result<Json<EventView>, AppError> {
    let now = s.now();
    let record = record_now(&s, &room, now).await?;
    let event = record.events.get(&id).ok_or_else(|| unknown_event(&id))?;
    Ok(Json(view(&id, event, now)))
}

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
