//! The origin binary as an operator starts it: flags that shape the process itself.

mod support;

use support::process::OriginProcess;

/// The runtime's worker threads, by the name tokio gives them (`/proc/PID/task/*/comm`).
fn runtime_workers(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the process's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "tokio-rt-worker")
        .count()
}

#[test]
fn workers_sets_the_runtimes_worker_threads() {
    for n in [1, 3] {
        let origin = OriginProcess::start(&["--workers", &n.to_string()]);
        let pid = origin.pid().expect("running");
        assert_eq!(runtime_workers(pid), n, "--workers {n}");
    }
}

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn connect(origin: &OriginProcess) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", origin.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("a read timeout");
    stream
}

/// A fresh connection's `GET /_qg/v1/healthz`, waiting up to `within` for the answer.
fn health(origin: &OriginProcess, within: Duration) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", origin.port)).ok()?;
    stream.set_read_timeout(Some(within)).ok()?;
    stream
        .write_all(b"GET /_qg/v1/healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// Whether the server has closed the connection (or answered and closed it).
fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    match stream.read(&mut buf) {
        // End of stream, or the server's last words before it closed.
        Ok(0) | Ok(_) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn slow_request_heads_are_cut_off_by_the_header_timeout() {
    let origin = OriginProcess::start(&["--header-timeout-ms", "1000"]);
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = connect(&origin);
            s.write_all(b"GET /_qg/v1/healthz HTTP/1.1\r\nHost: test\r\n")
                .unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    // A header line every 200 ms, the way slowloris keeps a head from ever ending.
    while !slow.is_empty() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
        slow.retain_mut(|s| s.write_all(b"X-Slow: 1\r\n").is_ok() && !closed(s));
    }
    assert!(
        slow.is_empty(),
        "{} slow heads still open after 10 s",
        slow.len()
    );
    assert!(health(&origin, Duration::from_secs(5)).is_some_and(|a| a.starts_with("HTTP/1.1 200")));
}

#[test]
fn health_answers_while_a_thousand_connections_sit_idle() {
    let origin = OriginProcess::start(&[]);
    let idle: Vec<TcpStream> = (0..1000).map(|_| connect(&origin)).collect();
    let answer = health(&origin, Duration::from_secs(5)).expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(idle);
}

#[test]
fn idle_connections_cannot_lock_out_a_server_with_few_files() {
    // 256 files: the connection limit stays below it (no accept fails for want of a file), and
    // a connection that sends nothing is closed at the header timeout, making room.
    let origin = OriginProcess::start_with_file_limit(&["--header-timeout-ms", "2000"], Some(256));
    let idle: Vec<TcpStream> = (0..300).map(|_| connect(&origin)).collect();
    let answer = health(&origin, Duration::from_secs(10)).expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        !origin.log_text().contains("accept failed"),
        "{}",
        origin.log_text()
    );
    drop(idle);
}

#[test]
fn a_request_head_over_the_limit_gets_431() {
    let origin = OriginProcess::start(&["--max-header-bytes", "8192"]);
    let mut stream = connect(&origin);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let big = "x".repeat(20 * 1024);
    let _ = stream.write_all(
        format!("GET /_qg/v1/healthz HTTP/1.1\r\nHost: test\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    );
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[test]
fn sigterm_ends_the_process_within_its_deadline_with_a_request_half_sent() {
    let mut origin = OriginProcess::start(&["--shutdown-timeout-ms", "1000"]);
    let mut half = connect(&origin);
    half.write_all(
        b"POST /_qg/v1/rooms/demo/join HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n{\"us",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    origin.signal("TERM");
    // The body would be waited for 10 s (the body timeout); the deadline is 1 s.
    let status = origin
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("still running 5 s after SIGTERM: {}", origin.log_text()));
    assert!(status.success(), "{status}");
    assert!(signalled.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_connection_idle_after_its_request_is_closed() {
    let origin = OriginProcess::start(&["--idle-timeout-ms", "1000"]);
    let mut stream = connect(&origin);
    stream
        .write_all(b"GET /_qg/v1/healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Kept alive for a second, then closed.
    let started = Instant::now();
    while !closed(&mut stream) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still open after 5 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_body_that_does_not_arrive_gets_408() {
    let origin = OriginProcess::start(&["--body-timeout-ms", "1000"]);
    let mut stream = connect(&origin);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(
            b"POST /_qg/v1/rooms/demo/join HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n{\"us",
        )
        .unwrap();
    let mut answer = [0u8; 4096];
    let n = stream.read(&mut answer).unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

#[test]
fn the_admin_api_can_listen_apart() {
    let admin_port = support::redis::free_port();
    let origin = OriginProcess::start(&["--admin-listen", &format!("127.0.0.1:{admin_port}")]);
    let get = |port: u16, path: &str| {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(
                format!(
                    "GET {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
                    support::ADMIN_KEY
                )
                .as_bytes(),
            )
            .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    assert!(get(admin_port, "/_qg/v1/admin/rooms").starts_with("HTTP/1.1 200"));
    assert!(get(origin.port, "/_qg/v1/admin/rooms").starts_with("HTTP/1.1 404"));
    assert!(get(origin.port, "/_qg/v1/metrics").starts_with("HTTP/1.1 404"));
    assert!(get(admin_port, "/_qg/v1/metrics").starts_with("HTTP/1.1 200"));
}

#[test]
fn a_short_admin_key_is_refused_at_start() {
    let output = std::process::Command::new(support::process::origin_binary())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("QUEUEGATE_ADMIN_KEY", "too-short")
        .output()
        .expect("the origin runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("at least 32 bytes"), "{stderr}");
}

// WebSockets through the origin: the bounds of the listener hold for a tunnel too.

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// The origin before `upstream`, its one room protecting `/sale` only (without a configuration
/// the demo room protects every path, and a WebSocket is no navigation, so it would be held).
fn websocket_origin(upstream: &support::Upstream, args: &[&str]) -> OriginProcess {
    let config =
        std::env::temp_dir().join(format!("queuegate-ws-{}.toml", support::redis::free_port()));
    std::fs::write(
        &config,
        "[rooms.sale]\npaths = [\"/sale\"]\nmax_active = 5\nadmit_per_minute = 60\n",
    )
    .expect("a configuration file");
    let url = upstream.url();
    let mut all = vec![
        "--config",
        config.to_str().expect("a UTF-8 path"),
        "--upstream",
        &url,
    ];
    all.extend_from_slice(args);
    OriginProcess::start(&all)
}

/// A WebSocket through the origin to the test application, on a path no room protects.
async fn websocket(
    origin: &OriginProcess,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("ws://127.0.0.1:{}/free/ws", origin.port);
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("the handshake: {e}: {}", origin.log_text()));
    // The application speaks first: the handshake it saw.
    let first = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
    assert!(matches!(first, Ok(Some(Ok(Message::Text(_))))), "{first:?}");
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_keeps_its_place_among_the_connections() {
    let upstream = support::Upstream::start().await;
    let origin = websocket_origin(&upstream, &["--max-connections", "1"]);
    let mut socket = websocket(&origin).await;
    // The one connection the origin takes is the tunnel's: the next waits to be accepted.
    let mut next = tokio::net::TcpStream::connect(("127.0.0.1", origin.port))
        .await
        .expect("connect");
    next.write_all(b"GET /_qg/v1/healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // Nothing can come while the tunnel is open; half a second is enough to see that it does not.
    let early = tokio::time::timeout(Duration::from_millis(500), next.read_to_end(&mut answer));
    assert!(
        early.await.is_err(),
        "answered beside an open tunnel: {}",
        String::from_utf8_lossy(&answer)
    );
    socket
        .send(Message::Text("still here".into()))
        .await
        .unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
    assert!(matches!(echoed, Ok(Some(Ok(Message::Text(t)))) if t == "still here"));
    socket.close(None).await.unwrap();
    drop(socket);
    // The tunnel's end gives its place to the connection that waited.
    tokio::time::timeout(Duration::from_secs(10), next.read_to_end(&mut answer))
        .await
        .expect("answered once the tunnel closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_with_nothing_moving_is_closed_at_the_idle_timeout() {
    let upstream = support::Upstream::start().await;
    let origin = websocket_origin(&upstream, &["--idle-timeout-ms", "1000"]);
    let mut socket = websocket(&origin).await;
    // Busy for two and a half idle timeouts: kept open.
    let started = Instant::now();
    let mut last = Instant::now();
    while started.elapsed() < Duration::from_millis(2_500) {
        socket.send(Message::Text("busy".into())).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
        assert!(
            matches!(echoed, Ok(Some(Ok(Message::Text(ref t)))) if t.as_str() == "busy"),
            "{echoed:?} after {:?}",
            started.elapsed()
        );
        last = Instant::now();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Then quiet: closed, the way an idle keep-alive connection is, a timeout after the last
    // byte.
    let ended = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
    assert!(
        matches!(ended, Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_))))),
        "{ended:?}"
    );
    assert!(
        last.elapsed() >= Duration::from_millis(900),
        "{:?}",
        last.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_websockets_without_waiting_for_them() {
    let upstream = support::Upstream::start().await;
    let mut origin = websocket_origin(&upstream, &["--shutdown-timeout-ms", "20000"]);
    let mut socket = websocket(&origin).await;
    let signalled = Instant::now();
    origin.signal("TERM");
    let ended = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
    assert!(
        matches!(ended, Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_))))),
        "{ended:?}"
    );
    let status = tokio::task::block_in_place(|| origin.wait_exit(Duration::from_secs(5)))
        .expect("the process ends long before its shutdown deadline");
    assert!(status.success(), "{status}");
    assert!(signalled.elapsed() < Duration::from_secs(10));
}
