//! Responses: JSON bodies and errors in the API's shape, with `Cache-Control: no-store`.

use serde::de::DeserializeOwned;
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

/// What a Durable Object operation answers: a value, or the error code and message.
pub type Answer<T> = std::result::Result<T, (ErrorCode, String)>;

/// Runs a Durable Object operation on its JSON request body and answers with its JSON result.
pub fn operation<Q: DeserializeOwned, A: Serialize>(
    body: &[u8],
    f: impl FnOnce(Q) -> Answer<A>,
) -> Result<Response> {
    let request: Q = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => return error(ErrorCode::InvalidJson, &e.to_string()),
    };
    match f(request) {
        Ok(answer) => json(&answer),
        Err((code, message)) => error(code, &message),
    }
}
