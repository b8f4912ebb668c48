//! Invites to an invite-only room: JSON Web Tokens the application signs with one of its keys
//! (`QUEUEGATE_APP_KEYS`, HS256, as user tokens are), the way Queue-it's enqueue tokens work. An
//! invite names the room (`sub`), expires (`exp`), has an id (`jti`) that is accepted once, and
//! may be bound to one client (`client_ip`: an address, compared as join limits see clients).

use crate::apptoken::{verify, AppTokenError};
use crate::error::{ApiError, ErrorCode};
use crate::keys::SigningKeys;
use crate::limit::ClientKey;
use crate::room::RoomId;

/// The longest `jti` taken.
pub const MAX_JTI_LEN: usize = 128;

/// An invite that checked out: what to remember, until when, so that it is used once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub jti: String,
    /// Unix milliseconds: after this the invite is refused anyway.
    pub expires_at: u64,
}

/// Checks an invite for `room` from `client` at `now`. `keys` is `None` when the deployment has
/// no application keys: then no invite can be good.
pub fn check(
    token: &str,
    keys: Option<&SigningKeys>,
    room: &RoomId,
    client: Option<ClientKey>,
    now: u64,
) -> Result<Invite, ApiError> {
    let refused = |why: &str| {
        ApiError::new(
            ErrorCode::InviteRequired,
            format!("this room is invite-only, and the invite {why}"),
        )
    };
    let keys = keys.ok_or_else(|| {
        refused("cannot be checked: this deployment has no application keys (QUEUEGATE_APP_KEYS)")
    })?;
    let claims = verify(token, keys, now).map_err(|e| match e {
        AppTokenError::Expired => refused("has expired"),
        other => refused(&format!("is not valid: it {}", other.reason())),
    })?;
    if claims.sub != room.as_str() {
        return Err(refused("is for another room"));
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN && !j.chars().any(char::is_control))
        .ok_or_else(|| refused(&format!("has no jti of 1-{MAX_JTI_LEN} bytes")))?;
    if let Some(bound) = &claims.client_ip {
        let bound = bound
            .parse::<std::net::IpAddr>()
            .map_err(|_| refused("names a client_ip that is not an address"))?;
        if client != Some(ClientKey::of(bound)) {
            return Err(refused("was given to another client"));
        }
    }
    Ok(Invite {
        jti,
        expires_at: claims.exp.saturating_mul(1000),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apptoken::sign;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000_000;

    fn keys() -> SigningKeys {
        SigningKeys::parse("app1:0123456789abcdef0123").unwrap()
    }

    fn room() -> RoomId {
        RoomId::parse("vip").unwrap()
    }

    fn client(ip: &str) -> Option<ClientKey> {
        Some(ClientKey::of(ip.parse().unwrap()))
    }

    #[test]
    fn a_good_invite_names_its_id_and_expiry() {
        let token = sign(
            &json!({"sub": "vip", "exp": NOW / 1000 + 60, "jti": "inv-1"}),
            &keys(),
        );
        let invite = check(&token, Some(&keys()), &room(), None, NOW).unwrap();
        assert_eq!(invite.jti, "inv-1");
        assert_eq!(invite.expires_at, NOW + 60_000);
    }

    #[test]
    fn an_invite_bound_to_a_client_is_good_for_that_client_only() {
        let token = sign(
            &json!({"sub": "vip", "exp": NOW / 1000 + 60, "jti": "i", "client_ip": "2001:db8:1:2::5"}),
            &keys(),
        );
        // The same /64 is the same client.
        assert!(check(
            &token,
            Some(&keys()),
            &room(),
            client("2001:db8:1:2::9"),
            NOW
        )
        .is_ok());
        for other in [client("2001:db8:1:3::5"), client("192.0.2.1"), None] {
            assert!(check(&token, Some(&keys()), &room(), other, NOW).is_err());
        }
    }

    #[test]
    fn anything_else_is_refused_with_invite_required() {
        let k = keys();
        let exp = NOW / 1000 + 60;
        let other = SigningKeys::parse("app1:another-secret-of-16-bytes").unwrap();
        let cases = [
            sign(&json!({"sub": "other", "exp": exp, "jti": "i"}), &k),
            sign(&json!({"sub": "vip", "exp": exp}), &k),
            sign(&json!({"sub": "vip", "exp": exp, "jti": ""}), &k),
            sign(&json!({"sub": "vip", "exp": NOW / 1000, "jti": "i"}), &k),
            sign(&json!({"sub": "vip", "exp": exp, "jti": "i"}), &other),
            sign(
                &json!({"sub": "vip", "exp": exp, "jti": "i", "client_ip": "x"}),
                &k,
            ),
            "not-a-jwt".to_owned(),
        ];
        for token in &cases {
            let err = check(token, Some(&k), &room(), None, NOW).unwrap_err();
            assert_eq!(
                err.code,
                ErrorCode::InviteRequired,
                "{token}: {}",
                err.message
            );
        }
        let good = sign(&json!({"sub": "vip", "exp": exp, "jti": "i"}), &k);
        assert_eq!(
            check(&good, None, &room(), None, NOW).unwrap_err().code,
            ErrorCode::InviteRequired
        );
    }
}
