"""A shared deployment with its history in PostgreSQL: Redis keeps what is hot.

The lookup path is the Redis deployment's, unchanged: a group commit is one script run
in Redis, and a submit_sm_resp goes out once its lookup and charge are in Redis's
append-only file. A drain then moves each lookup whose receipt is settled (none asked,
acknowledged, or expired) from Redis to PostgreSQL in batches, off the lookup path:

1. read a batch from the front of each account's history index in Redis;
2. write it to PostgreSQL (``Archive.write``: COPY, then an insert that skips ids
   already there) and commit;
3. only then remove those lookups from Redis (record, index entry, batch member, and
   the answered-receipt set member): nothing of a lookup stays in Redis once it is in
   PostgreSQL.

A process killed between 2 and 3 leaves the batch in Redis: the next drain writes it
again and PostgreSQL keeps the first copy, so every lookup is there exactly once. While
PostgreSQL is down, step 2 fails, nothing is removed, and the drain retries. Lookups
whose receipt is still owed stay in Redis until it is answered (receipts are read from
Redis). One process drains at a time (a lease in Redis); any process may.

Reads merge both sides: PostgreSQL's pages and what Redis still holds, by id.

Redis holds the lookups of this store as blobs (scripts.py: ``hs:SID``), one per account
and group commit, with the answers to their receipts appended per stream entry
(``ra:SID:EID``) and counted down (``rc:SID``): nothing in Redis is done per lookup, and
the drain takes a blob whole once its receipts are all answered (its pending flags set
here, by one replace of bytes). Lookups an earlier version left per lookup (``lk:SEC``,
``hist:SID``) are drained and read as before, so an upgrade needs no pause.

The ledger goes the same way, each account's entries from the front of its list in Redis
(``ledger:SID``) once they are ``LEDGER_HOLD`` old, with the Idempotency-Key of a top-up:
``ledn:SID`` counts the entries moved, so an entry's position in the ledger (its ``seq``
in PostgreSQL) is ``ledn`` plus its place in the list, and an entry written twice is there
once. A top-up's key stays in Redis (``idem:SID``, where the group commit refuses a key
used twice) for the hold: a retry checks the key (in Redis, then PostgreSQL) before it
commits, and no retry takes an hour from its check to its commit, so none is credited
twice.
"""
from __future__ import annotations

import heapq
import json
import time

from ..config import ConfigError
from ..ids import first_id_at
from ..redis.store import LedgerRow, RedisStore, Row, decode_batch
from .archive import Archive

#: Index entries read per account and round of the drain.
DRAIN_BATCH = 5000
#: ARGV: P, sid, start (ZRANGEBYLEX), count -> {the settled records (their pending flag as
#: answered: 0 acknowledged or none asked, 2 expired), separated by \30; what to remove
#: once they are in PostgreSQL (for DRAIN_REMOVE); index entries read; the last one; how
#: many records}. One call, one reply, a few commands per second of ids: the drain costs
#: Redis little and the process no per-lookup parsing. Seconds of ids by exact long
#: division (ids exceed Lua's 2^53): an id is a 19-digit index entry, its second
#: (id >> 22) // 1000.
DRAIN_READ = r"""
local P, sid = ARGV[1], ARGV[2]
local members = redis.call('ZRANGEBYLEX', P .. 'hist:' .. sid, ARGV[3], '+', 'LIMIT', 0, tonumber(ARGV[4]))
local D = 4194304000
local function second(m)
  local r = tonumber(string.sub(m, 1, 7))
  local cur = r * 1000000 + tonumber(string.sub(m, 8, 13))
  local q1 = math.floor(cur / D)
  cur = (cur - q1 * D) * 1000000 + tonumber(string.sub(m, 14, 19))
  return q1 * 1000000 + math.floor(cur / D)
end
-- The index entry where second s ends: (s + 1) * 4194304 * 1000, exact as digits.
local function bound(s)
  return string.format('%016.0f', (s + 1) * 4194304) .. '000'
end
local function call(cmd, key, list)
  local out = {}
  for j = 1, #list, 5000 do
    local part = redis.call(cmd, key, unpack(list, j, math.min(j + 4999, #list)))
    for k = 1, #part do out[#out + 1] = part[k] end
  end
  return out
end
-- Index entries are in id order: one group per second of ids, a few calls per group.
local groups, g, hi = {}, nil, ''
for _, m in ipairs(members) do
  if m >= hi then
    local s = second(m)
    hi = bound(s)
    g = {sec = string.format('%.0f', s), ids = {}, members = {}}
    groups[#groups + 1] = g
  end
  g.ids[#g.ids + 1] = string.match(m, '^0*(%d+)$')
  g.members[#g.members + 1] = m
end
local recs, spec, batches, border, zrem = {}, {}, {}, {}, {}
for _, g in ipairs(groups) do
  local got = call('HMGET', P .. 'lk:' .. g.sec, g.ids)
  local acked, expired
  local gone = {}
  for k = 1, #g.ids do
    local rec = got[k]
    local keep = false
    if rec then
      local p = string.sub(rec, 1, 1)
      if p == '1' then
        if not acked then
          acked = call('SMISMEMBER', P .. 'ack:' .. g.sec, g.ids)
          expired = call('SMISMEMBER', P .. 'exp:' .. g.sec, g.ids)
        end
        if acked[k] == 1 then p = '0' elseif expired[k] == 1 then p = '2' else keep = true end
      end
      if not keep then
        recs[#recs + 1] = (p == string.sub(rec, 1, 1)) and rec or (p .. string.sub(rec, 2))
        -- The batch id, the field after the id: most lookups have none (no string made).
        local at = string.find(rec, '\31', 3, true)
        if string.byte(rec, at + 1) ~= 31 then
          local b = string.match(rec, '^(%d+)', at + 1)
          if not batches[b] then batches[b] = {}; border[#border + 1] = b end
          local t = batches[b]; t[#t + 1] = g.members[k]
        end
      end
    end
    if not keep then
      gone[#gone + 1] = g.ids[k]
      zrem[#zrem + 1] = g.members[k]
    end
  end
  if #gone > 0 then spec[#spec + 1] = 's ' .. g.sec .. ' ' .. table.concat(gone, ' ') end
end
for _, b in ipairs(border) do spec[#spec + 1] = 'b ' .. b .. ' ' .. table.concat(batches[b], ' ') end
if #zrem > 0 then spec[#spec + 1] = 'z ' .. table.concat(zrem, ' ') end
return {table.concat(recs, '\30'), table.concat(spec, '\n'), #members, members[#members] or '', #recs}
"""

#: ARGV: P, sid, DRAIN_READ's removal: records, answered-receipt marks, batch members and
#: index entries of lookups now in PostgreSQL.
DRAIN_REMOVE = r"""
local P, sid = ARGV[1], ARGV[2]
local function bulk(cmd, key, list)
  for j = 1, #list, 7000 do
    redis.call(cmd, key, unpack(list, j, math.min(j + 6999, #list)))
  end
end
for line in string.gmatch(ARGV[3], '[^\n]+') do
  local t = {}
  for w in string.gmatch(line, '%S+') do t[#t + 1] = w end
  local kind = table.remove(t, 1)
  if kind == 'z' then
    bulk('ZREM', P .. 'hist:' .. sid, t)
  else
    local at = table.remove(t, 1)
    if kind == 's' then
      bulk('HDEL', P .. 'lk:' .. at, t)
      -- A receipt is settled once its record is gone (RedisStore.unanswered).
      bulk('SREM', P .. 'ack:' .. at, t)
      bulk('SREM', P .. 'exp:' .. at, t)
    else
      bulk('SREM', P .. 'batch:' .. at, t)
    end
  end
end
return 1
"""

#: ARGV: P, sid, start (XRANGE), records wanted -> {the last entry read, 1 when the stream
#: ended, then per settled entry (no receipt owed): id, r, c, n, e, l, h, b, answers}.
#: Entries still owed a receipt are passed over (their records stay in Redis).
BLOBS_READ = r"""
local P, sid, want = ARGV[1], ARGV[2], tonumber(ARGV[4])
local hk, rk = P .. 'hs:' .. sid, P .. 'rc:' .. sid
local out, got, start, last, ended = {'', 0}, 0, ARGV[3], '', 0
while got < want do
  local entries = redis.call('XRANGE', hk, start, '+', 'COUNT', 32)
  if #entries < 32 then ended = 1 end
  for _, e in ipairs(entries) do
    local f, flat = {}, e[2]
    for j = 1, #flat, 2 do f[flat[j]] = flat[j + 1] end
    local answers = ''
    local settled = f.n == '0'
    if not settled then
      local left = redis.call('HGET', rk, f.e)
      settled = (not left) or tonumber(left) <= 0
      if settled then answers = redis.call('GET', P .. 'ra:' .. sid .. ':' .. f.e) or '' end
    end
    if settled then
      for _, v in ipairs({e[1], f.r, f.c, f.n, f.e, f.l, f.h, f.b, answers}) do out[#out + 1] = v end
      got = got + tonumber(f.c)
    end
    last = e[1]
  end
  if ended == 1 then break end
  start = '(' .. last
end
out[1], out[2] = last, ended
return out
"""

#: ARGV: P, sid, (id, e, l, h, b)*: blobs now in PostgreSQL leave Redis, with their answers
#: and the places that point to them.
BLOBS_REMOVE = r"""
local P, sid = ARGV[1], ARGV[2]
local hk, rk = P .. 'hs:' .. sid, P .. 'rc:' .. sid
for i = 3, #ARGV, 5 do
  local hid, e = ARGV[i], ARGV[i + 1]
  redis.call('XDEL', hk, hid)
  if e ~= '' then
    redis.call('HDEL', rk, e)
    redis.call('DEL', P .. 'ra:' .. sid .. ':' .. e)
  end
  local member = sid .. ' ' .. hid .. ' ' .. ARGV[i + 2] .. ' ' .. ARGV[i + 3]
  redis.call('ZREM', P .. 'hx', member)
  for bid in string.gmatch(ARGV[i + 4], '%d+') do redis.call('SREM', P .. 'bx:' .. bid, member) end
end
return 1
"""

#: ARGV: P, members of hx -> per member {r, answers} ('' when drained meanwhile).
BLOBS_GET = r"""
local P = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local sid, hid = string.match(ARGV[i], '^(%S+) (%S+)')
  local got = redis.call('XRANGE', P .. 'hs:' .. sid, hid, hid)
  local r, answers = '', ''
  if #got == 1 then
    local flat = got[1][2]
    local f = {}
    for j = 1, #flat, 2 do f[flat[j]] = flat[j + 1] end
    r = f.r
    if f.e ~= '' then answers = redis.call('GET', P .. 'ra:' .. sid .. ':' .. f.e) or '' end
  end
  out[#out + 1] = r
  out[#out + 1] = answers
end
return out
"""

#: ARGV: P, sid, receipt entry ids (comma-separated), (entry id, "-id -id ", how many)*:
#: receipts past their TTL marked expired (those of an entry already drained: none), the
#: entries out of the stream. -> how many were marked.
BLOBS_EXPIRE = r"""
local P, sid = ARGV[1], ARGV[2]
local rk = P .. 'rc:' .. sid
local dropped = 0
for i = 4, #ARGV, 3 do
  local e, k = ARGV[i], tonumber(ARGV[i + 2])
  if redis.call('HEXISTS', rk, e) == 1 then
    redis.call('APPEND', P .. 'ra:' .. sid .. ':' .. e, ARGV[i + 1])
    redis.call('HINCRBY', rk, e, -k)
    dropped = dropped + k
  end
end
if dropped > 0 then
  local qk = P .. 'q:' .. sid
  if redis.call('DECRBY', qk, dropped) < 0 then redis.call('SET', qk, 0) end
end
local sk = P .. 'rcpt:' .. sid
for eid in string.gmatch(ARGV[3], '[^,]+') do
  redis.call('XACK', sk, 'rx', eid)
  redis.call('XDEL', sk, eid)
end
return dropped
"""

#: Seconds a ledger entry (and its top-up's Idempotency-Key) stays in Redis before the
#: drain moves it to PostgreSQL (see the module docstring).
LEDGER_HOLD = 3600.0
#: Seconds between the drain's looks at the ledgers.
LEDGER_EVERY = 60.0

#: ARGV: P, sid, ledn as read, entries moved, Idempotency-Keys of those: 1 when done, 0
#: when another drain moved them first (ledn changed).
LEDGER_MOVED = r"""
local P, sid = ARGV[1], ARGV[2]
local nk = P .. 'ledn:' .. sid
if tonumber(redis.call('GET', nk) or '0') ~= tonumber(ARGV[3]) then return 0 end
redis.call('LTRIM', P .. 'ledger:' .. sid, ARGV[4], -1)
redis.call('INCRBY', nk, ARGV[4])
if #ARGV > 4 then redis.call('HDEL', P .. 'idem:' .. sid, unpack(ARGV, 5)) end
return 1
"""


class ArchivedStore(RedisStore):
    """Redis for the hot state, PostgreSQL (``archive``) for the history."""

    blobs = True

    def __init__(self, storage: dict, tz: str = "UTC"):
        pg = storage.get("postgres")
        if not isinstance(pg, dict) or not isinstance(pg.get("dsn"), str) \
                or not pg["dsn"].startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"storage.postgres: expected {{dsn: postgresql://...}}, got {pg!r}")
        unknown = set(pg) - {"dsn"}
        if unknown:
            raise ConfigError(f"storage.postgres: unknown key(s) {', '.join(sorted(unknown))}; expected dsn")
        self.archive = Archive(pg["dsn"])
        try:
            super().__init__(storage["redis"], tz)
        except BaseException:
            self.archive.close()
            raise
        #: account -> where this pass of the drain goes on in its index ("-": the start)
        self._cursor: dict[str, str] = {}
        self._ledger_moved = self._ops.register_script(LEDGER_MOVED)
        self._ledger_at = 0.0   # when the drain last looked at the ledgers
        self._drain_read = self._r.register_script(DRAIN_READ)
        self._drain_remove = self._ops.register_script(DRAIN_REMOVE)
        self._blobs_read = self._r.register_script(BLOBS_READ)
        self._blobs_remove = self._ops.register_script(BLOBS_REMOVE)
        self._blobs_get = self._r.register_script(BLOBS_GET)
        self._blobs_expire = self._ops.register_script(BLOBS_EXPIRE)
        #: account -> where this pass of the drain goes on in its stream of blobs
        self._blob_cursor: dict[str, str] = {}

    @property
    def file(self) -> str:
        return f"{super().file} + {self.archive.where}"

    # ----------------------------------------------------------------- drain
    def drain_lock(self, seconds: float) -> bool:
        """The drain's lease: taken when free, renewed when this process holds it."""
        key = self.P + "drain"
        ms = max(1000, int(seconds * 1000))
        if self._ops.set(key, self.tag, nx=True, px=ms):
            return True
        if self._ops.get(key) == self.tag.encode():
            self._ops.pexpire(key, ms)
            return True
        return False

    def drain(self, batch: int = DRAIN_BATCH, now: float | None = None) -> int:
        """One round (see the module docstring): how many lookups and ledger entries went
        to PostgreSQL."""
        now = time.time() if now is None else now
        # The ledger's entries wait an hour anyway: looked at once a minute, not each round.
        ledger = now - self._ledger_at >= LEDGER_EVERY
        if ledger:
            self._ledger_at = now
        moved = 0
        sids = sorted(s.decode() for s in self._r.smembers(self.P + "accounts"))
        pipe = self._r.pipeline(transaction=False)
        for sid in sids:
            pipe.exists(f"{self.P}hist:{sid}")
        for sid, legacy in zip(sids, pipe.execute()):
            moved += self._drain_blobs(sid, batch)
            if legacy:  # lookups an earlier version kept one by one
                moved += self._drain_account(sid, batch)
            if ledger:
                moved += self._drain_ledger(sid, now - LEDGER_HOLD)
        return moved

    def _ledger_head(self, sid: str, count: int = -1) -> tuple[int, list]:
        """(entries moved so far, the entries Redis holds), read at one instant."""
        pipe = self._r.pipeline(transaction=True)
        pipe.get(f"{self.P}ledn:{sid}")
        pipe.lrange(f"{self.P}ledger:{sid}", 0, count)
        ledn, entries = pipe.execute()
        return int(ledn or 0), [json.loads(e) for e in entries]

    def _drain_ledger(self, sid: str, before: float) -> int:
        ledn, entries = self._ledger_head(sid, 999)
        old = 0
        while old < len(entries) and entries[old][0] < before:
            old += 1
        if not old:
            return 0
        entries = entries[:old]
        keys = [e[4] for e in entries if len(e) > 4]
        answers = dict(zip(keys, self._r.hmget(f"{self.P}idem:{sid}", keys))) if keys else {}
        rows = []
        for k, (at, kind, amount, note, *key) in enumerate(entries):
            request = answer = None
            if key and answers.get(key[0]) is not None:
                request, answer = json.loads(answers[key[0]])
            rows.append((sid, ledn + k, float(at), kind, int(amount), note or "", key[0] if key else None,
                         request, answer))
        self.archive.write_ledger(rows)
        return old if self._ledger_moved(args=[self.P, sid, ledn, old, *keys]) else 0

    def _drain_account(self, sid: str, batch: int) -> int:
        start = self._cursor.get(sid, "-")
        blob, spec, count, last, settled = self._drain_read(args=[self.P, sid, start, batch])
        # A pass ends at the end of the index; the next starts over, for the lookups still
        # owed a receipt and those committed late (by a process whose clock is behind).
        if count < batch:
            self._cursor.pop(sid, None)
        else:
            self._cursor[sid] = "(" + last.decode()
        if not spec:
            return 0
        if settled:
            self.archive.write_records(blob)
        # Durable in PostgreSQL: out of Redis (index entries of records already expired too).
        self._drain_remove(args=[self.P, sid, spec])
        return settled

    def _drain_blobs(self, sid: str, batch: int) -> int:
        """The account's settled blobs (at least ``batch`` lookups when it has them) into
        PostgreSQL in one COPY, then out of Redis: how many lookups."""
        got = self._blobs_read(args=[self.P, sid, self._blob_cursor.get(sid, "-"), batch])
        last, ended, flat = got[0], got[1], got[2:]
        # A pass ends at the end of the stream; the next starts over, for the blobs still
        # owed a receipt.
        if ended:
            self._blob_cursor.pop(sid, None)
        else:
            self._blob_cursor[sid] = "(" + last.decode()
        parts, done, lo, hi, moved = [], [], None, None, 0
        for j in range(0, len(flat), 9):
            hid, r, c, n, e, low, high, bids, answers = flat[j:j + 9]
            if n != b"0":
                answers = answers.split()
                plain = {a for a in answers if a[:1] != b"-"}
                expired = {a[1:] for a in answers if a[:1] == b"-"} - plain
                if len(plain) + len(expired) < int(n):
                    continue  # an answer counted twice: the rest is still owed
                r = _answered(r, expired)
            parts.append(r)
            done += [hid, e, low, high, bids]
            lo = low if lo is None or low < lo else lo
            hi = high if hi is None or high > hi else hi
            moved += int(c)
        if not parts:
            return 0
        self.archive.write_records(b"\x1e".join(parts), span=(int(lo), int(hi)))
        # Durable in PostgreSQL: out of Redis.
        self._blobs_remove(args=[self.P, sid, *done])
        return moved

    def _blob_rows(self, members: list[bytes]) -> list[Row]:
        """The lookups of the blobs at these places (members of ``hx``), their pending flags
        as they are now."""
        if not members:
            return []
        got = self._blobs_get(args=[self.P, *members])
        rows: list[Row] = []
        for r, answers in zip(got[::2], got[1::2]):
            if not r:
                continue  # drained meanwhile: PostgreSQL has it
            ids = answers.split()
            plain = {int(a) for a in ids if a[:1] != b"-"}
            expired = {int(a[1:]) for a in ids if a[:1] == b"-"} - plain
            for row in decode_batch(r):
                if row[17] == 1 and (row[0] in plain or row[0] in expired):
                    row = Row(row[:17] + (0 if row[0] in plain else 2,))
                rows.append(row)
        return rows

    def _places(self, low: int = 0, high: int | None = None, sid: str | None = None) -> list[bytes]:
        """The blobs (members of ``hx``) that may hold ids from ``low`` to ``high`` of the
        account (any account: None)."""
        members = self._r.zrangebyscore(self.P + "hx", low >> 22, "+inf")
        out = []
        for m in members:
            s, _, lo, hi = m.split()
            if (sid is None or s.decode() == sid) and int(hi) >= low and (high is None or int(lo) <= high):
                out.append(m)
        return out

    def unanswered(self, rows: list[Row], sid: str = "", entry: tuple | None = None) -> list[Row]:
        if entry is None or b"a" not in entry[1]:
            if entry is not None:
                self.legacy.add(entry[0])
            return super().unanswered(rows, sid, entry)
        eid = entry[0].decode()
        pipe = self._r.pipeline(transaction=False)
        pipe.hexists(f"{self.P}rc:{sid}", eid)
        pipe.get(f"{self.P}ra:{sid}:{eid}")
        owed, answers = pipe.execute()
        if not owed:
            return []  # the entry's lookups left for PostgreSQL: every receipt was answered
        answered = {int(a.lstrip(b"-")) for a in (answers or b"").split()}
        return [r for r in rows if r[0] not in answered]

    def _expire_entries(self, sid: str, entries: list) -> int:
        legacy = [e for e in entries if b"a" not in e[1]]
        n = super()._expire_entries(sid, legacy) if legacy else 0
        blobs = [e for e in entries if b"a" in e[1]]
        if not blobs:
            return n
        args = [self.P, sid, ",".join(e[0].decode() for e in blobs)]
        for e in blobs:
            owed = self.unanswered(decode_batch(e[1][b"r"]), sid, e)
            if owed:
                args += [e[0], "".join(f"-{r[0]} " for r in owed), len(owed)]
        return n + self._blobs_expire(args=args)

    def retention(self, days: float, now: float | None = None) -> list[str]:
        """Partitions made ahead, and those older than ``days`` dropped (0: kept)."""
        now = time.time() if now is None else now
        self.archive.prepare(now)
        return self.archive.drop_before(now - days * 86400) if days else []

    # ----------------------------------------------------------------- reads
    def lookup(self, message_id: int) -> Row | None:
        hot = super().lookup(message_id)
        if hot is not None:
            return hot
        for row in self._blob_rows(self._places(message_id, message_id)):
            if row[0] == message_id:
                return row
        row = self.archive.lookup(message_id)
        return Row(row) if row is not None else None

    def batch(self, batch_id: int) -> list[Row]:
        blobs = sorted((r for r in self._blob_rows(list(self._r.smembers(f"{self.P}bx:{batch_id}")))
                        if r[1] == batch_id), key=lambda r: r[0])
        return _merge([super().batch(batch_id), blobs, [Row(r) for r in self.archive.batch(batch_id)]],
                      False, None)

    def history(self, system_id: str | None = None, since: float | None = None,
                until: float | None = None, limit: int = 1000, after_id: int = 0,
                newest_first: bool = False) -> list[Row]:
        args = (system_id, since, until, limit, after_id, newest_first)
        # The blobs', by the rule of Archive.history.
        low = first_id_at(since) - 1 if since else 0
        above = low if newest_first else max(after_id, low)
        below = [first_id_at(until)] if until is not None else []
        if newest_first and after_id:
            below.append(after_id)
        top = min(below) if below else None
        blobs = sorted((r for r in self._blob_rows(self._places(above + 1, top, system_id))
                        if r[0] > above and (top is None or r[0] < top) and
                        (system_id is None or r[2] == system_id)), key=lambda r: r[0], reverse=newest_first)
        return _merge([super().history(*args), blobs[:limit], [Row(r) for r in self.archive.history(*args)]],
                      newest_first, limit)

    def max_id(self) -> int:
        newest = [int(m.split()[3]) for m in self._r.zrevrange(self.P + "hx", 0, 15)]
        return max(super().max_id(), self.archive.max_id(), *newest)

    def ledger(self, system_id: str) -> list[LedgerRow]:
        ledn, entries = self._ledger_head(system_id)
        old = self.archive.ledger(system_id, ledn) if ledn else []
        return [LedgerRow(e) for e in old] + [LedgerRow(e[:4]) for e in entries]

    def credit_additions(self, system_id: str) -> int:
        ledn, entries = self._ledger_head(system_id)
        before = self.archive.ledger_sums(system_id, ledn)[1] if ledn else 0
        return before + sum(1 for e in entries if int(e[2]) > 0)

    def ledger_totals(self) -> dict[str, int]:
        out = {}
        for sid in sorted(s.decode() for s in self._r.smembers(self.P + "accounts")):
            ledn, entries = self._ledger_head(sid)
            out[sid] = (self.archive.ledger_sums(sid, ledn)[0] if ledn else 0) + sum(int(e[2]) for e in entries)
        return out

    def idempotent(self, system_id: str, key: str) -> tuple[str, str] | None:
        return super().idempotent(system_id, key) or self.archive.idempotent(system_id, key)

    def close(self) -> None:
        super().close()
        self.archive.close()


def _answered(blob: bytes, expired: set[bytes]) -> bytes:
    """A blob's records with their receipts answered: pending 1 becomes 0 (acknowledged),
    or 2 for the ids in ``expired``."""
    if not expired:
        return (b"\x1e" + blob).replace(b"\x1e1\x1f", b"\x1e0\x1f")[1:]
    out = []
    for rec in blob.split(b"\x1e"):
        if rec[:2] == b"1\x1f":
            rec = (b"2" if rec[2:rec.index(b"\x1f", 2)] in expired else b"0") + rec[1:]
        out.append(rec)
    return b"\x1e".join(out)


def _merge(sides: list[list[Row]], newest_first: bool, limit: int | None) -> list[Row]:
    """Pages of both sides as one, in id order; a lookup on both (drained, not yet
    removed from Redis) once, as Redis has it."""
    out: list[Row] = []
    last = None
    for row in heapq.merge(*sides, key=lambda r: r[0], reverse=newest_first):
        if row[0] != last:
            out.append(row)
            last = row[0]
            if limit is not None and len(out) == limit:
                break
    return out
