"""``python -m hlrsmpp.bench.isolation``: SMPP latency with and without history readers.

Spawns a server on a store prefilled with ``--rows`` lookups (or ``--data DIR``, filled
before), then measures the same open-loop SMPP load (``--rate`` lookups/s for
``--duration`` seconds) twice: alone, then while one client streams a CSV export of
``--export-rows`` lookups and ``--history-clients`` clients page the JSON history of
random accounts without pause. The HTTP clients run in a process of their own, at lower
priority (they stand for clients on other machines). Prints both latency figures and their
ratio (the target: p99 with readers within 1.5x of p99 without).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

from .load import BenchConfig, SpawnedServer, bench


async def _http_load(base: str, token: str, export_rows: int, clients: int, stop_at: float,
                     accounts: list[str]) -> dict:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    out = {"export_bytes": 0, "export_s": None, "pages": 0, "page_errors": 0}

    async def export(session: aiohttp.ClientSession) -> None:
        t0 = time.monotonic()

        async def read() -> None:
            async with session.get(f"{base}/history", headers=headers,
                                   params={"format": "csv", "limit": str(export_rows)}) as r:
                async for chunk in r.content.iter_any():
                    out["export_bytes"] += len(chunk)
            out["export_s"] = round(time.monotonic() - t0, 2)
        try:  # cut off when the measurement ends (then: export_s null, the bytes so far)
            await asyncio.wait_for(read(), max(stop_at - time.monotonic(), 0.1))
        except asyncio.TimeoutError:
            pass

    async def pages(session: aiohttp.ClientSession, rng: random.Random) -> None:
        while time.monotonic() < stop_at:
            params = {"account": rng.choice(accounts), "limit": "100", "order": "desc"}
            async with session.get(f"{base}/history", headers=headers, params=params) as r:
                body = await r.read()
                if r.status == 200:
                    out["pages"] += 1
                    nxt = json.loads(body)["next"]
                    if nxt:  # and the next page of it, by its cursor
                        params["after"] = nxt
                        async with session.get(f"{base}/history", headers=headers, params=params) as r2:
                            await r2.read()
                            out["pages"] += 1
                else:
                    out["page_errors"] += 1

    conn = aiohttp.TCPConnector(limit=clients + 2)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=None)) as s:
        tasks = [asyncio.ensure_future(export(s))] if export_rows else []
        tasks += [asyncio.ensure_future(pages(s, random.Random(i))) for i in range(clients)]
        await asyncio.gather(*tasks)
    return out


def _http_main(base, token, export_rows, clients, stop_at, accounts, conn) -> None:
    # The clients stand for other machines: on this one, they yield the CPU to the server.
    os.nice(10)
    conn.send(asyncio.run(_http_load(base, token, export_rows, clients, stop_at, accounts)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hlrsmpp.bench.isolation", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="an existing store directory (else a temporary one, prefilled)")
    p.add_argument("--rows", type=int, default=1_000_000, help="prefill this many lookups first (without --data)")
    p.add_argument("--rate", type=float, default=5000.0, help="SMPP lookups/s offered")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of each SMPP run")
    p.add_argument("--export-rows", type=int, default=1_000_000, help="rows of the concurrent CSV export")
    p.add_argument("--history-clients", type=int, default=20, help="concurrent JSON history clients")
    p.add_argument("--sessions", type=int, default=4)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--server-arg", action="append", default=[], help="passed to hlrsmpp serve")
    p.add_argument("--server-pythonpath", default=None,
                   help="PYTHONPATH of the server only (e.g. another checkout, to compare)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    cfg = BenchConfig(sessions=args.sessions, window=args.window, count=None, duration=args.duration,
                      rate=args.rate, spawn=True, data=args.data, server_args=args.server_arg,
                      prefill=0 if args.data else args.rows)
    srv = SpawnedServer(cfg)
    if args.server_pythonpath:
        os.environ["PYTHONPATH"] = args.server_pythonpath
    try:
        srv.start(timeout=600)
    finally:
        os.environ.pop("PYTHONPATH", None)
    try:
        data = Path(args.data).resolve() if args.data else srv.dir / "data"
        token = (data / "admin_token").read_text().strip()
        base = f"http://127.0.0.1:{srv.http_port}/api/v1"
        run = replace(cfg, spawn=False, host="127.0.0.1", port=srv.smpp_port, server_pid=srv.proc.pid)
        # One page first (once HTTP listens): the readers start at the first read, unmeasured.
        for _ in range(600):
            try:
                urllib.request.urlopen(urllib.request.Request(
                    f"{base}/history?limit=1", headers={"Authorization": f"Bearer {token}"}), timeout=120).read()
                break
            except (ConnectionError, urllib.error.URLError):
                time.sleep(0.1)
        alone = bench(run)
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        stop_at = time.monotonic() + args.duration + 2
        http = ctx.Process(target=_http_main, args=(base, token, args.export_rows, args.history_clients,
                                                    stop_at, [f"acct{i:03d}" for i in range(50)], child))
        http.start()
        time.sleep(1.0)  # the export and the pages under way
        loaded = bench(run)
        http.join(600)
        readers = parent.recv() if parent.poll(1) else {}
    finally:
        srv.stop()

    def figures(r: dict) -> dict:
        return {"lookups_per_s": r.get("lookups_per_s"), **{f"resp_{k}": v for k, v in r["resp_latency_ms"].items()
                                                           if k in ("p50", "p99", "p99.9", "max")}}

    out = {"rate": args.rate, "duration": args.duration, "alone": figures(alone),
           "with_readers": figures(loaded), "readers": readers}
    if out["alone"]["resp_p99"]:
        out["p99_ratio"] = round(out["with_readers"]["resp_p99"] / out["alone"]["resp_p99"], 2)
    print(json.dumps(out, indent=2) if args.json else
          "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
