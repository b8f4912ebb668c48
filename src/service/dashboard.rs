//! The operators' dashboard at `{prefix}/admin/ui`: one page that asks for the admin key, keeps
//! it in the tab's memory only, and drives the admin API with it (live numbers and charts of
//! every room, and the controls). The page itself holds nothing secret, so loading it needs no
//! key; every call it makes does.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::state::Service;

const PAGE: &str = include_str!("dashboard.html");

#[utoipa::path(
    get,
    path = "/ui",
    tag = "operators",
    summary = "The operators' dashboard page (asks for the admin key itself)",
    responses((status = 200, description = "The page", body = String, content_type = "text/html"))
)]
pub async fn page(State(s): State<Arc<Service>>) -> Response {
    let page = render(&s.prefix);
    let csp = content_security_policy(&page);
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response();
    let headers = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    // Its buttons act with the operator's key: no other site may frame it.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The page, calling the admin API under `api_prefix`.
fn render(api_prefix: &str) -> String {
    // The prefix lands in a script string: JSON-quoted, and `<` escaped so that no value can
    // end the script.
    let quoted = serde_json::to_string(api_prefix)
        .unwrap_or_else(|_| "\"\"".into())
        .replace('<', "\\u003c");
    PAGE.replace("\"{{api_prefix}}", &quoted[..quoted.len() - 1])
}

/// Only the page's own script runs (by its hash), it talks only to this origin, and nothing
/// frames it.
fn content_security_policy(page: &str) -> String {
    let script = page
        .split_once("<script>")
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map_or("", |(script, _)| script);
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(script.as_bytes()));
    format!(
        "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
         connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_calls_the_admin_api_under_the_prefix() {
        let page = render("/_qg/v1");
        assert!(page.contains(r#"var api = "/_qg/v1/admin";"#), "{page}");
        assert!(!page.contains("{{"));
        let odd = render("/x</script><script>alert(1)//");
        assert!(!odd.contains("</script><script>alert"));
    }

    #[test]
    fn only_the_page_s_own_script_may_run() {
        let page = render("/_qg/v1");
        let csp = content_security_policy(&page);
        assert!(csp.contains("script-src 'sha256-"));
        assert!(csp.contains("frame-ancestors 'none'"));
        // Another script (or the same one changed) has another hash.
        assert_ne!(csp, content_security_policy(&render("/other")));
    }

    #[test]
    fn the_key_is_never_stored_by_the_page() {
        assert!(!PAGE.contains("localStorage"));
        assert!(!PAGE.contains("sessionStorage"));
        assert!(!PAGE.contains("document.cookie"));
    }
}
