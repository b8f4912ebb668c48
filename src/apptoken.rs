//! Tokens the application signs for queuegate: JSON Web Tokens (RFC 7519) signed with HS256, the
//! form every web framework can issue, whose header's `kid` names one of the keys the deployment
//! shares with the application (`QUEUEGATE_APP_KEYS`, `kid:secret` pairs). A user token names a
//! user (`sub`) and proves the place that user holds, on any device.
//!
//! Only HS256 is taken: a token naming another algorithm (`none` among them) is refused before
//! anything else is read. Written over the HMAC-SHA256 the tickets already use; a JWT crate would
//! bring RSA, elliptic curves and a random source that does not build for the worker.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Mac;
use serde::Deserialize;

use crate::api::validate_user_id;
use crate::error::{ApiError, ErrorCode};
use crate::keys::SigningKeys;

/// The longest token taken, in bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppTokenError {
    /// Not three base64url parts of JSON, or a claim missing or of the wrong type.
    Malformed,
    /// An algorithm other than HS256.
    WrongAlgorithm,
    /// A `kid` that names no key of the deployment (or none given).
    UnknownKey,
    /// The signature does not match.
    BadSignature,
    /// Past its `exp`.
    Expired,
    /// Before its `nbf`.
    NotYetValid,
}

impl AppTokenError {
    pub fn reason(self) -> &'static str {
        match self {
            AppTokenError::Malformed => "is not a JWT with the claims it needs",
            AppTokenError::WrongAlgorithm => "is not signed with HS256",
            AppTokenError::UnknownKey => "names no key of this deployment in its kid",
            AppTokenError::BadSignature => "has a signature that does not match",
            AppTokenError::Expired => "has expired",
            AppTokenError::NotYetValid => "is not valid yet",
        }
    }

    /// The API error for a refused user token.
    pub fn for_user_token(self) -> ApiError {
        ApiError::new(
            ErrorCode::InvalidUserToken,
            format!("the user token {}", self.reason()),
        )
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// The claims queuegate reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claims {
    pub sub: String,
    /// Seconds since the Unix epoch.
    pub exp: u64,
    #[serde(default)]
    pub nbf: Option<u64>,
    #[serde(default)]
    pub jti: Option<String>,
    /// The client an invite is bound to, if any.
    #[serde(default)]
    pub client_ip: Option<String>,
}

/// Verifies an HS256 token against `keys` at `now` (Unix milliseconds) and returns its claims.
pub fn verify(token: &str, keys: &SigningKeys, now: u64) -> Result<Claims, AppTokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(AppTokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AppTokenError::Malformed);
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| AppTokenError::Malformed)
    };
    let head: Header =
        serde_json::from_slice(&decode(header)?).map_err(|_| AppTokenError::Malformed)?;
    if head.alg != "HS256" {
        return Err(AppTokenError::WrongAlgorithm);
    }
    let key = head
        .kid
        .as_deref()
        .and_then(|kid| keys.find(kid.as_bytes()))
        .ok_or(AppTokenError::UnknownKey)?;
    let mut mac = key.mac();
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    mac.verify_slice(&decode(signature)?)
        .map_err(|_| AppTokenError::BadSignature)?;
    let claims: Claims =
        serde_json::from_slice(&decode(payload)?).map_err(|_| AppTokenError::Malformed)?;
    let now_s = now / 1000;
    if claims.exp <= now_s {
        return Err(AppTokenError::Expired);
    }
    if claims.nbf.is_some_and(|nbf| nbf > now_s) {
        return Err(AppTokenError::NotYetValid);
    }
    Ok(claims)
}

/// The user a user token proves, checked as a `user_id` is.
pub fn verify_user(token: &str, keys: &SigningKeys, now: u64) -> Result<String, ApiError> {
    let claims = verify(token, keys, now).map_err(AppTokenError::for_user_token)?;
    validate_user_id(&claims.sub)?;
    Ok(claims.sub)
}

/// Signs `claims` (a JSON object) as the application would: for tests and examples.
pub fn sign(claims: &serde_json::Value, keys: &SigningKeys) -> String {
    let key = keys.signer();
    let header = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": key.kid()});
    let header = URL_SAFE_NO_PAD.encode(header.to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = key.mac();
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{header}.{payload}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000_000;

    fn keys() -> SigningKeys {
        SigningKeys::parse("app1:0123456789abcdef0123").unwrap()
    }

    #[test]
    fn a_token_the_application_signed_names_its_user() {
        let token = sign(&json!({"sub": "u-42", "exp": NOW / 1000 + 60}), &keys());
        assert_eq!(verify_user(&token, &keys(), NOW).unwrap(), "u-42");
    }

    #[test]
    fn anything_else_is_refused() {
        let k = keys();
        let good = sign(&json!({"sub": "u", "exp": NOW / 1000 + 60}), &k);
        let other = SigningKeys::parse("app1:another-secret-of-16-bytes").unwrap();
        let cases = [
            ("", AppTokenError::Malformed),
            ("a.b", AppTokenError::Malformed),
            (&format!("{good}.x"), AppTokenError::Malformed),
            (
                &sign(&json!({"sub": "u", "exp": NOW / 1000 + 60}), &other),
                AppTokenError::BadSignature,
            ),
            (
                &sign(&json!({"sub": "u", "exp": NOW / 1000}), &k),
                AppTokenError::Expired,
            ),
            (
                &sign(
                    &json!({"sub": "u", "exp": NOW / 1000 + 60, "nbf": NOW / 1000 + 30}),
                    &k,
                ),
                AppTokenError::NotYetValid,
            ),
            (&sign(&json!({"sub": "u"}), &k), AppTokenError::Malformed),
            (
                &sign(&json!({"sub": 5, "exp": NOW / 1000 + 60}), &k),
                AppTokenError::Malformed,
            ),
        ];
        for (token, want) in cases {
            assert_eq!(verify(token, &k, NOW), Err(want), "{token}");
        }
        // A changed payload breaks the signature.
        let parts: Vec<&str> = good.split('.').collect();
        let forged_payload =
            URL_SAFE_NO_PAD.encode(json!({"sub": "admin", "exp": NOW / 1000 + 60}).to_string());
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(verify(&forged, &k, NOW), Err(AppTokenError::BadSignature));
        // alg none, and a kid nobody has.
        let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"app1"}"#);
        assert_eq!(
            verify(&format!("{none}.{}.", parts[1]), &k, NOW),
            Err(AppTokenError::WrongAlgorithm)
        );
        let stranger = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"nobody"}"#);
        assert_eq!(
            verify(&format!("{stranger}.{}.{}", parts[1], parts[2]), &k, NOW),
            Err(AppTokenError::UnknownKey)
        );
    }

    #[test]
    fn a_user_token_names_a_valid_user_id() {
        let token = sign(&json!({"sub": "", "exp": NOW / 1000 + 60}), &keys());
        assert_eq!(
            verify_user(&token, &keys(), NOW).unwrap_err().code,
            ErrorCode::InvalidUserId
        );
    }
}
