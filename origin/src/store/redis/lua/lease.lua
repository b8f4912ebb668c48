-- KEYS[1] {qg:lease}:holder, KEYS[2] {qg:lease}:fence. ARGV: holder, ttl (ms).
-- Takes or renews the admission lease; returns the fence, or 0 while another holds it.
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]))
end
if current then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('INCR', KEYS[2])
