"""Contact-list cleaning over HTTP (docs/http.md): upload, poll, download.

``POST /api/v1/clean`` takes the file (the raw body, or the multipart field ``file``),
streams it to ``<storage.path>/clean/<job>/input`` under ``http.clean_max_bytes``, checks
that it is a CSV with a numbers column or one number a line, and runs the CLI's job
(``hlrsmpp.cleaning.CleanJob``) in the server: free, or premium with the server's own
engine (``EngineChecker``: each contact charged, limited and recorded like any lookup).
``GET /api/v1/clean/{job}`` polls it; ``GET /api/v1/clean/{job}/download`` fetches the
cleaned file (or ``?file=report|original``).

A job is its owner account's (the caller, or the account the operator names) and the
operator's: anyone else gets 404, and job ids are 128 random bits. At most
``MAX_RUNNING`` jobs (uploads included) run at once (429 past that); the last
``KEEP_FINISHED`` finished jobs are kept, older ones' files are deleted. A job's
directory holds ``job.json`` (who, what) and, once finished, ``report.json``: jobs that
finished before a restart stay readable, a job the restart interrupted reads as failed.
"""
from __future__ import annotations

import asyncio
import codecs
import csv
import json
import os
import re
import secrets
import shutil
import time
from collections import deque
from pathlib import Path
from urllib.parse import unquote

import structlog
from aiohttp import web
from aiohttp import StreamReader
from aiohttp.multipart import BodyPartReader

from ...errors import ToolError
from ...cleaning import STYLES, CleanJob, EngineChecker, detect_layout
from ...accounts import Refusal
from .api import Principal, _bad, _not_found, authenticate
from .common import SERVER, api_file, iso, json_error, json_response, refusal_error

log = structlog.get_logger("hlrsmpp.http")

MAX_RUNNING = 4          # jobs running or uploading at once, every caller together
KEEP_FINISHED = 100      # finished jobs kept (files and all); older ones are deleted
CLEAN_DIR = "clean"
CHUNK = 64 * 1024
JOB_ID_RE = re.compile(r"[0-9a-f]{32}")
#: Raw bodies taken as the file (curl --data-binary sends form-urlencoded unless told).
RAW_TYPES = frozenset({"text/csv", "text/plain", "application/csv", "application/octet-stream",
                       "text/tab-separated-values", "application/x-www-form-urlencoded", ""})
DELIMITERS = {",": ",", ";": ";", "|": "|", "tab": "\t", "\t": "\t"}
FILES = ("cleaned", "report", "original")
QUERY_KEYS = frozenset({"premium", "style", "drop_absent", "delimiter", "account", "format",
                        "column", "encoding", "filename"})
#: What the HTTP report leaves out of CleanJob's: the server's own paths and memory.
_PRIVATE = ("file", "output", "original", "report", "peak_rss_mb", "server")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class Entry:
    """One job as the API sees it."""

    __slots__ = ("id", "dir", "owner", "premium", "filename", "created", "finished", "status",
                 "error", "report", "job", "task", "kind", "size", "encoding")

    def __init__(self, job_id: str, directory: Path, owner: str | None, premium: bool,
                 filename: str, created: float):
        self.id, self.dir, self.owner, self.premium = job_id, directory, owner, premium
        self.filename, self.created = filename, created
        self.finished: float | None = None
        self.status = "running"          # running, done, failed
        self.error: str | None = None
        self.report: dict | None = None
        self.job: CleanJob | None = None
        self.task: asyncio.Task | None = None
        self.kind = "auto"               # csv or text once the upload is read
        self.size = 0
        self.encoding: str | None = None   # the file's (the cleaned one keeps it)

    @property
    def input(self) -> Path:
        return self.dir / "input"

    @property
    def output(self) -> Path:
        return self.dir / "cleaned"

    @property
    def report_path(self) -> Path:
        return self.dir / "report.json"

    def meta(self) -> dict:
        return {"id": self.id, "account": self.owner, "premium": self.premium,
                "filename": self.filename, "created": self.created, "pid": os.getpid(),
                "kind": self.kind, "encoding": self.encoding}

    def public(self, text: str) -> str:
        """A message without the server's paths."""
        return (text.replace(str(self.input), self.filename).replace(str(self.dir), "job")
                .replace("--encoding", "encoding=").replace("--delimiter", "delimiter"))


class CleanJobs:
    """The jobs of this process, in creation order."""

    def __init__(self, root: Path, max_bytes: int, quota: int = 0):
        self.root = root
        self.max_bytes = max_bytes
        self.quota = quota                 # bytes per account on disk (0: no quota)
        self.uploading: dict[str, int] = {}  # account -> bytes its uploads under way may take
        self.max_running = MAX_RUNNING
        self.keep_finished = KEEP_FINISHED
        self.jobs: dict[str, Entry] = {}
        self.finished: deque[str] = deque()
        self.busy = 0                      # uploads and running jobs
        self._load()

    # ------------------------------------------------------------ slots
    def reserve(self) -> bool:
        if self.busy >= self.max_running:
            return False
        self.busy += 1
        return True

    def release(self) -> None:
        self.busy = max(0, self.busy - 1)

    # ------------------------------------------------------------ jobs
    def get(self, job_id: str) -> Entry | None:
        directory = api_file(self.root, job_id, JOB_ID_RE)
        if directory is None:
            return None
        entry = self.jobs.get(job_id)
        return entry if entry is not None else self._from_disk(directory)

    def add(self, entry: Entry) -> None:
        self.jobs[entry.id] = entry

    def remove(self, entry: Entry) -> None:
        """Delete a finished job and its files."""
        self.jobs.pop(entry.id, None)
        try:
            self.finished.remove(entry.id)
        except ValueError:
            pass
        shutil.rmtree(entry.dir, ignore_errors=True)

    # ------------------------------------------------------------ per-account quota
    def used(self, owner: str) -> int:
        """Bytes ``owner``'s jobs hold on disk, counting a running job's cleaned copy as
        the size of its upload (it is being written), plus its uploads under way."""
        total = self.uploading.get(owner, 0)
        for e in self.jobs.values():
            if e.owner == owner:
                total += max(_disk_bytes(e.dir), 2 * e.size if e.status == "running" else 0)
        return total

    def room(self, owner: str | None) -> int | None:
        """Bytes a new upload of ``owner`` may have: the file and its cleaned copy must fit
        in its quota. None: no quota (none configured, or the operator's own job)."""
        if not self.quota or owner is None:
            return None
        return max(0, (self.quota - self.used(owner)) // 2)

    def done(self, entry: Entry) -> None:
        """``entry`` finished: keep it, and only the last ``keep_finished``."""
        self.release()
        self.finished.append(entry.id)
        self._evict()

    def _evict(self) -> None:
        while len(self.finished) > self.keep_finished:
            old = self.jobs.pop(self.finished.popleft(), None)
            if old is not None:
                shutil.rmtree(old.dir, ignore_errors=True)

    async def close(self) -> None:
        """The server stops: running jobs are cancelled (their lookups stay charged)."""
        tasks = [e.task for e in self.jobs.values() if e.task is not None and not e.task.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    # ------------------------------------------------------------ on disk
    def _load(self) -> None:
        """Jobs of an earlier run of the server (oldest first), under the same bound."""
        try:
            dirs = [d for d in self.root.iterdir() if JOB_ID_RE.fullmatch(d.name)]
        except OSError:
            return
        found = [e for e in map(self._from_disk, dirs) if e is not None and e.status != "running"]
        for e in sorted(found, key=lambda e: e.finished or e.created):
            self.jobs[e.id] = e
            self.finished.append(e.id)
        self._evict()

    def _from_disk(self, directory: Path) -> Entry | None:
        """A job from its files (another process's, or an earlier run's); None if they are
        not a job's."""
        try:
            return self._read_entry(directory)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def _read_entry(self, directory: Path) -> Entry | None:
        meta = json.loads((directory / "job.json").read_text())
        owner = meta.get("account")
        entry = Entry(meta["id"], directory, owner if isinstance(owner, str) else None,
                      bool(meta.get("premium")), str(meta.get("filename") or "upload"),
                      float(meta["created"]))
        if entry.id != directory.name:
            return None
        entry.kind = str(meta.get("kind") or entry.kind)
        entry.encoding = meta.get("encoding") if isinstance(meta.get("encoding"), str) else None
        try:
            report = json.loads(entry.report_path.read_text())
        except (OSError, ValueError):
            report = None
        if isinstance(report, dict):
            entry.status = "failed" if report.get("status") == "failed" else "done"
            entry.error = report.get("error") if entry.status == "failed" else None
            entry.report = report
            entry.kind = str(report.get("format") or entry.kind)
            entry.finished = entry.report_path.stat().st_mtime
        elif _alive(meta.get("pid")):
            entry.status = "running"   # another process of a shared deployment runs it
        else:
            entry.status = "failed"
            entry.error = "interrupted: the server stopped before the job finished"
            entry.finished = entry.created
        return entry


def _disk_bytes(directory: Path) -> int:
    try:
        return sum(f.stat().st_size for f in directory.iterdir() if f.is_file())
    except OSError:
        return 0


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True   # exists, another user's
    return True


JOBS = web.AppKey("clean_jobs", CleanJobs)


def setup(app: web.Application, server) -> None:
    """Register the job registry on ``app`` (and stop its jobs with the app)."""
    root = Path(server.cfg["storage"]["path"]) / CLEAN_DIR
    hc = server.cfg["http"]
    app[JOBS] = CleanJobs(root, int(hc.get("clean_max_bytes", 200 * 1024 * 1024)),
                          int(hc.get("clean_quota_bytes", 0) or 0))

    async def stop_jobs(app: web.Application) -> None:
        await app[JOBS].close()

    app.on_shutdown.append(stop_jobs)


# ------------------------------------------------------------------ views

def _urls(job_id: str) -> dict:
    base = f"/api/v1/clean/{job_id}"
    return {"status_url": base, "download_url": f"{base}/download"}


def _report_view(entry: Entry) -> dict | None:
    if entry.report is None:
        return None
    r = {k: v for k, v in entry.report.items() if k not in _PRIVATE}
    r["file"] = entry.filename
    if "error" in r and isinstance(r["error"], str):
        r["error"] = entry.public(r["error"])
    return r


def _view(entry: Entry) -> dict:
    job = entry.job
    if job is not None:
        progress = job.progress()
    elif entry.report is not None:
        counts = dict(entry.report.get("counts") or {})
        counts.pop("removed", None)
        progress = {"state": entry.status, "bytes_read": None, "bytes_total": None,
                    "fraction": 1.0 if entry.status == "done" else None, "counts": counts}
    else:
        progress = None
    return {"job": entry.id, "status": entry.status,
            "mode": "premium" if entry.premium else "free", "account": entry.owner,
            "file": entry.filename, "created": iso(entry.created),
            "finished": iso(entry.finished) if entry.finished else None,
            "progress": progress, "report": _report_view(entry),
            "error": entry.public(entry.error) if entry.error else None, **_urls(entry.id)}


# ------------------------------------------------------------------ POST /api/v1/clean

def _flag(q, name: str) -> bool | None:
    v = q.get(name)
    if v is None or v == "":
        return False
    return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(v.lower())


def _options(q) -> dict | web.Response:
    unknown = set(q) - QUERY_KEYS
    if unknown:
        return _bad(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    if any(len(q.getall(k)) > 1 for k in q):
        return _bad("each parameter at most once")
    opts: dict = {}
    for name in ("premium", "drop_absent"):
        opts[name] = _flag(q, name)
        if opts[name] is None:
            return _bad(f"{name}: expected true or false")
    opts["style"] = q.get("style") or "digits"
    if opts["style"] not in STYLES:
        return _bad(f"style: expected one of {', '.join(STYLES)}")
    delimiter = q.get("delimiter")
    if delimiter:
        if delimiter.lower() not in DELIMITERS:
            return _bad("delimiter: expected one of , ; | tab (default: found from the header)")
        delimiter = DELIMITERS[delimiter.lower()]
    opts["delimiter"] = delimiter or None
    opts["fmt"] = q.get("format") or "auto"
    if opts["fmt"] not in ("auto", "csv", "text"):
        return _bad("format: expected auto, csv or text")
    column = q.get("column") or "numbers"
    if len(column) > 64 or not column.strip() or not column.isprintable():
        return _bad("column: expected the header of the numbers column (1..64 characters)")
    opts["column"] = column
    encoding = q.get("encoding") or None
    if encoding is not None:
        try:
            ok = len(encoding) <= 40 and codecs.lookup(encoding)._is_text_encoding
        except (LookupError, ValueError, TypeError):
            ok = False
        if not ok:
            return _bad(f"encoding: unknown text encoding {encoding[:40]!r} (e.g. utf-8, latin-1)")
    opts["encoding"] = encoding
    return opts


def _owner(server, who: Principal, q, premium: bool) -> str | None | web.Response:
    """Whose job it is (the account charged when premium), or the error."""
    sid = q.get("account") or None
    if who.system_id is not None:
        if sid is not None and sid != who.system_id:
            return json_error(403, "forbidden", "an account may only clean lists for itself")
        return who.system_id
    if sid is None:
        if premium:
            return _bad("account: a premium clean is charged to an account: name it")
        return None
    if server.book.get(sid) is None:
        return _not_found(f"account: no account {sid!r}")
    return sid


def _upload_name(name: str | None, content_type: str) -> str:
    # Some clients percent-encode the name (aiohttp's FormData does).
    name = unquote(name or "").replace("\\", "/")
    base = _SAFE_NAME.sub("_", os.path.basename(name).strip()).strip("._")[:64]
    if base:
        return base
    return "numbers.txt" if content_type == "text/plain" else "contacts.csv"


class _TooBig(Exception):
    pass


class _OverQuota(Exception):
    pass


class _DiskError(Exception):
    pass


async def _save(stream: StreamReader | BodyPartReader, path: Path, limit: int, room: int | None = None) -> int:
    """Copy ``stream`` (a StreamReader or a multipart BodyPartReader) to ``path``;
    raise _TooBig past ``limit`` bytes, _OverQuota past ``room``."""
    n = 0
    try:
        f = open(path, "wb")
    except OSError as e:
        raise _DiskError(e.strerror or str(e)) from None
    with f:
        while True:
            chunk = await (stream.read_chunk(CHUNK) if isinstance(stream, BodyPartReader)
                           else stream.readany())
            if not chunk:
                break
            n += len(chunk)
            if n > limit:
                raise _TooBig()
            if room is not None and n > room:
                raise _OverQuota()
            try:
                f.write(chunk)
            except OSError as e:
                raise _DiskError(e.strerror or str(e)) from None
    return n


async def _receive(request: web.Request, entry: Entry, limit: int,
                   room: int | None = None) -> web.Response | None:
    """Stream the upload to ``entry.input`` (at most ``limit`` bytes, and ``room``: the
    account's quota); the error to answer, or None."""
    ctype = request.content_type.lower() if request.headers.get("Content-Type") else ""
    multipart = ctype.startswith("multipart/")
    if not multipart and ctype not in RAW_TYPES:
        return json_error(415, "unsupported_media_type",
                          "send the file as the body (Content-Type: text/csv or text/plain) "
                          "or as the multipart/form-data field 'file'")
    # A multipart body carries a little more than the file: boundaries and part headers.
    if request.content_length is not None and request.content_length > limit + (
            64 * 1024 if multipart else 0):
        return _too_big(limit)
    try:
        if multipart:
            reader = await request.multipart()
            part = await reader.next()
            while part is not None and not (isinstance(part, BodyPartReader) and part.name == "file"):
                await part.release()
                part = await reader.next()
            if not isinstance(part, BodyPartReader):   # none
                return _bad("multipart: expected the file in a field named 'file'")
            part_type = (part.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            entry.filename = _upload_name(part.filename, part_type)
            if (unquote(part.filename or "").lower().endswith(".csv")
                    or part_type in ("text/csv", "application/csv")):
                entry.kind = "csv"
            entry.size = await _save(part, entry.input, limit, room)
            if not part.at_eof():   # the body ended before the part's closing boundary
                return _bad("malformed upload: the multipart body is cut short")
        else:
            entry.filename = _upload_name(request.query.get("filename"), ctype)
            if ctype in ("text/csv", "application/csv"):
                entry.kind = "csv"
            entry.size = await _save(request.content, entry.input, limit, room)
    except _TooBig:
        return _too_big(limit)
    except _OverQuota:
        assert entry.owner is not None  # only an account has a quota
        return _over_quota(request.app[JOBS], entry.owner)
    except _DiskError as e:
        return json_error(503, "system_error", f"cannot store the upload: {e}")
    except Exception as e:   # a malformed multipart body, a truncated upload: the client's
        log.info("clean_upload_refused", error=repr(e)[:200])
        return _bad(f"malformed upload: {str(e)[:200] or type(e).__name__}")
    if entry.size == 0:
        return _bad("the file is empty: send it as the body, or as the multipart field 'file'")
    return None


async def _copy(source: Path, entry: Entry, filename: str) -> web.Response | None:
    """A file already on the server as the job's input (copied off the event loop)."""
    try:
        await asyncio.get_running_loop().run_in_executor(None, shutil.copyfile, source, entry.input)
    except OSError as e:
        return json_error(503, "system_error", f"cannot copy the file: {e.strerror or e}")
    entry.filename = filename or source.name
    entry.kind = "csv" if entry.filename.lower().endswith(".csv") else "auto"
    entry.size = entry.input.stat().st_size
    return None


def _too_big(limit: int) -> web.Response:
    return json_error(413, "too_large", f"the file is over the upload limit of {limit} bytes "
                                        "(http.clean_max_bytes)", limit=limit)


def _over_quota(jobs: CleanJobs, owner: str, need: int | None = None) -> web.Response:
    used = jobs.used(owner)
    need_text = f"; this upload needs about {need} more (the file and its cleaned copy)" if need else ""
    return json_error(413, "over_quota",
                      f"account {owner!r} has {used} of its {jobs.quota} bytes of cleaning jobs on "
                      f"the server (http.clean_quota_bytes){need_text}: download and delete finished "
                      "jobs (DELETE /api/v1/clean/{job}) first", quota=jobs.quota, used=used)


async def create_job(request: web.Request) -> web.Response:
    """POST /api/v1/clean?premium=&style=&drop_absent=&delimiter=&account=&format=&column=&encoding="""
    server = request.app[SERVER]
    who = await authenticate(request)
    if isinstance(who, web.Response):
        return who
    opts = _options(request.query)
    if isinstance(opts, web.Response):
        return opts
    owner = _owner(server, who, request.query, opts["premium"])
    if isinstance(owner, web.Response):
        return owner
    return await start_job(request, owner, opts)


async def start_job(request: web.Request, owner: str | None, opts: dict, source: Path | None = None,
                    filename: str = "") -> web.Response:
    """Start a cleaning job of ``owner`` with ``opts`` (``_options``) on the request's
    upload, or on a copy of ``source`` (a console contact book's file, named ``filename``):
    the JSON API's answer (202 and the job's id, or the error)."""
    server = request.app[SERVER]
    jobs = request.app[JOBS]
    acc = None   # the account a premium job charges
    if opts["premium"]:
        # Refused before the upload rather than at the first lookup (the job would fail).
        acc = server.book.get(owner) if owner is not None else None
        if acc is None:
            return _not_found(f"account: no account {owner!r}")
        if not acc.settings.enabled:
            return refusal_error(Refusal.DISABLED)
        if acc.credit is not None and acc.credit < acc.settings.price:
            return refusal_error(Refusal.NO_CREDIT)
    if not jobs.reserve():
        return json_error(429, "too_many_jobs", f"{jobs.max_running} cleaning jobs are running; "
                                                "retry when one has finished",
                          headers={"Retry-After": "5"})
    started = False
    job_id = secrets.token_hex(16)
    entry = Entry(job_id, jobs.root / job_id, owner, opts["premium"], "upload", time.time())
    # The account's quota, checked before anything is written: a declared size that
    # cannot fit is refused at once, a streamed one stops where it would not fit.
    room = jobs.room(owner)   # None: no quota (none set, or the operator's own job)
    if room is not None and owner is not None:
        declared = request.content_length
        if room == 0 or (declared is not None and declared > room + (
                64 * 1024 if request.content_type.lower().startswith("multipart/") else 0)):
            jobs.release()
            return _over_quota(jobs, owner, 2 * declared if declared is not None else None)
        jobs.uploading[owner] = jobs.uploading.get(owner, 0) + 2 * room
    try:
        try:
            entry.dir.mkdir(parents=True)
        except OSError as e:
            return json_error(503, "system_error", f"cannot store the upload: {e.strerror or e}")
        try:
            if source is None:
                err = await _receive(request, entry, jobs.max_bytes, room)
            else:
                err = await _copy(source, entry, filename)
        finally:
            if room is not None and owner is not None:   # the job's files count from now on
                left = jobs.uploading.get(owner, 0) - 2 * room
                if left > 0:
                    jobs.uploading[owner] = left
                else:
                    jobs.uploading.pop(owner, None)
        if err is not None:
            return err
        fmt = opts["fmt"]
        if fmt == "auto" and entry.kind == "csv":
            fmt = "csv"   # like a .csv file on the command line: it must have the column
        try:
            layout = detect_layout(entry.input, fmt, opts["delimiter"], opts["column"], opts["encoding"])
        except ToolError as e:
            return json_error(422, "invalid_file", entry.public(str(e)))
        except (csv.Error, ValueError) as e:   # e.g. a header line over the csv field limit
            return json_error(422, "invalid_file", f"{entry.filename}: not a readable CSV or "
                                                   f"text file: {entry.public(str(e))[:200]}")
        entry.kind, entry.encoding = layout.kind, layout.encoding
        checker = EngineChecker(server, acc.system_id) if acc is not None else None
        entry.job = job = CleanJob(entry.input, server.resolver, checker=checker, output=entry.output,
                             report=entry.report_path, fmt=fmt, delimiter=opts["delimiter"],
                             column=opts["column"], style=opts["style"],
                             drop_absent=opts["drop_absent"], encoding=opts["encoding"],
                             info={"account": owner})
        try:
            (entry.dir / "job.json").write_text(json.dumps(entry.meta()))
        except OSError as e:
            return json_error(503, "system_error", f"cannot store the job: {e.strerror or e}")
        jobs.add(entry)
        entry.task = asyncio.get_running_loop().create_task(_run(jobs, entry, job, checker, server.notifier))
        started = True
    finally:
        if not started:
            jobs.release()
            shutil.rmtree(entry.dir, ignore_errors=True)
    log.info("clean_job_started", job=entry.id, account=owner, premium=entry.premium,
             bytes=entry.size)
    return json_response({"job": entry.id, "status": entry.status, **_urls(entry.id)}, 202,
                         headers={"Location": _urls(entry.id)["status_url"]})


async def _run(jobs: CleanJobs, entry: Entry, job: CleanJob, checker, notifier=None) -> None:
    # The entry reads as finished only once every lookup the job made is durable.
    status, error, report = "failed", None, None
    try:
        report = await job.run()
        status = "done"
    except ToolError as e:   # the file, the credit, the account: the report says why
        error = str(e)
        report = _read_report(entry)
    except asyncio.CancelledError:
        error = "interrupted: the server stopped before the job finished"
        raise
    except Exception:
        log.exception("clean_job_failed", job=entry.id)
        error = "the job failed on the server's side; it is logged"
    finally:
        if checker is not None:
            try:
                await checker.close()
            except Exception as e:
                log.error("clean_job_commit_failed", job=entry.id, error=str(e))
                if status == "done":
                    status, error = "failed", f"the lookups could not be committed: {e}"
        entry.report, entry.error = report, error
        entry.finished = time.time()
        entry.status = status
        log.info("clean_job_finished", job=entry.id, status=status, error=error)
        jobs.done(entry)
        if notifier is not None:
            notifier.cleaning_done(entry.owner, entry.id, status,
                                   {k: v for k, v in (report or {}).items() if k not in _PRIVATE})


def _read_report(entry: Entry) -> dict | None:
    try:
        report = json.loads(entry.report_path.read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


# ------------------------------------------------------------------ GET

async def _entry(request: web.Request) -> Entry | web.Response:
    who = await authenticate(request)
    if isinstance(who, web.Response):
        return who
    job_id = request.match_info["id"]
    entry = request.app[JOBS].get(job_id)
    if entry is None or not (who.admin or entry.owner == who.system_id):
        return _not_found(f"no cleaning job {job_id[:40]!r}")
    return entry


async def get_job(request: web.Request) -> web.Response:
    """GET /api/v1/clean/{id}"""
    entry = await _entry(request)
    if isinstance(entry, web.Response):
        return entry
    return json_response(_view(entry))


async def download(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/clean/{id}/download?file=cleaned|report|original"""
    entry = await _entry(request)
    if isinstance(entry, web.Response):
        return entry
    which = request.query.get("file") or "cleaned"
    if which not in FILES:
        return _bad("file: expected cleaned (default), report or original")
    if which == "original":
        return _file(entry.input, entry.filename, entry)
    if entry.status == "running":
        return json_error(409, "job_running", "the job is still running: poll its status_url",
                          job=_view(entry))
    if which == "report":
        report = _report_view(entry)
        if report is None:
            return json_error(409, "job_failed", entry.public(entry.error or "no report"))
        return json_response(report, headers={
            "Content-Disposition": f'attachment; filename="{_stem(entry.filename)}-report.json"'})
    if entry.status != "done":
        return json_error(409, "job_failed", entry.public(entry.error or "the job failed"),
                          job=_view(entry))
    return _file(entry.output, f"cleaned-{entry.filename}", entry)


async def delete_job(request: web.Request) -> web.Response:
    """DELETE /api/v1/clean/{id}: a finished job and its files (room in the quota)."""
    entry = await _entry(request)
    if isinstance(entry, web.Response):
        return entry
    if entry.status == "running":
        return json_error(409, "job_running", "the job is still running: delete it once it has finished",
                          job=_view(entry))
    request.app[JOBS].remove(entry)
    log.info("clean_job_deleted", job=entry.id, account=entry.owner)
    return web.Response(status=204)


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0] or name


def _file(path: Path, name: str, entry: Entry) -> web.StreamResponse:
    if not path.is_file():
        return json_error(410, "gone", "the job's files were deleted (only the last "
                                       f"{KEEP_FINISHED} jobs are kept)")
    ctype = "text/csv" if entry.kind == "csv" else "text/plain"
    charset = _charset(entry.encoding)
    if charset:
        ctype += f"; charset={charset}"
    return web.FileResponse(path, headers={"Content-Type": ctype,
                                           "Content-Disposition": f'attachment; filename="{name}"'})


def _charset(encoding: str | None) -> str | None:
    """The HTTP charset of a Python encoding (the cleaned file keeps the upload's)."""
    if not encoding:
        return None
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        return None
    if name.startswith("iso8859-"):
        return "iso-8859-" + name[8:]
    if re.fullmatch(r"cp125\d", name):
        return "windows-" + name[2:]
    return {"utf-8-sig": "utf-8"}.get(name, name)
