//! Where a room's queue, admissions and sessions live. The server and the scheduler talk to a
//! store only through [`Store`], so the embedded store, Redis and the edge can stand behind the
//! same HTTP handlers. Decisions (how many to admit, what to answer) stay in the core; a store
//! keeps state and applies each operation atomically.

pub mod edge;
pub mod memory;
pub mod redis;

use async_trait::async_trait;
use queuegate::api::RoomStats;
use queuegate::controller::RoomLoad;
use queuegate::{ApiError, ErrorCode, Place, RoomConfig, RoomId, VisitorState};

pub use queuegate::room::RoomRecord;

/// What a join did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    pub place: Place,
    /// The join stamp (microseconds, strictly increasing in the room) that orders visitors.
    pub joined_us: u64,
    /// Waiting, or admitted straight away when the room had a free slot and nobody waited.
    pub state: VisitorState,
    /// Whether the place already existed (a second join with the same user id).
    pub existing: bool,
}

/// What a scheduler batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Admitted {
    /// Waiting visitors admitted from the queue.
    pub from_queue: u64,
    /// Slots opened for direct entry until the next tick (only when nobody waits).
    pub entry_credit: u64,
}

/// A scheduler's proof that it holds the admission lease; stores refuse a batch carrying an
/// older token than the newest they have seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fence(pub u64);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("no room {0}")]
    UnknownRoom(RoomId),
    #[error("{0}")]
    Conflict(String),
    /// The backing service cannot be reached or timed out; a retry may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A newer scheduler holds the lease.
    #[error("fenced off: a newer scheduler holds the admission lease")]
    Fenced,
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        let code = match &err {
            StoreError::UnknownRoom(_) => ErrorCode::UnknownRoom,
            StoreError::Conflict(_) => ErrorCode::Conflict,
            StoreError::Unavailable(_) => ErrorCode::StoreUnavailable,
            StoreError::Fenced => ErrorCode::Fenced,
        };
        ApiError::new(code, err.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Opens the store the configuration names.
pub async fn open(
    config: &crate::config::StoreConfig,
) -> Result<std::sync::Arc<dyn Store>, String> {
    use crate::config::StoreConfig;
    use std::sync::Arc;
    match config {
        StoreConfig::Memory => Ok(Arc::new(memory::MemoryStore::new())),
        StoreConfig::Redis { url, .. } => {
            Ok(Arc::new(redis::connect_single(url, config.timeout())?))
        }
        StoreConfig::RedisCluster { urls, .. } => Ok(Arc::new(
            redis::connect_cluster(urls, config.timeout()).await?,
        )),
    }
}

/// What the admission scheduler needs of a store: the rooms, their load, the admission lease
/// and admission batches. The embedded store, Redis and the edge (through its admin API) all
/// provide it.
#[async_trait]
pub trait Scheduling: Send + Sync + 'static {
    async fn rooms(&self) -> StoreResult<Vec<RoomRecord>>;

    async fn set_measured_rate(&self, id: &RoomId, rate: Option<f64>) -> StoreResult<()>;

    /// Ends sessions past their TTL and admissions past their claim window, then counts.
    async fn load(&self, id: &RoomId, now: u64) -> StoreResult<RoomLoad>;

    async fn stats(&self, id: &RoomId, now: u64) -> StoreResult<RoomStats>;

    /// A scheduler batch: admits up to `grant` of the oldest waiting visitors (FIFO across
    /// shards, never above capacity) and opens what is left of the grant as entry credit.
    async fn admit(&self, id: &RoomId, grant: u64, fence: Fence, now: u64)
        -> StoreResult<Admitted>;

    /// Takes or renews the admission lease for `holder`; `None` while another holder has it.
    async fn acquire_lease(
        &self,
        holder: &str,
        ttl_ms: u64,
        now: u64,
    ) -> StoreResult<Option<Fence>>;

    /// Brings whatever this instance caches of a shared store up to date; called every tick on
    /// every instance, leader or not.
    async fn refresh(&self, _now: u64) -> StoreResult<()> {
        Ok(())
    }
}

/// A store the origin serves visitors from: scheduling, plus everything a visitor does.
#[async_trait]
pub trait Store: Scheduling {
    /// A short name for logs, metrics and `/healthz`.
    fn kind(&self) -> &'static str;

    /// Whether the store can serve requests now.
    async fn health(&self) -> StoreResult<()>;

    /// Creates a room with a new queue of the given epoch, or updates an existing room's
    /// configuration (its epoch and queue stay). Returns the record and whether it was created.
    async fn put_room(
        &self,
        id: &RoomId,
        config: RoomConfig,
        epoch: u32,
        now: u64,
    ) -> StoreResult<(RoomRecord, bool)>;

    async fn room(&self, id: &RoomId) -> StoreResult<Option<RoomRecord>>;

    async fn set_paused(&self, id: &RoomId, paused: bool) -> StoreResult<RoomRecord>;

    /// Gives a visitor a place. With a `user_id` that already holds a live place, returns that
    /// place. When nobody waits and the scheduler opened entry credit, admits at once.
    async fn join(&self, id: &RoomId, user_id: Option<&str>, now: u64) -> StoreResult<Joined>;

    /// Where the visitor at `place` stands. An admitted visitor who has not arrived yet arrives
    /// now (the session starts), if still inside the claim window.
    async fn visit(&self, id: &RoomId, place: Place, now: u64) -> StoreResult<VisitorState>;

    /// Removes the visitor from the queue or ends the session. Idempotent.
    async fn leave(&self, id: &RoomId, place: Place, now: u64) -> StoreResult<VisitorState>;

    /// Whether the session at `place` is live, and its expiry; with `renew`, pushes the expiry
    /// out by the session TTL first.
    async fn session(
        &self,
        id: &RoomId,
        place: Place,
        renew: bool,
        now: u64,
    ) -> StoreResult<Option<u64>>;

    /// An operator's admission: up to `count` of the oldest waiting, within free capacity and
    /// outside the rate budget. Returns how many were admitted.
    async fn admit_now(&self, id: &RoomId, count: u64, now: u64) -> StoreResult<u64>;

    /// Ends the visitor's place or session for good; `false` if there was nothing to end.
    async fn revoke(&self, id: &RoomId, place: Place, now: u64) -> StoreResult<bool>;
}
