"""The history of a shared deployment in PostgreSQL: lookups (and so batches, a column of
each lookup) in a table partitioned by day.

A day's partition is a range of message ids (ids start with their millisecond: a day is
an id range, ``first_id_at``), so the id is at once the primary key and the partition
key, and retention drops whole partitions. Partitions are made a few days ahead, and for
any day a write brings (a drain that catches up after an outage).

Writes come in batches from the drain, never from the lookup path: binary COPY into a
temporary staging table, then ``INSERT ... ON CONFLICT (id) DO NOTHING`` in the same
transaction, so a batch written again (the process died between this commit and the
removal of the batch from Redis) adds nothing: every lookup is in PostgreSQL once.

asyncpg is asynchronous; the store's callers are threads (the journal's writer, the
cluster's workers, the history readers). The driver therefore runs on an event loop of
its own thread, and each call here blocks its caller until its statement is done: the
server's event loop never waits for PostgreSQL.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Coroutine, Iterable, Sequence, TypeVar

import asyncpg

from ..config import ConfigError
from ..domain import LOOKUP_COLUMNS
from ..ids import EPOCH_MS, first_id_at

T = TypeVar("T")
DAY = 86400
#: Days made ahead of today: a partition exists before its first lookup comes.
AHEAD = 3
_COLUMNS = ", ".join(LOOKUP_COLUMNS)

#: The schema, one step per version: a database at version N gets steps N+1.. from
#: ``hlrsmpp migrate``; the server makes a fresh database's whole schema itself and refuses
#: to start on one that is behind (or ahead of) this list.
MIGRATIONS = [
    # 1: the history, partitioned by day on the id
    """
    CREATE TABLE IF NOT EXISTS lookups (
        id        bigint NOT NULL,
        batch_id  bigint,
        system_id text NOT NULL,
        channel   text NOT NULL,
        msisdn    text NOT NULL,
        submitted double precision NOT NULL,
        done      double precision NOT NULL,
        cost      bigint NOT NULL,
        err       integer NOT NULL,
        cc        text NOT NULL,
        nnc       text NOT NULL,
        ported    smallint NOT NULL,
        p_nnc     text NOT NULL,
        roaming   smallint NOT NULL,
        r_cc      text NOT NULL,
        r_nnc     text NOT NULL,
        map_error integer,
        pending   smallint NOT NULL,
        PRIMARY KEY (id)
    ) PARTITION BY RANGE (id);
    -- an account's history is an id range of that account
    CREATE INDEX IF NOT EXISTS lookups_account ON lookups (system_id, id);
    CREATE INDEX IF NOT EXISTS lookups_batch ON lookups (batch_id) WHERE batch_id IS NOT NULL;
    """,
    # 2: the ledger: each account's credit movements in order (seq: the entry's position in
    # the account's ledger, so an entry written twice is there once), with the top-up's
    # Idempotency-Key, the digest of its request and its answer
    """
    CREATE TABLE IF NOT EXISTS ledger (
        system_id    text NOT NULL,
        seq          bigint NOT NULL,
        at           double precision NOT NULL,
        kind         text NOT NULL,
        amount       bigint NOT NULL,
        note         text NOT NULL DEFAULT '',
        idem_key     text,
        idem_request text,
        idem_answer  text,
        PRIMARY KEY (system_id, seq)
    );
    CREATE UNIQUE INDEX IF NOT EXISTS ledger_idem ON ledger (system_id, idem_key) WHERE idem_key IS NOT NULL;
    """,
]
VERSION = len(MIGRATIONS)
#: Serialises schema changes between processes (made at once by two starting processes).
_LOCK = 7405


#: The Redis store's record (pending flag first, then LOOKUP_COLUMNS) as text, and typed.
_RECORD = ("pending",) + tuple(c for c in LOOKUP_COLUMNS if c != "pending")
_TEXT_COLUMNS = ", ".join(f"{c} text" for c in _RECORD)
_CASTS = {"id": "bigint", "batch_id": "bigint", "submitted": "float8", "done": "float8", "cost": "bigint",
          "err": "integer", "ported": "smallint", "roaming": "smallint", "map_error": "integer",
          "pending": "smallint"}
_TYPED = ", ".join(f"nullif({c}, '')::{_CASTS[c]}" if c in ("batch_id", "map_error") else
                   f"{c}::{_CASTS[c]}" if c in _CASTS else c for c in LOOKUP_COLUMNS)

#: An empty batch_id (the third field of a text record) and map_error (the last): NULL.
_NO_BATCH = re.compile(rb"(?m)^(\d\t\d+\t)(?=\t)")
_NO_MAP_ERROR = re.compile(rb"(?m)\t$")


#: The records as CSV: the unit separator between fields, a quote that no record holds
#: (one that does goes the text way).
_QUOTE = b"\x02"
_CSV = {"format": "csv", "delimiter": "\x1f", "quote": _QUOTE.decode()}
_NOT_NULL_TEXT = ["system_id", "channel", "msisdn", "cc", "nnc", "p_nnc", "r_cc", "r_nnc"]


def _with_nulls(text: bytes) -> bytes:
    return _NO_MAP_ERROR.sub(b"\t\\\\N", _NO_BATCH.sub(b"\\1\\\\N", text))


def _id_time(lookup_id: int) -> float:
    """When an id was issued (epoch seconds): ids start with their millisecond."""
    return ((lookup_id >> 22) + EPOCH_MS) / 1000


class SchemaBehind(ConfigError):
    """The database's schema is older than this code's: ``hlrsmpp migrate`` upgrades it."""


def partition_name(day: datetime) -> str:
    return f"lookups_{day:%Y%m%d}"


def day_of(t: float) -> datetime:
    """The UTC day (midnight) of epoch time ``t``."""
    d = datetime.fromtimestamp(t, timezone.utc)
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)


class Archive:
    """PostgreSQL's side of the shared store: see the module docstring."""

    def __init__(self, dsn: str, upgrade: bool = False):
        """``upgrade``: bring an older schema to this code's version (``hlrsmpp migrate``);
        without it an older schema is refused (SchemaBehind)."""
        self.dsn = dsn
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="hlrsmpp-postgres", daemon=True)
        self._thread.start()
        self._days: set[str] = set()   # partitions known to exist
        try:
            self.pool = self._call(self._connect())
            #: (version found, version now)
            self.schema = self._call(self._schema(upgrade))
        except ConfigError:
            self.close()
            raise
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            self.close()
            raise ConfigError(f"storage.postgres: cannot use {self.where}: {err}") from None

    @property
    def where(self) -> str:
        """The DSN without its password, for logs."""
        dsn = self.dsn
        if "@" in dsn:
            scheme, rest = dsn.split("://", 1)
            dsn = f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
        return dsn

    async def _connect(self) -> asyncpg.Pool:
        # Made on the archive's own loop (the pool belongs to the loop it is made on).
        return await asyncpg.create_pool(self.dsn, min_size=1, max_size=4, command_timeout=60)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def _schema(self, upgrade: bool) -> tuple[int, int]:
        async with self._connection() as conn:
            async with conn.transaction():
                # Two processes starting at once: one makes the schema, the other waits.
                await conn.execute(f"SELECT pg_advisory_xact_lock({_LOCK})")
                found = await _version(conn)
                if found > VERSION:
                    raise ConfigError(f"storage.postgres: the schema at {self.where} is at version {found}, "
                                      f"newer than this hlrsmpp's ({VERSION}): upgrade hlrsmpp")
                if 0 < found < VERSION and not upgrade:
                    raise SchemaBehind(f"storage.postgres: the schema at {self.where} is at version {found}, "
                                       f"this hlrsmpp needs version {VERSION}: run `hlrsmpp migrate --config "
                                       f"FILE` once (it upgrades the schema in place), then start again")
                for step in MIGRATIONS[found:]:
                    await conn.execute(step)
                if found < VERSION:
                    await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
                    await conn.execute("DELETE FROM schema_version")
                    await conn.execute("INSERT INTO schema_version VALUES ($1)", VERSION)
        await self._partitions([time.time() + k * DAY for k in range(AHEAD + 1)])
        return found, VERSION

    async def _partitions(self, times: Iterable[float]) -> None:
        """The partitions of the days of ``times``, made when missing."""
        days = {day_of(t) for t in times}
        missing = [d for d in sorted(days) if partition_name(d) not in self._days]
        if not missing:
            return
        async with self._connection() as conn:
            for d in missing:
                lo, hi = first_id_at(d.timestamp()), first_id_at((d + timedelta(days=1)).timestamp())
                async with conn.transaction():
                    await conn.execute(f"SELECT pg_advisory_xact_lock({_LOCK})")
                    await conn.execute(f"CREATE TABLE IF NOT EXISTS {partition_name(d)} PARTITION OF lookups "
                                       f"FOR VALUES FROM ({lo}) TO ({hi})")
                self._days.add(partition_name(d))

    # ---------------------------------------------------------------- writes
    def write(self, rows: Sequence[tuple]) -> int:
        """Lookup rows (LOOKUP_COLUMNS order) into the history, each at most once (the
        ones already there are left as they are): how many were new."""
        return self._call(self._write(rows)) if rows else 0

    async def _write(self, rows: Sequence[tuple]) -> int:
        await self._partitions(r[5] for r in rows)
        async with self._connection() as conn:
            async with conn.transaction():
                await conn.execute("CREATE TEMP TABLE IF NOT EXISTS lookups_stage "
                                   "(LIKE lookups) ON COMMIT DELETE ROWS")
                await conn.copy_records_to_table("lookups_stage", records=rows, columns=LOOKUP_COLUMNS)
                status = await conn.execute(f"INSERT INTO lookups SELECT {_COLUMNS} FROM lookups_stage "
                                            "ON CONFLICT (id) DO NOTHING")
        return int(status.rsplit(" ", 1)[1])

    def write_ledger(self, rows: Sequence[tuple]) -> int:
        """Ledger entries (system_id, seq, at, kind, amount, note, idem_key, idem_request,
        idem_answer), each at most once: how many were new."""
        return self._call(self._write_ledger(rows)) if rows else 0

    async def _write_ledger(self, rows: Sequence[tuple]) -> int:
        async with self._connection() as conn:
            async with conn.transaction():
                new = 0
                for row in rows:
                    status = await conn.execute(
                        "INSERT INTO ledger (system_id, seq, at, kind, amount, note, idem_key, idem_request, "
                        "idem_answer) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING", *row)
                    new += int(status.rsplit(" ", 1)[1])
        return new

    def write_records(self, blob: bytes, span: tuple[int, int] | None = None) -> int:
        """Lookups as the Redis store keeps them (records separated by the record separator,
        fields by the unit separator, the pending flag first; in id order, or with ``span``,
        their lowest and highest id): into the history, each at most once; how many were
        new. Copied as text and typed by PostgreSQL: the process parses nothing."""
        if b"\n" not in blob and b"\r" not in blob and _QUOTE not in blob:
            # As CSV with the unit separator between fields: nothing to escape, and an
            # empty batch_id or map_error is NULL by CSV's own rule (the text columns are
            # FORCE_NOT_NULL: their empty values stay empty strings).
            return self._call(self._write_text(blob.replace(b"\x1e", b"\n") + b"\n", csv=True, span=span))
        text = (blob.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n")
                .replace(b"\r", b"\\r").replace(b"\x1f", b"\t").replace(b"\x1e", b"\n") + b"\n")
        return self._call(self._write_text(text, csv=False, span=span))

    async def _write_text(self, text: bytes, csv: bool, span: tuple[int, int] | None = None) -> int:
        sep = b"\x1f" if csv else b"\t"
        # The partitions of the days from the first record's to the last's (ids in order).
        first, last = span or (int(line.split(sep, 2)[1]) for line in (text[:text.index(b"\n")],
                                                                       text[text.rfind(b"\n", 0, -1) + 1:]))
        lo, hi = sorted(_id_time(i) for i in (first, last))
        await self._partitions([lo + k * DAY for k in range(int((hi - lo) // DAY) + 1)] + [hi])
        options: dict[str, Any] = dict(_CSV, force_not_null=_NOT_NULL_TEXT) if csv else {"format": "text"}
        async with self._connection() as conn:
            try:
                # Straight into the history: none of these ids is there yet (the usual case).
                async with conn.transaction():
                    status = await conn.copy_to_table("lookups", source=io.BytesIO(text if csv else _with_nulls(text)),
                                                      columns=_RECORD, **options)
                return int(status.rsplit(" ", 1)[1])
            except asyncpg.UniqueViolationError:
                pass
            # Some are (written before the process died, not yet removed from Redis): the
            # copy goes to a staging table of text columns, and only the new ones from there.
            if csv:
                options["force_not_null"] = list(_RECORD)
            async with conn.transaction():
                await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS lookups_text ({_TEXT_COLUMNS}) "
                                   "ON COMMIT DELETE ROWS")
                await conn.copy_to_table("lookups_text", source=io.BytesIO(text), **options)
                status = await conn.execute(f"INSERT INTO lookups ({_COLUMNS}) SELECT {_TYPED} FROM lookups_text "
                                            "ON CONFLICT (id) DO NOTHING")
        return int(status.rsplit(" ", 1)[1])

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the pool; one that failed other than by an SQL error (PostgreSQL
        went away in the middle of a COPY, say) is closed, never handed out again."""
        async with self.pool.acquire() as conn:
            try:
                yield conn
            except asyncpg.PostgresError:
                raise
            except BaseException:
                if not conn.is_closed():
                    with contextlib.suppress(asyncpg.InterfaceError):
                        conn.terminate()
                raise

    def prepare(self, now: float) -> None:
        """Today's partition and the next days', ahead of their lookups."""
        self._call(self._partitions([now + k * DAY for k in range(AHEAD + 1)]))

    def drop_before(self, cut: float) -> list[str]:
        """Retention: the partitions of days wholly before ``cut`` are dropped (a day is
        kept while any of its lookups is younger); their names."""
        return self._call(self._drop_before(cut))

    async def _drop_before(self, cut: float) -> list[str]:
        first = day_of(cut)
        async with self._connection() as conn:
            names = [r["name"] for r in await conn.fetch(
                "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'lookups'::regclass ORDER BY 1")]
            old = [n for n in names if n < partition_name(first)]
            for n in old:
                async with conn.transaction():
                    await conn.execute(f"SELECT pg_advisory_xact_lock({_LOCK})")
                    await conn.execute(f"DROP TABLE IF EXISTS {n}")
                self._days.discard(n)
        return old

    # ----------------------------------------------------------------- reads
    def history(self, system_id: str | None = None, since: float | None = None,
                until: float | None = None, limit: int = 1000, after_id: int = 0,
                newest_first: bool = False) -> list[tuple]:
        """A page in id order (the keyset paging of the embedded store's ``history_page``)."""
        lo = first_id_at(since) - 1 if since else 0
        where, args = ["id > $1"], [lo if newest_first else max(after_id, lo)]
        if system_id is not None:
            args.append(system_id)
            where.append(f"system_id = ${len(args)}")
        below = [first_id_at(until)] if until is not None else []
        if newest_first and after_id:
            below.append(after_id)
        if below:
            args.append(min(below))
            where.append(f"id < ${len(args)}")
        args.append(limit)
        return self._fetch(f"SELECT {_COLUMNS} FROM lookups WHERE {' AND '.join(where)} "
                           f"ORDER BY id {'DESC' if newest_first else ''} LIMIT ${len(args)}", *args)

    def lookup(self, message_id: int) -> tuple | None:
        rows = self._fetch(f"SELECT {_COLUMNS} FROM lookups WHERE id = $1", message_id)
        return rows[0] if rows else None

    def batch(self, batch_id: int) -> list[tuple]:
        return self._fetch(f"SELECT {_COLUMNS} FROM lookups WHERE batch_id = $1 ORDER BY id", batch_id)

    def max_id(self) -> int:
        return self._fetch("SELECT coalesce(max(id), 0) FROM lookups")[0][0]

    def ledger(self, system_id: str, below: int) -> list[tuple]:
        """The account's entries before position ``below`` (those Redis no longer holds):
        (at, kind, amount, note) in ledger order."""
        return self._fetch("SELECT at, kind, amount, note FROM ledger WHERE system_id = $1 AND seq < $2 "
                           "ORDER BY seq", system_id, below)

    def ledger_sums(self, system_id: str, below: int) -> tuple[int, int]:
        """(sum of the amounts, how many added credit) of the entries before ``below``."""
        total, added = self._fetch("SELECT coalesce(sum(amount), 0), count(*) FILTER (WHERE amount > 0) "
                                   "FROM ledger WHERE system_id = $1 AND seq < $2", system_id, below)[0]
        return int(total), int(added)

    def idempotent(self, system_id: str, key: str) -> tuple[str, str] | None:
        rows = self._fetch("SELECT idem_request, idem_answer FROM ledger WHERE system_id = $1 AND idem_key = $2",
                           system_id, key)
        return tuple(rows[0]) if rows else None

    def count(self) -> int:
        return self._fetch("SELECT count(*) FROM lookups")[0][0]

    def _fetch(self, sql: str, *args) -> list[tuple]:
        return self._call(self._fetch_async(sql, *args))

    async def _fetch_async(self, sql: str, *args) -> list[tuple]:
        async with self._connection() as conn:
            return [tuple(r) for r in await conn.fetch(sql, *args)]

    def close(self) -> None:
        if self.loop.is_closed():
            return
        pool = getattr(self, "pool", None)
        if pool is not None:
            try:
                asyncio.run_coroutine_threadsafe(asyncio.wait_for(pool.close(), 5), self.loop).result(10)
            except Exception:
                pool.terminate()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


async def _version(conn: asyncpg.Connection) -> int:
    """The schema's version: 0 for an empty database; 1 for the history table made before
    the schema had versions."""
    if await conn.fetchval("SELECT to_regclass('schema_version')") is not None:
        return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))
    return 1 if await conn.fetchval("SELECT to_regclass('lookups')") is not None else 0
