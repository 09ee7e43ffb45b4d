//! The server-side Lua scripts that make multi-step queue operations atomic.
//!
//! Redis runs a script without interleaving any other command, so each script below is one
//! indivisible step: nothing can be half-moved when a process is killed or the server stops.
//! Lists are pushed with `unpack` in chunks of at most 4,000 elements because Lua's stack
//! limit (about 8,000) makes larger unpacks fail; every script that pushes starts with the one
//! `push_all` that does this (`with_push_all!`).
//!
//! A script is not rolled back when a command in it fails: a push onto a key of the wrong type
//! (a `Q:dead` someone SET by hand) after the message was removed from its in-flight list would
//! lose it. So every script first checks the type of every key it writes (`guard`, also in the
//! prelude) and, if one is wrong, changes nothing and answers an error naming the key.
//!
//! Orientation (the 2010 tool's, kept for external producers): producers LPUSH, so the oldest
//! message of a queue is at its right end, and consumers take from the right. An in-flight list
//! has the same orientation: newest taken at the left, oldest at the right.

/// Prepends `push_all(cmd, key, list, first, last)` to a script: pushes `list[first..last]` onto
/// `key` with `cmd` (LPUSH or RPUSH), in that order, 4,000 elements per call; and
/// `guard({key, type, key, type, ...})`: an error reply naming the first key that exists with
/// another type, else nil. A macro because EVAL scripts cannot share functions and `concat!`
/// takes only literals.
macro_rules! with_push_all {
    ($script:literal) => {
        concat!(
            r#"
local function push_all(cmd, key, list, first, last)
  local i = first
  while i <= last do
    local j = math.min(i + 3999, last)
    redis.call(cmd, key, unpack(list, i, j))
    i = j + 1
  end
end
local function guard(want)
  for i = 1, #want, 2 do
    local t = redis.call('TYPE', want[i])['ok']
    if t ~= 'none' and t ~= want[i + 1] then
      return redis.error_reply('WRONGTYPE ' .. want[i] .. ' is a ' .. t .. ' where loglines keeps a ' .. want[i + 1] .. '; nothing was changed: rename or delete that key (redis-cli TYPE ' .. want[i] .. ')')
    end
  end
  return nil
end
"#,
            $script
        )
    };
}

/// Moves up to `max` messages from the right end of a queue to the left of an in-flight list;
/// or, while there are suspects (messages a consumer held when it stopped without finishing
/// them), the oldest suspect alone, counting the attempt.
///
/// KEYS: queue, in-flight list, heartbeat key, since-hash, suspect list, attempts hash.
/// ARGV: max, heartbeat ttl (s), heartbeat value, consumer name, `1` if a suspect may be taken
/// (the caller's batch is still empty).
/// Returns `{0, {}, 0}` when the heartbeat had expired (nothing moved: the consumer must first
/// learn what happened to its in-flight list), else `{1, items, attempts}` with items newest
/// first and attempts 0, or one suspect and how often it has now been taken alone.
pub(crate) const TAKE: &str = with_push_all!(
    r#"
-- The heartbeat is this consumer's claim on its id: renewed only while it holds our value.
if redis.call('GET', KEYS[3]) ~= ARGV[3] then
  return {0, {}, 0}
end
redis.call('EXPIRE', KEYS[3], ARGV[2])
local bad = guard({KEYS[1], 'list', KEYS[2], 'list', KEYS[4], 'hash', KEYS[5], 'list', KEYS[6], 'hash'})
if bad then
  return bad
end
local n = tonumber(ARGV[1])
-- A suspect goes alone, so that if the consumer stops again the count is its own, not that of
-- the messages beside it.
if n > 0 and ARGV[5] == '1' and redis.call('LLEN', KEYS[5]) > 0 then
  local item = redis.call('LMOVE', KEYS[5], KEYS[2], 'RIGHT', 'LEFT')
  local tries = redis.call('HINCRBY', KEYS[6], redis.sha1hex(item), 1)
  redis.call('HSETNX', KEYS[4], ARGV[4], redis.call('TIME')[1])
  return {1, {item}, tries}
end
local items = {}
if n > 0 then
  items = redis.call('LRANGE', KEYS[1], -n, -1)
end
local got = #items
if got > 0 then
  redis.call('LTRIM', KEYS[1], 0, -got - 1)
  -- Push the oldest first so the in-flight list ends up exactly as `got` BLMOVE RIGHT LEFT
  -- calls would have left it: newest at the left.
  local oldest_first = {}
  for i = got, 1, -1 do
    oldest_first[#oldest_first + 1] = items[i]
  end
  push_all('LPUSH', KEYS[2], oldest_first, 1, got)
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSETNX', KEYS[4], ARGV[4], redis.call('TIME')[1])
end
return {1, items, 0}
"#
);

/// Removes acked messages from an in-flight list and pushes messages to other lists, all at
/// once, at most once per operation id (so a retry after a lost connection cannot repeat it).
///
/// KEYS: in-flight list, heartbeat key, since-hash, ops-hash, attempts hash, then one key per
/// destination.
/// ARGV: consumer name, operation id, heartbeat ttl, heartbeat value, mode (`all` or `some`),
/// expected in-flight length (mode `all`), number of acked items k, `1` if the acked items are
/// finished (their attempt counts are dropped; not when they are given back), the k items, then
/// for each destination: `L` (LPUSH) or `R` (RPUSH), a count m, the m items.
///
/// Mode `all` deletes the whole list after checking its length (the fast path: the consumer
/// acks everything it holds, so the items need not be sent back). Mode `some` removes one copy
/// per acked item, oldest copies first, and fails unless every one was found.
///
/// Returns 1 applied, 2 already applied earlier, -1 heartbeat expired (nothing done), -2 the
/// list length is not the expected one, -3 an acked item is not in the list.
pub(crate) const COMMIT: &str = with_push_all!(
    r#"
local me = ARGV[1]
if redis.call('HGET', KEYS[4], me) == ARGV[2] then
  return 2
end
if redis.call('GET', KEYS[2]) ~= ARGV[4] then
  return -1
end
redis.call('EXPIRE', KEYS[2], ARGV[3])
local want = {KEYS[1], 'list', KEYS[3], 'hash', KEYS[4], 'hash', KEYS[5], 'hash'}
for k = 6, #KEYS do
  want[#want + 1] = KEYS[k]
  want[#want + 1] = 'list'
end
local bad = guard(want)
if bad then
  return bad
end
local nack = tonumber(ARGV[7])
local pos = 9
-- Finished messages are no longer suspects. Only looked at when there are any.
local forget = ARGV[8] == '1' and redis.call('EXISTS', KEYS[5]) == 1
if ARGV[5] == 'all' then
  if redis.call('LLEN', KEYS[1]) ~= tonumber(ARGV[6]) then
    return -2
  end
  if forget then
    for _, item in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
      redis.call('HDEL', KEYS[5], redis.sha1hex(item))
    end
  end
  redis.call('DEL', KEYS[1])
  pos = pos + nack
elseif nack > 0 then
  local want = {}
  for i = pos, pos + nack - 1 do
    want[ARGV[i]] = (want[ARGV[i]] or 0) + 1
  end
  pos = pos + nack
  local cur = redis.call('LRANGE', KEYS[1], 0, -1)
  local drop = {}
  local removed = 0
  local lowest = #cur + 1
  -- The oldest copies are at the right end: walk from there.
  for i = #cur, 1, -1 do
    local w = want[cur[i]]
    if w and w > 0 then
      want[cur[i]] = w - 1
      drop[i] = true
      removed = removed + 1
      lowest = i
    end
  end
  if removed ~= nack then
    return -3
  end
  -- Only now that the commit will happen: the finished messages are no longer suspects.
  if forget then
    for i = pos - nack, pos - 1 do
      redis.call('HDEL', KEYS[5], redis.sha1hex(ARGV[i]))
    end
  end
  if lowest == #cur - removed + 1 then
    -- The acked items are exactly the oldest ones: trim them off the right end.
    redis.call('LTRIM', KEYS[1], 0, -removed - 1)
  else
    redis.call('DEL', KEYS[1])
    local kept = {}
    for i = 1, #cur do
      if not drop[i] then
        kept[#kept + 1] = cur[i]
      end
    end
    push_all('RPUSH', KEYS[1], kept, 1, #kept)
  end
end
for k = 6, #KEYS do
  local cmd = 'RPUSH'
  if ARGV[pos] == 'L' then
    cmd = 'LPUSH'
  end
  local cnt = tonumber(ARGV[pos + 1])
  pos = pos + 2
  push_all(cmd, KEYS[k], ARGV, pos, pos + cnt - 1)
  pos = pos + cnt
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HDEL', KEYS[3], me)
end
redis.call('HSET', KEYS[4], me, ARGV[2])
return 1
"#
);

/// Sets aside another consumer's in-flight list if that consumer's heartbeat has expired (or,
/// at a consumer's start, its own list from a run that stopped without finishing it): all of
/// it, in order, onto the suspect list, from which consumers take one message at a time before
/// anything else of the queue; and deletes the list.
///
/// KEYS: the in-flight list, its consumer's heartbeat key, the suspect list, the since-hash.
/// ARGV: that consumer's name, `own` when it is the caller's own list (its heartbeat is the
/// caller's, alive).
/// Returns -1 if the consumer is alive (nothing done), else the number of messages set aside.
pub(crate) const RECOVER: &str = with_push_all!(
    r#"
if ARGV[2] ~= 'own' and redis.call('EXISTS', KEYS[2]) == 1 then
  return -1
end
if redis.call('TYPE', KEYS[1])['ok'] ~= 'list' then
  return 0
end
local bad = guard({KEYS[3], 'list', KEYS[4], 'hash'})
if bad then
  return bad
end
local items = redis.call('LRANGE', KEYS[1], 0, -1)
-- RPUSH in list order leaves the oldest (rightmost) in-flight item at the suspect list's right
-- end, so it is taken first again, before anything that was behind it.
push_all('RPUSH', KEYS[3], items, 1, #items)
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return #items
"#
);

/// A producer's push: the batch and the record of its number, both or neither.
///
/// KEYS: the list, the producer's record. ARGV: LPUSH or RPUSH, the batch number, the
/// record's ttl (s), then the items in push order. Returns the list's length after the push.
///
/// Why not MULTI/EXEC: a transaction is not rolled back either, so a push onto a key of the
/// wrong type failed while the record was still written, and a producer that lost the answer
/// and read the record back took the batch for stored.
pub(crate) const STORE: &str = with_push_all!(
    r#"
local bad = guard({KEYS[1], 'list', KEYS[2], 'string'})
if bad then
  return bad
end
push_all(ARGV[1], KEYS[1], ARGV, 4, #ARGV)
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return redis.call('LLEN', KEYS[1])
"#
);

/// Empties a queue and its suspect list, only if they are lists, and forgets the suspects'
/// attempt counts.
///
/// KEYS: the queue, its suspect list, its attempts hash. Returns the number of messages removed.
pub(crate) const PURGE: &str = with_push_all!(
    r#"
local bad = guard({KEYS[1], 'list', KEYS[2], 'list', KEYS[3], 'hash'})
if bad then
  return bad
end
local n = redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2])
local suspects = redis.call('LRANGE', KEYS[2], 0, -1)
for _, item in ipairs(suspects) do
  redis.call('HDEL', KEYS[3], redis.sha1hex(item))
end
redis.call('DEL', KEYS[1], KEYS[2])
return n
"#
);

/// Moves dead letters back onto their queue (producer end, oldest first), optionally only those
/// whose reason contains a text; unreadable entries stay.
///
/// KEYS: the dead-letter list, the queue. ARGV: the reason text, or empty for all.
/// Returns the number moved.
pub(crate) const REQUEUE_DEAD: &str = with_push_all!(
    r#"
local bad = guard({KEYS[1], 'list', KEYS[2], 'list'})
if bad then
  return bad
end
local all = redis.call('LRANGE', KEYS[1], 0, -1)
local keep, back = {}, {}
for _, raw in ipairs(all) do
  local ok, d = pcall(cjson.decode, raw)
  local msg = nil
  local reason = ''
  if ok and type(d) == 'table' and type(d.message) == 'string' then
    msg = d.message
    if type(d.reason) == 'string' then
      reason = d.reason
    end
  end
  if msg and (ARGV[1] == '' or string.find(reason, ARGV[1], 1, true)) then
    back[#back + 1] = msg
  else
    keep[#keep + 1] = raw
  end
end
if #back == 0 then
  return 0
end
redis.call('DEL', KEYS[1])
push_all('RPUSH', KEYS[1], keep, 1, #keep)
push_all('LPUSH', KEYS[2], back, 1, #back)
return #back
"#
);

/// Renews a consumer's heartbeat, its claim on its id, only while it holds this consumer's
/// value: another process's claim is never extended or taken over.
///
/// KEYS: the heartbeat key. ARGV: our value, ttl. Returns 1 renewed, 0 not ours (or gone).
pub(crate) const REFRESH: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// Deletes a consumer's heartbeat on a clean stop, if it is still ours.
///
/// KEYS: the heartbeat key. ARGV: our value. Returns 1 deleted, 0 not ours.
pub(crate) const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// Takes over a consumer id whose holder is known to be dead (a process of this machine that
/// no longer exists), if the heartbeat still names that holder.
///
/// KEYS: the heartbeat key. ARGV: the dead holder's value, our value, ttl. Returns 1 if taken.
pub(crate) const TAKE_OVER: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"#;
