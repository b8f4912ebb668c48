//! queuegate's core: everything the edge worker and the origin server must agree on, with no IO,
//! no clock and no randomness of its own. Time comes in as `now` (Unix milliseconds) and random
//! bytes as arguments, so the same code runs in a Durable Object, a tokio task and a test on
//! virtual time.
//!
//! - [`token`]: tickets and passes, signed with [`keys`];
//! - [`room`]: room ids and configuration;
//! - [`controller`]: how many to admit per tick; [`plan`]: which ones and how much entry credit
//!   a batch opens, over [`order`] (FIFO across shards);
//! - [`queue`]: a shard's queue as positions and admission plans see it; [`shard`]: a whole
//!   shard (queue, admissions, sessions, user ids) as a state machine;
//! - [`estimate`]: the measured admission rate and the wait estimate;
//! - [`visitor`]: from a visitor's state to the API's answer; [`api`]: bodies, cookies, headers;
//! - [`page`]: the waiting page; [`error`]: error codes.
//!
//! Above the core, behind the `service` feature: [`service`], the request layer both deployments
//! serve (one axum router over a store, an upstream and a platform the shell supplies), and on
//! wasm32 the edge worker (`edge`), one of those shells. Without the feature the crate is the
//! core alone, with no server, runtime or client among its dependencies.

pub mod api;
pub mod apptoken;
pub mod bypass;
pub mod challenge;
pub mod controller;
pub mod decoy;
pub mod draw;
pub mod error;
pub mod estimate;
pub mod event;
pub mod i18n;
pub mod invite;
pub mod keys;
pub mod limit;
pub mod order;
pub mod page;
pub mod path;
pub mod plan;
pub mod queue;
pub mod report;
pub mod room;
pub mod shard;
pub mod shuffle;
pub mod stream;
pub mod template;
pub mod token;
pub mod visitor;

#[cfg(feature = "service")]
pub mod service;

#[cfg(all(target_arch = "wasm32", feature = "service"))]
pub mod edge;

pub use error::{ApiError, ErrorCode};
pub use keys::{SigningKey, SigningKeys};
pub use room::{Mode, RoomConfig, RoomId, RoomRecord};
pub use token::{Pass, Place, Ticket, TokenError};
pub use visitor::{RoomContext, VisitorState};
