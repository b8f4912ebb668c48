//! The conformance suite against the origin on Redis: one real redis-server per case, and a
//! real Redis Cluster of three masters for the whole suite.

mod conformance;
mod support;

use queuegate_origin::config::StoreConfig;
use support::redis::{RedisCluster, RedisServer};

macro_rules! redis_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let redis = RedisServer::start();
                let server = support::origin_on(&StoreConfig::Redis { url: redis.url(), timeout_ms: None }).await;
                conformance::$case(&server.target).await;
                server.stop().await;
            }
        )*
    };
}

for_each_case!(redis_cases);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_input_never_gets_a_5xx() {
    let redis = RedisServer::start();
    let server = support::origin_on(&StoreConfig::Redis {
        url: redis.url(),
        timeout_ms: None,
    })
    .await;
    conformance::random_input_never_gets_a_5xx(&server.target, 600).await;
    server.stop().await;
}

/// The whole suite on a cluster; afterwards every master holds keys (rooms' shards spread over
/// the cluster).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let server = support::origin_on(&StoreConfig::RedisCluster {
        urls: cluster.urls(),
        timeout_ms: None,
    })
    .await;
    conformance::run_all(&server.target).await;
    server.stop().await;
    let keys = cluster.keys_per_node();
    assert!(keys.iter().all(|&n| n > 0), "keys per master: {keys:?}");
}
