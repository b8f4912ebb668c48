-- ARGV: now (ms), stamp (µs, the instance's clock), user id or '', session ttl (ms),
--       claim window (ms)
-- Returns {existing, seq, stamp, code, a, b}: code 0 waiting (a adm, b lw), 1 admitted
-- (a session expiry).
local now, ttl, window = tonumber(ARGV[1]), tonumber(ARGV[4]), tonumber(ARGV[5])
local user = ARGV[3]
if user ~= '' then
  local known = tonumber(redis.call('HGET', KEYS[9], user))
  if known then
    local state = visit(known, now, ttl, window)
    if state[1] == 0 or state[1] == 1 then
      return {1, known, stamp_of(known), state[1], state[2] or 0, state[3] or 0}
    end
  end
end
local last_seq = tail()
local stamp = tonumber(ARGV[2])
if last_seq > 0 then
  stamp = math.max(stamp, stamp_of(last_seq) + 1)
end
redis.call('APPEND', KEYS[1], struct.pack('>I8', stamp))
local seq = last_seq + 1
if user ~= '' then
  redis.call('HSET', KEYS[9], user, seq)
end
local meta = redis.call('HMGET', KEYS[3], 'adm', 'lw', 'cr', 'paused')
local adm, lw, credit = num(meta[1]), num(meta[2]), num(meta[3])
if credit > 0 and meta[4] ~= '1' and last_seq - adm - lw == 0 then
  -- Nobody waits in this shard and the scheduler opened entry credit: in at once.
  redis.call('HSET', KEYS[3], 'adm', seq, 'lw', 0, 'cr', credit - 1)
  redis.call('HINCRBY', KEYS[3], 'tot', 1)
  redis.call('SETBIT', KEYS[7], seq, 1)
  local expires = now + ttl
  redis.call('ZADD', KEYS[6], expires, seq)
  return {0, seq, stamp, 1, expires, 0}
end
return {0, seq, stamp, 0, adm, lw}
