-- KEYS[1] a room's hash (qg:room:<room>).
-- ARGV: the room's events as the caller read them (JSON), the events to store.
-- Stores the events only if the hash still holds what was read (compare and set), so an
-- instance deciding on a stale copy of the room, or two operators writing at once, never
-- overwrite an event unseen. A room without events holds '{}'. Returns {1, ''} when stored,
-- else {0, the events held now}.
local held = redis.call('HGET', KEYS[1], 'events') or '{}'
if held ~= ARGV[1] then
  return {0, held}
end
redis.call('HSET', KEYS[1], 'events', ARGV[2])
return {1, ''}
