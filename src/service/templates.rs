//! The admin API's page templates: `/rooms/{room}/template` (put, read, remove) and
//! `/rooms/{room}/preview?state=&lang=`, which shows any page of the room as a visitor would see
//! it, with made-up numbers. What a template is and sees is the core's ([`crate::template`]).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::AppError;
use super::extract::{query_value, read_within, RoomParam};
use super::gate::{in_language, page_language};
use super::openapi::ErrorBody;
use super::pages;
use super::public::record_now;
use super::state::Service;
use crate::error::ErrorCode;
use crate::template::{Page, PageState, PageTemplate, TemplateRef, MAX_TEMPLATE_BYTES};

pub fn router() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new()
        .routes(routes!(get_template, put_template, delete_template))
        .routes(routes!(preview))
}

/// What a put answers: the template as the room now names it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct TemplateView {
    room: String,
    template: TemplateRef,
}

#[utoipa::path(
    put,
    path = "/rooms/{room}/template",
    tag = "pages",
    summary = "Set the room's page template",
    params(crate::service::openapi::RoomPath),
    request_body(content = String, description = "A minijinja template, at most 1 MiB", content_type = "text/html"),
    responses(
        (status = 200, description = "The template as the room names it", body = TemplateView),
        (status = 400, description = "invalid_request: not UTF-8", body = ErrorBody),
        (status = 404, description = "unknown_room", body = ErrorBody),
        (status = 413, description = "body_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 422, description = "invalid_template (line, detail)", body = ErrorBody),
        crate::service::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
async fn put_template(
    State(s): State<Arc<Service>>,
    RoomParam(room): RoomParam,
    req: Request,
) -> Result<Json<TemplateView>, AppError> {
    let media_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if media_type.as_deref() != Some("text/html") {
        return Err(AppError::new(
            ErrorCode::UnsupportedMediaType,
            "a page template is sent as Content-Type: text/html",
        ));
    }
    let body = read_within(&s, req, MAX_TEMPLATE_BYTES).await?;
    let text = std::str::from_utf8(&body).map_err(|e| {
        AppError::new(
            ErrorCode::InvalidRequest,
            format!("a page template is UTF-8 text: {e}"),
        )
    })?;
    let now = s.now();
    record_now(&s, &room, now).await?;
    let template = Arc::new(PageTemplate::compile(text).map_err(AppError)?);
    let record = s.store.set_template(&room, Some(text), now).await?;
    s.templates.insert(template.clone());
    Ok(Json(TemplateView {
        room: room.as_str().to_owned(),
        template: record
            .template
            .unwrap_or_else(|| template.reference().clone()),
    }))
}

#[utoipa::path(
    get,
    path = "/rooms/{room}/template",
    tag = "pages",
    summary = "The room's page template",
    params(crate::service::openapi::RoomPath),
    responses(
        (status = 200, description = "Its text", body = String, content_type = "text/html"),
        (status = 404, description = "unknown_room, not_found: the room has none", body = ErrorBody),
        crate::service::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
async fn get_template(
    State(s): State<Arc<Service>>,
    RoomParam(room): RoomParam,
) -> Result<Response, AppError> {
    let now = s.now();
    let record = record_now(&s, &room, now).await?;
    let text = match &record.template {
        Some(reference) => s.store.template(&room, reference, now).await?,
        None => None,
    };
    let Some(text) = text else {
        return Err(AppError::new(
            ErrorCode::NotFound,
            "the room has no page template: it shows the built-in pages",
        ));
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response())
}

#[utoipa::path(
    delete,
    path = "/rooms/{room}/template",
    tag = "pages",
    summary = "Back to the built-in pages",
    params(crate::service::openapi::RoomPath),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "unknown_room", body = ErrorBody),
        crate::service::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
async fn delete_template(
    State(s): State<Arc<Service>>,
    RoomParam(room): RoomParam,
) -> Result<StatusCode, AppError> {
    let now = s.now();
    record_now(&s, &room, now).await?;
    s.store.set_template(&room, None, now).await?;
    s.templates.forget(&room);
    Ok(StatusCode::NO_CONTENT)
}

/// The room's page for `state` in the language `lang` (or `Accept-Language`) asks for, as a
/// visitor would get it now: in the room's template, or the built-in page when it has none
/// (`X-Queuegate-Template` says which).
#[utoipa::path(
    get,
    path = "/rooms/{room}/preview",
    tag = "pages",
    summary = "A page of the room as a visitor would get it, with made-up numbers",
    params(crate::service::openapi::RoomPath, ("state" = Option<String>, Query, description = "waiting (default), prequeue, random, full, closed, unavailable, too_many_joins, invite_required, invite_used, challenge_failed"), ("lang" = Option<String>, Query, description = "The language (else Accept-Language)")),
    responses(
        (status = 200, description = "The page; X-Queuegate-Template says room or built-in", body = String, content_type = "text/html"),
        (status = 400, description = "invalid_request: no such state", body = ErrorBody),
        (status = 404, description = "unknown_room", body = ErrorBody),
        crate::service::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
async fn preview(
    State(s): State<Arc<Service>>,
    RoomParam(room): RoomParam,
    req: Request,
) -> Result<Response, AppError> {
    let query = req.uri().query();
    let state = match query_value(query, "state") {
        None => PageState::Waiting,
        Some(name) => PageState::parse(&name).ok_or_else(|| {
            let states: Vec<_> = PageState::ALL.iter().map(|s| s.as_str()).collect();
            AppError::new(
                ErrorCode::InvalidRequest,
                format!("state: {name:?} is none of {}", states.join(", ")),
            )
        })?,
    };
    let lang = page_language(query, req.headers());
    let now = s.now();
    let record = record_now(&s, &room, now).await?;
    let template = match &record.template {
        Some(reference) => pages::compiled(&s, &room, reference, now).await?,
        None => None,
    };
    let status_url = format!("{}/rooms/{room}/status", s.prefix);
    let page = Page::sample(state, &room, &status_url, lang, now);
    let (html, source) = match &template {
        Some(template) => match template.render(&page) {
            Ok(html) => (html, "room"),
            Err(_) => (page.render_builtin(), "built-in"),
        },
        None => (page.render_builtin(), "built-in"),
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response();
    let headers = response.headers_mut();
    in_language(headers, lang);
    headers.insert("x-queuegate-template", HeaderValue::from_static(source));
    Ok(response)
}
