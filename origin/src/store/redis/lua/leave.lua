-- ARGV: ticket seq, now (ms). Returns {known, ended}: known 0 when the shard never gave out seq;
-- ended 1 when a place in the queue, an unclaimed admission or a live session ended.
local seq, now = locate(tonumber(ARGV[1])), tonumber(ARGV[2])
if seq < 1 or seq > tail() then
  return {0, 0}
end
if redis.call('SETBIT', KEYS[2], seq, 1) == 1 then
  return {1, 0}
end
local adm = num(redis.call('HGET', KEYS[3], 'adm'))
if seq > adm then
  redis.call('HINCRBY', KEYS[3], 'lw', 1)
  redis.call('HINCRBY', KEYS[3], 'lft', 1)
  redis.call('APPEND', KEYS[8], struct.pack('>I8', seq))
  return {1, 1}
end
local expires = tonumber(redis.call('ZSCORE', KEYS[6], seq))
if expires then
  redis.call('ZREM', KEYS[6], seq)
  return {1, expires > now and 1 or 0}
end
return {1, resolve(seq) and 1 or 0}
