// Redis Lua for cluster-wide limits: one script call per delivery grant, one per release, so
// every node sees one concurrency count, one rate limiter (GCRA), one warm-up counter and one
// backoff state per (server, destination), and a check and its take are atomic. Written here
// because no library does this set of limits together (rate-limiter libraries do the rate
// alone, in one round trip of their own). Times are the nodes' clocks (ms), passed in.

/**
 * KEYS: pair hash, lease zset, warm-up counter.
 * ARGV: now, lease id, lease ttl, concurrency (0 none), rate count, rate period ms (0 none),
 * burst, connection interval ms (0 none), new connection (1/0), warm-up cap (-1 none).
 * Returns { granted 1/0, reason, wait ms, factor, suspended until, warm-up sent, in flight }.
 */
export const GRANT = `
local now = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 'tat', 'ctat', 'factor', 'susp')
local tat = tonumber(h[1]) or 0
local ctat = tonumber(h[2]) or 0
local factor = tonumber(h[3]) or 1
local susp = tonumber(h[4]) or 0
local fs = string.format('%.4f', factor)
if susp > now then return {0, 'suspended', tostring(susp - now), fs, tostring(susp), '0', '0'} end
local conc = tonumber(ARGV[4])
local inflight = 0
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  inflight = redis.call('ZCARD', KEYS[2])
  local eff = math.max(1, math.floor(conc * factor))
  if inflight >= eff then return {0, 'concurrency limit ' .. eff .. ' reached (cluster)', '250', fs, tostring(susp), '0', tostring(inflight)} end
end
local interval = 0
local rc = tonumber(ARGV[5])
if rc > 0 then interval = tonumber(ARGV[6]) / (rc * factor) end
local burst = tonumber(ARGV[7])
if interval > 0 then
  local ready = math.max(now, tat - (burst - 1) * interval)
  if ready > now then return {0, 'rate', string.format('%.0f', ready - now), fs, tostring(susp), '0', tostring(inflight)} end
end
local ci = tonumber(ARGV[8])
local fresh = ARGV[9] == '1' and ci > 0
if fresh and ctat > now then return {0, 'connection rate', string.format('%.0f', ctat - now), fs, tostring(susp), '0', tostring(inflight)} end
local cap = tonumber(ARGV[10])
local sent = 0
if cap >= 0 then
  sent = tonumber(redis.call('GET', KEYS[3]) or '0')
  if sent >= cap then return {0, 'warm-up', '0', fs, tostring(susp), tostring(sent), tostring(inflight)} end
end
if conc > 0 then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]) * 4)
end
-- A grant that comes a little after its slot (the nodes' timers, the round trip) keeps the
-- slot's time, up to a quarter interval (at most 10 ms): the rate is the rate, not rate minus
-- lag. Later than that the limiter was idle, and starts from now (no credit for idleness).
if interval > 0 then
  local base = tat
  if base < now - math.min(interval / 4, 10) then base = now end
  redis.call('HSET', KEYS[1], 'tat', string.format('%.3f', math.max(base, tat) + interval))
end
if fresh then redis.call('HSET', KEYS[1], 'ctat', string.format('%.3f', math.max(ctat, now) + ci)) end
if interval > 0 or fresh then redis.call('PEXPIRE', KEYS[1], 86400000) end
if cap >= 0 then
  sent = redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], 259200)
end
return {1, '', '0', fs, tostring(susp), tostring(sent), tostring(inflight + 1)}
`;

/**
 * KEYS: pair hash, lease zset, warm-up counter.
 * ARGV: lease id ('' none), give the warm-up slot back (1/0), the factor's change ('' none,
 * 'down' to a value, 'up' by an amount), its value, suspended until (0 none).
 * Changes, not values: a node's climb after a clean delivery must not undo another node's cut
 * or suspension made meanwhile (the lower factor and the later suspension win).
 */
export const RELEASE = `
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[2], ARGV[1]) end
if ARGV[2] == '1' then
  local v = tonumber(redis.call('GET', KEYS[3]) or '0')
  if v > 0 then redis.call('DECR', KEYS[3]) end
end
local changed = false
if ARGV[3] ~= '' then
  local cur = tonumber(redis.call('HGET', KEYS[1], 'factor') or '1') or 1
  local v = tonumber(ARGV[4])
  if ARGV[3] == 'down' then cur = math.min(cur, v) else cur = math.min(1, cur + v) end
  if cur < 0.001 then cur = 0.001 end
  redis.call('HSET', KEYS[1], 'factor', string.format('%.4f', cur))
  changed = true
end
local susp = tonumber(ARGV[5])
if susp > 0 and susp > (tonumber(redis.call('HGET', KEYS[1], 'susp') or '0') or 0) then
  redis.call('HSET', KEYS[1], 'susp', ARGV[5])
  changed = true
end
if changed then redis.call('PEXPIRE', KEYS[1], 86400000) end
return 1
`;

/**
 * After an outage: a warm-up counter is at least what the node last saw, plus what the node
 * sent on its own meanwhile. Several nodes doing this in turn add up their own sends, and a
 * Redis that came back empty gets the last known count back. KEYS: counter. ARGV: last seen, sent since.
 */
export const WARM_RESYNC = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local seen = tonumber(ARGV[1])
if cur < seen then cur = seen end
cur = cur + tonumber(ARGV[2])
redis.call('SET', KEYS[1], cur, 'EX', 259200)
return cur
`;
