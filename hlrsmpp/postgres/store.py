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
from ..redis.store import LedgerRow, RedisStore, Row, pad, second
from .archive import Archive

#: Index entries read per account and round of the drain.
DRAIN_BATCH = 5000
#: Seconds a ledger entry (and its top-up's Idempotency-Key) stays in Redis before the
#: drain moves it to PostgreSQL (see the module docstring).
LEDGER_HOLD = 3600.0

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
        moved = 0
        for sid in sorted(s.decode() for s in self._r.smembers(self.P + "accounts")):
            moved += self._drain_account(sid, batch)
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
        key = f"{self.P}hist:{sid}"
        start = self._cursor.get(sid, "-")
        members = self._r.zrangebylex(key, start, "+", 0, batch)
        # A pass ends at the end of the index; the next starts over, for the lookups still
        # owed a receipt and those committed late (by a process whose clock is behind).
        if len(members) < batch:
            self._cursor.pop(sid, None)
        else:
            self._cursor[sid] = "(" + members[-1].decode()
        if not members:
            return 0
        ids = [int(m) for m in members]
        rows = self._rows(ids)
        settled = [r for r in rows if r[17] != 1]
        held = {r[0] for r in rows if r[17] == 1}
        self.archive.write(settled)
        # Durable in PostgreSQL: out of Redis (index entries of records already expired too).
        gone = [i for i in ids if i not in held]
        if not gone:
            return 0
        batch_of = {r[0]: r[1] for r in settled if r[1] is not None}
        by_second: dict[int, list[int]] = {}
        for lid in gone:
            by_second.setdefault(second(lid), []).append(lid)
        pipe = self._ops.pipeline(transaction=True)
        pipe.zrem(key, *[pad(i) for i in gone])
        for b, lids in by_second.items():
            pipe.hdel(f"{self.P}lk:{b}", *lids)
            # A receipt is settled once its record is gone (RedisStore.unanswered).
            pipe.srem(f"{self.P}ack:{b}", *lids)
            pipe.srem(f"{self.P}exp:{b}", *lids)
        by_batch: dict[int, list[str]] = {}
        for lid, bid in batch_of.items():
            by_batch.setdefault(bid, []).append(pad(lid))
        for bid, pids in by_batch.items():
            pipe.srem(f"{self.P}batch:{bid}", *pids)
        pipe.execute()
        return len(settled)

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
