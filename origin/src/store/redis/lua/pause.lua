-- Pauses or resumes the shard, and drops its entry credit when asked (a pause, a new
-- configuration). The flag lives in the shard itself, so that no admission racing with the
-- pause can open credit again. ARGV: paused (0/1), drop credit (0/1).
redis.call('HSET', KEYS[3], 'paused', ARGV[1])
if ARGV[1] == '1' or ARGV[2] == '1' then
  redis.call('HSET', KEYS[3], 'cr', 0)
end
return 1
