//! What an isolate keeps between requests: the rooms as the registry last published them (for at
//! most a second) and the route table built from them, live sessions it checked (for at most a
//! second), and its Durable Object calls by kind. Nothing here is the truth: an isolate may be
//! thrown away at any time.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::rc::Rc;

use std::sync::Arc;

use lru::LruCache;
use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::wasm_bindgen::JsValue;
use worker::{Env, Method, Request, RequestInit};

use super::protocol::{ErrorBody, RoomEntry, RoomsRes};
use crate::api::RoomStats;
use crate::error::{ApiError, ErrorCode};
use crate::queue::{merge_summaries, QueueSummary};
use crate::room::RoomId;
use crate::service::RouteTable;

/// How long an isolate trusts what it read from the registry or a shard.
pub const CACHE_MS: u64 = 1_000;

/// Every room the registry published, by id.
pub type Rooms = Rc<BTreeMap<String, RoomEntry>>;

/// Sessions an isolate remembers at the most.
const SESSIONS: NonZeroUsize = NonZeroUsize::new(10_000).unwrap();

struct Isolate {
    rooms: Option<(u64, Rooms)>,
    /// The route table built from `rooms`, while they are the same copy.
    routes: Option<(Rooms, Arc<RouteTable>)>,
    /// When a request of this isolate began reading the registry, while it reads.
    rooms_read_since: Option<u64>,
    /// Counts [`forget_rooms`]: a read of the registry that began before a change this isolate
    /// made may answer the rooms before it, and is not kept.
    rooms_forgotten: u64,
    /// The most recently checked sessions: expiry and when checked.
    sessions: LruCache<(String, u32, u16, u64), (u64, u64)>,
    object_calls: BTreeMap<&'static str, u64>,
    next_shard: u64,
    last_stamp: u64,
    /// By room and epoch: the `start_us` of the last shuffle this isolate saw every shard apply.
    shuffled: BTreeMap<(String, u32), u64>,
    /// By room, epoch and shard: the ticket seqs of waiting visitors this isolate answered from
    /// a summary since it last told the shard, and when it last did.
    seen: BTreeMap<(String, u32, u16), (u64, Vec<u64>)>,
}

impl Default for Isolate {
    fn default() -> Self {
        Isolate {
            rooms: None,
            routes: None,
            rooms_read_since: None,
            rooms_forgotten: 0,
            sessions: LruCache::new(SESSIONS),
            object_calls: BTreeMap::new(),
            next_shard: 0,
            last_stamp: 0,
            shuffled: BTreeMap::new(),
            seen: BTreeMap::new(),
        }
    }
}

thread_local! {
    static ISOLATE: RefCell<Isolate> = RefCell::new(Isolate::default());
}

/// Durable Object calls this isolate made, by kind.
pub fn object_calls() -> Vec<(&'static str, u64)> {
    ISOLATE.with(|i| {
        i.borrow()
            .object_calls
            .iter()
            .map(|(k, n)| (*k, *n))
            .collect()
    })
}

/// A join stamp in microseconds, strictly increasing in this isolate: the runtime's clock moves
/// in whole milliseconds, and visitors who join one after the other must keep their order.
pub fn next_stamp(now: u64) -> u64 {
    ISOLATE.with(|i| {
        let mut i = i.borrow_mut();
        i.last_stamp = now.saturating_mul(1000).max(i.last_stamp + 1);
        i.last_stamp
    })
}

/// A round-robin shard for joins without a user id.
pub fn next_shard(shards: u16) -> u16 {
    ISOLATE.with(|i| {
        let mut i = i.borrow_mut();
        i.next_shard = i.next_shard.wrapping_add(1);
        (i.next_shard % u64::from(shards.max(1))) as u16
    })
}

/// Calls a Durable Object: `POST https://do/{op}` with a JSON body, answer parsed as JSON.
/// Errors the object answered with keep their code; a failed call is `store_unavailable`.
/// The request is encoded before the call, so the future borrows only `env`.
pub fn call<'e, Q: Serialize, A: DeserializeOwned>(
    env: &'e Env,
    binding: &'static str,
    name: &str,
    kind: &'static str,
    op: &'static str,
    body: &Q,
) -> impl std::future::Future<Output = Result<A, ApiError>> + 'e {
    let json = serde_json::to_string(body).expect("requests serialize");
    let name = name.to_owned();
    async move {
        ISOLATE.with(|i| *i.borrow_mut().object_calls.entry(kind).or_default() += 1);
        let unavailable = |e: worker::Error| {
            ApiError::new(
                ErrorCode::StoreUnavailable,
                format!("{binding} {name}: {e}"),
            )
        };
        let namespace = env.durable_object(binding).map_err(unavailable)?;
        let id = namespace.id_from_name(&name).map_err(unavailable)?;
        let stub = id.get_stub().map_err(unavailable)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(JsValue::from_str(&json)));
        let request =
            Request::new_with_init(&format!("https://do/{op}"), &init).map_err(unavailable)?;
        let mut response = stub
            .fetch_with_request(request)
            .await
            .map_err(unavailable)?;
        let status = response.status_code();
        let bytes = response.bytes().await.map_err(unavailable)?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::new(ErrorCode::StoreUnavailable, format!("{binding} {op}: {e}"))
            });
        }
        let body: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
        Err(match body {
            Some(body) => ApiError::new(
                ErrorCode::parse(&body.error.code).unwrap_or(ErrorCode::StoreUnavailable),
                body.error.message,
            ),
            None => ApiError::new(
                ErrorCode::StoreUnavailable,
                format!("{binding} {op} answered {status}"),
            ),
        })
    }
}

pub const REGISTRY: &str = "REGISTRY";
pub const SHARDS: &str = "SHARDS";
pub const REGISTRY_NAME: &str = "registry";

/// Every room as the registry last published it, read at most once a second (or now, with
/// `fresh`). While one request reads the registry, the others of the isolate go on with the copy
/// it replaces, so a busy isolate reads once a second, not once per request that found the copy
/// out of date.
pub async fn rooms(env: &Env, now: u64, fresh: bool) -> Result<Rooms, ApiError> {
    if !fresh {
        let cached = ISOLATE.with(|i| {
            let mut i = i.borrow_mut();
            let (at, rooms) = i.rooms.clone()?;
            let someone_reads = i
                .rooms_read_since
                .is_some_and(|since| now < since + CACHE_MS);
            if now < at + CACHE_MS || someone_reads {
                return Some(rooms);
            }
            i.rooms_read_since = Some(now);
            None
        });
        if let Some(rooms) = cached {
            return Ok(rooms);
        }
    }
    let forgotten = ISOLATE.with(|i| i.borrow().rooms_forgotten);
    let read: Result<RoomsRes, ApiError> =
        call(env, REGISTRY, REGISTRY_NAME, "registry_read", "rooms", &()).await;
    ISOLATE.with(|i| i.borrow_mut().rooms_read_since = None);
    let rooms: BTreeMap<String, RoomEntry> = read?
        .rooms
        .into_iter()
        .map(|e| (e.record.id.as_str().to_owned(), e))
        .collect();
    let rooms = Rc::new(rooms);
    ISOLATE.with(|i| {
        let mut i = i.borrow_mut();
        if i.rooms_forgotten == forgotten {
            i.rooms = Some((now, rooms.clone()));
        }
    });
    Ok(rooms)
}

/// The route table of the rooms this isolate knows (read at most once a second).
pub async fn route_table(env: &Env, now: u64) -> Result<Arc<RouteTable>, ApiError> {
    let rooms = rooms(env, now, false).await?;
    let cached = ISOLATE.with(|i| {
        i.borrow()
            .routes
            .as_ref()
            .filter(|(from, _)| Rc::ptr_eq(from, &rooms))
            .map(|(_, table)| table.clone())
    });
    if let Some(table) = cached {
        return Ok(table);
    }
    let records: Vec<_> = rooms.values().map(|e| e.record.clone()).collect();
    let table = Arc::new(RouteTable::build(&records));
    ISOLATE.with(|i| i.borrow_mut().routes = Some((rooms, table.clone())));
    Ok(table)
}

/// Forgets the cached rooms (after this isolate changed one): the next request reads them.
pub fn forget_rooms() {
    ISOLATE.with(|i| {
        let mut i = i.borrow_mut();
        i.rooms = None;
        i.rooms_forgotten += 1;
    });
}

/// Puts what this isolate just published of a room (its shards' summaries, its stats and the
/// measured rate) into its cached copy, instead of reading every room again. The room's record
/// in the copy stays: the publication may have been planned before a change to the room that the
/// copy already holds.
pub fn remember_published(
    id: &RoomId,
    summaries: &[QueueSummary],
    stats: &RoomStats,
    rate: Option<Option<f64>>,
) {
    ISOLATE.with(|i| {
        let mut i = i.borrow_mut();
        let Some((_, rooms)) = i.rooms.as_mut() else {
            return;
        };
        if let Some(entry) = Rc::make_mut(rooms).get_mut(id.as_str()) {
            entry.summaries = merge_summaries(&entry.summaries, summaries.to_vec());
            entry.stats = stats.clone();
            entry.stats.waiting = entry.summaries.iter().map(|s| s.waiting).sum();
            if let Some(rate) = rate {
                entry.record.measured_rate = rate;
            }
            entry.stats.admit_rate_per_min = entry.record.measured_rate;
        }
    });
}

/// Marks the cached rooms out of date (after a visitor left): the next request reads them while
/// the others go on with this copy.
pub fn outdate_rooms() {
    ISOLATE.with(|i| {
        if let Some((at, _)) = i.borrow_mut().rooms.as_mut() {
            *at = 0;
        }
    });
}

/// A live session this isolate found less than a second ago.
pub fn cached_session(key: &(String, u32, u16, u64), now: u64) -> Option<u64> {
    ISOLATE.with(|i| {
        i.borrow_mut()
            .sessions
            .get(key)
            .filter(|&&(expires_at, checked_at)| expires_at > now && now < checked_at + CACHE_MS)
            .map(|&(expires_at, _)| expires_at)
    })
}

pub fn remember_session(key: (String, u32, u16, u64), expires_at: Option<u64>, now: u64) {
    ISOLATE.with(|i| {
        let mut i = i.borrow_mut();
        match expires_at {
            Some(expires_at) => {
                i.sessions.put(key, (expires_at, now));
            }
            None => {
                i.sessions.pop(&key);
            }
        }
    });
}

/// The `start_us` of the last shuffle this isolate saw every shard of the room apply (0: none).
pub fn shuffled(room: &RoomId, epoch: u32) -> u64 {
    ISOLATE.with(|i| {
        i.borrow()
            .shuffled
            .get(&(room.as_str().to_owned(), epoch))
            .copied()
            .unwrap_or(0)
    })
}

pub fn remember_shuffled(room: &RoomId, epoch: u32, start_us: u64) {
    ISOLATE.with(|i| {
        let mut i = i.borrow_mut();
        let done = i
            .shuffled
            .entry((room.as_str().to_owned(), epoch))
            .or_default();
        *done = (*done).max(start_us);
    });
}

/// An isolate tells a shard who it saw waiting this often, at most.
const SEEN_EVERY_MS: u64 = 2_000;
/// The most seen visitors an isolate keeps for one shard between two sends.
const MAX_SEEN_BATCH: usize = 100_000;

/// Notes a waiting visitor answered from a summary; returns the ticket seqs to send to the shard
/// now, when its last send is long enough ago.
pub fn note_seen(room: &RoomId, epoch: u32, shard: u16, seq: u64, now: u64) -> Option<Vec<u64>> {
    ISOLATE.with(|i| {
        let mut i = i.borrow_mut();
        let (sent_at, seqs) = i
            .seen
            .entry((room.as_str().to_owned(), epoch, shard))
            .or_default();
        if seqs.len() < MAX_SEEN_BATCH {
            seqs.push(seq);
        }
        if now < *sent_at + SEEN_EVERY_MS {
            return None;
        }
        *sent_at = now;
        Some(std::mem::take(seqs))
    })
}
