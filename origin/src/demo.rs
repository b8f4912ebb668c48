//! The built-in demo application, served when no upstream is configured, so that a server
//! started with no configuration at all shows the gate working.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http::proxy::Visitor;

pub fn page(prefix: &str, visitor: Option<Visitor<'_>>) -> Response {
    let ticket_id = visitor.as_ref().map(|v| v.place.ticket_id());
    let body = queuegate::page::demo_page(
        prefix,
        visitor
            .as_ref()
            .zip(ticket_id.as_deref())
            .map(|(v, id)| (v.room, id)),
    );
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
