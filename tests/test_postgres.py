"""Shared deployments with the history in PostgreSQL: a real PostgreSQL (Debian's package,
a cluster in a temporary directory), a real redis-server, real ``hlrsmpp serve`` processes
and a real SMPP client. Every accepted lookup reaches PostgreSQL exactly once (across
kill -9 of the process and a restart of PostgreSQL), leaves Redis once there, is read back
over HTTP from PostgreSQL; retention drops old days' partitions.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.error

import pytest
import redis
import smpplib.exceptions
import yaml

from conftest import ServerProcess, eventually, free_port
from http_client import http_request
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
        "accounts": [{"system_id": "acme", "password": "pw", "credit": "1000"},
                     {"system_id": "free", "password": "pw"}],
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


def _http(port, path):
    status, text = http_request(f"http://127.0.0.1:{port}{path}", token=ADMIN, timeout=30)
    assert status == 200, text
    return text


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
        assert eventually(lambda: count() > 0, 20), "the drain wrote nothing to PostgreSQL"
        # PostgreSQL restarts: lookups go on (Redis is their commit), the drain waits for it.
        postgres_server.stop()
        accepted |= client.submit([f"4478{k:08d}" for k in range(500)])
        postgres_server.start()
        # The drain resumes (the receipts of the lookups made meanwhile read and answered).
        client.esme.pump(lambda: len(client.esme.receipts) == 1500, timeout=30)
        assert eventually(lambda: count() == 1500, 30), "the drain did not resume"
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
        assert eventually(lambda: len(accepted) >= 2500, 30)
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
        assert eventually(lambda: count() == committed and r.xlen(f"{P}hs:acme") == 0, 30), \
            (count(), committed, r.xlen(f"{P}hs:acme"))
        assert not list(r.scan_iter(f"{P}lk:*")) and not list(r.scan_iter(f"{P}ra:*"))
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
        assert eventually(lambda: set(_csv_ids(b.http_port)) == fresh | {str(old[2][0])}, 20), _csv_ids(b.http_port)
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


def _post(port, path, body: dict, token: str = ADMIN, headers: dict | None = None) -> dict:
    import json
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json", **(headers or {})})
    req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read().decode())


#: Keys a shared deployment keeps per account, per process or for the deployment, never
#: per lookup (the key layout of hlrsmpp/redis/scripts.py).
_NOT_PER_LOOKUP = ("node:", "nodes", "nodeseq", "commit:", "accounts", "acct:", "acctlog", "lease:",
                   "leases:", "want", "tot:", "cnt:", "hist:", "hs:", "roll:", "ledger:", "idem:", "rcpt:",
                   "q:", "rx:", "fence:", "tx:", "wake:", "janitor", "drain", "bans", "ledn:")


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
        assert eventually(lambda: count() == 700 and r.xlen(f"{P}hs:acme") == 0, 30), count()
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
    """A stream entry holds the receipts of one commit, and Redis the commit's lookups as one
    blob: one receipt answered, the other not. The next receiver gets only the other, the
    receipt TTL drops only the other, and the blob waits until both are answered; then
    both lookups go to PostgreSQL with their answers, and nothing of them stays in Redis."""
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
        assert store.drain() == 0
        assert [store.lookup(i)[17] for i in (answered, owed)] == [0, 1]
        rows = decode_batch(fields[b"r"])
        assert [row[0] for row in store.unanswered(rows, "acme", (eid, fields))] == [owed]
        assert store.expire_receipts("acme", now + 60) == 1
        assert int(r.get(f"{P}q:acme")) == 0
        assert store.drain() == 2
        assert [store.archive.lookup(i)[17] for i in (answered, owed)] == [0, 2]
        # Gone from Redis with its answers: a receiver that claims the entry now gets nothing.
        assert store.unanswered(rows, "acme", (eid, fields)) == []
        assert r.xlen(f"{P}hs:acme") == 0 and not r.exists(f"{P}hx", f"{P}rc:acme")
        assert not [k for k in r.scan_iter(f"{P}*") if k.startswith((f"{P}lk:".encode(), f"{P}ra:".encode()))]
    finally:
        store.close()


def test_lookups_an_earlier_version_kept_one_by_one_are_answered_drained_and_read(redis_url, postgres_dsn):
    """An upgrade with lookups still in Redis in the layout before blobs (a record per
    lookup, its receipt in an entry without the blob mark): their receipts are answered,
    they are read and drained as they were, next to the new blobs."""
    from hlrsmpp.postgres import ArchivedStore
    from hlrsmpp.redis.store import RedisStore
    before = RedisStore({"url": redis_url})
    r = redis.Redis.from_url(redis_url)
    now = time.time()
    gen = IdGenerator(3)
    owed, plain, fresh = gen.next(now), gen.next(now), gen.next(now)
    try:
        before.seed([{"system_id": "acme", "password": "pw"}])
        before.commit([_row(owed, now)[:17] + (1,), _row(plain, now)], [], [])
        assert r.zcard(f"{P}hist:acme") == 2
    finally:
        before.close()
    store = ArchivedStore({"redis": {"url": redis_url}, "postgres": {"dsn": postgres_dsn}})
    try:
        store.commit([_row(fresh, now)], [], [])
        (_, ((eid, fields),)), = r.xreadgroup("rx", store.consumer, {f"{P}rcpt:acme": ">"})
        assert store.taken("acme", fields, eid)[0][0] == owed
        store.entries[owed] = ("acme", eid, 1)
        store.batches[eid, 1] = {owed}
        assert store.drain() == 2  # the new blob, and the old lookup that asked no receipt
        store.commit([], [(0, owed)], [])
        assert store.lookup(owed)[17] == 0
        assert store.drain() == 1
        assert [store.archive.lookup(i)[17] for i in (owed, plain, fresh)] == [0, 0, 0]
        assert r.zcard(f"{P}hist:acme") == 0 and not list(r.scan_iter(f"{P}lk:*"))
        assert [row[0] for row in store.history("acme")] == [owed, plain, fresh]
    finally:
        store.close()


# ------------------------------------------------------------------ the ledger

@pytest.mark.slow
def test_the_ledger_moves_to_postgresql_and_a_retried_top_up_is_still_credited_once(
        tmp_path, redis_url, postgres_server, postgres_dsn):
    import json

    from hlrsmpp.postgres import ArchivedStore
    from hlrsmpp.postgres.store import LEDGER_HOLD
    r = redis.Redis.from_url(redis_url)
    b = ServerProcess(_config(tmp_path, redis_url, postgres_dsn), free_port(), free_port()).start()
    try:
        key = {"Idempotency-Key": "invoice-7"}
        first = _post(b.http_port, "/api/v1/accounts/acme/top-up", {"credit": "5", "note": "invoice 7"},
                      headers=key)
        _post(b.http_port, "/api/v1/accounts/acme/top-up", {"credit": "2"})
        before = json.loads(_http(b.http_port, "/api/v1/accounts/acme/ledger"))
        assert r.llen(f"{P}ledger:acme") == 3 and r.hlen(f"{P}idem:acme") == 1
        # An hour on, a drain moves the ledger (and the key) to PostgreSQL.
        store = ArchivedStore({"redis": {"url": redis_url}, "postgres": {"dsn": postgres_dsn}})
        try:
            assert store.drain(now=time.time() + LEDGER_HOLD + 60) == 3
        finally:
            store.close()
        assert not r.exists(f"{P}ledger:acme", f"{P}idem:acme")
        rows = postgres_server.query("SELECT seq, amount, idem_key FROM ledger ORDER BY seq")
        assert [(x["seq"], x["amount"], x["idem_key"]) for x in rows] == [
            (0, 1000 * 10**6, None), (1, 5 * 10**6, "invoice-7"), (2, 2 * 10**6, None)]
        # Read back from PostgreSQL, as it was; a later top-up follows it.
        assert json.loads(_http(b.http_port, "/api/v1/accounts/acme/ledger")) == before
        # The retry of the first top-up is answered from PostgreSQL, not credited again.
        again = _post(b.http_port, "/api/v1/accounts/acme/top-up", {"credit": "5", "note": "invoice 7"},
                      headers=key)
        assert again["package"] == first["package"]
        with pytest.raises(urllib.error.HTTPError) as conflict:
            _post(b.http_port, "/api/v1/accounts/acme/top-up", {"credit": "6"}, headers=key)
        assert conflict.value.code == 422
        last = _post(b.http_port, "/api/v1/accounts/acme/top-up", {"credit": "1"})
        assert last["account"]["credit"] == "1008", last["account"]
        after = json.loads(_http(b.http_port, "/api/v1/accounts/acme/ledger"))
        assert after["entries"][:3] == before["entries"] and len(after["entries"]) == 4, after
    finally:
        assert b.terminate() == 0


# ------------------------------------------------------------------ the schema and hlrsmpp migrate

def _migrate(cfg, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hlrsmpp", "migrate", "--config", str(cfg), *extra],
                          capture_output=True, text=True, timeout=300)


def test_a_schema_behind_is_refused_at_start_and_hlrsmpp_migrate_upgrades_it_once(
        tmp_path, redis_url, postgres_server, postgres_dsn):
    from hlrsmpp.config import ConfigError
    from hlrsmpp.postgres.archive import MIGRATIONS, VERSION, SchemaBehind
    # The history table of a first version (no version table then), with a lookup in it.
    postgres_server.query(MIGRATIONS[0] + ";")
    now = time.time()
    cfg = _config(tmp_path, redis_url, postgres_dsn)
    with pytest.raises(SchemaBehind, match=r"version 1, this hlrsmpp needs version %d: run `hlrsmpp migrate" % VERSION):
        Archive(postgres_dsn)
    server = ServerProcess(cfg, free_port(), free_port())
    with pytest.raises(RuntimeError, match="hlrsmpp migrate"):
        server.start()
    assert server.proc.wait(10) == 2
    done = _migrate(cfg)
    assert done.returncode == 0, done.stderr
    assert f"version 1 upgraded to {VERSION}" in done.stdout
    again = _migrate(cfg)
    assert again.returncode == 0 and f"version {VERSION}, nothing to do" in again.stdout
    assert postgres_server.query("SELECT version FROM schema_version")[0]["version"] == VERSION
    archive = Archive(postgres_dsn)
    try:
        assert archive.write([_row(_id_at(now), now)]) == 1
    finally:
        archive.close()
    # A schema newer than the code is refused too (an older hlrsmpp after an upgrade).
    postgres_server.query("UPDATE schema_version SET version = version + 1;")
    with pytest.raises(ConfigError, match="newer than this hlrsmpp's"):
        Archive(postgres_dsn)


@pytest.mark.slow
def test_hlrsmpp_migrate_moves_a_sqlite_store_into_the_shared_deployment_audited(
        tmp_path, redis_url, postgres_server, postgres_dsn):
    import json
    data = tmp_path / "data"
    local = tmp_path / "local.yaml"
    local.write_text(yaml.safe_dump({
        "smpp": {"host": "127.0.0.1"}, "http": {"host": "127.0.0.1"}, "storage": {"path": str(data)},
        "admin": {"token": ADMIN}, "log": {"format": "json"},
        "accounts": [{"system_id": "acme", "password": "pw", "credit": "1000"},
                     {"system_id": "free", "password": "pw"}]}))
    a = ServerProcess(local, free_port(), free_port()).start()
    try:
        client = Client(a.smpp_port)
        accepted = client.submit([f"4479{k:08d}" for k in range(300)])
        client.esme.pump(lambda: len(client.esme.receipts) == 300, timeout=30)
        client.esme.close()
        # An account of the config file alone (unlimited: the store never wrote its record).
        batch = _post(a.http_port, "/api/v1/lookups", {"account": "free", "numbers": ["447600000001", "447600000002"]})
        key = {"Idempotency-Key": "invoice-9"}
        first = _post(a.http_port, "/api/v1/accounts/acme/top-up", {"credit": "5"}, headers=key)
        ledger = json.loads(_http(a.http_port, "/api/v1/accounts/acme/ledger"))
        credit = first["account"]["credit"]
    finally:
        assert a.terminate() == 0
    cfg = _config(tmp_path, redis_url, postgres_dsn)
    done = _migrate(cfg, "--from-sqlite", str(data))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "302 lookups copied" in done.stdout and "audit: 2 of 2 accounts equal" in done.stdout, done.stdout
    # Run again: nothing is copied twice, the accounts are left as they are, still equal.
    again = _migrate(cfg, "--from-sqlite", str(data))
    assert again.returncode == 0 and "0 lookups copied" in again.stdout and "0 made" in again.stdout, again.stdout
    assert postgres_server.query("SELECT count(*) AS n FROM lookups")[0]["n"] == 302
    b = ServerProcess(cfg, free_port(), free_port()).start()
    try:
        assert set(_csv_ids(b.http_port)) == accepted
        assert json.loads(_http(b.http_port, f"/api/v1/batches/{batch['batch_id']}"))["lookups"] == batch["lookups"]
        assert json.loads(_http(b.http_port, "/api/v1/accounts/acme/ledger")) == ledger
        # The top-up retried against the shared deployment is answered, not credited again.
        retried = _post(b.http_port, "/api/v1/accounts/acme/top-up", {"credit": "5"}, headers=key)
        assert retried["package"] == first["package"] and retried["account"]["credit"] == credit
        client = Client(b.smpp_port)
        assert len(client.submit(["447900000001"])) == 1
        client.esme.close()
    finally:
        assert b.terminate() == 0


def test_the_drain_copies_every_column_exactly_at_the_edges_of_seconds(redis_url, postgres_dsn):
    """Records go from Redis to PostgreSQL as text, grouped by the second of their id
    (computed inside Redis): ids on either side of a second's edge, every column's value
    kinds (nulls, floats, text with a tab or a backslash) come back as they were."""
    from hlrsmpp.postgres import ArchivedStore
    store = ArchivedStore({"redis": {"url": redis_url}, "postgres": {"dsn": postgres_dsn}})
    r = redis.Redis.from_url(redis_url)
    try:
        store.seed([{"system_id": "acme", "password": "pw"}])
        ms = (int(time.time()) - 5) * 1000 - EPOCH_MS
        edges = [(ms << 22) - 1, ms << 22, ((ms + 999) << 22) | 0x3FFFFF, (ms + 1000) << 22,
                 ((ms + 1000) << 22) + 1]
        rows = []
        for k, lid in enumerate(edges):
            at = (((lid >> 22) + EPOCH_MS) / 1000)
            rows.append((lid, 7 if k % 2 else None, "acme", "http", "4479000000%02d" % k, at + 0.1234567,
                         at + 1 / 3, 1234567, 11 if k == 2 else 0, "44", "10", k % 2, "a\\b\tc" if k == 1 else "",
                         1, "262", "01", 27 if k == 2 else None, 0))
        store.commit(rows, [], [])
        assert store.drain() == len(rows)
        assert [store.archive.lookup(lid) for lid in edges] == rows
        assert not [k for k in r.scan_iter(f"{P}*") if k.startswith((f"{P}lk:".encode(), f"{P}batch:".encode()))]
        assert r.xlen(f"{P}hs:acme") == 0 and not r.exists(f"{P}hx")
        # Copied again (the drain died before Redis let go): only what is missing goes in.
        from hlrsmpp.redis.store import encode_row
        blob = "\x1e".join(encode_row(row) for row in rows).encode()
        store.archive._fetch("DELETE FROM lookups WHERE id = $1", edges[2])
        assert store.archive.write_records(blob) == 1
        assert [store.archive.lookup(lid) for lid in edges] == rows
    finally:
        store.close()


def test_records_with_a_line_break_or_the_quote_byte_are_copied_as_escaped_text(redis_url, postgres_dsn):
    """The drain copies records as CSV on the unit separator; a batch holding a byte that
    CSV would read as a line's end or a quote goes as escaped text instead, whole."""
    from hlrsmpp.postgres import ArchivedStore
    from hlrsmpp.redis.store import encode_row
    store = ArchivedStore({"redis": {"url": redis_url}, "postgres": {"dsn": postgres_dsn}})
    try:
        ms = int(time.time() * 1000) - EPOCH_MS
        odd = ["", "a\nb", "c\r", "d\x02e", "\\N", '"q"']
        rows = [((ms << 22) + k, None if k % 2 else 9, "acme", "smpp", "44790000000%d" % k, 1.5, 2.25, 100, 0, "44",
                 "10", 1, value, 0, "", "", None, 0) for k, value in enumerate(odd)]
        for batch in (rows[:1] + rows[5:], rows[1:5]):   # CSV (nothing odd), then text
            assert store.archive.write_records("\x1e".join(encode_row(r) for r in batch).encode()) == len(batch)
        assert [store.archive.lookup(r[0]) for r in rows] == rows
    finally:
        store.close()
