//! The admin API: rooms, live stats, admission by hand, pause and resume, revocation; and the
//! interface a remote scheduler drives (the lease and its batches) where the store has one.
//! Every route needs `Authorization: Bearer <admin key>`, compared in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::AppError;
use super::extract::{bearer, LimitedBody, RoomParam};
use super::openapi::ErrorBody;
use super::public::{end, is_of_room, record, record_now};
use super::state::Service;
use super::store::RemoteScheduling;
use crate::api::{
    parse_json, AdmitRequest, AdmitResponse, LeaseRequest, LeaseResponse, RevokeRequest,
    RevokeResponse, RoomList, RoomView, ScheduleRequest, ScheduleResponse,
};
use crate::error::ErrorCode;
use crate::room::{RoomConfig, RoomRecord};
use crate::token::Place;

pub fn router(service: Arc<Service>) -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new()
        .routes(routes!(list_rooms))
        .routes(routes!(get_room, put_room))
        .routes(routes!(admit))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(revoke))
        .merge(super::events::router())
        .merge(super::templates::router())
        .merge(super::report::router())
        .routes(routes!(lease))
        .routes(routes!(schedule))
        .route_layer(middleware::from_fn_with_state(service, require_admin))
        // The dashboard page itself needs no key (it asks for one): added after the layer.
        .routes(routes!(super::dashboard::page))
}

async fn require_admin(
    State(s): State<Arc<Service>>,
    req: Request,
    next: Next,
) -> Result<Response, AppError> {
    if !bearer(req.headers()).is_some_and(|key| s.is_admin_key(key)) {
        return Err(AppError::new(
            ErrorCode::Unauthorized,
            "the admin API needs Authorization: Bearer <admin key>",
        ));
    }
    Ok(next.run(req).await)
}

/// The room view; `fresh` reads the store now, else what it last knew (a list of every room
/// should not cost a round through every shard of every room).
async fn view(s: &Service, record: RoomRecord, fresh: bool) -> Result<RoomView, AppError> {
    let now = s.now();
    let stats = s.store.stats(&record, now, fresh).await?;
    Ok(RoomView {
        id: record.id,
        config: record.config,
        paused: record.paused,
        events: record
            .events
            .iter()
            .map(|(id, e)| (id.clone(), e.redacted(now)))
            .collect(),
        template: record.template,
        stats,
    })
}

#[utoipa::path(
    get,
    path = "/rooms",
    tag = "rooms",
    summary = "Every room",
    responses(
        (status = 200, description = "Every room with its numbers as this instance last knew them", body = crate::api::RoomList),
        crate::service::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
async fn list_rooms(State(s): State<Arc<Service>>) -> Result<Json<RoomList>, AppError> {
    let mut rooms = Vec::new();
    for record in s.store.rooms(s.now()).await? {
        rooms.push(view(&s, record, false).await?);
    }
    Ok(Json(RoomList { rooms }))
}

#[utoipa::path(
    get,
    path = "/rooms/{room}",
    tag = "rooms",
    summary = "A room and its live numbers",
    params(crate::service::openapi::RoomPath),
    responses(
        (status = 200, description = "The room view", body = crate::api::RoomView),
        (status = 404, description = "unknown_room", body = ErrorBody),
        crate::service::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
async fn get_room(
    State(s): State<Arc<Service>>,
    RoomParam(room): RoomParam,
) -> Result<Json<RoomView>, AppError> {
    let record = record_now(&s, &room, s.now()).await?;
    Ok(Json(view(&s, record, true).await?))
}

#[utoipa::path(
    put,
    path = "/rooms/{room}",
    tag = "rooms",
    summary = "Create or update a room",
    params(crate::service::openapi::RoomPath),
    request_body(content = crate::room::RoomConfig, content_type = "application/json"),
    responses(
        (status = 200, description = "Updated", body = crate::api::RoomView),
        (status = 201, description = "Created", body = crate::api::RoomView),
        (status = 400, description = "invalid_json, invalid_room_id", body = ErrorBody),
        (status = 409, description = "conflict: a room keeps its shard count", body = ErrorBody),
        (status = 413, description = "body_too_large", body = ErrorBody),
        (status = 422, description = "invalid_config", body = ErrorBody),
        crate::service::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
async fn put_room(
    State(s): State<Arc<Service>>,
    RoomParam(room): RoomParam,
    LimitedBody(body): LimitedBody,
) -> Result<Response, AppError> {
    let config = RoomConfig::from_json(&body, &s.prefix)?;
    let (record, created) = s
        .store
        .put_room(&room, config, s.random_epoch(), s.now())
        .await?;
    s.rooms_changed();
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(&s, record, true).await?)).into_response())
}

#[utoipa::path(
    post,
    path = "/rooms/{room}/admit",
    tag = "rooms",
    summary = "Admit up to N of the oldest waiting now",
    params(crate::service::openapi::RoomPath),
    request_body(content = crate::api::AdmitRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "How many were admitted", body = crate::api::AdmitResponse),
        (status = 400, description = "invalid_json, invalid_request", body = ErrorBody),
        (status = 404, description = "unknown_room", body = ErrorBody),
        crate::service::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
async fn admit(
    State(s): State<Arc<Service>>,
    RoomParam(room): RoomParam,
    LimitedBody(body): LimitedBody,
) -> Result<Json<AdmitResponse>, AppError> {
    let request = AdmitRequest::from_body(&body)?;
    let now = s.now();
    // Within the capacity in effect: a running event's max_active may be below the room's own,
    // which is all the stores know of.
    let record = record_now(&s, &room, now).await?.in_effect(now);
    let stats = s.store.stats(&record, now, true).await?;
    let free = record
        .config
        .max_active
        .saturating_sub(stats.active.saturating_add(stats.admitted));
    let admitted = s
        .store
        .admit_now(&record, request.count.min(free), now)
        .await?;
    s.metrics.admitted(&room, admitted);
    Ok(Json(AdmitResponse { admitted }))
}

#[utoipa::path(
    post,
    path = "/rooms/{room}/pause",
    tag = "rooms",
    summary = "Stop admissions",
    params(crate::service::openapi::RoomPath),
    responses(
        (status = 200, description = "The room view", body = crate::api::RoomView),
        (status = 404, description = "unknown_room", body = ErrorBody),
        crate::service::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
async fn pause(
    State(s): State<Arc<Service>>,
    RoomParam(room): RoomParam,
) -> Result<Json<RoomView>, AppError> {
    let record = s.store.set_paused(&room, true, s.now()).await?;
    Ok(Json(view(&s, record, true).await?))
}

#[utoipa::path(
    post,
    path = "/rooms/{room}/resume",
    tag = "rooms",
    summary = "Start admissions again",
    params(crate::service::openapi::RoomPath),
    responses(
        (status = 200, description = "The room view", body = crate::api::RoomView),
        (status = 404, description = "unknown_room", body = ErrorBody),
        crate::service::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
async fn resume(
    State(s): State<Arc<Service>>,
    RoomParam(room): RoomParam,
) -> Result<Json<RoomView>, AppError> {
    let record = s.store.set_paused(&room, false, s.now()).await?;
    s.rooms_changed();
    Ok(Json(view(&s, record, true).await?))
}

#[utoipa::path(
    post,
    path = "/rooms/{room}/revoke",
    tag = "rooms",
    summary = "End a visitor's place or session",
    params(crate::service::openapi::RoomPath),
    request_body(content = crate::api::RevokeRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Whether something was ended", body = crate::api::RevokeResponse),
        (status = 400, description = "invalid_json, invalid_request", body = ErrorBody),
        (status = 404, description = "unknown_room, unknown_ticket", body = ErrorBody),
        crate::service::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
async fn revoke(
    State(s): State<Arc<Service>>,
    RoomParam(room): RoomParam,
    LimitedBody(body): LimitedBody,
) -> Result<Json<RevokeResponse>, AppError> {
    let request: RevokeRequest = parse_json(&body)?;
    let now = s.now();
    let record = record_now(&s, &room, now).await?;
    let unknown = || {
        AppError::new(
            ErrorCode::UnknownTicket,
            format!(
                "no visitor with ticket id {:?} in this room",
                request.ticket_id
            ),
        )
    };
    let place = Place::parse_ticket_id(&request.ticket_id)
        .filter(|&place| is_of_room(&record, place))
        .ok_or_else(unknown)?;
    let revoked = end(&s, &record, place, now).await?.ok_or_else(unknown)?;
    Ok(Json(RevokeResponse {
        ticket_id: request.ticket_id,
        revoked,
    }))
}

fn remote(s: &Service) -> Result<&dyn RemoteScheduling, AppError> {
    s.store.remote().ok_or_else(|| {
        AppError::new(
            ErrorCode::NotFound,
            "this deployment's scheduler runs in the process: no scheduler interface here",
        )
    })
}

#[utoipa::path(
    post,
    path = "/lease",
    tag = "scheduler",
    summary = "Take or renew the admission lease (the edge only)",
    request_body(content = crate::api::LeaseRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The fence, 0 while another holder has the lease", body = crate::api::LeaseResponse),
        (status = 400, description = "invalid_json", body = ErrorBody),
        (status = 404, description = "not_found: the store runs its own scheduler", body = ErrorBody),
        crate::service::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
async fn lease(
    State(s): State<Arc<Service>>,
    LimitedBody(body): LimitedBody,
) -> Result<Json<LeaseResponse>, AppError> {
    let remote = remote(&s)?;
    let request = LeaseRequest::from_body(&body)?;
    let fence = remote
        .lease(&request.holder, request.ttl_ms, s.now())
        .await?;
    Ok(Json(LeaseResponse { fence }))
}

#[utoipa::path(
    post,
    path = "/rooms/{room}/schedule",
    tag = "scheduler",
    summary = "A batch the remote scheduler planned (the edge only)",
    params(crate::service::openapi::RoomPath),
    request_body(content = crate::api::ScheduleRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "What the orders admitted, and the shards' readings", body = crate::api::ScheduleResponse),
        (status = 400, description = "invalid_json, invalid_request", body = ErrorBody),
        (status = 404, description = "unknown_room, not_found", body = ErrorBody),
        (status = 409, description = "fenced", body = ErrorBody),
        crate::service::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
async fn schedule(
    State(s): State<Arc<Service>>,
    RoomParam(room): RoomParam,
    LimitedBody(body): LimitedBody,
) -> Result<Json<ScheduleResponse>, AppError> {
    let remote = remote(&s)?;
    let now = s.now();
    let record = record(&s, &room, now).await?;
    let mut request = ScheduleRequest::from_body(&body, record.config.shards)?;
    // The scheduler planned on its own clock. While this store's clock still holds the room in
    // a pre-queue, its orders admit nobody: on the far side of the opening they would admit in
    // an order a shuffle at the opening is about to change (and before the opening at all).
    if record.clone().in_effect(now).opens_at.is_some() {
        request.orders = None;
    }
    Ok(Json(remote.run_batch(&record, &request, now).await?))
}
