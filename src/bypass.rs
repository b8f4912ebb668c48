//! Bypass rules: requests on a room's paths that go to the application without queueing and
//! without being counted (a stylesheet, the payment provider's callback, the office network, a
//! monitoring probe with a secret header). A rule matches when every field it has matches; a
//! request matching any of the room's rules bypasses the room.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, ErrorCode};
use crate::room::path_has_prefix;

pub const MAX_RULES: usize = 16;
/// The most entries in one of a rule's lists.
pub const MAX_ENTRIES: usize = 32;
pub const MAX_EXTENSION_LEN: usize = 16;
pub const MAX_HEADER_VALUE_LEN: usize = 256;

/// One rule: each field it has must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct BypassRule {
    /// Path prefixes, matched on segment boundaries as a room's `paths` are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// File extensions without the dot (`css`), compared without regard to case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Vec<String>>,
    /// Client address ranges, such as `192.0.2.0/24` or `2001:db8::/32`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "service", schema(value_type = Option<Vec<String>>))]
    pub cidrs: Option<Vec<IpNet>>,
    /// A header that must be present with exactly this value (compared in constant time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderRule>,
    /// Request methods, such as `POST`, compared without regard to case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct HeaderRule {
    pub name: String,
    pub value: String,
}

/// What a rule looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path rooms are matched on ([`crate::path::match_key`]).
    pub path: &'a str,
    pub client: Option<IpAddr>,
}

impl BypassRule {
    /// Whether `req` matches every field of the rule; `header` reads a request header's value
    /// by its (lowercase) name.
    pub fn matches<'h>(
        &self,
        req: &Request<'_>,
        header: impl Fn(&str) -> Option<&'h [u8]>,
    ) -> bool {
        let paths = self
            .paths
            .as_ref()
            .is_none_or(|paths| paths.iter().any(|prefix| path_has_prefix(req.path, prefix)));
        let extensions = self.extensions.as_ref().is_none_or(|extensions| {
            extension_of(req.path)
                .is_some_and(|ext| extensions.iter().any(|e| e.eq_ignore_ascii_case(ext)))
        });
        let cidrs = self.cidrs.as_ref().is_none_or(|cidrs| {
            req.client
                .is_some_and(|ip| cidrs.iter().any(|net| net.contains(&canonical(ip))))
        });
        let methods = self
            .methods
            .as_ref()
            .is_none_or(|methods| methods.iter().any(|m| m.eq_ignore_ascii_case(req.method)));
        let header = self.header.as_ref().is_none_or(|rule| {
            header(&rule.name.to_ascii_lowercase())
                .is_some_and(|value| bool::from(value.ct_eq(rule.value.as_bytes())))
        });
        paths && extensions && cidrs && methods && header
    }

    fn validate(&self, reserved_prefix: &str) -> Result<(), String> {
        let fields = [
            self.paths.is_some(),
            self.extensions.is_some(),
            self.cidrs.is_some(),
            self.header.is_some(),
            self.methods.is_some(),
        ];
        if !fields.contains(&true) {
            return Err(
                "a rule needs at least one of paths, extensions, cidrs, header, methods \
                        (an empty rule would let every request bypass the room)"
                    .into(),
            );
        }
        let lists = [
            ("paths", self.paths.as_ref().map(Vec::len)),
            ("extensions", self.extensions.as_ref().map(Vec::len)),
            ("cidrs", self.cidrs.as_ref().map(Vec::len)),
            ("methods", self.methods.as_ref().map(Vec::len)),
        ];
        for (field, len) in lists {
            if let Some(len) = len {
                if len == 0 || len > MAX_ENTRIES {
                    return Err(format!("{field}: 1 to {MAX_ENTRIES} entries"));
                }
            }
        }
        for path in self.paths.iter().flatten() {
            crate::room::validate_path(path, reserved_prefix)
                .map_err(|msg| format!("paths: {path:?} {msg}"))?;
        }
        for ext in self.extensions.iter().flatten() {
            let ok = !ext.is_empty()
                && ext.len() <= MAX_EXTENSION_LEN
                && ext.bytes().all(|b| b.is_ascii_alphanumeric());
            if !ok {
                return Err(format!(
                    "extensions: {ext:?} is not 1-{MAX_EXTENSION_LEN} letters or digits \
                     (without the dot)"
                ));
            }
        }
        for method in self.methods.iter().flatten() {
            let ok = !method.is_empty()
                && method.len() <= 16
                && method.bytes().all(|b| b.is_ascii_alphabetic());
            if !ok {
                return Err(format!("methods: {method:?} is not a method name"));
            }
        }
        if let Some(rule) = &self.header {
            let name_ok = !rule.name.is_empty()
                && rule.name.len() <= 64
                && rule
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_ok {
                return Err(format!("header.name: {:?} is not a header name", rule.name));
            }
            // Queuegate's own cookies and headers are never a bypass secret.
            let lower = rule.name.to_ascii_lowercase();
            if lower == "cookie" || lower.starts_with("x-queuegate-") {
                return Err(format!("header.name: {:?} cannot be used", rule.name));
            }
            let value_ok = !rule.value.is_empty()
                && rule.value.len() <= MAX_HEADER_VALUE_LEN
                && rule.value.bytes().all(|b| (0x20..0x7f).contains(&b));
            if !value_ok {
                return Err(format!(
                    "header.value: 1-{MAX_HEADER_VALUE_LEN} printable ASCII characters"
                ));
            }
        }
        Ok(())
    }
}

/// Checks a room's rules.
pub fn validate(rules: &[BypassRule], reserved_prefix: &str) -> Result<(), ApiError> {
    let invalid = |msg: String| Err(ApiError::new(ErrorCode::InvalidConfig, msg));
    if rules.len() > MAX_RULES {
        return invalid(format!("bypass: at most {MAX_RULES} rules"));
    }
    for (i, rule) in rules.iter().enumerate() {
        if let Err(msg) = rule.validate(reserved_prefix) {
            return invalid(format!("bypass[{i}].{msg}"));
        }
    }
    Ok(())
}

/// Whether `req` matches any of `rules`.
pub fn bypasses<'h>(
    rules: &[BypassRule],
    req: &Request<'_>,
    header: impl Fn(&str) -> Option<&'h [u8]> + Copy,
) -> bool {
    rules.iter().any(|rule| rule.matches(req, header))
}

/// The extension of the path's last segment (`css` of `/a/b.min.css`), if it has one.
fn extension_of(path: &str) -> Option<&str> {
    let last = path.rsplit('/').next()?;
    let (stem, ext) = last.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then_some(ext)
}

/// An IPv4-mapped IPv6 address is the IPv4 address it maps, for ranges as for join limits.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> BypassRule {
        serde_json::from_str(json).unwrap()
    }

    fn req<'a>(method: &'a str, path: &'a str, client: &str) -> Request<'a> {
        Request {
            method,
            path,
            client: Some(client.parse().unwrap()),
        }
    }

    fn no_header(_: &str) -> Option<&'static [u8]> {
        None
    }

    #[test]
    fn every_field_a_rule_has_must_match() {
        let r = rule(r#"{"paths": ["/shop/static"], "extensions": ["css", "JS"]}"#);
        assert!(r.matches(&req("GET", "/shop/static/a.css", "192.0.2.1"), no_header));
        assert!(r.matches(
            &req("GET", "/shop/static/x/app.min.js", "192.0.2.1"),
            no_header
        ));
        assert!(!r.matches(&req("GET", "/shop/static/a.html", "192.0.2.1"), no_header));
        assert!(!r.matches(&req("GET", "/shop/a.css", "192.0.2.1"), no_header));
        assert!(!r.matches(&req("GET", "/shop/staticx/a.css", "192.0.2.1"), no_header));
        assert!(!r.matches(&req("GET", "/shop/static/.css", "192.0.2.1"), no_header));

        let r = rule(r#"{"cidrs": ["192.0.2.0/24", "2001:db8::/32"], "methods": ["post"]}"#);
        assert!(r.matches(&req("POST", "/x", "192.0.2.77"), no_header));
        assert!(r.matches(&req("POST", "/x", "::ffff:192.0.2.77"), no_header));
        assert!(r.matches(&req("POST", "/x", "2001:db8:5::1"), no_header));
        assert!(!r.matches(&req("GET", "/x", "192.0.2.77"), no_header));
        assert!(!r.matches(&req("POST", "/x", "198.51.100.1"), no_header));
        let unknown = Request {
            client: None,
            ..req("POST", "/x", "192.0.2.1")
        };
        assert!(!r.matches(&unknown, no_header));
    }

    #[test]
    fn a_header_rule_needs_the_exact_value() {
        let r = rule(r#"{"header": {"name": "X-Probe", "value": "s3cret"}}"#);
        let with = |v: &'static [u8]| move |name: &str| (name == "x-probe").then_some(v);
        let any = req("GET", "/", "192.0.2.1");
        assert!(r.matches(&any, with(b"s3cret")));
        assert!(!r.matches(&any, with(b"s3cre")));
        assert!(!r.matches(&any, with(b"s3cretx")));
        assert!(!r.matches(&any, no_header));
    }

    #[test]
    fn rules_are_validated() {
        let check = |json: &str| validate(&[rule(json)], "/_qg/v1");
        assert!(check(r#"{"paths": ["/a"]}"#).is_ok());
        for bad in [
            r#"{}"#,
            r#"{"paths": []}"#,
            r#"{"paths": ["a"]}"#,
            r#"{"paths": ["/_qg/v1/x"]}"#,
            r#"{"extensions": [".css"]}"#,
            r#"{"methods": ["GET /"]}"#,
            r#"{"header": {"name": "Cookie", "value": "x"}}"#,
            r#"{"header": {"name": "X-Queuegate-Visitor", "value": "x"}}"#,
            r#"{"header": {"name": "X-A", "value": ""}}"#,
            r#"{"header": {"name": "X A", "value": "v"}}"#,
        ] {
            let err = check(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidConfig, "{bad}");
            assert!(err.message.starts_with("bypass[0]."), "{}", err.message);
        }
        assert!(serde_json::from_str::<BypassRule>(r#"{"cidrs": ["300.1.1.1/8"]}"#).is_err());
        assert!(serde_json::from_str::<BypassRule>(r#"{"host": "x"}"#).is_err());
        let many = vec![rule(r#"{"paths": ["/a"]}"#); MAX_RULES + 1];
        assert!(validate(&many, "/_qg/v1").is_err());
    }
}
