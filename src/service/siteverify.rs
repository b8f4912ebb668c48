//! The external challenge: a widget's response checked against the room's siteverify URL.

use super::client::Client;
use super::error::AppError;
use super::state::Service;
use crate::challenge::SiteverifyConfig;
use crate::error::{ApiError, ErrorCode};

/// Whether the provider accepts `response` from `client`.
pub async fn verify(
    _s: &Service,
    _config: &SiteverifyConfig,
    _response: &str,
    _client: &Client,
    _now: u64,
) -> Result<bool, AppError> {
    Err(ApiError::new(
        ErrorCode::UpstreamUnavailable,
        "siteverify challenges are not built yet",
    )
    .into())
}
