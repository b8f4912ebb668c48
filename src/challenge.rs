//! Challenges a join must pass in a room that sets one: a proof of work the client's own CPU
//! finds ([`PowChallenge`]), or a token from an external widget checked against a siteverify URL
//! (the request layer calls it; see `service::siteverify`).
//!
//! A proof-of-work challenge is a token queuegate signs, bound to the room, the client and an
//! expiry, with random salt:
//!
//! ```text
//! version(1) 'C'(1) kid_len(1) kid room_len(1) room client(1 + 0/4/8) difficulty(1) salt(8) expires_at(8) mac(16)
//! ```
//!
//! base64url without padding, like tickets. The client finds a `nonce` for which
//! SHA-256(token ":" nonce) starts with `difficulty` zero bits. Checking a solution costs one
//! hash; finding one costs 2^difficulty on average. Issuing keeps no state: a solution is
//! remembered only once accepted, until the token expires, so that it is accepted once.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Mac;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ErrorCode};
use crate::keys::SigningKeys;
use crate::limit::ClientKey;
use crate::room::RoomId;

pub const MIN_DIFFICULTY: u8 = 1;
/// 2^32 hashes is minutes of a phone's time: more would shut people out.
pub const MAX_DIFFICULTY: u8 = 32;
/// How long a visitor has to solve a challenge and join with it.
pub const POW_TTL_MS: u64 = 5 * 60 * 1000;
/// The longest nonce taken, in bytes.
pub const MAX_NONCE_LEN: usize = 64;
/// The longest challenge token or widget response taken, in bytes.
pub const MAX_ANSWER_LEN: usize = 4096;
pub const MAX_URL_LEN: usize = 512;
pub const MAX_SECRET_LEN: usize = 256;

const VERSION: u8 = 1;
const KIND: u8 = b'C';
const MAC_LEN: usize = 16;

/// A room's challenge, as its configuration says: `{"kind": "pow", "difficulty": 16}` or
/// `{"kind": "siteverify", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub enum Challenge {
    Pow(PowConfig),
    Siteverify(SiteverifyConfig),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct PowConfig {
    /// Leading zero bits the solution's hash must have: 2^difficulty hashes on average.
    pub difficulty: u8,
    /// What a browser that runs no script gets at the gate.
    #[serde(default)]
    pub noscript: NoScript,
}

/// A Turnstile-style widget: the page shows the provider's widget with `site_key`, and a join
/// brings the widget's response, which the server checks at `url` with `secret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct SiteverifyConfig {
    /// Where responses are checked, such as
    /// `https://challenges.cloudflare.com/turnstile/v0/siteverify`.
    pub url: String,
    pub secret: String,
    pub site_key: String,
    /// The widget's script, such as `https://challenges.cloudflare.com/turnstile/v0/api.js`.
    #[serde(default = "default_script_url")]
    pub script_url: String,
}

fn default_script_url() -> String {
    "https://challenges.cloudflare.com/turnstile/v0/api.js".to_owned()
}

/// What the gate does for a browser that runs no script, in a room with a proof-of-work
/// challenge (no script, no proof).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub enum NoScript {
    /// It gets a page saying the waiting room needs JavaScript, and no place.
    #[default]
    Refuse,
    /// A page navigation joins without a proof, as in a room without a challenge. Anything that
    /// sends a navigation's headers then skips the challenge: the proof binds API joins only.
    Join,
}

impl Challenge {
    pub fn validate(&self) -> Result<(), ApiError> {
        let invalid = |msg: String| Err(ApiError::new(ErrorCode::InvalidConfig, msg));
        match self {
            Challenge::Pow(pow) => {
                if !(MIN_DIFFICULTY..=MAX_DIFFICULTY).contains(&pow.difficulty) {
                    return invalid(format!(
                        "challenge.difficulty: {} is out of range \
                         {MIN_DIFFICULTY}..={MAX_DIFFICULTY}",
                        pow.difficulty
                    ));
                }
            }
            Challenge::Siteverify(sv) => {
                for (field, value, max) in [
                    ("url", &sv.url, MAX_URL_LEN),
                    ("script_url", &sv.script_url, MAX_URL_LEN),
                    ("secret", &sv.secret, MAX_SECRET_LEN),
                    ("site_key", &sv.site_key, MAX_SECRET_LEN),
                ] {
                    if value.is_empty() || value.len() > max || value.chars().any(char::is_control)
                    {
                        return invalid(format!(
                            "challenge.{field}: 1-{max} bytes without control characters"
                        ));
                    }
                }
                for (field, url) in [("url", &sv.url), ("script_url", &sv.script_url)] {
                    if !(url.starts_with("https://") || url.starts_with("http://")) {
                        return invalid(format!("challenge.{field}: an http(s) URL"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// What a client sends back in a join's `challenge` field: a proof-of-work `token` and `nonce`,
/// or a widget's `response`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct ChallengeAnswer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

impl ChallengeAnswer {
    pub fn validate(&self) -> Result<(), ApiError> {
        let too_long = [&self.token, &self.response]
            .into_iter()
            .flatten()
            .any(|v| v.len() > MAX_ANSWER_LEN)
            || self.nonce.as_ref().is_some_and(|n| n.len() > MAX_NONCE_LEN);
        if too_long {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "challenge: a token or response of at most {MAX_ANSWER_LEN} bytes and a \
                     nonce of at most {MAX_NONCE_LEN}"
                ),
            ));
        }
        Ok(())
    }
}

/// A proof-of-work challenge as a join's 403 `challenge_required` carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct PowChallenge {
    pub kind: String,
    pub difficulty: u8,
    pub token: String,
    pub expires_at: u64,
}

impl PowChallenge {
    /// A new challenge for `client` in `room`; `salt` is random bytes from the shell.
    pub fn issue(
        keys: &SigningKeys,
        room: &RoomId,
        client: Option<ClientKey>,
        difficulty: u8,
        salt: [u8; 8],
        now: u64,
    ) -> PowChallenge {
        let expires_at = now.saturating_add(POW_TTL_MS);
        let key = keys.signer();
        let kid = key.kid().as_bytes();
        let mut buf = Vec::with_capacity(64 + room.as_str().len());
        buf.push(VERSION);
        buf.push(KIND);
        buf.push(kid.len() as u8);
        buf.extend_from_slice(kid);
        buf.push(room.as_str().len() as u8);
        buf.extend_from_slice(room.as_str().as_bytes());
        push_client(&mut buf, client);
        buf.push(difficulty);
        buf.extend_from_slice(&salt);
        buf.extend_from_slice(&expires_at.to_be_bytes());
        let mut mac = key.mac();
        mac.update(&buf);
        buf.extend_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]);
        PowChallenge {
            kind: "pow".to_owned(),
            difficulty,
            token: URL_SAFE_NO_PAD.encode(buf),
            expires_at,
        }
    }
}

fn push_client(buf: &mut Vec<u8>, client: Option<ClientKey>) {
    match client {
        None => buf.push(0),
        Some(ClientKey::V4(octets)) => {
            buf.push(4);
            buf.extend_from_slice(&octets);
        }
        Some(ClientKey::V6Net(net)) => {
            buf.push(6);
            buf.extend_from_slice(&net);
        }
    }
}

/// Why a proof-of-work answer is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowError {
    /// Not a challenge of ours, or altered.
    Invalid,
    /// Genuine, but for another room or another client.
    NotYours,
    Expired,
    /// The nonce's hash has too few leading zero bits.
    Unsolved,
}

impl PowError {
    pub fn reason(self) -> &'static str {
        match self {
            PowError::Invalid => "the challenge token is not one of this waiting room's",
            PowError::NotYours => "the challenge was issued for another room or client",
            PowError::Expired => "the challenge expired: ask for a new one",
            PowError::Unsolved => "the nonce does not solve the challenge",
        }
    }
}

/// A solved challenge: what to remember (until `expires_at`) so that it is accepted once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solved {
    /// Identifies the challenge token: its MAC, in hex.
    pub once_key: String,
    pub expires_at: u64,
    pub difficulty: u8,
}

/// Checks a proof-of-work answer: the token is ours, for this room and client, unexpired, of at
/// least the room's `min_difficulty` (a room made harder since refuses easier tokens), and the
/// nonce solves it.
pub fn check_pow(
    token: &str,
    nonce: &str,
    keys: &SigningKeys,
    room: &RoomId,
    client: Option<ClientKey>,
    min_difficulty: u8,
    now: u64,
) -> Result<Solved, PowError> {
    if token.len() > MAX_ANSWER_LEN || nonce.is_empty() || nonce.len() > MAX_NONCE_LEN {
        return Err(PowError::Invalid);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| PowError::Invalid)?;
    if raw.len() < 4 + MAC_LEN || raw[0] != VERSION || raw[1] != KIND {
        return Err(PowError::Invalid);
    }
    let (signed, tag) = raw.split_at(raw.len() - MAC_LEN);
    let kid_len = signed[2] as usize;
    let kid = signed.get(3..3 + kid_len).ok_or(PowError::Invalid)?;
    let key = keys.find(kid).ok_or(PowError::Invalid)?;
    let mut mac = key.mac();
    mac.update(signed);
    mac.verify_truncated_left(tag)
        .map_err(|_| PowError::Invalid)?;
    let mut expected = Vec::with_capacity(signed.len());
    expected.extend_from_slice(&signed[..3 + kid_len]);
    expected.push(room.as_str().len() as u8);
    expected.extend_from_slice(room.as_str().as_bytes());
    push_client(&mut expected, client);
    // The rest: difficulty(1) salt(8) expires_at(8).
    let rest = signed
        .get(expected.len()..)
        .filter(|rest| rest.len() == 17)
        .ok_or(PowError::NotYours)?;
    if signed[..expected.len()] != expected[..] {
        return Err(PowError::NotYours);
    }
    let difficulty = rest[0];
    let expires_at = u64::from_be_bytes(rest[9..17].try_into().expect("8 bytes"));
    if now >= expires_at {
        return Err(PowError::Expired);
    }
    if difficulty < min_difficulty || leading_zero_bits(token, nonce) < u32::from(difficulty) {
        return Err(PowError::Unsolved);
    }
    Ok(Solved {
        once_key: tag.iter().map(|b| format!("{b:02x}")).collect(),
        expires_at,
        difficulty,
    })
}

/// Leading zero bits of SHA-256(token ":" nonce).
pub fn leading_zero_bits(token: &str, nonce: &str) -> u32 {
    let digest = Sha256::new()
        .chain_update(token.as_bytes())
        .chain_update(b":")
        .chain_update(nonce.as_bytes())
        .finalize();
    let mut bits = 0;
    for byte in digest {
        bits += byte.leading_zeros();
        if byte != 0 {
            break;
        }
    }
    bits
}

/// Finds a nonce for `token` by counting up from 0, as a client does: for tests and tools.
pub fn solve(token: &str, difficulty: u8) -> String {
    (0u64..)
        .map(|n| n.to_string())
        .find(|nonce| leading_zero_bits(token, nonce) >= u32::from(difficulty))
        .expect("some nonce solves it")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn keys() -> SigningKeys {
        SigningKeys::parse("k1:0123456789abcdef0123").unwrap()
    }

    fn room(id: &str) -> RoomId {
        RoomId::parse(id).unwrap()
    }

    fn client(last: u8) -> Option<ClientKey> {
        Some(ClientKey::of(std::net::IpAddr::from([192, 0, 2, last])))
    }

    #[test]
    fn a_solved_challenge_is_accepted_for_its_room_and_client_until_it_expires() {
        let c = PowChallenge::issue(&keys(), &room("sale"), client(1), 8, [7; 8], NOW);
        let nonce = solve(&c.token, 8);
        let check = |room_id: &str, who, now| {
            check_pow(&c.token, &nonce, &keys(), &room(room_id), who, 8, now)
        };
        let solved = check("sale", client(1), NOW + 1).unwrap();
        assert_eq!(solved.expires_at, NOW + POW_TTL_MS);
        assert_eq!(solved.once_key.len(), 32);
        assert_eq!(check("other", client(1), NOW), Err(PowError::NotYours));
        assert_eq!(check("sale", client(2), NOW), Err(PowError::NotYours));
        assert_eq!(check("sale", None, NOW), Err(PowError::NotYours));
        assert_eq!(
            check("sale", client(1), NOW + POW_TTL_MS),
            Err(PowError::Expired)
        );
    }

    #[test]
    fn a_wrong_nonce_an_altered_token_or_an_easier_token_is_refused() {
        let c = PowChallenge::issue(&keys(), &room("sale"), None, 12, [1; 8], NOW);
        let nonce = solve(&c.token, 12);
        let wrong = (0u64..)
            .map(|n| n.to_string())
            .find(|n| leading_zero_bits(&c.token, n) < 12)
            .unwrap();
        let r = room("sale");
        assert_eq!(
            check_pow(&c.token, &wrong, &keys(), &r, None, 12, NOW),
            Err(PowError::Unsolved)
        );
        // The room made harder after the token was issued.
        assert_eq!(
            check_pow(&c.token, &nonce, &keys(), &r, None, 13, NOW),
            Err(PowError::Unsolved)
        );
        let mut raw = URL_SAFE_NO_PAD.decode(&c.token).unwrap();
        let at = raw.len() - MAC_LEN - 17;
        raw[at] = 1; // the difficulty, lowered
        let altered = URL_SAFE_NO_PAD.encode(&raw);
        let easy_nonce = solve(&altered, 1);
        assert_eq!(
            check_pow(&altered, &easy_nonce, &keys(), &r, None, 1, NOW),
            Err(PowError::Invalid)
        );
        let other_keys = SigningKeys::parse("k1:another-secret-16-bytes").unwrap();
        assert_eq!(
            check_pow(&c.token, &nonce, &other_keys, &r, None, 12, NOW),
            Err(PowError::Invalid)
        );
        for junk in ["", "x", "!!!", "AAAA"] {
            assert_eq!(
                check_pow(junk, &nonce, &keys(), &r, None, 12, NOW),
                Err(PowError::Invalid),
                "{junk}"
            );
        }
        assert_eq!(
            check_pow(&c.token, "", &keys(), &r, None, 12, NOW),
            Err(PowError::Invalid)
        );
    }

    #[test]
    fn leading_zero_bits_counts_across_bytes() {
        // SHA-256("t:n") for a few nonces, checked by hand against the digest.
        for n in 0..2000u32 {
            let nonce = n.to_string();
            let digest = Sha256::digest(format!("tok:{nonce}").as_bytes());
            let want = digest
                .iter()
                .map(|b| format!("{b:08b}"))
                .collect::<String>()
                .chars()
                .take_while(|&c| c == '0')
                .count() as u32;
            assert_eq!(leading_zero_bits("tok", &nonce), want);
        }
    }

    #[test]
    fn difficulty_is_validated() {
        let pow = |d| {
            Challenge::Pow(PowConfig {
                difficulty: d,
                noscript: NoScript::Refuse,
            })
        };
        assert!(pow(0).validate().is_err());
        assert!(pow(33).validate().is_err());
        assert!(pow(1).validate().is_ok() && pow(32).validate().is_ok());
    }

    #[test]
    fn the_config_reads_as_documented() {
        let c: Challenge = serde_json::from_str(r#"{"kind":"pow","difficulty":16}"#).unwrap();
        assert_eq!(
            c,
            Challenge::Pow(PowConfig {
                difficulty: 16,
                noscript: NoScript::Refuse
            })
        );
        let c: Challenge = serde_json::from_str(
            r#"{"kind":"siteverify","url":"http://127.0.0.1:1/v","secret":"s","site_key":"k"}"#,
        )
        .unwrap();
        assert!(matches!(c, Challenge::Siteverify(_)));
        assert!(
            serde_json::from_str::<Challenge>(r#"{"kind":"pow","difficulty":16,"x":1}"#).is_err()
        );
        assert!(serde_json::from_str::<Challenge>(r#"{"kind":"captcha"}"#).is_err());
    }
}
