//! A room's own page template: what every page the gate shows a visitor of the room looks like
//! (the waiting, pre-queue and draw pages, and the full, closed, unavailable and refusal
//! notices), written by the operator in minijinja with HTML auto-escaping on. The same
//! [`Page`] the built-in pages are made from is what the template sees, in the visitor's
//! language; a template that fails to render falls back to the built-in page, so a visitor never
//! gets an error for the operator's mistake.
//!
//! The variables are documented in the README ("Your own page").

use std::sync::Arc;

use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, ErrorKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::VisitorResponse;
use crate::error::{ApiError, ErrorCode};
use crate::i18n::Lang;
use crate::page;
use crate::room::RoomId;

/// The largest template a room takes.
pub const MAX_TEMPLATE_BYTES: usize = 1024 * 1024;
/// The most a render may run (minijinja instructions): far above any page, and a bound on a
/// loop an operator did not mean.
const FUEL: u64 = 5_000_000;
/// The largest page a render may write.
const MAX_PAGE_BYTES: usize = 4 * MAX_TEMPLATE_BYTES;
const NAME: &str = "page.html";

/// Which page the gate shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageState {
    /// A place in the line, with a position.
    Waiting,
    /// In the pre-queue before a sale opens.
    Prequeue,
    /// Waiting for a draw (random mode): no position.
    Random,
    /// The line is full; try again later.
    Full,
    /// The room takes no joins.
    Closed,
    /// The queue's store cannot be reached; try again shortly.
    Unavailable,
    /// Too many joins from this client; try again after `retry_s`.
    TooManyJoins,
    /// The room is invite-only.
    InviteRequired,
    /// The invite has been used.
    InviteUsed,
    /// The check (proof of work, widget) failed.
    ChallengeFailed,
}

impl PageState {
    pub const ALL: [PageState; 10] = [
        PageState::Waiting,
        PageState::Prequeue,
        PageState::Random,
        PageState::Full,
        PageState::Closed,
        PageState::Unavailable,
        PageState::TooManyJoins,
        PageState::InviteRequired,
        PageState::InviteUsed,
        PageState::ChallengeFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PageState::Waiting => "waiting",
            PageState::Prequeue => "prequeue",
            PageState::Random => "random",
            PageState::Full => "full",
            PageState::Closed => "closed",
            PageState::Unavailable => "unavailable",
            PageState::TooManyJoins => "too_many_joins",
            PageState::InviteRequired => "invite_required",
            PageState::InviteUsed => "invite_used",
            PageState::ChallengeFailed => "challenge_failed",
        }
    }

    pub fn parse(s: &str) -> Option<PageState> {
        PageState::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// The notice page for a refusal a person can meet, by its error code.
    pub fn of_refusal(code: ErrorCode) -> Option<PageState> {
        Some(match code {
            ErrorCode::InviteRequired => PageState::InviteRequired,
            ErrorCode::InviteUsed => PageState::InviteUsed,
            ErrorCode::RoomClosed => PageState::Closed,
            ErrorCode::ChallengeFailed => PageState::ChallengeFailed,
            ErrorCode::TooManyJoins => PageState::TooManyJoins,
            _ => return None,
        })
    }

    fn is_waiting(self) -> bool {
        matches!(
            self,
            PageState::Waiting | PageState::Prequeue | PageState::Random
        )
    }
}

/// Everything a page of the gate says: the built-in pages and a room's template are made from
/// this alone.
#[derive(Debug, Clone)]
pub struct Page<'a> {
    pub state: PageState,
    pub lang: Lang,
    pub room: &'a RoomId,
    /// Empty without a place (a request that was no page navigation, or a notice).
    pub ticket_id: &'a str,
    pub position: Option<u64>,
    /// When the sale opens (Unix ms), in a pre-queue.
    pub opens_at: Option<u64>,
    pub eta_seconds: Option<u64>,
    /// How often a waiting page asks again (ms).
    pub poll_ms: u64,
    /// The status endpoint a waiting page polls.
    pub status_url: &'a str,
    /// After how long a notice page reloads itself (0: never).
    pub retry_s: u64,
}

impl<'a> Page<'a> {
    /// The waiting page for a visitor the gate answered with `visitor` (what a status call
    /// would answer), polling `status_url`.
    pub fn waiting(
        room: &'a RoomId,
        visitor: &'a VisitorResponse,
        status_url: &'a str,
        lang: Lang,
    ) -> Page<'a> {
        let state = if visitor.opens_at.is_some() {
            PageState::Prequeue
        } else if visitor.random == Some(true) {
            PageState::Random
        } else {
            PageState::Waiting
        };
        Page {
            state,
            lang,
            room,
            ticket_id: visitor.ticket_id.as_deref().unwrap_or(""),
            position: visitor.position.flatten(),
            opens_at: visitor.opens_at,
            eta_seconds: visitor.eta_seconds.flatten(),
            poll_ms: visitor.poll_after_ms.unwrap_or(1000),
            status_url,
            retry_s: 0,
        }
    }

    /// A notice page (any state but the waiting ones) that reloads after `retry_s` (0: never).
    pub fn notice(state: PageState, room: &'a RoomId, retry_s: u64, lang: Lang) -> Page<'a> {
        Page {
            state,
            lang,
            room,
            ticket_id: "",
            position: None,
            opens_at: None,
            eta_seconds: None,
            poll_ms: retry_s * 1000,
            status_url: "",
            retry_s,
        }
    }

    /// What a preview shows: made-up numbers for `state`.
    pub fn sample(
        state: PageState,
        room: &'a RoomId,
        status_url: &'a str,
        lang: Lang,
        now: u64,
    ) -> Self {
        let mut page = Page::notice(state, room, 30, lang);
        if state.is_waiting() {
            page.ticket_id = "t_preview";
            page.status_url = status_url;
            page.poll_ms = 5000;
            page.retry_s = 0;
            match state {
                PageState::Waiting => {
                    page.position = Some(1234);
                    page.eta_seconds = Some(754);
                }
                PageState::Prequeue => page.opens_at = Some(now + 10 * 60 * 1000),
                _ => {}
            }
        }
        if matches!(
            state,
            PageState::Closed
                | PageState::InviteRequired
                | PageState::InviteUsed
                | PageState::ChallengeFailed
        ) {
            page.retry_s = 0;
        }
        page
    }

    /// The built-in page.
    pub fn render_builtin(&self) -> String {
        let lang = self.lang;
        match self.state {
            PageState::Waiting | PageState::Prequeue | PageState::Random => Some(
                page::WaitingPage {
                    room: self.room,
                    ticket_id: self.ticket_id,
                    position: self.position,
                    opens_at: self.opens_at,
                    random: self.state == PageState::Random,
                    eta_seconds: self.eta_seconds,
                    poll_after_ms: self.poll_ms,
                    status_url: self.status_url,
                    lang,
                }
                .render(),
            ),
            PageState::Full => Some(page::full_page(self.retry_s, lang)),
            PageState::Unavailable => Some(page::unavailable_page(self.retry_s, lang)),
            PageState::TooManyJoins => Some(page::too_many_joins_page(self.retry_s, lang)),
            PageState::Closed => page::refusal_page(ErrorCode::RoomClosed, lang),
            PageState::InviteRequired => page::refusal_page(ErrorCode::InviteRequired, lang),
            PageState::InviteUsed => page::refusal_page(ErrorCode::InviteUsed, lang),
            PageState::ChallengeFailed => page::refusal_page(ErrorCode::ChallengeFailed, lang),
        }
        .unwrap_or_default()
    }

    /// The page with `template` if there is one and it renders, else the built-in one.
    pub fn render(&self, template: Option<&PageTemplate>) -> String {
        template
            .and_then(|t| t.render(self).ok())
            .unwrap_or_else(|| self.render_builtin())
    }

    /// What the template sees.
    fn context(&self) -> Value {
        let text = self.lang.text();
        let (title, message) = self.sentences();
        let placed = !self.ticket_id.is_empty();
        let languages: Vec<Value> = Lang::ALL
            .iter()
            .map(|&l| {
                minijinja::context! {
                    tag => l.tag(),
                    name => l.name(),
                    current => l == self.lang,
                }
            })
            .collect();
        minijinja::context! {
            state => self.state.as_str(),
            lang => self.lang.tag(),
            dir => self.lang.dir(),
            room => self.room.as_str(),
            placed => placed,
            ticket_id => placed.then_some(self.ticket_id),
            position => self.position,
            position_text => self.position.map(|p| self.lang.format_number(p)),
            eta_seconds => self.eta_seconds,
            eta_text => self.state.is_waiting().then(|| self.lang.format_wait(self.eta_seconds)),
            opens_at => self.opens_at,
            poll_ms => self.poll_ms,
            status_url => (!self.status_url.is_empty()).then_some(self.status_url),
            stream_url => (!self.status_url.is_empty()).then(|| page::stream_url(self.status_url)),
            refresh_s => self.refresh_s(),
            retry_s => self.retry_s,
            title => title,
            message => message,
            text => Value::from(Serde(text)),
            languages => languages,
            page_css => Value::from_safe_string(include_str!("page.css").to_owned()),
        }
    }

    /// After how many seconds the page should reload itself (0: never): a waiting page at its
    /// poll interval (the gate lets the visitor in on the reload that finds them admitted).
    fn refresh_s(&self) -> u64 {
        if self.state.is_waiting() {
            self.poll_ms.div_ceil(1000).max(1)
        } else {
            self.retry_s
        }
    }

    /// The built-in page's title and message in the page's language.
    fn sentences(&self) -> (&'static str, String) {
        let text = self.lang.text();
        let script = &text.script;
        match self.state {
            PageState::Waiting if self.ticket_id.is_empty() => {
                (text.waiting_title, text.no_place.to_owned())
            }
            PageState::Waiting if self.eta_seconds.is_none() => {
                (text.waiting_title, script.unknown_message.to_owned())
            }
            PageState::Waiting => (text.waiting_title, script.estimate_message.to_owned()),
            PageState::Prequeue => (text.waiting_title, script.prequeue_message.to_owned()),
            PageState::Random => (text.waiting_title, script.random_message.to_owned()),
            PageState::Full => (text.full_title, text.full_message.to_owned()),
            PageState::Closed => (text.closed_title, text.closed_message.to_owned()),
            PageState::Unavailable => (text.unavailable_title, text.unavailable_message.to_owned()),
            PageState::TooManyJoins => (
                text.too_many_joins_title,
                text.too_many_joins_message
                    .replace("{s}", &self.lang.format_number(self.retry_s)),
            ),
            PageState::InviteRequired => (
                text.invite_required_title,
                text.invite_required_message.to_owned(),
            ),
            PageState::InviteUsed => (text.invite_used_title, text.invite_used_message.to_owned()),
            PageState::ChallengeFailed => (
                text.challenge_failed_title,
                text.challenge_failed_message.to_owned(),
            ),
        }
    }
}

/// How a store names a room's template: by the hash of its text, so that a compiled copy is
/// kept for as long as the text is the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct TemplateRef {
    /// SHA-256 of the text, hex, first 32 digits.
    pub hash: String,
    pub bytes: u64,
}

impl TemplateRef {
    pub fn of(source: &str) -> TemplateRef {
        let digest = Sha256::digest(source.as_bytes());
        let hash = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        TemplateRef {
            hash,
            bytes: source.len() as u64,
        }
    }
}

/// A compiled template, ready to render any [`Page`].
#[derive(Debug)]
pub struct PageTemplate {
    reference: TemplateRef,
    env: Environment<'static>,
}

impl PageTemplate {
    /// Compiles `source` and renders it once for every state, so that a template that cannot
    /// compile, or fails on some page, is refused when it is put, not when a visitor meets it:
    /// 422 `invalid_template` with the line (`line`) and what is wrong (`detail`).
    pub fn compile(source: &str) -> Result<PageTemplate, ApiError> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(ApiError::new(
                ErrorCode::BodyTooLarge,
                format!("a template is at most {MAX_TEMPLATE_BYTES} bytes"),
            ));
        }
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(64);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|e| refused(&e, "it does not compile"))?;
        let template = PageTemplate {
            reference: TemplateRef::of(source),
            env,
        };
        let room = RoomId::parse("preview").expect("a valid room id");
        for state in PageState::ALL {
            let page = Page::sample(state, &room, "/_qg/v1/rooms/preview/status", Lang::En, 0);
            template
                .render(&page)
                .map_err(|e| refused(&e, &format!("it fails on the {} page", state.as_str())))?;
        }
        Ok(template)
    }

    pub fn reference(&self) -> &TemplateRef {
        &self.reference
    }

    /// The page, or minijinja's error (a value the template uses wrongly, a render that ran out
    /// of fuel or grew past the largest page).
    pub fn render(&self, page: &Page) -> Result<String, minijinja::Error> {
        let template = self.env.get_template(NAME)?;
        let mut out = LimitedWriter(Vec::with_capacity(4096));
        template.render_captured_to(page.context(), &mut out)?;
        String::from_utf8(out.0)
            .map_err(|_| minijinja::Error::new(ErrorKind::BadEscape, "the page is not UTF-8"))
    }
}

/// The 422 for a template that does not compile or render, with its line.
fn refused(err: &minijinja::Error, why: &str) -> ApiError {
    let mut api = ApiError::new(
        ErrorCode::InvalidTemplate,
        match err.line() {
            Some(line) => format!("the template is refused: {why} (line {line}: {err:#})"),
            None => format!("the template is refused: {why} ({err:#})"),
        },
    );
    if let Some(line) = err.line() {
        api.extra.insert("line".into(), line.into());
    }
    api.extra.insert(
        "detail".into(),
        err.detail().unwrap_or(&err.kind().to_string()).into(),
    );
    api
}

/// A page buffer that refuses to grow past [`MAX_PAGE_BYTES`].
struct LimitedWriter(Vec<u8>);

impl std::io::Write for LimitedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_PAGE_BYTES {
            return Err(std::io::Error::other("the page grew past its limit"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Compiled templates by hash, a few at a time: the same text compiles once per process (or
/// isolate), whichever room and page asks. It also remembers which template each room used last,
/// for the page shown while the store cannot be asked.
#[derive(Debug, Default)]
pub struct TemplateCache {
    kept: std::sync::Mutex<Vec<Arc<PageTemplate>>>,
    last: std::sync::Mutex<std::collections::HashMap<RoomId, Arc<PageTemplate>>>,
    /// The texts being read and compiled now, by hash.
    loading: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// The right to read and compile one text, given to one caller at a time.
#[derive(Debug)]
pub struct Loading<'a> {
    cache: &'a TemplateCache,
    hash: String,
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        let mut loading = self.cache.loading.lock().unwrap_or_else(|e| e.into_inner());
        loading.remove(&self.hash);
    }
}

/// How many compiled templates a cache keeps (each room has one at a time).
const CACHED_TEMPLATES: usize = 32;

impl TemplateCache {
    pub fn get(&self, reference: &TemplateRef) -> Option<Arc<PageTemplate>> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter().find(|t| t.reference == *reference).cloned()
    }

    pub fn insert(&self, template: Arc<PageTemplate>) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|t| t.reference != template.reference);
        if kept.len() >= CACHED_TEMPLATES {
            kept.remove(0);
        }
        kept.push(template);
    }

    /// The right to load the text `reference` names, unless another caller is loading it: a
    /// crowd's first pages after a new template compile it once, not once each (the others get
    /// what the room showed before meanwhile).
    pub fn start_loading(&self, reference: &TemplateRef) -> Option<Loading<'_>> {
        let mut loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        loading.insert(reference.hash.clone()).then(|| Loading {
            cache: self,
            hash: reference.hash.clone(),
        })
    }

    /// Remembers that `room` uses `template` now.
    pub fn remember(&self, room: &RoomId, template: &Arc<PageTemplate>) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.get(room).is_none_or(|t| !Arc::ptr_eq(t, template)) {
            last.insert(room.clone(), template.clone());
        }
    }

    /// Forgets `room`'s template: it has none now.
    pub fn forget(&self, room: &RoomId) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.remove(room);
    }

    /// The template `room` used last.
    pub fn last_for(&self, room: &RoomId) -> Option<Arc<PageTemplate>> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.get(room).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomId {
        RoomId::parse("sale").unwrap()
    }

    fn compile(source: &str) -> PageTemplate {
        PageTemplate::compile(source).expect("the template compiles")
    }

    #[test]
    fn a_template_sees_the_page_in_the_visitor_s_language() {
        let template = compile(
            "<html lang=\"{{ lang }}\"><p>{{ state }}: {{ title }} \
             {% if position %}#{{ position_text }} ({{ eta_text }}){% endif %}</p></html>",
        );
        let room = room();
        let mut page = Page::sample(PageState::Waiting, &room, "/s", Lang::De, 0);
        page.position = Some(12_345);
        page.eta_seconds = Some(600);
        let html = template.render(&page).unwrap();
        assert_eq!(
            html,
            "<html lang=\"de\"><p>waiting: Sie sind in der Warteschlange #12.345 (etwa 10 Minuten)</p></html>",
            "{html}"
        );
    }

    #[test]
    fn values_are_escaped_unless_the_template_says_otherwise() {
        let template = compile("{{ \"<b>&\" }}|{{ page_css[:0] }}|{{ \"<i>\"|safe }}");
        let room = room();
        let html = template
            .render(&Page::sample(PageState::Full, &room, "", Lang::En, 0))
            .unwrap();
        assert_eq!(html, "&lt;b&gt;&amp;||<i>");
    }

    #[test]
    fn a_template_that_does_not_compile_is_refused_with_its_line() {
        let err = PageTemplate::compile("<p>one</p>\n<p>two</p>\n{% if %}\n").unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidTemplate);
        assert_eq!(err.code.http_status(), 422);
        assert_eq!(err.extra["line"], 3, "{err:?}");
        assert!(err.message.contains("line 3"), "{}", err.message);
    }

    #[test]
    fn a_template_that_fails_on_one_page_is_refused_with_the_page() {
        // Fine on every page but the closed one, where it divides by zero.
        let err = PageTemplate::compile("ok\n{% if state == \"closed\" %}{{ 1 // 0 }}{% endif %}")
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidTemplate);
        assert_eq!(err.extra["line"], 2);
        assert!(err.message.contains("closed page"), "{}", err.message);
    }

    #[test]
    fn a_runaway_template_is_stopped_and_refused() {
        let err = PageTemplate::compile(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidTemplate, "{err:?}");
        let err = PageTemplate::compile(&"x".repeat(MAX_TEMPLATE_BYTES + 1)).unwrap_err();
        assert_eq!(err.code, ErrorCode::BodyTooLarge);
    }

    #[test]
    fn without_a_template_or_when_it_fails_the_built_in_page_is_shown() {
        let room = room();
        let page = Page::notice(PageState::Full, &room, 30, Lang::Ko);
        assert_eq!(page.render(None), page::full_page(30, Lang::Ko));
        // Compiles and renders every sample, fails on a real visitor's page: the built-in one.
        let template = compile("{% if retry_s == 7 %}{{ 1 // 0 }}{% endif %}mine");
        assert_eq!(page.render(Some(&template)), "mine");
        let page = Page::notice(PageState::Full, &room, 7, Lang::Ko);
        assert_eq!(page.render(Some(&template)), page::full_page(7, Lang::Ko));
    }

    #[test]
    fn every_state_has_a_built_in_page() {
        let room = room();
        for state in PageState::ALL {
            for lang in Lang::ALL {
                let page = Page::sample(state, &room, "/s", lang, 0);
                let html = page.render_builtin();
                assert!(
                    html.contains(&format!("lang=\"{}\"", lang.tag())),
                    "{state:?} {lang:?}"
                );
                let (title, _) = page.sentences();
                assert!(html.contains(title), "{state:?} {lang:?}");
            }
            assert_eq!(PageState::parse(state.as_str()), Some(state));
        }
    }

    #[test]
    fn the_cache_keeps_a_template_by_its_text() {
        let cache = TemplateCache::default();
        let template = Arc::new(compile("a"));
        let reference = template.reference().clone();
        assert_eq!(reference, TemplateRef::of("a"));
        assert!(cache.get(&reference).is_none());
        cache.insert(template);
        assert!(cache.get(&reference).is_some());
        assert!(cache.get(&TemplateRef::of("b")).is_none());
        for i in 0..CACHED_TEMPLATES {
            cache.insert(Arc::new(compile(&i.to_string())));
        }
        assert!(cache.get(&reference).is_none(), "the oldest goes first");
    }

    #[test]
    fn one_caller_at_a_time_loads_a_text() {
        let cache = TemplateCache::default();
        let (a, b) = (TemplateRef::of("a"), TemplateRef::of("b"));
        let first = cache.start_loading(&a).expect("nobody loads it yet");
        assert!(
            cache.start_loading(&a).is_none(),
            "a second caller waits its turn"
        );
        assert!(
            cache.start_loading(&b).is_some(),
            "another text is another matter"
        );
        drop(first);
        assert!(
            cache.start_loading(&a).is_some(),
            "free again once the first is done"
        );
    }
}
