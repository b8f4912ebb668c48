//! What reaches the application behind the gate, and how: the header policy toward the upstream
//! (queuegate's cookies stripped, hop-by-hop headers dropped, `X-Forwarded-*` set by queuegate,
//! the admitted visitor named), the time the upstream may take, and the [`Upstream`] a shell
//! sends the request through.
//!
//! A WebSocket opening handshake is the one upgrade passed on: it reaches the application only
//! where any request from that visitor would (the gate decides that before forwarding), and the
//! application's `101` comes back with the upgraded connection it handed over, which the shell
//! that serves the visitor joins to the visitor's own.

use std::net::IpAddr;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::Request;
use axum::http::uri::PathAndQuery;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};
use axum::response::{IntoResponse, Response};
use futures::future::{select, Either};

use super::client::Client;
use super::error::AppError;
use super::public::add_no_store_and_cookies;
use super::stall::Stalling;
use super::state::Service;
use crate::error::ErrorCode;
use crate::room::RoomId;
use crate::token::Place;

/// How long the application may take to start its answer, and then between two pieces of its
/// body, unless a deployment says otherwise.
pub const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 60_000;
/// How long a request body may take to arrive (the API's), or pause (one forwarded), unless a
/// deployment says otherwise.
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 10_000;

/// The client's address as the shell saw it: the TCP peer on the origin, the address Cloudflare
/// reports at the edge. Shells put it into every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The admitted visitor a request is forwarded for.
#[derive(Debug, Clone, Copy)]
pub struct Visitor<'a> {
    pub room: &'a RoomId,
    pub place: Place,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError(pub String);

/// The application behind the gate. A request handed to [`Upstream::send`] already follows the
/// header policy; its URI is the path and query to ask for, which the upstream puts under its own
/// base URL. When the request is a WebSocket handshake and the application switches protocols,
/// the `101` answer carries the upstream's side of the upgraded connection in its extensions
/// (hyper's `OnUpgrade` on the origin, the runtime's `WebSocket` at the edge): the request layer
/// leaves them there for the shell.
#[async_trait]
pub trait Upstream: Send + Sync + 'static {
    async fn send(&self, req: Request) -> Result<Response, UpstreamError>;
}

/// Forwards the request to the upstream, adding `set_cookies` to the answer.
pub async fn forward(
    s: &Service,
    req: Request,
    visitor: Option<Visitor<'_>>,
    set_cookies: &[String],
) -> Response {
    let websocket = is_websocket_handshake(&req);
    let mut response = match prepare(req, visitor, websocket) {
        Ok(req) => {
            // A client that stops sending the body halfway does not hold the upstream for ever.
            let req = req
                .map(|body| Body::new(Stalling::new(body, s.platform.clone(), s.body_timeout_ms)));
            let sent = s.upstream.send(req);
            let timeout = s.platform.sleep(s.upstream_timeout_ms);
            match select(sent, timeout).await {
                Either::Left((Ok(response), _))
                    if response.status() == StatusCode::SWITCHING_PROTOCOLS =>
                {
                    switched(response, websocket)
                }
                Either::Left((Ok(response), _)) => {
                    // Nor does an application that stops sending its answer halfway.
                    let mut response = response.map(|body| {
                        Body::new(Stalling::new(
                            body,
                            s.platform.clone(),
                            s.upstream_timeout_ms,
                        ))
                    });
                    clean_response_headers(response.headers_mut());
                    response
                }
                Either::Left((Err(UpstreamError(message)), _)) => AppError::new(
                    ErrorCode::UpstreamUnavailable,
                    format!("the upstream could not be reached: {message}"),
                )
                .into_response(),
                Either::Right(_) => AppError::new(
                    ErrorCode::UpstreamUnavailable,
                    format!(
                        "the upstream did not answer within {} ms",
                        s.upstream_timeout_ms
                    ),
                )
                .into_response(),
            }
        }
        Err(err) => err.into_response(),
    };
    if take_commands(response.headers_mut()) == Some(Command::Revoke) {
        if let Some(visitor) = visitor {
            revoke(s, visitor).await;
        }
    }
    if !set_cookies.is_empty() {
        // The response carries a visitor's new pass: no cache may keep it.
        add_no_store_and_cookies(response.headers_mut(), set_cookies);
    }
    response
}

/// The header an application answers with to tell queuegate something about the visitor; it
/// never reaches the visitor.
pub const COMMAND_HEADER: &str = "x-queuegate-command";

/// What an application can tell queuegate in [`COMMAND_HEADER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// End this visitor's session now and free its slot (the purchase is done, the visitor
    /// signed out).
    Revoke,
}

/// Removes every [`COMMAND_HEADER`] from the application's answer; the command it names, if
/// any (an unknown one is ignored: the application may be newer than queuegate).
fn take_commands(headers: &mut HeaderMap) -> Option<Command> {
    let revoke = headers
        .get_all(COMMAND_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|c| c.trim().eq_ignore_ascii_case("revoke"));
    headers.remove(COMMAND_HEADER);
    revoke.then_some(Command::Revoke)
}

/// Ends the visitor's session, as an operator's revocation does. A failure is logged: the
/// application's answer still goes to the visitor, and the session ends by its TTL.
async fn revoke(s: &Service, visitor: Visitor<'_>) {
    let now = s.now();
    let ended = match s.store.room(visitor.room, now).await {
        Ok(Some(record)) => super::public::end(s, &record, visitor.place, now)
            .await
            .map_err(|e| e.0.to_string()),
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    };
    match ended {
        Ok(_) => s.metrics.revoked_by_application(visitor.room),
        Err(error) => tracing::warn!(
            room = %visitor.room,
            visitor = %visitor.place.ticket_id(),
            %error,
            "the application's revoke could not be carried out"
        ),
    }
}

/// Whether the request opens a WebSocket (RFC 6455, 4.1): a GET over HTTP/1.1 asking to
/// upgrade to `websocket`. Any other upgrade (h2c, TLS) is the hop's business and is dropped.
fn is_websocket_handshake(req: &Request) -> bool {
    req.method() == Method::GET
        && req.version() == Version::HTTP_11
        && has_token(req.headers(), header::UPGRADE, "websocket")
        && has_token(req.headers(), header::CONNECTION, "upgrade")
}

/// Whether a comma-separated header names `token`, in any case.
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// `Upgrade` and `Connection` are hop-by-hop: a proxy that passes a WebSocket on says them again
/// itself, on each side, and nothing else the client put in `Connection`.
fn say_websocket(headers: &mut HeaderMap) {
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
}

/// The application's `101`: passed on, with its `Sec-WebSocket-*` headers and the upgraded
/// connection in its extensions, when it switched to the WebSocket the visitor asked for; a 502
/// otherwise, as an application that switches to anything else is not one the gate can pass on.
fn switched(response: Response, websocket: bool) -> Response {
    let (mut parts, _) = response.into_parts();
    if !websocket || !has_token(&parts.headers, header::UPGRADE, "websocket") {
        return AppError::new(
            ErrorCode::UpstreamUnavailable,
            "the upstream switched to a protocol the visitor did not ask for",
        )
        .into_response();
    }
    clean_response_headers(&mut parts.headers);
    say_websocket(&mut parts.headers);
    // A 101 has no body: what follows it is the other protocol's.
    Response::from_parts(parts, Body::empty())
}

/// The request as the upstream gets it: the same method, path, query and body; headers by the
/// policy; and a WebSocket handshake still one.
fn prepare(
    req: Request,
    visitor: Option<Visitor<'_>>,
    websocket: bool,
) -> Result<Request, AppError> {
    let client = req
        .extensions()
        .get::<Client>()
        .cloned()
        .unwrap_or_default();
    let (mut parts, body) = req.into_parts();
    let proto = if client.https { "https" } else { "http" };
    let host = parts.headers.get(header::HOST).cloned().or_else(|| {
        let authority = parts.uri.authority()?;
        HeaderValue::from_str(authority.as_str()).ok()
    });
    let target = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    parts.uri = Uri::from(target);
    parts.extensions = Default::default();
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    if websocket {
        say_websocket(headers);
    }
    strip_queuegate_cookies(headers);
    strip_queuegate_headers(headers);
    for name in [header::HOST, header::FORWARDED] {
        headers.remove(name);
    }
    for name in [
        "x-forwarded-host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-real-ip",
    ] {
        headers.remove(name);
    }
    if let Some(host) = host {
        headers.insert("x-forwarded-host", host);
    }
    if let Some(chain) = client.forwarded_for {
        let chain = HeaderValue::from_str(&chain)
            .map_err(|_| AppError::new(ErrorCode::InvalidRequest, "an X-Forwarded-For"))?;
        headers.insert("x-forwarded-for", chain);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    if let Some(v) = visitor {
        if let Ok(room) = HeaderValue::from_str(v.room.as_str()) {
            headers.insert("x-queuegate-room", room);
        }
        if let Ok(id) = HeaderValue::from_str(&v.place.ticket_id()) {
            headers.insert("x-queuegate-visitor", id);
        }
    }
    Ok(Request::from_parts(parts, body))
}

/// Hop-by-hop headers (RFC 9110, 7.6.1), `Proxy-Connection` among them, and every header the
/// message's `Connection` header names. `HTTP2-Settings` belongs only to an `h2c` upgrade, which
/// is never passed on; it is dropped by name because at the edge the front consumes `Connection`
/// before the worker could read what it names.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "http2-settings",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
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

/// The upstream's answer as the visitor gets it: without hop-by-hop headers.
pub fn clean_response_headers(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
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

/// Only queuegate names the visitor to the application, in any spelling an application might
/// read it by (servers that hand headers to CGI-style code turn `_` into `-`).
fn strip_queuegate_headers(headers: &mut HeaderMap) {
    let ours: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().replace('_', "-").starts_with("x-queuegate-"))
        .cloned()
        .collect();
    for name in ours {
        headers.remove(name);
    }
}

/// The built-in demo application, for a deployment without an upstream: a page that shows the
/// visitor the gate let through, read from the headers the policy sets, as an application would.
pub struct Demo {
    pub prefix: String,
}

#[async_trait]
impl Upstream for Demo {
    async fn send(&self, req: Request) -> Result<Response, UpstreamError> {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        let room = header("x-queuegate-room").and_then(|r| RoomId::parse(r).ok());
        let visitor = header("x-queuegate-visitor");
        let body = crate::page::demo_page(&self.prefix, room.as_ref().zip(visitor));
        Ok((
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            Body::from(body),
        )
            .into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request from 203.0.113.9 (no trusted proxies), as the request layer sees it.
    fn request(headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().uri("https://edge.example/shop/cart?x=1");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut req = builder.body(Body::empty()).unwrap();
        let peer = Some("203.0.113.9".parse().unwrap());
        let client = super::super::client::client_of(req.headers(), req.uri(), peer, &[]);
        req.extensions_mut().insert(client);
        req
    }

    #[test]
    fn the_upstream_gets_the_path_and_the_forwarded_headers_queuegate_sets() {
        let room = RoomId::parse("shop").unwrap();
        let place = Place {
            epoch: 1,
            shard: 0,
            seq: 7,
        };
        let req = request(&[
            ("host", "shop.example"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-proto", "gopher"),
            ("x-queuegate-visitor", "forged"),
            ("X-Queuegate-Anything", "forged"),
            ("x_queuegate_visitor", "forged"),
            ("forwarded", "for=198.51.100.1;proto=https"),
            ("x-real-ip", "198.51.100.1"),
            ("cookie", "a=1; qg_ticket_shop=t; qg_pass_shop=p; b=2"),
        ]);
        let out = prepare(req, Some(Visitor { room: &room, place }), false).unwrap();
        assert_eq!(out.uri(), "/shop/cart?x=1");
        let h = out.headers();
        assert_eq!(h["x-forwarded-host"], "shop.example");
        // The client's own X-Forwarded-For is not believed: it came from no trusted proxy.
        assert_eq!(h["x-forwarded-for"], "203.0.113.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-queuegate-visitor"], "00000001-0-7");
        assert_eq!(h["x-queuegate-room"], "shop");
        assert!(h.get("x-queuegate-anything").is_none());
        assert!(h.get("x_queuegate_visitor").is_none());
        assert!(h.get("forwarded").is_none());
        assert!(h.get("x-real-ip").is_none());
        assert_eq!(h["cookie"], "a=1; b=2");
        assert!(h.get("host").is_none());
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_dropped() {
        let req = request(&[
            ("connection", "close, x-private"),
            ("proxy-connection", "keep-alive"),
            ("x-private", "1"),
            ("x-kept", "1"),
            ("transfer-encoding", "chunked"),
        ]);
        let out = prepare(req, None, false).unwrap();
        let h = out.headers();
        assert!(h.contains_key("x-kept"));
        for gone in [
            "connection",
            "proxy-connection",
            "x-private",
            "transfer-encoding",
            "x-queuegate-visitor",
        ] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        // A visitor cannot name queuegate's own headers for removal: they are set after.
        let room = RoomId::parse("r").unwrap();
        let place = Place {
            epoch: 1,
            shard: 0,
            seq: 1,
        };
        let req = request(&[("connection", "x-queuegate-visitor, x-forwarded-for")]);
        let out = prepare(req, Some(Visitor { room: &room, place }), false).unwrap();
        assert!(out.headers().contains_key("x-queuegate-visitor"));
        assert_eq!(out.headers()["x-forwarded-for"], "203.0.113.9");
    }

    /// A WebSocket handshake from `203.0.113.9`, with `extra` headers.
    fn handshake(extra: &[(&str, &str)]) -> Request {
        let mut headers = vec![
            ("host", "shop.example"),
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
            ("sec-websocket-protocol", "chat"),
        ];
        headers.extend_from_slice(extra);
        request(&headers)
    }

    #[test]
    fn a_websocket_handshake_is_passed_on_as_one_under_the_same_policy() {
        let req = handshake(&[
            ("keep-alive", "timeout=5"),
            ("cookie", "a=1; qg_pass_shop=p"),
            ("x-queuegate-visitor", "forged"),
        ]);
        assert!(is_websocket_handshake(&req));
        let room = RoomId::parse("shop").unwrap();
        let place = Place {
            epoch: 1,
            shard: 0,
            seq: 7,
        };
        let out = prepare(req, Some(Visitor { room: &room, place }), true).unwrap();
        let h = out.headers();
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "Upgrade");
        assert_eq!(h["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(h["sec-websocket-version"], "13");
        assert_eq!(h["sec-websocket-protocol"], "chat");
        assert!(h.get("keep-alive").is_none());
        assert_eq!(h["cookie"], "a=1");
        assert_eq!(h["x-queuegate-visitor"], "00000001-0-7");
        assert_eq!(h["x-forwarded-for"], "203.0.113.9");
    }

    #[test]
    fn only_a_get_over_http_1_1_upgrading_to_websocket_is_a_handshake() {
        assert!(is_websocket_handshake(&request(&[
            ("upgrade", "WebSocket"),
            ("connection", "upgrade"),
        ])));
        let not = |req: Request| assert!(!is_websocket_handshake(&req), "{req:?}");
        not(request(&[
            ("upgrade", "h2c"),
            ("connection", "Upgrade, HTTP2-Settings"),
        ]));
        not(request(&[("upgrade", "websocket")]));
        not(request(&[("connection", "upgrade")]));
        not(request(&[
            ("upgrade", "websocket2"),
            ("connection", "upgrade"),
        ]));
        let mut post = handshake(&[]);
        *post.method_mut() = Method::POST;
        not(post);
        let mut http10 = handshake(&[]);
        *http10.version_mut() = Version::HTTP_10;
        not(http10);
        // Any other upgrade is dropped, as every hop-by-hop header is.
        let h2c = request(&[
            ("upgrade", "h2c"),
            ("connection", "Upgrade, HTTP2-Settings"),
        ]);
        let out = prepare(h2c, None, false).unwrap();
        assert!(out.headers().get("upgrade").is_none());
        assert!(out.headers().get("connection").is_none());
    }

    #[derive(Clone)]
    struct UpstreamSide;

    fn switching(upgrade: &str) -> Response {
        let mut response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", upgrade)
            .header("connection", "upgrade, x-private")
            .header("x-private", "1")
            .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            .header("sec-websocket-protocol", "chat")
            .body(Body::from("never"))
            .unwrap();
        response.extensions_mut().insert(UpstreamSide);
        response
    }

    #[test]
    fn the_applications_101_comes_back_with_its_upgraded_side() {
        let out = switched(switching("websocket"), true);
        assert_eq!(out.status(), StatusCode::SWITCHING_PROTOCOLS);
        let h = out.headers();
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "Upgrade");
        assert_eq!(h["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(h["sec-websocket-protocol"], "chat");
        assert!(h.get("x-private").is_none());
        assert!(out.extensions().get::<UpstreamSide>().is_some());
        assert!(http_body::Body::is_end_stream(out.body()));
    }

    #[test]
    fn a_101_nobody_asked_for_is_a_502() {
        for (upgrade, asked) in [("websocket", false), ("h2c", true)] {
            let out = switched(switching(upgrade), asked);
            assert_eq!(out.status(), StatusCode::BAD_GATEWAY, "{upgrade} {asked}");
            assert!(out.extensions().get::<UpstreamSide>().is_none());
        }
    }

    #[test]
    fn without_a_host_the_clients_forwarded_host_is_not_passed_on() {
        let req = Request::builder()
            .uri("/x")
            .header("x-forwarded-host", "evil.example")
            .body(Body::empty())
            .unwrap();
        let out = prepare(req, None, false).unwrap();
        assert!(out.headers().get("x-forwarded-host").is_none());
        assert_eq!(out.headers()["x-forwarded-proto"], "http");
    }
}
