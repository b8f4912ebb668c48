-- Ends sessions and claim windows that are over (and, for the scheduler, the places of waiting
-- visitors not seen for the room's abandon_after, and the admissions nobody came for in that
-- time), then reports the shard to a mirror.
-- ARGV: now (ms), claim window (ms), stamps byte offset, left log byte offset, max bytes,
--       fence (0: none; else the caller's lease fence, which it raises here first), abandon
--       after (ms; 0: never), move log byte offset
-- Returns {adm, lw, unc, cr, tot, active, stamp bytes, left log bytes, stamps, left seqs,
-- the start_us of the last shuffle (0: none), move log bytes, moves, places abandoned ever,
-- the 8 stamp bytes before the stamps offset, the 8 left log bytes before its offset,
-- admissions ended because nobody came for them ever, places their visitors left ever} or
-- the error FENCED. A mirror that has not seen
-- that shuffle reads the whole queue again (queue.lua).
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local fence = tonumber(ARGV[6])
if fence > 0 then
  if fence < num(redis.call('HGET', KEYS[3], 'fence')) then
    return redis.error_reply(FENCED .. ' a newer scheduler holds the lease')
  end
  redis.call('HSET', KEYS[3], 'fence', fence)
end
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
while true do
  local oldest = redis.call('ZRANGE', KEYS[4], 0, 0)[1]
  if not oldest then
    break
  end
  local first, at = string.match(oldest, '^(%d+):%d+:(%d+)$')
  if tonumber(at) + window > now then
    break
  end
  local unresolved = num(redis.call('HGET', KEYS[5], first))
  redis.call('HINCRBY', KEYS[3], 'unc', 0 - unresolved)
  redis.call('HDEL', KEYS[5], first)
  redis.call('ZREM', KEYS[4], oldest)
end
local after = tonumber(ARGV[7])
if fence > 0 and after > 0 then
  -- Places whose visitors stopped asking end before admission reaches them: of the first
  -- SWEEP_HEAD waiting, and of SWEEP_MORE beyond them from where the last look stopped (meta
  -- swc), round the line, as the core's Shard::unseen looks. A place with no seen time (0, or
  -- none: joined before it was kept) is left alone.
  local SWEEP_HEAD, SWEEP_MORE = 4096, 4096
  local adm, n = num(redis.call('HGET', KEYS[3], 'adm')), tail()
  local before = math.floor((now - after) / 1000)
  local head_end = math.min(adm + SWEEP_HEAD, n)
  local from = math.max(num(redis.call('HGET', KEYS[3], 'swc')), head_end + 1)
  if from > n then
    from = head_end + 1
  end
  local more_end = math.min(from + SWEEP_MORE - 1, n)
  redis.call('HSET', KEYS[3], 'swc', more_end + 1)
  local gone = 0
  local function look(first, last)
    if last < first then
      return
    end
    local seen = redis.call('GETRANGE', KEYS[10], 4 * (first - 1), 4 * last - 1)
    for seq = first, first + math.floor(#seen / 4) - 1 do
      local at = struct.unpack('>I4', seen, 4 * (seq - first) + 1)
      if at > 0 and at < before and redis.call('GETBIT', KEYS[2], seq) == 0 then
        redis.call('SETBIT', KEYS[2], seq, 1)
        redis.call('APPEND', KEYS[8], struct.pack('>I8', seq))
        gone = gone + 1
      end
    end
  end
  look(adm + 1, head_end)
  look(from, more_end)
  if gone > 0 then
    redis.call('HINCRBY', KEYS[3], 'lw', gone)
    redis.call('HINCRBY', KEYS[3], 'abd', gone)
  end
  -- Admissions nobody came for, as the core's Shard::no_shows finds them: each grant is looked
  -- at once, when it is `after` old (meta nsc: the last seq looked at); an admitted seq not
  -- resolved and not seen in the last half of that time ends as a leaver, and its admission is
  -- given back.
  local cursor = num(redis.call('HGET', KEYS[3], 'nsc'))
  local not_since = math.floor((now - math.floor(after / 2)) / 1000)
  local no_shows = 0
  for _, grant in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. cursor, '+inf')) do
    local first, last, at = string.match(grant, '^(%d+):(%d+):(%d+)$')
    first, last, at = tonumber(first), tonumber(last), tonumber(at)
    if at + after > now then
      break
    end
    if num(redis.call('HGET', KEYS[5], first)) > 0 then
      local from = math.max(first, cursor + 1)
      local seen = redis.call('GETRANGE', KEYS[10], 4 * (from - 1), 4 * last - 1)
      for seq = from, last do
        local at_seen = 0
        if 4 * (seq - from + 1) <= #seen then
          at_seen = struct.unpack('>I4', seen, 4 * (seq - from) + 1)
        end
        if at_seen < not_since and redis.call('GETBIT', KEYS[7], seq) == 0 then
          redis.call('SETBIT', KEYS[2], seq, 1)
          resolve(seq)
          no_shows = no_shows + 1
        end
      end
    end
    cursor = last
  end
  redis.call('HSET', KEYS[3], 'nsc', cursor)
  if no_shows > 0 then
    redis.call('HINCRBY', KEYS[3], 'nsh', no_shows)
  end
end
local meta = redis.call('HMGET', KEYS[3], 'adm', 'lw', 'unc', 'cr', 'tot', 'shv', 'abd', 'nsh',
                                 'lft')
local stamp_bytes = redis.call('STRLEN', KEYS[1])
local left_bytes = redis.call('STRLEN', KEYS[8])
local from, max = tonumber(ARGV[3]), tonumber(ARGV[5])
local stamps = ''
if from < stamp_bytes then
  stamps = redis.call('GETRANGE', KEYS[1], from, math.min(stamp_bytes, from + max) - 1)
end
local left_from = tonumber(ARGV[4])
local lefts = ''
if left_from < left_bytes then
  lefts = redis.call('GETRANGE', KEYS[8], left_from, math.min(left_bytes, left_from + max) - 1)
end
local move_bytes = redis.call('STRLEN', KEYS[12])
local move_from = tonumber(ARGV[8])
local moves = ''
if move_from < move_bytes then
  moves = redis.call('GETRANGE', KEYS[12], move_from, math.min(move_bytes, move_from + max) - 1)
end
-- What the mirror read last, as Redis holds it now: a failover to a replica that had not
-- received some writes can take the shard back to before them, and the mirror must see it.
local function before(key, offset, length)
  if offset >= 8 and offset <= length then
    return redis.call('GETRANGE', key, offset - 8, offset - 1)
  end
  return ''
end
return {num(meta[1]), num(meta[2]), num(meta[3]), num(meta[4]), num(meta[5]),
        redis.call('ZCARD', KEYS[6]), stamp_bytes, left_bytes, stamps, lefts, num(meta[6]),
        move_bytes, moves, num(meta[7]), before(KEYS[1], from, stamp_bytes),
        before(KEYS[8], left_from, left_bytes), num(meta[8]), num(meta[9])}
