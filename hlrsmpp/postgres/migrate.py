"""``hlrsmpp migrate``: the PostgreSQL schema of a shared deployment made or brought up to
this version (idempotent: a schema at this version is left as it is), and optionally a
SQLite store's accounts, history and ledger moved into the shared deployment, audited.

The move writes PostgreSQL first (history by ``COPY``, the ledger by position: both skip
what is already there), then each account into Redis in one script that does nothing when
Redis already knows the account. A move that stopped half way is finished by running it
again; an account the shared deployment already has is left alone (its history and
ledger in PostgreSQL are still completed). The audit compares, per account, the SQLite
store with the shared deployment: lookups and their cost, the ledger's sum and the credit.
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from ..accounts.book import Account
from ..accounts.calendar import Calendar
from ..config import ConfigError
from ..domain import LOOKUP_COLUMNS
from ..errors import ToolError
from ..ids import first_id_at
from ..redis.store import packages_json
from .archive import Archive
from .store import ArchivedStore

#: Rows read from SQLite and copied to PostgreSQL at a time.
CHUNK = 20_000

#: ARGV: P, sid, settings JSON, packages JSON ('' for unlimited), lookups, their cost,
#: ledger entries (already in PostgreSQL), (period key, count)* -> 1 when made, 0 when
#: Redis already had the account. The key layout of hlrsmpp/redis/scripts.py.
ACCOUNT = r"""
local P, sid = ARGV[1], ARGV[2]
local key = P .. 'acct:' .. sid
if redis.call('HEXISTS', key, 'settings') == 1 then return 0 end
redis.call('HSET', key, 'settings', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', key, 'pk', ARGV[4]) end
redis.call('HSET', P .. 'tot:' .. sid, 'n', ARGV[5], 'c', ARGV[6])
redis.call('SET', P .. 'ledn:' .. sid, ARGV[7])
for i = 8, #ARGV, 2 do
  local ck = P .. 'cnt:' .. sid .. ':' .. ARGV[i]
  redis.call('SET', ck, ARGV[i + 1], 'EX', 35 * 86400)
end
redis.call('SADD', P .. 'accounts', sid)
redis.pcall('XGROUP', 'CREATE', P .. 'rcpt:' .. sid, 'rx', '0', 'MKSTREAM')
return 1
"""


def migrate(cfg: dict, sqlite_dir: str | None, out=print) -> int:
    """The command's work (see the module docstring): 0 when done and, with a SQLite store,
    the audit found every account equal; 1 when it did not."""
    storage = cfg["storage"]
    if not storage.get("postgres") or not storage.get("redis"):
        raise ToolError("the config has no shared deployment: set storage.redis and storage.postgres")
    dsn = storage["postgres"]["dsn"] if isinstance(storage["postgres"], dict) else None
    if not isinstance(dsn, str):
        raise ToolError("storage.postgres: expected {dsn: postgresql://...}")
    try:
        archive = Archive(dsn, upgrade=True)
    except ConfigError as err:
        raise ToolError(str(err)) from None
    found, now_at = archive.schema
    out(f"PostgreSQL schema at {archive.where}: "
        + (f"version {now_at}, nothing to do" if found == now_at else
           f"made at version {now_at}" if found == 0 else f"version {found} upgraded to {now_at}"))
    archive.close()
    if sqlite_dir is None:
        return 0
    file = Path(sqlite_dir) / "hlrsmpp.sqlite3"
    if not file.is_file():
        raise ToolError(f"--from-sqlite: no SQLite store at {file}")
    # Read-only: the embedded store is the source, never changed.
    db = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
    store = ArchivedStore(storage, cfg.get("accounts_timezone", "UTC"))
    try:
        return _move(db, store, Calendar(cfg.get("accounts_timezone", "UTC")), cfg.get("accounts") or [], out)
    finally:
        store.leave()
        store.close()
        db.close()


def _move(db: sqlite3.Connection, store: ArchivedStore, calendar: Calendar, config_accounts: list[dict],
          out) -> int:
    archive = store.archive
    accounts: dict[str, dict | None] = {
        sid: json.loads(rec) for sid, rec in db.execute("SELECT system_id, record FROM accounts")}
    # An account the embedded store never changed has its record in the config file alone.
    for (sid,) in db.execute("SELECT DISTINCT system_id FROM lookups UNION SELECT system_id FROM ledger"):
        if sid not in accounts:
            known = [d for d in config_accounts if d.get("system_id") == sid]
            accounts[sid] = Account.from_config(known[0]).to_record() if known else None
    # Receipts the embedded store still owed are not delivered by the shared deployment:
    # those lookups are written as expired (2), and counted.
    owed = db.execute("SELECT count(*) FROM receipt_queue").fetchone()[0]
    cols = ", ".join(c if c != "pending" else "CASE WHEN pending = 1 THEN 2 ELSE pending END"
                     for c in LOOKUP_COLUMNS)
    moved, last = 0, -1
    while True:
        rows = db.execute(f"SELECT {cols} FROM lookups WHERE id > ? ORDER BY id LIMIT ?", (last, CHUNK)).fetchall()
        if not rows:
            break
        moved += archive.write(rows)
        last = rows[-1][0]
    out(f"history: {moved} lookups copied to PostgreSQL ({owed} still owed a receipt: marked expired)")
    day = calendar.day(time.time())
    counts = {sid: c for sid, *c in db.execute(
        "SELECT system_id, SUM(id >= ?), SUM(id >= ?), SUM(id >= ?) FROM lookups WHERE id >= ? GROUP BY system_id",
        tuple(first_id_at(t) for t in (day.start, day.week_start, day.month_start))
        + (first_id_at(min(day.week_start, day.month_start)),))}
    totals = {sid: (n, c or 0) for sid, n, c in db.execute(
        "SELECT system_id, count(*), sum(cost) FROM lookups GROUP BY system_id")}
    script = store._ops.register_script(ACCOUNT)
    made = 0
    for sid, rec in sorted(accounts.items()):
        if rec is None:
            out(f"account {sid}: in the SQLite store's history, in neither its accounts nor the config: "
                "its lookups and ledger are copied, the account is not made (add it to the config)")
            continue
        ledger = db.execute("SELECT at, kind, amount, note, idem_key, idem_request, idem_answer FROM ledger "
                            "WHERE system_id = ? ORDER BY id", (sid,)).fetchall()
        archive.write_ledger([(sid, k, *row) for k, row in enumerate(ledger)])
        settings = json.dumps({k: v for k, v in rec.items() if k != "packages"},
                              sort_keys=True, separators=(",", ":"), default=str)
        pk = packages_json(rec["packages"])[0] if rec.get("packages") is not None else ""
        n, cost = totals.get(sid, (0, 0))
        args: list = [store.P, sid, settings, pk, n, cost, len(ledger)]
        for key, count in zip(day.keys, counts.get(sid, (0, 0, 0))):
            args += [key, count or 0]
        made += script(args=args)
    out(f"accounts: {made} made in Redis, {len(accounts) - made} already there (left as they are)")
    return _audit(db, store, accounts, out)


def _audit(db: sqlite3.Connection, store: ArchivedStore, accounts: dict, out) -> int:
    """Per account: lookups, their cost, the ledger's sum and the credit, on both sides."""
    archive = store.archive
    shared = {sid: (n, c) for sid, n, c in archive._fetch(
        "SELECT system_id, count(*), coalesce(sum(cost), 0) FROM lookups GROUP BY system_id")}
    ledgers = store.ledger_totals()
    redis_totals = store.totals()
    bad = 0
    out(f"{'account':<16} {'lookups':>10} {'cost':>14} {'ledger':>14} {'credit':>14}  audit")
    for sid, rec in sorted(accounts.items()):
        n, cost = db.execute("SELECT count(*), coalesce(sum(cost), 0) FROM lookups WHERE system_id = ?",
                             (sid,)).fetchone()
        ledger = db.execute("SELECT coalesce(sum(amount), 0) FROM ledger WHERE system_id = ?", (sid,)).fetchone()[0]
        credit = None
        if rec is None:
            bad += 1
            out(f"{sid:<16} {n:>10} {cost / 1e6:>14.6f} {ledger / 1e6:>14.6f} {'-':>14}  DIFFERS: no account")
            continue
        if rec.get("packages") is not None:
            credit = packages_json(rec["packages"])[1]
        view = store.credit(sid)
        got = (shared.get(sid, (0, 0)), redis_totals.get(sid, (0, 0)), ledgers.get(sid, 0),
               None if view is None else view["total"])
        want = ((n, cost), (n, cost), ledger, credit)
        equal = got == want
        bad += not equal
        out(f"{sid:<16} {n:>10} {cost / 1e6:>14.6f} {ledger / 1e6:>14.6f} "
            f"{'unlimited' if credit is None else f'{credit / 1e6:.6f}':>14}  "
            + ("equal" if equal else f"DIFFERS: shared deployment has {got}"))
    out(f"audit: {len(accounts) - bad} of {len(accounts)} accounts equal")
    return 1 if bad else 0


def command(args) -> int:
    """``hlrsmpp migrate`` (its options: cli.py)."""
    from .. import config as config_mod
    try:
        cfg = config_mod.load(args.config, {})
    except ConfigError as err:
        raise ToolError(str(err)) from None
    return migrate(cfg, args.from_sqlite)
