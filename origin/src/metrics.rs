//! Prometheus metrics, in a registry owned by the server (no global state, so tests can run
//! several servers in one process).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use queuegate::api::RoomStats;
use queuegate::RoomId;

use crate::http::public::JoinOutcome;

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
    admissions: Family<RoomLabel, Counter>,
    waiting: Family<RoomLabel, Gauge>,
    admitted: Family<RoomLabel, Gauge>,
    active: Family<RoomLabel, Gauge>,
    rate: Family<RoomLabel, Gauge<f64, AtomicU64>>,
    scheduler_errors: Counter,
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
        let admissions = Family::<RoomLabel, Counter>::default();
        let waiting = Family::<RoomLabel, Gauge>::default();
        let admitted = Family::<RoomLabel, Gauge>::default();
        let active = Family::<RoomLabel, Gauge>::default();
        let rate = Family::<RoomLabel, Gauge<f64, AtomicU64>>::default();
        let scheduler_errors = Counter::default();
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
            "Joins by room and outcome (queued, entered, kept)",
            joins.clone(),
        );
        registry.register(
            "gate_requests",
            "Requests on protected paths by outcome (passed, entered, waiting, unprotected)",
            gate.clone(),
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
        Metrics {
            registry,
            requests,
            duration,
            joins,
            gate,
            admissions,
            waiting,
            admitted,
            active,
            rate,
            scheduler_errors,
        }
    }

    pub fn request(&self, route: &str, status: u16, elapsed: Duration) {
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
            .observe(elapsed.as_secs_f64());
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
    }

    pub fn scheduler_error(&self) {
        self.scheduler_errors.inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
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
