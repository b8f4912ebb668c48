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
                let server = support::origin_on(&StoreConfig::Redis { url: redis.url(), timeout_ms: None, replicas: None }).await;
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
        replicas: None,
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
        replicas: None,
    })
    .await;
    conformance::run_all(&server.target).await;
    server.stop().await;
    let keys = cluster.keys_per_node();
    assert!(keys.iter().all(|&n| n > 0), "keys per master: {keys:?}");
}

/// Room ids a stranger makes up cost the origin no memory and Redis at most a read a second
/// (with the instance's own ticks besides): 600 joins to 600 made-up rooms over about two
/// seconds cost a handful of record reads, not 600.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_rooms_cost_at_most_a_read_a_second() {
    let redis = RedisServer::start();
    let server = support::origin_on(&StoreConfig::Redis {
        url: redis.url(),
        timeout_ms: None,
        replicas: None,
    })
    .await;
    let t = &server.target;
    let record_reads = || {
        let stats = support::redis::command(redis.port, "INFO commandstats").unwrap_or_default();
        stats
            .lines()
            .find_map(|line| line.strip_prefix("cmdstat_hgetall:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = record_reads();
    let started = std::time::Instant::now();
    for i in 0..600 {
        let reply = t.join(&format!("made-up-{i}"), None).await;
        assert_eq!(reply.error_code(), Some("unknown_room"), "{}", reply.text);
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let seconds = started.elapsed().as_secs() + 1;
    let reads = record_reads() - before;
    // One a second for the made-up ids; the scheduler's ticks read no records while there are
    // no rooms.
    assert!(reads <= seconds + 1, "{reads} record reads in {seconds} s");
    server.stop().await;
}
