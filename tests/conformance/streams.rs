//! Pushed updates: `GET /rooms/{room}/stream` sends the visitor's answer as server-sent events
//! when it changes, resumes after a reconnection without repeating itself, and ends with the
//! wait.

use std::time::Duration;

use serde_json::{json, Value};

use super::{assert_error, ticket_of, unique};
use crate::support::Target;

/// One visitor's event stream, read frame by frame.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

/// What a frame of the stream carried.
#[derive(Debug)]
enum Frame {
    Event { id: String, data: Value },
    Error(Value),
    End,
}

impl Events {
    async fn open(t: &Target, room: &str, ticket: &str, last_id: Option<&str>) -> Events {
        let mut req = t
            .client
            .get(t.api(&format!("/rooms/{room}/stream")))
            .bearer_auth(ticket);
        if let Some(id) = last_id {
            req = req.header("last-event-id", id);
        }
        let response = req.send().await.expect("the stream opens");
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert_eq!(content_type, "text/event-stream");
        assert_eq!(response.headers()["cache-control"], "no-store");
        Events {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments, `retry` and heartbeats skipped), or `None` if none came
    /// `within`.
    async fn next(&mut self, within: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    frame
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(str::to_owned)
                };
                let Some(data) = field("data: ") else {
                    continue;
                };
                if field("event: ").as_deref() == Some("heartbeat") {
                    continue;
                }
                let data: Value = serde_json::from_str(&data).expect("JSON data");
                if field("event: ").as_deref() == Some("error") {
                    return Some(Frame::Error(data));
                }
                let id = field("id: ").expect("an event has an id");
                return Some(Frame::Event { id, data });
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await;
            match chunk {
                Err(_) => return None,
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) => return Some(Frame::End),
                Ok(Err(e)) => panic!("the stream broke: {e}"),
            }
        }
    }

    async fn event(&mut self, within: Duration) -> (String, Value) {
        match self.next(within).await {
            Some(Frame::Event { id, data }) => (id, data),
            other => panic!("an event within {within:?}, got {other:?}"),
        }
    }
}

pub async fn a_stream_pushes_each_change_of_the_answer(t: &Target) {
    let room = unique("stream");
    // One shard: every target knows a waiting visitor's exact place (at the edge, a place in a
    // room of several shards is estimated from summaries up to a second old).
    t.put_room(&room, json!({"max_active": 5, "shards": 1}))
        .await;
    t.pause(&room).await;
    let first = ticket_of(&t.join(&room, None).await);
    let second = ticket_of(&t.join(&room, None).await);
    let third = ticket_of(&t.join(&room, None).await);

    // The answer now, at once: the same JSON a status call gives.
    let mut stream = Events::open(t, &room, &second, None).await;
    let (_, now) = stream.event(Duration::from_secs(5)).await;
    assert_eq!(now["status"], "waiting", "{now}");
    assert_eq!(now["position"], 2, "{now}");
    assert!(now["ticket"].is_string(), "a renewed ticket: {now}");
    // Nothing changes, nothing is sent.
    assert!(stream.next(Duration::from_millis(2_500)).await.is_none());
    // The one ahead leaves: the next event says so within a tick or two.
    assert_eq!(t.leave(&room, &first).await.status, 200);
    let (moved_id, moved) = stream.event(Duration::from_secs(8)).await;
    assert_eq!(moved["position"], 1, "{moved}");
    drop(stream);

    // A reconnection with the last id gets nothing until something changes.
    let mut resumed = Events::open(t, &room, &second, Some(&moved_id)).await;
    assert!(resumed.next(Duration::from_millis(2_500)).await.is_none());
    assert_eq!(t.admit(&room, 1).await, 1);
    let (_, admitted) = resumed.event(Duration::from_secs(8)).await;
    assert_eq!(admitted["status"], "admitted", "{admitted}");
    assert!(admitted["pass"].is_string(), "{admitted}");
    // The wait is over: so is the stream.
    assert!(matches!(
        resumed.next(Duration::from_secs(5)).await,
        Some(Frame::End)
    ));

    // A place ended while its stream is open: the last event says so.
    let mut third_stream = Events::open(t, &room, &third, None).await;
    let (_, waiting) = third_stream.event(Duration::from_secs(5)).await;
    assert_eq!(waiting["position"], 1, "{waiting}");
    assert_eq!(t.leave(&room, &third).await.status, 200);
    let (_, left) = third_stream.event(Duration::from_secs(8)).await;
    assert_eq!(left["status"], "left", "{left}");
    assert!(matches!(
        third_stream.next(Duration::from_secs(5)).await,
        Some(Frame::End)
    ));

    // One visitor holds at most four streams at once (tabs) per server: one more is refused,
    // and the page polls instead (behind a balancer each instance counts its own, so the refusal
    // comes after four per instance); another visitor's stream still opens.
    let fourth = ticket_of(&t.join(&room, None).await);
    let url = t.api(&format!("/rooms/{room}/stream"));
    let mut tabs = Vec::new();
    let refused = loop {
        let response = t
            .client
            .get(&url)
            .bearer_auth(&fourth)
            .send()
            .await
            .expect("the target answers");
        if response.status() == 429 {
            break response.text().await.expect("the refusal's body");
        }
        assert_eq!(response.status(), 200, "a stream of one visitor");
        tabs.push(response);
        assert!(
            tabs.len() <= 16,
            "no stream of one visitor refused after 16"
        );
    };
    assert!(
        tabs.len() >= 4,
        "four streams of one visitor open: {}",
        tabs.len()
    );
    assert!(refused.contains("too_many_streams"), "{refused}");
    let fifth_visitor = ticket_of(&t.join(&room, None).await);
    let mut other = Events::open(t, &room, &fifth_visitor, None).await;
    let (_, answer) = other.event(Duration::from_secs(5)).await;
    assert_eq!(answer["status"], "waiting", "{answer}");
    drop(tabs);

    // A stream that cannot begin is the status call's error.
    let no_ticket = t
        .send(t.client.get(t.api(&format!("/rooms/{room}/stream"))))
        .await;
    assert_error(
        &no_ticket,
        401,
        "ticket_required",
        "a stream without a ticket",
    );
    let forged = t
        .send(
            t.client
                .get(t.api(&format!("/rooms/{room}/stream")))
                .bearer_auth("not-a-ticket"),
        )
        .await;
    assert_error(
        &forged,
        401,
        "invalid_ticket",
        "a stream with a forged ticket",
    );
    let other = t
        .send(
            t.client
                .get(t.api(&format!("/rooms/{}/stream", unique("nosuch"))))
                .bearer_auth(&second),
        )
        .await;
    assert_error(&other, 404, "unknown_room", "a stream of no room");
}
