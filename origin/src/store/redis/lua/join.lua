-- Joins a batch of visitors to the shard, in arrival order: the joins that reach an instance
-- together share one script call.
-- KEYS[13] and after: the user buckets the batch needs (KEYS[13] is a same-slot dummy).
-- A batch that reaches Redis after its deadline (it waited at a paused instance, or in a
-- reconnecting connection, after its callers were told it failed) changes nothing.
-- ARGV: now (ms), session ttl (ms), claim window (ms), deadline (Unix ms, by Redis's clock),
--       then four values per visitor:
--       stamp (µs, the instance's clock), user id or '', index in KEYS of its user bucket, and
--       1 when it may not enter at once (the room is in a pre-queue), else 0.
-- Returns, per visitor in order: {existing (1: the user id's live place), seq, stamp, status
-- (WAITING or ADMITTED), session expiry (0 unless ADMITTED)}.
local now, ttl, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
if tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) > tonumber(ARGV[4]) then
  return redis.error_reply('LATE the joins reached Redis after their deadline')
end
local out = {}
local function emit(existing, seq, stamp, status, expires)
  out[#out + 1] = {existing, seq, stamp, status, expires}
end
local last = redis.call('GETRANGE', KEYS[1], -8, -1)
local last_stamp = 0
if last ~= '' then
  last_stamp = struct.unpack('>I8', last)
end
local meta = redis.call('HMGET', KEYS[3], 'adm', 'lw', 'cr', 'paused')
local adm, lw, credit, paused = num(meta[1]), num(meta[2]), num(meta[3]), meta[4] == '1'
for i = 5, #ARGV, 4 do
  local user, bucket, hold = ARGV[i + 1], KEYS[tonumber(ARGV[i + 2])], ARGV[i + 3] == '1'
  local joined = false
  if user ~= '' then
    local known = tonumber(redis.call('HGET', bucket, user))
    if known then
      local state = visit(known, now, ttl, window)
      if state[1] == WAITING or state[1] == ADMITTED then
        emit(1, known, stamp_of(locate(known)), state[1], state[2])
        joined = true
      end
    end
  end
  if not joined then
    local stamp = math.max(tonumber(ARGV[i]), last_stamp + 1)
    last_stamp = stamp
    local seq = redis.call('APPEND', KEYS[1], struct.pack('>I8', stamp)) / 8
    mark_seen(seq, now)
    if user ~= '' then
      redis.call('HSET', bucket, user, seq)
    end
    if credit > 0 and not paused and not hold and seq - 1 - adm - lw == 0 then
      -- Nobody waits in this shard and the scheduler opened entry credit: in at once.
      adm, lw, credit = seq, 0, credit - 1
      redis.call('HSET', KEYS[3], 'adm', adm, 'lw', lw, 'cr', credit)
      redis.call('HINCRBY', KEYS[3], 'tot', 1)
      redis.call('SETBIT', KEYS[7], seq, 1)
      local expires = now + ttl
      redis.call('ZADD', KEYS[6], expires, seq)
      emit(0, seq, stamp, ADMITTED, expires)
    else
      emit(0, seq, stamp, WAITING, 0)
    end
  end
end
return out
