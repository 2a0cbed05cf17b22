"""The shared store: Redis, for several hlrsmpp processes (on one host or many).

``RedisStore`` keeps the interface of the embedded SQLite ``Store`` (group commit on
the journal's writer thread, the same reads) and adds what processes share: node
numbers, leases of credit, the session registry, receipt streams. Every write that
must be atomic across processes is one Lua script (scripts.py). Everything here is
synchronous and thread-safe: the loop side (cluster.py) calls it on worker threads.

A group commit is ONE script run, fenced by this process's node lease and made
idempotent-checkable by a commit sequence number: lookups (history with a TTL, the
account's id index, the batch index), the commit's receipts as one entry of each
account's receipt stream, answered receipts (set members; a stream entry leaves once all
its receipts are answered), period counters, spent credit, settings and ledger. No
per-lookup round trip, and inside Redis a few variadic calls per account, none per lookup.
"""
from __future__ import annotations

import heapq
import json
from collections import deque
import secrets
import threading
import time
from datetime import date, timedelta
from decimal import Decimal
from typing import Callable, Iterable, Iterator, NoReturn, Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..accounts.calendar import Calendar
from ..domain import LOOKUP_COLUMNS, ROLLUP_DIMENSIONS, rollup, rollup_dimensions
from ..config import ConfigError
from ..ids import MAX_NODE, first_id_at
from . import scripts
from .messages import RedisMessages
from .outbox import RedisOutbox
from .options import RedisOptions

GROUP = "rx"
#: Seconds a commit's receipt rows wait for this process's own reader (RedisStore.written).
WRITTEN_KEEP = 5.0
_FS, _RS = "\x1f", "\x1e"
_INDEX = {name: i for i, name in enumerate(LOOKUP_COLUMNS)}
LEDGER_COLUMNS = ("at", "kind", "amount", "note")


class Fenced(RuntimeError):
    """This process's node lease is lost: another process may own its number now."""


class Row(tuple):
    """A lookup row, read like ``sqlite3.Row``: by position, by column name, ``dict(row)``."""
    __slots__ = ()
    columns = LOOKUP_COLUMNS

    def __getitem__(self, key):
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self):
        return list(self.columns)

    _index = _INDEX


class LedgerRow(Row):
    __slots__ = ()
    columns = LEDGER_COLUMNS
    _index = {name: i for i, name in enumerate(LEDGER_COLUMNS)}


def encode_row(row: tuple) -> str:
    """A journal row (LOOKUP_COLUMNS order) as the stored record: the pending flag first
    (one byte, rewritten in place when the receipt is acknowledged), then the columns."""
    (lid, batch, sid, channel, msisdn, submitted, done, cost, err, cc, nnc, ported, p_nnc,
     roaming, r_cc, r_nnc, map_error, pending) = row
    return (f"{pending}\x1f{lid}\x1f{'' if batch is None else batch}\x1f{sid}\x1f{channel}\x1f{msisdn}"
            f"\x1f{submitted!r}\x1f{done!r}\x1f{cost}\x1f{err}\x1f{cc}\x1f{nnc}\x1f{ported}\x1f{p_nnc}"
            f"\x1f{roaming}\x1f{r_cc}\x1f{r_nnc}\x1f{'' if map_error is None else map_error}")


def decode_row(rec: bytes | str) -> Row:
    if isinstance(rec, bytes):
        rec = rec.decode()
    (pending, lid, batch, sid, channel, msisdn, submitted, done, cost, err, cc, nnc, ported, p_nnc,
     roaming, r_cc, r_nnc, map_error) = rec.split(_FS)
    return Row((int(lid), int(batch) if batch else None, sid, channel, msisdn, float(submitted),
                float(done), int(cost), int(err), cc, nnc, int(ported), p_nnc, int(roaming), r_cc,
                r_nnc, int(map_error) if map_error else None, int(pending)))


def pad(lookup_id: int) -> str:
    return f"{lookup_id:019d}"


def second(lookup_id: int) -> int:
    """The history bucket of an id: the second (since the ids' epoch) it was issued in."""
    return (lookup_id >> 22) // 1000


def decode_batch(blob: bytes) -> list[Row]:
    """A receipt stream entry: the records of one group commit's SMPP lookups."""
    return [decode_row(rec) for rec in blob.decode().split(_RS)]


def rollup_args(sums: dict) -> list:
    """The per-day rollups of one commit as the COMMIT script's arguments: per account and
    day, the fields of its HASH and what each grows by (see scripts.py's key layout)."""
    days: dict[tuple[str, str, str], list] = {}
    for (sid, dim, value, day), (n, cost) in rollup_dimensions(sums).items():
        days.setdefault((sid, day, dim), []).extend((value, n, f"${value}", cost))
    args: list = [len(days)]
    for (sid, day, dim), fields in days.items():
        args += [f"{sid}:{day}:{dim}", len(fields) // 2, *fields]
    return args


def queued_rollups(sums: dict) -> list:
    """The per-day rollups of one commit as the COMMIT script's arguments: per account, one
    entry for its queue (``roll:SID`` in scripts.py's key layout) with the commit's sums per
    day, country, network and status; the script folds them into the HASH of each
    dimension (cheaper there than summing each dimension here first)."""
    entries: dict[str, list[str]] = {}
    for (sid, day, cc, network, err), (n, cost) in sums.items():
        entries.setdefault(sid, []).append(f"{day}\x1f{cc}\x1f{network}\x1f{err}\x1f{n}\x1f{cost}")
    args: list = [len(entries)]
    for sid, lines in entries.items():
        args += [sid, _RS.join(lines)]
    return args


def packages_json(packages: list[dict]) -> tuple[str, int]:
    """An account record's packages as Redis keeps them (``acct:SID`` pk), and their credit."""
    pks, amount = [], 0
    for p in packages:
        c = _micro(p["credit"])
        s = _micro(p["size"]) if p.get("size") is not None else c
        pks.append({"c": str(c), "s": str(max(s, c)), "b": p.get("bought") or "", "l": p.get("label") or ""})
        amount += c
    return json.dumps(pks), amount


def _micro(text) -> int:
    return int(Decimal(str(text)) * 1_000_000)


class RedisStore:
    """The Redis twin of ``accounts.store.Store``; see the module docstring."""

    #: No C group commit: the journal's writer thread calls ``commit``.
    committer = None
    #: No filtered scan of its own: the history's reader filters ``history`` pages.
    history_scan = None
    #: Lookups kept as one blob per account and commit (the history store: see scripts.py)
    blobs = False

    def on_due(self, wake: Callable[[], object]) -> None:
        """Nothing of its own to write: every write comes with a group commit."""

    def __init__(self, cfg, tz: str = "UTC"):
        self.opts = opts = RedisOptions.from_config(cfg)
        self.P = opts.prefix
        self.lease_ms = int(opts.lease * 1000)
        self.ttl = int(opts.history_ttl)
        self.periods = Calendar(tz)
        common = dict(socket_keepalive=True, health_check_interval=30)
        try:
            # Reads: idempotent, retried on a connection blip.
            self._r = redis.Redis.from_url(opts.url, socket_timeout=10, **common)
            # Scripts that change state are never retried blindly (a retry could apply one
            # twice); the writer waits as long as Redis takes (a timeout would be ambiguous).
            self._ops = redis.Redis.from_url(opts.url, socket_timeout=10, retry=Retry(NoBackoff(), 0), **common)
            self._w = redis.Redis.from_url(opts.url, socket_timeout=None, retry=Retry(NoBackoff(), 0),
                                           single_connection_client=True, **common)
            version = self._r.info("server").get("redis_version", "0")
        except redis.RedisError as err:
            raise ConfigError(f"storage.redis: cannot reach {self.file}: {err}") from None
        if tuple(int(x) for x in str(version).split(".")[:2]) < (6, 2):
            raise ConfigError(f"storage.redis: Redis {version} at {self.file} is too old (6.2 or later: XAUTOCLAIM)")
        reg = self._ops.register_script
        self._acquire = reg(scripts.NODE_ACQUIRE)
        self._leave = reg(scripts.NODE_LEAVE)
        self._reap = reg(scripts.NODE_REAP)
        self._heartbeat = reg(scripts.HEARTBEAT)
        self._rx_claim = reg(scripts.RX_CLAIM)
        self._rx_release = reg(scripts.RX_RELEASE)
        self._tx_claim = reg(scripts.TX_CLAIM)
        self._reserve = reg(scripts.RESERVE)
        self._give_back = reg(scripts.GIVE_BACK)
        self._seed = reg(scripts.SEED)
        self._expire = reg(scripts.EXPIRE_RECEIPTS)
        self._commit = self._w.register_script(scripts.COMMIT)
        self.outbox = RedisOutbox(self)
        self.messages = RedisMessages(self)
        self._rollup_sum = reg(scripts.ROLLUP_SUM)
        self._lock = threading.Lock()
        self.cseq = 0
        self.fenced = False
        #: lookup id -> (system_id, stream entry id, generation) of receipts this process delivers
        self.entries: dict[int, tuple[str, bytes, int]] = {}
        #: (stream entry id, generation) -> ids of its receipts not answered yet
        self.batches: dict[tuple[bytes, int], set[int]] = {}
        #: (system_id, period key) -> lookups this process committed in it
        self.mine: dict[tuple[str, str], int] = {}
        self._settings: dict[str, str] = {}   # system_id -> settings JSON as last written/read
        #: (system_id, Idempotency-Key) of ledger entries a commit left out: that key was taken
        self.duplicates: set[tuple[str, str]] = set()
        #: set by the cluster: is this account's credit limited here (charges count)?
        self.limited: Callable[[str], bool] = lambda sid: True
        #: set by the cluster: does this process read the account's receipt stream now?
        self.reading: Callable[[str], bool] = lambda sid: False
        #: (system_id, commit number) -> the rows of the receipts that commit added to the
        #: account's stream, for this process's own reader (rows it has, never decoded back);
        #: kept WRITTEN_KEEP seconds at most (the receiver may have moved meanwhile)
        self.written: dict[tuple[str, int], list[tuple]] = {}
        self._written_at: deque[tuple[float, tuple[str, int]]] = deque()
        #: set by the cluster: called on the writer thread after each successful commit
        self.on_commit: Callable[[list], None] | None = None
        #: set by the cluster: an account's auto-recharge as the commit script takes it
        #: (below, add, max_per_month, add text, below text, notification channels JSON),
        #: None without one
        self.recharge: Callable[[str], tuple | None] = lambda sid: None
        #: set by the cluster: called on the writer thread with the auto-recharges a commit
        #: made, [(system_id, month, count, add)]
        self.on_recharged: Callable[[list], None] | None = None
        self.on_fenced: Callable[[], None] | None = None
        self.closed = False
        #: with blobs: receipt stream entries of the layout before them (by id; a deployment
        #: upgraded with receipts owed), answered as they were
        self.legacy: set[bytes] = set()
        self._join()

    @property
    def file(self) -> str:
        """Where the data lives, for logs (no password)."""
        url = self.opts.url
        if "@" in url:
            scheme, rest = url.split("://", 1)
            url = f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
        return url

    # ------------------------------------------------------------- the node
    def _join(self) -> None:
        """Take a free node number (10 bits: message ids stay unique across processes)."""
        self.token = secrets.token_hex(12)
        start = self._ops.incr(self.P + "nodeseq")
        # Until the heartbeat runs (loading the HLR tables takes a while) a longer lease.
        first = max(self.lease_ms, 120_000)
        for k in range(MAX_NODE + 1):
            n = (start + k) % (MAX_NODE + 1)
            if self._acquire(args=[self.P, n, self.token, first]) == 1:
                self.node = n
                break
        else:
            raise ConfigError("storage.redis: every node number (1024) is taken")
        self.tag = f"{self.node}.{self.token[:8]}"
        self.consumer = f"n{self.node}"

    def heartbeat(self, receivers: list[tuple[str, str]], transmitters: list[tuple[str, str]]) -> list[str]:
        """Renew the node lease and this process's sessions; the system_ids whose receiver
        lease was lost (another process holds it now). Raises Fenced when the node is lost."""
        args = [self.P, self.node, self.token, self.lease_ms, int(time.time() * 1000), len(receivers)]
        for sid, value in receivers:
            args += [sid, value]
        for sid, member in transmitters:
            args += [sid, member]
        lost = self._heartbeat(args=args)
        if lost == -1:
            self._fence()
        return [s.decode() for s in lost]

    def _fence(self) -> None:
        if not self.fenced:
            self.fenced = True
            if self.on_fenced is not None:
                self.on_fenced()
        raise Fenced(f"node {self.node}: lease lost")

    def leave(self) -> int:
        """A clean exit: unspent credit goes back to the accounts, the node number is free."""
        back = self._leave(args=[self.P, self.node, self.token])
        return int(back) if back != -1 else 0

    def reap(self) -> list[int]:
        """Give back the leases of dead processes (node lease expired); the nodes reaped."""
        reaped = []
        for raw in self._r.smembers(self.P + "nodes"):
            n = int(raw)
            if n != self.node and self._reap(args=[self.P, n]) != -1:
                reaped.append(n)
        return reaped

    def durability_warnings(self) -> list[str]:
        """What in the Redis configuration breaks the promises (receipts never lost, exact
        credit): persistence off, or eviction of keys under memory pressure."""
        out = []
        try:
            conf = {}
            for name in ("appendonly", "save", "maxmemory-policy"):
                conf.update({k if isinstance(k, str) else k.decode(): v if isinstance(v, str) else v.decode()
                             for k, v in self._r.config_get(name).items()})
        except redis.RedisError:
            return out  # CONFIG refused (a managed service): nothing to check
        if conf.get("appendonly") != "yes" and not conf.get("save"):
            out.append("neither appendonly nor save is on: a restart of Redis loses everything")
        elif conf.get("appendonly") != "yes":
            out.append("appendonly is off: a crash of Redis loses what came after the last snapshot")
        if conf.get("maxmemory-policy", "noeviction") != "noeviction":
            out.append(f"maxmemory-policy is {conf['maxmemory-policy']}: Redis may evict receipts and credit; "
                       "use noeviction")
        return out

    # ------------------------------------------------------- session registry
    def rx_claim(self, sid: str) -> int:
        f = self._rx_claim(args=[self.P, self.node, self.token, self.lease_ms, sid])
        if f == -1:
            self._fence()
        return int(f)

    def rx_release(self, sid: str, value: str) -> None:
        self._rx_release(args=[self.P, sid, value])

    def rx_value(self, fence: int) -> str:
        return f"{self.node}:{fence}"

    def tx_claim(self, sid: str, member: str, max_tx: int) -> bool:
        r = self._tx_claim(args=[self.P, self.node, self.token, self.lease_ms, int(time.time() * 1000),
                                 sid, member, max_tx])
        if r == -1:
            self._fence()
        return r == 1

    def tx_release(self, sid: str, member: str) -> None:
        self._ops.zrem(self.P + "tx:" + sid, member)

    # ------------------------------------------------------------ accounts
    def seed(self, records: Iterable[dict]) -> int:
        """Accounts of the config file that Redis does not know yet: created with their
        credit as the free pool. Known ones keep their shared state. Returns how many."""
        created = 0
        now = time.time()
        for rec in records:
            sid = rec["system_id"]
            settings = {k: v for k, v in rec.items() if k != "packages"}
            pk, amount = packages_json(rec["packages"]) if rec.get("packages") is not None else ("", 0)
            ledger = json.dumps([now, "top_up", amount, "config"])
            created += self._seed(args=[self.P, self.tag, sid, _canon(settings), pk, ledger, amount])
        return created

    def account_records(self) -> dict[str, dict]:
        """Every account with its settings; credit-limited ones with ``packages: []``: the
        credit is shared, and leased to a process as it needs it."""
        sids = sorted(s.decode() for s in self._r.smembers(self.P + "accounts"))
        pipe = self._r.pipeline(transaction=False)
        for sid in sids:
            pipe.hmget(self.P + "acct:" + sid, "settings", "pk")
        out = {}
        for sid, (settings, pk) in zip(sids, pipe.execute()):
            if settings is None:
                continue
            rec = json.loads(settings)
            self._settings[sid] = _canon(rec)
            if pk is not None:
                rec["packages"] = []
            out[sid] = rec
        return out

    def account_record(self, sid: str) -> dict | None:
        settings, pk = self._r.hmget(self.P + "acct:" + sid, "settings", "pk")
        if settings is None:
            return None
        rec = json.loads(settings)
        if pk is not None:
            rec["packages"] = []
        return rec

    def settings_seen(self, sid: str, record: dict) -> None:
        """This record came from Redis: do not write it back."""
        self._settings[sid] = _canon({k: v for k, v in record.items() if k != "packages"})

    def reserve(self, sid: str, want: int) -> tuple[int, list[tuple[int, str, str]], int]:
        """Lease up to ``want`` micro-credits (never more than the free pool holds):
        (granted, slices [(credit, bought, label)], free left)."""
        try:
            granted, slices, free = self._reserve(args=[self.P, self.node, self.token, sid, want])
        except redis.ResponseError as err:
            if "FENCED" in str(err):
                self._fence()
            raise
        return int(granted), [(int(c), b, label) for c, b, label in json.loads(slices)], int(free)

    def give_back(self, sid: str, amount: int) -> int:
        try:
            return int(self._give_back(args=[self.P, self.node, self.token, sid, amount]))
        except redis.ResponseError as err:
            if "FENCED" in str(err):
                self._fence()
            raise

    def want_credit(self, sid: str, seconds: float = 2.0) -> None:
        """Ask the other processes to give this account's idle leases back."""
        self._ops.zadd(self.P + "want", {sid: int((time.time() + seconds) * 1000)})

    def wanted(self) -> list[str]:
        now = int(time.time() * 1000)
        pipe = self._r.pipeline(transaction=False)
        pipe.zremrangebyscore(self.P + "want", "-inf", now)
        pipe.zrange(self.P + "want", 0, -1)
        return [s.decode() for s in pipe.execute()[1]]

    def credit(self, sid: str) -> dict | None:
        """The account's credit as the deployment holds it (micro-credits): free in the
        packages, leased per node (unspent), and the total. None when unlimited."""
        pk, leases = self._pipe_credit([sid])[0]
        return _credit_view(pk, leases)

    def credit_many(self, sids: list[str]) -> dict[str, dict | None]:
        return {sid: _credit_view(pk, leases) for sid, (pk, leases) in zip(sids, self._pipe_credit(sids))}

    def _pipe_credit(self, sids):
        pipe = self._r.pipeline(transaction=False)
        for sid in sids:
            pipe.hget(self.P + "acct:" + sid, "pk")
            pipe.hgetall(self.P + "lease:" + sid)
        res = pipe.execute()
        return list(zip(res[::2], res[1::2]))

    def refresh(self, sids: list[str], keys: tuple[str, str, str]) -> list[tuple]:
        """For each account: (credit view, (day, week, month) counts, receipts queued,
        packages auto-recharge added this month)."""
        pipe = self._r.pipeline(transaction=False)
        for sid in sids:
            pipe.hget(self.P + "acct:" + sid, "pk")
            pipe.hgetall(self.P + "lease:" + sid)
            pipe.mget([f"{self.P}cnt:{sid}:{k}" for k in keys])
            pipe.get(self.P + "q:" + sid)
            pipe.hget(self.P + "ar:" + sid, keys[2][1:])
        res = pipe.execute()
        out = []
        for i in range(len(sids)):
            pk, leases, counts, queued, recharges = res[5 * i: 5 * i + 5]
            out.append((_credit_view(pk, leases), tuple(int(c or 0) for c in counts), int(queued or 0),
                        int(recharges or 0)))
        return out

    def settings_changes(self, after: str) -> tuple[str, list[tuple[str, str]]]:
        """Settings changed by any process since stream id ``after``: (last id, [(sid, tag)])."""
        res = self._r.xread({self.P + "acctlog": after}, count=1000)
        if not res:
            return after, []
        entries = res[0][1]
        return entries[-1][0].decode(), [(f[b"s"].decode(), f[b"n"].decode()) for _, f in entries]

    def last_settings_change(self) -> str:
        last = self._r.xrevrange(self.P + "acctlog", count=1)
        return last[0][0].decode() if last else "0-0"

    # ------------------------------------------------------------- receipts
    def ensure_group(self, sid: str) -> None:
        try:
            self._ops.xgroup_create(self.P + "rcpt:" + sid, GROUP, id="0", mkstream=True)
        except redis.ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise

    def claim_all(self, sid: str) -> list[tuple[bytes, dict]]:
        """Every receipt of the account delivered to some process and not acknowledged
        (its former receiver died or went away): now this process's (XAUTOCLAIM)."""
        self.ensure_group(sid)
        key = self.P + "rcpt:" + sid
        out, start = [], "0-0"
        while True:
            nxt, entries, *_ = self._ops.xautoclaim(key, GROUP, self.consumer, 0, start, count=1000)
            out.extend(e for e in entries if e[1])
            if nxt in (b"0-0", "0-0"):
                return out
            start = nxt

    def reader(self) -> "redis.Redis":
        """A dedicated connection for the blocking receipt reader."""
        return redis.Redis.from_url(self.opts.url, socket_timeout=30, socket_keepalive=True)

    def wake_key(self) -> str:
        return f"{self.P}wake:{self.node}"

    def wake(self) -> None:
        self._ops.xadd(self.wake_key(), {"w": 1}, maxlen=16, approximate=True)

    def expire_receipts(self, sid: str, before: float) -> int:
        """Receipts older than ``before`` (never acknowledged: the receipt TTL) are dropped;
        their lookups stay in the history, marked expired (2). How many were dropped."""
        key = self.P + "rcpt:" + sid
        n = 0
        while True:
            entries = self._r.xrange(key, "-", f"({int(before * 1000)}", count=100)
            if not entries:
                return n
            n += self._expire_entries(sid, entries)

    def _expire_entries(self, sid: str, entries: list) -> int:
        """Receipt stream entries past the receipt TTL: out of the stream, their unanswered
        receipts marked expired. How many were."""
        by_second: dict[int, list[str]] = {}
        for _, fields in entries:
            if fields.get(b"r"):
                for row in decode_batch(fields[b"r"]):
                    by_second.setdefault(second(row[0]), []).append(str(row[0]))
        args = [self.P, sid, self.ttl, ",".join(e[0].decode() for e in entries)]
        for b, ids in by_second.items():
            args += [b, " ".join(ids)]
        return self._expire(args=args)

    def trim_history(self, before: float) -> int:
        """Drop the history index entries older than ``before`` (the records expire by TTL)."""
        cut = "(" + pad(first_id_at(before))
        pipe = self._ops.pipeline(transaction=False)
        sids = [s.decode() for s in self._r.smembers(self.P + "accounts")]
        for sid in sids:
            pipe.zremrangebylex(self.P + "hist:" + sid, "-", cut)
        return sum(pipe.execute())

    def janitor_lock(self, seconds: float) -> bool:
        return bool(self._ops.set(self.P + "janitor", self.tag, nx=True, ex=max(1, int(seconds))))

    # ---------------------------------------------------------------- writes
    def steps(self, *batch: object, **options: object) -> NoReturn:
        """Never asked (there is no committer): a commit is one script, run by ``commit``."""
        raise TypeError("RedisStore has no committer: its group commit is commit()")

    def _lookup_args(self, lookups: list[tuple], cseq: int) -> tuple[list, dict]:
        """The COMMIT script's arguments up to the batches (see scripts.py), and the
        commit's aggregates: (sid, dkey, wkey, mkey) -> [count, cost, records (with blobs;
        else padded ids), receipts' records, their rows, lowest id, highest id, batch ids]."""
        keys_of = self.periods.keys
        aggs: dict[tuple, list] = {}
        batches: dict[int, list[str]] = {}
        blobs = self.blobs
        buckets: dict[int, list[str]] = {}
        for row in lookups:
            rec = encode_row(row)
            lid = row[0]
            k = (row[2],) + keys_of(row[5])
            a = aggs.get(k)
            if a is None:
                a = aggs[k] = [0, 0, [], [], [], lid, lid, None]
            a[0] += 1
            a[1] += row[7]
            if row[17] == 1:
                a[3].append(rec)
                a[4].append(row)
            if blobs:
                # One entry per account and commit: the records as they are, nothing per lookup.
                a[2].append(rec)
                if lid < a[5]:
                    a[5] = lid
                elif lid > a[6]:
                    a[6] = lid
                if row[1] is not None:
                    if a[7] is None:
                        a[7] = set()
                    a[7].add(row[1])
                continue
            b = (lid >> 22) // 1000
            entry = f"{lid}\x1f{rec}"
            lst = buckets.get(b)
            if lst is None:
                buckets[b] = [entry]
            else:
                lst.append(entry)
            pid = f"{lid:019d}"
            a[2].append(pid)
            if row[1] is not None:
                batches.setdefault(row[1], []).append(pid)
        args: list = [self.P, self.node, self.token, cseq, self.ttl, self.tag, "1" if blobs else "0", len(buckets)]
        for b, entries in buckets.items():
            args += [b, _RS.join(entries)]
        args.append(len(aggs))
        limited = self.limited
        for (sid, dk, wk, mk), (count, cost, recs, receipts, _, lo, hi, bids) in aggs.items():
            if not blobs:
                args += [sid, count, cost, dk, wk, mk, 1 if limited(sid) else 0, " ".join(recs),
                         len(receipts), _RS.join(receipts)]
                continue
            args += [sid, count, cost, dk, wk, mk, 1 if limited(sid) else 0, _RS.join(recs), len(receipts),
                     "=" if len(receipts) == count else _RS.join(receipts), f"{lo:019d}", f"{hi:019d}",
                     hi >> 22, " ".join(map(str, bids)) if bids else ""]
        args.append(len(batches))
        for bid, pids in batches.items():
            args += [bid, " ".join(pids)]
        return args, aggs

    def commit(self, lookups: list[tuple], acks: list[tuple], accounts: list[tuple[str, str]],
               ledger: Sequence[tuple] = (), bans: Sequence[tuple[str, float]] = (), probe: bool = False,
               sms: Sequence[tuple] = ()) -> None:
        """One group commit (see the module docstring). Runs on the journal's writer thread.
        (Every commit writes, the commit mark at least: ``probe`` needs nothing more.)
        Text messages (``sms``: new ones; their changes are ``RedisMessages.change``) are
        written first, and indexed by their addresses once the commit is applied."""
        self.cseq += 1
        cseq = self.cseq
        if self.fenced:
            raise Fenced(f"node {self.node}: lease lost")
        if sms:  # before the script too: what a failed commit leaves, nothing points to
            self.messages.save(sms)
        if bans:  # before the script: a failure here fails the whole commit, nothing half done
            pipe = self._w.pipeline(transaction=False)
            pipe.zadd(self.P + "bans", dict(bans), gt=True)
            pipe.zremrangebyscore(self.P + "bans", "-inf", time.time())
            pipe.execute()
        args, aggs = self._lookup_args(lookups, cseq)
        # Answered receipts: grouped per second, account and code (with blobs: per stream
        # entry); a stream entry whose receipts are all answered leaves the stream in this
        # same commit.
        answered: dict[tuple, list[str]] = {}
        answers: dict[tuple, list[str]] = {}
        done = []
        mapped, outstanding, legacy = self.entries, self.batches, self.legacy
        blobs = self.blobs
        for pending, lid in acks:
            e = mapped.pop(lid, None)
            if e is None:
                continue  # not delivered by this process's consumer: nothing to acknowledge
            sid, eid, gen = e
            if blobs and eid not in legacy:
                answers.setdefault((sid, eid), []).append(f"-{lid}" if pending == 2 else str(lid))
            else:
                answered.setdefault(((lid >> 22) // 1000, sid, pending), []).append(str(lid))
            left = outstanding.get((eid, gen))
            if left is not None:
                left.discard(lid)
                if not left:
                    del outstanding[eid, gen]
                    done.append((sid, eid))
                    legacy.discard(eid)
        args += queued_rollups(rollup(lookups, self.periods.span))
        args.append(len(answered))
        for (b, sid, code), ids in answered.items():
            args += [b, sid, code, " ".join(ids)]
        args.append(len(answers))
        for (sid, eid), ids in answers.items():
            args += [sid, eid, " ".join(ids) + " ", len(ids)]
        args.append(len(done))
        for sid, eid in done:
            args += [sid, eid]
        changed = []
        for sid, record in accounts:
            rec = json.loads(record)
            is_limited = rec.pop("packages", None) is not None
            canon = _canon(rec)
            if self._settings.get(sid) != canon:
                changed.append((sid, canon, 1 if is_limited else 0))
        args.append(len(changed))
        for change in changed:
            args += change
        args.append(len(ledger))
        for sid, at, kind, amount, note, *idem in ledger:
            key, request, answer = (idem + [None] * 3)[:3]
            # The key rides with the entry too: the history store's drain moves both together.
            args += [sid, json.dumps([at, kind, amount, note, key] if key else [at, kind, amount, note]), kind, amount,
                     self.periods.date(at).isoformat(), note or "", key or "",
                     json.dumps([request, answer]) if key else ""]
        args += self._recharge_args(aggs)
        # Before the script: the reader may see the entry before this thread sees the reply
        # (a commit that fails leaves rows nobody asks for; they go after WRITTEN_KEEP).
        self._keep_written(aggs, cseq)
        try:
            out = self._commit(args=args)
        except redis.ResponseError as err:
            if "FENCED" in str(err):
                self._fence()
            raise
        except (redis.ConnectionError, redis.TimeoutError):
            if not self._applied(cseq):
                raise
            out = None  # it was applied; only the counters that came back are lost
        for sid, canon, _ in changed:
            self._settings[sid] = canon
        if sms:
            self.messages.index(sms, time.time())
        if out is not None and len(out) > len(aggs):  # entries whose key another process used first
            self.duplicates.update(tuple(d.decode().split("\x1f", 1)) for d in out[len(aggs)])
        if out is not None and len(out) > len(aggs) + 1 and self.on_recharged is not None:
            self.on_recharged([(sid, month, int(k), int(add)) for sid, month, k, add in
                               (r.decode().split("\x1f") for r in out[len(aggs) + 1])])
        mine = self.mine
        results = []
        for i, ((sid, dk, wk, mk), (count, cost, *_)) in enumerate(aggs.items()):
            for key in (dk, wk, mk):
                mine[sid, key] = mine.get((sid, key), 0) + count
            if out is not None:
                results.append((sid, (dk, wk, mk), tuple(out[i][:3]),
                                (mine[sid, dk], mine[sid, wk], mine[sid, mk]), out[i][3], count, cost))
        if self.on_commit is not None and (results or ledger):
            self.on_commit(results)

    def _keep_written(self, aggs: dict, cseq: int) -> None:
        """The receipt rows of a commit, for this process's own reader (``taken``), when it
        reads the account's stream; those older than WRITTEN_KEEP go."""
        now = time.monotonic()
        written, at = self.written, self._written_at
        while at and at[0][0] < now - WRITTEN_KEEP:
            written.pop(at.popleft()[1], None)
        sids = [k[0] for k in aggs]
        for (sid, *_), (_, _, _, _, rows, *_) in aggs.items():
            # An account with two entries in one commit (a day's end between its lookups):
            # both are decoded, as any other process's are.
            if rows and self.reading(sid) and sids.count(sid) == 1:
                written[sid, cseq] = rows
                at.append((now, (sid, cseq)))

    def taken(self, sid: str, fields: dict, eid: bytes = b"") -> list:
        """The rows of a receipt stream entry (its fields): those this process wrote, as it
        wrote them, else decoded."""
        if self.blobs and b"a" not in fields:
            self.legacy.add(eid)
        if fields[b"n"].decode() == self.tag:
            rows = self.written.pop((sid, int(fields[b"k"])), None)
            if rows is not None:
                return rows
        return decode_batch(fields[b"r"])

    def _recharge_args(self, aggs: dict) -> list:
        """The COMMIT script's auto-recharge entries: each account this commit charges that
        has an auto-recharge (the script decides whether the charges crossed)."""
        spent: dict[str, int] = {}
        for (sid, *_), (_, cost, *_) in aggs.items():
            spent[sid] = spent.get(sid, 0) + cost
        entries = [(sid, cost, r) for sid, cost in spent.items() if cost and (r := self.recharge(sid)) is not None]
        if not entries:
            return [0]
        now = time.time()
        month, bought = self.periods.keys(now)[2][1:], self.periods.date(now).isoformat()
        args: list = [len(entries)]
        for sid, cost, (below, add, most, add_text, below_text, channels) in entries:
            args += [sid, below, add, most, month, bought, repr(now), cost, add_text, below_text, channels]
        return args

    def _applied(self, cseq: int) -> bool:
        """After a connection error: did the commit land? Asks until Redis answers (a few seconds)."""
        want = f"{self.token}:{cseq}".encode()
        for _ in range(20):
            try:
                return self._r.get(f"{self.P}commit:{self.node}") == want
            except redis.RedisError:
                time.sleep(0.25)
        return False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for c in (self._w, self._ops, self._r):
            try:
                c.close()
            except Exception:
                pass

    # ----------------------------------------------------------------- reads
    def pending_receipts(self) -> Iterator[Row]:
        """Receipts live in each account's stream: the process that holds the account's
        receiving session takes them from there (nothing to replay at start-up)."""
        return iter(())

    def sms(self, message_id: int):
        """A text message (``messages.Message``: the sms table's columns, then its version),
        or None."""
        return self.messages.get([message_id]).get(message_id)

    def lookup(self, message_id: int) -> Row | None:
        rows = self._rows([message_id])
        return rows[0] if rows else None

    def _rows(self, ids: list[int]) -> list[Row]:
        """Records by id, in the order given (expired ones left out), with the pending flag
        as it is now (acknowledged and expired receipts are set members, not rewrites)."""
        if not ids:
            return []
        by_second: dict[int, list[int]] = {}
        for lid in ids:
            by_second.setdefault(second(lid), []).append(lid)
        pipe = self._r.pipeline(transaction=False)
        order = list(by_second.items())
        for b, lids in order:
            pipe.hmget(f"{self.P}lk:{b}", lids)
            pipe.smismember(f"{self.P}ack:{b}", lids)
            pipe.smismember(f"{self.P}exp:{b}", lids)
        res = pipe.execute()
        found: dict[int, Row] = {}
        for j, (_, lids) in enumerate(order):
            recs, acked, expired = res[3 * j: 3 * j + 3]
            for lid, rec, a, x in zip(lids, recs, acked, expired):
                if rec is None:
                    continue
                row = decode_row(rec)
                if row[17] == 1 and (a or x):
                    row = Row(row[:17] + (0 if a else 2,))
                found[lid] = row
        return [found[lid] for lid in ids if lid in found]

    def unanswered(self, rows: list[Row], sid: str = "", entry: tuple | None = None) -> list[Row]:
        """The rows (of a stream entry of the account: ``entry``) whose receipt is neither
        acknowledged nor expired. A row whose record is gone is settled: it left for
        PostgreSQL once its receipt was answered (with its answer), or outlived
        ``history_ttl``."""
        if not rows:
            return rows
        by_second: dict[int, list[int]] = {}
        for r in rows:
            by_second.setdefault(second(r[0]), []).append(r[0])
        pipe = self._r.pipeline(transaction=False)
        order = list(by_second.items())
        for b, lids in order:
            pipe.smismember(f"{self.P}ack:{b}", lids)
            pipe.smismember(f"{self.P}exp:{b}", lids)
            pipe.hmget(f"{self.P}lk:{b}", lids)
        res = pipe.execute()
        answered = set()
        for j, (_, lids) in enumerate(order):
            for lid, a, x, rec in zip(lids, res[3 * j], res[3 * j + 1], res[3 * j + 2]):
                if a or x or rec is None:
                    answered.add(lid)
        return [r for r in rows if r[0] not in answered]

    def batch(self, batch_id: int) -> list[Row]:
        ids = sorted(int(m) for m in self._r.smembers(f"{self.P}batch:{batch_id}"))
        return self._rows(ids)

    def history(self, system_id: str | None = None, since: float | None = None,
                until: float | None = None, limit: int = 1000, after_id: int = 0,
                newest_first: bool = False) -> list[Row]:
        low = first_id_at(since) - 1 if since else 0
        lo = "(" + pad(low if newest_first else max(after_id, low))
        below = [first_id_at(until)] if until is not None else []
        if newest_first and after_id:
            below.append(after_id)
        hi = "(" + pad(min(below)) if below else "+"

        def page(key: str, pipe):
            if newest_first:
                return pipe.zrevrangebylex(key, hi, lo, 0, limit)
            return pipe.zrangebylex(key, lo, hi, 0, limit)

        if system_id is not None:
            ids = page(f"{self.P}hist:{system_id}", self._r)
        else:
            sids = sorted(s.decode() for s in self._r.smembers(self.P + "accounts"))
            pipe = self._r.pipeline(transaction=False)
            for sid in sids:
                page(f"{self.P}hist:{sid}", pipe)
            ids = list(heapq.merge(*pipe.execute(), reverse=newest_first))[:limit]
        rows = []
        # Expired records (past history_ttl, index not trimmed yet) are skipped.
        for i in range(0, len(ids), 1000):
            rows += self._rows([int(m) for m in ids[i:i + 1000]])
        return rows

    def bans(self, now: float) -> list[tuple[str, float]]:
        """The IP bans still running at ``now``: (ip key, until)."""
        return [(k.decode(), float(v)) for k, v in
                self._r.zrangebyscore(self.P + "bans", f"({now!r}", "+inf", withscores=True)]

    def idempotent(self, system_id: str, key: str) -> tuple[str, str] | None:
        """The (request digest, answer) of the account's ledger entry made with this
        Idempotency-Key, if any."""
        raw = self._r.hget(f"{self.P}idem:{system_id}", key)
        return tuple(json.loads(raw)) if raw is not None else None

    def ledger_totals(self) -> dict[str, int]:
        """Per account: the sum of its ledger (credit ever added), for audits."""
        sids = sorted(s.decode() for s in self._r.smembers(self.P + "accounts"))
        return {sid: sum(int(e[2]) for e in self.ledger(sid)) for sid in sids}

    def ledger(self, system_id: str) -> list[LedgerRow]:
        return [LedgerRow(json.loads(e)[:4]) for e in self._r.lrange(f"{self.P}ledger:{system_id}", 0, -1)]

    def credit_additions(self, system_id: str) -> int:
        """How many ledger entries of the account added credit (top-ups, refunds, ...)."""
        return sum(1 for e in self.ledger(system_id) if int(e[2]) > 0)

    def totals(self) -> dict[str, tuple[int, int]]:
        """Per account: (lookups, total cost) ever committed — for audits and tests."""
        sids = sorted(s.decode() for s in self._r.smembers(self.P + "accounts"))
        pipe = self._r.pipeline(transaction=False)
        for sid in sids:
            pipe.hmget(f"{self.P}tot:{sid}", "n", "c")
        return {sid: (int(n), int(c or 0)) for sid, (n, c) in zip(sids, pipe.execute()) if n is not None}

    def period_counts(self, starts: tuple[float, float, float]) -> dict[str, tuple[int, int, int]]:
        """Nothing at start-up: this process has counted nothing yet, and what the others
        counted comes in through the cluster's refresh (``AccountBook.count_elsewhere``)."""
        return {}

    def rollups(self, system_id: str, since: str, until: str, by: str) -> list[tuple]:
        """See ``accounts.store.Store.rollups``: one HASH per day of the range."""
        first, end = date.fromisoformat(since), date.fromisoformat(until)
        days = [(first + timedelta(days=k)).isoformat() for k in range((end - first).days)]
        dim = ROLLUP_DIMENSIONS[by]
        # Summed inside Redis (one script, no field crosses the network twice).
        flat = self._rollup_sum(args=[self.P, system_id, dim, *days])
        rows = [(flat[k].decode(), int(flat[k + 1]), int(flat[k + 2])) for k in range(0, len(flat), 3)]
        if dim == "s":
            rows = [(int(v), n, cost) for v, n, cost in rows]
        return sorted(rows)

    def max_id(self) -> int:
        sids = [s.decode() for s in self._r.smembers(self.P + "accounts")]
        pipe = self._r.pipeline(transaction=False)
        for sid in sids:
            pipe.zrevrangebylex(f"{self.P}hist:{sid}", "+", "-", 0, 1)
        return max((int(r[0]) for r in pipe.execute() if r), default=0)

    def queued(self, sid: str) -> int:
        return int(self._r.get(self.P + "q:" + sid) or 0)


def _canon(d: dict) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)


def _credit_view(pk, leases) -> dict | None:
    if pk is None:
        return None
    free = sum(int(p["c"]) for p in json.loads(pk))
    by_node: dict[int, int] = {}
    for field, value in (leases or {}).items():
        node, kind = field.decode().split(":")
        by_node[int(node)] = by_node.get(int(node), 0) + (int(value) if kind == "g" else -int(value))
    return {"free": free, "leased": by_node, "total": free + sum(by_node.values())}
