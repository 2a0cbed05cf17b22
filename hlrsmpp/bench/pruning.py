"""``python -m hlrsmpp.bench.pruning``: lookups/s while history retention prunes, against without.

Prefills a store with ``--rows`` lookups spread over 10 days, then, ``--pairs`` times and
interleaved, copies it and runs the same closed-loop load (``make bench``: 4 sessions,
window 64, ``--count`` lookups) on a server with ``history.retention_days: 5`` (so half the
rows are pruned while the load runs: the rows removed during the run are reported) and on
one with no retention. Prints each run and the ratio of the medians.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import urllib.request
from dataclasses import replace
from pathlib import Path

from .load import BenchConfig, SpawnedServer, bench
from .prefill import prefill


def _pruned(http_port: int) -> int:
    text = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=30).read().decode()
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("hlrsmpp_history_pruned_rows_total"))


def _run(base: Path, days: float, count: int, sessions: int, window: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="hlrsmpp-pruning-"))
    try:
        shutil.copytree(base, work / "data")
        cfg = BenchConfig(sessions=sessions, window=window, count=count, spawn=True, data=str(work / "data"))
        probe = SpawnedServer(cfg)
        conf = json.loads(probe.write_config().read_text())
        conf["history"] = {"retention_days": days}
        (work / "bench.yaml").write_text(json.dumps(conf))
        shutil.rmtree(probe.dir, ignore_errors=True)
        cfg = replace(cfg, config=str(work / "bench.yaml"))
        srv = SpawnedServer(cfg).start(timeout=300)
        try:
            result = bench(replace(cfg, spawn=False, host="127.0.0.1", port=srv.smpp_port,
                                   server_pid=srv.proc.pid))
            pruned = _pruned(srv.http_port)
        finally:
            srv.stop()
        return {"retention_days": days, "lookups_per_s": result["lookups_per_s"],
                "pruned_rows": pruned, "resp_p99_ms": result["resp_latency_ms"]["p99"]}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hlrsmpp.bench.pruning", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2_000_000, help="lookups in the store (10 days of them)")
    p.add_argument("--count", type=int, default=200_000, help="lookups of each run")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--sessions", type=int, default=4)
    p.add_argument("--window", type=int, default=64)
    args = p.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="hlrsmpp-pruning-base-"))
    try:
        filled = prefill(base, args.rows, days=10)
        print(f"prefill: {filled}", file=sys.stderr, flush=True)
        runs = []
        for _ in range(args.pairs):
            for days in (5, 0):
                runs.append(_run(base, days, args.count, args.sessions, args.window))
                print(json.dumps(runs[-1]), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    with_, without = ([r["lookups_per_s"] for r in runs if bool(r["retention_days"]) is b] for b in (True, False))
    print(f"median lookups/s: pruning {statistics.median(with_):,.0f}, without {statistics.median(without):,.0f}, "
          f"ratio {statistics.median(with_) / statistics.median(without):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
