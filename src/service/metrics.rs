//! Prometheus metrics, in a registry owned by the service (no global state, so tests can run
//! several servers in one process; at the edge, one per isolate), and the middleware that counts
//! and times every request by route.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::error::Fault;
use super::state::Service;
use crate::api::RoomStats;
use crate::room::RoomId;

/// What a join did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    /// A new place in the queue.
    Queued,
    /// Let in at once: free capacity and nobody waiting.
    Entered,
    /// The visitor already had a place (same ticket or same user id).
    Kept,
    /// Refused: the client was over the room's join limit (no place taken).
    Limited,
    /// Answered with a challenge to pass first (no place taken).
    Challenged,
    /// A challenge answer that was wrong, not the client's, or used before.
    Failed,
    /// A suspicious client given a place in the infinite queue.
    Decoyed,
    /// Refused (or decoyed): the client was taken for a bot by the room's join limit.
    Penalized,
    /// The line was full (`max_waiting`): no place taken.
    Full,
    /// A passthrough room: admitted at once, without a place.
    Passthrough,
}

impl JoinOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            JoinOutcome::Queued => "queued",
            JoinOutcome::Entered => "entered",
            JoinOutcome::Kept => "kept",
            JoinOutcome::Limited => "limited",
            JoinOutcome::Challenged => "challenged",
            JoinOutcome::Failed => "failed",
            JoinOutcome::Decoyed => "decoyed",
            JoinOutcome::Penalized => "penalized",
            JoinOutcome::Full => "full",
            JoinOutcome::Passthrough => "passthrough",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoomOutcome {
    room: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoomReason {
    room: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoomLabel {
    room: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    duration: Family<RouteLabel, Histogram, fn() -> Histogram>,
    joins: Family<RoomOutcome, Counter>,
    gate: Family<RoomOutcome, Counter>,
    held: Family<RoomReason, Counter>,
    revoked_by_application: Family<RoomLabel, Counter>,
    ended_by_penalty: Family<RoomLabel, Counter>,
    template_failures: Family<RoomReason, Counter>,
    admissions: Family<RoomLabel, Counter>,
    waiting: Family<RoomLabel, Gauge>,
    admitted: Family<RoomLabel, Gauge>,
    active: Family<RoomLabel, Gauge>,
    rate: Family<RoomLabel, Gauge<f64, AtomicU64>>,
    abandoned: Family<RoomLabel, Gauge>,
    no_shows: Family<RoomLabel, Gauge>,
    scheduler_errors: Counter,
    lease_fence: Gauge,
    streams: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("queuegate");
        let requests = Family::<RouteLabels, Counter>::default();
        let duration = Family::<RouteLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let joins = Family::<RoomOutcome, Counter>::default();
        let gate = Family::<RoomOutcome, Counter>::default();
        let held = Family::<RoomReason, Counter>::default();
        let revoked_by_application = Family::<RoomLabel, Counter>::default();
        let ended_by_penalty = Family::<RoomLabel, Counter>::default();
        let admissions = Family::<RoomLabel, Counter>::default();
        let template_failures = Family::<RoomReason, Counter>::default();
        let waiting = Family::<RoomLabel, Gauge>::default();
        let admitted = Family::<RoomLabel, Gauge>::default();
        let active = Family::<RoomLabel, Gauge>::default();
        let rate = Family::<RoomLabel, Gauge<f64, AtomicU64>>::default();
        let scheduler_errors = Counter::default();
        let lease_fence = Gauge::default();
        let streams = Gauge::default();
        registry.register(
            "streams_open",
            "Visitors' update streams (GET .../stream) open on this instance",
            streams.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            duration.clone(),
        );
        registry.register(
            "joins",
            "Joins by room and outcome (queued, entered, kept, limited, challenged, failed, \
             decoyed, full, passthrough)",
            joins.clone(),
        );
        registry.register(
            "gate_requests",
            "Requests on protected paths by outcome (passed, entered, waiting, held, unprotected, \
             open, closed)",
            gate.clone(),
        );
        registry.register(
            "gate_held",
            "Requests on protected paths answered without a place because they were no page \
             navigation, by reason (head, method, prefetch, subresource, not_html)",
            held.clone(),
        );
        registry.register(
            "revoked_by_application",
            "Sessions the application ended with X-Queuegate-Command: revoke",
            revoked_by_application.clone(),
        );
        registry.register(
            "places_ended_by_penalty",
            "Places (waiting, admitted or in session) of clients the join limit took for bots",
            ended_by_penalty.clone(),
        );
        registry.register(
            "template_failures",
            "Pages shown built-in because the room's own template could not be loaded (load) or \
             failed on a visitor's page (render)",
            template_failures.clone(),
        );
        registry.register(
            "admissions",
            "Visitors admitted by the scheduler and operators",
            admissions.clone(),
        );
        registry.register("room_waiting", "Visitors waiting", waiting.clone());
        registry.register(
            "room_admitted",
            "Visitors admitted who have not arrived yet",
            admitted.clone(),
        );
        registry.register("room_active", "Active sessions", active.clone());
        let abandoned = Family::<RoomLabel, Gauge>::default();
        registry.register(
            "room_abandoned",
            "Places ended so far because their visitors stopped asking (abandon_after_s)",
            abandoned.clone(),
        );
        let no_shows = Family::<RoomLabel, Gauge>::default();
        registry.register(
            "room_no_shows",
            "Admissions ended so far because nobody came for them (abandon_after_s); each was \
             given back to the admission rate",
            no_shows.clone(),
        );
        registry.register(
            "room_admit_rate_per_minute",
            "Admissions per minute measured while visitors waited",
            rate.clone(),
        );
        registry.register(
            "scheduler_errors",
            "Scheduler ticks that failed",
            scheduler_errors.clone(),
        );
        registry.register(
            "scheduler_lease_fence",
            "The fence of the admission lease this instance holds (0: it holds none)",
            lease_fence.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            joins,
            gate,
            held,
            revoked_by_application,
            ended_by_penalty,
            template_failures,
            admissions,
            waiting,
            admitted,
            active,
            rate,
            abandoned,
            no_shows,
            scheduler_errors,
            lease_fence,
            streams,
        }
    }

    pub fn request(&self, route: &str, status: u16, elapsed_us: u64) {
        self.requests
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
        self.duration
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .observe(elapsed_us as f64 / 1e6);
    }

    pub fn join(&self, room: &RoomId, outcome: JoinOutcome) {
        self.joins
            .get_or_create(&RoomOutcome {
                room: room.as_str().to_owned(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    pub fn gate(&self, room: Option<&RoomId>, outcome: &'static str) {
        self.gate
            .get_or_create(&RoomOutcome {
                room: room.map_or_else(String::new, |r| r.as_str().to_owned()),
                outcome,
            })
            .inc();
    }

    /// A request without a place that got none: it was no page navigation, for `reason`.
    pub fn held(&self, room: &RoomId, reason: &'static str) {
        self.held
            .get_or_create(&RoomReason {
                room: room.as_str().to_owned(),
                reason,
            })
            .inc();
    }

    pub fn revoked_by_application(&self, room: &RoomId) {
        self.revoked_by_application
            .get_or_create(&room_label(room))
            .inc();
    }

    /// A place ended because its client was taken for a bot.
    pub fn penalized_place(&self, room: &RoomId) {
        self.ended_by_penalty.get_or_create(&room_label(room)).inc();
    }

    /// A page shown built-in because the room's template failed at `stage` (load, render).
    pub fn template_failed(&self, room: &RoomId, stage: &'static str) {
        self.template_failures
            .get_or_create(&RoomReason {
                room: room.as_str().to_owned(),
                reason: stage,
            })
            .inc();
    }

    /// How many update streams are open now.
    pub fn streams(&self, open: u64) {
        self.streams.set(open as i64);
    }

    pub fn admitted(&self, room: &RoomId, n: u64) {
        self.admissions.get_or_create(&room_label(room)).inc_by(n);
    }

    pub fn room(&self, room: &RoomId, stats: &RoomStats) {
        let label = room_label(room);
        self.waiting.get_or_create(&label).set(clamp(stats.waiting));
        self.admitted
            .get_or_create(&label)
            .set(clamp(stats.admitted));
        self.active.get_or_create(&label).set(clamp(stats.active));
        self.rate
            .get_or_create(&label)
            .set(stats.admit_rate_per_min.unwrap_or(0.0));
        self.abandoned
            .get_or_create(&label)
            .set(clamp(stats.abandoned_total));
        self.no_shows
            .get_or_create(&label)
            .set(clamp(stats.no_shows_total));
    }

    pub fn scheduler_error(&self) {
        self.scheduler_errors.inc();
    }

    /// The fence this instance's scheduler holds the admission lease under, if it holds it.
    pub fn lease(&self, fence: Option<u64>) {
        self.lease_fence.set(clamp(fence.unwrap_or(0)));
    }

    /// The metrics in OpenMetrics text, with the store's calls to what backs it (Redis scripts,
    /// Durable Object calls) by kind.
    pub fn render(&self, store_calls: &[(&'static str, u64)]) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        let end = out.rfind("# EOF").unwrap_or(out.len());
        out.truncate(end);
        out.push_str(
            "# HELP queuegate_store_calls Calls the store made to what backs it, by kind.\n",
        );
        out.push_str("# TYPE queuegate_store_calls counter\n");
        for (kind, n) in store_calls {
            out.push_str(&format!(
                "queuegate_store_calls_total{{kind=\"{kind}\"}} {n}\n"
            ));
        }
        out.push_str("# EOF\n");
        out
    }
}

fn room_label(room: &RoomId) -> RoomLabel {
    RoomLabel {
        room: room.as_str().to_owned(),
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Counts and times every request by route; logs what went wrong on the server's side.
pub async fn track(State(s): State<Arc<Service>>, req: Request, next: Next) -> Response {
    let route = match req.extensions().get::<MatchedPath>() {
        Some(path) => path.as_str().to_owned(),
        None if req.uri().path().starts_with(&s.prefix) => "unmatched".to_owned(),
        None => "gate".to_owned(),
    };
    let start = s.platform.micros();
    let response = next.run(req).await;
    if let Some(Fault(err)) = response.extensions().get::<Fault>() {
        tracing::warn!(route = %route, code = err.code.as_str(), error = %err.message, "server error");
    }
    s.metrics.request(
        &route,
        response.status().as_u16(),
        s.platform.micros().saturating_sub(start),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// The Grafana dashboard kept in the repository (`docs/grafana/queuegate.json`).
    const DASHBOARD: &str = include_str!("../../docs/grafana/queuegate.json");

    /// Every sample name the server exports, with the labels it carries, from metrics that have
    /// seen one of everything.
    fn exported() -> BTreeMap<String, BTreeSet<String>> {
        let metrics = Metrics::new();
        let room = RoomId::parse("sale").unwrap();
        metrics.request("/_qg/v1/rooms/{room}/join", 200, 1500);
        metrics.join(&room, JoinOutcome::Penalized);
        metrics.gate(Some(&room), "waiting");
        metrics.held(&room, "prefetch");
        metrics.revoked_by_application(&room);
        metrics.penalized_place(&room);
        metrics.admitted(&room, 3);
        metrics.room(&room, &RoomStats::default());
        metrics.scheduler_error();
        metrics.lease(Some(7));
        let text = metrics.render(&[("script", 1)]);
        let mut samples: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let name_end = line.find(['{', ' ']).unwrap();
            let mut labels = BTreeSet::new();
            // `name="value",...}`: values are quoted and may hold `,`, `}` and `\"`.
            let mut rest = line[name_end..].strip_prefix('{').unwrap_or("}");
            while !rest.starts_with('}') {
                let (name, value) = rest.split_once("=\"").unwrap();
                labels.insert(name.trim_start_matches(',').to_owned());
                let mut escaped = false;
                let close = value
                    .char_indices()
                    .find(|&(_, c)| {
                        let end = c == '"' && !escaped;
                        escaped = c == '\\' && !escaped;
                        end
                    })
                    .unwrap()
                    .0;
                rest = value[close + 1..].trim_start_matches(',');
            }
            samples
                .entry(line[..name_end].to_owned())
                .or_default()
                .extend(labels);
        }
        samples
    }

    /// The metric names in a PromQL expression, and the labels it groups or matches by.
    fn queried(expr: &str) -> (Vec<String>, Vec<String>) {
        let words = |s: &str| -> Vec<String> {
            s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let names = words(expr)
            .into_iter()
            .filter(|w| w.starts_with("queuegate_"))
            .collect();
        let mut labels = Vec::new();
        for (open, close) in [("by (", ")"), ("{", "}")] {
            let mut rest = expr;
            while let Some(start) = rest.find(open) {
                let inner = &rest[start + open.len()..];
                let end = inner.find(close).unwrap();
                for matcher in inner[..end].split(',') {
                    let label = matcher.split(['=', '!', '~']).next().unwrap().trim();
                    if !label.is_empty() {
                        labels.push(label.to_owned());
                    }
                }
                rest = &inner[end..];
            }
        }
        (names, labels)
    }

    #[test]
    fn the_dashboard_queries_only_what_the_server_exports() {
        let exported = exported();
        let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
        let panels = dashboard["panels"].as_array().unwrap();
        assert!(panels.len() >= 6);
        let mut ids = BTreeSet::new();
        let mut queried_names = BTreeSet::new();
        for panel in panels {
            assert!(
                ids.insert(panel["id"].as_u64().unwrap()),
                "panel ids are unique"
            );
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{}", panel["title"]);
            for target in targets {
                let expr = target["expr"].as_str().unwrap();
                let (names, labels) = queried(expr);
                assert!(!names.is_empty(), "{expr}");
                let mut known: BTreeSet<&str> = ["le"].into();
                for name in &names {
                    let Some(carried) = exported.get(name) else {
                        panic!("{expr}: {name} is not exported; exported: {exported:?}");
                    };
                    known.extend(carried.iter().map(String::as_str));
                    queried_names.insert(name.clone());
                }
                for label in labels {
                    assert!(
                        known.contains(label.as_str()),
                        "{expr}: no metric in it has {label}"
                    );
                }
            }
        }
        // The room variable's query too.
        let rooms = dashboard["templating"]["list"][1]["definition"]
            .as_str()
            .unwrap();
        assert!(exported.contains_key(&queried(rooms).0[0]), "{rooms}");
        // Every room gauge is on the dashboard: an operator watches the line.
        for gauge in [
            "queuegate_room_waiting",
            "queuegate_room_active",
            "queuegate_room_admitted",
        ] {
            assert!(
                queried_names.contains(gauge),
                "{gauge} is not on the dashboard"
            );
        }
    }

    #[test]
    fn a_query_of_a_metric_that_does_not_exist_is_caught() {
        let exported = exported();
        let (names, _) = queried("rate(queuegate_joins_count[1m])");
        assert!(!exported.contains_key(&names[0]));
        let (_, labels) = queried("sum by (room, shard) (queuegate_room_waiting{outcome=\"x\"})");
        assert_eq!(labels, ["room", "shard", "outcome"]);
    }
}
