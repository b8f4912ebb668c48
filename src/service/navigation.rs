//! Which requests may take a place at the gate: page navigations only. An image, a script's
//! fetch, a HEAD, a prefetch or a link preview of a protected path gets the waiting answer
//! without joining, so that crawlers, embeds and prefetches do not fill the queue with places
//! nobody will ever wait in.
//!
//! A browser says what a request is for in the `Sec-Fetch-*` headers (every current browser
//! sends them): a navigation is `Sec-Fetch-Mode: navigate` to a `document` (or a frame's).
//! Without them (a browser from before 2020-2023, curl, most bots) a page request is told by its
//! `Accept` naming `text/html`, as every browser's page request does and no image or script
//! request does. curl's `Accept: */*` is not a page request.

use axum::http::{header, HeaderMap, Method};

/// What the gate may do for a request without a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// A page navigation: it may take a place.
    Navigation,
    /// Anything else: answered for a place it already holds, never given a new one.
    Held(HeldReason),
}

/// Why a request is not a navigation (the label of the metric that counts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldReason {
    /// A `HEAD`.
    Head,
    /// Any method but `GET` and `HEAD`.
    Method,
    /// A prefetch or prerender (`Sec-Purpose`, `Purpose`, `X-Purpose`, `X-Moz`), or a preview.
    Prefetch,
    /// The browser says it is no navigation (`Sec-Fetch-Mode`, `Sec-Fetch-Dest`): an image, a
    /// script, a fetch, a WebSocket.
    Subresource,
    /// No `Sec-Fetch-*` headers and an `Accept` without `text/html` (curl, most bots, a
    /// script's request from an old browser).
    NotHtml,
}

impl HeldReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HeldReason::Head => "head",
            HeldReason::Method => "method",
            HeldReason::Prefetch => "prefetch",
            HeldReason::Subresource => "subresource",
            HeldReason::NotHtml => "not_html",
        }
    }
}

/// Destinations of a navigation: the top-level page and a frame's page.
const NAVIGATION_DESTS: [&str; 3] = ["document", "iframe", "frame"];

/// Decides whether a request is a page navigation, from its method and headers alone.
pub fn arrival(method: &Method, headers: &HeaderMap) -> Arrival {
    if method == Method::HEAD {
        return Arrival::Held(HeldReason::Head);
    }
    if method != Method::GET {
        return Arrival::Held(HeldReason::Method);
    }
    if is_prefetch(headers) {
        return Arrival::Held(HeldReason::Prefetch);
    }
    let mode = value(headers, "sec-fetch-mode");
    let dest = value(headers, "sec-fetch-dest");
    if mode.is_some() || dest.is_some() {
        let navigates = mode.is_none_or(|m| m.eq_ignore_ascii_case("navigate"));
        let to_a_page = dest.is_none_or(|d| {
            NAVIGATION_DESTS
                .iter()
                .any(|page| d.eq_ignore_ascii_case(page))
        });
        return if navigates && to_a_page {
            Arrival::Navigation
        } else {
            Arrival::Held(HeldReason::Subresource)
        };
    }
    let html = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|accept| accept.to_ascii_lowercase().contains("text/html"));
    if html {
        Arrival::Navigation
    } else {
        Arrival::Held(HeldReason::NotHtml)
    }
}

/// `Sec-Purpose: prefetch` (and `prefetch;prerender`), Chrome's and Safari's older `Purpose:
/// prefetch` and `X-Purpose: preview`, Firefox's `X-Moz: prefetch`.
fn is_prefetch(headers: &HeaderMap) -> bool {
    ["sec-purpose", "purpose", "x-purpose", "x-moz"]
        .iter()
        .flat_map(|name| headers.get_all(*name).iter())
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            let v = v.to_ascii_lowercase();
            v.contains("prefetch") || v.contains("prerender") || v.contains("preview")
        })
}

fn value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap_or("").trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const NAV: Arrival = Arrival::Navigation;
    const HEAD: Arrival = Arrival::Held(HeldReason::Head);
    const METHOD: Arrival = Arrival::Held(HeldReason::Method);
    const PREFETCH: Arrival = Arrival::Held(HeldReason::Prefetch);
    const SUB: Arrival = Arrival::Held(HeldReason::Subresource);
    const NOT_HTML: Arrival = Arrival::Held(HeldReason::NotHtml);

    /// What a request is, its method, its headers, and what it is taken for.
    type Case = (
        &'static str,
        Method,
        &'static [(&'static str, &'static str)],
        Arrival,
    );

    const CHROME_PAGE: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,\
                               image/webp,image/apng,*/*;q=0.8";

    #[test]
    fn navigations_are_told_apart_from_everything_else() {
        let cases: &[Case] = &[
            (
                "a current browser's page",
                Method::GET,
                &[
                    ("accept", CHROME_PAGE),
                    ("sec-fetch-mode", "navigate"),
                    ("sec-fetch-dest", "document"),
                    ("sec-fetch-site", "none"),
                    ("sec-fetch-user", "?1"),
                ],
                NAV,
            ),
            (
                "a page in a frame",
                Method::GET,
                &[("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "iframe")],
                NAV,
            ),
            (
                "spelt in capitals",
                Method::GET,
                &[
                    ("sec-fetch-mode", "Navigate"),
                    ("sec-fetch-dest", "DOCUMENT"),
                ],
                NAV,
            ),
            (
                "a browser that sends only the mode",
                Method::GET,
                &[("sec-fetch-mode", "navigate")],
                NAV,
            ),
            (
                "a browser that sends only the destination",
                Method::GET,
                &[("sec-fetch-dest", "document")],
                NAV,
            ),
            (
                "a browser without Sec-Fetch-* (Safari before 16.4, Firefox before 90)",
                Method::GET,
                &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
                NAV,
            ),
            (
                "Internet Explorer 11",
                Method::GET,
                &[("accept", "text/html, application/xhtml+xml, image/jxr, */*")],
                NAV,
            ),
            (
                "curl told to ask for a page",
                Method::GET,
                &[("accept", "TEXT/HTML")],
                NAV,
            ),
            (
                "an image",
                Method::GET,
                &[
                    ("accept", "image/avif,image/webp,*/*"),
                    ("sec-fetch-mode", "no-cors"),
                    ("sec-fetch-dest", "image"),
                ],
                SUB,
            ),
            (
                "a fetch",
                Method::GET,
                &[("sec-fetch-mode", "cors"), ("sec-fetch-dest", "empty")],
                SUB,
            ),
            (
                "a fetch asking for HTML",
                Method::GET,
                &[
                    ("accept", "text/html"),
                    ("sec-fetch-mode", "cors"),
                    ("sec-fetch-dest", "empty"),
                ],
                SUB,
            ),
            (
                "a same-origin XHR",
                Method::GET,
                &[
                    ("sec-fetch-mode", "same-origin"),
                    ("sec-fetch-dest", "empty"),
                ],
                SUB,
            ),
            (
                "a script",
                Method::GET,
                &[("sec-fetch-mode", "no-cors"), ("sec-fetch-dest", "script")],
                SUB,
            ),
            (
                "a WebSocket handshake",
                Method::GET,
                &[
                    ("sec-fetch-mode", "websocket"),
                    ("sec-fetch-dest", "websocket"),
                ],
                SUB,
            ),
            (
                "a navigation to an object",
                Method::GET,
                &[("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "object")],
                SUB,
            ),
            (
                "a navigation-mode request to nowhere",
                Method::GET,
                &[("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "empty")],
                SUB,
            ),
            (
                "a service worker's script",
                Method::GET,
                &[
                    ("accept", "*/*"),
                    ("sec-fetch-mode", "same-origin"),
                    ("sec-fetch-dest", "serviceworker"),
                ],
                SUB,
            ),
            (
                "Chrome's prefetch",
                Method::GET,
                &[
                    ("accept", CHROME_PAGE),
                    ("sec-purpose", "prefetch"),
                    ("sec-fetch-mode", "navigate"),
                    ("sec-fetch-dest", "document"),
                ],
                PREFETCH,
            ),
            (
                "Chrome's prerender",
                Method::GET,
                &[
                    ("sec-purpose", "prefetch;prerender"),
                    ("sec-fetch-mode", "navigate"),
                    ("sec-fetch-dest", "document"),
                ],
                PREFETCH,
            ),
            (
                "an older Chrome's prefetch",
                Method::GET,
                &[("accept", CHROME_PAGE), ("purpose", "prefetch")],
                PREFETCH,
            ),
            (
                "Firefox's prefetch",
                Method::GET,
                &[("accept", "text/html"), ("x-moz", "prefetch")],
                PREFETCH,
            ),
            (
                "Safari's top sites preview",
                Method::GET,
                &[("accept", "text/html"), ("x-purpose", "preview")],
                PREFETCH,
            ),
            (
                "a HEAD, even of a page",
                Method::HEAD,
                &[
                    ("accept", "text/html"),
                    ("sec-fetch-mode", "navigate"),
                    ("sec-fetch-dest", "document"),
                ],
                HEAD,
            ),
            (
                "a form's POST",
                Method::POST,
                &[
                    ("accept", CHROME_PAGE),
                    ("sec-fetch-mode", "navigate"),
                    ("sec-fetch-dest", "document"),
                ],
                METHOD,
            ),
            ("an OPTIONS", Method::OPTIONS, &[], METHOD),
            ("curl", Method::GET, &[("accept", "*/*")], NOT_HTML),
            ("no headers at all", Method::GET, &[], NOT_HTML),
            (
                "a client asking for JSON",
                Method::GET,
                &[("accept", "application/json")],
                NOT_HTML,
            ),
            (
                "an old browser's image",
                Method::GET,
                &[("accept", "image/webp,*/*")],
                NOT_HTML,
            ),
        ];
        for (what, method, headers, want) in cases {
            let mut map = HeaderMap::new();
            for (name, value) in *headers {
                map.append(*name, HeaderValue::from_static(value));
            }
            assert_eq!(arrival(method, &map), *want, "{what}");
        }
    }

    #[test]
    fn reasons_have_stable_labels() {
        let labels = [
            HeldReason::Head,
            HeldReason::Method,
            HeldReason::Prefetch,
            HeldReason::Subresource,
            HeldReason::NotHtml,
        ]
        .map(HeldReason::as_str);
        assert_eq!(
            labels,
            ["head", "method", "prefetch", "subresource", "not_html"]
        );
    }
}
