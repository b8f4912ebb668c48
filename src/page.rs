//! The waiting page the gate shows to browsers. It works without JavaScript (it refreshes itself
//! at the recommended poll interval, and the gate lets the visitor in on the refresh that finds
//! them admitted) and is better with it (it polls the status API and updates in place).

use crate::api::VisitorResponse;
use crate::challenge::SiteverifyConfig;
use crate::error::ErrorCode;
use crate::room::RoomId;

const TEMPLATE: &str = include_str!("waiting.html");

/// What a visitor in random mode is told (the page's script says the same).
const RANDOM_MESSAGE: &str = "People are let in by a random draw among everyone waiting: each \
     draw gives you the same chance as anyone else, however long you have waited. The estimate is \
     the average wait.";

/// What the waiting page shows.
#[derive(Debug, Clone)]
pub struct WaitingPage<'a> {
    pub room: &'a RoomId,
    /// Empty for a request that holds no place (one that was no page navigation).
    pub ticket_id: &'a str,
    /// `None` without a place, or before the sale opens.
    pub position: Option<u64>,
    /// When the sale opens (Unix ms), for a visitor in a pre-queue.
    pub opens_at: Option<u64>,
    /// Waiting in a room in random mode: no place in line, a draw among everyone.
    pub random: bool,
    pub eta_seconds: Option<u64>,
    pub poll_after_ms: u64,
    /// The status endpoint the page polls, e.g. `/_qg/v1/rooms/demo/status`.
    pub status_url: &'a str,
}

impl WaitingPage<'_> {
    pub fn render(&self) -> String {
        let refresh_s = self.poll_after_ms.div_ceil(1000).max(1);
        let placed = self.position.is_some() || self.opens_at.is_some() || self.random;
        let message = match self.eta_seconds {
            _ if !placed => "You have no place in line yet.",
            _ if self.random && self.opens_at.is_none() => RANDOM_MESSAGE,
            _ if self.opens_at.is_some() => {
                "The sale has not opened yet. You have a place; when it opens, people are let \
                 in from the line, and this page takes you in when it is your turn."
            }
            None => "The wait cannot be estimated yet (nobody is being let in, or how fast is not known yet); your place is kept.",
            Some(_) => "The estimate follows how fast people are being let in.",
        };
        let intro = if placed {
            "This site is busy right now. Your place is kept, and you will be let in \
             automatically as soon as there is room. Keep this page open; you do not need to \
             refresh it."
        } else {
            "This page takes a place in line for you when it loads again, in a moment."
        };
        let position = match (self.position, self.opens_at) {
            (_, None) if self.random => "drawn at random".to_owned(),
            (Some(p), _) => p.to_string(),
            (None, Some(_)) => "kept until the opening".to_owned(),
            (None, None) => "\u{2013}".to_owned(),
        };
        let eta = match self.opens_at {
            Some(_) => "the sale opens soon".to_owned(),
            None => format_wait(self.eta_seconds),
        };
        fill(
            TEMPLATE,
            &[
                ("refresh_s", &refresh_s.to_string()),
                ("position", &position),
                ("eta", &eta),
                (
                    "opens_at",
                    &self.opens_at.map_or_else(String::new, |at| at.to_string()),
                ),
                ("intro", intro),
                ("message", message),
                ("updated", "just now"),
                ("room", self.room.as_str()),
                (
                    "ticket_id",
                    if placed { self.ticket_id } else { "none yet" },
                ),
                ("status_url", self.status_url),
                ("poll_ms", &self.poll_after_ms.to_string()),
                ("placed", if placed { "true" } else { "false" }),
            ],
        )
    }
}

/// The waiting page for a visitor the gate answered with `visitor` (what a status call would
/// answer), polling the status API under `api_prefix`.
pub fn waiting_page(room: &RoomId, visitor: &VisitorResponse, api_prefix: &str) -> String {
    WaitingPage {
        room,
        ticket_id: visitor.ticket_id.as_deref().unwrap_or(""),
        position: visitor.position.flatten(),
        opens_at: visitor.opens_at,
        random: visitor.random == Some(true),
        eta_seconds: visitor.eta_seconds.flatten(),
        poll_after_ms: visitor.poll_after_ms.unwrap_or(1000),
        status_url: &format!("{api_prefix}/rooms/{room}/status"),
    }
    .render()
}

/// The page shown on a protected path while the queue's store cannot be reached and the room
/// fails closed: nobody is let in, and the page asks again by itself.
pub fn unavailable_page(retry_s: u64) -> String {
    let retry_s = retry_s.max(1);
    notice_page(
        "One moment, please",
        "The waiting room for this site cannot reach its queue right now. Nobody is being let in \
         until it can. This page tries again by itself; your place, if you had one, is kept.",
        retry_s,
    )
}

/// What a browser sees when the line is full (`max_waiting`): the page tries again after
/// `retry_s`.
pub fn full_page(retry_s: u64) -> String {
    notice_page(
        "The line is full",
        "So many people are waiting already that this waiting room is taking nobody new for now. \
         This page tries again by itself in a moment; keep it open.",
        retry_s.max(1),
    )
}

/// What a browser over its room's join limit sees: the page tries again after `retry_s`.
pub fn too_many_joins_page(retry_s: u64) -> String {
    let retry_s = retry_s.max(1);
    notice_page(
        "Too many visitors from your network",
        &format!(
            "Many people sharing your internet connection joined this waiting room just now, and \
             each connection may only join so often. This page tries again by itself in \
             {retry_s} seconds; nothing you already hold is lost."
        ),
        retry_s,
    )
}

/// What a browser refused a place at the gate sees, for the refusals a person can meet: an
/// invite-only room, an invite used before, a failed check. `None` for any other error (the
/// JSON error stands). The page does not reload itself: trying again would not help.
pub fn refusal_page(code: ErrorCode) -> Option<String> {
    let (title, message) = match code {
        ErrorCode::InviteRequired => (
            "This waiting room is by invitation",
            "Only visitors with an invitation can join this line. Open the link from your \
             invitation to join.",
        ),
        ErrorCode::InviteUsed => (
            "This invitation has been used",
            "Each invitation lets one visitor into the line once, and this one has been used. \
             If it was yours, go back to the window where you joined.",
        ),
        ErrorCode::RoomClosed => (
            "This waiting room is closed",
            "It is not taking anyone new at the moment. If you already had a place in line, \
             open the page where you joined.",
        ),
        ErrorCode::ChallengeFailed => (
            "We could not check your browser",
            "Your browser's answer to the waiting room's check was not accepted. Load this page \
             again to try once more.",
        ),
        _ => return None,
    };
    Some(notice_page(title, message, 0))
}

/// The page a browser without a place gets in a room with a proof-of-work challenge: it asks
/// for the challenge, solves it in a Web Worker with a progress bar, joins with the answer and
/// loads the page again, now with its place.
pub fn challenge_page(room: &RoomId, api_prefix: &str) -> String {
    fill(
        include_str!("challenge.html"),
        &[
            ("room", room.as_str()),
            ("join_url", &format!("{api_prefix}/rooms/{room}/join")),
        ],
    )
}

const NOTICE_REFRESH: &str = "<meta http-equiv=\"refresh\" content=\"{{refresh_s}}\">\n";

/// A page that says one thing and reloads itself after `retry_s` seconds (never, for 0).
fn notice_page(title: &str, message: &str, retry_s: u64) -> String {
    let template = include_str!("notice.html");
    let template = match retry_s {
        0 => template.replace(NOTICE_REFRESH, ""),
        _ => template.to_owned(),
    };
    fill(
        &template,
        &[
            ("title", title),
            ("message", message),
            ("refresh_s", &retry_s.to_string()),
        ],
    )
}

/// The built-in demo application, served when no upstream is configured, so that a server or
/// worker started with no configuration at all shows the gate working. `visitor` is the room and
/// ticket id of a visitor the gate let through.
pub fn demo_page(api_prefix: &str, visitor: Option<(&RoomId, &str)>) -> String {
    match visitor {
        Some((room, ticket_id)) => fill(
            include_str!("demo_admitted.html"),
            &[
                ("room", room.as_str()),
                ("visitor", ticket_id),
                ("leave_url", &format!("{api_prefix}/rooms/{room}/leave")),
            ],
        ),
        None => include_str!("demo_open.html").to_owned(),
    }
}

/// A wait in words, as the page's script writes it.
pub fn format_wait(eta_seconds: Option<u64>) -> String {
    match eta_seconds {
        None => "unknown".into(),
        Some(s) if s < 60 => "under a minute".into(),
        Some(s) => {
            let minutes = (s + 30) / 60;
            if minutes < 60 {
                let unit = if minutes == 1 { "minute" } else { "minutes" };
                format!("about {minutes} {unit}")
            } else {
                format!("about {} h {} min", minutes / 60, minutes % 60)
            }
        }
    }
}

/// Where a page's `<style>` takes the style every page shares (`src/page.css`).
const PAGE_CSS_MARKER: &str = "/* queuegate:page.css */\n";

/// Replaces `{{name}}` placeholders with HTML-escaped values. The values also land inside a
/// script string (`status_url`), where the escaping keeps quotes and `<` harmless too.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let template = template.replace(PAGE_CSS_MARKER, include_str!("page.css"));
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        match values.iter().find(|(k, _)| *k == name) {
            Some((_, v)) => escape_into(&mut out, v),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\\' => out.push_str("&#92;"),
            c => out.push(c),
        }
    }
}

/// The page of a room whose challenge is a siteverify widget, for a visitor without a place: it
/// loads the provider's script (explicit rendering, so the page decides when and where), renders
/// the widget with the room's site key, and joins with the widget's response under `api_prefix`.
pub fn siteverify_page(room: &RoomId, config: &SiteverifyConfig, api_prefix: &str) -> String {
    let separator = if config.script_url.contains('?') {
        '&'
    } else {
        '?'
    };
    fill(
        include_str!("siteverify.html"),
        &[
            ("room", room.as_str()),
            ("site_key", &config.site_key),
            ("join_url", &format!("{api_prefix}/rooms/{room}/join")),
            (
                "script_src",
                &format!(
                    "{}{separator}render=explicit&onload=qgWidgetLoaded",
                    config.script_url
                ),
            ),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(eta: Option<u64>) -> String {
        let room = RoomId::parse("demo").unwrap();
        WaitingPage {
            room: &room,
            ticket_id: "00000001-0-7",
            position: Some(42),
            opens_at: None,
            random: false,
            eta_seconds: eta,
            poll_after_ms: 2500,
            status_url: "/_qg/v1/rooms/demo/status",
        }
        .render()
    }

    #[test]
    fn shows_position_wait_and_refreshes_without_script() {
        let html = page(Some(125));
        assert!(html.contains(r#"<dd id="position" aria-labelledby="position-label">42</dd>"#));
        assert!(html.contains("about 2 minutes"));
        assert!(html.contains(r#"<noscript><meta http-equiv="refresh" content="3"></noscript>"#));
        assert!(html.contains(r#"var statusUrl = "/_qg/v1/rooms/demo/status";"#));
        assert!(html.contains(r#"aria-live="polite""#));
        assert!(html.contains(r#"name="viewport""#));
        assert!(!html.contains("{{"), "every placeholder is filled");
        assert!(html.contains(".card {") && !html.contains("queuegate:page.css"));
    }

    #[test]
    fn a_random_draw_shows_no_place_but_the_average_wait() {
        let room = RoomId::parse("demo").unwrap();
        let html = WaitingPage {
            room: &room,
            ticket_id: "00000001-0-7",
            position: None,
            opens_at: None,
            random: true,
            eta_seconds: Some(600),
            poll_after_ms: 2500,
            status_url: "/_qg/v1/rooms/demo/status",
        }
        .render();
        assert!(html.contains(">drawn at random</dd>"));
        assert!(html.contains("about 10 minutes"));
        assert!(html.contains("random draw among everyone waiting"));
        assert!(html.contains("var placed = true;"));
    }

    #[test]
    fn unknown_wait_says_so() {
        let html = page(None);
        assert!(html.contains(">unknown</dd>"));
        assert!(html.contains("The wait cannot be estimated yet"));
    }

    #[test]
    fn without_a_place_the_page_says_so_and_reloads_to_take_one() {
        let room = RoomId::parse("demo").unwrap();
        let html = WaitingPage {
            room: &room,
            ticket_id: "",
            position: None,
            opens_at: None,
            random: false,
            eta_seconds: None,
            poll_after_ms: 1000,
            status_url: "/_qg/v1/rooms/demo/status",
        }
        .render();
        assert!(html.contains("aria-labelledby=\"position-label\">\u{2013}</dd>"));
        assert!(html.contains("You have no place in line yet"));
        assert!(html.contains(r#"<span id="ticket">none yet</span>"#));
        assert!(!html.contains("Your place is kept"));
        assert!(html.contains("var placed = false;"));
        assert!(html.contains(r#"<noscript><meta http-equiv="refresh" content="1"></noscript>"#));
        assert!(page(None).contains("var placed = true;"));
    }

    #[test]
    fn values_are_escaped() {
        let out = fill("<p>{{x}}</p>\"{{x}}\"", &[("x", "</p><script>\"'\\")]);
        assert_eq!(
            out,
            "<p>&lt;/p&gt;&lt;script&gt;&quot;&#39;&#92;</p>\"&lt;/p&gt;&lt;script&gt;&quot;&#39;&#92;\""
        );
    }

    #[test]
    fn the_unavailable_page_retries_by_itself() {
        let html = unavailable_page(2);
        assert!(html.contains(r#"<meta http-equiv="refresh" content="2">"#));
        assert!(!html.contains("{{"));
    }

    #[test]
    fn a_refusal_page_says_why_and_does_not_reload() {
        let html = refusal_page(ErrorCode::InviteRequired).unwrap();
        assert!(html.contains("by invitation"));
        assert!(!html.contains("http-equiv=\"refresh\""));
        assert!(!html.contains("{{"));
        assert!(refusal_page(ErrorCode::UnknownRoom).is_none());
        assert!(too_many_joins_page(7).contains(r#"<meta http-equiv="refresh" content="7">"#));
    }

    #[test]
    fn the_challenge_page_joins_through_the_room_api_and_solves_in_a_worker() {
        let room = RoomId::parse("sale").unwrap();
        let html = challenge_page(&room, "/_qg/v1");
        assert!(html.contains(r#"var joinUrl = "/_qg/v1/rooms/sale/join";"#));
        assert!(html.contains("new Worker("));
        assert!(html.contains("<noscript>"));
        assert!(html.contains("<progress"));
        assert!(!html.contains("{{"));
    }

    #[test]
    fn waits_in_words() {
        assert_eq!(format_wait(Some(0)), "under a minute");
        assert_eq!(format_wait(Some(89)), "about 1 minute");
        assert_eq!(format_wait(Some(3600)), "about 1 h 0 min");
    }
}
