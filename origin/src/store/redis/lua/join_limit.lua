-- KEYS[1] one client's record in one room (qg:jl:<room>:<client>; queuegate::limit::record).
-- ARGV: the record the caller read ('' for none), the record to store, its TTL (ms).
-- The decision is made in Rust (queuegate::limit::record::apply) from the record read; this
-- stores the new record only if the key still holds what was read (compare and set), so two
-- instances deciding at once for one client are applied one after the other. Returns {1, ''}
-- when stored, else {0, the record the key holds now ('' for none)} for the caller to decide
-- again.
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then
  return {0, current}
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return {1, ''}
