"""``python -m hlrsmpp.bench.console --data DIR``: how long every console page takes on a big history.

Spawns a server on the store under ``--data`` (fill it first: ``python -m
hlrsmpp.bench.prefill DIR --count 10000000``, or ``--repeat`` a smaller one), gives the
account ``--account`` (by default the prefill's biggest, acct000) a password and some
credit over the admin API, logs in on the console as that customer and as the operator,
and times each page ``--repeat`` times after one warm-up: the customer's dashboard, new
request, a request's results, past requests (newest, a page deep down by its cursor, and
filtered by status, error, country, network, number prefix, all of them, and a prefix no
number has: the bounded scan's worst case), contacts, account; the operator's accounts,
an account, sessions, test bench, system. Prints the median and p95 of each, in
milliseconds, as a Markdown table; exits 1 when a page did not answer 200.

The figures include the HTTP round trip on loopback (aiohttp's client), as a browser on the
same host would see them; the client runs in this process.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from .load import BenchConfig, SpawnedServer

_CSRF = re.compile(r'name="csrf" value="([^"]*)"')
_OLDER = re.compile(r'<a rel="next" href="([^"]+)"')
_BATCH = re.compile(r'/console/lookup/(\d+)/rows')


class _Browser:
    """A cookie jar and the last page's CSRF token: what the console needs of a client."""

    def __init__(self, session, base: str):
        self.session, self.base, self.csrf = session, base, ""

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.base + path) as r:
            text = await r.text()
        if (m := _CSRF.search(text)) is not None:
            self.csrf = m.group(1)
        return r.status, text

    async def post(self, path: str, data: dict) -> tuple[int, str]:
        async with self.session.post(self.base + path, data={**data, "csrf": self.csrf}) as r:
            text = await r.text()
        if (m := _CSRF.search(text)) is not None:
            self.csrf = m.group(1)
        return r.status, text

    async def login(self, name: str, password: str) -> None:
        await self.get("/console/login")
        status, page = await self.post("/console/login", {"system_id": name, "password": password})
        if status != 200 or "Log out" not in page:
            raise RuntimeError(f"console login as {name} failed ({status})")


async def _api(session, base: str, token: str, method: str, path: str, body: dict | None = None,
               key: str | None = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers["Idempotency-Key"] = key
    async with session.request(method, f"{base}/api/v1{path}", json=body, headers=headers) as r:
        return r.status, json.loads(await r.text() or "{}")


async def _prepare(session, base: str, token: str, account: str, password: str) -> None:
    """The account exists, with this password and credit for a lookup."""
    status, _ = await _api(session, base, token, "PATCH", f"/accounts/{account}", {"password": password})
    if status == 404:
        status, body = await _api(session, base, token, "POST", "/accounts",
                                  {"system_id": account, "password": password})
    if status not in (200, 201):
        raise RuntimeError(f"cannot give {account} a password over the admin API ({status})")
    await _api(session, base, token, "POST", f"/accounts/{account}/top-up", {"credit": "1000"},
               key=secrets.token_hex(8))


async def _sample(session, base: str, token: str, account: str) -> dict[str, str]:
    """Filter values the account's history holds (its newest lookup's)."""
    async with session.get(f"{base}/api/v1/history", headers={"Authorization": f"Bearer {token}"},
                           params={"account": account, "order": "desc", "limit": "1"}) as r:
        items = (json.loads(await r.text()) or {}).get("items") or []
    if not items:
        return {"cc": "44", "network": "23410", "prefix": "4474"}
    v = items[0]
    return {"cc": v["cc"], "network": v["network"] or v["nnc"] or "23410", "prefix": v["number"][:5]}


async def _time(fetch, path: str, repeat: int) -> tuple[list[float], int]:
    status, _ = await fetch(path)   # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        status, _ = await fetch(path)
        times.append((time.perf_counter() - t0) * 1000)
    return times, status


def _p95(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


async def run(base: str, token: str, account: str, repeat: int) -> list[dict]:
    import aiohttp

    password = secrets.token_hex(4)   # an SMPP password: at most 8 characters
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as s, \
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as so:
        await _prepare(s, base, token, account, password)
        sample = await _sample(s, base, token, account)
        customer, operator = _Browser(s, base), _Browser(so, base)
        await customer.login(account, password)
        await operator.login("admin", token)
        _, page = await customer.post("/console/lookup", {"numbers": "447400123456"})
        batch = _BATCH.search(page)
        # A page deep in the history: ten pages down, by the cursors.
        deep = "/console/history"
        for _ in range(10):
            _, page = await customer.get(deep)
            if (m := _OLDER.search(page)) is None:
                break
            deep = m.group(1).replace("&amp;", "&")
        filters = {
            "status": {"status": "UNDELIV"},
            "error": {"err": "11"},
            "country": {"cc": sample["cc"]},
            "network": {"network": sample["network"]},
            "number prefix": {"prefix": sample["prefix"]},
            "all filters": {"status": "DELIVRD", "cc": sample["cc"], "network": sample["network"],
                            "prefix": sample["prefix"]},
            "prefix no number has": {"prefix": "999999"},
        }
        pages = [("customer", "dashboard", "/console/"), ("customer", "new request", "/console/lookup")]
        if batch is not None:
            pages.append(("customer", "request results", f"/console/lookup/{batch.group(1)}"))
        pages += [("customer", "past requests", "/console/history"),
                  ("customer", "past requests, 10 pages deep", deep)]
        pages += [("customer", f"past requests, {name}", "/console/history?" + urlencode(f))
                  for name, f in filters.items()]
        pages += [("customer", "contacts", "/console/contacts"), ("customer", "account", "/console/account"),
                  ("operator", "accounts", "/console/admin/accounts"),
                  ("operator", "an account", f"/console/admin/accounts/{account}"),
                  ("operator", "sessions", "/console/admin/sessions"),
                  ("operator", "test bench", "/console/admin/testbench"),
                  ("operator", "system", "/console/admin/system")]
        out = []
        for who, name, path in pages:
            browser = customer if who == "customer" else operator
            times, status = await _time(browser.get, path, repeat)
            out.append({"who": who, "page": name, "path": path, "status": status,
                        "median_ms": round(statistics.median(times), 1), "p95_ms": round(_p95(times), 1)})
        return out


def table(rows: list[dict]) -> str:
    lines = ["| who | page | median ms | p95 ms | status |", "|---|---|---:|---:|---|"]
    lines += [f"| {r['who']} | {r['page']} | {r['median_ms']} | {r['p95_ms']} | {r['status']} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hlrsmpp.bench.console", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="the store's directory (prefilled)")
    p.add_argument("--account", default="acct000", help="the customer (a prefill's biggest: acct000)")
    p.add_argument("--repeat", type=int, default=20, help="timed requests per page (after one warm-up)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat: at least 1")
    if not Path(args.data, "hlrsmpp.sqlite3").exists():
        p.error(f"--data {args.data}: no store there (python -m hlrsmpp.bench.prefill DIR --count N)")
    token = secrets.token_urlsafe(24)
    conf_dir = Path(tempfile.mkdtemp(prefix="hlrsmpp-bench-console-"))
    config = conf_dir / "console.yaml"
    config.write_text(json.dumps({   # JSON is YAML
        "http": {"host": "127.0.0.1"}, "smpp": {"host": "127.0.0.1"},
        "admin": {"token": token}, "log": {"format": "json", "level": "warning"},
        # The bench logs in many times from one address: no ban for it.
        "bans": {"after": 1_000_000_000, "window": 1, "time": 1}}) + "\n")
    srv = SpawnedServer(BenchConfig(spawn=True, config=str(config), data=str(Path(args.data).resolve())))
    try:
        srv.start(timeout=600)
        rows = asyncio.run(run(f"http://127.0.0.1:{srv.http_port}", token, args.account, args.repeat))
    finally:
        srv.stop()
        config.unlink(missing_ok=True)
        conf_dir.rmdir()
    print(json.dumps(rows, indent=1) if args.json else table(rows))
    return 0 if all(r["status"] == 200 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
