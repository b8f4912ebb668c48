//! Responses: JSON bodies and errors in the API's shape, with `Cache-Control: no-store`.

use serde::Serialize;
use worker::{Response, Result};

use crate::error::{ApiError, ErrorCode};

pub fn json<T: Serialize>(value: &T) -> Result<Response> {
    with_status(value, 200)
}

pub fn with_status<T: Serialize>(value: &T, status: u16) -> Result<Response> {
    let mut response = Response::from_json(value)?.with_status(status);
    response.headers_mut().set("cache-control", "no-store")?;
    Ok(response)
}

pub fn error(code: ErrorCode, message: &str) -> Result<Response> {
    api_error(&ApiError::new(code, message))
}

pub fn api_error(err: &ApiError) -> Result<Response> {
    let mut response = with_status(&err.to_body(), err.status())?;
    if err.code.is_retryable() {
        response.headers_mut().set("retry-after", "2")?;
    }
    if err.code == ErrorCode::Unauthorized {
        response
            .headers_mut()
            .set("www-authenticate", "Bearer realm=\"queuegate-admin\"")?;
    }
    Ok(response)
}
