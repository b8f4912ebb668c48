//! What the scripts answer, decoded into named fields. A reply of the wrong shape is an error
//! (the store answers `Unavailable`), never a silently wrong number.
//!
//! The status codes the shard scripts answer with are defined once, in [`Status`]: the scripts
//! get them as Lua constants from [`Status::lua_constants`], so the two sides cannot drift.

use queuegate::shard::Standing;
use redis::{FromRedisValue, ParsingError, Value};

use crate::store::Fence;

/// Where a visitor stands, as a shard script says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Waiting,
    Admitted,
    Left,
    Expired,
}

impl Status {
    const ALL: [Status; 4] = [
        Status::Waiting,
        Status::Admitted,
        Status::Left,
        Status::Expired,
    ];

    fn code(self) -> i64 {
        match self {
            Status::Waiting => 0,
            Status::Admitted => 1,
            Status::Left => 2,
            Status::Expired => 3,
        }
    }

    fn lua_name(self) -> &'static str {
        match self {
            Status::Waiting => "WAITING",
            Status::Admitted => "ADMITTED",
            Status::Left => "LEFT",
            Status::Expired => "EXPIRED",
        }
    }

    fn from_code(code: i64) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The Lua line that names the codes, which every shard script starts with.
    pub fn lua_constants() -> String {
        let names: Vec<&str> = Status::ALL.iter().map(|s| s.lua_name()).collect();
        let codes: Vec<String> = Status::ALL.iter().map(|s| s.code().to_string()).collect();
        format!("local {} = {}\n", names.join(", "), codes.join(", "))
    }

    /// The standing a status and a session expiry (meaningful only when admitted) stand for.
    fn standing(self, expires_at: u64) -> Standing {
        match self {
            Status::Waiting => Standing::Waiting,
            Status::Admitted => Standing::Admitted {
                session_expires_at: expires_at,
            },
            Status::Left => Standing::Left,
            Status::Expired => Standing::Expired,
        }
    }
}

impl FromRedisValue for Status {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let code = i64::from_redis_value(v)?;
        Status::from_code(code).ok_or_else(|| format!("no such status code: {code}").into())
    }
}

/// A script's array reply, read field by field.
struct Fields {
    what: &'static str,
    items: std::vec::IntoIter<Value>,
}

impl Fields {
    /// The `len` fields of a `what` reply.
    fn of(v: Value, what: &'static str, len: usize) -> Result<Fields, ParsingError> {
        match v {
            Value::Array(items) if items.len() == len => Ok(Fields {
                what,
                items: items.into_iter(),
            }),
            other => Err(format!("a {what} reply of {len} fields, not {other:?}").into()),
        }
    }

    fn next<T: FromRedisValue>(&mut self) -> Result<T, ParsingError> {
        let value = self.items.next().expect("the length was checked");
        T::from_redis_value(value).map_err(|err| format!("in a {} reply: {err}", self.what).into())
    }

    /// A status and the session expiry that follows it.
    fn standing(&mut self) -> Result<Standing, ParsingError> {
        let status: Status = self.next()?;
        Ok(status.standing(self.next()?))
    }
}

/// The sync script's report of a shard to a mirror: its counters, and the stamps and left-log
/// bytes from where the mirror asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReply {
    /// Every seq up to this one has been admitted (or left while waiting).
    pub admitted_seq: u64,
    /// Leavers above `admitted_seq`.
    pub left_waiting: u64,
    pub unclaimed: u64,
    pub credit: u64,
    pub admitted_total: u64,
    /// Live sessions.
    pub active: u64,
    /// The length of the stamps and of the left log: what a mirror has yet to read.
    pub stamp_bytes: u64,
    pub left_bytes: u64,
    pub stamps: Vec<u8>,
    pub lefts: Vec<u8>,
    /// The `start_us` of the shard's last shuffle (0: none).
    pub shuffled_us: u64,
    /// The length of the draws' move log, and its bytes from where the mirror asked (16 a move:
    /// a ticket seq and the place seq it holds now, big-endian).
    pub move_bytes: u64,
    pub moves: Vec<u8>,
    /// Places ended because their visitors stopped asking, ever.
    pub abandoned_total: u64,
    /// The 8 bytes of the stamps and of the left log just before where the mirror asked to read
    /// from (empty at the start, or past the end): what the mirror read last, as Redis has it.
    pub stamp_before: Vec<u8>,
    pub left_before: Vec<u8>,
    /// Admissions ended because their visitors never came for them, ever.
    pub no_shows_total: u64,
    /// Places in the queue their visitors left themselves, ever.
    pub left_total: u64,
}

impl FromRedisValue for SyncReply {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let mut f = Fields::of(v, "sync", 18)?;
        Ok(SyncReply {
            admitted_seq: f.next()?,
            left_waiting: f.next()?,
            unclaimed: f.next()?,
            credit: f.next()?,
            admitted_total: f.next()?,
            active: f.next()?,
            stamp_bytes: f.next()?,
            left_bytes: f.next()?,
            stamps: f.next()?,
            lefts: f.next()?,
            shuffled_us: f.next()?,
            move_bytes: f.next()?,
            moves: f.next()?,
            abandoned_total: f.next()?,
            stamp_before: f.next()?,
            left_before: f.next()?,
            no_shows_total: f.next()?,
            left_total: f.next()?,
        })
    }
}

/// A shard's whole queue, as a mirror reads it again after a shuffle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueReply {
    pub admitted_seq: u64,
    pub shuffled_us: u64,
    /// 8 bytes a seq, big-endian.
    pub stamps: Vec<u8>,
    /// Redis's bitmap: bit `seq` (most significant first in each byte) set for a leaver.
    pub left_bitmap: Vec<u8>,
    /// 4 bytes (big-endian `i32`) a ticket seq from seq 1.
    pub moves: Vec<u8>,
    pub left_log_bytes: u64,
    pub move_log_bytes: u64,
}

impl FromRedisValue for QueueReply {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let mut f = Fields::of(v, "queue", 7)?;
        Ok(QueueReply {
            admitted_seq: f.next()?,
            shuffled_us: f.next()?,
            stamps: f.next()?,
            left_bitmap: f.next()?,
            moves: f.next()?,
            left_log_bytes: f.next()?,
            move_log_bytes: f.next()?,
        })
    }
}

impl QueueReply {
    /// The queue it describes; `None` when its parts do not fit together.
    pub fn queue(&self) -> Option<queuegate::queue::ShardQueue> {
        let stamps: Vec<u64> = self
            .stamps
            .chunks_exact(8)
            .map(|b| u64::from_be_bytes(b.try_into().expect("chunks of 8")))
            .collect();
        let mut words = vec![0u64; stamps.len().div_ceil(64)];
        for (byte_index, &byte) in self.left_bitmap.iter().enumerate() {
            for bit in 0..8 {
                let seq = byte_index as u64 * 8 + bit;
                if byte & (0x80 >> bit) != 0 && seq >= 1 {
                    let i = usize::try_from((seq - 1) / 64).ok()?;
                    *words.get_mut(i)? |= 1 << ((seq - 1) % 64);
                }
            }
        }
        let moves = self
            .moves
            .chunks_exact(4)
            .map(|b| i32::from_be_bytes(b.try_into().expect("chunks of 4")))
            .collect();
        queuegate::queue::ShardQueue::from_parts(stamps, words, self.admitted_seq)
            .map(|q| q.with_moves(moves, self.shuffled_us))
    }
}

/// What the join script did for one visitor of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinReply {
    /// The visitor's user id already held this place.
    pub existing: bool,
    pub seq: u64,
    pub stamp: u64,
    /// Waiting, or admitted (entered at once, or an existing place's session).
    pub standing: Standing,
}

impl FromRedisValue for JoinReply {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let mut f = Fields::of(v, "join", 5)?;
        Ok(JoinReply {
            existing: f.next()?,
            seq: f.next()?,
            stamp: f.next()?,
            standing: f.standing()?,
        })
    }
}

/// Where a visitor stands after a visit (an admitted visitor inside the claim window arrived).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisitReply {
    pub standing: Standing,
}

impl FromRedisValue for VisitReply {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let mut f = Fields::of(v, "visit", 2)?;
        Ok(VisitReply {
            standing: f.standing()?,
        })
    }
}

/// What a leave did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaveReply {
    /// The shard gave out that seq.
    pub known: bool,
    /// A place in the queue, an unclaimed admission or a live session ended.
    pub ended: bool,
}

impl LeaveReply {
    /// As the store answers a leave: `None` for an unknown place.
    pub fn outcome(self) -> Option<bool> {
        self.known.then_some(self.ended)
    }
}

impl FromRedisValue for LeaveReply {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let mut f = Fields::of(v, "leave", 2)?;
        Ok(LeaveReply {
            known: f.next()?,
            ended: f.next()?,
        })
    }
}

/// A session check: the expiry of a live session (after the renewal, if asked), or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionReply {
    pub expires_at: Option<u64>,
}

impl FromRedisValue for SessionReply {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let mut f = Fields::of(v, "session", 2)?;
        let expires_at = match f.standing()? {
            Standing::Admitted { session_expires_at } => Some(session_expires_at),
            _ => None,
        };
        Ok(SessionReply { expires_at })
    }
}

/// What an admission batch did on a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmitReply {
    /// Waiting visitors admitted (leavers in the run are not counted).
    pub admitted: u64,
    /// How far admission has come now.
    pub admitted_seq: u64,
}

impl FromRedisValue for AdmitReply {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let mut f = Fields::of(v, "admit", 2)?;
        Ok(AdmitReply {
            admitted: f.next()?,
            admitted_seq: f.next()?,
        })
    }
}

/// The lease script's answer: the fence of the lease taken or renewed, or none while another
/// instance holds it (fences count from 1, so the script says so with 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseReply {
    pub fence: Option<Fence>,
}

impl FromRedisValue for LeaseReply {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let fence = u64::from_redis_value(v)?;
        Ok(LeaseReply {
            fence: (fence > 0).then_some(Fence(fence)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(values: &[i64]) -> Value {
        Value::Array(values.iter().map(|&n| Value::Int(n)).collect())
    }

    #[test]
    fn the_lua_constants_name_every_code() {
        assert_eq!(
            Status::lua_constants(),
            "local WAITING, ADMITTED, LEFT, EXPIRED = 0, 1, 2, 3\n"
        );
        for status in Status::ALL {
            assert_eq!(Status::from_code(status.code()), Some(status));
        }
        assert_eq!(Status::from_code(4), None);
    }

    #[test]
    fn replies_decode_into_their_fields() {
        let join = JoinReply::from_redis_value(ints(&[0, 7, 1_000_123, 1, 61_000])).unwrap();
        assert_eq!(
            join,
            JoinReply {
                existing: false,
                seq: 7,
                stamp: 1_000_123,
                standing: Standing::Admitted {
                    session_expires_at: 61_000
                },
            }
        );
        let waiting = VisitReply::from_redis_value(ints(&[0, 0])).unwrap();
        assert_eq!(waiting.standing, Standing::Waiting);
        let left = LeaveReply::from_redis_value(ints(&[1, 0])).unwrap();
        assert_eq!(left.outcome(), Some(false));
        let unknown = LeaveReply::from_redis_value(ints(&[0, 0])).unwrap();
        assert_eq!(unknown.outcome(), None);
        let expired = SessionReply::from_redis_value(ints(&[3, 0])).unwrap();
        assert_eq!(expired.expires_at, None);
        let live = SessionReply::from_redis_value(ints(&[1, 90])).unwrap();
        assert_eq!(live.expires_at, Some(90));
        let mut sync = match ints(&[5, 1, 2, 3, 9, 4, 16, 8]) {
            Value::Array(items) => items,
            _ => unreachable!(),
        };
        sync.push(Value::BulkString(vec![0; 8]));
        sync.push(Value::BulkString(Vec::new()));
        sync.push(Value::Int(7));
        sync.push(Value::Int(16));
        sync.push(Value::BulkString(
            [3u64, 1].iter().flat_map(|s| s.to_be_bytes()).collect(),
        ));
        sync.push(Value::Int(2));
        sync.push(Value::BulkString(9u64.to_be_bytes().to_vec()));
        sync.push(Value::BulkString(Vec::new()));
        sync.push(Value::Int(3));
        sync.push(Value::Int(6));
        let sync = SyncReply::from_redis_value(Value::Array(sync)).unwrap();
        assert_eq!(
            (sync.admitted_seq, sync.left_waiting, sync.active),
            (5, 1, 4)
        );
        assert_eq!(sync.shuffled_us, 7);
        assert_eq!((sync.move_bytes, sync.moves.len()), (16, 16));
        assert_eq!(
            (sync.abandoned_total, sync.no_shows_total, sync.left_total),
            (2, 3, 6)
        );
        assert_eq!((sync.stamp_bytes, sync.stamps.len()), (16, 8));
        assert_eq!(
            (sync.stamp_before, sync.left_before),
            (9u64.to_be_bytes().to_vec(), vec![])
        );
        assert_eq!(
            LeaseReply::from_redis_value(Value::Int(0)).unwrap().fence,
            None
        );
        // A shuffled queue read back whole: seq 2 left (bit 2 of Redis's bitmap), seq 1 moved
        // one place on.
        let queue = QueueReply {
            admitted_seq: 0,
            shuffled_us: 9,
            stamps: [1u64, 2].iter().flat_map(|s| s.to_be_bytes()).collect(),
            left_bitmap: vec![0b0010_0000],
            moves: [1i32, -1].iter().flat_map(|d| d.to_be_bytes()).collect(),
            left_log_bytes: 8,
            move_log_bytes: 0,
        }
        .queue()
        .unwrap();
        assert!(queue.is_left(2) && !queue.is_left(1));
        assert_eq!((queue.locate(1), queue.locate(2)), (2, 1));
        assert_eq!(queue.shuffled_us(), 9);
        assert_eq!(
            LeaseReply::from_redis_value(Value::Int(3)).unwrap().fence,
            Some(Fence(3))
        );
    }

    #[test]
    fn a_reply_of_another_shape_is_an_error() {
        assert!(JoinReply::from_redis_value(ints(&[0, 7, 1, 0, 0, 0])).is_err());
        assert!(VisitReply::from_redis_value(ints(&[9, 0])).is_err());
        assert!(AdmitReply::from_redis_value(Value::Int(1)).is_err());
        let err = SyncReply::from_redis_value(ints(&[1, 2])).unwrap_err();
        assert!(err.to_string().contains("sync"), "{err}");
    }
}
