//! The waiting page the gate shows to browsers. It works without JavaScript (it refreshes itself
//! at the recommended poll interval, and the gate lets the visitor in on the refresh that finds
//! them admitted) and is better with it (it polls the status API and updates in place).

use crate::challenge::SiteverifyConfig;
use crate::error::ErrorCode;
use crate::i18n::Lang;
use crate::room::RoomId;

const TEMPLATE: &str = include_str!("waiting.html");

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
    pub lang: Lang,
}

impl WaitingPage<'_> {
    pub fn render(&self) -> String {
        let text = self.lang.text();
        let script = &text.script;
        let refresh_s = self.poll_after_ms.div_ceil(1000).max(1);
        let placed = self.position.is_some() || self.opens_at.is_some() || self.random;
        let message = match self.eta_seconds {
            _ if !placed => text.no_place,
            _ if self.random && self.opens_at.is_none() => script.random_message,
            _ if self.opens_at.is_some() => script.prequeue_message,
            None => script.unknown_message,
            Some(_) => script.estimate_message,
        };
        let intro = if placed {
            text.intro_placed
        } else {
            text.intro_unplaced
        };
        let position = match (self.position, self.opens_at) {
            (_, None) if self.random => script.random_position.to_owned(),
            (Some(p), _) => self.lang.format_number(p),
            (None, Some(_)) => script.prequeue_position.to_owned(),
            (None, None) => "\u{2013}".to_owned(),
        };
        let eta = match self.opens_at {
            Some(_) => script.opens_soon.to_owned(),
            None => self.lang.format_wait(self.eta_seconds),
        };
        fill(
            waiting_template(self.lang),
            self.lang,
            &[
                ("refresh_s", &refresh_s.to_string()),
                ("title", text.waiting_title),
                ("position", &position),
                (
                    "position_number",
                    &self.position.map_or_else(String::new, |p| p.to_string()),
                ),
                ("eta", &eta),
                (
                    "opens_at",
                    &self.opens_at.map_or_else(String::new, |at| at.to_string()),
                ),
                ("intro", intro),
                ("message", message),
                ("position_label", text.position_label),
                ("eta_label", text.eta_label),
                ("progress_label", text.progress_label),
                ("updated_label", text.updated_label),
                ("updated", text.just_now),
                ("room_label", text.room_label),
                ("ticket_label", text.ticket_label),
                ("languages_label", text.languages_label),
                ("room", self.room.as_str()),
                (
                    "ticket_id",
                    if placed {
                        self.ticket_id
                    } else {
                        text.no_place_ticket
                    },
                ),
                ("status_url", self.status_url),
                ("stream_url", &stream_url(self.status_url)),
                ("poll_ms", &self.poll_after_ms.to_string()),
                ("placed", if placed { "true" } else { "false" }),
                ("script_text", self.lang.script_json()),
            ],
        )
    }
}

/// The stream of updates beside a status endpoint (`.../status` -> `.../stream`).
pub fn stream_url(status_url: &str) -> String {
    match status_url.strip_suffix("/status") {
        Some(base) => format!("{base}/stream"),
        None => String::new(),
    }
}

/// Where the waiting page takes its links to the other languages.
const LANGUAGE_LINKS_MARKER: &str = "{{language_links}}";

/// The waiting page's template with its language links for `lang`, built once per language.
fn waiting_template(lang: Lang) -> &'static str {
    static TEMPLATES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    &TEMPLATES.get_or_init(|| {
        Lang::ALL
            .map(|l| TEMPLATE.replace(LANGUAGE_LINKS_MARKER, &language_links(l)))
            .to_vec()
    })[lang as usize]
}

/// A link to the page in each language (`?lang=`; the page's script keeps the rest of the
/// address), the current one marked. Only the languages' own tags and names go in: nothing a
/// visitor sent.
fn language_links(current: Lang) -> String {
    Lang::ALL
        .iter()
        .map(|&lang| {
            let tag = lang.tag();
            let name = lang.name();
            let mark = if lang == current {
                r#" aria-current="true""#
            } else {
                ""
            };
            format!(
                r#"<a href="?lang={tag}" data-lang="{tag}" hreflang="{tag}" lang="{tag}"{mark}>{name}</a>"#
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The page shown on a protected path while the queue's store cannot be reached and the room
/// fails closed: nobody is let in, and the page asks again by itself.
pub fn unavailable_page(retry_s: u64, lang: Lang) -> String {
    let text = lang.text();
    notice_page(
        lang,
        text.unavailable_title,
        text.unavailable_message,
        retry_s.max(1),
    )
}

/// What a browser sees when the line is full (`max_waiting`): the page tries again after
/// `retry_s`.
pub fn full_page(retry_s: u64, lang: Lang) -> String {
    let text = lang.text();
    notice_page(lang, text.full_title, text.full_message, retry_s.max(1))
}

/// What a browser over its room's join limit sees: the page tries again after `retry_s`.
pub fn too_many_joins_page(retry_s: u64, lang: Lang) -> String {
    let retry_s = retry_s.max(1);
    let text = lang.text();
    notice_page(
        lang,
        text.too_many_joins_title,
        &text
            .too_many_joins_message
            .replace("{s}", &lang.format_number(retry_s)),
        retry_s,
    )
}

/// What a browser refused a place at the gate sees, for the refusals a person can meet: an
/// invite-only room, an invite used before, a closed room, a failed check. `None` for any other
/// error (the JSON error stands). The page does not reload itself: trying again would not help.
pub fn refusal_page(code: ErrorCode, lang: Lang) -> Option<String> {
    let text = lang.text();
    let (title, message) = match code {
        ErrorCode::InviteRequired => (text.invite_required_title, text.invite_required_message),
        ErrorCode::InviteUsed => (text.invite_used_title, text.invite_used_message),
        ErrorCode::RoomClosed => (text.closed_title, text.closed_message),
        ErrorCode::ChallengeFailed => (text.challenge_failed_title, text.challenge_failed_message),
        _ => return None,
    };
    Some(notice_page(lang, title, message, 0))
}

/// The page a browser without a place gets in a room with a proof-of-work challenge: it asks
/// for the challenge, solves it in a Web Worker with a progress bar, joins with the answer and
/// loads the page again, now with its place.
pub fn challenge_page(room: &RoomId, api_prefix: &str, lang: Lang) -> String {
    let text = lang.check_text();
    fill(
        include_str!("challenge.html"),
        lang,
        &[
            ("room", room.as_str()),
            ("join_url", &format!("{api_prefix}/rooms/{room}/join")),
            ("title", text.pow_title),
            ("intro", text.pow_intro),
            ("noscript", text.pow_noscript),
            ("progress_label", text.pow_progress_label),
            ("starting", text.starting),
            ("room_label", lang.text().room_label),
            ("check_text", lang.check_json()),
        ],
    )
}

const NOTICE_REFRESH: &str = "<meta http-equiv=\"refresh\" content=\"{{refresh_s}}\">\n";

/// A page that says one thing and reloads itself after `retry_s` seconds (never, for 0).
fn notice_page(lang: Lang, title: &str, message: &str, retry_s: u64) -> String {
    let template = include_str!("notice.html");
    let template = match retry_s {
        0 => template.replace(NOTICE_REFRESH, ""),
        _ => template.to_owned(),
    };
    fill(
        &template,
        lang,
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
            Lang::En,
            &[
                ("room", room.as_str()),
                ("visitor", ticket_id),
                ("leave_url", &format!("{api_prefix}/rooms/{room}/leave")),
            ],
        ),
        None => include_str!("demo_open.html").to_owned(),
    }
}

/// Where a page's `<style>` takes the style every page shares (`src/page.css`).
const PAGE_CSS_MARKER: &str = "/* queuegate:page.css */\n";

/// Replaces `{{name}}` placeholders with HTML-escaped values, and `{{lang}}` and `{{dir}}` with
/// `lang`'s. The values also land inside a script string (`status_url`), where the escaping
/// keeps quotes and `<` harmless too.
fn fill(template: &str, lang: Lang, values: &[(&str, &str)]) -> String {
    let template = template.replace(PAGE_CSS_MARKER, include_str!("page.css"));
    let values = &[("lang", lang.tag()), ("dir", lang.dir())]
        .into_iter()
        .chain(values.iter().copied())
        .collect::<Vec<_>>();
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
pub fn siteverify_page(
    room: &RoomId,
    config: &SiteverifyConfig,
    api_prefix: &str,
    lang: Lang,
) -> String {
    let text = lang.check_text();
    let separator = if config.script_url.contains('?') {
        '&'
    } else {
        '?'
    };
    fill(
        include_str!("siteverify.html"),
        lang,
        &[
            ("room", room.as_str()),
            ("title", text.widget_title),
            ("intro", text.widget_intro),
            ("noscript", text.widget_noscript),
            ("loading", text.widget_loading),
            ("room_label", lang.text().room_label),
            ("check_text", lang.check_json()),
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
            lang: Lang::En,
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
            lang: Lang::En,
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
            lang: Lang::En,
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
        let out = fill(
            "<p>{{x}}</p>\"{{x}}\"",
            Lang::En,
            &[("x", "</p><script>\"'\\")],
        );
        assert_eq!(
            out,
            "<p>&lt;/p&gt;&lt;script&gt;&quot;&#39;&#92;</p>\"&lt;/p&gt;&lt;script&gt;&quot;&#39;&#92;\""
        );
    }

    #[test]
    fn the_unavailable_page_retries_by_itself() {
        let html = unavailable_page(2, Lang::En);
        assert!(html.contains(r#"<meta http-equiv="refresh" content="2">"#));
        assert!(!html.contains("{{"));
    }

    #[test]
    fn a_refusal_page_says_why_and_does_not_reload() {
        let html = refusal_page(ErrorCode::InviteRequired, Lang::En).unwrap();
        assert!(html.contains("by invitation"));
        assert!(!html.contains("http-equiv=\"refresh\""));
        assert!(!html.contains("{{"));
        assert!(refusal_page(ErrorCode::UnknownRoom, Lang::En).is_none());
        assert!(
            too_many_joins_page(7, Lang::En).contains(r#"<meta http-equiv="refresh" content="7">"#)
        );
    }

    #[test]
    fn the_challenge_page_joins_through_the_room_api_and_solves_in_a_worker() {
        let room = RoomId::parse("sale").unwrap();
        let html = challenge_page(&room, "/_qg/v1", Lang::En);
        assert!(html.contains(r#"var joinUrl = "/_qg/v1/rooms/sale/join";"#));
        assert!(html.contains("new Worker("));
        assert!(html.contains("<noscript>"));
        assert!(html.contains("<progress"));
        assert!(!html.contains("{{"));
    }

    #[test]
    fn every_page_speaks_the_language_it_is_given() {
        let room = RoomId::parse("demo").unwrap();
        for lang in Lang::ALL {
            let text = lang.text();
            let page = WaitingPage {
                room: &room,
                ticket_id: "00000001-0-7",
                position: Some(12_345),
                opens_at: None,
                random: false,
                eta_seconds: Some(125),
                poll_after_ms: 2500,
                status_url: "/_qg/v1/rooms/demo/status",
                lang,
            }
            .render();
            let html_tag = format!(r#"<html lang="{}" dir="ltr">"#, lang.tag());
            assert!(page.contains(&html_tag), "{lang:?}");
            assert!(page.contains(&format!("<title>{}</title>", text.waiting_title)));
            assert!(page.contains(&lang.format_number(12_345)), "{lang:?}");
            assert!(page.contains(&lang.format_wait(Some(125))), "{lang:?}");
            assert!(page.contains(r#"aria-current="true">"#));
            assert!(page.contains(&format!(r#"lang="{}" aria-current="true">"#, lang.tag())));
            assert!(
                !page.contains("{{"),
                "{lang:?}: every placeholder is filled"
            );
            let notices = [
                full_page(5, lang),
                unavailable_page(5, lang),
                too_many_joins_page(5, lang),
                refusal_page(ErrorCode::RoomClosed, lang).unwrap(),
            ];
            let check = lang.check_text();
            let pow = challenge_page(&room, "/_qg/v1", lang);
            assert!(
                pow.contains(&html_tag) && pow.contains(check.pow_title),
                "{lang:?}"
            );
            let widget = SiteverifyConfig {
                url: "https://verify.example/siteverify".into(),
                secret: "s".into(),
                site_key: "k".into(),
                script_url: "https://verify.example/api.js".into(),
            };
            let widget = siteverify_page(&room, &widget, "/_qg/v1", lang);
            assert!(widget.contains(&html_tag) && widget.contains(check.widget_title));
            // (Their scripts fill `{s}` themselves.)
            assert!(!pow.contains("{{") && !widget.contains("{{"), "{lang:?}");
            for notice in notices {
                assert!(notice.contains(&html_tag), "{lang:?}");
                assert!(
                    !notice.contains("{{") && !notice.contains("{s}"),
                    "{lang:?}"
                );
            }
            assert!(full_page(5, lang).contains(text.full_title));
            assert!(refusal_page(ErrorCode::RoomClosed, lang)
                .unwrap()
                .contains(text.closed_message));
        }
    }

    #[test]
    fn the_script_gets_the_sentences_as_json_it_can_read_back() {
        let room = RoomId::parse("demo").unwrap();
        let html = WaitingPage {
            room: &room,
            ticket_id: "00000001-0-7",
            position: Some(3),
            opens_at: None,
            random: false,
            eta_seconds: None,
            poll_after_ms: 1000,
            status_url: "/_qg/v1/rooms/demo/status",
            lang: Lang::Fr,
        }
        .render();
        let start = html.find("data-text=\"").unwrap() + "data-text=\"".len();
        let end = start + html[start..].find('"').unwrap();
        let decoded = html[start..end]
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#92;", "\\")
            .replace("&amp;", "&");
        let json: serde_json::Value = serde_json::from_str(&decoded).unwrap();
        assert_eq!(json["wait_under_minute"], "moins d’une minute");
        assert_eq!(json["opens_in"], "ouverture dans {t}");
    }
}
