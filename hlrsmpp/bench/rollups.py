"""How long an account's statistics take from the per-day rollups:
`python -m hlrsmpp.bench.rollups [--redis URL] [--days 365] [--per-day 100000]`.

Fills the rollups directly (no lookups) for one account: each day its ``per-day`` lookups
spread over the networks of 20 countries and 10 outcomes (every country, network and
outcome present every day: the most distinct keys such traffic makes), plus 50 other
accounts' days beside it; then times /api/v1/me/stats' read of a whole year, per ``by``
(the best of 5, in milliseconds)."""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import date, timedelta

from ..accounts.store import Store
from ..hlr.networks import DEFAULT_DIR, load_regions

COUNTRIES = ("GB", "FR", "DE", "ES", "IT", "US", "IN", "BG", "NL", "BE", "PT", "PL", "RO", "GR",
             "TR", "AE", "SA", "BR", "MX", "ZA")
ERRS = (0, 11, 12, 13, 14, 15, 16, 17, 19, 21)


def day_sums(sid: str, day: str, per_day: int, rng: random.Random) -> dict:
    regions = load_regions(DEFAULT_DIR / "countries.csv")
    keys = [(r.cc, nnc, err) for r in (regions[c] for c in COUNTRIES) for nnc in r.networks
            for err in ERRS]
    weights = [rng.random() for _ in keys]
    total = sum(weights)
    return {(sid, day, cc, nnc, err): [max(1, round(per_day * w / total)), 100_000 * max(1, round(per_day * w / total))]
            for (cc, nnc, err), w in zip(keys, weights)}


def fill(store, days: int, per_day: int, others: int = 50) -> tuple[str, str, int]:
    rng = random.Random(1)
    first = date.today() - timedelta(days=days - 1)
    rows = 0
    for k in range(days):
        day = (first + timedelta(days=k)).isoformat()
        sums = day_sums("acme", day, per_day, rng)
        for o in range(others):
            sums |= {(f"other{o}",) + key[1:]: v for key, v in list(day_sums("x", day, 100, rng).items())[:20]}
        rows += len(sums)
        commit_rollups(store, sums)
    return first.isoformat(), (first + timedelta(days=days)).isoformat(), rows


def commit_rollups(store, sums: dict) -> None:
    if isinstance(store, Store):
        store.add_rollups(sums)
    else:
        from ..redis.store import rollup_args
        args = rollup_args(sums)
        pipe = store._w.pipeline(transaction=False)
        i = 1
        for _ in range(args[0]):
            key, nf = f"{store.P}roll:{args[i]}", args[i + 1]
            i += 2
            pipe.hset(key, mapping={args[i + 2 * j]: args[i + 2 * j + 1] for j in range(nf)})
            i += 2 * nf
        pipe.execute()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m hlrsmpp.bench.rollups")
    p.add_argument("--redis", help="a Redis URL (default: a SQLite store in a temporary directory)")
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--per-day", type=int, default=100_000)
    args = p.parse_args()
    if args.redis:
        from ..redis.store import RedisStore
        store = RedisStore({"url": args.redis, "prefix": "bench-rollups:"})
    else:
        store = Store(tempfile.mkdtemp(prefix="hlrsmpp-rollups-"))
    t0 = time.perf_counter()
    since, until, rows = fill(store, args.days, args.per_day)
    print(f"filled {rows} rollup rows ({args.days} days) in {time.perf_counter() - t0:.1f} s")
    for by in ("day", "country", "network", "status"):
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            out = store.rollups("acme", since, until, by)
            best = min(best, time.perf_counter() - t)
        print(f"by={by:<8} {len(out):>4} values, {sum(r[1] for r in out):>11} lookups: {best * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
