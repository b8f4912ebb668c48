//! The built-in demo application, served when no upstream is configured, so that a server
//! started with no configuration at all shows the gate working.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http::proxy::Visitor;

pub fn page(prefix: &str, visitor: Option<Visitor<'_>>) -> Response {
    let body = match visitor {
        Some(v) => format!(
            include_str!("demo_admitted.html"),
            room = v.room,
            visitor = v.place.ticket_id(),
            leave_url = format!("{prefix}/rooms/{}/leave", v.room),
        ),
        None => include_str!("demo_open.html").to_owned(),
    };
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
