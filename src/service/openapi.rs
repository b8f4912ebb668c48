//! The API document, `GET {prefix}/openapi.json` (OpenAPI 3.1). Every route of the API is
//! registered through utoipa-axum's `OpenApiRouter` together with its `#[utoipa::path]`
//! document, so a route cannot exist without its entry; the bodies are the core's own types
//! (`ToSchema` derived beside `Serialize`), and every error is [`ErrorBody`] with its code one of
//! [`ErrorCode::ALL`].

use std::borrow::Cow;
use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr, Server};
use utoipa::{PartialSchema, ToSchema};

use crate::error::ErrorCode;

/// An error as every route answers it: `{"error": {"code", "message"}}`, with any fields the
/// error carries beside `error` (such as `retry_after_s`, `position`, `challenge`, `line`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    code: ErrorCodeName,
    /// What went wrong, for a person; match on `code`.
    message: String,
}

/// The room a route is about, in its path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct RoomPath {
    /// The room id
    room: String,
}

/// The room and the event a route is about, in its path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct RoomEventPath {
    /// The room id
    room: String,
    /// The event id
    event: String,
}

/// What every admin route may answer besides its own.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum AdminErrors {
    /// unauthorized: no admin key, or the wrong one
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// store_unavailable
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// What every route that reads a visitor's ticket may answer besides its own.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum TicketErrors {
    /// ticket_required, invalid_ticket, ticket_expired (or invalid_pass, pass_expired)
    #[response(status = 401)]
    BadTicket(ErrorBody),
    /// ticket_wrong_room, pass_wrong_room
    #[response(status = 403)]
    OtherRoom(ErrorBody),
    /// unknown_room
    #[response(status = 404)]
    UnknownRoom(ErrorBody),
    /// store_unavailable (Retry-After)
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The stable error codes ([`ErrorCode::ALL`]): the set can grow.
pub struct ErrorCodeName;

impl PartialSchema for ErrorCodeName {
    fn schema() -> RefOr<Schema> {
        let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        let statuses: Vec<String> = ErrorCode::ALL
            .iter()
            .map(|c| format!("`{}` ({})", c.as_str(), c.http_status()))
            .collect();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(codes))
            .description(Some(format!(
                "A stable, machine-readable code, with its HTTP status: {}.",
                statuses.join(", ")
            )))
            .into()
    }
}

impl ToSchema for ErrorCodeName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorCode")
    }
}

/// The document as this listener serves it: its routes under `prefix`, as JSON, built once.
pub fn document(mut api: OpenApi, prefix: &str) -> Arc<String> {
    api.info.title = "queuegate".into();
    api.info.version = env!("CARGO_PKG_VERSION").into();
    api.info.description = Some(
        "A virtual waiting room: the public API visitors' browsers call, the admin API \
         operators call (Authorization: Bearer <admin key>), health and metrics. The gate (every \
         path outside the API) is not part of this document."
            .into(),
    );
    api.servers = Some(vec![Server::new(prefix)]);
    let components = api.components.get_or_insert_with(Default::default);
    let bearer = |what: &str| {
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(what))
                .build(),
        )
    };
    components.add_security_scheme(
        "admin_key",
        bearer("The deployment's admin key (QUEUEGATE_ADMIN_KEY)"),
    );
    components.add_security_scheme(
        "ticket",
        bearer("The visitor's ticket (or pass), or else the room's cookie qg_ticket_<room>"),
    );
    Arc::new(api.to_json().expect("the document serializes"))
}

/// `GET /openapi.json`.
pub fn serve(json: &Arc<String>) -> Response {
    let mut response = json.as_str().to_owned().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
