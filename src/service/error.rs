//! The one error type handlers return: any [`ApiError`] becomes its status, JSON body and
//! headers here, on both deployments.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::store::StoreError;
use crate::error::{ApiError, ErrorCode};

/// Seconds a client should wait before retrying a retryable error (and what the unavailable
/// page waits before it reloads).
pub const RETRY_AFTER_S: u64 = 2;

#[derive(Debug)]
pub struct AppError(pub ApiError);

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError(ApiError::new(code, message))
    }

    pub fn code(&self) -> ErrorCode {
        self.0.code
    }
}

impl From<ApiError> for AppError {
    fn from(err: ApiError) -> Self {
        AppError(err)
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        AppError(err.into())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        error_response(&self.0)
    }
}

/// A server-side failure behind a 5xx answer, left in the response's extensions for the shell
/// to log (the client gets only the code and message).
#[derive(Debug, Clone)]
pub struct Fault(pub ApiError);

pub fn error_response(err: &ApiError) -> Response {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, err.to_json()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if err.code.is_retryable() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
    }
    if err.code == ErrorCode::TooManyJoins {
        let seconds = err
            .extra
            .get("retry_after_s")
            .and_then(|v| v.as_u64())
            .unwrap_or(RETRY_AFTER_S);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if err.code == ErrorCode::Unauthorized {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"queuegate-admin\""),
        );
    }
    if status.is_server_error() {
        response.extensions_mut().insert(Fault(err.clone()));
    }
    response
}

pub async fn not_found() -> AppError {
    AppError::new(
        ErrorCode::NotFound,
        "nothing here: this listener serves operators",
    )
}

pub async fn api_not_found() -> AppError {
    AppError::new(ErrorCode::NotFound, "no such API route")
}

pub async fn method_not_allowed() -> AppError {
    AppError::new(
        ErrorCode::MethodNotAllowed,
        "that method is not allowed here",
    )
}
