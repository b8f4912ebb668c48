//! The application behind the gate, reached with `fetch`. The request arrives already shaped by
//! the request layer's header policy; this puts its path under the upstream's base URL and
//! streams the bodies both ways.
//!
//! A WebSocket handshake (the request layer keeps `Upgrade: websocket` on one it lets through) is
//! fetched like any request: the runtime answers the application's `101` with the application's
//! end of the WebSocket, which `worker`'s conversion puts in the response's extensions as a
//! [`worker::WebSocket`]. The request layer leaves a `101`'s extensions alone, and the entry
//! point's conversion back hands it to the runtime as the answer's `webSocket`: the runtime then
//! joins it to the visitor's and carries the messages both ways, without the worker (which never
//! accepts it, so never sees a message).
//!
//! [`FetchClient`] is the request layer's own client (a room's siteverify URL), with `fetch` too.

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use worker::send::SendFuture;

use crate::service::{HttpClient, Upstream, UpstreamError};

pub struct Fetch {
    /// `http://app.internal` or `https://app.example/base`, without a trailing slash.
    pub base: String,
}

#[async_trait]
impl Upstream for Fetch {
    async fn send(&self, req: Request) -> Result<Response, UpstreamError> {
        let failed = |e: worker::Error| UpstreamError(e.to_string());
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = format!("{}{path}", self.base)
            .parse()
            .map_err(|e| UpstreamError(format!("the upstream URL: {e}")))?;
        let request = Request::from_parts(parts, body);
        SendFuture::new(async move {
            let request = worker::Request::try_from(request).map_err(failed)?;
            let fetched = worker::Fetch::Request(request)
                .send()
                .await
                .map_err(failed)?;
            let response = worker::HttpResponse::try_from(fetched).map_err(failed)?;
            if response.status() == 101
                && response.extensions().get::<worker::WebSocket>().is_none()
            {
                // The runtime refuses to answer a 101 without a WebSocket to hand over.
                return Err(UpstreamError("a 101 without a WebSocket".into()));
            }
            Ok(response.map(Body::new))
        })
        .await
    }
}

/// The request layer's HTTP client at the edge.
pub struct FetchClient;

#[async_trait]
impl HttpClient for FetchClient {
    async fn post_form(&self, url: &str, form: String) -> Result<Response, UpstreamError> {
        let url = url.to_owned();
        SendFuture::new(async move {
            let failed = |e: worker::Error| UpstreamError(e.to_string());
            let headers = worker::Headers::new();
            headers
                .set("content-type", "application/x-www-form-urlencoded")
                .map_err(failed)?;
            headers.set("accept", "application/json").map_err(failed)?;
            let mut init = worker::RequestInit::new();
            init.with_method(worker::Method::Post)
                .with_headers(headers)
                .with_body(Some(form.into()))
                // The form carries the room's secret: it goes where the room says, and nowhere
                // else.
                .with_redirect(worker::RequestRedirect::Manual);
            let request = worker::Request::new_with_init(&url, &init).map_err(failed)?;
            let fetched = worker::Fetch::Request(request)
                .send()
                .await
                .map_err(failed)?;
            let response = worker::HttpResponse::try_from(fetched).map_err(failed)?;
            Ok(response.map(Body::new))
        })
        .await
    }
}
