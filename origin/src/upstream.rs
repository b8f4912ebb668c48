//! The application behind the gate, reached with hyper's pooled client. The request arrives
//! already shaped by the request layer's header policy; this puts its path under the upstream's
//! base URL and names the upstream's host.

use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::Request;
use axum::http::uri::{Authority, Scheme};
use axum::http::{header, HeaderValue, Uri};
use axum::response::Response;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use queuegate::service::{Upstream, UpstreamError};

pub struct HttpUpstream {
    scheme: Scheme,
    authority: Authority,
    /// A path the upstream is mounted under, without a trailing slash.
    base_path: String,
    client: Client<HttpConnector, Body>,
}

#[derive(Debug, thiserror::Error)]
#[error("upstream {0:?} must be an http:// URL with a host")]
pub struct BadUpstream(String);

impl HttpUpstream {
    pub fn new(url: &str) -> Result<HttpUpstream, BadUpstream> {
        let uri: Uri = url.parse().map_err(|_| BadUpstream(url.into()))?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            return Err(BadUpstream(url.into()));
        };
        if scheme != Scheme::HTTP {
            // TLS to the upstream is for a later version; refuse rather than fail per request.
            return Err(BadUpstream(url.into()));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(HttpUpstream {
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            client,
        })
    }
}

#[async_trait]
impl Upstream for HttpUpstream {
    async fn send(&self, req: Request) -> Result<Response, UpstreamError> {
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{path}", self.base_path))
            .build()
            .map_err(|e| UpstreamError(e.to_string()))?;
        if let Ok(host) = HeaderValue::from_str(self.authority.as_str()) {
            parts.headers.insert(header::HOST, host);
        }
        let response = self
            .client
            .request(Request::from_parts(parts, body))
            .await
            .map_err(|e| UpstreamError(e.to_string()))?;
        Ok(response.map(Body::new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_must_be_http_urls() {
        assert!(HttpUpstream::new("http://127.0.0.1:3000").is_ok());
        assert!(HttpUpstream::new("http://app.internal/base/").is_ok());
        for bad in ["", "127.0.0.1:3000", "/path", "https://x", "ftp://x"] {
            assert!(HttpUpstream::new(bad).is_err(), "{bad}");
        }
    }
}
