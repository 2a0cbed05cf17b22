"""Timing helper for AccountBook.admit: `python -m hlrsmpp.bench.admission [n]`.

Measures the realistic hot path: every check active (expiry, coverage, delay, bucket,
three windows, prepaid credit over two packages), all of them passing."""
from __future__ import annotations

import sys
import time
from datetime import date

from ..accounts import MICRO, Account, AccountBook, AccountSettings, Limits, Package


def bench_admit(n: int = 200_000) -> float:
    """Nanoseconds per accepted AccountBook.admit, best of 3 runs."""
    best = float("inf")
    for _ in range(3):
        acc = Account(AccountSettings(system_id="bench", password="x", coverage=frozenset({"91", "44", "359"}),
                                      expires=date(2099, 1, 1),
                                      limits=Limits(per_day=10 * n, per_week=10 * n, per_month=10 * n,
                                                    min_delay_ms=0, tps=1e9)),
                      [Package(n * MICRO // 20, date(2026, 1, 1)), Package(n * MICRO, date(2026, 2, 1))])
        book = AccountBook([acc], tz="Europe/Sofia")
        admit, now, step = book.admit, 1_780_000_000.0, 1e-6
        t0 = time.perf_counter_ns()
        for _ in range(n):
            now += step
            if admit(acc, "359", now) is not None:
                raise AssertionError("bench lookup refused")
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


if __name__ == "__main__":
    print(f"{bench_admit(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000):.0f} ns per admit")
