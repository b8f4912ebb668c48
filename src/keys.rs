//! Signing keys with key ids, so that keys can rotate: the first key signs, every key verifies.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub type HmacSha256 = Hmac<Sha256>;

pub const MAX_KID_LEN: usize = 16;
pub const MIN_SECRET_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("no signing keys given")]
    Empty,
    #[error("signing key {0:?} is not of the form kid:secret")]
    Malformed(String),
    #[error("key id {0:?} must be 1-16 characters of A-Z, a-z, 0-9, '-' and '_'")]
    BadKid(String),
    #[error("the secret of key {0:?} is shorter than 16 bytes")]
    ShortSecret(String),
    #[error("key id {0:?} appears twice")]
    DuplicateKid(String),
}

/// One key: its id and an HMAC-SHA256 instance already keyed with its secret (cloning a keyed
/// instance is cheaper than keying anew for every token).
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    mac: HmacSha256,
}

impl SigningKey {
    pub fn new(kid: &str, secret: &[u8]) -> Result<SigningKey, KeyError> {
        let kid_ok = !kid.is_empty()
            && kid.len() <= MAX_KID_LEN
            && kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !kid_ok {
            return Err(KeyError::BadKid(kid.to_owned()));
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::ShortSecret(kid.to_owned()));
        }
        let mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        Ok(SigningKey {
            kid: kid.to_owned(),
            mac,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub(crate) fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The keys a deployment signs and verifies with. The first key signs; all of them verify, so a
/// new key can be put first while tickets signed with the previous one stay valid.
#[derive(Clone, Debug)]
pub struct SigningKeys {
    keys: Vec<SigningKey>,
}

impl SigningKeys {
    pub fn new(keys: Vec<SigningKey>) -> Result<SigningKeys, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].iter().any(|k| k.kid == key.kid) {
                return Err(KeyError::DuplicateKid(key.kid.clone()));
            }
        }
        Ok(SigningKeys { keys })
    }

    /// Parses `QUEUEGATE_SIGNING_KEYS`: comma-separated `kid:secret` pairs, the first one signs.
    pub fn parse(spec: &str) -> Result<SigningKeys, KeyError> {
        let keys = spec
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                let (kid, secret) = part
                    .split_once(':')
                    .ok_or_else(|| KeyError::Malformed(redact(part)))?;
                SigningKey::new(kid.trim(), secret.trim().as_bytes())
            })
            .collect::<Result<Vec<_>, _>>()?;
        SigningKeys::new(keys)
    }

    /// A single key from 32 random bytes the caller drew, for a server started without keys.
    pub fn from_random(kid: &str, random: [u8; 32]) -> SigningKeys {
        let key = SigningKey::new(kid, &random).expect("32 random bytes make a valid key");
        SigningKeys { keys: vec![key] }
    }

    pub fn signer(&self) -> &SigningKey {
        &self.keys[0]
    }

    pub fn find(&self, kid: &[u8]) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid.as_bytes() == kid)
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }
}

/// Shows the key id of a malformed entry but never its secret.
fn redact(part: &str) -> String {
    let shown: String = part.chars().take(4).collect();
    format!("{shown}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_the_first_signs() {
        let keys = SigningKeys::parse("k2:0123456789abcdef0123, k1:fedcba9876543210fedc").unwrap();
        assert_eq!(keys.signer().kid(), "k2");
        assert_eq!(keys.kids().collect::<Vec<_>>(), ["k2", "k1"]);
        assert!(keys.find(b"k1").is_some());
        assert!(keys.find(b"k3").is_none());
    }

    #[test]
    fn refuses_bad_specs() {
        assert_eq!(SigningKeys::parse("").unwrap_err(), KeyError::Empty);
        assert!(matches!(
            SigningKeys::parse("nocolon"),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            SigningKeys::parse("k:short"),
            Err(KeyError::ShortSecret(_))
        ));
        assert!(matches!(
            SigningKeys::parse("bad kid:0123456789abcdef"),
            Err(KeyError::BadKid(_))
        ));
        assert!(matches!(
            SigningKeys::parse("a:0123456789abcdef,a:0123456789abcdef"),
            Err(KeyError::DuplicateKid(_))
        ));
    }

    #[test]
    fn errors_never_show_a_secret() {
        let err = SigningKeys::parse("supersecretvalue-without-colon").unwrap_err();
        assert!(!err.to_string().contains("secretvalue"));
    }
}
