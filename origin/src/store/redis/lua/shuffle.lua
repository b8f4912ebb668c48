-- Puts a shard's block of pre-queued seqs in its shuffled order (queuegate::shuffle), once per
-- event: the caller computed the order from the block it read; the script checks the block is
-- still that (its bounds, nothing admitted from it) before it moves anything.
-- ARGV: start_us (the event's, which marks the shuffle as applied), prequeue_us, first, last
--       (last = first - 1: no block), the new stamps of seqs first..last (8 bytes each), and
--       the ticket seq each of them now holds the place of (8 bytes each).
-- Returns how many places it reordered, 0 when this shuffle was applied already, or -1 when the
-- block is not what the caller read (it reads again).
local start_us, prequeue_us = tonumber(ARGV[1]), tonumber(ARGV[2])
local first, last = tonumber(ARGV[3]), tonumber(ARGV[4])
if num(redis.call('HGET', KEYS[3], 'shv')) >= start_us then
  return 0
end
local adm, n = num(redis.call('HGET', KEYS[3], 'adm')), tail()
local fits = adm < first and last <= n
  and (first - 1 <= adm or stamp_of(first - 1) < prequeue_us)
  and (last + 1 > n or stamp_of(last + 1) >= start_us)
  and (last < first or (stamp_of(first) >= prequeue_us and stamp_of(last) < start_us))
if not fits then
  return -1
end
if last >= first then
  local was, moved, seen, held = {}, {}, {}, {}
  local old_seen = redis.call('GETRANGE', KEYS[10], 4 * (first - 1), 4 * last - 1)
  for i = 1, last - first + 1 do
    local ticket = struct.unpack('>I8', ARGV[6], 8 * (i - 1) + 1)
    was[i] = redis.call('GETBIT', KEYS[2], ticket)
    moved[ticket - first + 1] = struct.pack('>i4', first + i - 1 - ticket)
    held[i] = struct.pack('>i4', ticket - (first + i - 1))
    local at = 4 * (ticket - first) + 1
    seen[i] = string.sub(old_seen, at, at + 3)
    if #seen[i] < 4 then
      seen[i] = struct.pack('>I4', 0)
    end
  end
  redis.call('SETRANGE', KEYS[1], 8 * (first - 1), ARGV[5])
  for i = 1, last - first + 1 do
    redis.call('SETBIT', KEYS[2], first + i - 1, was[i])
  end
  redis.call('SETRANGE', KEYS[9], 4 * (first - 1), table.concat(moved))
  redis.call('SETRANGE', KEYS[11], 4 * (first - 1), table.concat(held))
  -- When each was last seen moves with the place.
  redis.call('SETRANGE', KEYS[10], 4 * (first - 1), table.concat(seen))
end
redis.call('HSET', KEYS[3], 'shv', start_us)
return last - first + 1
