//! What the worker and its Durable Objects say to each other: JSON over `fetch`, one path per
//! operation.

use serde::{Deserialize, Serialize};

use crate::api::RoomStats;
use crate::event::Events;
use crate::plan::{ShardOrder, ShardReading};
use crate::queue::QueueSummary;
use crate::report::ReportMinute;
use crate::room::{RoomConfig, RoomId, RoomRecord};
use crate::shard::{ShardJoin, Standing, Timing};

// ---- the shard object ----

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinJob {
    pub user: Option<String>,
    pub stamp: u64,
    /// No entry at once, whatever credit the shard holds: the room is in a pre-queue.
    #[serde(default)]
    pub hold: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinReq {
    pub jobs: Vec<JoinJob>,
    pub now: u64,
    pub timing: Timing,
}

/// A join and, when the visitor waits, how many wait before it in this shard.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct JoinedIn {
    pub joined: ShardJoin,
    pub ahead: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRes {
    pub results: Vec<JoinedIn>,
}

/// A shuffle of the pre-queue for one shard ([`crate::shuffle`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShuffleReq {
    pub epoch: u32,
    pub shard: u16,
    /// Hex.
    pub seed: String,
    pub prequeue_us: u64,
    pub start_us: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct VisitReq {
    pub seq: u64,
    pub now: u64,
    pub timing: Timing,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct VisitRes {
    pub standing: Standing,
    pub stamp: u64,
    pub ahead: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LimitClientReq {
    /// The client, as [`crate::limit::ClientKey`] displays it.
    pub client: String,
    pub limit: crate::limit::JoinLimit,
    pub op: crate::limit::record::LimitOp,
    pub now: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LimitClientRes {
    pub outcome: crate::limit::record::Outcome,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpendReq {
    pub key: String,
    pub until: u64,
    pub now: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SpendRes {
    pub first: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct EndReq {
    pub seq: u64,
    pub now: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndRes {
    pub ended: Option<bool>,
    pub report: ShardReport,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SessionReq {
    pub seq: u64,
    pub renew: bool,
    pub now: u64,
    pub timing: Timing,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SessionRes {
    pub expires_at: Option<u64>,
}

/// A scheduler's or an operator's batch on one shard: raises the fence (when not 0), ends what
/// has expired, carries out the order (if any) and reports the shard with its next `heads`
/// waiting visitors. Without an order it is a reading.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct BatchReq {
    pub fence: u64,
    pub order: Option<ShardOrder>,
    /// An operator's order goes ahead in a paused shard.
    pub operator: bool,
    pub heads: u64,
    pub now: u64,
    pub timing: Timing,
    /// The room's `abandon_after_s` in ms (0: never): waiting places not seen for this long end
    /// first.
    #[serde(default)]
    pub abandon_after_ms: u64,
}

/// Waiting visitors an isolate answered from a summary: the shard notes them as seen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeenReq {
    /// Ticket seqs.
    pub seqs: Vec<u64>,
    pub now: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardReport {
    pub reading: ShardReading,
    /// What isolates answer waiting visitors' polls from.
    pub summary: QueueSummary,
    /// Visitors the order admitted.
    pub admitted: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PauseReq {
    pub paused: bool,
    pub drop_credit: bool,
}

// ---- the registry ----

/// A room as the registry keeps it: its record and what was last published of its shards.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomEntry {
    pub record: RoomRecord,
    #[serde(default)]
    pub summaries: Vec<QueueSummary>,
    #[serde(default)]
    pub stats: RoomStats,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomsRes {
    pub rooms: Vec<RoomEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutReq {
    pub id: RoomId,
    pub config: RoomConfig,
    pub epoch: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutRes {
    pub record: RoomRecord,
    pub created: bool,
}

/// Sets (`template`) or removes (`None`) a room's page template.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetTemplateReq {
    pub id: RoomId,
    pub template: Option<String>,
}

/// Asks for the text of a room's page template by its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TemplateReq {
    pub id: RoomId,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TemplateRes {
    pub text: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatchReq {
    pub id: RoomId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Events>,
    /// The events `events` was decided on: the patch applies only while the room holds them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_from: Option<Events>,
}

/// A patched room's record, or, when the room no longer held `events_from`, its record as is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatchRes {
    pub record: RoomRecord,
    pub applied: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishReq {
    pub id: RoomId,
    pub summaries: Vec<QueueSummary>,
    pub stats: RoomStats,
    /// The admission rate the scheduler measured, when it sends one.
    #[serde(default)]
    pub rate: Option<Option<f64>>,
    /// The scheduler's report minute, when it sends one.
    #[serde(default)]
    pub minute: Option<ReportMinute>,
}

/// Asks for a room's report minutes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportReq {
    pub id: RoomId,
    /// Only the minutes that began then or later (Unix ms).
    #[serde(default)]
    pub since_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportRes {
    pub minutes: Vec<ReportMinute>,
}

/// One shard's summary, after a change this isolate made (a leave, a revocation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishShardReq {
    pub id: RoomId,
    pub shard: u16,
    pub summary: QueueSummary,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseReq {
    pub holder: String,
    pub ttl_ms: u64,
    pub now: u64,
}

/// An error a Durable Object answers with, as `{"error":{"code","message"}}` and a status.
pub use crate::error::ErrorBody;
