-- ARGV: seq, now (ms), session ttl (ms), claim window (ms). Returns visit()'s answer:
-- {status, session expiry}.
return visit(tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
