//! Pushed position updates: what a visitor's stream (`GET .../stream`, server-sent events) writes
//! and when. The shell reads the visitor's answer (the same one `status` gives) once a tick and
//! hands it here; this decides whether it is news (an event), whether the line needs a heartbeat,
//! and when the stream ends. Sans-IO: time is `now`, and nothing here waits.
//!
//! An event's id is a digest of what the answer says (not of the renewed ticket or pass it
//! carries), so a client that reconnects with `Last-Event-ID` gets no event until something
//! changes.

use sha2::{Digest, Sha256};

use crate::api::{VisitorResponse, VisitorStatus};

/// How often a stream reads the visitor's answer: at most one event a second.
pub const TICK_MS: u64 = 1_000;
/// The longest a stream stays silent: a heartbeat keeps proxies from closing it.
pub const HEARTBEAT_MS: u64 = 15_000;
/// The longest a stream lives. A stream cannot set cookies once it has begun, so it ends well
/// before the ticket its cookie holds would expire; the browser reconnects (after
/// [`RETRY_MS`]) and the new stream's answer renews the cookie.
pub const MAX_STREAM_MS: u64 = 5 * 60_000;
/// How long a browser waits before it reconnects a stream that ended.
pub const RETRY_MS: u64 = 1_000;
/// A heartbeat: an event of its own (not a comment line), so that the page's script sees the
/// stream is alive while nothing changes, and polls instead when a proxy holds the stream back.
const HEARTBEAT: &str = "event: heartbeat\ndata: {}\n\n";
/// The longest `Last-Event-ID` read: an id is 16 hex digits.
const MAX_EVENT_ID_LEN: usize = 64;

/// One visitor's stream.
#[derive(Debug, Clone)]
pub struct UpdateStream {
    /// The id of the last answer the client has.
    last_id: Option<String>,
    last_write: u64,
    ends_at: u64,
    /// An answer that ends the visitor's wait has been sent.
    finished: bool,
}

impl UpdateStream {
    /// A stream opened at `now` by a client that had the answer `last_event_id` (its
    /// reconnection), for a ticket that lasts `ticket_ttl_ms` from each renewal.
    pub fn new(last_event_id: Option<&str>, ticket_ttl_ms: u64, now: u64) -> UpdateStream {
        UpdateStream {
            last_id: last_event_id
                .map(str::trim)
                .filter(|id| !id.is_empty() && id.len() <= MAX_EVENT_ID_LEN)
                .map(str::to_owned),
            last_write: now,
            ends_at: now + MAX_STREAM_MS.min(ticket_ttl_ms / 2).max(TICK_MS),
            finished: false,
        }
    }

    /// What the stream starts with: how soon to reconnect, should it end.
    pub fn opening(&self) -> String {
        format!("retry: {RETRY_MS}\n\n")
    }

    /// What to write for the visitor's answer read at `now`: the answer as an event when it says
    /// something the client has not had, a heartbeat when the line has been silent too long,
    /// else nothing.
    pub fn on_answer(&mut self, answer: &VisitorResponse, now: u64) -> Option<String> {
        if answer.status != VisitorStatus::Waiting {
            self.finished = true;
        }
        let id = event_id(answer);
        if self.last_id.as_deref() == Some(id.as_str()) {
            return self.heartbeat(now);
        }
        let data = serde_json::to_string(answer).unwrap_or_default();
        self.last_id = Some(id.clone());
        self.last_write = now;
        Some(format!("id: {id}\ndata: {data}\n\n"))
    }

    /// What to write when the answer could not be read at `now` (the store is away for a
    /// moment): the client keeps what it has, and the line is kept alive.
    pub fn on_unavailable(&mut self, now: u64) -> Option<String> {
        self.heartbeat(now)
    }

    /// The last event for an error that ends the visitor's stream (an expired ticket, a room
    /// removed): the error's JSON, as an `error` event.
    pub fn on_error(&mut self, error_json: &str) -> String {
        self.finished = true;
        format!("event: error\ndata: {error_json}\n\n")
    }

    fn heartbeat(&mut self, now: u64) -> Option<String> {
        if now.saturating_sub(self.last_write) < HEARTBEAT_MS {
            return None;
        }
        self.last_write = now;
        Some(HEARTBEAT.to_owned())
    }

    /// Whether the stream is over at `now`: the wait ended (the client goes on without it), or
    /// the stream reached its life (the client reconnects).
    pub fn is_over(&self, now: u64) -> bool {
        self.finished || now >= self.ends_at
    }
}

/// The id of what an answer says: a digest of it without the renewed ticket and pass (new
/// tokens each time, saying nothing new).
pub fn event_id(answer: &VisitorResponse) -> String {
    let mut said = answer.clone();
    said.ticket = None;
    said.pass = None;
    said.pass_expires_at = None;
    let json = serde_json::to_vec(&said).unwrap_or_default();
    Sha256::digest(&json)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::RoomId;

    fn waiting(position: u64, ticket: &str) -> VisitorResponse {
        let mut answer = VisitorResponse::new(&RoomId::parse("r").unwrap(), VisitorStatus::Waiting);
        answer.position = Some(Some(position));
        answer.ticket = Some(ticket.to_owned());
        answer
    }

    #[test]
    fn an_answer_is_sent_once_until_it_changes() {
        let mut stream = UpdateStream::new(None, 3_600_000, 0);
        let first = stream
            .on_answer(&waiting(5, "t1"), 0)
            .expect("the first answer");
        assert!(first.starts_with("id: "), "{first}");
        assert!(
            first.contains(r#"data: {"room":"r","status":"waiting","ticket":"t1","position":5}"#),
            "{first}"
        );
        assert!(first.ends_with("\n\n"));
        // A renewed ticket alone is no news.
        assert_eq!(stream.on_answer(&waiting(5, "t2"), 1_000), None);
        let moved = stream
            .on_answer(&waiting(4, "t3"), 2_000)
            .expect("a new position");
        assert!(moved.contains(r#""position":4"#), "{moved}");
        assert!(!stream.is_over(2_000));
    }

    #[test]
    fn a_silent_stream_gets_a_heartbeat() {
        let mut stream = UpdateStream::new(None, 3_600_000, 0);
        stream.on_answer(&waiting(5, "t"), 0);
        assert_eq!(stream.on_answer(&waiting(5, "t"), HEARTBEAT_MS - 1), None);
        assert_eq!(
            stream.on_answer(&waiting(5, "t"), HEARTBEAT_MS).as_deref(),
            Some(HEARTBEAT)
        );
        assert_eq!(stream.on_unavailable(HEARTBEAT_MS + 1), None);
        assert_eq!(
            stream.on_unavailable(2 * HEARTBEAT_MS).as_deref(),
            Some(HEARTBEAT)
        );
    }

    #[test]
    fn a_reconnection_with_the_last_id_gets_nothing_until_a_change() {
        let answer = waiting(3, "t");
        let id = event_id(&answer);
        let mut stream = UpdateStream::new(Some(&id), 3_600_000, 0);
        assert_eq!(stream.on_answer(&waiting(3, "renewed"), 0), None);
        assert!(stream.on_answer(&waiting(2, "t"), 1_000).is_some());
        // An id that is not one is ignored.
        let mut stream = UpdateStream::new(Some(&"x".repeat(65)), 3_600_000, 0);
        assert!(stream.on_answer(&answer, 0).is_some());
    }

    #[test]
    fn the_stream_ends_with_the_wait_or_well_before_the_ticket_expires() {
        let mut stream = UpdateStream::new(None, 3_600_000, 0);
        assert!(!stream.is_over(MAX_STREAM_MS - 1));
        assert!(stream.is_over(MAX_STREAM_MS));
        let mut admitted = waiting(1, "t");
        admitted.status = VisitorStatus::Admitted;
        let last = stream
            .on_answer(&admitted, 1_000)
            .expect("the admission is sent");
        assert!(last.contains(r#""status":"admitted""#));
        assert!(stream.is_over(1_000));
        // A ticket of 20 s: the stream lasts 10 s, so its cookie is renewed in time.
        let short = UpdateStream::new(None, 20_000, 0);
        assert!(!short.is_over(9_999));
        assert!(short.is_over(10_000));
        let mut failed = UpdateStream::new(None, 20_000, 0);
        let frame = failed.on_error(r#"{"error":{"code":"ticket_expired"}}"#);
        assert_eq!(
            frame,
            "event: error\ndata: {\"error\":{\"code\":\"ticket_expired\"}}\n\n"
        );
        assert!(failed.is_over(0));
        assert_eq!(stream.opening(), "retry: 1000\n\n");
    }
}
