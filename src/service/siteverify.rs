//! The external challenge: a widget's response checked against the room's siteverify URL, by
//! the protocol Cloudflare documents for Turnstile (reCAPTCHA and hCaptcha speak the same one).
//!
//! The request layer has no HTTP client: the shell supplies one ([`HttpClient`]), and this
//! decides everything else, once for both deployments: what is sent, how long the provider may
//! take, how much of its answer is read, and what the answer means. A provider that cannot be
//! reached, is too slow, or answers something that is not a siteverify reply gets the visitor
//! 503 `challenge_unavailable`: the response was neither accepted nor refused, and a refusal
//! would send a real visitor to the infinite queue for the provider's outage.

use std::net::IpAddr;

use async_trait::async_trait;
use axum::http::StatusCode;
use axum::response::Response;
use futures::future::{select, Either};
use serde::Deserialize;

use super::client::Client;
use super::error::AppError;
use super::forward::UpstreamError;
use super::state::Service;
use crate::challenge::SiteverifyConfig;
use crate::error::{ApiError, ErrorCode};

/// How long the provider may take to answer, all of it. Cloudflare answers in well under a
/// second; a visitor waiting on a join should not wait for a provider that has gone away.
pub const TIMEOUT_MS: u64 = 5_000;
/// The most of a provider's answer read. A reply is a few hundred bytes; the limit keeps a
/// misbehaving provider from filling the server's memory.
pub const MAX_REPLY_BYTES: usize = 16 * 1024;

/// An HTTP client for the calls the request layer makes itself: the shell's (reqwest on the
/// origin, `fetch` at the edge).
#[async_trait]
pub trait HttpClient: Send + Sync + 'static {
    /// POSTs `form`, already `application/x-www-form-urlencoded`, to the absolute `url`, and
    /// returns the answer with its body still to be read, so the caller bounds how much it reads
    /// and how long it waits. Redirects are not followed: the form carries a secret.
    async fn post_form(&self, url: &str, form: String) -> Result<Response, UpstreamError>;
}

/// Whether the provider accepts `response` from `client`: `Ok(false)` for a response it
/// refuses (wrong, expired, used before, or checked with a secret it does not know), and 503
/// `challenge_unavailable` when it gave no verdict.
pub async fn verify(
    s: &Service,
    config: &SiteverifyConfig,
    response: &str,
    client: &Client,
    _now: u64,
) -> Result<bool, AppError> {
    let form = form(&config.secret, response, client.ip);
    let call = std::pin::pin!(async {
        let reply = s
            .http_client
            .post_form(&config.url, form)
            .await
            .map_err(|UpstreamError(e)| format!("could not be reached: {e}"))?;
        let status = reply.status();
        let body = axum::body::to_bytes(reply.into_body(), MAX_REPLY_BYTES)
            .await
            .map_err(|e| format!("answered {status} with a body that could not be read: {e}"))?;
        Ok::<_, String>((status, body))
    });
    let outcome = match select(call, s.platform.sleep(TIMEOUT_MS)).await {
        Either::Left((Ok((status, body)), _)) => outcome(status, &body),
        Either::Left((Err(e), _)) => Outcome::Unavailable(e),
        Either::Right(_) => Outcome::Unavailable(format!("did not answer within {TIMEOUT_MS} ms")),
    };
    match outcome {
        Outcome::Passed => Ok(true),
        Outcome::Refused(codes) => {
            if codes.iter().any(|c| c.ends_with("-input-secret")) {
                // The visitor cannot fix this; whoever configured the room can.
                tracing::warn!(url = %config.url, ?codes, "the siteverify provider refused the room's secret");
            }
            Ok(false)
        }
        Outcome::Unavailable(why) => {
            tracing::warn!(url = %config.url, error = %why, "the siteverify provider gave no verdict");
            Err(ApiError::new(
                ErrorCode::ChallengeUnavailable,
                format!("the check could not be verified: its provider {why}; try again shortly"),
            )
            .into())
        }
    }
}

/// The form the provider takes: the room's `secret`, the widget's `response`, and the client's
/// address where it is known (the provider may weigh it). No `idempotency_key`: a response is
/// checked once and never retried, as a retry of a checked response is a duplicate anyway.
fn form(secret: &str, response: &str, ip: Option<IpAddr>) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("secret", secret);
    form.append_pair("response", response);
    if let Some(ip) = ip {
        form.append_pair("remoteip", &ip.to_string());
    }
    form.finish()
}

/// What the provider said.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Passed,
    /// Refused, with the provider's `error-codes`.
    Refused(Vec<String>),
    /// No verdict, and why.
    Unavailable(String),
}

/// The fields of a reply this reads; `challenge_ts`, `hostname`, `action` and `cdata` are
/// there too, and mean nothing to a room that sets none of them.
#[derive(Deserialize)]
struct Reply {
    success: bool,
    #[serde(rename = "error-codes", default)]
    error_codes: Vec<String>,
}

/// A reply's meaning. A provider answers a refusal with 200 (Cloudflare) or a 4xx, always as
/// JSON, so any status that is not a 5xx is read; a 5xx, a body that is not a reply, and
/// `internal-error` (which Cloudflare documents as worth retrying) are no verdict.
fn outcome(status: StatusCode, body: &[u8]) -> Outcome {
    if status.is_server_error() {
        return Outcome::Unavailable(format!("answered {status}"));
    }
    match serde_json::from_slice::<Reply>(body) {
        Ok(reply) if reply.success => Outcome::Passed,
        Ok(reply) if reply.error_codes.iter().any(|c| c == "internal-error") => {
            Outcome::Unavailable("had an internal error".into())
        }
        Ok(reply) => Outcome::Refused(reply.error_codes),
        Err(_) => Outcome::Unavailable(format!("answered {status} with no siteverify reply")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_is_url_encoded_with_the_clients_address_when_known() {
        assert_eq!(
            form(
                "0x4AAA-s3cr=t",
                "tok en&x+y/é",
                Some("203.0.113.9".parse().unwrap())
            ),
            "secret=0x4AAA-s3cr%3Dt&response=tok+en%26x%2By%2F%C3%A9&remoteip=203.0.113.9"
        );
        assert_eq!(
            form("s", "r", Some("2001:db8::1".parse().unwrap())),
            "secret=s&response=r&remoteip=2001%3Adb8%3A%3A1"
        );
        assert_eq!(form("s", "r", None), "secret=s&response=r");
    }

    #[test]
    fn replies_are_read_as_cloudflare_documents_them() {
        let ok = StatusCode::OK;
        let passed = br#"{"success":true,"challenge_ts":"2022-02-28T15:14:30.096Z",
            "hostname":"example.com","error-codes":[],"action":"login","cdata":"x"}"#;
        assert_eq!(outcome(ok, passed), Outcome::Passed);
        // Only `success` is required of a reply.
        assert_eq!(outcome(ok, br#"{"success":true}"#), Outcome::Passed);
        assert_eq!(
            outcome(
                ok,
                br#"{"success":false,"error-codes":["timeout-or-duplicate"]}"#
            ),
            Outcome::Refused(vec!["timeout-or-duplicate".into()])
        );
        assert_eq!(
            outcome(StatusCode::BAD_REQUEST, br#"{"success":false}"#),
            Outcome::Refused(vec![])
        );
        assert_eq!(
            outcome(
                ok,
                br#"{"success":false,"error-codes":["invalid-input-secret"]}"#
            ),
            Outcome::Refused(vec!["invalid-input-secret".into()])
        );
    }

    #[test]
    fn anything_but_a_reply_is_no_verdict() {
        let unavailable = |status: u16, body: &[u8]| {
            matches!(
                outcome(StatusCode::from_u16(status).unwrap(), body),
                Outcome::Unavailable(_)
            )
        };
        assert!(unavailable(502, br#"{"success":true}"#));
        assert!(unavailable(503, b"<html>down</html>"));
        assert!(unavailable(200, b"<html>a captive portal</html>"));
        assert!(unavailable(200, b""));
        assert!(unavailable(200, br#"{"success":"true"}"#));
        assert!(unavailable(200, br#"{"error-codes":[]}"#));
        assert!(unavailable(
            200,
            br#"{"success":false,"error-codes":["internal-error"]}"#
        ));
    }

    #[test]
    fn the_page_renders_the_widget_and_joins_with_its_response() {
        let room = crate::room::RoomId::parse("sale").unwrap();
        let config = SiteverifyConfig {
            url: "https://challenges.cloudflare.com/turnstile/v0/siteverify".into(),
            secret: "never-on-the-page".into(),
            site_key: "0x4AAAAAAA\"><script>".into(),
            script_url: "https://challenges.cloudflare.com/turnstile/v0/api.js".into(),
        };
        let page = crate::page::siteverify_page(&room, &config, "/_qg/v1", crate::i18n::Lang::En);
        assert!(page.contains(
            r#"<script src="https://challenges.cloudflare.com/turnstile/v0/api.js?render=explicit&amp;onload=qgWidgetLoaded""#
        ));
        assert!(page.contains(r#"data-join="/_qg/v1/rooms/sale/join""#));
        assert!(page.contains(r#"data-sitekey="0x4AAAAAAA&quot;&gt;&lt;script&gt;""#));
        assert!(page.contains("turnstile.render(box"));
        assert!(page.contains("challenge: { response: response }"));
        assert!(!page.contains("never-on-the-page"));
        // A script URL with a query keeps it.
        let config = SiteverifyConfig {
            script_url: "https://provider.example/api.js?hl=en".into(),
            ..config
        };
        let page = crate::page::siteverify_page(&room, &config, "/_qg/v1", crate::i18n::Lang::En);
        assert!(page.contains("api.js?hl=en&amp;render=explicit&amp;onload=qgWidgetLoaded"));
    }
}
