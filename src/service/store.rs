//! Where a room's queue, admissions and sessions live, as the request layer sees it. The
//! embedded store, Redis and the Durable Objects each implement [`Store`]; decisions (who the
//! visitor is, what to answer, how many to admit and from which shards) stay in the request layer
//! and the core, and a store keeps state and applies each operation atomically.

use std::sync::Arc;

use async_trait::async_trait;

use super::routes::RouteTable;
use crate::api::{RoomStats, ScheduleRequest, ScheduleResponse};
use crate::error::{ApiError, ErrorCode};
use crate::event::Events;
use crate::limit::record::{LimitOp, Outcome as LimitOutcome};
use crate::limit::{ClientKey, JoinLimit};
use crate::report::ReportMinute;
use crate::room::{RoomConfig, RoomId, RoomRecord};
use crate::template::TemplateRef;
use crate::token::{Place, Ticket};
use crate::visitor::VisitorState;

/// What a join did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    pub place: Place,
    /// The join stamp (microseconds, strictly increasing in the room) that orders visitors.
    pub joined_us: u64,
    /// Waiting, or admitted straight away when the room had entry credit and nobody waited.
    pub state: VisitorState,
    /// Whether the place already existed (a second join with the same user id).
    pub existing: bool,
}

/// A scheduler's proof that it holds the admission lease; stores refuse a batch carrying an
/// older token than the newest they have seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fence(pub u64);

#[derive(Debug, Clone, PartialEq)]
pub enum StoreError {
    UnknownRoom(RoomId),
    Conflict(String),
    /// The backing service cannot be reached or timed out; a retry may succeed.
    Unavailable(String),
    /// A newer scheduler holds the lease, or an operator admitted since the batch was planned.
    Fenced,
    /// The request does not fit the room (such as a batch for another number of shards).
    Invalid(String),
    /// The room's events are no longer those the change was decided on.
    EventsChanged,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::UnknownRoom(id) => write!(f, "no room {:?}", id.as_str()),
            StoreError::Conflict(m) | StoreError::Invalid(m) => f.write_str(m),
            StoreError::Unavailable(m) => write!(f, "store unavailable: {m}"),
            StoreError::Fenced => {
                f.write_str("fenced off: the batch was planned under an older admission lease")
            }
            StoreError::EventsChanged => {
                f.write_str("the room's events changed while this change was decided")
            }
        }
    }
}

impl std::error::Error for StoreError {}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        let code = match &err {
            StoreError::UnknownRoom(_) => ErrorCode::UnknownRoom,
            StoreError::Conflict(_) | StoreError::EventsChanged => ErrorCode::Conflict,
            StoreError::Unavailable(_) => ErrorCode::StoreUnavailable,
            StoreError::Fenced => ErrorCode::Fenced,
            StoreError::Invalid(_) => ErrorCode::InvalidRequest,
        };
        ApiError::new(code, err.to_string())
    }
}

impl StoreError {
    /// The store error an API error from a remote store stands for.
    pub fn from_api(err: &ApiError, room: Option<&RoomId>) -> StoreError {
        match (err.code, room) {
            (ErrorCode::Fenced, _) => StoreError::Fenced,
            (ErrorCode::UnknownRoom, Some(room)) => StoreError::UnknownRoom(room.clone()),
            (ErrorCode::Conflict, _) => StoreError::Conflict(err.message.clone()),
            (ErrorCode::InvalidRequest, _) => StoreError::Invalid(err.message.clone()),
            _ => StoreError::Unavailable(format!("{}: {}", err.code, err.message)),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A store the request layer serves visitors and operators from. Every method takes `now`
/// (Unix milliseconds): no store reads a clock. Places handed to a store are of the room's epoch
/// and within its shards; the request layer checks that first.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs, metrics and `/healthz`.
    fn kind(&self) -> &'static str;

    /// Whether the store can serve requests now.
    async fn health(&self, now: u64) -> StoreResult<()>;

    /// Which room protects which paths, as this instance knows the rooms.
    async fn route_table(&self, now: u64) -> StoreResult<Arc<RouteTable>>;

    /// Every room, by id.
    async fn rooms(&self, now: u64) -> StoreResult<Vec<RoomRecord>>;

    async fn room(&self, id: &RoomId, now: u64) -> StoreResult<Option<RoomRecord>>;

    /// [`Store::room`] past any copy this instance keeps (the admin API reads this, so an
    /// operator reads back at once what went through any instance). Stores that keep no copy
    /// answer `room`.
    async fn room_now(&self, id: &RoomId, now: u64) -> StoreResult<Option<RoomRecord>> {
        self.room(id, now).await
    }

    /// Creates a room with a new queue of the given epoch, or updates an existing room's
    /// configuration (its epoch and queue stay). Returns the record and whether it was created.
    async fn put_room(
        &self,
        id: &RoomId,
        config: RoomConfig,
        epoch: u32,
        now: u64,
    ) -> StoreResult<(RoomRecord, bool)>;

    async fn set_paused(&self, id: &RoomId, paused: bool, now: u64) -> StoreResult<RoomRecord>;

    /// Replaces a room's scheduled events ([`crate::event`]) with `to`, only while they are
    /// still `from` (compare and set: two operators writing events at once, or one on a stale
    /// copy, never lose a write). Otherwise [`StoreError::EventsChanged`], after which
    /// [`Store::room`] answers at least the events the store found.
    async fn set_events(
        &self,
        id: &RoomId,
        from: &Events,
        to: Events,
        now: u64,
    ) -> StoreResult<RoomRecord>;

    /// Sets the room's page template (`Some`, already compiled and checked by the caller) or
    /// removes it (`None`). The text is kept beside the record, which names it by
    /// [`TemplateRef`]; what the record names can always be read back (the text is written
    /// before the record names it).
    async fn set_template(
        &self,
        id: &RoomId,
        template: Option<&str>,
        now: u64,
    ) -> StoreResult<RoomRecord>;

    /// The text of the template `reference` names in the room; `None` when the store no longer
    /// keeps it (the room names another one, or none, by now).
    async fn template(
        &self,
        id: &RoomId,
        reference: &TemplateRef,
        now: u64,
    ) -> StoreResult<Option<String>>;

    /// The room's report, minute by minute, oldest first ([`crate::report`]), as the
    /// admission scheduler keeps it: the minutes that began at `since_ms` or later.
    async fn report(&self, id: &RoomId, since_ms: u64, now: u64) -> StoreResult<Vec<ReportMinute>>;

    /// The room's live numbers: read now (ending what expired first) when `fresh`, else as this
    /// instance last knew them (at most a tick or so old).
    async fn stats(&self, room: &RoomRecord, now: u64, fresh: bool) -> StoreResult<RoomStats>;

    /// Gives a visitor a place. With a `user_id` that already holds a live place, returns that
    /// place. When nobody waits and the scheduler opened entry credit, admits at once.
    async fn join(&self, room: &RoomRecord, user_id: Option<&str>, now: u64)
        -> StoreResult<Joined>;

    /// Applies `op` to `client`'s record in the room under `limit`: reads the record, asks
    /// [`crate::limit::record::apply`], and stores what it says to keep for as long as it says,
    /// atomically (two joins at once are decided one after the other).
    async fn limit_client(
        &self,
        room: &RoomRecord,
        client: ClientKey,
        limit: &JoinLimit,
        op: LimitOp,
        now: u64,
    ) -> StoreResult<LimitOutcome>;

    /// Records that `key` (a solved challenge, an invite's id) was used in the room, to be
    /// remembered until `until` (Unix ms, when what it stands for expires anyway). Whether this
    /// was its first use; of two uses at once, exactly one is first.
    async fn spend_once(
        &self,
        room: &RoomRecord,
        key: &str,
        until: u64,
        now: u64,
    ) -> StoreResult<bool>;

    /// Where the ticket's holder stands. An admitted visitor who has not arrived yet arrives now
    /// (the session starts), if still inside the claim window.
    async fn visit(
        &self,
        room: &RoomRecord,
        ticket: &Ticket,
        now: u64,
    ) -> StoreResult<VisitorState>;

    /// Ends whatever the visitor at `place` holds (a place in the queue, an admission, a
    /// session) for good: a leave or a revocation. `None` when the room never gave out the
    /// place; else whether something was ended.
    async fn end(&self, room: &RoomRecord, place: Place, now: u64) -> StoreResult<Option<bool>>;

    /// Whether the session at `place` is live, and its expiry; with `renew`, pushes the expiry
    /// out by the session TTL first.
    async fn session(
        &self,
        room: &RoomRecord,
        place: Place,
        renew: bool,
        now: u64,
    ) -> StoreResult<Option<u64>>;

    /// An operator's admission: up to `count` of the oldest waiting, planned with
    /// [`crate::plan::Batch::Operator`]. Returns how many were admitted.
    async fn admit_now(&self, room: &RoomRecord, count: u64, now: u64) -> StoreResult<u64>;

    /// Calls the store made to what backs it so far, by kind (for `/metrics`).
    fn calls(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// The interface a remote scheduler drives, where the deployment has one (the edge, which
    /// the origin's scheduler admits for); `None` where the scheduler runs in the process.
    fn remote(&self) -> Option<&dyn RemoteScheduling> {
        None
    }
}

/// What a scheduler in another process needs of a store, served under `/admin` by the request
/// layer (and called by the origin's `schedule --edge`).
#[async_trait]
pub trait RemoteScheduling: Send + Sync {
    /// Takes or renews the admission lease for `holder`: its fence, or 0 while another holder
    /// has it.
    async fn lease(&self, holder: &str, ttl_ms: u64, now: u64) -> StoreResult<u64>;

    /// One batch for a room in one call per shard: each shard raises its fence, ends what
    /// expired, carries out its order (if any) and reports itself with its next `heads` waiting
    /// visitors. Records the measured admission rate. Returns what the orders admitted and the
    /// shards' readings.
    async fn run_batch(
        &self,
        room: &RoomRecord,
        batch: &ScheduleRequest,
        now: u64,
    ) -> StoreResult<ScheduleResponse>;
}
