//! Per-client join limits: who a client is ([`ClientKey`]) and whether it may join now
//! ([`decide`]), a GCRA (generic cell rate algorithm, the virtual-scheduling form of a token
//! bucket) as a pure function of the stored state, the time and the room's [`JoinLimit`]. Stores
//! only keep the state (a short text per room and client, [`record`]) and apply a decision
//! atomically; the decision itself is made here, once, for every store and both deployments.

pub mod record;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorCode};

pub const MAX_PER_CLIENT_PER_MIN: u32 = 60_000;
pub const MAX_BURST: u32 = 10_000;
pub const MAX_PENALIZE_AFTER: u32 = 1_000;
pub const MAX_PENALTY_S: u32 = 86_400;
/// How long a client taken for a bot stays one when the room does not say.
pub const DEFAULT_PENALTY_S: u32 = 600;

/// A room's limit on joins per client: `burst` joins at once, then one every
/// `60 / per_client_per_min` seconds; and, with `penalize_after`, what a client that keeps
/// knocking gets: after that many refusals in a row it is taken for a bot, the places it took
/// lately are ended and for `penalty_s` every join of its is suspicious ([`record`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
pub struct JoinLimit {
    pub per_client_per_min: u32,
    pub burst: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub penalize_after: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub penalty_s: Option<u32>,
}

impl JoinLimit {
    pub fn validate(&self) -> Result<(), ApiError> {
        let invalid = |field: &str, value: u32, max: u32| {
            Err(ApiError::new(
                ErrorCode::InvalidConfig,
                format!("join_limit.{field}: {value} is out of range 1..={max}"),
            ))
        };
        if self.per_client_per_min == 0 || self.per_client_per_min > MAX_PER_CLIENT_PER_MIN {
            return invalid(
                "per_client_per_min",
                self.per_client_per_min,
                MAX_PER_CLIENT_PER_MIN,
            );
        }
        if self.burst == 0 || self.burst > MAX_BURST {
            return invalid("burst", self.burst, MAX_BURST);
        }
        if let Some(after) = self.penalize_after {
            if after == 0 || after > MAX_PENALIZE_AFTER {
                return invalid("penalize_after", after, MAX_PENALIZE_AFTER);
            }
        }
        if let Some(penalty) = self.penalty_s {
            if self.penalize_after.is_none() {
                return Err(ApiError::new(
                    ErrorCode::InvalidConfig,
                    "join_limit.penalty_s: only with penalize_after (how many refusals in a row \
                     earn the penalty)",
                ));
            }
            if penalty == 0 || penalty > MAX_PENALTY_S {
                return invalid("penalty_s", penalty, MAX_PENALTY_S);
            }
        }
        Ok(())
    }

    /// How long a client taken for a bot stays one (ms).
    pub fn penalty_ms(&self) -> u64 {
        u64::from(self.penalty_s.unwrap_or(DEFAULT_PENALTY_S)) * 1000
    }

    /// Microseconds between two joins at the sustained rate.
    pub fn interval_us(&self) -> u64 {
        60_000_000 / u64::from(self.per_client_per_min.max(1))
    }

    /// How far ahead of now the state may run: the burst less the join being decided.
    fn tolerance_us(&self) -> u64 {
        self.interval_us() * u64::from(self.burst.max(1) - 1)
    }
}

/// Who a client is for join limits: an IPv4 address, or the /64 an IPv6 address lies in (one
/// subscriber's network; a host picks its own low 64 bits freely). An IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`) is the IPv4 address it maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientKey {
    V4([u8; 4]),
    V6Net([u8; 8]),
}

impl ClientKey {
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4.octets()),
                None => {
                    let mut net = [0u8; 8];
                    net.copy_from_slice(&v6.octets()[..8]);
                    ClientKey::V6Net(net)
                }
            },
        }
    }
}

/// `1.2.3.4`, or `2001:db8:1:2::/64`: short, and safe in a store key.
impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientKey::V4(o) => write!(f, "{}", std::net::Ipv4Addr::from(*o)),
            ClientKey::V6Net(net) => {
                let mut octets = [0u8; 16];
                octets[..8].copy_from_slice(net);
                write!(f, "{}/64", std::net::Ipv6Addr::from(octets))
            }
        }
    }
}

/// What [`decide`] says of one join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// The join may go ahead; store `state` (its theoretical arrival time, µs) and keep it
    /// `ttl_ms` (after that a missing state means the same as this one).
    Allowed { state: u64, ttl_ms: u64 },
    /// Over the limit: the state stays as it was; a join `retry_after_ms` from now would be
    /// allowed.
    Refused { retry_after_ms: u64 },
}

impl Decision {
    /// `Retry-After` in whole seconds, rounded up (at least 1).
    pub fn retry_after_s(retry_after_ms: u64) -> u64 {
        retry_after_ms.div_ceil(1000).max(1)
    }
}

/// Whether a client whose stored state is `state` (`None`: none kept, or expired) may join at
/// `now` (Unix ms) under `limit`. The state is the client's theoretical arrival time in
/// microseconds: each join pushes it one interval further; a join is refused while it runs more
/// than `burst - 1` intervals ahead of now.
pub fn decide(state: Option<u64>, now: u64, limit: &JoinLimit) -> Decision {
    let now_us = now.saturating_mul(1000);
    let tat = state.unwrap_or(now_us).max(now_us);
    let tolerance = limit.tolerance_us();
    if tat - now_us > tolerance {
        let retry_after_us = tat - tolerance - now_us;
        return Decision::Refused {
            retry_after_ms: retry_after_us.div_ceil(1000),
        };
    }
    let state = tat + limit.interval_us();
    Decision::Allowed {
        state,
        ttl_ms: (state - now_us).div_ceil(1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RECOMMENDED: JoinLimit = JoinLimit {
        per_client_per_min: 6,
        burst: 3,
        penalize_after: None,
        penalty_s: None,
    };

    /// A client's store on a manual clock: the state kept until its TTL runs out.
    struct Clock {
        now: u64,
        kept: Option<(u64, u64)>,
    }

    impl Clock {
        fn join(&mut self, limit: &JoinLimit) -> Decision {
            let state = self
                .kept
                .filter(|&(_, until)| until > self.now)
                .map(|(s, _)| s);
            let d = decide(state, self.now, limit);
            if let Decision::Allowed { state, ttl_ms } = d {
                self.kept = Some((state, self.now + ttl_ms));
            }
            d
        }
    }

    #[test]
    fn a_burst_then_one_per_interval() {
        let mut c = Clock {
            now: 1_700_000_000_000,
            kept: None,
        };
        for _ in 0..3 {
            assert!(matches!(c.join(&RECOMMENDED), Decision::Allowed { .. }));
        }
        assert_eq!(
            c.join(&RECOMMENDED),
            Decision::Refused {
                retry_after_ms: 10_000
            }
        );
        c.now += 9_999;
        assert_eq!(
            c.join(&RECOMMENDED),
            Decision::Refused { retry_after_ms: 1 }
        );
        c.now += 1;
        assert!(matches!(c.join(&RECOMMENDED), Decision::Allowed { .. }));
        assert!(matches!(c.join(&RECOMMENDED), Decision::Refused { .. }));
        // Quiet for a long while: the whole burst again (the state expired).
        c.now += 3_600_000;
        for _ in 0..3 {
            assert!(matches!(c.join(&RECOMMENDED), Decision::Allowed { .. }));
        }
        assert!(matches!(c.join(&RECOMMENDED), Decision::Refused { .. }));
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(Decision::retry_after_s(1), 1);
        assert_eq!(Decision::retry_after_s(1000), 1);
        assert_eq!(Decision::retry_after_s(1001), 2);
        assert_eq!(Decision::retry_after_s(0), 1);
    }

    #[test]
    fn clients_are_ipv4_addresses_or_ipv6_slash_64s() {
        let key = |s: &str| ClientKey::of(s.parse().unwrap());
        assert_eq!(key("203.0.113.9"), ClientKey::V4([203, 0, 113, 9]));
        assert_ne!(key("203.0.113.9"), key("203.0.113.10"));
        // IPv4-mapped IPv6 is the IPv4 address.
        assert_eq!(key("::ffff:203.0.113.9"), key("203.0.113.9"));
        // One /64, whatever the host part.
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(key("::ffff:10.0.0.1").to_string(), "10.0.0.1");
        // The IPv4-compatible (deprecated) form is not mapped: it is an IPv6 /64 (::/64).
        assert_eq!(key("::10.0.0.1"), key("::1"));
    }

    #[test]
    fn limits_are_validated_with_the_field_named() {
        RECOMMENDED.validate().unwrap();
        for (limit, field) in [
            ((0, 3), "per_client_per_min"),
            ((60_001, 3), "per_client_per_min"),
            ((6, 0), "burst"),
            ((6, 10_001), "burst"),
        ] {
            let err = JoinLimit {
                per_client_per_min: limit.0,
                burst: limit.1,
                ..RECOMMENDED
            }
            .validate()
            .unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidConfig);
            assert!(err.message.contains(field), "{}", err.message);
        }
    }

    proptest! {
        /// Over any window, joins allowed never exceed the burst plus the sustained rate, a
        /// refusal's retry_after is exactly when a join would be allowed, and a client that
        /// waits out every Retry-After is never refused twice in a row.
        #[test]
        fn never_more_than_burst_plus_rate(
            per_min in 1u32..=600,
            burst in 1u32..=20,
            gaps in proptest::collection::vec(0u64..20_000, 1..200),
        ) {
            let limit = JoinLimit { per_client_per_min: per_min, burst, ..RECOMMENDED };
            let start = 1_700_000_000_000u64;
            let mut c = Clock { now: start, kept: None };
            let mut allowed = 0u64;
            for gap in gaps {
                c.now += gap;
                match c.join(&limit) {
                    Decision::Allowed { ttl_ms, .. } => {
                        allowed += 1;
                        prop_assert!(ttl_ms <= limit.interval_us() * u64::from(burst) / 1000 + 1);
                    }
                    Decision::Refused { retry_after_ms } => {
                        prop_assert!(retry_after_ms >= 1);
                        let before = c.kept;
                        let early = c.now + retry_after_ms - 1;
                        if retry_after_ms > 1 {
                            let state = before.filter(|&(_, u)| u > early).map(|(s, _)| s);
                            let refused = matches!(decide(state, early, &limit), Decision::Refused { .. });
                            prop_assert!(refused);
                        }
                        let on_time = c.now + retry_after_ms;
                        let state = before.filter(|&(_, u)| u > on_time).map(|(s, _)| s);
                        let allowed_then = matches!(decide(state, on_time, &limit), Decision::Allowed { .. });
                        prop_assert!(allowed_then);
                    }
                }
                let elapsed_us = (c.now - start) * 1000;
                let most = u64::from(burst) + elapsed_us / limit.interval_us();
                prop_assert!(allowed <= most, "{allowed} > {most}");
            }
        }
    }
}
