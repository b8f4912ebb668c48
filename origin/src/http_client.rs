//! The HTTP client for the request layer's own calls (a room's siteverify URL): reqwest, already
//! the origin's client for the edge's admin API, because a provider such as Cloudflare is reached
//! over HTTPS, which the upstream's plain hyper client does not speak.

use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use queuegate::service::{HttpClient, UpstreamError};

pub struct ReqwestClient(reqwest::Client);

impl ReqwestClient {
    pub fn new() -> Result<ReqwestClient, String> {
        reqwest::Client::builder()
            // The request layer bounds the whole call; this only gives up early on a host that
            // does not answer the connection.
            .connect_timeout(Duration::from_secs(5))
            // The form carries the room's secret: it goes where the room says, and nowhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map(ReqwestClient)
            .map_err(|e| format!("an HTTP client: {e}"))
    }
}

#[async_trait]
impl HttpClient for ReqwestClient {
    async fn post_form(&self, url: &str, form: String) -> Result<Response, UpstreamError> {
        let response = self
            .0
            .post(url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(form)
            .send()
            .await
            .map_err(|e| UpstreamError(e.to_string()))?;
        Ok(axum::http::Response::from(response).map(Body::new))
    }
}
