-- Notes that waiting visitors were seen: an instance answers their polls from its mirror and
-- sends who it saw about once a second.
-- ARGV: now (ms), the ticket seqs seen (8 bytes each, big-endian). Returns how many still wait.
local now = tonumber(ARGV[1])
local adm, n = num(redis.call('HGET', KEYS[3], 'adm')), tail()
local marked = 0
for i = 1, #ARGV[2] - 7, 8 do
  local seq = locate(struct.unpack('>I8', ARGV[2], i))
  if seq > adm and seq <= n and redis.call('GETBIT', KEYS[2], seq) == 0 then
    mark_seen(seq, now)
    marked = marked + 1
  end
end
return marked
