//! The one error type handlers return: any [`ApiError`] becomes its status and JSON body here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use queuegate::{ApiError, ErrorCode};

use crate::store::StoreError;

/// Seconds a client should wait before retrying a retryable error.
pub const RETRY_AFTER_S: u64 = 2;

#[derive(Debug)]
pub struct AppError(pub ApiError);

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError(ApiError::new(code, message))
    }
}

impl From<ApiError> for AppError {
    fn from(err: ApiError) -> Self {
        AppError(err)
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        if let StoreError::Unavailable(msg) = &err {
            tracing::warn!(error = %msg, "store unavailable");
        }
        AppError(err.into())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        error_response(&self.0)
    }
}

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
    if err.code == ErrorCode::Unauthorized {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"queuegate-admin\""),
        );
    }
    response
}
