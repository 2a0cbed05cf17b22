"""``python -m hlrsmpp.bench.prefill DIR --count N``: fill a store with N realistic lookups, fast.

So that history figures (a lookup's throughput, latency beside an export, bytes per
lookup, pruning) can be measured at 10 or 100 million rows without first making them
over SMPP. The rows are what the server writes (the store's own schema and insert
statements): numbers of 20 countries resolved by the real resolver (cc, networks,
porting, roaming, error mix), ids and times spread over the last ``--days`` days in
time order, accounts of uneven sizes, mostly SMPP lookups with acknowledged receipts
and some HTTP batches. Bulk inserts in big transactions, ``synchronous=OFF`` (a
prefill that crashes is simply run again).
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from ..accounts.store import _INSERT_LOOKUPS, Store
from ..domain import LOOKUP_COLUMNS as _COLUMNS_ORDER, PENDING_NONE
from ..hlr.resolver import Resolver
from ..ids import EPOCH_MS, NODE_BITS, SEQ_BITS
from .load import parse_numbers

#: Errors the engine refunds (the caller is not charged for our own failures).
_REFUNDED = frozenset({14, 15, 16, 17})
_ROWS_PER_COMMIT = 200_000
_STEP = max(_INSERT_LOOKUPS)


def _results(pool: int, seed: int) -> list[tuple]:
    """A pool of resolved numbers: (msisdn, cc, nnc, err, ported, p_nnc, roaming, r_cc,
    r_nnc, latency, map_error) as the engine gets them."""
    resolver = Resolver(seed=seed)
    out = []
    for number in parse_numbers(None, pool, seed):
        dest = resolver.parse(number)
        if dest is not None:
            out.append(resolver.result_fields(dest))
    if not out:
        raise RuntimeError("no number of the default ranges resolves")
    return out


def rows(count: int, days: float, accounts: int, pool: int = 100_000, seed: int = 1,
         end: float | None = None, node: int = 0):
    """``count`` history rows (LOOKUP_COLUMNS order), oldest first, spread evenly (with
    jitter) over ``days`` days before ``end``."""
    rng = random.Random(seed)
    results = _results(pool, seed)
    names = [f"acct{i:03d}" for i in range(accounts)]
    # Uneven accounts: a few big senders, a long tail (Zipf-like weights).
    weights = [1 / (i + 1) for i in range(accounts)]
    prices = {n: rng.choice((0, 2000, 5000, 8000, 10000)) for n in names}
    end = time.time() if end is None else end
    start_ms = int((end - days * 86400) * 1000) - EPOCH_MS
    span_ms = max(int(days * 86400 * 1000), 1)
    node_bits = node << SEQ_BITS
    shift = NODE_BITS + SEQ_BITS
    pick_result, pick_account = rng.choice, rng.choices
    last_ms, seq = -1, 0
    batch_id, batch_left, batch_account = None, 0, names[0]
    chunk = 4096
    for base in range(0, count, chunk):
        n = min(chunk, count - base)
        owners = pick_account(names, weights, k=n)
        for k in range(n):
            ms = start_ms + (base + k) * span_ms // count + rng.randrange(4)
            if ms <= last_ms:
                ms, seq = last_ms, seq + 1
                if seq >> SEQ_BITS:
                    ms, seq = ms + 1, 0
            else:
                seq = 0
            last_ms = ms
            lid = ms << shift | node_bits | seq
            submitted = (ms + EPOCH_MS) / 1000
            if batch_left:
                batch_left -= 1
                owner, channel, bid = batch_account, "http", batch_id
            elif rng.random() < 0.002:  # an HTTP batch of up to 100 numbers starts
                batch_id, batch_left, batch_account = rng.getrandbits(63), rng.randrange(100), owners[k]
                owner, channel, bid = batch_account, "http", batch_id
            else:
                owner, channel, bid = owners[k], "smpp", None
            msisdn, cc, nnc, err, ported, p_nnc, roaming, r_cc, r_nnc, latency, map_error = pick_result(results)
            cost = 0 if err in _REFUNDED else prices[owner]
            yield (lid, bid, owner, channel, msisdn, submitted, submitted + latency, cost, err, cc, nnc,
                   int(ported), p_nnc, int(roaming), r_cc, r_nnc, map_error, PENDING_NONE)


def prefill(path: str | Path, count: int, days: float = 30.0, accounts: int = 50, seed: int = 1,
            progress: bool = False, pool: int = 100_000) -> dict:
    """Append ``count`` lookups to the store under ``path`` (made if missing), numbers
    drawn from a ``pool`` of resolved ones; returns figures: rows, seconds, file bytes,
    bytes per row."""
    store = Store(path)
    db = store._writer
    db.execute("PRAGMA synchronous=OFF")
    before = db.execute("SELECT COUNT(*) FROM lookups").fetchone()[0] if count else 0
    if before:
        # Appending older rows under newer ones would break id (time) order: later only.
        newest = store.max_id()
        end = time.time()
        if (newest >> (NODE_BITS + SEQ_BITS)) + EPOCH_MS >= (end - days * 86400) * 1000:
            raise ValueError(f"{path}: the store already holds lookups of the last {days:g} days")
    t0 = time.perf_counter()
    insert, single = _INSERT_LOOKUPS[_STEP], _INSERT_LOOKUPS[1]
    done = 0
    it = rows(count, days, accounts, pool=pool, seed=seed)
    db.execute("BEGIN")
    try:
        while done < count:
            n = min(_ROWS_PER_COMMIT, count - done)
            full, tail = divmod(n, _STEP)
            # Multi-row statements, as the group commit writes them: one step per 256 rows.
            db.executemany(insert, ([v for _, row in zip(range(_STEP), it) for v in row] for _ in range(full)))
            db.executemany(single, (row for _, row in zip(range(tail), it)))
            done += n
            db.execute("COMMIT")
            db.execute("BEGIN")
            if progress:
                rate = done / max(time.perf_counter() - t0, 1e-9)
                print(f"prefill: {done:,} rows, {rate:,.0f}/s", file=sys.stderr, flush=True)
        db.execute("COMMIT")
        store.catch_up_spans()    # where each account's lookups are, as the group commit writes it
        store.catch_up_rollups()  # the statistics of these days, as the server keeps them
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    finally:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.close()
    seconds = time.perf_counter() - t0
    size = Path(path, "hlrsmpp.sqlite3").stat().st_size
    total = before + done
    return {"rows": done, "total_rows": total, "seconds": round(seconds, 1),
            "rows_per_s": round(done / seconds) if seconds else None,
            "file_bytes": size, "bytes_per_lookup": round(size / total, 1) if total else None}


def repeat(path: str | Path, source: str | Path, times: int) -> dict:
    """A store of ``times`` copies of the history of the store under ``source``, each
    copy shifted back in time by the source's span: 100 million rows from 10 million in
    SQLite's own speed (appended in id order, as the server appends)."""
    src = Path(source, "hlrsmpp.sqlite3")
    if not src.exists():
        raise ValueError(f"{source}: no store")
    store = Store(path)
    db = store._writer
    db.execute("PRAGMA synchronous=OFF")
    t0 = time.perf_counter()
    try:
        if db.execute("SELECT 1 FROM lookups LIMIT 1").fetchone():
            raise ValueError(f"{path}: the store is not empty")
        db.execute("ATTACH DATABASE ? AS src", (str(src),))
        lo, hi = db.execute("SELECT MIN(id), MAX(id) FROM src.lookups").fetchone()
        if lo is None:
            raise ValueError(f"{source}: the store holds no lookups")
        ms = (hi >> (NODE_BITS + SEQ_BITS)) - (lo >> (NODE_BITS + SEQ_BITS)) + 1
        shift, seconds = ms << (NODE_BITS + SEQ_BITS), ms / 1000
        columns = ", ".join(c for c in _COLUMNS_ORDER)
        for k in range(times - 1, -1, -1):  # the oldest copy first: every insert appends
            picked = ", ".join(f"id - {k * shift}" if c == "id" else
                               f"batch_id + {k} * (batch_id IS NOT NULL)" if c == "batch_id" else
                               f"{c} - {k * seconds!r}" if c in ("submitted", "done") else c
                               for c in _COLUMNS_ORDER)
            db.execute("BEGIN")
            db.execute(f"INSERT INTO lookups ({columns}) SELECT {picked} FROM src.lookups ORDER BY id")
            db.execute("COMMIT")
        db.execute("DETACH DATABASE src")
        store.catch_up_spans()
        store.catch_up_rollups()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        total = db.execute("SELECT COUNT(*) FROM lookups").fetchone()[0]
    finally:
        store.close()
    secs = time.perf_counter() - t0
    size = Path(path, "hlrsmpp.sqlite3").stat().st_size
    return {"total_rows": total, "seconds": round(secs, 1), "file_bytes": size,
            "bytes_per_lookup": round(size / total, 1) if total else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hlrsmpp.bench.prefill", description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="the store's directory (storage.path); made if missing")
    p.add_argument("--count", type=int, default=None, help="lookups to add")
    p.add_argument("--repeat", nargs=2, metavar=("SOURCE", "TIMES"), default=None,
                   help="instead: TIMES copies of the store under SOURCE, each earlier by its span "
                        "(100 million rows from 10 million, fast)")
    p.add_argument("--days", type=float, default=30.0, help="spread over this many days before now")
    p.add_argument("--accounts", type=int, default=50, help="accounts (acct000, acct001, ...)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--progress", action="store_true", help="a line per 200,000 rows on stderr")
    args = p.parse_args(argv)
    if (args.count is None) == (args.repeat is None):
        p.error("give --count or --repeat")
    if args.count is not None and (args.count < 0 or args.days <= 0 or args.accounts < 1):
        p.error("--count >= 0, --days > 0 and --accounts >= 1")
    try:
        if args.repeat:
            if not args.repeat[1].isdigit() or int(args.repeat[1]) < 1:
                p.error("--repeat SOURCE TIMES: TIMES a positive count")
            out = repeat(args.data, args.repeat[0], int(args.repeat[1]))
        else:
            out = prefill(args.data, args.count, args.days, args.accounts, args.seed, args.progress)
    except (OSError, ValueError) as err:
        print(f"prefill: {err}", file=sys.stderr)
        return 1
    print(" ".join(f"{k}={v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
