//! queuegate's native origin: the on-prem process around the request layer (`queuegate::service`),
//! its stores (embedded and Redis), the admission scheduler (which also drives the edge), the
//! upstream client and the request layer's HTTP client. The decisions come from the `queuegate`
//! crate; this crate supplies the sockets, the storage, the clock and the process.

pub mod clock;
pub mod config;
pub mod http_client;
pub mod listener;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod unread_body;
pub mod upstream;
