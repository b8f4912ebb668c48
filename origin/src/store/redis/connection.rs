//! The connection to Redis: one node or a cluster, every call bounded by the store's timeout, and
//! Redis's failures turned into the store's errors.

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use redis::aio::ConnectionLike;
use redis::{ErrorKind, RedisError, ScriptInvocation, ServerErrorKind};

use super::acks::{self, Acks};
use super::keys;
use super::scripts::LuaScript;
use super::store::RedisStore;
use crate::store::{StoreError, StoreResult};

/// A store on one Redis server. The connection is made lazily and remade after a failure, so
/// the server starts and keeps running while Redis is away. `replicas`: how many replicas must
/// acknowledge the scheduler's writes and visitors' joins and leaves (`None`: those connected
/// to the server).
pub fn connect_single(
    url: &str,
    timeout: Duration,
    replicas: Option<u32>,
) -> Result<RedisStore<redis::aio::ConnectionManager>, String> {
    let client = redis::Client::open(url).map_err(|e| format!("redis url {url:?}: {e}"))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    let connect = || {
        client
            .get_connection_manager_lazy(config.clone())
            .map_err(|e| format!("redis {url:?}: {e}"))
    };
    Ok(RedisStore::new(
        Connections {
            reads: connect()?,
            visitor_writes: connect()?,
            admission: connect()?,
            topology: connect()?,
        },
        || Acks::new(replicas, false, timeout),
        "redis",
        timeout,
    ))
}

/// A store on a Redis Cluster. The cluster's slot map is read at start, so the cluster must be
/// reachable then (tried for ten seconds); after that, nodes may come and go. `replicas`: how
/// many replicas must acknowledge the scheduler's writes and visitors' joins and leaves
/// (`None`: those the cluster lists for the master of the slot written).
pub async fn connect_cluster(
    urls: &[String],
    timeout: Duration,
    replicas: Option<u32>,
) -> Result<RedisStore<redis::cluster_async::ClusterConnection>, String> {
    let client = |retries| {
        redis::cluster::ClusterClientBuilder::new(urls.to_vec())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(retries)
            .build()
            .map_err(|e| format!("redis cluster {urls:?}: {e}"))
    };
    // Visitors' writes are never sent twice by the client: a join whose answer timed out may
    // have made a place, and a second sending would make another that nobody holds. (It
    // fails instead, with a 503, and the visitor asks again.)
    let clients = [client(2)?, client(0)?, client(2)?, client(2)?];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut conns = Vec::new();
    while conns.len() < clients.len() {
        match clients[conns.len()].get_async_connection().await {
            Ok(conn) => conns.push(conn),
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(format!("redis cluster {urls:?}: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    let [reads, visitor_writes, admission, topology]: [_; 4] = conns
        .try_into()
        .unwrap_or_else(|_| unreachable!("four connections"));
    Ok(RedisStore::new(
        Connections {
            reads,
            visitor_writes,
            admission,
            topology,
        },
        || Acks::new(replicas, true, timeout),
        "redis-cluster",
        timeout,
    ))
}

/// The store's connections to the same deployment. `WAIT` blocks the connection it is sent on,
/// so the writes that wait for replicas have connections of their own, and visitors' reads do
/// not queue behind them.
pub(super) struct Connections<C> {
    /// Everything that does not wait for replicas: reads, the mirror, sessions, counters.
    pub reads: C,
    /// Joins and leaves: acknowledged to the visitor only once on the replicas.
    pub visitor_writes: C,
    /// The scheduler's: the lease, fenced reads, batches.
    pub admission: C,
    /// Where the replicas are read from (`CLUSTER NODES` goes to any node, one that is stopped
    /// too, and the calls behind it on the same connection wait for its timeout).
    pub topology: C,
}

/// A connection `C` and the timeout every call on it runs under. A `ConnectionManager` (one
/// node) and a `ClusterConnection` both multiplex and pipeline every request of this instance
/// over one connection per node and reconnect by themselves, so a clone per call is cheap.
///
/// The scheduler's connection also has `acks`: its scripts are followed by `WAIT` on the same
/// node. It is a connection of its own because `WAIT` blocks the connection it is sent on, and
/// visitors' requests must not queue behind it.
#[derive(Clone)]
pub(super) struct Redis<C> {
    conn: C,
    timeout: Duration,
    acks: Option<Arc<Acks>>,
    /// Where the replicas are read from: not `conn`, which a `WAIT` for a replica that is
    /// down keeps blocked (and that reading is what lets writes go on without it).
    topology: Option<C>,
}

impl<C> Redis<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    pub fn new(conn: C, timeout: Duration) -> Self {
        Redis {
            conn,
            timeout,
            acks: None,
            topology: None,
        }
    }

    /// A connection whose every script waits for `acks` replicas; they are read through
    /// `topology`, a connection that does not wait.
    pub fn acknowledged(conn: C, topology: C, timeout: Duration, acks: Acks) -> Self {
        Redis {
            conn,
            timeout,
            acks: Some(Arc::new(acks)),
            topology: Some(topology),
        }
    }

    /// How long a call may take before it counts as failed.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The `WAIT`s sent on this connection and those that came up short, by kind.
    pub fn acks_calls(&self) -> Vec<(&'static str, u64)> {
        self.acks
            .as_ref()
            .map_or(Vec::new(), |acks| acks.calls().to_vec())
    }

    /// Runs `script` on `keys` (one slot) with `args`; on the scheduler's connection, only
    /// once the replicas it needs have the script's writes (and all that came before them on
    /// that node), else the call fails.
    pub async fn script<T>(
        &self,
        script: &LuaScript,
        keys: &[String],
        args: &[Arg<'_>],
    ) -> StoreResult<T>
    where
        T: redis::FromRedisValue,
    {
        let needed = match (&self.acks, &self.topology) {
            (Some(acks), Some(topology)) => {
                let topology = Redis::new(topology.clone(), self.timeout);
                acks.needed(&topology, &keys[0]).await?
            }
            _ => 0,
        };
        if needed == 0 {
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(key);
            }
            for arg in args {
                invocation.arg(arg);
            }
            return self.invoke(invocation).await;
        }
        let acks = self.acks.as_ref().expect("needed > 0 only with acks");
        let wait_ms = acks.wait_ms;
        let hash = script.get_hash();
        // One pipeline: the cluster client sends it to the node of the script's keys (WAIT has
        // none), and WAIT runs on the connection the script ran on, so it waits for exactly
        // the script's place in that node's replication stream. Errors come back in their
        // places (a fence refusal keeps its code). Sent whole (EVAL) where this instance has
        // not run it yet or the node lost it (a failover, a restart): a NOSCRIPT answer would
        // cost a WAIT for nothing, and with the replicas behind, all of the call's time.
        let pipe = |whole: bool| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            match whole {
                true => pipe.cmd("EVAL").arg(&script.source),
                false => pipe.cmd("EVALSHA").arg(hash),
            }
            .arg(keys.len())
            .arg(keys)
            .arg(args)
            .cmd("WAIT")
            .arg(needed)
            .arg(wait_ms);
            pipe
        };
        let first = pipe(!acks.is_loaded(hash));
        acks.waiting();
        type Replies<T> = (Result<T, RedisError>, Result<u64, RedisError>);
        let replies = self
            .call(|mut conn| async move {
                let replies: Replies<T> = first.query_async(&mut conn).await?;
                match replies {
                    (Err(err), _) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                        // Built only here: the whole source is kilobytes a call.
                        pipe(true).query_async::<Replies<T>>(&mut conn).await
                    }
                    replies => Ok(replies),
                }
            })
            .await;
        let (reply, acked) = replies.inspect_err(|_| {
            // No answer in time (a WAIT for a replica that is down, calls queued behind it, or
            // the node is gone): the replicas may have changed; read them again soon.
            acks.reread_soon(&keys[0]);
        })?;
        acks.mark_loaded(hash);
        let reply = reply.map_err(store_error)?;
        let acked = acked.map_err(store_error)?;
        if acked < u64::from(needed) {
            // The caller fails (the scheduler logs the failed tick and counts it).
            acks.fell_short(&keys[0]);
            return Err(acks::short(acked, needed, wait_ms));
        }
        Ok(reply)
    }

    /// Runs `f` on a clone of the connection, under the timeout.
    pub async fn call<T, F, Fut>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(C) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        within(self.timeout, f(self.conn.clone())).await
    }

    /// Invokes a prepared script.
    pub async fn invoke<T>(&self, invocation: ScriptInvocation<'_>) -> StoreResult<T>
    where
        T: redis::FromRedisValue,
    {
        self.call(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await
    }

    /// Runs a shard script on one shard's `keys` (in the order `lua/shard.lua` names them).
    pub async fn shard_script<T, const N: usize>(
        &self,
        script: &LuaScript,
        keys: &[String],
        args: [Arg<'_>; N],
    ) -> StoreResult<T>
    where
        T: redis::FromRedisValue,
    {
        let mut all = keys.to_vec();
        // KEYS[13] must exist for the shared helpers: a same-slot dummy user bucket.
        all.push(keys::user_bucket(keys, 0));
        self.script(script, &all, &args).await
    }
}

/// The error code a script refuses a batch under an older fence with (its error reply's first
/// word); the scripts get it as the Lua constant `FENCED`.
pub(super) const FENCED: &str = "FENCED";

/// Runs a Redis call under `timeout`; failures become `Unavailable` (or `Fenced`).
async fn within<T, F>(timeout: Duration, f: F) -> StoreResult<T>
where
    F: Future<Output = Result<T, RedisError>>,
{
    match tokio::time::timeout(timeout, f).await {
        Ok(result) => result.map_err(store_error),
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// The store's error for a failed call: a fence refusal by its code, whatever its text says;
/// anything else means Redis could not do it now.
fn store_error(err: RedisError) -> StoreError {
    if err.code() == Some(FENCED) {
        StoreError::Fenced
    } else {
        StoreError::Unavailable(err.to_string())
    }
}

/// A script argument: a number, a string or bytes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Arg<'a> {
    Num(u64),
    Str(&'a str),
    Bytes(&'a [u8]),
}

impl From<u64> for Arg<'_> {
    fn from(n: u64) -> Self {
        Arg::Num(n)
    }
}

impl From<bool> for Arg<'_> {
    fn from(flag: bool) -> Self {
        Arg::Num(u64::from(flag))
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Str(s)
    }
}

impl redis::ToRedisArgs for Arg<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        match self {
            Arg::Num(n) => {
                use std::io::Write;
                let _ = write!(out.writer_for_next_arg(), "{n}");
            }
            Arg::Str(s) => out.write_arg(s.as_bytes()),
            Arg::Bytes(b) => out.write_arg(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error a server answering `reply` (one RESP error line) would give.
    fn server_error(reply: &str) -> RedisError {
        let value = redis::parse_redis_value(format!("-{reply}\r\n").as_bytes())
            .expect("a RESP error parses");
        value.extract_error().expect_err("an error reply")
    }

    #[test]
    fn a_fence_refusal_is_known_by_its_code() {
        let refused = server_error("FENCED a newer scheduler holds the lease");
        assert_eq!(store_error(refused), StoreError::Fenced);
        // The word elsewhere in the text is not the code.
        let other = server_error("ERR user_script:3: FENCED is not a command");
        assert!(matches!(store_error(other), StoreError::Unavailable(_)));
        let busy = server_error("BUSY Redis is busy running a script");
        assert!(matches!(store_error(busy), StoreError::Unavailable(_)));
    }
}
