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
    /// `X-Forwarded-For` as the application gets it: the trusted proxies' chain with the peer
    /// appended, or the peer alone.
    pub forwarded_for: Option<String>,
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
    for entry in chain.iter().rev() {
        match entry.parse::<IpAddr>() {
            Ok(addr) => {
                ip = addr;
                if !is_trusted(addr, trusted) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
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
        // 1.2.3.4 is what the client said of itself: not believed.
        assert_eq!(c.ip, Some("198.51.100.7".parse().unwrap()));
        assert!(c.https);
        assert_eq!(
            c.forwarded_for.as_deref(),
            Some("1.2.3.4, 198.51.100.7, 10.0.0.5, 10.0.0.2")
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
