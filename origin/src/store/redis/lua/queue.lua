-- The whole queue of a shard, for a mirror that has not seen its last shuffle (which moved
-- stamps and leavers that a mirror reading only what was appended would miss). The moves hold
-- the draws' too: a mirror reads the move log on from its end.
-- Returns {adm, the last shuffle's start_us, stamps, the leaver bitmap, the moves, the length of
-- the left log}.
local meta = redis.call('HMGET', KEYS[3], 'adm', 'shv')
return {num(meta[1]), num(meta[2]), redis.call('GET', KEYS[1]) or '',
        redis.call('GET', KEYS[2]) or '', redis.call('GET', KEYS[9]) or '',
        redis.call('STRLEN', KEYS[8]), redis.call('STRLEN', KEYS[12])}
