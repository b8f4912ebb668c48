//! The origin's stores: the embedded store and Redis (both serve visitors through the request
//! layer's [`Store`] and admit through [`Scheduling`]), and the edge as the scheduler sees it
//! (through the worker's admin API). Every batch is planned by the core's
//! [`queuegate::plan::plan`].

pub mod edge;
pub mod memory;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use queuegate::api::RoomStats;
use queuegate::controller::RoomLoad;
use queuegate::report::ReportMinute;
pub use queuegate::room::RoomRecord;
pub use queuegate::service::{Fence, Joined, Store, StoreError, StoreResult};

/// What the scheduler decided for a room, from the load the store read: how many to admit
/// (the controller's grant) and the admission rate it measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub grant: u64,
    pub rate: Option<f64>,
}

/// What a scheduler round did for a room.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    /// Waiting visitors admitted from the queue.
    pub admitted: u64,
    /// Slots opened for direct entry until the next round.
    pub entry_credit: u64,
    /// The room's numbers after the round.
    pub stats: RoomStats,
    /// How long (ms) each visitor admitted from the head of the queue had waited (the core's
    /// [`queuegate::plan::admitted_waits`]), for the room's report.
    pub waits_ms: Vec<u64>,
}

/// What the admission scheduler needs of a store. The embedded store, Redis and the edge
/// (through its admin API) provide it.
#[async_trait]
pub trait Scheduling: Send + Sync + 'static {
    async fn rooms(&self, now: u64) -> StoreResult<Vec<RoomRecord>>;

    /// Takes or renews the admission lease for `holder`; `None` while another holder has it.
    async fn acquire_lease(
        &self,
        holder: &str,
        ttl_ms: u64,
        now: u64,
    ) -> StoreResult<Option<Fence>>;

    /// One round for a room under the lease's `fence`: the store reads the room's load, asks
    /// `decide`, plans the batch with the core's plan and admits it; it records the measured
    /// rate with the room.
    async fn schedule(
        &self,
        room: &RoomRecord,
        fence: Fence,
        now: u64,
        decide: &mut (dyn FnMut(RoomLoad) -> Decision + Send),
    ) -> StoreResult<Round>;

    /// Keeps `row` as the room's report minute ([`queuegate::report::upsert`]): the scheduler
    /// calls it every tick with the open minute as it stands.
    async fn keep_minute(&self, room: &RoomRecord, row: ReportMinute) -> StoreResult<()>;

    /// Brings whatever this instance caches of a shared store up to date; called every tick on
    /// every instance, leader or not.
    async fn refresh(&self, _now: u64) -> StoreResult<()> {
        Ok(())
    }
}

/// A store the origin serves from and schedules on.
pub trait OriginStore: Store + Scheduling {}

impl<T: Store + Scheduling> OriginStore for T {}

/// Opens the store the configuration names.
pub async fn open(config: &crate::config::StoreConfig) -> Result<Arc<dyn OriginStore>, String> {
    use crate::config::StoreConfig;
    match config {
        StoreConfig::Memory => Ok(Arc::new(memory::MemoryStore::new())),
        StoreConfig::Redis { url, replicas, .. } => Ok(Arc::new(redis::connect_single(
            url,
            config.timeout(),
            *replicas,
        )?)),
        StoreConfig::RedisCluster { urls, replicas, .. } => Ok(Arc::new(
            redis::connect_cluster(urls, config.timeout(), *replicas).await?,
        )),
    }
}
