"""Throughput of a shared deployment, 1 process against N: ``python -m hlrsmpp.bench.redis``.

For each worker count it starts ``hlrsmpp serve --workers N`` on a Redis (a temporary
``redis-server`` unless ``--redis-url`` is given; that database is FLUSHED), drives it
with ``hlrsmpp bench`` (trx: one transceiver per account, the accounts prepaid), stops
it with SIGTERM, then audits Redis: every acknowledged lookup in the history once, the
credit exact (initial = free + spent), no receipt left pending, no lease left. With
``--postgres`` (a temporary PostgreSQL) or ``--postgres-dsn`` the history goes to
PostgreSQL. Each line gives the CPU a lookup cost each component: the server processes,
Redis, PostgreSQL (when started here) and the generator.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

CREDIT = Decimal("1000000")
PRICE = Decimal("0.1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TempRedis:
    """A throwaway redis-server (append-only file on, as a durable deployment would run)."""

    def __init__(self, appendfsync: str = "everysec"):
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("redis-server is not installed (apt-get install redis-server)")
        self.dir = Path(tempfile.mkdtemp(prefix="hlrsmpp-redis-"))
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--appendfsync", appendfsync, "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, 10)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class TempPostgres:
    """A throwaway PostgreSQL cluster (Debian's ``postgresql`` package: initdb and pg_ctl in
    a temporary directory, run by the unprivileged ``postgres`` account when we are root:
    PostgreSQL refuses to run as root). fsync stays on, as in production."""

    def __init__(self):
        import glob
        import pwd
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
        if not found:
            raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = Path(found[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="hlrsmpp-pg-"))
        self.port = _free_port()
        self.dsn = f"postgresql://hlrsmpp@127.0.0.1:{self.port}/postgres"
        self._as: list[str] = []
        if os.getuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", "data", "-U", "hlrsmpp", "-A", "trust", "-E", "UTF8", "--no-sync")
        self._run("pg_ctl", "-D", "data", "-l", "pg.log", "-w", "-o",
                  f"-h 127.0.0.1 -p {self.port} -k {self.dir}", "start")
        self.pid = int((self.dir / "data" / "postmaster.pid").read_text().split()[0])

    def _run(self, exe: str, *args: str) -> None:
        out = subprocess.run(self._as + [str(self.bin / exe), *args], capture_output=True, text=True, cwd=self.dir)
        if out.returncode:
            raise RuntimeError(f"{exe} failed: {out.stdout[-1000:]}{out.stderr[-1000:]}")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", "data", "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def _cpu(pid: int, children: bool = False) -> float:
    """utime + stime of a process, seconds (with ``children``: and of its children that
    ended, as PostgreSQL's connections do)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = sum(int(f) for f in fields[11:15 if children else 13])
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _tree_cpu(pid: int) -> float:
    """CPU of a process and of its children, living and ended."""
    return _cpu(pid, children=True) + sum(_cpu(c) for c in _children(pid))


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _pg(dsn: str, sql: str) -> list:
    """One statement on PostgreSQL (its rows), for the bench's set-up and audit."""
    import asyncio

    import asyncpg

    async def go():
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetch(sql) if sql.lstrip().upper().startswith("SELECT") else await conn.execute(sql)
        finally:
            await conn.close()
    return asyncio.run(go())


def run_one(url: str, workers: int, count: int, sessions: int, window: int, workdir: Path,
            postgres: str | None = None, postgres_pid: int | None = None) -> dict:
    import redis

    from .load import BenchConfig, bench
    r = redis.Redis.from_url(url)
    r.flushdb()
    if postgres:
        _pg(postgres, "DROP TABLE IF EXISTS lookups, ledger, schema_version CASCADE")
    # The names ``hlrsmpp bench`` uses for one transceiver per account: load, load2, load3 ...
    accounts = [{"system_id": f"load{i + 1}" if i else "load", "password": "load", "credit": str(CREDIT),
                 "price": str(PRICE), "max_tx": 100} for i in range(sessions)]
    conf = {
        "smpp": {"host": "127.0.0.1", "max_connections_per_ip": 100000},
        "http": {"host": "127.0.0.1"},
        "storage": {"redis": {"url": url}, **({"postgres": {"dsn": postgres}} if postgres else {})},
        "hlr": {"latency_ms": 0},
        "log": {"format": "json", "level": "warning"},
        "accounts": accounts,
    }
    cfg_file = workdir / f"redis-{workers}.yaml"
    cfg_file.write_text(json.dumps(conf, indent=1))
    smpp, http = _free_port(), _free_port()
    log = open(workdir / f"server-{workers}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "hlrsmpp", "serve", "--workers", str(workers),
                             "--config", str(cfg_file), "--smpp-port", str(smpp), "--http-port", str(http)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_port(smpp, 60)
        deadline = time.monotonic() + 60
        while r.scard("hlrsmpp:nodes") < workers and time.monotonic() < deadline:
            time.sleep(0.1)  # every worker joined (and so listening)
        time.sleep(0.5)
        idle_memory = r.info("memory")["used_memory"]
        # CPU of each component, from the first submit_sm to the end of the drain: the
        # server processes, Redis (its own count), PostgreSQL (when the bench started it: its
        # processes are known); the generator's is measured by the generator itself.
        parts = {"servers": lambda: _tree_cpu(proc.pid)}
        # Redis's own count (main thread and its I/O and fsync threads): also for a Redis elsewhere.
        parts["redis"] = lambda: sum(float(r.info("cpu")[k]) for k in ("used_cpu_sys", "used_cpu_user"))
        if postgres_pid:
            parts["postgres"] = lambda: _tree_cpu(postgres_pid)
        cpu0, t0 = {k: f() for k, f in parts.items()}, time.perf_counter()
        result = bench(BenchConfig(port=smpp, sessions=sessions, window=window, count=count,
                                   system_id="load", password="load", drain_timeout=120))
        wall = time.perf_counter() - t0
        used = {k: f() - cpu0[k] for k, f in parts.items()}
        result["servers_and_redis_cpu_pct"] = round(100 * (used["servers"] + used["redis"]) / wall, 1)
        if postgres:
            # Redis's memory is measured once the drain has moved every lookup to PostgreSQL.
            t1 = time.perf_counter()
            while any(r.zcard(f"hlrsmpp:hist:{a['system_id']}") or r.xlen(f"hlrsmpp:hs:{a['system_id']}")
                      for a in accounts) \
                    and time.perf_counter() - t1 < 300:
                time.sleep(0.05)
            result["drain_catch_up_s"] = round(time.perf_counter() - t1, 1)
            used = {k: f() - cpu0[k] for k, f in parts.items()}
        done = max(1, result["receipts"])
        result["cpu_us_per_lookup"] = {k: round(1e6 * v / done, 1) for k, v in used.items()}
        result["cpu_us_per_lookup"]["generator"] = result["bench_cpu_us_per_lookup"]
        result["redis_used_memory"] = r.info("memory")["used_memory"]
        result["redis_bytes_per_lookup"] = round((result["redis_used_memory"] - idle_memory) / max(1, count), 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
    archived = {row["system_id"]: row["n"] for row in _pg(
        postgres, "SELECT system_id, count(*) AS n FROM lookups GROUP BY 1")} if postgres else {}
    result["audit"] = audit(r, [a["system_id"] for a in accounts], archived=archived)
    result["server_workers"] = workers
    r.close()
    return result


def audit(r, sids: list[str], prefix: str = "hlrsmpp:", archived: dict[str, int] | None = None) -> dict:
    """Exactness after the run, read straight from Redis (and the lookups already drained
    to PostgreSQL: ``archived``, per account)."""
    out = {"lookups": 0, "history": 0, "nodes": set(), "credit_exact": True, "pending": 0, "leases": 0}
    for sid in sids:
        n, cost = (int(x or 0) for x in r.hmget(f"{prefix}tot:{sid}", "n", "c"))
        out["lookups"] += n
        ids = r.zrange(f"{prefix}hist:{sid}", 0, -1)
        # With PostgreSQL: the lookups not drained yet are blobs, one per group commit.
        blobs = sum(int(f[b"c"]) for _, f in r.xrange(f"{prefix}hs:{sid}"))
        out["history"] += len(ids) + blobs + (archived or {}).get(sid, 0)
        out["nodes"].update((int(i) >> 12) & 1023 for i in ids)
        free = sum(int(p["c"]) for p in json.loads(r.hget(f"{prefix}acct:{sid}", "pk")))
        if free + cost != int(CREDIT * 1_000_000):
            out["credit_exact"] = False
        out["pending"] += r.xlen(f"{prefix}rcpt:{sid}")
        out["leases"] += r.hlen(f"{prefix}lease:{sid}")
    out["nodes"] = sorted(out["nodes"])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hlrsmpp.bench.redis", description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", default="1,2", help="comma-separated process counts to measure")
    p.add_argument("--count", type=int, default=100_000)
    p.add_argument("--sessions", type=int, default=8, help="transceivers, one account each")
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--redis-url", default=None, help="use this Redis (its database is FLUSHED)")
    p.add_argument("--postgres-dsn", default=None,
                   help="keep the history in this PostgreSQL (its tables lookups, ledger and schema_version "
                   "are DROPPED first)")
    p.add_argument("--postgres", action="store_true",
                   help="keep the history in a temporary PostgreSQL started for the run (initdb, pg_ctl)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    temp = None if args.redis_url else TempRedis()
    url = args.redis_url or temp.url
    pg = TempPostgres() if args.postgres and not args.postgres_dsn else None
    dsn = pg.dsn if pg is not None else args.postgres_dsn
    workdir = Path(tempfile.mkdtemp(prefix="hlrsmpp-redis-bench-"))
    results = []
    try:
        for w in (int(x) for x in args.workers.split(",")):
            res = run_one(url, w, args.count, args.sessions, args.window, workdir,
                          dsn, pg.pid if pg is not None else None)
            results.append(res)
            a = res["audit"]
            ok = (a["credit_exact"] and a["pending"] == 0 and a["leases"] == 0
                  and a["lookups"] == a["history"] == res["submit_ok"])
            m = res.get("machine") or {}
            busy = m.get("busy_pct")
            others = (round(busy - res["bench_cpu_pct"] - res["servers_and_redis_cpu_pct"], 1)
                      if busy is not None else None)
            print(f"{w} process(es): {res['lookups_per_s']:>9,.0f} lookups/s  "
                  f"p50 {res['latency_ms']['p50']} ms p99 {res['latency_ms']['p99']} ms  "
                  f"{res['submit_ok']} ok, errors {res['errors'] or '-'}, nodes {a['nodes']}, "
                  f"audit {'exact' if ok else 'MISMATCH ' + json.dumps(a)}; CPU: workers+redis "
                  f"{res['servers_and_redis_cpu_pct']}%, generator {res['bench_cpu_pct']}%, "
                  f"machine {busy}% of {m.get('cpus', '?')}00% (others {others}%); CPU us/lookup "
                  + " ".join(f"{k} {v}" for k, v in res["cpu_us_per_lookup"].items()) + "; "
                  f"Redis used_memory {res['redis_used_memory']:,} bytes "
                  f"({res['redis_bytes_per_lookup']} per lookup"
                  + (f", drained {res['drain_catch_up_s']} s after the run" if "drain_catch_up_s" in res else "")
                  + ")", flush=True)
    finally:
        if temp is not None:
            temp.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    cpus = os.cpu_count()
    print(f"machine: {cpus} CPU(s); bench generator, redis-server and the workers share them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
