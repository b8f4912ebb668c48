//! Redis key names. Every key a shard script touches carries the shard's hash tag, so a script
//! never crosses a cluster slot; rooms spread over shards and shards over the masters.

use queuegate::RoomId;

/// A room's record (configuration, state): a hash of its own.
pub fn room(room: &RoomId) -> String {
    format!("qg:room:{room}")
}

/// The text of a room's page template, by its hash (the room's hash names the one in use).
pub fn template(room: &RoomId, hash: &str) -> String {
    format!("qg:template:{room}:{hash}")
}

/// A room's report: a sorted set of its minutes (JSON), scored by when each began.
pub fn report(room: &RoomId) -> String {
    format!("qg:report:{room}")
}

/// One client's join-limit state in a room (a key of its own, in any slot: the script that sets
/// it touches this key alone).
pub fn join_limit(room: &RoomId, client: &queuegate::limit::ClientKey) -> String {
    format!("qg:jl:{room}:{client}")
}

/// A key spent once in a room (a solved challenge, an invite's id): a key of its own, set with
/// `NX` and an expiry.
pub fn spent(room: &RoomId, key: &str) -> String {
    format!("qg:once:{room}:{key}")
}

/// The ids of every room.
pub const ROOMS: &str = "qg:rooms";

/// Counters of changes (`versions.rs`): to any room's record, and to each room's queue where a
/// mirror cannot see it coming.
pub const VERSIONS: &str = "qg:versions";

/// The admission lease and its fencing counter share one tag, so the lease script stays in one
/// slot; operator admission requests and their results live there too.
pub const LEASE_HOLDER: &str = "{qg:lease}:holder";
pub const LEASE_FENCE: &str = "{qg:lease}:fence";

pub fn admit_requests(room: &RoomId) -> String {
    format!("{{qg:lease}}:admit:{room}")
}

pub fn admit_result(request: &str) -> String {
    format!("{{qg:lease}}:result:{request}")
}

/// User ids are spread over this many small hashes per shard, so that each stays in Redis's
/// compact listpack encoding (a few bytes per entry instead of a hash table entry).
pub const USER_BUCKETS: u64 = 4096;

/// The keys of one shard, in the order the scripts name them (`lua/shard.lua`), without the
/// user bucket.
pub fn shard(room: &RoomId, epoch: u32, shard: u16) -> Vec<String> {
    let tag = format!("{{qg:{room}:{epoch:08x}:{shard}}}");
    [
        "st", "lf", "m", "g", "gu", "se", "rs", "ll", "mv", "sn", "hd", "ml",
    ]
    .iter()
    .map(|name| format!("{tag}:{name}"))
    .collect()
}

/// The user bucket key of a shard whose keys are `shard_keys`.
pub fn user_bucket(shard_keys: &[String], bucket: u64) -> String {
    let tag = shard_keys[0]
        .strip_suffix(":st")
        .expect("the first shard key is the stamps");
    format!("{tag}:u:{bucket}")
}

/// Where a user id lives: its shard and its bucket. FNV-1a: stable across processes and
/// versions, unlike the standard library's seeded hasher.
pub fn user_home(user: &str, shards: u16) -> (u16, u64) {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in user.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let shard = (hash % u64::from(shards.max(1))) as u16;
    let bucket = (hash >> 16) % USER_BUCKETS;
    (shard, bucket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shard_key_shares_one_tag() {
        let room = RoomId::parse("sale").unwrap();
        let keys = shard(&room, 0xabcdef01, 3);
        for key in &keys {
            assert!(key.starts_with("{qg:sale:abcdef01:3}:"), "{key}");
        }
        assert_eq!(user_bucket(&keys, 7), "{qg:sale:abcdef01:3}:u:7");
    }

    #[test]
    fn user_homes_are_stable_and_spread() {
        assert_eq!(user_home("alice", 4), user_home("alice", 4));
        let mut seen = [0u32; 4];
        for i in 0..4000 {
            seen[usize::from(user_home(&format!("user-{i}"), 4).0)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }
}
