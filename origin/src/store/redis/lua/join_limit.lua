-- KEYS[1] one client's join-limit state in one room (qg:jl:<room>:<client>).
-- ARGV: the state the caller read ('' for none), the state to store, its TTL (ms).
-- The decision is made in Rust (queuegate::limit::decide) from the state read; this stores the
-- new state only if the key still holds what was read (compare and set), so two instances
-- deciding at once for one client are applied one after the other. Returns {1, ''} when
-- stored, else {0, the state the key holds now ('' for none)} for the caller to decide again.
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then
  return {0, current}
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return {1, ''}
