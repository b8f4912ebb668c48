//! WebSockets through the gate: an admitted visitor's handshake reaches the application, which
//! answers `101`, and the connection then carries messages both ways; anyone the gate holds gets
//! the answer a plain request from them would get, never a `101`; any other upgrade stays the
//! hop's business. The test application's `/<segment>/ws` first says which headers its handshake
//! had, then echoes (tests/support/mod.rs).

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{now_ms, pass_of, ticket_of, unique};
use crate::support::{raw_body, raw_request, Reply, Target};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What a WebSocket handshake got: the open socket, or the HTTP answer that refused it.
enum Opened {
    Socket(Box<Socket>, reqwest::header::HeaderMap),
    Refused {
        status: u16,
        headers: reqwest::header::HeaderMap,
        body: String,
    },
}

/// Opens a WebSocket to `path` with `cookie` (if any), asking for the `chat` subprotocol.
async fn open(t: &Target, path: &str, cookie: Option<&str>) -> Opened {
    let url = t.url(path).replacen("http://", "ws://", 1);
    let mut req = url.into_client_request().expect("a handshake");
    let headers = req.headers_mut();
    headers.insert("sec-websocket-protocol", "chat".parse().unwrap());
    if let Some(cookie) = cookie {
        headers.insert("cookie", cookie.parse().unwrap());
    }
    let connect = tokio_tungstenite::connect_async(req);
    match tokio::time::timeout(std::time::Duration::from_secs(30), connect)
        .await
        .expect("the handshake is answered within 30 s")
    {
        Ok((socket, response)) => Opened::Socket(Box::new(socket), response.headers().clone()),
        Err(WsError::Http(response)) => Opened::Refused {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned(),
        },
        Err(err) => panic!("the handshake to {path} failed: {err}"),
    }
}

/// The same handshake from the HTTP client, for the whole body of a refusal: a WebSocket client
/// hands back only the part of it that arrived with the head (under `wrangler dev`, often none).
async fn refused_over_http(t: &Target, path: &str, cookie: Option<&str>) -> Reply {
    let mut req = t
        .client
        .get(t.url(path))
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", "chat");
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    t.send(req).await
}

/// The next data message, skipping pings.
async fn next(socket: &mut Socket) -> Message {
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("a message");
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

/// The headers the application saw in the handshake: its first message.
async fn handshake_seen(socket: &mut Socket) -> Value {
    match next(socket).await {
        Message::Text(text) => serde_json::from_str(&text).expect("JSON"),
        other => panic!("the application's first message: {other:?}"),
    }
}

/// Messages go both ways: the application echoes what the visitor sends, text and binary.
async fn echoes(socket: &mut Socket) {
    for message in [
        Message::Text("hello through the gate".into()),
        Message::Binary(vec![0u8, 1, 2, 255].into()),
    ] {
        socket.send(message.clone()).await.expect("sent");
        assert_eq!(next(socket).await, message);
    }
    let _ = socket.close(None).await;
}

pub async fn an_admitted_visitors_websocket_reaches_the_application(t: &Target) {
    let room = unique("ws");
    t.put_room(
        &room,
        json!({"max_active": 5, "paths": [format!("/{room}")]}),
    )
    .await;
    t.pause(&room).await;
    let ticket = ticket_of(&t.join(&room, None).await);
    assert_eq!(t.admit(&room, 1).await, 1);
    let pass = pass_of(&t.status(&room, &ticket).await);
    let cookie = format!("a=1; qg_ticket_{room}={ticket}; qg_pass_{room}={pass}; b=2");
    let Opened::Socket(mut socket, headers) = open(t, &format!("/{room}/ws"), Some(&cookie)).await
    else {
        panic!("an admitted visitor's handshake was refused");
    };
    assert_eq!(
        headers.get("sec-websocket-protocol").map(|v| v.as_bytes()),
        Some(&b"chat"[..]),
        "{headers:?}"
    );
    let seen = handshake_seen(&mut socket).await;
    let place = queuegate::Pass::decode(
        &pass,
        &t.keys,
        &queuegate::RoomId::parse(&room).unwrap(),
        now_ms(),
    )
    .unwrap()
    .place;
    assert_eq!(seen["x-queuegate-visitor"][0], place.ticket_id(), "{seen}");
    assert_eq!(seen["x-queuegate-room"][0], room.as_str(), "{seen}");
    assert_eq!(seen["cookie"][0], "a=1; b=2", "{seen}");
    assert_eq!(seen["upgrade"][0], "websocket", "{seen}");
    assert!(seen["sec-websocket-key"][0].is_string(), "{seen}");
    echoes(&mut socket).await;
}

/// A handshake past half the pass's life renews it as a plain request would: the `101` carries
/// the new pass, and the WebSocket still opens.
pub async fn a_websocket_handshake_renews_the_pass(t: &Target) {
    let room = unique("wsrenew");
    t.put_room(
        &room,
        json!({"max_active": 5, "session_ttl_s": 4, "paths": [format!("/{room}")]}),
    )
    .await;
    t.pause(&room).await;
    let ticket = ticket_of(&t.join(&room, None).await);
    assert_eq!(t.admit(&room, 1).await, 1);
    let pass = pass_of(&t.status(&room, &ticket).await);
    let name = format!("qg_pass_{room}");
    t.advance(std::time::Duration::from_millis(2_500)).await;
    let cookie = format!("{name}={pass}");
    let Opened::Socket(mut socket, headers) = open(t, &format!("/{room}/ws"), Some(&cookie)).await
    else {
        panic!("an admitted visitor's handshake was refused");
    };
    let renewed = headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|c| c.to_str().ok())
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap_or("").to_owned())
        .unwrap_or_else(|| panic!("a renewed pass on the 101: {headers:?}"));
    assert_ne!(renewed, pass);
    assert_eq!(
        headers.get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..]),
        "{headers:?}"
    );
    let seen = handshake_seen(&mut socket).await;
    assert_eq!(seen["cookie"].get(0), None, "{seen}");
    echoes(&mut socket).await;
}

/// The waiting answer a plain page request with `cookie` gets, as the status, the gate's
/// `x-queuegate-status` and whether a ticket cookie came with it.
fn waiting_answer(status: u16, headers: &reqwest::header::HeaderMap) -> (u16, String, bool) {
    let gate_status = headers
        .get("x-queuegate-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let ticket = headers
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap_or("").starts_with("qg_ticket_"));
    (status, gate_status, ticket)
}

pub async fn a_websocket_from_anyone_the_gate_holds_gets_the_waiting_answer(t: &Target) {
    let room = unique("wswait");
    t.put_room(
        &room,
        json!({"max_active": 1, "paths": [format!("/{room}")]}),
    )
    .await;
    t.pause(&room).await;
    let ticket = ticket_of(&t.join(&room, None).await);
    let forged = format!("qg_pass_{room}=forged.pass");
    let path = format!("/{room}/ws");
    for (who, cookie) in [
        (
            "a waiting visitor",
            Some(format!("qg_ticket_{room}={ticket}")),
        ),
        ("a visitor with no pass", None),
        ("a visitor with a forged pass", Some(forged)),
    ] {
        let cookies: Vec<(String, String)> = cookie
            .iter()
            .filter_map(|c| c.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        // The same request without the upgrade: like a handshake, it is no page navigation, so
        // it takes no place either.
        let plain = t
            .request(
                reqwest::Method::GET,
                &path,
                &cookies,
                &[
                    ("sec-fetch-mode", "websocket"),
                    ("sec-fetch-dest", "websocket"),
                ],
            )
            .await;
        assert!(
            plain.header("x-upstream").is_none(),
            "{who}: {}",
            plain.text
        );
        let expected = waiting_answer(plain.status, &plain.headers);
        assert_eq!(expected.1, "waiting", "{who}: {}", plain.text);
        match open(t, &path, cookie.as_deref()).await {
            Opened::Socket(..) => panic!("{who} got a 101"),
            Opened::Refused {
                status,
                headers,
                body,
            } => {
                assert_eq!(waiting_answer(status, &headers), expected, "{who}: {body}");
                assert!(headers.get("x-upstream").is_none(), "{who}: {body}");
                let whole = refused_over_http(t, &path, cookie.as_deref()).await;
                assert_eq!(whole.status, status, "{who}: {}", whole.text);
                assert!(
                    whole.text.contains("You are in line"),
                    "{who}: {}",
                    whole.text
                );
            }
        }
    }
    let view = t.room(&room).await;
    assert_eq!(
        view["stats"]["admitted_total"], 0,
        "nobody got in on the way: {view}"
    );
}

pub async fn websockets_on_unprotected_paths_pass_straight_through(t: &Target) {
    let room = unique("wsfree");
    t.put_room(
        &room,
        json!({"max_active": 1, "paths": [format!("/{room}")]}),
    )
    .await;
    t.pause(&room).await;
    let path = format!("/{room}-not-this/ws");
    let Opened::Socket(mut socket, _) = open(t, &path, Some("a=1")).await else {
        panic!("a handshake on an unprotected path was refused");
    };
    let seen = handshake_seen(&mut socket).await;
    assert!(seen.get("x-queuegate-visitor").is_none(), "{seen}");
    assert_eq!(seen["cookie"][0], "a=1", "{seen}");
    echoes(&mut socket).await;
}

/// Only a WebSocket is passed on: an admitted visitor's `Upgrade: h2c` reaches the application
/// as the plain request it also is, without its hop-by-hop headers.
pub async fn other_upgrades_never_reach_the_application(t: &Target) {
    let room = unique("h2c");
    t.put_room(
        &room,
        json!({"max_active": 1, "paths": [format!("/{room}")]}),
    )
    .await;
    t.pause(&room).await;
    let ticket = ticket_of(&t.join(&room, None).await);
    t.admit(&room, 1).await;
    let pass = pass_of(&t.status(&room, &ticket).await);
    let head = format!(
        "GET /{room}/echo HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nCookie: qg_pass_{room}={pass}\r\n\r\n",
        t.base.trim_start_matches("http://")
    );
    let answer = raw_request(&t.base, head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let echo: Value = serde_json::from_str(&raw_body(&answer)).expect("the echo");
    let gone = ["upgrade", "connection", "http2-settings"];
    for gone in gone {
        assert!(
            echo.get(gone).is_none(),
            "{gone} reached the application: {echo}"
        );
    }
    assert!(echo["x-queuegate-visitor"][0].is_string(), "{echo}");
}
