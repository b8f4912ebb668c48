-- Shared by every shard script (prepended to each). All keys of a script share one hash tag,
-- {qg:<room>:<epoch>:<shard>}, so no script ever crosses a cluster slot.
--
-- Before this file come the lines that name the status codes (WAITING, ADMITTED, LEFT,
-- EXPIRED) and the error code FENCED: the Rust side defines them (replies.rs, connection.rs)
-- and reads the replies by them.
--
-- KEYS[1] st  the join stamps: 8 bytes (big-endian microseconds) per seq, seq n at byte 8(n-1)
-- KEYS[2] lf  bit n set: seq n left
-- KEYS[3] m   meta hash: adm (admitted through seq), lw (leavers above adm), unc (admitted,
--             not arrived), cr (entry credit), tot (admissions ever), fence, paused,
--             abd (places abandoned ever), nsh (admissions nobody came for, ever), lft (places
--             their visitors left, ever), swc and
--             nsc (where the looks for unseen places and for those admissions go on from)
-- KEYS[4] g   open grants: zset scored by last seq, member "first:last:admitted_at"
-- KEYS[5] gu  unresolved (not arrived, not left) count per grant: hash first -> n
-- KEYS[6] se  sessions: zset seq scored by expiry (ms)
-- KEYS[7] rs  bit n set: admitted seq n arrived (or left) and cannot claim again
-- KEYS[8] ll  left log: 8 bytes per seq that left while waiting, for mirrors to catch up
-- KEYS[9] mv  after a shuffle of a pre-queue or a random mode's draw: 4 bytes (big-endian,
--             signed) per ticket seq from seq 1, how far its place moved (0, or beyond the
--             string: not moved)
-- KEYS[10] sn when each waiting place was last seen: 4 bytes (big-endian Unix seconds) per seq
--             from seq 1 (0, or beyond the string: not known)
-- KEYS[11] hd the inverse of mv: 4 bytes per place seq from seq 1, how far from it is the
--             ticket seq whose place it holds
-- KEYS[12] ml the draws' move log, for mirrors: 16 bytes per move (ticket seq, the place seq it
--             holds now; 8 bytes each, big-endian)
-- KEYS[13] u  this user id's bucket: hash user id -> ticket seq (a same-slot dummy without a
--             user)
--
-- A ticket's seq names a place; a shuffle and a draw move places, so every script that takes a
-- seq from a ticket first asks locate() which seq holds that place now.

local function num(v)
  return tonumber(v) or 0
end

local function tail()
  return redis.call('STRLEN', KEYS[1]) / 8
end

local function locate(seq)
  local at = 4 * (seq - 1)
  if seq < 1 or at >= redis.call('STRLEN', KEYS[9]) then
    return seq
  end
  return seq + struct.unpack('>i4', redis.call('GETRANGE', KEYS[9], at, at + 3))
end

-- The ticket seq whose place seq holds.
local function ticket_at(seq)
  local at = 4 * (seq - 1)
  if at >= redis.call('STRLEN', KEYS[11]) then
    return seq
  end
  return seq + struct.unpack('>i4', redis.call('GETRANGE', KEYS[11], at, at + 3))
end

-- Puts ticket at place seq, and logs it for mirrors.
local function place_ticket(ticket, seq)
  redis.call('SETRANGE', KEYS[9], 4 * (ticket - 1), struct.pack('>i4', seq - ticket))
  redis.call('SETRANGE', KEYS[11], 4 * (seq - 1), struct.pack('>i4', ticket - seq))
  redis.call('APPEND', KEYS[12], struct.pack('>I8I8', ticket, seq))
end

local function mark_seen(seq, now)
  redis.call('SETRANGE', KEYS[10], 4 * (seq - 1), struct.pack('>I4', math.floor(now / 1000)))
end

local function stamp_of(seq)
  return struct.unpack('>I8', redis.call('GETRANGE', KEYS[1], 8 * (seq - 1), 8 * seq - 1))
end

-- The open grant that admitted seq, as first, admitted_at; nil if none.
local function grant_of(seq)
  local found = redis.call('ZRANGEBYSCORE', KEYS[4], seq, '+inf', 'LIMIT', 0, 1)[1]
  if not found then
    return nil
  end
  local first, at = string.match(found, '^(%d+):%d+:(%d+)$')
  first = tonumber(first)
  if first > seq then
    return nil
  end
  return first, tonumber(at)
end

-- Marks an admitted seq as arrived or left; true if it was still unresolved in an open grant.
local function resolve(seq)
  if redis.call('GETBIT', KEYS[7], seq) == 1 then
    return false
  end
  redis.call('SETBIT', KEYS[7], seq, 1)
  local first = grant_of(seq)
  if not first then
    return false
  end
  redis.call('HINCRBY', KEYS[5], first, -1)
  redis.call('HINCRBY', KEYS[3], 'unc', -1)
  return true
end

-- Where the ticket seq stands: {status, session expiry (0 unless ADMITTED)}. An admitted
-- visitor inside the claim window arrives now.
local function visit(ticket_seq, now, ttl, window)
  local seq = locate(ticket_seq)
  if seq < 1 or seq > tail() then
    return {EXPIRED, 0}
  end
  if redis.call('GETBIT', KEYS[2], seq) == 1 then
    return {LEFT, 0}
  end
  if seq > num(redis.call('HGET', KEYS[3], 'adm')) then
    mark_seen(seq, now)
    return {WAITING, 0}
  end
  local expires = tonumber(redis.call('ZSCORE', KEYS[6], seq))
  if expires then
    if expires > now then
      return {ADMITTED, expires}
    end
    redis.call('ZREM', KEYS[6], seq)
    return {EXPIRED, 0}
  end
  if redis.call('GETBIT', KEYS[7], seq) == 1 then
    return {EXPIRED, 0}
  end
  local first, at = grant_of(seq)
  if not first or at + window <= now then
    return {EXPIRED, 0}
  end
  resolve(seq)
  expires = now + ttl
  redis.call('ZADD', KEYS[6], expires, seq)
  return {ADMITTED, expires}
end
