//! The admin API: rooms, live stats, admission by hand, pause and resume, revocation. Every route
//! needs `Authorization: Bearer <QUEUEGATE_ADMIN_KEY>`, compared in constant time.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use queuegate::api::{
    parse_json, AdmitRequest, AdmitResponse, RevokeRequest, RevokeResponse, RoomList, RoomView,
};
use queuegate::{ErrorCode, Place, RoomConfig};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::AppError;
use super::extract::{bearer, LimitedBody, RoomParam};
use crate::clock::random_epoch;
use crate::server::AppState;
use crate::store::RoomRecord;

/// The digest of an admin key. Comparing digests takes the same time whatever the lengths.
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

pub async fn require_admin(
    State(s): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, AppError> {
    let presented = bearer(req.headers()).map(key_digest);
    let allowed = presented.is_some_and(|d| bool::from(d.ct_eq(&s.admin_key_digest)));
    if !allowed {
        return Err(AppError::new(
            ErrorCode::Unauthorized,
            "the admin API needs Authorization: Bearer <admin key>",
        ));
    }
    Ok(next.run(req).await)
}

async fn view(s: &AppState, record: RoomRecord) -> Result<RoomView, AppError> {
    let stats = s.store.stats(&record.id, s.now()).await?;
    Ok(RoomView {
        id: record.id,
        config: record.config,
        paused: record.paused,
        stats,
    })
}

pub async fn list_rooms(State(s): State<AppState>) -> Result<Json<RoomList>, AppError> {
    let mut rooms = Vec::new();
    for record in s.store.rooms().await? {
        rooms.push(view(&s, record).await?);
    }
    Ok(Json(RoomList { rooms }))
}

pub async fn get_room(
    State(s): State<AppState>,
    RoomParam(room): RoomParam,
) -> Result<Json<RoomView>, AppError> {
    let record = s.record(&room).await?;
    Ok(Json(view(&s, record).await?))
}

pub async fn put_room(
    State(s): State<AppState>,
    RoomParam(room): RoomParam,
    LimitedBody(body): LimitedBody,
) -> Result<Response, AppError> {
    let config = RoomConfig::from_json(&body, &s.prefix)?;
    let (record, created) = s
        .store
        .put_room(&room, config, random_epoch(), s.now())
        .await?;
    s.rooms_changed().await;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(&s, record).await?)).into_response())
}

pub async fn admit(
    State(s): State<AppState>,
    RoomParam(room): RoomParam,
    LimitedBody(body): LimitedBody,
) -> Result<Json<AdmitResponse>, AppError> {
    let request = AdmitRequest::from_body(&body)?;
    s.record(&room).await?;
    let admitted = s.store.admit_now(&room, request.count, s.now()).await?;
    s.metrics.admitted(&room, admitted);
    Ok(Json(AdmitResponse { admitted }))
}

pub async fn pause(
    State(s): State<AppState>,
    RoomParam(room): RoomParam,
) -> Result<Json<RoomView>, AppError> {
    let record = s.store.set_paused(&room, true).await?;
    Ok(Json(view(&s, record).await?))
}

pub async fn resume(
    State(s): State<AppState>,
    RoomParam(room): RoomParam,
) -> Result<Json<RoomView>, AppError> {
    let record = s.store.set_paused(&room, false).await?;
    s.wake_scheduler.notify_one();
    Ok(Json(view(&s, record).await?))
}

pub async fn revoke(
    State(s): State<AppState>,
    RoomParam(room): RoomParam,
    LimitedBody(body): LimitedBody,
) -> Result<Json<RevokeResponse>, AppError> {
    let request: RevokeRequest = parse_json(&body)?;
    let record = s.record(&room).await?;
    let place = Place::parse_ticket_id(&request.ticket_id)
        .filter(|p| p.epoch == record.epoch)
        .ok_or_else(|| {
            AppError::new(
                ErrorCode::UnknownTicket,
                format!(
                    "no visitor with ticket id {:?} in this room",
                    request.ticket_id
                ),
            )
        })?;
    let revoked = s.store.revoke(&room, place, s.now()).await?;
    Ok(Json(RevokeResponse {
        ticket_id: request.ticket_id,
        revoked,
    }))
}
