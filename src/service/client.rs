//! Who the client is, decided once per request: its address and whether its request came over
//! HTTPS, from the connection the shell saw ([`ClientAddr`]) and, when that connection comes from
//! one of the deployment's trusted proxies, from what the proxy forwarded. What a client says of
//! itself in `X-Forwarded-For` or `X-Forwarded-Proto` counts for nothing unless a trusted proxy
//! passed it on.

use std::convert::Infallible;
use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri};
use ipnet::IpNet;

use super::forward::ClientAddr;

/// The client of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    /// Its address, where the shell knows one.
    pub ip: Option<IpAddr>,
    /// Whether the visitor's request came over HTTPS (to queuegate, or to the trusted proxy in
    /// front of it).
    pub https: bool,
    /// `X-Forwarded-For` as the application gets it: the client first, then the trusted proxies
    /// it went through (what stood left of the client in the header was its own say and is
    /// dropped), then the peer; from a client that is not a trusted proxy, the peer alone. The
    /// application may take the first entry as the client.
    pub forwarded_for: Option<String>,
    /// When the trusted proxy in front received the request (Unix ms, its `X-Request-Start`):
    /// a request that waited at a frozen instance is as old as that, not as the moment the
    /// instance got round to it.
    pub arrived_at: Option<u64>,
}

impl Client {
    /// When the request arrived: as the trusted proxy says, if it says earlier than `now`.
    pub fn arrived(&self, now: u64) -> u64 {
        self.arrived_at.map_or(now, |at| at.min(now))
    }
}

/// `X-Request-Start` as proxies write it: `t=` and seconds with a fraction (nginx's `$msec`),
/// or a whole number of seconds, milliseconds or microseconds (told apart by size).
fn request_start(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get("x-request-start")?.to_str().ok()?.trim();
    let value = value.strip_prefix("t=").unwrap_or(value);
    if let Some((secs, fraction)) = value.split_once('.') {
        let secs: u64 = secs.parse().ok()?;
        let millis: String = fraction.chars().chain("000".chars()).take(3).collect();
        return secs.checked_mul(1000)?.checked_add(millis.parse().ok()?);
    }
    let n: u64 = value.parse().ok()?;
    Some(match n {
        n if n >= 100_000_000_000_000 => n / 1000,
        n if n >= 100_000_000_000 => n,
        n => n.checked_mul(1000)?,
    })
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client of a request that came from `peer` with these headers.
pub fn client_of(
    headers: &HeaderMap,
    uri: &Uri,
    peer: Option<IpAddr>,
    trusted: &[IpNet],
) -> Client {
    let scheme_https = uri.scheme_str() == Some("https");
    let Some(peer) = peer.filter(|&p| is_trusted(p, trusted)) else {
        return Client {
            ip: peer,
            https: scheme_https,
            forwarded_for: peer.map(|p| p.to_string()),
            arrived_at: None,
        };
    };
    let chain: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    // Read from the right: each trusted proxy appended the address it got the request from; the
    // first that is not a trusted proxy is the client. An entry that is not an address ends the
    // trust: the peer stands for the client then.
    let mut ip = peer;
    // The chain from the client on: what stands left of it is the client's say about itself.
    let mut from = chain.len();
    for (at, entry) in chain.iter().enumerate().rev() {
        match entry.parse::<IpAddr>() {
            Ok(addr) => {
                ip = addr;
                from = at;
                if !is_trusted(addr, trusted) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let chain = &chain[from..];
    let proto = headers
        .get_all("x-forwarded-proto")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .map(|p| p.trim().to_ascii_lowercase());
    let forwarded_for = match chain.is_empty() {
        true => peer.to_string(),
        false => format!("{}, {peer}", chain.join(", ")),
    };
    Client {
        ip: Some(ip),
        https: scheme_https || proto.as_deref() == Some("https"),
        forwarded_for: Some(forwarded_for),
        arrived_at: request_start(headers),
    }
}

/// The client the request layer decided on for this request (set before routing).
impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(parts
            .extensions
            .get::<Client>()
            .cloned()
            .unwrap_or_default())
    }
}

/// The peer the shell saw, from the request's extensions.
pub fn peer(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions.get::<ClientAddr>().map(|c| c.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        h
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn a_client_that_is_not_a_trusted_proxy_speaks_for_nobody() {
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-proto", "https"),
        ]);
        let peer = Some("203.0.113.9".parse().unwrap());
        let c = client_of(&h, &Uri::from_static("/x"), peer, &nets(&["10.0.0.0/8"]));
        assert_eq!(c.ip, peer);
        assert!(!c.https);
        assert_eq!(c.forwarded_for.as_deref(), Some("203.0.113.9"));
    }

    #[test]
    fn behind_trusted_proxies_the_first_untrusted_address_from_the_right_is_the_client() {
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.0.0.5"),
            ("x-forwarded-proto", "https"),
        ]);
        let peer = Some("10.0.0.2".parse().unwrap());
        let c = client_of(&h, &Uri::from_static("/x"), peer, &nets(&["10.0.0.0/8"]));
        // 1.2.3.4 is what the client said of itself: not believed, not passed on.
        assert_eq!(c.ip, Some("198.51.100.7".parse().unwrap()));
        assert!(c.https);
        assert_eq!(
            c.forwarded_for.as_deref(),
            Some("198.51.100.7, 10.0.0.5, 10.0.0.2")
        );
        // No header: the proxy itself.
        let c = client_of(
            &HeaderMap::new(),
            &Uri::from_static("/x"),
            peer,
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(c.ip, peer);
        assert_eq!(c.forwarded_for.as_deref(), Some("10.0.0.2"));
    }

    #[test]
    fn a_trusted_proxy_says_when_the_request_arrived() {
        let trusted = nets(&["10.0.0.0/8"]);
        let peer = Some("10.0.0.2".parse().unwrap());
        let at = |value: &str| {
            let h = headers(&[("x-request-start", value)]);
            client_of(&h, &Uri::from_static("/x"), peer, &trusted).arrived_at
        };
        assert_eq!(at("t=1796000000.123"), Some(1_796_000_000_123));
        assert_eq!(at("t=1796000000.5"), Some(1_796_000_000_500));
        assert_eq!(at("1796000000"), Some(1_796_000_000_000));
        assert_eq!(at("t=1796000000123"), Some(1_796_000_000_123));
        assert_eq!(at("t=1796000000123456"), Some(1_796_000_000_123));
        assert_eq!(at("soon"), None);
        assert_eq!(at("t=99999999999999999999"), None);
        // Never later than the instance's own clock; from a stranger, not at all.
        let h = headers(&[("x-request-start", "t=1796000000.123")]);
        let c = client_of(&h, &Uri::from_static("/x"), peer, &trusted);
        assert_eq!(c.arrived(1_796_000_000_000), 1_796_000_000_000);
        assert_eq!(c.arrived(1_796_000_009_000), 1_796_000_000_123);
        let stranger = Some("203.0.113.9".parse().unwrap());
        let c = client_of(&h, &Uri::from_static("/x"), stranger, &trusted);
        assert_eq!(c.arrived_at, None);
    }

    #[test]
    fn the_edge_knows_https_from_its_url() {
        let c = client_of(
            &HeaderMap::new(),
            &Uri::from_static("https://edge.example/x"),
            Some("203.0.113.9".parse().unwrap()),
            &[],
        );
        assert!(c.https);
    }
}
