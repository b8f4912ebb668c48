//! The connection to Redis: one node or a cluster, every call bounded by the store's timeout, and
//! Redis's failures turned into the store's errors.

use std::future::Future;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{RedisError, Script, ScriptInvocation};

use super::keys;
use super::store::RedisStore;
use crate::store::{StoreError, StoreResult};

/// A store on one Redis server. The connection is made lazily and remade after a failure, so
/// the server starts and keeps running while Redis is away.
pub fn connect_single(
    url: &str,
    timeout: Duration,
) -> Result<RedisStore<redis::aio::ConnectionManager>, String> {
    let client = redis::Client::open(url).map_err(|e| format!("redis url {url:?}: {e}"))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    let conn = client
        .get_connection_manager_lazy(config)
        .map_err(|e| format!("redis {url:?}: {e}"))?;
    Ok(RedisStore::new(conn, "redis", timeout))
}

/// A store on a Redis Cluster. The cluster's slot map is read at start, so the cluster must be
/// reachable then (tried for ten seconds); after that, nodes may come and go.
pub async fn connect_cluster(
    urls: &[String],
    timeout: Duration,
) -> Result<RedisStore<redis::cluster_async::ClusterConnection>, String> {
    let client = redis::cluster::ClusterClientBuilder::new(urls.to_vec())
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(2)
        .build()
        .map_err(|e| format!("redis cluster {urls:?}: {e}"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match client.get_async_connection().await {
            Ok(conn) => return Ok(RedisStore::new(conn, "redis-cluster", timeout)),
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(format!("redis cluster {urls:?}: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// A connection `C` and the timeout every call on it runs under. A `ConnectionManager` (one
/// node) and a `ClusterConnection` both multiplex and pipeline every request of this instance
/// over one connection per node and reconnect by themselves, so a clone per call is cheap.
#[derive(Clone)]
pub(super) struct Redis<C> {
    conn: C,
    timeout: Duration,
}

impl<C> Redis<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    pub fn new(conn: C, timeout: Duration) -> Self {
        Redis { conn, timeout }
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
        script: &Script,
        keys: &[String],
        args: [Arg<'_>; N],
    ) -> StoreResult<T>
    where
        T: redis::FromRedisValue,
    {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        // KEYS[9] must exist for the shared helpers: a same-slot dummy user bucket.
        invocation.key(keys::user_bucket(keys, 0));
        for arg in args {
            invocation.arg(arg);
        }
        self.invoke(invocation).await
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

/// A script argument: a number or a string.
#[derive(Debug, Clone, Copy)]
pub(super) enum Arg<'a> {
    Num(u64),
    Str(&'a str),
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
