//! The Redis store: a room's queue in Redis (one node or a cluster), shared by any number of
//! origin instances.
//!
//! Each shard of a room is a handful of keys under one hash tag (`keys.rs`, `lua/shard.lua`);
//! every operation on a shard is one Lua script (`scripts.rs`), so a join, a claim, a leave and
//! an admission batch each cost one round trip and are atomic. A waiting visitor costs 8 bytes
//! of stamp and a bit or two of bitmaps.
//!
//! The parts:
//! - `connection.rs`: connecting, and running a call or a script under the timeout;
//! - `mirror.rs`: each instance's mirror of every shard, refreshed at least once a tick with one
//!   script per shard that returns only what changed, so that a waiting visitor's poll, exact
//!   positions and the scheduler's plan need no round trip;
//! - `scripts.rs`, `replies.rs`: the scripts, called with named arguments, and their replies
//!   decoded into named fields;
//! - `batch.rs`: joins to one shard sent together while a join script is in flight;
//! - `admission.rs`: batches planned by the core, the lease and its fence, operator admissions;
//! - `acks.rs`: how many replicas must acknowledge the scheduler's writes (`WAIT`), so that a
//!   failover cannot hand its fence to another scheduler or lose what a batch was planned from;
//! - `rooms.rs`: room records and this instance's cache of them;
//! - `versions.rs`: counters of changes in Redis, read before an answer from a cache or a
//!   mirror, so that no instance answers from a view older than another's answer;
//! - `store.rs`: the [`Store`](crate::store::Store) and
//!   [`Scheduling`](crate::store::Scheduling) implementations;
//! - `testing.rs`: one shard's scripts and mirrors without the store around them, for the
//!   differential test against the core's shard (`tests/redis_differential.rs`).

mod acks;
mod admission;
mod batch;
mod connection;
mod keys;
mod mirror;
mod replies;
mod rooms;
mod scripts;
mod store;
mod versions;

#[doc(hidden)]
pub mod testing;

pub use connection::{connect_cluster, connect_single};
pub use scripts::source as script_source;
pub use store::RedisStore;
