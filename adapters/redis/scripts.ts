// The Lua scripts that make every write of the Redis store atomic, and the one-round-trip lookup.
//
// A record lives in one hash, `{prefix}k:<id>`, with the fields
//   r  = the record as JSON (everything but lastUsedAt, lastUsedIp and the quota counters), v = version,
//   a  = '1' | '0' (active), u = lastUsedAt in ms (absent = never), ui = lastUsedIp (absent = none),
//   m  = its member in the list indexes,
//   q  = remaining uses (absent = no quota), qt = refilledAt in ms (absent = none),
//   dk = the key of its digest index entry, pk = the one of its previous digest (absent = none),
//   ok = the key of its owner index (absent = no owner).
// `{prefix}d:<digest>` holds the record's key name; `{prefix}all` and `{prefix}o:<owner>` are
// sorted sets of members `<createdAt ms, 15 digits>:<id>` at score 0, read in lexical order.
// Index entries are found through the fields above, so the write scripts never build key names:
// each comes from the caller or from the record itself. Only LIST builds record key names, from
// the ids in its index and the prefix it is given.

import { LuaScript } from './client.js';

/**
 * KEYS: record, all, digest. ARGV: json, version, active, prevDigestKey|'', ownerKey|'', member,
 * lastUsed|'', remaining|'', refilledAt|'', lastUsedIp|''.
 * Returns 1, or -1 when the id is taken, -2 when a digest is.
 */
export const INSERT = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
if redis.call('EXISTS', KEYS[3]) == 1 then return -2 end
if ARGV[4] ~= '' and redis.call('EXISTS', ARGV[4]) == 1 then return -2 end
redis.call('HSET', KEYS[1], 'r', ARGV[1], 'v', ARGV[2], 'a', ARGV[3], 'dk', KEYS[3], 'm', ARGV[6])
redis.call('SET', KEYS[3], KEYS[1])
if ARGV[4] ~= '' then
  redis.call('SET', ARGV[4], KEYS[1])
  redis.call('HSET', KEYS[1], 'pk', ARGV[4])
end
if ARGV[5] ~= '' then
  redis.call('ZADD', ARGV[5], 0, ARGV[6])
  redis.call('HSET', KEYS[1], 'ok', ARGV[5])
end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'u', ARGV[7]) end
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'q', ARGV[8]) end
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'qt', ARGV[9]) end
if ARGV[10] ~= '' then redis.call('HSET', KEYS[1], 'ui', ARGV[10]) end
redis.call('ZADD', KEYS[2], 0, ARGV[6])
return 1
`);

/**
 * Compare-and-set. KEYS: record, all, digest. ARGV: expectedVersion, json, version, active,
 * prevDigestKey|'', ownerKey|'', member, lastUsed|'', remaining|'', refilledAt|'', lastUsedIp|'',
 * counters '1'|'0'.
 * Returns 1 when written, 0 when the record is gone or at another version, -2 when a new digest
 * belongs to another record. Digest and owner index entries follow the record; lastUsedAt and
 * lastUsedIp are written only when the given time is later than the stored one (else the stored
 * pair stays); the quota counters are written only with counters '1' (absent for ''), else they
 * stay as SPEND left them.
 */
export const UPDATE = new LuaScript(`
local cur = redis.call('HMGET', KEYS[1], 'v', 'dk', 'pk', 'ok', 'm', 'u')
if not cur[1] or cur[1] ~= ARGV[1] then return 0 end
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= KEYS[1] then return -2 end
if ARGV[5] ~= '' then
  holder = redis.call('GET', ARGV[5])
  if holder and holder ~= KEYS[1] then return -2 end
end
for i = 2, 3 do
  local old = cur[i]
  if old and old ~= KEYS[3] and old ~= ARGV[5] and redis.call('GET', old) == KEYS[1] then
    redis.call('DEL', old)
  end
end
redis.call('SET', KEYS[3], KEYS[1])
if ARGV[5] ~= '' then
  redis.call('SET', ARGV[5], KEYS[1])
  redis.call('HSET', KEYS[1], 'pk', ARGV[5])
else
  redis.call('HDEL', KEYS[1], 'pk')
end
if cur[5] ~= ARGV[7] then
  redis.call('ZREM', KEYS[2], cur[5])
  redis.call('ZADD', KEYS[2], 0, ARGV[7])
end
if cur[4] and (cur[4] ~= ARGV[6] or cur[5] ~= ARGV[7]) then redis.call('ZREM', cur[4], cur[5]) end
if ARGV[6] ~= '' then
  redis.call('ZADD', ARGV[6], 0, ARGV[7])
  redis.call('HSET', KEYS[1], 'ok', ARGV[6])
else
  redis.call('HDEL', KEYS[1], 'ok')
end
local used = ARGV[8]
if cur[6] and (used == '' or tonumber(cur[6]) >= tonumber(used)) then used = '' end
if used ~= '' then
  redis.call('HSET', KEYS[1], 'u', used)
  if ARGV[11] ~= '' then redis.call('HSET', KEYS[1], 'ui', ARGV[11]) else redis.call('HDEL', KEYS[1], 'ui') end
end
if ARGV[12] == '1' then
  if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'q', ARGV[9]) else redis.call('HDEL', KEYS[1], 'q') end
  if ARGV[10] ~= '' then redis.call('HSET', KEYS[1], 'qt', ARGV[10]) else redis.call('HDEL', KEYS[1], 'qt') end
end
redis.call('HSET', KEYS[1], 'r', ARGV[2], 'v', ARGV[3], 'a', ARGV[4], 'dk', KEYS[3], 'm', ARGV[7])
return 1
`);

/** KEYS: record, all. Removes the record and every index entry of it. Returns 1 if it existed. */
export const DELETE = new LuaScript(`
local cur = redis.call('HMGET', KEYS[1], 'v', 'dk', 'pk', 'ok', 'm')
if not cur[1] then return 0 end
for i = 2, 3 do
  local d = cur[i]
  if d and redis.call('GET', d) == KEYS[1] then redis.call('DEL', d) end
end
if cur[5] then
  redis.call('ZREM', KEYS[2], cur[5])
  if cur[4] then redis.call('ZREM', cur[4], cur[5]) end
end
redis.call('DEL', KEYS[1])
return 1
`);

/**
 * KEYS: digest. The verify path in one round trip: [json, lastUsed, remaining, refilledAt,
 * lastUsedIp] of the record, or nil.
 */
export const FIND_BY_DIGEST = new LuaScript(`
local k = redis.call('GET', KEYS[1])
if not k then return false end
return redis.call('HMGET', k, 'r', 'u', 'q', 'qt', 'ui')
`);

/**
 * Spends uses of a key's quota: exactly `spendQuota()` (src/quota.ts) on the stored counters.
 * KEYS: record. ARGV: cost, now (ms), refill amount|'', refill intervalMs|'' ('' = no refill).
 * A refill is due when at least one whole interval has passed since refilledAt: remaining is
 * topped up to amount (never lowered) and refilledAt moves on by whole intervals, so refills stay
 * on the grid of the time the quota was set. Then cost is spent if that many remain. A due refill
 * is written even when the spend is refused. Lua numbers are doubles, as JavaScript's are: every
 * value here is a whole number below 2^53 (ms up to year 275760, counts up to 10^9), so each step
 * is exact, and redis.call writes numbers with 17 significant digits (never tostring's 14).
 * Returns [spent 1|0, remaining, refilledAt|nil], or nil when the record is gone or has no quota.
 */
export const SPEND = new LuaScript(`
local cur = redis.call('HMGET', KEYS[1], 'q', 'qt')
if not cur[1] then return false end
local remaining = tonumber(cur[1])
local refilledAt = nil
if cur[2] then refilledAt = tonumber(cur[2]) end
local cost = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local due = false
if ARGV[3] ~= '' and refilledAt ~= nil then
  local amount = tonumber(ARGV[3])
  local interval = tonumber(ARGV[4])
  if now - refilledAt >= interval then
    refilledAt = refilledAt + math.floor((now - refilledAt) / interval) * interval
    if remaining < amount then remaining = amount end
    due = true
  end
end
local spent = remaining >= cost
if spent then remaining = remaining - cost end
if due then
  redis.call('HSET', KEYS[1], 'q', remaining, 'qt', refilledAt)
elseif spent and cost ~= 0 then
  redis.call('HSET', KEYS[1], 'q', remaining)
end
if refilledAt == nil then refilledAt = false end
return { spent and 1 or 0, remaining, refilledAt }
`);

/**
 * KEYS: the records. ARGV: per record, a time in ms and an address ('' = none). Where the record
 * exists and the time is later than the stored one, sets lastUsedAt to it and lastUsedIp to the
 * address (removing it for ''); an older time changes neither. Never creates a record, never
 * changes its version.
 */
export const TOUCH = new LuaScript(`
for i, k in ipairs(KEYS) do
  local at = ARGV[2 * i - 1]
  local cur = redis.call('HMGET', k, 'v', 'u')
  if cur[1] and (not cur[2] or tonumber(cur[2]) < tonumber(at)) then
    local ip = ARGV[2 * i]
    if ip ~= '' then redis.call('HSET', k, 'u', at, 'ui', ip)
    else
      redis.call('HSET', k, 'u', at)
      redis.call('HDEL', k, 'ui')
    end
  end
end
return #KEYS
`);

/**
 * One page of an index. KEYS: the sorted set. ARGV: record key prefix, start ('-' or '(<member>'),
 * how many members to read, active filter ('' | '1' | '0'), owner filter ('' = any | '-' = only
 * records without an owner, i.e. without an `ok` field).
 * Returns [exhausted 1|0, last member read, json1, lastUsed1, remaining1, refilledAt1, lastUsedIp1, json2, …]:
 * the members read that pass the filters. At most `count` records are read per call, so a filter that matches
 * few keys never holds Redis for long; the caller asks again from the last member.
 */
export const LIST = new LuaScript(`
local count = tonumber(ARGV[3])
local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], '+', 'LIMIT', 0, count)
local out = { (#members < count) and 1 or 0, members[#members] or '' }
for _, m in ipairs(members) do
  local rec = redis.call('HMGET', ARGV[1] .. string.sub(m, 17), 'r', 'u', 'a', 'ok', 'q', 'qt', 'ui')
  if rec[1] and (ARGV[4] == '' or rec[3] == ARGV[4]) and (ARGV[5] ~= '-' or not rec[4]) then
    out[#out + 1] = rec[1]
    out[#out + 1] = rec[2]
    out[#out + 1] = rec[5]
    out[#out + 1] = rec[6]
    out[#out + 1] = rec[7]
  end
end
return out
`);
