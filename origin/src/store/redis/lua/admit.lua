-- Admits every waiting visitor through seq `upto` as one grant, and (for the scheduler) sets the
-- entry credit; an operator's admission leaves the credit as it is. While the shard is paused the
-- scheduler admits nobody and opens no credit; an operator's admission goes ahead.
-- In random mode (queuegate::draw) the caller drew who goes in and sends the swaps that bring
-- them to the head of the line first; a swap either of whose places no longer waits is passed
-- over.
-- ARGV: fence, upto, now (ms), credit, operator (0/1), the swaps (16 bytes each: two place
-- seqs, 8 bytes each, big-endian). Returns {admitted, adm} (waiting visitors admitted, how far
-- admission has come), or the error FENCED.
local fence, upto, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if fence < num(redis.call('HGET', KEYS[3], 'fence')) then
  return redis.error_reply(FENCED .. ' a newer scheduler holds the lease')
end
local operator = ARGV[5] == '1'
local credit = tonumber(ARGV[4])
if redis.call('HGET', KEYS[3], 'paused') == '1' then
  credit = 0
  if not operator then
    upto = 0
  end
end
redis.call('HSET', KEYS[3], 'fence', fence)
if not operator then
  redis.call('HSET', KEYS[3], 'cr', credit)
end
local adm = num(redis.call('HGET', KEYS[3], 'adm'))
upto = math.min(upto, tail())
if upto <= adm then
  return {0, adm}
end
local swaps, n = ARGV[6] or '', tail()
local function waits(seq)
  return seq > adm and seq <= n and redis.call('GETBIT', KEYS[2], seq) == 0
end
for i = 1, #swaps - 15, 16 do
  local a, b = struct.unpack('>I8I8', swaps, i)
  if waits(a) and waits(b) then
    local ta, tb = ticket_at(a), ticket_at(b)
    place_ticket(ta, b)
    place_ticket(tb, a)
    -- When each was last seen moves with the visitor.
    local sa = redis.call('GETRANGE', KEYS[10], 4 * (a - 1), 4 * a - 1)
    local sb = redis.call('GETRANGE', KEYS[10], 4 * (b - 1), 4 * b - 1)
    local zero = struct.pack('>I4', 0)
    redis.call('SETRANGE', KEYS[10], 4 * (a - 1), #sb == 4 and sb or zero)
    redis.call('SETRANGE', KEYS[10], 4 * (b - 1), #sa == 4 and sa or zero)
  end
end
-- Leavers in the run are skipped: count the left bits between adm + 1 and upto.
local left = redis.call('BITCOUNT', KEYS[2], adm + 1, upto, 'BIT')
local admitted = upto - adm - left
redis.call('HSET', KEYS[3], 'adm', upto)
redis.call('HINCRBY', KEYS[3], 'lw', 0 - left)
if admitted > 0 then
  redis.call('HINCRBY', KEYS[3], 'unc', admitted)
  redis.call('HINCRBY', KEYS[3], 'tot', admitted)
  redis.call('ZADD', KEYS[4], upto, (adm + 1) .. ':' .. upto .. ':' .. now)
  redis.call('HSET', KEYS[5], adm + 1, admitted)
end
return {admitted, upto}
