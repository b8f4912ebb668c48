//! How many replicas must acknowledge the scheduler's writes (the lease, the fenced reads a
//! batch is planned from, the batch) before it acts on them. Redis replicates asynchronously: a
//! master can acknowledge a write and die before any replica has it, and the replica promoted
//! in its place then hands out the lease's fence a second time. `WAIT` after those writes
//! closes that gap for the scheduler: what it acts on is on the replicas too.
//!
//! The count is the operator's (`--redis-replicas N`) or read from the deployment: per cluster
//! slot, the replicas the master serving it has in the cluster's own list (`CLUSTER NODES`
//! lists a replica that is stopped or cut off too, so a replica that cannot acknowledge stops
//! admissions instead of being forgotten); on one server, the replicas connected to it. It is
//! read again every few seconds and soon after a `WAIT` came up short, so that a master whose
//! replica was just promoted in its place, and that has none left, does not stop admissions
//! for good. A master without replicas cannot lose a write to a failover: it has no one to be
//! replaced by.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::ConnectionLike;

use super::connection::Redis;
use crate::store::{StoreError, StoreResult};

/// How long a reading of the deployment's replicas is used.
const REREAD: Duration = Duration::from_secs(10);
/// After a `WAIT` came up short, how soon the replicas are read again.
const REREAD_SHORT: Duration = Duration::from_secs(1);
/// How long a visitor's write waits for its replicas at the most (ms).
const VISITOR_WAIT_MS: u64 = 100;

/// The replicas per slot range of a cluster, or of one server (every slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Replicas(Vec<(u16, u16, u32)>);

impl Replicas {
    /// The slot range one master serves that holds `slot`.
    fn range_of(&self, slot: u16) -> Option<(u16, u16)> {
        self.0
            .iter()
            .find(|&&(start, end, _)| (start..=end).contains(&slot))
            .map(|&(start, end, _)| (start, end))
    }

    fn of_slot(&self, slot: u16) -> u32 {
        self.0
            .iter()
            .find(|&&(start, end, _)| (start..=end).contains(&slot))
            .map(|&(_, _, n)| n)
            // A slot no master serves (the cluster is changing): as many as any master has.
            .unwrap_or_else(|| self.0.iter().map(|&(_, _, n)| n).max().unwrap_or(0))
    }

    /// From `CLUSTER NODES`: for each master's slot ranges, how many replicas name it (with
    /// `reachable_only`, of those the cluster does not take for failing, `fail` or `fail?`).
    pub fn from_cluster_nodes(text: &str, reachable_only: bool) -> Replicas {
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.len() >= 8 && !f[2].contains("handshake") && !f[2].contains("noaddr"))
            .collect();
        let replicas_of = |id: &str| {
            lines
                .iter()
                .filter(|f| (f[2].contains("slave") || f[2].contains("replica")) && f[3] == id)
                .filter(|f| !(reachable_only && f[2].contains("fail")))
                .count() as u32
        };
        let mut ranges = Vec::new();
        for f in lines.iter().filter(|f| f[2].contains("master")) {
            let n = replicas_of(f[0]);
            // Slots being imported or migrated ("[...]") belong to the master named first.
            for range in f[8..].iter().filter(|s| !s.starts_with('[')) {
                let parsed = match range.split_once('-') {
                    Some((a, b)) => a.parse().ok().zip(b.parse().ok()),
                    None => range.parse().ok().map(|s| (s, s)),
                };
                if let Some((start, end)) = parsed {
                    ranges.push((start, end, n));
                }
            }
        }
        Replicas(ranges)
    }

    /// From `INFO replication` of one server: the replicas connected to it.
    pub fn from_info(text: &str) -> Replicas {
        let n = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("connected_slaves:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        Replicas(vec![(0, SLOTS - 1, n)])
    }
}

/// The replicas to wait for, and the last reading of the deployment when they are read from it.
pub(super) struct Acks {
    /// Whose writes wait: the names of their `WAIT`s and short ones among the store's calls.
    kinds: [&'static str; 2],
    /// Replicas the cluster takes for failing are not waited for (visitors' writes).
    reachable_only: bool,
    configured: Option<u32>,
    cluster: bool,
    /// How long a `WAIT` may block the scheduler's connection.
    pub wait_ms: u64,
    known: Mutex<Known>,
    /// `WAIT`s sent, and those that came up short (for `/metrics`).
    waits: AtomicU64,
    shorts: AtomicU64,
    /// The scripts this connection has run (by hash): until then they are sent whole, so that
    /// the first call of each is not answered NOSCRIPT after its `WAIT` already ran.
    loaded: Mutex<HashSet<String>>,
}

#[derive(Default)]
struct Known {
    replicas: Option<Replicas>,
    read_at: Option<Instant>,
    short: bool,
    /// Slot ranges whose replicas fell short, and when: writes to them fail at once until the
    /// replicas are read again (or for `REREAD_SHORT`, should the reading fail), rather than
    /// each block its connection for `wait_ms` (and every call queued behind it) waiting for a
    /// replica that is down.
    short_slots: Vec<(u16, u16, Instant)>,
}

impl Acks {
    /// `configured`: the operator's count, or `None` to read it from the deployment.
    pub fn new(configured: Option<u32>, cluster: bool, timeout: Duration) -> Acks {
        Acks {
            kinds: ["redis_wait", "redis_wait_short"],
            reachable_only: false,
            configured,
            cluster,
            // Half the call's timeout: a short `WAIT` is an answer, not a timed-out call.
            wait_ms: (timeout.as_millis() as u64 / 2).max(1),
            known: Mutex::new(Known::default()),
            waits: AtomicU64::new(0),
            shorts: AtomicU64::new(0),
            loaded: Mutex::default(),
        }
    }

    /// The same for visitors' writes (joins, leaves), counted apart from the scheduler's, and
    /// waiting only for the replicas the cluster does not take for failing: a replica that is
    /// down stops joins and leaves on its master's slots for the cluster's node timeout, not
    /// until it is back. (What the master acknowledges meanwhile is on it alone: should it die
    /// before that replica is back and synced, and that replica be promoted anyway, it is
    /// lost. The scheduler, which must never hand one fence out twice, waits for every
    /// replica listed.)
    pub fn for_visitors(mut self) -> Acks {
        self.kinds = ["redis_wait_visitor", "redis_wait_visitor_short"];
        self.reachable_only = true;
        // A replica that keeps up acknowledges within a millisecond or two; one that does not
        // within this is as good as down, and a visitor should not wait longer to be told.
        self.wait_ms = self.wait_ms.min(VISITOR_WAIT_MS);
        self
    }

    pub fn is_loaded(&self, hash: &str) -> bool {
        self.loaded.lock().contains(hash)
    }

    pub fn mark_loaded(&self, hash: &str) {
        if !self.is_loaded(hash) {
            self.loaded.lock().insert(hash.to_owned());
        }
    }

    /// A `WAIT` is sent.
    pub fn waiting(&self) {
        self.waits.fetch_add(1, Ordering::Relaxed);
    }

    /// The `WAIT`s sent and those that came up short, as store calls by kind.
    pub fn calls(&self) -> [(&'static str, u64); 2] {
        [
            (self.kinds[0], self.waits.load(Ordering::Relaxed)),
            (self.kinds[1], self.shorts.load(Ordering::Relaxed)),
        ]
    }

    /// How many replicas must acknowledge a write to `key`.
    pub async fn needed<C>(&self, redis: &Redis<C>, key: &str) -> StoreResult<u32>
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        if let Some(n) = self.configured {
            return Ok(n);
        }
        let slot = slot_of(key);
        let due = {
            let known = self.known.lock();
            match known.read_at {
                None => true,
                Some(at) => at.elapsed() >= REREAD || (known.short && at.elapsed() >= REREAD_SHORT),
            }
        };
        if due {
            match self.read(redis).await {
                Ok(replicas) => {
                    if self.known.lock().replicas.as_ref() != Some(&replicas) {
                        tracing::info!(
                            ?replicas,
                            writes = self.kinds[0],
                            "the replicas to wait for"
                        );
                    }
                    let mut known = self.known.lock();
                    known.replicas = Some(replicas);
                    known.read_at = Some(Instant::now());
                    known.short = false;
                    known.short_slots.clear();
                }
                // The last reading stands while there is one.
                Err(err) if self.known.lock().replicas.is_none() => return Err(err),
                Err(error) => {
                    tracing::warn!(%error, "the replicas could not be read; the last reading stands")
                }
            }
        }
        let mut known = self.known.lock();
        known
            .short_slots
            .retain(|&(_, _, at)| at.elapsed() < REREAD_SHORT);
        if known
            .short_slots
            .iter()
            .any(|&(start, end, _)| (start..=end).contains(&slot))
        {
            return Err(StoreError::Unavailable(
                "the replicas of this key fell short a moment ago".into(),
            ));
        }
        Ok(known.replicas.as_ref().map_or(0, |r| r.of_slot(slot)))
    }

    /// A `WAIT` for a write to `key` came up short: the replicas may have changed (a
    /// promotion, a replica down); read them soon, and until then fail writes there at once.
    pub fn fell_short(&self, key: &str) {
        self.shorts.fetch_add(1, Ordering::Relaxed);
        self.reread_soon(key);
    }

    /// A write to `key` found no answer in time: as when its `WAIT` falls short, but not
    /// counted as one.
    pub fn reread_soon(&self, key: &str) {
        if self.configured.is_some() {
            // The operator's count is not read again: nothing to wait for.
            return;
        }
        let slot = slot_of(key);
        let mut known = self.known.lock();
        known.short = true;
        let range = known
            .replicas
            .as_ref()
            .and_then(|r| r.range_of(slot))
            .unwrap_or((slot, slot));
        known.short_slots.push((range.0, range.1, Instant::now()));
    }

    async fn read<C>(&self, redis: &Redis<C>) -> StoreResult<Replicas>
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        if self.cluster {
            let text: String = redis
                .call(|mut conn| async move {
                    redis::cmd("CLUSTER")
                        .arg("NODES")
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            Ok(Replicas::from_cluster_nodes(&text, self.reachable_only))
        } else {
            let text: String = redis
                .call(|mut conn| async move {
                    redis::cmd("INFO")
                        .arg("replication")
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            Ok(Replicas::from_info(&text))
        }
    }
}

/// The error of a write fewer replicas acknowledged than needed.
pub(super) fn short(acked: u64, needed: u32, wait_ms: u64) -> StoreError {
    StoreError::Unavailable(format!(
        "{acked} of {needed} replicas acknowledged the write within {wait_ms} ms"
    ))
}

const SLOTS: u16 = 16384;

/// The cluster slot of `key` (CRC16/XMODEM of its hash tag, or of the whole key without one).
pub(super) fn slot_of(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = bytes
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let len = bytes[open + 1..].iter().position(|&b| b == b'}')?;
            (len > 0).then(|| &bytes[open + 1..open + 1 + len])
        })
        .unwrap_or(bytes);
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_hash_tag() {
        // Values from CLUSTER KEYSLOT.
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of("{user1000}.following"), slot_of("user1000"));
        assert_eq!(slot_of("{qg:lease}:holder"), slot_of("{qg:lease}:fence"));
        assert_eq!(slot_of("{}x"), slot_of("{}x"));
        assert_ne!(slot_of("{}x"), slot_of("x"));
    }

    #[test]
    fn replicas_are_counted_per_master_and_its_slots() {
        let nodes = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b1 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922 [5461->-c1]
c1 127.0.0.1:7002@17002 master,fail - 0 0 3 connected 10923-16383
a2 127.0.0.1:7003@17003 slave a1 0 0 1 connected
b2 127.0.0.1:7004@17004 slave,fail b1 0 0 2 disconnected
b3 127.0.0.1:7005@17005 slave b1 0 0 2 connected
x9 127.0.0.1:7006@17006 master,fail - 0 0 4 disconnected
";
        let r = Replicas::from_cluster_nodes(nodes, false);
        assert_eq!(r.of_slot(0), 1);
        // A replica that is down still counts: it may come back and be promoted.
        assert_eq!(r.of_slot(6000), 2);
        assert_eq!(r.of_slot(16383), 0);
        // Unless only reachable replicas count (visitors' writes).
        let r = Replicas::from_cluster_nodes(nodes, true);
        assert_eq!(r.of_slot(0), 1);
        assert_eq!(r.of_slot(6000), 1);
        let suspected = nodes.replace("slave b1 0 0 2 connected", "slave,fail? b1 0 0 2 connected");
        assert_eq!(
            Replicas::from_cluster_nodes(&suspected, true).of_slot(6000),
            0
        );
    }

    #[test]
    fn one_server_counts_its_connected_replicas() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=...\r\n";
        assert_eq!(Replicas::from_info(info).of_slot(123), 2);
        assert_eq!(Replicas::from_info("role:master\r\n").of_slot(0), 0);
    }
}
