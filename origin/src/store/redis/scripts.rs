//! The Lua scripts, hashed once and sent by EVALSHA (redis-rs loads a script again when Redis
//! answers NOSCRIPT, after a restart or a failover). Every shard script starts with the shared
//! helpers in `lua/shard.lua` and touches only keys of one shard's hash tag.

use std::sync::LazyLock;

use redis::Script;

macro_rules! shard_script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/shard.lua"),
                "\n",
                include_str!(concat!("lua/", $file))
            ))
        })
    };
}

pub static JOIN: LazyLock<Script> = shard_script!("join.lua");
pub static VISIT: LazyLock<Script> = shard_script!("visit.lua");
pub static LEAVE: LazyLock<Script> = shard_script!("leave.lua");
pub static SESSION: LazyLock<Script> = shard_script!("session.lua");
pub static SYNC: LazyLock<Script> = shard_script!("sync.lua");
pub static ADMIT: LazyLock<Script> = shard_script!("admit.lua");
pub static PAUSE: LazyLock<Script> = shard_script!("pause.lua");
pub static LEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/lease.lua")));

/// A shard script's source as Redis runs it, for `redis-benchmark` runs of the same script.
pub fn source(name: &str) -> Option<String> {
    let body = match name {
        "join" => include_str!("lua/join.lua"),
        "visit" => include_str!("lua/visit.lua"),
        "leave" => include_str!("lua/leave.lua"),
        "session" => include_str!("lua/session.lua"),
        "sync" => include_str!("lua/sync.lua"),
        "admit" => include_str!("lua/admit.lua"),
        "pause" => include_str!("lua/pause.lua"),
        _ => return None,
    };
    Some(format!("{}\n{}", include_str!("lua/shard.lua"), body))
}
