//! The gate: every request outside the API prefix. A path no room protects goes straight to the
//! upstream; on a protected path a live pass goes through, and everyone else gets the waiting
//! page (joining the queue if they have no place yet), or goes straight in when the room has a
//! free slot and nobody waits. Only a page navigation joins: any other request without a place
//! (an image, a fetch, a HEAD, a prefetch; see [`super::navigation`]) gets the waiting answer
//! and no place. While the store cannot be reached, the room's outage policy decides.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::access::Credentials;
use super::client::Client;
use super::error::{AppError, RETRY_AFTER_S};
use super::extract::{accept, cookie, query_value, Source};
use super::forward::{forward, Visitor};
use super::metrics::JoinOutcome;
use super::navigation::{arrival, Arrival};
use super::pages;
use super::public::{add_no_store_and_cookies, join_room, kept_place, User};
use super::state::{Service, UnavailablePolicy};
use crate::api::{
    pass_cookie_name, ticket_cookie_name, wants_json, VisitorResponse, VisitorStatus,
};
use crate::challenge::{Challenge, NoScript};
use crate::error::ErrorCode;
use crate::i18n::Lang;
use crate::page::{challenge_page, siteverify_page, unavailable_page};
use crate::room::{Mode, RoomConfig, RoomId, RoomRecord};
use crate::template::{Page, PageState, TemplateRef};
use crate::token::{Pass, Place};
use crate::visitor::Answer;

pub async fn gate(State(s): State<Arc<Service>>, req: Request) -> Response {
    let now = s.now();
    let json = wants_json(accept(req.headers()));
    let lang = page_language(req.uri().query(), req.headers());
    let table = match s.store.route_table(now).await {
        Ok(table) => table,
        // Which room the path belongs to is unknown: every path is treated as protected.
        Err(err) => return outage(&s, None, err.into(), req, json, lang).await,
    };
    let path = crate::path::match_key(req.uri().path());
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(header::HOST)?.to_str().ok())
        .and_then(crate::room::request_host);
    let Some(room) = table.room_for(host.as_deref(), &path).cloned() else {
        s.metrics.gate(None, "unprotected");
        return forward(&s, req, None, &[]).await;
    };
    let client = req
        .extensions()
        .get::<Client>()
        .cloned()
        .unwrap_or_default();
    let invite = query_value(req.uri().query(), "qg_invite");
    let asked = Asked {
        method: req.method().as_str(),
        path: &path,
        headers: req.headers(),
        arrival: arrival(req.method(), req.headers()),
        invite: invite.as_deref(),
        json,
        lang,
    };
    match decide(&s, &room, &client, asked, now).await {
        Ok(Decision::Unprotected) => forward(&s, req, None, &[]).await,
        Ok(Decision::Through { place, cookies }) => {
            let visitor = place.map(|place| Visitor { room: &room, place });
            forward(&s, req, visitor, &cookies).await
        }
        Ok(Decision::Wait(waiting)) => waiting_response(&s, &room, *waiting, json, lang, now).await,
        Err(err) if err.code() == ErrorCode::StoreUnavailable => {
            outage(&s, Some(&room), err, req, json, lang).await
        }
        Ok(Decision::Challenge(page)) => challenge_response(page, lang),
        Ok(Decision::Full(answer, named)) => {
            full_response(&s, &room, *answer, named.as_ref(), json, lang, now).await
        }
        Err(err) if !json => refusal(&s, &room, err, lang, now).await,
        Err(err) => err.into_response(),
    }
}

/// A browser refused a place: the same status (and `Retry-After`) as the JSON answer, as a
/// page that says why; the JSON error for anything a page would not explain.
async fn refusal(s: &Service, room: &RoomId, err: AppError, lang: Lang, now: u64) -> Response {
    let code = err.code();
    let mut response = err.into_response();
    let Some(state) = PageState::of_refusal(code) else {
        return response;
    };
    // Only the join limit's refusal asks to be tried again, after its Retry-After.
    let retry_s = match state {
        PageState::TooManyJoins => response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(RETRY_AFTER_S)
            .max(1),
        _ => 0,
    };
    let page = pages::render(s, &Page::notice(state, room, retry_s, lang), now).await;
    *response.body_mut() = axum::body::Body::from(page);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(status) = HeaderValue::from_str(code.as_str()) {
        headers.insert("x-queuegate-status", status);
    }
    in_language(headers, lang);
    response
}

/// The language of a page for this request: `?lang=`, then `Accept-Language`.
pub(super) fn page_language(query: Option<&str>, headers: &HeaderMap) -> Lang {
    let asked = query_value(query, "lang");
    let accept_language = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    Lang::negotiate(asked.as_deref(), accept_language)
}

/// Marks a page as written in `lang`, and caches as varying with the header that chose it.
pub(super) fn in_language(headers: &mut HeaderMap, lang: Lang) {
    headers.insert(
        header::CONTENT_LANGUAGE,
        HeaderValue::from_static(lang.tag()),
    );
    headers.append(header::VARY, HeaderValue::from_static("Accept-Language"));
}

/// What the gate does with a request on a protected path.
enum Decision {
    /// The room is gone: the path is not protected any more.
    Unprotected,
    /// Let it through, for this visitor, setting these cookies.
    Through {
        place: Option<Place>,
        cookies: Vec<String>,
    },
    /// Show the waiting page.
    Wait(Box<Waiting>),
    /// Show this page, which passes the room's challenge, then joins.
    Challenge(String),
    /// The line is full: no place was taken. With the template the room names.
    Full(Box<Answer>, Option<TemplateRef>),
}

/// The waiting answer, with the room's `queueing_status`, in the template the room names.
struct Waiting {
    answer: Answer,
    status: u16,
    named: Option<TemplateRef>,
}

/// What a request on a protected path asks, as the gate reads it.
struct Asked<'a> {
    method: &'a str,
    /// The path rooms are matched on.
    path: &'a str,
    headers: &'a HeaderMap,
    arrival: Arrival,
    /// `qg_invite` in the query.
    invite: Option<&'a str>,
    /// Whether the client wants JSON rather than a page.
    json: bool,
    /// The language of the pages.
    lang: Lang,
}

async fn decide(
    s: &Service,
    room: &RoomId,
    client: &Client,
    asked: Asked<'_>,
    now: u64,
) -> Result<Decision, AppError> {
    let Asked {
        method,
        path,
        headers,
        arrival,
        invite,
        json,
        lang,
    } = asked;
    let Some(record) = s.store.room(room, now).await?.map(|r| r.in_effect(now)) else {
        return Ok(Decision::Unprotected);
    };
    if record.config.mode == Mode::Passthrough {
        s.metrics.gate(Some(room), "passthrough");
        return Ok(Decision::Through {
            place: None,
            cookies: Vec::new(),
        });
    }
    let facts = crate::bypass::Request {
        method,
        path,
        client: client.ip,
    };
    let header = |name: &str| headers.get(name).map(|v| v.as_bytes());
    if crate::bypass::bypasses(&record.config.bypass, &facts, header) {
        s.metrics.gate(Some(room), "bypassed");
        return Ok(Decision::Through {
            place: None,
            cookies: Vec::new(),
        });
    }
    let ctx = s.context(&record, client);

    if let Some(pass) = cookie(headers, &pass_cookie_name(room))
        .and_then(|token| Pass::decode(token, &s.keys, room, now).ok())
        .filter(|pass| super::public::is_of_room(&record, pass.place))
    {
        let renew = pass.wants_renewal(now);
        if let Some(expires_at) = s.store.session(&record, pass.place, renew, now).await? {
            let cookies = if renew {
                let renewed = ctx.new_pass(pass.place, expires_at, now);
                vec![ctx.pass_cookie(&renewed.encode(&s.keys), expires_at, now)]
            } else {
                Vec::new()
            };
            s.metrics.gate(Some(room), "passed");
            return Ok(Decision::Through {
                place: Some(pass.place),
                cookies,
            });
        }
    }

    let ticket = cookie(headers, &ticket_cookie_name(room)).map(|t| (t, Source::Cookie));
    let answer = match arrival {
        // A browser that can pass the room's challenge gets the page that does, unless it
        // holds a place already.
        Arrival::Navigation if !json && challenge_at_page(&record.config) => {
            match kept_place(s, &record, client, ticket, now).await? {
                Some(answer) => {
                    s.metrics.join(room, JoinOutcome::Kept);
                    answer
                }
                None => {
                    s.metrics.gate(Some(room), "challenged");
                    return Ok(Decision::Challenge(challenge_page_of(s, &record, lang)));
                }
            }
        }
        Arrival::Navigation => {
            let credentials = Credentials {
                challenge: None,
                invite,
                navigation: true,
            };
            let (answer, outcome) =
                join_room(s, &record, client, User::Anyone, credentials, ticket, now).await?;
            s.metrics.join(room, outcome);
            if answer.body.status == VisitorStatus::Full {
                s.metrics.gate(Some(room), "full");
                return Ok(Decision::Full(Box::new(answer), record.template.clone()));
            }
            answer
        }
        // Not a page navigation: answered for the place it holds, never given one.
        Arrival::Held(reason) => match kept_place(s, &record, client, ticket, now).await? {
            Some(answer) => {
                s.metrics.join(room, JoinOutcome::Kept);
                answer
            }
            None => {
                s.metrics.held(room, reason.as_str());
                s.metrics.gate(Some(room), "held");
                return Ok(Decision::Wait(Box::new(Waiting {
                    answer: no_place(room),
                    status: record.config.queueing_status,
                    named: record.template.clone(),
                })));
            }
        },
    };
    if let Some(pass) = &answer.pass {
        s.metrics.gate(Some(room), "entered");
        return Ok(Decision::Through {
            place: Some(pass.place),
            cookies: answer.set_cookies,
        });
    }
    s.metrics.gate(Some(room), "waiting");
    Ok(Decision::Wait(Box::new(Waiting {
        answer,
        status: record.config.queueing_status,
        named: record.template,
    })))
}

/// Whether a page navigation without a place gets the challenge page rather than a join: the
/// room has a challenge, and a browser that runs no script is not let join without it.
fn challenge_at_page(config: &RoomConfig) -> bool {
    match &config.challenge {
        None => false,
        Some(Challenge::Pow(pow)) => pow.noscript == NoScript::Refuse,
        Some(Challenge::Siteverify(_)) => true,
    }
}

/// The page that passes the room's challenge: the proof of work's, or the widget's.
fn challenge_page_of(s: &Service, record: &RoomRecord, lang: Lang) -> String {
    match &record.config.challenge {
        Some(Challenge::Siteverify(config)) => siteverify_page(&record.id, config, &s.prefix, lang),
        _ => challenge_page(&record.id, &s.prefix, lang),
    }
}

/// A full line: the JSON answer, or a page that tries again by itself.
async fn full_response(
    s: &Service,
    room: &RoomId,
    answer: Answer,
    named: Option<&TemplateRef>,
    json: bool,
    lang: Lang,
    now: u64,
) -> Response {
    let retry_s = answer
        .body
        .poll_after_ms
        .unwrap_or(super::public::FULL_RETRY_MS)
        .div_ceil(1000)
        .max(1);
    let mut response = if json {
        let body = serde_json::to_string(&answer.body).unwrap_or_default();
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    } else {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            {
                let page = Page::notice(PageState::Full, room, retry_s, lang);
                pages::render_named(s, &page, named, now).await
            },
        )
            .into_response()
    };
    if !json {
        in_language(response.headers_mut(), lang);
    }
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_s));
    headers.insert("x-queuegate-status", HeaderValue::from_static("full"));
    response
}

/// The challenge page for a browser without a place in a room with a challenge: 200, never
/// cached (a cache in front must not serve it to a visitor who has a place by now).
fn challenge_response(page: String, lang: Lang) -> Response {
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-queuegate-status", HeaderValue::from_static("challenge"));
    in_language(headers, lang);
    response
}

/// The waiting answer for a request that holds no place and gets none: waiting, with no ticket,
/// no position and no cookie.
fn no_place(room: &RoomId) -> Answer {
    let mut body = VisitorResponse::new(room, VisitorStatus::Waiting);
    body.poll_after_ms = Some(crate::estimate::MIN_POLL_MS);
    Answer {
        body,
        set_cookies: Vec::new(),
        pass: None,
    }
}

/// The store is away: the policy lets everyone through, or the gate stays closed with a page
/// that retries by itself (or the error, for JSON clients).
async fn outage(
    s: &Service,
    room: Option<&RoomId>,
    err: AppError,
    req: Request,
    json: bool,
    lang: Lang,
) -> Response {
    tracing::warn!(error = %err.0, "the store is unavailable at the gate");
    match s.on_store_unavailable {
        UnavailablePolicy::Open => {
            s.metrics.gate(room, "open");
            forward(s, req, None, &[]).await
        }
        UnavailablePolicy::Closed => {
            s.metrics.gate(room, "closed");
            unavailable_response(s, room, err, json, lang).await
        }
    }
}

async fn unavailable_response(
    s: &Service,
    room: Option<&RoomId>,
    err: AppError,
    json: bool,
    lang: Lang,
) -> Response {
    if json {
        return err.into_response();
    }
    let page = match room {
        Some(room) => {
            let page = Page::notice(PageState::Unavailable, room, RETRY_AFTER_S, lang);
            pages::render(s, &page, s.now()).await
        }
        None => unavailable_page(RETRY_AFTER_S, lang),
    };
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response();
    let headers = response.headers_mut();
    in_language(headers, lang);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
    headers.insert(
        "x-queuegate-status",
        HeaderValue::from_static("unavailable"),
    );
    response.extensions_mut().insert(super::error::Fault(err.0));
    response
}

async fn waiting_response(
    s: &Service,
    room: &RoomId,
    waiting: Waiting,
    json: bool,
    lang: Lang,
    now: u64,
) -> Response {
    let Waiting {
        answer,
        status,
        named,
    } = waiting;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = if json {
        let body = serde_json::to_string(&answer.body).unwrap_or_default();
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    } else {
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            {
                let status_url = format!("{}/rooms/{room}/status", s.prefix);
                let page = Page::waiting(room, &answer.body, &status_url, lang);
                pages::render_named(s, &page, named.as_ref(), now).await
            },
        )
            .into_response()
    };
    let headers = response.headers_mut();
    if !json {
        in_language(headers, lang);
    }
    add_no_store_and_cookies(headers, &answer.set_cookies);
    headers.insert("x-queuegate-status", HeaderValue::from_static("waiting"));
    response
}
