"""The Lua scripts of the Redis store: every change that must be atomic across
processes is one script (Redis runs a script alone, and replicates/logs its effects
as one transaction).

Key layout (``P`` is the configured prefix, ``n`` a node number):

  P node:n            node n's lease (value: the process's random token), PX lease
  P nodes             SET of node numbers that may hold leases (the janitor reaps them)
  P nodeseq           INCR, where a process starts looking for a free node number
  P commit:n          "token:cseq" of node n's last applied group commit
  P accounts          SET of system_ids
  P acct:SID          HASH settings (JSON, the record without packages), pk (free credit
                      packages, JSON; absent: unlimited credit)
  P acctlog           STREAM of settings changes (s=system_id, n=node tag)
  P lease:SID         HASH "n:g" credit granted to node n, "n:s" spent by it since
  P leases:n          SET of system_ids node n holds a lease of
  P want              ZSET system_id -> until (ms): a process lacks credit, idle leases come back
  P tot:SID           HASH n (lookups ever), c (their cost ever): audits
  P cnt:SID:KEY       lookups in a day/week/month window (KEY d2026-01-31, w2026-01-26, m2026-01)
  P lk:SEC            HASH id -> lookup record, the lookups whose id was issued in that second
                      (ids start with their millisecond), EX history_ttl
  P ack:SEC, exp:SEC  SETs of ids whose receipt was acknowledged / expired, EX history_ttl
  P hist:SID          ZSET (lex) of 19-digit ids: the account's history in id (= time) order
  P batch:BID         SET of 19-digit ids, EX history_ttl
  P roll:SID:DAY:DIM  HASH the account's per-day rollup by one dimension (DAY YYYY-MM-DD in
                      accounts_timezone; DIM d the day, c country, n network, s err): VALUE ->
                      lookups, $VALUE -> their cost (d: the value ""); EX ROLLUP_TTL
  P roll:SID          LIST of the rollups of the account's last group commits, not yet added
                      to its HASHes (one entry a commit: "day\31cc\31network\31err\31n\31cost"
                      records separated by \30); folded once ROLLUP_FOLD are queued, and
                      before any read
  P ledger:SID        LIST of JSON [at, kind, amount, note]
  P ar:SID            HASH month (YYYY-MM) -> packages auto-recharge added in it
  P rcpt:SID          STREAM of receipts to deliver, group "rx", one consumer per process; an
                      entry holds the receipts of one group commit (r: records, n: node tag,
                      k: commit number); deleted once all of them are acknowledged
  P q:SID             receipts not yet acknowledged (ESME_RMSGQFUL)
  P rx:SID            the receiving session's lease: "n:fence", PX lease
  P fence:SID         INCR: fencing tokens of rx:SID
  P tx:SID            ZSET "n:session" -> lease end (ms): the transmitters
  P wake:n            STREAM that wakes node n's receipt reader (group "rx")
  P sms:SEC, smskey:K text messages of SMS accounts and their addresses (redis/messages.py)

With the history in PostgreSQL (the history store, postgres/store.py) the lookups are not
kept per lookup (lk:, hist:, batch:, ack:, exp: stay empty) but as blobs, one per account
and group commit, until the drain moves them:

  P hs:SID            STREAM of the account's group commits: r (its records, \30 between
                      them, as in lk:SEC), c (how many), n (how many ask a receipt), e (its
                      entry in rcpt:SID, '' when none), l, h (lowest and highest id, 19
                      digits), b (batch ids, space-separated)
  P hx                ZSET "sid hs-entry l h" -> the highest id's millisecond: where an id is
  P bx:BID            SET of those members holding lookups of batch BID
  P rc:SID            HASH rcpt:SID entry id -> its receipts not answered yet (present until
                      the entry's lookups left for PostgreSQL)
  P ra:SID:EID        STRING the answers to entry EID's receipts: "id " acknowledged, "-id "
                      expired, appended as they come

Amounts are integer micro-credits, kept as decimal strings in JSON (``%.0f``: exact
below 2**53 micro-credits, 9 billion credits).
"""
from .outbox import NOTIFY_ADD

PRELUDE = r"""
local function fmt(x) return string.format('%.0f', x) end

local function encode_pk(pk)
  if #pk == 0 then return '[]' end
  return cjson.encode(pk)
end

-- Credit back into the free packages, most recently drawn first (drawing is oldest first,
-- so this undoes it): from the oldest package with credit left (or the newest, when none
-- has) back to the oldest, each up to its size; what exceeds that goes to the newest.
-- The rule of AccountBook.refund (tests/test_refund_rule.py holds the two together).
local function refill(P, sid, amount)
  if amount <= 0 then return end
  local key = P .. 'acct:' .. sid
  local raw = redis.call('HGET', key, 'pk')
  if not raw then return end
  local pk = cjson.decode(raw)
  local head = #pk
  for i = 1, #pk do
    if tonumber(pk[i].c) > 0 then head = i; break end
  end
  for i = head, 1, -1 do
    local c, s = tonumber(pk[i].c), tonumber(pk[i].s)
    if c < s then
      local take = math.min(s - c, amount)
      pk[i].c = fmt(c + take)
      amount = amount - take
      if amount <= 0 then break end
    end
  end
  if amount > 0 then
    if #pk == 0 then
      pk[1] = {c = fmt(amount), s = fmt(amount), b = '', l = 'returned'}
    else
      local c = tonumber(pk[#pk].c) + amount
      pk[#pk].c = fmt(c)
      pk[#pk].s = fmt(math.max(c, tonumber(pk[#pk].s)))
    end
  end
  redis.call('HSET', key, 'pk', encode_pk(pk))
end

-- Node n's lease of an account ends: what it did not spend goes back to the free packages.
local function end_lease(P, n, sid)
  local key = P .. 'lease:' .. sid
  local g = tonumber(redis.call('HGET', key, n .. ':g') or '0')
  local s = tonumber(redis.call('HGET', key, n .. ':s') or '0')
  redis.call('HDEL', key, n .. ':g', n .. ':s')
  redis.call('SREM', P .. 'leases:' .. n, sid)
  if g - s > 0 then refill(P, sid, g - s) end
  return g - s
end

local function reclaim(P, n)
  local back = 0
  for _, sid in ipairs(redis.call('SMEMBERS', P .. 'leases:' .. n)) do
    back = back + math.max(0, end_lease(P, n, sid))
  end
  redis.call('DEL', P .. 'leases:' .. n)
  redis.call('SREM', P .. 'nodes', n)
  return back
end

local function alive(P, n, token)
  return redis.call('GET', P .. 'node:' .. n) == token
end
"""

#: ARGV: P, n, token, lease_ms -> 1 when node n is ours, 0 when taken.
NODE_ACQUIRE = PRELUDE + r"""
local P, n, token, ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', P .. 'node:' .. n) == 1 then return 0 end
-- An earlier process with this number died: its leases go back first.
reclaim(P, n)
redis.call('DEL', P .. 'commit:' .. n)
redis.call('SET', P .. 'node:' .. n, token, 'PX', ms)
redis.call('SADD', P .. 'nodes', n)
return 1
"""

#: ARGV: P, n, token -> credit given back. A clean exit: every lease returns.
NODE_LEAVE = PRELUDE + r"""
local P, n, token = ARGV[1], ARGV[2], ARGV[3]
if not alive(P, n, token) then return -1 end
local back = reclaim(P, n)
redis.call('DEL', P .. 'node:' .. n)
return fmt(back)
"""

#: ARGV: P, n -> credit given back, or -1 when node n is alive. Any process reaps a dead node.
NODE_REAP = PRELUDE + r"""
local P, n = ARGV[1], ARGV[2]
if redis.call('EXISTS', P .. 'node:' .. n) == 1 then return -1 end
return fmt(reclaim(P, n))
"""

#: ARGV: P, n, token, lease_ms, now_ms, nrx, (sid, value)*nrx, (sid, member)*
#: -> -1 when node n's lease is lost, else the system_ids whose receiver lease was lost.
HEARTBEAT = r"""
local P, n, token, ms, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local key = P .. 'node:' .. n
if redis.call('GET', key) ~= token then return -1 end
redis.call('PEXPIRE', key, ms)
local lost = {}
local nrx = tonumber(ARGV[6])
local i = 7
for _ = 1, nrx do
  local k = P .. 'rx:' .. ARGV[i]
  if redis.call('GET', k) == ARGV[i + 1] then
    redis.call('PEXPIRE', k, ms)
  else
    lost[#lost + 1] = ARGV[i]
  end
  i = i + 2
end
while i < #ARGV do
  local k = P .. 'tx:' .. ARGV[i]
  redis.call('ZADD', k, now + ms, ARGV[i + 1])
  redis.call('PEXPIRE', k, 2 * ms)
  i = i + 2
end
return lost
"""

#: ARGV: P, n, token, lease_ms, sid -> fencing token (> 0), 0 when another session holds
#: it, -1 when node n is no longer alive.
RX_CLAIM = PRELUDE + r"""
local P, n, token, ms, sid = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if not alive(P, n, token) then return -1 end
local k = P .. 'rx:' .. sid
if redis.call('EXISTS', k) == 1 then return 0 end
local f = redis.call('INCR', P .. 'fence:' .. sid)
redis.call('SET', k, n .. ':' .. f, 'PX', ms)
return f
"""

#: ARGV: P, sid, value. Compare and delete: a stale holder never frees another's lease.
RX_RELEASE = r"""
local k = ARGV[1] .. 'rx:' .. ARGV[2]
if redis.call('GET', k) == ARGV[3] then return redis.call('DEL', k) end
return 0
"""

#: ARGV: P, n, token, lease_ms, now_ms, sid, member, max_tx -> 1, 0 (full), -1 (node lost).
TX_CLAIM = PRELUDE + r"""
local P, n, token, ms, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local sid, member, max = ARGV[6], ARGV[7], tonumber(ARGV[8])
if not alive(P, n, token) then return -1 end
local k = P .. 'tx:' .. sid
redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
if redis.call('ZCARD', k) >= max then return 0 end
redis.call('ZADD', k, now + ms, member)
redis.call('PEXPIRE', k, 2 * ms)
return 1
"""

#: ARGV: P, n, token, sid, want -> {granted, slices JSON [[credit, bought, label]...], free left}
RESERVE = PRELUDE + r"""
local P, n, token, sid, want = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
if not alive(P, n, token) then return redis.error_reply('FENCED node lease lost') end
local key = P .. 'acct:' .. sid
local raw = redis.call('HGET', key, 'pk')
if not raw then return {'0', '[]', '0'} end
local pk = cjson.decode(raw)
local left, free = want, 0
local slices = {}
for i = 1, #pk do
  local c = tonumber(pk[i].c)
  if c > 0 and left > 0 then
    local take = math.min(c, left)
    c = c - take
    left = left - take
    pk[i].c = fmt(c)
    slices[#slices + 1] = {fmt(take), pk[i].b or '', pk[i].l or ''}
  end
  free = free + c
end
local granted = want - left
if granted > 0 then
  redis.call('HSET', key, 'pk', encode_pk(pk))
  local lk = P .. 'lease:' .. sid
  local g = tonumber(redis.call('HGET', lk, n .. ':g') or '0')
  local s = tonumber(redis.call('HGET', lk, n .. ':s') or '0')
  -- Keep the numbers small: what was spent leaves both sides.
  redis.call('HSET', lk, n .. ':g', fmt(g - s + granted), n .. ':s', '0')
  redis.call('SADD', P .. 'leases:' .. n, sid)
end
if #slices == 0 then return {'0', '[]', fmt(free)} end
return {fmt(granted), cjson.encode(slices), fmt(free)}
"""

#: ARGV: P, n, token, sid, amount -> credit given back (never more than the lease holds unspent)
GIVE_BACK = PRELUDE + r"""
local P, n, token, sid, amount = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
if not alive(P, n, token) then return redis.error_reply('FENCED node lease lost') end
local lk = P .. 'lease:' .. sid
local g = tonumber(redis.call('HGET', lk, n .. ':g') or '0')
local s = tonumber(redis.call('HGET', lk, n .. ':s') or '0')
amount = math.max(0, math.min(amount, g - s))
if amount > 0 then
  refill(P, sid, amount)
  if g - amount == s then
    -- Nothing left unspent, nothing uncommitted (never more than g - s comes back): gone.
    redis.call('HDEL', lk, n .. ':g', n .. ':s')
    redis.call('SREM', P .. 'leases:' .. n, sid)
  else
    redis.call('HSET', lk, n .. ':g', fmt(g - amount))
  end
end
return fmt(amount)
"""

#: ARGV: P, tag, sid, settings JSON, packages JSON ('' for unlimited), ledger JSON, amount
#: -> 1 when created, 0 when the account already existed (its state wins over the file).
SEED = r"""
local P, tag, sid, settings, pk, ledger, amount = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local key = P .. 'acct:' .. sid
if redis.call('HEXISTS', key, 'settings') == 1 then return 0 end
redis.call('HSET', key, 'settings', settings)
if pk ~= '' then
  redis.call('HSET', key, 'pk', pk)
  if tonumber(amount) > 0 then redis.call('RPUSH', P .. 'ledger:' .. sid, ledger) end
end
redis.call('SADD', P .. 'accounts', sid)
redis.pcall('XGROUP', 'CREATE', P .. 'rcpt:' .. sid, 'rx', '0', 'MKSTREAM')
return 1
"""

#: One group commit of node n, all or nothing, fenced by node n's lease. Variadic calls per
#: account and per second of ids, never one call per lookup.
#: ARGV: P, n, token, cseq, ttl_s, tag, blobs ('1': the history store's layout, below),
#:   nbuckets, (second, "id\31record\30...")*                       history records
#:   naggs, (sid, count, cost, dkey, wkey, mkey, charged, "pid pid ...", nreceipts,
#:           "record\30record...")*                                  per account
#:     with blobs: (sid, count, cost, dkey, wkey, mkey, charged, "record\30record..." (all of
#:           them), nreceipts, the receipts' records or '=' (all), lowest id, highest id (19
#:           digits), the highest id's millisecond, "batch id ...")*
#:   nbatches, (batch id, "pid pid ...")*
#:   nroll, (sid, rollups of the commit: see P roll:SID)*
#:   nacks, (second, sid, pending code, "id id ...")*                receipts answered/expired
#:   nanswers, (sid, receipt entry id, "id id -id ...", how many)*   the same, with blobs
#:   ndone, (sid, entry id)*                                         stream entries all answered
#:   naccounts, (sid, settings JSON, limited)*
#:   nledger, (sid, JSON, kind, amount, bought, note, idempotency key or '', its JSON)*
#:   nrecharge, (sid, below, add, max_per_month, month, bought, now, cost, add text, below
#:               text, channels JSON)*                             auto-recharge (below)
#: -> per aggregate {day, week, month, receipts queued}, then (when either is not empty) the
#:    "sid\31key" of ledger entries left out because their idempotency key was already used,
#:    then (when not empty) the "sid\31month\31count\31add" of the auto-recharges made

#: How long a day's rollup is kept on Redis (seconds): 400 days, a year and its month.
ROLLUP_TTL = 400 * 86400
#: Group commits whose rollups an account queues (P roll:SID) before they are added to its
#: HASHes at once: a field is incremented once per this many commits, not once per commit
#: (one HINCRBY per country, network and status of each commit was most of a commit's cost).
ROLLUP_FOLD = 32

#: The queued rollups of an account (P roll:SID) added to its per-day HASHes, each field
#: once. Sums in Lua's doubles: exact below 2**53 micro-credits.
FOLD_ROLLUPS = r"""
local function fold_rollups(P, sid)
  local q = P .. 'roll:' .. sid
  local queued = redis.call('LRANGE', q, 0, -1)
  if #queued == 0 then return end
  redis.call('DEL', q)
  local sums, order = {}, {}
  local function add(key, value, n, c)
    local h = sums[key]
    if not h then h = {}; sums[key] = h; order[#order + 1] = key end
    h[value] = (h[value] or 0) + n
    h['$' .. value] = (h['$' .. value] or 0) + c
  end
  local base = P .. 'roll:' .. sid .. ':'
  for _, entry in ipairs(queued) do
    for day, cc, net, err, n, c in string.gmatch(entry,
        '([^\31\30]*)\31([^\31\30]*)\31([^\31\30]*)\31([^\31\30]*)\31(%d+)\31(%-?%d+)') do
      n, c = tonumber(n), tonumber(c)
      local k = base .. day .. ':'
      add(k .. 'd', '', n, c)
      add(k .. 'c', cc, n, c)
      add(k .. 'n', net, n, c)
      add(k .. 's', err, n, c)
    end
  end
  for _, key in ipairs(order) do
    for field, v in pairs(sums[key]) do redis.call('HINCRBY', key, field, string.format('%.0f', v)) end
    redis.call('EXPIRE', key, ROLLUP_TTL)
  end
end
"""

#: Auto-recharge, decided by the commit that records the charges (so two processes never
#: both recharge, and a package is never added twice): an account whose credit (its free
#: packages and every node's lease less what it spent) went, by this commit's charges
#: (``cost``), from ``below`` or more to less, and is still below it after the commit's
#: top-ups, gets a free package of ``add``, unless ``max_per_month`` were added in ``month``
#: (P ar:SID); with its ledger entry and its notification (the outbox's keys), at once.
AUTO_RECHARGE = NOTIFY_ADD + r"""
local function credit_total(P, sid)
  local raw = redis.call('HGET', P .. 'acct:' .. sid, 'pk')
  if not raw then return nil end
  local total = 0
  for _, p in ipairs(cjson.decode(raw)) do total = total + tonumber(p.c) end
  local lease = redis.call('HGETALL', P .. 'lease:' .. sid)
  for j = 1, #lease, 2 do
    if string.sub(lease[j], -2) == ':g' then
      total = total + tonumber(lease[j + 1])
    else
      total = total - tonumber(lease[j + 1])
    end
  end
  return total
end

-- ARGV from i: one account's entry (see COMMIT); topped: what this commit's top-ups added.
-- Returns "sid\31month\31count\31add" when a package was added, else nil.
local function auto_recharge(P, i, topped)
  local sid, below, add, max = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local month, bought, now, cost = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], tonumber(ARGV[i + 7])
  local total = credit_total(P, sid)
  if not total then return nil end
  local after = total - (topped[sid] or 0)
  if not (after < below and after + cost >= below and total < below) then return nil end
  local ark = P .. 'ar:' .. sid
  local k = tonumber(redis.call('HGET', ark, month) or '0')
  if k >= max then return nil end
  k = k + 1
  redis.call('HSET', ark, month, k)
  local key = P .. 'acct:' .. sid
  local pk = cjson.decode(redis.call('HGET', key, 'pk'))
  local amount = string.format('%.0f', add)
  local at = #pk + 1
  for j = 1, #pk do
    if (pk[j].b or '') > bought then at = j; break end
  end
  table.insert(pk, at, {c = amount, s = amount, b = bought, l = 'auto_recharge'})
  redis.call('HSET', key, 'pk', cjson.encode(pk))
  local note = 'credit below ' .. ARGV[i + 9] .. ': ' .. k .. ' of ' .. ARGV[i + 3] .. ' in ' .. month
  redis.call('RPUSH', P .. 'ledger:' .. sid,
             '[' .. now .. ',"auto_recharge",' .. amount .. ',' .. cjson.encode(note) .. ']')
  local nkey = 'auto_recharge:' .. month .. ':' .. k
  local data = '{"amount":' .. cjson.encode(ARGV[i + 8]) .. ',"below":' .. cjson.encode(ARGV[i + 9])
    .. ',"count":' .. k .. ',"max_per_month":' .. ARGV[i + 3] .. ',"month":' .. cjson.encode(month) .. '}'
  local row = '{"system_id":' .. cjson.encode(sid) .. ',"kind":"auto_recharge","key":' .. cjson.encode(nkey)
    .. ',"at":' .. now .. ',"data":' .. data .. ',"pending":' .. ARGV[i + 10]
    .. ',"sent":[],"attempts":0,"next_at":' .. now .. ',"error":""}'
  notify_add(P, sid, nkey, row, now, ARGV[i + 10] ~= '[]')
  return sid .. '\31' .. month .. '\31' .. k .. '\31' .. amount
end
"""

COMMIT = AUTO_RECHARGE + FOLD_ROLLUPS + r"""
local P, n, token, cseq, ttl, tag = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local blobs = ARGV[7] == '1'
if redis.call('GET', P .. 'node:' .. n) ~= token then
  return redis.error_reply('FENCED node ' .. n .. ' lease lost')
end
local function bulk(cmd, key, list)
  for j = 1, #list, 7000 do
    redis.call(cmd, key, unpack(list, j, math.min(j + 6999, #list)))
  end
end
local i = 8
local nb = tonumber(ARGV[i]); i = i + 1
for _ = 1, nb do
  local key = P .. 'lk:' .. ARGV[i]
  local t = {}
  for id, rec in string.gmatch(ARGV[i + 1], '(%d+)\31([^\30]*)') do
    t[#t + 1] = id
    t[#t + 1] = rec
  end
  bulk('HSET', key, t)
  redis.call('EXPIRE', key, ttl)
  i = i + 2
end
local out = {}
local naggs = tonumber(ARGV[i]); i = i + 1
for _ = 1, naggs do
  local sid, count, cost = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local tk = P .. 'tot:' .. sid
  redis.call('HINCRBY', tk, 'n', count)
  redis.call('HINCRBY', tk, 'c', cost)
  if ARGV[i + 6] == '1' and redis.call('HEXISTS', P .. 'acct:' .. sid, 'pk') == 1 then
    redis.call('HINCRBY', P .. 'lease:' .. sid, n .. ':s', cost)
    redis.call('SADD', P .. 'leases:' .. n, sid)
  end
  local totals = {}
  for j = 3, 5 do
    local ck = P .. 'cnt:' .. sid .. ':' .. ARGV[i + j]
    totals[j - 2] = redis.call('INCRBY', ck, count)
    redis.call('EXPIRE', ck, 35 * 86400)
  end
  local qk = P .. 'q:' .. sid
  if blobs then
    -- The commit's records of the account as one entry of its history stream, untouched
    -- here: nothing in this script is done per lookup.
    local eid = ''
    if ARGV[i + 8] ~= '0' then
      local r = ARGV[i + 9]
      if r == '=' then r = ARGV[i + 7] end
      eid = redis.call('XADD', P .. 'rcpt:' .. sid, '*', 'r', r, 'n', tag, 'k', cseq, 'a', '1')
      redis.call('HSET', P .. 'rc:' .. sid, eid, ARGV[i + 8])
      totals[4] = redis.call('INCRBY', qk, ARGV[i + 8])
    else
      totals[4] = tonumber(redis.call('GET', qk) or '0')
    end
    local lo, hi, b = ARGV[i + 10], ARGV[i + 11], ARGV[i + 13]
    local hid = redis.call('XADD', P .. 'hs:' .. sid, '*', 'r', ARGV[i + 7], 'c', count, 'n', ARGV[i + 8],
                           'e', eid, 'l', lo, 'h', hi, 'b', b)
    local member = sid .. ' ' .. hid .. ' ' .. lo .. ' ' .. hi
    redis.call('ZADD', P .. 'hx', ARGV[i + 12], member)
    for bid in string.gmatch(b, '%d+') do redis.call('SADD', P .. 'bx:' .. bid, member) end
    i = i + 14
  else
    local t = {}
    for pid in string.gmatch(ARGV[i + 7], '%d+') do
      t[#t + 1] = 0
      t[#t + 1] = pid
    end
    bulk('ZADD', P .. 'hist:' .. sid, t)
    if ARGV[i + 8] ~= '0' then
      redis.call('XADD', P .. 'rcpt:' .. sid, '*', 'r', ARGV[i + 9], 'n', tag, 'k', cseq)
      totals[4] = redis.call('INCRBY', qk, ARGV[i + 8])
    else
      totals[4] = tonumber(redis.call('GET', qk) or '0')
    end
    i = i + 10
  end
  out[#out + 1] = totals
end
local nbatch = tonumber(ARGV[i]); i = i + 1
for _ = 1, nbatch do
  local key = P .. 'batch:' .. ARGV[i]
  local t = {}
  for pid in string.gmatch(ARGV[i + 1], '%d+') do t[#t + 1] = pid end
  bulk('SADD', key, t)
  redis.call('EXPIRE', key, ttl)
  i = i + 2
end
local nroll = tonumber(ARGV[i]); i = i + 1
for _ = 1, nroll do
  if redis.call('RPUSH', P .. 'roll:' .. ARGV[i], ARGV[i + 1]) >= ROLLUP_FOLD then fold_rollups(P, ARGV[i]) end
  i = i + 2
end
local nacks = tonumber(ARGV[i]); i = i + 1
for _ = 1, nacks do
  local second, sid, code = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local t = {}
  for id in string.gmatch(ARGV[i + 3], '%d+') do t[#t + 1] = id end
  local key = P .. (code == '2' and 'exp:' or 'ack:') .. second
  local new = 0
  for j = 1, #t, 7000 do
    new = new + redis.call('SADD', key, unpack(t, j, math.min(j + 6999, #t)))
  end
  redis.call('EXPIRE', key, ttl)
  if new > 0 then
    local qk = P .. 'q:' .. sid
    if redis.call('DECRBY', qk, new) < 0 then redis.call('SET', qk, 0) end
  end
  i = i + 4
end
local nans = tonumber(ARGV[i]); i = i + 1
for _ = 1, nans do
  -- Answers to the receipts of one stream entry, appended to its list of answers; none
  -- once the entry's lookups left for PostgreSQL (all answered then: a repeat).
  local sid, eid, k = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 3])
  local rk = P .. 'rc:' .. sid
  if redis.call('HEXISTS', rk, eid) == 1 then
    redis.call('APPEND', P .. 'ra:' .. sid .. ':' .. eid, ARGV[i + 2])
    redis.call('HINCRBY', rk, eid, -k)
    local qk = P .. 'q:' .. sid
    if redis.call('DECRBY', qk, k) < 0 then redis.call('SET', qk, 0) end
  end
  i = i + 4
end
local ndone = tonumber(ARGV[i]); i = i + 1
for _ = 1, ndone do
  local sk = P .. 'rcpt:' .. ARGV[i]
  redis.call('XACK', sk, 'rx', ARGV[i + 1])
  redis.call('XDEL', sk, ARGV[i + 1])
  i = i + 2
end
local nacc = tonumber(ARGV[i]); i = i + 1
for _ = 1, nacc do
  local sid = ARGV[i]
  local key = P .. 'acct:' .. sid
  local created = redis.call('HEXISTS', key, 'settings') == 0
  redis.call('HSET', key, 'settings', ARGV[i + 1])
  if ARGV[i + 2] == '1' and redis.call('HEXISTS', key, 'pk') == 0 then
    redis.call('HSET', key, 'pk', '[]')
  end
  redis.call('SADD', P .. 'accounts', sid)
  if created then redis.pcall('XGROUP', 'CREATE', P .. 'rcpt:' .. sid, 'rx', '0', 'MKSTREAM') end
  redis.call('XADD', P .. 'acctlog', 'MAXLEN', '~', '10000', '*', 's', sid, 'n', tag)
  i = i + 3
end
local nled = tonumber(ARGV[i]); i = i + 1
local dup = {}
local topped = {}
for _ = 1, nled do
  local sid, entry, kind, amount, idem = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 6]
  if idem ~= '' and redis.call('HSETNX', P .. 'idem:' .. sid, idem, ARGV[i + 7]) == 0 then
    -- A retry of a top-up another commit already made: nothing is added twice.
    dup[#dup + 1] = sid .. '\31' .. idem
  else
    redis.call('RPUSH', P .. 'ledger:' .. sid, entry)
    local key = P .. 'acct:' .. sid
    local raw = redis.call('HGET', key, 'pk')
    if kind == 'top_up' and raw then
      -- The credit is in this process's hands (AccountBook.top_up): a lease that grew. The
      -- package joins the free list empty, to be refilled when the lease comes back.
      local pk = cjson.decode(raw)
      local new = {c = '0', s = amount, b = ARGV[i + 4], l = ARGV[i + 5]}
      local at = #pk + 1
      for j = 1, #pk do
        if (pk[j].b or '') > new.b then at = j; break end
      end
      table.insert(pk, at, new)
      redis.call('HSET', key, 'pk', cjson.encode(pk))
      redis.call('HINCRBY', P .. 'lease:' .. sid, n .. ':g', amount)
      redis.call('SADD', P .. 'leases:' .. n, sid)
      topped[sid] = (topped[sid] or 0) + tonumber(amount)
    end
  end
  i = i + 8
end
local nrech = tonumber(ARGV[i]); i = i + 1
local recharged = {}
for _ = 1, nrech do
  recharged[#recharged + 1] = auto_recharge(P, i, topped)
  i = i + 11
end
redis.call('SET', P .. 'commit:' .. n, token .. ':' .. cseq)
if #dup > 0 or #recharged > 0 then out[#out + 1] = dup end
if #recharged > 0 then out[#out + 1] = recharged end
return out
"""

COMMIT = COMMIT.replace("ROLLUP_TTL", str(ROLLUP_TTL)).replace("ROLLUP_FOLD", str(ROLLUP_FOLD))

#: ARGV: P, sid, dim, day...: the rollups of those days by dim, summed: value, lookups,
#: cost, value, ... (micro-credits: exact in Lua's doubles below 2**53). The account's
#: queued rollups are folded first (a retry after a lost reply folds nothing twice: the
#: queue is emptied by the same script).
ROLLUP_SUM = FOLD_ROLLUPS.replace("ROLLUP_TTL", str(ROLLUP_TTL)) + r"""
local P, sid, dim = ARGV[1], ARGV[2], ARGV[3]
fold_rollups(P, sid)
local n, c, order = {}, {}, {}
for i = 4, #ARGV do
  local h = redis.call('HGETALL', P .. 'roll:' .. sid .. ':' .. ARGV[i] .. ':' .. dim)
  for j = 1, #h, 2 do
    local f, v = h[j], tonumber(h[j + 1])
    local cost = string.sub(f, 1, 1) == '$'
    if cost then f = string.sub(f, 2) end
    if dim == 'd' then f = ARGV[i] end   -- by day: the day is the value
    if cost then
      c[f] = (c[f] or 0) + v
    else
      if n[f] == nil then order[#order + 1] = f; n[f] = 0 end
      n[f] = n[f] + v
    end
  end
end
local out = {}
for _, f in ipairs(order) do
  out[#out + 1] = f
  out[#out + 1] = string.format('%.0f', n[f])
  out[#out + 1] = string.format('%.0f', c[f] or 0)
end
return out
"""

#: ARGV: P, sid, ttl_s, entry ids (comma-separated), (second, "id id ...")* : receipts past
#: their TTL leave the stream; their lookups stay in the history, marked expired (2).
EXPIRE_RECEIPTS = r"""
local P, sid, ttl = ARGV[1], ARGV[2], ARGV[3]
local sk = P .. 'rcpt:' .. sid
local dropped = 0
for i = 5, #ARGV, 2 do
  local ack, exp, lk = P .. 'ack:' .. ARGV[i], P .. 'exp:' .. ARGV[i], P .. 'lk:' .. ARGV[i]
  for id in string.gmatch(ARGV[i + 1], '%d+') do
    -- A record gone (to PostgreSQL) was answered before it left: not dropped now.
    if redis.call('SISMEMBER', ack, id) == 0 and redis.call('HEXISTS', lk, id) == 1
        and redis.call('SADD', exp, id) == 1 then
      dropped = dropped + 1
    end
  end
  if redis.call('EXISTS', exp) == 1 then redis.call('EXPIRE', exp, ttl) end
end
if dropped > 0 then
  local qk = P .. 'q:' .. sid
  if redis.call('DECRBY', qk, dropped) < 0 then redis.call('SET', qk, 0) end
end
for eid in string.gmatch(ARGV[4], '[^,]+') do
  redis.call('XACK', sk, 'rx', eid)
  redis.call('XDEL', sk, eid)
end
return dropped
"""
