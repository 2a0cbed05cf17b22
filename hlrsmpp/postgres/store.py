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
from ..redis.store import LedgerRow, RedisStore, Row
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
        for sid in sorted(s.decode() for s in self._r.smembers(self.P + "accounts")):
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
        row = self.archive.lookup(message_id)
        return Row(row) if row is not None else None

    def batch(self, batch_id: int) -> list[Row]:
        return _merge([super().batch(batch_id), [Row(r) for r in self.archive.batch(batch_id)]],
                      False, None)

    def history(self, system_id: str | None = None, since: float | None = None,
                until: float | None = None, limit: int = 1000, after_id: int = 0,
                newest_first: bool = False) -> list[Row]:
        args = (system_id, since, until, limit, after_id, newest_first)
        return _merge([super().history(*args), [Row(r) for r in self.archive.history(*args)]],
                      newest_first, limit)

    def max_id(self) -> int:
        return max(super().max_id(), self.archive.max_id())

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
