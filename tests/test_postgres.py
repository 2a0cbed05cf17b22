"""Shared deployments with the history in PostgreSQL: a real PostgreSQL (Debian's package,
a cluster in a temporary directory), a real redis-server, real ``hlrsmpp serve`` processes
and a real SMPP client. Every accepted lookup reaches PostgreSQL exactly once (across
kill -9 of the process and a restart of PostgreSQL), leaves Redis once there, is read back
over HTTP from PostgreSQL; retention drops old days' partitions.
"""
from __future__ import annotations

import threading
import time

import pytest
import redis
import smpplib.exceptions
import yaml

from conftest import ServerProcess, free_port
from esme import SmpplibEsme
from postgres_support import postgres_dsn, postgres_server  # noqa: F401  (fixtures)
from redis_support import redis_server, redis_url  # noqa: F401  (fixtures)
from hlrsmpp.ids import EPOCH_MS, IdGenerator
from hlrsmpp.postgres.archive import Archive

P = "hlrsmpp:"
ADMIN = "s3cr3t-admin"
DAY = 86400


def _config(tmp_path, redis_url, dsn, retention_days=0):
    cfg = {
        "smpp": {"host": "127.0.0.1", "max_connections_per_ip": 10000},
        "http": {"host": "127.0.0.1"},
        "storage": {"redis": {"url": redis_url, "lease": 5.0}, "postgres": {"dsn": dsn}},
        "history": {"retention_days": retention_days},
        "log": {"format": "json", "level": "info"},
        "admin": {"token": ADMIN},
        "accounts": [{"system_id": "acme", "password": "pw", "credit": "1000"}],
    }
    path = tmp_path / "hlrsmpp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _row(lookup_id: int, at: float, sid: str = "acme") -> tuple:
    """A settled lookup's row (LOOKUP_COLUMNS order)."""
    return (lookup_id, None, sid, "smpp", "491701234567", at, at + 0.01, 1000, 0, "262", "01",
            0, "", 0, "", "", None, 0)


def _id_at(t: float, seq: int = 0) -> int:
    return (int(t * 1000) - EPOCH_MS) << 22 | seq


def _eventually(check, timeout=20.0, every=0.1):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(every)


def _http(port, path):
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    req.add_header("Authorization", f"Bearer {ADMIN}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read().decode()


def _csv_ids(port) -> list[str]:
    text = _http(port, "/api/v1/history?account=acme&format=csv")
    return [line.split(",")[0] for line in text.strip().splitlines()[1:]]


class Client:
    """A transceiver that acknowledges every receipt as it reads it (smpplib does)."""

    def __init__(self, port: int, wait: float = 15.0):
        deadline = time.monotonic() + wait
        while True:
            self.esme = SmpplibEsme(port, timeout=2)
            try:
                self.esme.bind("transceiver", system_id="acme", password="pw")
                return
            except smpplib.exceptions.PDUError as err:
                self.esme.client.disconnect()
                # A killed process's receiving session holds its lease until it runs out.
                if err.args[1] != 0x0D or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def submit(self, numbers) -> set[str]:
        """The message ids of the accepted submissions whose submit_sm_resp arrived."""
        esme = self.esme
        seqs = [esme.submit(n) for n in numbers]
        esme.pump(lambda: all(s in esme.resps for s in seqs), timeout=30)
        return {esme.resps[s].message_id.decode() for s in seqs if esme.resps[s].status == 0}


# ------------------------------------------------------------------ the archive alone

def test_a_batch_written_twice_is_in_postgresql_once(postgres_dsn):
    archive = Archive(postgres_dsn)
    try:
        now = time.time()
        gen = IdGenerator(5)
        rows = [_row(gen.next(now), now) for _ in range(1000)] + [_row(_id_at(now - 9 * DAY), now - 9 * DAY)]
        assert archive.write(rows) == 1001
        # The drain died after its commit in PostgreSQL, before Redis let go: written again.
        assert archive.write(rows[:600]) == 0
        assert archive.count() == 1001
        # A day no partition was made ahead for (a late drain) got its own.
        assert archive.history(since=now - 10 * DAY, until=now - 8 * DAY)[0][0] == rows[-1][0]
    finally:
        archive.close()


def test_retention_drops_the_partitions_of_days_past_it(postgres_server, postgres_dsn):
    archive = Archive(postgres_dsn)
    try:
        now = time.time()
        rows = [_row(_id_at(now - k * DAY), now - k * DAY) for k in range(0, 12)]
        archive.write(rows)
        dropped = archive.drop_before(now - 5 * DAY)
        assert len(dropped) == 6  # days 6 to 11 ago; the day of the cut stays whole
        kept = [r[0] for r in archive.history(limit=100)]
        assert kept == sorted(r[0] for r in rows[:6])
        parts = postgres_server.query(
            "SELECT count(*) AS n FROM pg_inherits WHERE inhparent = 'lookups'::regclass")[0]["n"]
        assert parts == 6 + 3  # today and 5 days back, 3 days ahead
    finally:
        archive.close()


# ------------------------------------------------------------------ end to end

@pytest.mark.slow
def test_lookups_reach_postgresql_exactly_once_across_kill_9_and_a_postgresql_restart(
        tmp_path, redis_url, postgres_server, postgres_dsn):
    cfg = _config(tmp_path, redis_url, postgres_dsn)
    r = redis.Redis.from_url(redis_url)
    count = lambda: postgres_server.query("SELECT count(*) AS n FROM lookups")[0]["n"]  # noqa: E731
    a = ServerProcess(cfg, free_port(), free_port()).start()
    accepted: set[str] = set()
    try:
        client = Client(a.smpp_port)
        accepted |= client.submit([f"4479{k:08d}" for k in range(1000)])
        assert len(accepted) == 1000
        assert _eventually(lambda: count() > 0), "the drain wrote nothing to PostgreSQL"
        # PostgreSQL restarts: lookups go on (Redis is their commit), the drain waits for it.
        postgres_server.stop()
        accepted |= client.submit([f"4478{k:08d}" for k in range(500)])
        postgres_server.start()
        # The drain resumes (the receipts of the lookups made meanwhile read and answered).
        client.esme.pump(lambda: len(client.esme.receipts) == 1500, timeout=30)
        assert _eventually(lambda: count() == 1500, 30), "the drain did not resume"
        # kill -9 while lookups flow and the drain writes.
        stop = threading.Event()

        def load() -> None:
            k = 0
            try:
                while not stop.is_set():
                    accepted.update(client.submit([f"4477{k + j:08d}" for j in range(100)]))
                    k += 100
            except Exception:
                pass  # the server died under it
        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        assert _eventually(lambda: len(accepted) >= 2500, 30)
        a.kill()
        stop.set()
        loader.join(10)
        client.esme.client.disconnect()
    finally:
        a.kill()
    # A process starts again: receipts still owed go out, the drain finishes.
    b = ServerProcess(cfg, free_port(), free_port()).start()
    try:
        client = Client(b.smpp_port)
        client.esme.pump(lambda: int(r.get(f"{P}q:acme") or 0) == 0, timeout=30)
        committed = int(r.hget(f"{P}tot:acme", "n"))
        assert committed >= len(accepted) >= 2500
        # Every lookup Redis committed is in PostgreSQL, once; none is left in Redis.
        assert _eventually(lambda: count() == committed and r.zcard(f"{P}hist:acme") == 0, 30), \
            (count(), committed, r.zcard(f"{P}hist:acme"))
        assert not list(r.scan_iter(f"{P}lk:*"))
        stored = {str(row["id"]) for row in postgres_server.query("SELECT id FROM lookups")}
        assert accepted <= stored and len(stored) == committed
        # Read back over HTTP, from PostgreSQL.
        exported = _csv_ids(b.http_port)
        assert len(exported) == len(set(exported)) == committed and set(exported) == stored
        first = sorted(stored, key=int)[0]
        assert f'"id":"{first}"' in _http(b.http_port, f"/api/v1/lookups/{first}").replace(" ", "")
        client.esme.close()
    finally:
        assert b.terminate() == 0


@pytest.mark.slow
def test_the_server_drops_partitions_past_the_retention(tmp_path, redis_url, postgres_server, postgres_dsn):
    now = time.time()
    old = [_row(_id_at(now - k * DAY), now - k * DAY) for k in (30, 20, 10)]
    archive = Archive(postgres_dsn)
    archive.write(old)
    archive.close()
    b = ServerProcess(_config(tmp_path, redis_url, postgres_dsn, retention_days=15), free_port(), free_port()).start()
    try:
        client = Client(b.smpp_port)
        fresh = client.submit(["447900000001", "447900000002"])
        client.esme.pump(lambda: len(client.esme.receipts) == 2, timeout=10)
        assert _eventually(lambda: set(_csv_ids(b.http_port)) == fresh | {str(old[2][0])}), _csv_ids(b.http_port)
        client.esme.close()
    finally:
        assert b.terminate() == 0


def test_postgres_needs_redis_and_a_postgresql_dsn(tmp_path):
    from hlrsmpp.config import ConfigError
    from hlrsmpp.server.app import open_store
    with pytest.raises(ConfigError, match="needs storage.redis too"):
        open_store({"path": str(tmp_path), "postgres": {"dsn": "postgresql://127.0.0.1/x"}})
    with pytest.raises(ConfigError, match="expected {dsn: postgresql://...}"):
        open_store({"path": str(tmp_path), "redis": {"url": "redis://127.0.0.1:1/0"},
                    "postgres": {"dsn": "mysql://127.0.0.1/x"}})
    with pytest.raises(ConfigError, match="storage.postgres: cannot use postgresql://127.0.0.1:1/x"):
        open_store({"path": str(tmp_path), "redis": {"url": "redis://127.0.0.1:1/0"},
                    "postgres": {"dsn": "postgresql://127.0.0.1:1/x"}})


def _post(port, path, body: dict, token: str = ADMIN) -> dict:
    import json
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read().decode())


#: Keys a shared deployment keeps per account, per process or for the deployment, never
#: per lookup (the key layout of hlrsmpp/redis/scripts.py).
_NOT_PER_LOOKUP = ("node:", "nodes", "nodeseq", "commit:", "accounts", "acct:", "acctlog", "lease:",
                   "leases:", "want", "tot:", "cnt:", "hist:", "roll:", "ledger:", "idem:", "rcpt:",
                   "q:", "rx:", "fence:", "tx:", "wake:", "janitor", "drain", "bans", "batchseq")


@pytest.mark.slow
def test_nothing_per_lookup_stays_in_redis_once_its_receipt_is_acknowledged_and_archived(
        tmp_path, redis_url, postgres_server, postgres_dsn):
    r = redis.Redis.from_url(redis_url)
    count = lambda: postgres_server.query("SELECT count(*) AS n FROM lookups")[0]["n"]  # noqa: E731
    b = ServerProcess(_config(tmp_path, redis_url, postgres_dsn), free_port(), free_port()).start()
    try:
        client = Client(b.smpp_port)
        accepted = client.submit([f"4479{k:08d}" for k in range(600)])
        client.esme.pump(lambda: len(client.esme.receipts) == 600, timeout=30)
        # A batch over HTTP (no receipt asked): a batch index in Redis until drained.
        batch = _post(b.http_port, "/api/v1/lookups",
                      {"account": "acme", "numbers": [f"4476{k:08d}" for k in range(100)]})
        assert len(batch["lookups"]) == 100
        assert _eventually(lambda: count() == 700 and r.zcard(f"{P}hist:acme") == 0, 30), count()
        # Every receipt answered, every lookup in PostgreSQL: what Redis holds is per account,
        # per process or for the deployment, and holds no lookup id.
        client.esme.pump(lambda: int(r.get(f"{P}q:acme") or 0) == 0, timeout=10)
        keys = sorted(k.decode()[len(P):] for k in r.scan_iter(f"{P}*"))
        assert [k for k in keys if not k.startswith(_NOT_PER_LOOKUP)] == []
        ids = {m for m in accepted} | {lk["id"] for lk in batch["lookups"]}
        for k in keys:
            kind = r.type(P + k).decode()
            members: list = []
            if kind == "set":
                members = list(r.smembers(P + k))
            elif kind == "zset":
                members = r.zrange(P + k, 0, -1)
            elif kind == "hash":
                members = list(r.hkeys(P + k))
            elif kind == "stream":
                members = [f for _, fields in r.xrange(P + k) for f in fields.values()]
            text = b" ".join(m if isinstance(m, bytes) else str(m).encode() for m in members).decode("latin-1")
            assert not any(i in text for i in ids), (k, kind)
        assert r.xlen(f"{P}rcpt:acme") == 0
        # The batch is read back from PostgreSQL.
        report = _http(b.http_port, f"/api/v1/batches/{batch['batch_id']}")
        assert report.count('"id"') >= 100
        client.esme.close()
    finally:
        assert b.terminate() == 0


def test_a_receipt_whose_lookup_left_for_postgresql_is_neither_redelivered_nor_expired(
        redis_url, postgres_dsn):
    """A stream entry holds the receipts of one commit: one answered (and its lookup drained
    with its answer), the other not. The next receiver gets only the other, and the receipt
    TTL drops only the other."""
    from hlrsmpp.postgres import ArchivedStore
    from hlrsmpp.redis.store import decode_batch
    store = ArchivedStore({"redis": {"url": redis_url}, "postgres": {"dsn": postgres_dsn}})
    r = redis.Redis.from_url(redis_url)
    try:
        store.seed([{"system_id": "acme", "password": "pw"}])
        now = time.time()
        gen = IdGenerator(7)
        answered, owed = gen.next(now), gen.next(now)
        store.commit([_row(answered, now)[:17] + (1,), _row(owed, now)[:17] + (1,)], [], [])
        # Delivered to this process's consumer, as the receipt reader does.
        (_, ((eid, fields),)), = r.xreadgroup("rx", store.consumer, {f"{P}rcpt:acme": ">"})
        store.entries[answered] = ("acme", eid, 1)
        store.batches[eid, 1] = {answered, owed}
        store.commit([], [(0, answered)], [])
        assert store.drain() == 1
        assert store.archive.lookup(answered)[17] == 0
        assert not list(r.scan_iter(f"{P}ack:*"))
        rows = decode_batch(fields[b"r"])
        assert [row[0] for row in store.unanswered(rows)] == [owed]
        assert store.expire_receipts("acme", now + 60) == 1
        assert int(r.get(f"{P}q:acme")) == 0
        assert store.drain() == 1
        assert store.archive.lookup(owed)[17] == 2
        assert not [k for k in r.scan_iter(f"{P}*") if k.startswith((f"{P}lk:".encode(), f"{P}exp:".encode()))]
    finally:
        store.close()
