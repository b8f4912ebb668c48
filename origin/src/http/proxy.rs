//! Forwarding a request to the application behind the gate.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use queuegate::{ErrorCode, Place, RoomId};

use super::error::AppError;
use super::public::add_no_store_and_cookies;
use crate::demo;
use crate::server::Shared;

/// How long the application may take to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// The admitted visitor a request is forwarded for.
#[derive(Debug, Clone, Copy)]
pub struct Visitor<'a> {
    pub room: &'a RoomId,
    pub place: Place,
}

/// The application behind the gate.
pub enum Upstream {
    /// The built-in demo page, for a server started without an upstream.
    Demo,
    Http(HttpUpstream),
}

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

    async fn forward(
        &self,
        req: Request,
        visitor: Option<Visitor<'_>>,
    ) -> Result<Response, AppError> {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let target = format!("{}{}", self.base_path, path);
        parts.uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(target)
            .build()
            .map_err(|e| AppError::new(ErrorCode::InvalidRequest, e.to_string()))?;
        let headers = &mut parts.headers;
        strip_hop_by_hop(headers);
        strip_queuegate_cookies(headers);
        if let Some(host) = headers.remove(header::HOST) {
            headers.insert("x-forwarded-host", host);
        }
        if let Ok(host) = HeaderValue::from_str(self.authority.as_str()) {
            headers.insert(header::HOST, host);
        }
        if let Some(ip) = peer {
            append_forwarded_for(headers, &ip.to_string());
        }
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        headers.remove("x-queuegate-room");
        headers.remove("x-queuegate-visitor");
        if let Some(v) = visitor {
            if let Ok(room) = HeaderValue::from_str(v.room.as_str()) {
                headers.insert("x-queuegate-room", room);
            }
            if let Ok(id) = HeaderValue::from_str(&v.place.ticket_id()) {
                headers.insert("x-queuegate-visitor", id);
            }
        }
        let request = Request::from_parts(parts, body);
        let response = tokio::time::timeout(UPSTREAM_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| AppError::new(ErrorCode::UpstreamUnavailable, "the upstream timed out"))?
            .map_err(|e| {
                AppError::new(
                    ErrorCode::UpstreamUnavailable,
                    format!("the upstream could not be reached: {e}"),
                )
            })?;
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, Body::new(body)))
    }
}

/// Forwards to the upstream (or the demo page), adding `set_cookies` to the response.
pub async fn forward(
    s: &Shared,
    req: Request,
    visitor: Option<Visitor<'_>>,
    set_cookies: &[String],
) -> Response {
    let mut response = match &s.upstream {
        Upstream::Demo => demo::page(&s.prefix, visitor),
        Upstream::Http(upstream) => match upstream.forward(req, visitor).await {
            Ok(response) => response,
            Err(err) => err.into_response(),
        },
    };
    if !set_cookies.is_empty() {
        // The response carries a visitor's new pass: no cache may keep it.
        add_no_store_and_cookies(response.headers_mut(), set_cookies);
    }
    response
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Tickets and passes are the gate's business, not the application's.
fn strip_queuegate_cookies(headers: &mut HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && !pair.starts_with("qg_"))
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(header::COOKIE, value);
        }
    }
}

fn append_forwarded_for(headers: &mut HeaderMap, ip: &str) {
    let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(existing) => format!("{existing}, {ip}"),
        None => ip.to_owned(),
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert("x-forwarded-for", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queuegate_cookies_stay_behind() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; qg_ticket_demo=x"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("qg_pass_demo=y; b=2"),
        );
        strip_queuegate_cookies(&mut headers);
        assert_eq!(headers.get(header::COOKIE).unwrap(), "a=1; b=2");
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));
    }

    #[test]
    fn upstreams_must_be_http_urls() {
        assert!(HttpUpstream::new("http://127.0.0.1:3000").is_ok());
        assert!(HttpUpstream::new("http://app.internal/base/").is_ok());
        for bad in ["", "127.0.0.1:3000", "/path", "https://x", "ftp://x"] {
            assert!(HttpUpstream::new(bad).is_err(), "{bad}");
        }
    }
}
