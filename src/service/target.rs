//! The request target, decided once and before anything routes on it: the path normalised (see
//! [`crate::path`]), or the request refused with 400 `invalid_path`; a `Host`, without which the
//! application could not be told which site was asked for; and who the client is
//! ([`super::client`]).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::http::uri::{PathAndQuery, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::client::{client_of, peer};
use super::error::AppError;
use super::state::Service;
use crate::error::ErrorCode;
use crate::path;

pub async fn normalise(State(s): State<Arc<Service>>, mut req: Request, next: Next) -> Response {
    let start = s.platform.micros();
    match normalised(req.uri()) {
        Ok(Some(uri)) => *req.uri_mut() = uri,
        Ok(None) => {}
        Err(err) => return refused(&s, err, start),
    }
    if req.uri().authority().is_none() && !req.headers().contains_key(header::HOST) {
        let err = AppError::new(ErrorCode::InvalidRequest, "the request has no Host header");
        return refused(&s, err, start);
    }
    let client = client_of(
        req.headers(),
        req.uri(),
        peer(req.extensions()),
        &s.trusted_proxies,
    );
    req.extensions_mut().insert(client);
    next.run(req).await
}

fn refused(s: &Service, err: AppError, start: u64) -> Response {
    let response = err.into_response();
    let elapsed = s.platform.micros().saturating_sub(start);
    s.metrics
        .request("refused target", response.status().as_u16(), elapsed);
    response
}

/// The URI with its path normalised, `None` when it already is.
fn normalised(uri: &Uri) -> Result<Option<Uri>, AppError> {
    let raw = uri.path();
    let path = path::normalise(raw).map_err(|e| AppError(e.into_api()))?;
    if path == raw {
        return Ok(None);
    }
    let with_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        PathAndQuery::try_from(with_query)
            .map_err(|e| AppError::new(ErrorCode::InvalidPath, e.to_string()))?,
    );
    Uri::from_parts(parts)
        .map(Some)
        .map_err(|e| AppError::new(ErrorCode::InvalidPath, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_and_origin_forms_keep_all_but_the_path() {
        let uri: Uri = "https://edge.example/x/../h//y?a=%2F".parse().unwrap();
        assert_eq!(
            normalised(&uri).unwrap().unwrap(),
            "https://edge.example/h/y?a=%2F"
        );
        let uri: Uri = "/%68?q".parse().unwrap();
        assert_eq!(normalised(&uri).unwrap().unwrap(), "/h?q");
        let uri: Uri = "/h/x".parse().unwrap();
        assert!(normalised(&uri).unwrap().is_none());
        let uri: Uri = "/h%2Fx".parse().unwrap();
        assert_eq!(normalised(&uri).unwrap_err().code(), ErrorCode::InvalidPath);
    }
}
