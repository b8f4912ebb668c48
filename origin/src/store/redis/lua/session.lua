-- ARGV: ticket seq, now (ms), session ttl (ms), renew (0/1). Returns {ADMITTED, expiry} for a live
-- session (pushed out by the ttl first when renewing), else {LEFT, 0} or {EXPIRED, 0}.
local seq, now = locate(tonumber(ARGV[1])), tonumber(ARGV[2])
if redis.call('GETBIT', KEYS[2], seq) == 1 then
  return {LEFT, 0}
end
local expires = tonumber(redis.call('ZSCORE', KEYS[6], seq))
if not expires then
  return {EXPIRED, 0}
end
if expires <= now then
  redis.call('ZREM', KEYS[6], seq)
  return {EXPIRED, 0}
end
if ARGV[4] == '1' then
  expires = now + tonumber(ARGV[3])
  redis.call('ZADD', KEYS[6], expires, seq)
end
return {ADMITTED, expires}
