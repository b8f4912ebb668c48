//! queuegate's native origin: the on-prem server (public API, gate, admin API), its stores and
//! the admission scheduler. The decisions come from the `queuegate` core; this crate moves bytes
//! between the network, the store and the core.

pub mod clock;
pub mod config;
pub mod demo;
pub mod http;
pub mod metrics;
pub mod routes;
pub mod scheduler;
pub mod server;
pub mod store;
