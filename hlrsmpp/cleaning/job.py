"""Contact-list cleaning (as the OVH-style manager does it): ``CleanJob``, the job runner
behind ``hlrsmpp clean`` and the HTTP API (upload, poll ``progress()``, download the output
and the report).

Input: a CSV with a ``numbers`` column (every other column kept; the delimiter is
found from the header or given) or a text file with one international number a line.

Freemium: every number is normalised to E.164 (digits, no '+') with the resolver's
precomputed numbering tables; syntactically impossible numbers and duplicates (after
normalisation; the first occurrence wins) are removed.
Premium: every surviving number is also looked up (charged per contact to the named
account, recorded in its history) and the numbers the HLR says are invalid or inactive
are removed (see ``DROPPED_ERRS``); absent subscribers are kept unless ``drop_absent``.

The cleaned file replaces the original atomically (temporary file, then os.replace);
the original is kept beside it as ``FILE.orig-YYYYmmddHHMMSS``; a JSON report is
written beside it as ``FILE.report-YYYYmmddHHMMSS.json``.

Memory stays bounded on big files: rows are streamed, duplicates are found with a
compact set of the numbers as 64-bit integers (~16 bytes a number), and premium
lookups are windowed (results are written in input order as they arrive).
"""
from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import resource
import shutil
import sys
import time
from array import array
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..hlr import ERR_NAMES, PERMANENT
from ..errors import ToolError
from ..files import atomic_file
from ..smpp.status import Status, status_name

#: HLR outcomes that remove a number in premium mode: the subscriber does not exist or
#: cannot receive SMS, and a retry would not change it (hlr.PERMANENT: 012 unknown,
#: 013 unidentified, 018 invalid MSISDN, 019 barred, 020 illegal, 021 teleservice not
#: provisioned, 022 facility not supported, 024 unexpected data value).
#: 011 (absent: switched off) is kept unless --drop-absent; 000, 023 (busy) and our own
#: failures 014-017 (refunded, say nothing of the number) are kept.
DROPPED_ERRS = frozenset(PERMANENT)
ABSENT = 11
#: Lookup refusals that are about the number, not the job: the number is removed
#: (RINVDSTADR: the server finds it impossible) or kept unchecked (RCOVERR: the account
#: does not cover its country). Any other refusal (credit, expiry, ...) stops the job.
NUMBER_REFUSALS = {Status.RINVDSTADR: False, Status.RCOVERR: True}   # status -> kept?

STYLES = ("digits", "plus", "keep")
DELIMITERS = ",;\t|"
_SEPARATORS = str.maketrans("", "", " \t\u00a0-.()/")
_YIELD_EVERY = 2000   # rows between two yields to the event loop (the server's, over HTTP)


#: submit_sm_resp statuses that mean "later": the number is submitted again after a pause.
RETRY_STATUSES = frozenset({Status.RTHROTTLED, Status.RMSGQFUL})


@dataclass
class Result:
    """What became of one submitted number."""
    number: str
    status: int = 0                 # submit_sm_resp command_status (0: accepted)
    message_id: str = ""
    receipt: Any = None            # tools.esme.Receipt (its err) once it came
    timed_out: bool = False         # accepted, but no receipt within the timeout
    hlr_err: int | None = None      # the err when known without a receipt (in-server lookups)

    @property
    def err(self) -> int | None:
        return self.receipt.err if self.receipt is not None else self.hlr_err

    def as_dict(self) -> dict:
        d = {"number": self.number, "status": status_name(self.status), "message_id": self.message_id}
        if self.receipt is not None:
            d.update(self.receipt.as_dict())
        elif self.timed_out:
            d["stat"] = "NO_RECEIPT"
        return d


# ------------------------------------------------------------------ dedupe

class IntSet:
    """A set of non-negative ints (E.164 numbers: < 10**15) in one array: open
    addressing, linear probing, load <= 1/2 — about 16 bytes a number, where a Python
    set of ints costs ~64."""
    __slots__ = ("_t", "_mask", "_n", "_limit")

    def __init__(self, capacity: int = 1 << 16):
        self._t = array("q", bytes(8 * capacity))
        self._mask = capacity - 1
        self._n = 0
        self._limit = capacity // 2

    def add(self, x: int) -> bool:
        """Add ``x``; True if it was not there yet."""
        k = x + 1   # 0 marks an empty slot
        t, m = self._t, self._mask
        i = (k * 0x9E3779B97F4A7C15 >> 24) & m   # Fibonacci hashing: strides spread too
        while True:
            v = t[i]
            if v == 0:
                t[i] = k
                self._n += 1
                if self._n > self._limit:
                    self._grow()
                return True
            if v == k:
                return False
            i = (i + 1) & m

    def _grow(self) -> None:
        old = self._t
        cap = len(old) * 2
        self._t = t = array("q", bytes(8 * cap))
        self._mask = m = cap - 1
        self._limit = cap // 2
        for k in old:
            if k:
                i = (k * 0x9E3779B97F4A7C15 >> 24) & m
                while t[i]:
                    i = (i + 1) & m
                t[i] = k

    def __len__(self) -> int:
        return self._n


# ------------------------------------------------------------------ input

class Layout:
    """How a file is laid out: ``kind`` csv or text; for csv the delimiter and column."""

    def __init__(self, kind: str, encoding: str, newline: str, delimiter: str = ",",
                 column: int = 0, header: list[str] | None = None):
        self.kind, self.encoding, self.newline = kind, encoding, newline
        self.delimiter, self.column, self.header = delimiter, column, header


def _looks_like_number(line: str) -> bool:
    s = line.strip().translate(_SEPARATORS)
    return bool(re.fullmatch(r"\+?\d{1,20}", s))


def detect_layout(path: Path, fmt: str = "auto", delimiter: str | None = None,
                  column: str = "numbers", encoding: str | None = None) -> Layout:
    """CSV with a ``column`` header (delimiter found from the header among , ; tab |), or text."""
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except FileNotFoundError:
        raise ToolError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ToolError(f"{path}: is a directory, not a file") from None
    except OSError as err:
        raise ToolError(f"{path}: cannot read: {err.strerror or err}") from None
    if encoding is None:
        encoding = "utf-8-sig" if head.startswith(b"\xef\xbb\xbf") else "utf-8"
    if b"\0" in head and not encoding.lower().startswith(("utf-16", "utf16")):
        raise ToolError(f"{path}: binary data, not a CSV or text file")
    try:
        sample = head.decode(encoding)
    except UnicodeDecodeError as err:
        if len(head) - err.start > 4:   # not merely a character cut at the sample's end
            raise ToolError(f"{path}: not {encoding} text (byte {err.start}); "
                            "give its encoding with --encoding, e.g. latin-1") from None
        sample = head[:err.start].decode(encoding)
    except LookupError:
        raise ToolError(f"unknown encoding {encoding!r}") from None
    lines = sample.splitlines(keepends=True)
    first = lines[0] if lines else ""
    newline = "\r\n" if first.endswith("\r\n") else "\n"
    first = first.rstrip("\r\n")
    if fmt == "text":
        return Layout("text", encoding, newline)
    if delimiter is not None and len(delimiter) != 1:
        delimiter = {"tab": "\t", "\\t": "\t"}.get(delimiter.lower(), delimiter)
        if len(delimiter) != 1:
            raise ToolError(f"--delimiter: expected one character, got {delimiter!r}")
    # The delimiter is the one that makes a `column` field of the header (the most
    # fields wins; a lone `numbers` header is a one-column CSV): the header says it more
    # surely than csv.Sniffer's guess over rows of digits, and at once.
    want = column.strip().lower()
    found, header = None, [first]
    for d in [delimiter] if delimiter else DELIMITERS:
        fields = next(csv.reader([first], delimiter=d)) if first else []
        if len(fields) > len(header):
            header = fields
        idx = [i for i, name in enumerate(fields) if name.strip().lower() == want]
        if idx and (found is None or len(fields) > len(found[2])):
            found = (d, idx[0], fields)
    if found is not None:
        return Layout("csv", encoding, newline, found[0], found[1], found[2])
    if fmt == "csv" or path.suffix.lower() == ".csv":
        if not first.strip():
            raise ToolError(f"{path}: empty file, or no header line with a '{column}' column")
        cols = ", ".join(repr(h) for h in header[:10])
        raise ToolError(f"{path}: no '{column}' column in the CSV header (columns: {cols})")
    if not first.strip() or _looks_like_number(first) or not first.strip().isprintable():
        return Layout("text", encoding, newline)
    raise ToolError(f"{path}: neither a CSV with a '{column}' column nor one number a line "
                    f"(first line: {first[:40]!r})")


# ------------------------------------------------------------------ the job

class JobFailed(ToolError):
    """The job stopped (credit, account, server): nothing was replaced."""


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB. Linux: VmHWM, which starts
    afresh at exec (ru_maxrss carries over the parent's peak from before the fork);
    elsewhere ru_maxrss (KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def _unique(stem: Path, suffix: str = "") -> Path:
    """stem+suffix, or stem-1+suffix, ...: a second job in the same second keeps the first's files."""
    for n in range(1000):
        path = stem.with_name(f"{stem.name}-{n}{suffix}" if n else stem.name + suffix)
        if not path.exists():
            return path
    raise ToolError(f"{stem}{suffix}: too many files with this name")


class CleanJob:
    """One cleaning job. ``checker`` None: freemium; else premium, where
    ``await checker.lookup(msisdn)`` waits for a window slot and returns a future of a
    ``lookup_client.Result`` (``HlrClient`` over SMPP, ``EngineChecker`` in the server).

    ``output`` None replaces ``src`` (the original kept as src.orig-STAMP); else the
    cleaned file goes to ``output`` and ``src`` is left alone. ``progress()`` is a
    snapshot for a poller; ``on_progress(snapshot)`` is called about every 0.2 s.
    """

    def __init__(self, src: str | Path, resolver, *, checker=None, output: str | Path | None = None,
                 report: str | Path | None = None, fmt: str = "auto", delimiter: str | None = None,
                 column: str = "numbers", style: str = "digits", drop_absent: bool = False,
                 encoding: str | None = None, on_progress: Callable[[dict], None] | None = None,
                 info: dict | None = None):
        if style not in STYLES:
            raise ToolError(f"style: expected one of {', '.join(STYLES)}")
        self.src = Path(src)
        self.resolver = resolver
        self.checker = checker
        self.output = Path(output) if output is not None else None
        self.report_path = Path(report) if report is not None else None
        self.fmt, self.delimiter, self.column = fmt, delimiter, column
        self.style, self.drop_absent, self.encoding = style, drop_absent, encoding
        self.on_progress = on_progress
        self.info = info or {}
        self.counts = {"total": 0, "empty": 0, "invalid_syntax": 0, "duplicates": 0,
                       "looked_up": 0, "no_receipt": 0, "dropped_hlr": 0, "kept": 0}
        self.errs: dict[str, int] = {}       # premium: "000" -> count
        self.refused: dict[str, int] = {}    # premium: ESME_R* -> count
        self.bytes_total = 0
        self.bytes_read = 0
        self.state = "pending"
        self.started = self.finished = None

    # ---------------------------------------------------------- progress
    def progress(self) -> dict:
        return {"state": self.state, "bytes_read": self.bytes_read, "bytes_total": self.bytes_total,
                "fraction": round(self.bytes_read / self.bytes_total, 4) if self.bytes_total else 0.0,
                "counts": dict(self.counts)}

    # --------------------------------------------------------------- run
    async def run(self) -> dict:
        """Clean; returns the report (also written as JSON). Raises ToolError when
        the file is unusable and JobFailed when the lookups cannot go on; either way
        the original file is untouched and no cleaned file is left behind."""
        self.started = time.time()
        self.state = "running"
        stamp = time.strftime("%Y%m%d%H%M%S", time.localtime(self.started))
        src = self.src.resolve() if self.output is None else self.src
        layout = detect_layout(src, self.fmt, self.delimiter, self.column, self.encoding)
        target = self.output if self.output is not None else src
        report_path = self.report_path or _unique(target.with_name(f"{target.name}.report-{stamp}"), ".json")
        backup = None

        def keep_original(tmp: Path) -> None:
            nonlocal backup
            if self.output is None:
                backup = _unique(src.with_name(f"{src.name}.orig-{stamp}"))
                try:
                    os.link(src, backup)             # the original, kept as it was
                except OSError:
                    shutil.copy2(src, backup)
                shutil.copymode(src, tmp)

        try:
            self.bytes_total = src.stat().st_size
            with open(src, "rb") as raw, atomic_file(target, "w", keep_original, encoding=layout.encoding,
                                                     newline="") as out:
                text = io.TextIOWrapper(raw, encoding=layout.encoding, newline="")
                await self._process(raw, text, out, layout)
        except BaseException as err:
            self.state = "failed"
            self.finished = time.time()
            if isinstance(err, UnicodeDecodeError):
                err = ToolError(f"{src}: not {layout.encoding} text near byte {self.bytes_read}; "
                                "give its encoding with --encoding, e.g. latin-1")
            elif isinstance(err, csv.Error):
                err = ToolError(f"{src}: malformed CSV near row {self.counts['total'] + 1}: {err}")
            elif isinstance(err, OSError):
                err = ToolError(f"{err.filename or src}: {err.strerror or err}")
            if isinstance(err, ToolError):
                report = self._report(layout, src, None, None, report_path, str(err))
                _write_json(report_path, report)
                raise err from None
            raise
        self.state = "done"
        self.finished = time.time()
        report = self._report(layout, src, target, backup, report_path)
        _write_json(report_path, report)
        return report

    async def _process(self, raw, text, out, layout: Layout) -> None:
        parse = self.resolver.parse
        seen = IntSet()
        counts = self.counts
        style = self.style
        checker = self.checker
        pending: deque = deque()      # premium: (row, future of its Result) in input order
        max_pending = 50_000
        if layout.kind == "csv":
            reader = csv.reader(text, delimiter=layout.delimiter)
            writer = csv.writer(out, delimiter=layout.delimiter, lineterminator=layout.newline)
            header = next(reader, None)
            if header is not None:
                writer.writerow(header)
            col = layout.column
            write = writer.writerow
            rows = reader
        else:
            nl = layout.newline
            col = None
            write = lambda line: out.write(line + nl)  # noqa: E731
            rows = (line.rstrip("\r\n") for line in text)
        self._write = write
        next_tick = time.monotonic() + 0.2
        n = 0
        for row in rows:
            n += 1
            counts["total"] += 1
            if col is None:
                cell = row
            else:
                cell = row[col] if len(row) > col else ""
            s = cell.strip()
            if not s:
                counts["empty"] += 1
            else:
                if not s.isdigit():
                    s = s.translate(_SEPARATORS)
                if s[:2] == "00":
                    s = s[2:]
                dest = parse(s, 1, 1)
                if dest is None:
                    counts["invalid_syntax"] += 1
                elif not seen.add(int(dest.msisdn)):
                    counts["duplicates"] += 1
                else:
                    msisdn = dest.msisdn
                    if style != "keep":
                        value = msisdn if style == "digits" else "+" + msisdn
                        if col is None:
                            row = value
                        else:
                            row[col] = value
                    if checker is None:
                        counts["kept"] += 1
                        write(row)
                    else:
                        pending.append((row, await checker.lookup(msisdn)))
                        while pending and pending[0][1].done():
                            self._settle(*pending.popleft())
                        if len(pending) > max_pending:
                            await asyncio.wait([pending[0][1]])
            if n % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + 0.2
                    self.bytes_read = raw.tell()
                    if self.on_progress is not None:
                        self.on_progress(self.progress())
        while pending:
            row, fut = pending.popleft()
            if not fut.done():
                await asyncio.wait([fut])
            self._settle(row, fut)
        self.bytes_read = self.bytes_total
        if self.on_progress is not None:
            self.on_progress(self.progress())

    def _settle(self, row, fut: asyncio.Future) -> None:
        """One premium result: count it, write the row or drop it."""
        counts = self.counts
        exc = fut.exception()
        if exc is not None:
            raise JobFailed(f"lookups stopped after {counts['looked_up']} charged lookup(s): {exc}; "
                            "the file was not changed") from None
        r = fut.result()
        keep = True
        if r.status:
            name = status_name(r.status)
            if r.status not in NUMBER_REFUSALS:
                hint = {Status.RINSBAL: " (insufficient credit: top the account up and run again)",
                        Status.RACCEXPIRY: " (the account has expired)",
                        Status.RTHROTTLED: " (an account limit is reached)"}.get(r.status, "")
                raise JobFailed(f"lookups refused with {name}{hint} after {counts['looked_up']} "
                                "charged lookup(s); the file was not changed", 1)
            self.refused[name] = self.refused.get(name, 0) + 1
            keep = NUMBER_REFUSALS[r.status]
        else:
            counts["looked_up"] += 1
            err = r.err
            if err is None:
                counts["no_receipt"] += 1
            else:
                key = f"{err:03d}"
                self.errs[key] = self.errs.get(key, 0) + 1
                keep = not (err in DROPPED_ERRS or (err == ABSENT and self.drop_absent))
        if keep:
            counts["kept"] += 1
            self._write(row)
        else:
            counts["dropped_hlr"] += 1

    # ------------------------------------------------------------- report
    def _report(self, layout: Layout, src: Path, output: Path | None, backup: Path | None,
                report_path: Path, error: str | None = None) -> dict:
        c = dict(self.counts)
        c["removed"] = c["empty"] + c["invalid_syntax"] + c["duplicates"] + c["dropped_hlr"]
        report = {
            "status": "failed" if error else "done",
            "mode": "premium" if self.checker is not None else "free",
            "file": str(src), "format": layout.kind,
            "output": str(output) if output else None,
            "original": str(backup) if backup else None,
            "report": str(report_path),
            "style": self.style,
            "started": _iso(self.started), "finished": _iso(self.finished or time.time()),
            "duration_s": round((self.finished or time.time()) - self.started, 3),
            "counts": c,
            "peak_rss_mb": peak_rss_mb(),
        }
        if layout.kind == "csv":
            report["delimiter"] = layout.delimiter
        if self.checker is not None:
            report["err"] = {k: {"count": v, "name": ERR_NAMES.get(int(k), ""),
                                 "kept": not (int(k) in DROPPED_ERRS or (int(k) == ABSENT and self.drop_absent))}
                             for k, v in sorted(self.errs.items())}
            report["refused"] = dict(sorted(self.refused.items()))
            report["drop_absent"] = self.drop_absent
        report.update(self.info)
        if error:
            report["error"] = error
        return report


def _write_json(path: Path, data: dict) -> None:
    try:
        with atomic_file(path, encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
    except OSError as err:
        raise ToolError(f"{path}: cannot write the report: {err.strerror or err}") from None


# ------------------------------------------------------------------ in-server lookups

class EngineChecker:
    """Premium lookups inside the server process (the HTTP cleaning job): the server's
    own engine, so each contact is charged, limited and recorded in the history exactly
    like an SMPP or HTTP lookup (channel ``http``, no receipt). Limits (tps, min delay)
    are waited out; ``close()`` returns once every lookup is durable."""

    def __init__(self, server, system_id: str, channel: str = "http"):
        self.server = server
        self.system_id = system_id
        self.channel = channel
        self._since_commit = 0

    async def lookup(self, msisdn: str) -> asyncio.Future:
        from ..accounts import Refusal
        from ..domain import Lookup
        server = self.server
        fut = asyncio.get_running_loop().create_future()
        account = server.book.get(self.system_id)
        if account is None:
            fut.set_exception(ToolError(f"no account {self.system_id!r}"))
            return fut
        delay = 0.01
        while True:
            r = server.engine.submit(account, msisdn, 1, 1, self.channel)
            if r.__class__ is Lookup:
                fut.set_result(Result(msisdn, 0, str(r.id), hlr_err=r.err))
                self._since_commit += 1
                if self._since_commit >= 1000:   # bound what a crash could lose
                    self._since_commit = 0
                    await server.persist()
                return fut
            status = r.smpp_status if isinstance(r, Refusal) else int(r)
            if status in RETRY_STATUSES and r not in (Refusal.LIMIT_DAY, Refusal.LIMIT_WEEK,
                                                      Refusal.LIMIT_MONTH):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            fut.set_result(Result(msisdn, status))
            return fut

    async def close(self) -> None:
        await self.server.persist()
