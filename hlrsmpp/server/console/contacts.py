"""A customer's contact lists (/console/contacts): uploaded, kept, cleaned free or premium
by the JSON API's cleaning jobs (server/http/clean.py), the original kept and restorable.

A list lives in ``<storage.path>/contacts/<account key>/<list id>/``: ``list`` (the list
as it is now), ``original`` (the list as uploaded, once a cleaning replaced it) and
``book.json`` (its name, and the cleaning job that last ran on it). The account key is a
hash of the system_id (a YAML system_id may hold any character); list ids are 128 random
bits. When a job finishes, its cleaned file becomes the list (the original kept first);
a job that finished while the server was stopping is applied when the list is next seen.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from urllib.parse import quote

import structlog
from aiohttp import web
from aiohttp.multipart import BodyPartReader
from multidict import MultiDict

from ...cleaning import detect_layout
from ...errors import ToolError
from ..http import clean
from ..http.common import SERVER, api_file
from .common import api_body, api_error, customer, customer_account, form, missing, render

log = structlog.get_logger("hlrsmpp.console")

CONTACTS_DIR = "contacts"
#: Lists an account keeps at once.
MAX_LISTS = 20
LIST_ID_RE = re.compile(r"[0-9a-f]{32}")
_REPORT_LABELS = (("total", "Contacts read"), ("kept", "Kept"), ("removed", "Removed"),
                  ("duplicates", "Duplicates"), ("invalid_syntax", "Not a possible number"),
                  ("empty", "Empty lines"), ("looked_up", "Looked up (HLR)"),
                  ("dropped_hlr", "Removed by the HLR lookup"), ("no_receipt", "No answer"))


class Book:
    """One contact list of one account."""

    def __init__(self, directory: Path, meta: dict):
        self.dir, self.meta = directory, meta

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def list(self) -> Path:
        return self.dir / "list"

    @property
    def original(self) -> Path:
        return self.dir / "original"

    def save(self) -> None:
        tmp = self.dir / "book.json.tmp"
        tmp.write_text(json.dumps(self.meta))
        tmp.replace(self.dir / "book.json")

    def view(self) -> dict:
        def size(p: Path) -> int | None:
            try:
                return p.stat().st_size
            except OSError:
                return None
        return {"id": self.id, "name": self.meta.get("name", "contacts"), "created": self.meta.get("created"),
                "size": size(self.list), "original_size": size(self.original)}


def _root(server, system_id: str) -> Path:
    key = hashlib.sha256(system_id.encode()).hexdigest()[:32]
    return Path(server.cfg["storage"]["path"]) / CONTACTS_DIR / key


def _load(directory: Path) -> Book | None:
    try:
        meta = json.loads((directory / "book.json").read_text())
    except (OSError, ValueError):
        return None
    return Book(directory, meta) if isinstance(meta, dict) else None


def _books(server, system_id: str) -> list[Book]:
    root = _root(server, system_id)
    try:
        dirs = [d for d in root.iterdir() if LIST_ID_RE.fullmatch(d.name)]
    except OSError:
        return []
    books = [b for b in map(_load, dirs) if b is not None]
    return sorted(books, key=lambda b: b.meta.get("created", 0), reverse=True)


def _book(request: web.Request) -> Book:
    """The viewer's list named in the URL; another account's is not found, like none."""
    server, acc = request.app[SERVER], customer_account(request)
    directory = api_file(_root(server, acc.system_id), request.match_info["book"], LIST_ID_RE)
    book = _load(directory) if directory is not None else None
    if book is None:
        raise missing(request, "No such contact list in this account.")
    return book


def _job(request: web.Request, book: Book):
    """The cleaning job that last ran on ``book`` (its owner's), or None."""
    job_id = book.meta.get("job")
    entry = request.app[clean.JOBS].get(job_id) if isinstance(job_id, str) else None
    return entry if entry is not None and entry.owner == customer_account(request).system_id else None


#: One apply at a time per list; a page that finds one running waits for it, so that a
#: job shown finished is one whose cleaned file is the list already.
_settling: dict[str, asyncio.Lock] = {}


async def _settle(book: Book, entry) -> None:
    """A finished job's cleaned file becomes the list, the original kept (once)."""
    if entry is None or entry.status != "done" or book.meta.get("applied"):
        return
    async with _settling.setdefault(book.id, asyncio.Lock()):
        fresh = _load(book.dir)   # another request may have applied it while this one waited
        if fresh is None or fresh.meta.get("applied"):
            book.meta["applied"] = True
            return

        def apply() -> None:
            # The list is never missing: the cleaned file is copied aside, the original
            # kept as a second name of the list, then the copy takes the list's name.
            tmp = book.dir / "list.tmp"
            shutil.copyfile(entry.output, tmp)
            if not book.original.exists():
                try:
                    os.link(book.list, book.original)
                except OSError:
                    shutil.copyfile(book.list, book.original)
            tmp.replace(book.list)
        try:
            await asyncio.get_running_loop().run_in_executor(None, apply)
            book.meta["applied"] = True
            book.save()
        except OSError as e:
            log.error("contacts_apply_failed", book=book.id, error=str(e))


async def _settle_when_done(book: Book, entry) -> None:
    if entry.task is not None:
        await asyncio.wait([entry.task])
    await _settle(book, entry)


def _state(request: web.Request, book: Book, entry) -> dict:
    view = clean._view(entry) if entry is not None else None
    report = view["report"] if view else None
    rows = []
    if report and isinstance(report.get("counts"), dict):
        rows = [(label, report["counts"][k]) for k, label in _REPORT_LABELS if k in report["counts"]]
    progress = view["progress"] if view else None
    percent = int(round(100 * (progress.get("fraction") or 0))) if progress else 0
    return {"book": book.view(), "job": view, "report_rows": rows, "percent": percent,
            "running": bool(view and view["status"] == "running")}


# ------------------------------------------------------------------ pages

@customer
async def contacts(request: web.Request) -> web.Response:
    server, acc = request.app[SERVER], customer_account(request)
    books = [b.view() for b in _books(server, acc.system_id)]
    return render(request, "contacts.html", {"title": "Contacts", "books": books, "error": None,
                                             "max_lists": MAX_LISTS,
                                             "max_bytes": request.app[clean.JOBS].max_bytes})


@customer
async def upload(request: web.Request) -> web.Response:
    """A multipart form: the file in the field ``file`` (the CSRF token is in the query:
    the body is streamed to disk, never read whole)."""
    server, acc = request.app[SERVER], customer_account(request)
    jobs = request.app[clean.JOBS]

    def refuse(message: str, status: int) -> web.Response:
        books = [b.view() for b in _books(server, acc.system_id)]
        return render(request, "contacts.html", {"title": "Contacts", "books": books, "error": message,
                                                 "max_lists": MAX_LISTS, "max_bytes": jobs.max_bytes}, status)

    if len(_books(server, acc.system_id)) >= MAX_LISTS:
        return refuse(f"This account keeps at most {MAX_LISTS} contact lists: delete one first.", 409)
    if not request.content_type.startswith("multipart/"):
        return refuse("Choose a file to upload.", 400)
    directory = _root(server, acc.system_id) / secrets.token_hex(16)
    book = Book(directory, {"created": time.time(), "job": None})
    try:
        directory.mkdir(parents=True)
        reader = await request.multipart()
        part = await reader.next()
        while part is not None and not (isinstance(part, BodyPartReader) and part.name == "file"):
            await part.release()
            part = await reader.next()
        if not isinstance(part, BodyPartReader) or not part.filename:   # none, or no file chosen
            return refuse("Choose a file to upload.", 400)
        name = clean._upload_name(part.filename, (part.headers.get("Content-Type") or "").lower())
        size = await clean._save(part, book.list, jobs.max_bytes, jobs.room(acc.system_id))
        if size == 0:
            return refuse(f"{name} is empty.", 422)
        fmt = "csv" if name.lower().endswith(".csv") else "auto"
        await asyncio.get_running_loop().run_in_executor(None, detect_layout, book.list, fmt, None, "numbers", None)
        book.meta["name"] = name
        book.save()
    except clean._TooBig:
        return refuse(f"The file is over the upload limit of {jobs.max_bytes} bytes.", 413)
    except clean._OverQuota:
        return refuse("The account's space for contact lists and cleanings is full: delete a list first.", 413)
    except ToolError as e:
        return refuse(str(e).replace(str(book.list), book.meta.get("name") or name), 422)
    except (ValueError, OSError, clean._DiskError) as e:
        return refuse(f"The file could not be read: {str(e)[:200]}", 422)
    finally:
        if "name" not in book.meta:
            shutil.rmtree(directory, ignore_errors=True)
    raise web.HTTPSeeOther(f"/console/contacts/{book.id}")


@customer
async def book_page(request: web.Request) -> web.Response:
    book = _book(request)
    entry = _job(request, book)
    await _settle(book, entry)
    return render(request, "contact_book.html", {"title": book.meta.get("name", "Contact list"),
                                                 "error": request.query.get("error", "")[:300],
                                                 **_state(request, book, entry)})


@customer
async def book_state(request: web.Request) -> web.Response:
    """The cleaning's progress and report alone: what the page's script polls."""
    book = _book(request)
    entry = _job(request, book)
    await _settle(book, entry)
    return render(request, "_book_state.html", _state(request, book, entry))


@customer
async def clean_book(request: web.Request) -> web.Response:
    book = _book(request)
    acc = customer_account(request)
    here = f"/console/contacts/{book.id}"
    entry = _job(request, book)
    if entry is not None and entry.status == "running":
        raise web.HTTPSeeOther(here)
    mode = (await form(request)).get("mode", "free")
    opts = clean._options(MultiDict(premium="true" if mode == "premium" else "false"))
    if isinstance(opts, web.Response):
        raise web.HTTPSeeOther(f"{here}?error={quote(api_error(opts))}")
    resp = await clean.start_job(request, acc.system_id, opts, source=book.list, filename=book.meta.get("name", ""))
    if resp.status >= 400:
        raise web.HTTPSeeOther(f"{here}?error={quote(api_error(resp))}")
    job_id = api_body(resp)["job"]
    book.meta.update(job=job_id, applied=False)
    book.save()
    entry = request.app[clean.JOBS].get(job_id)
    task = asyncio.get_running_loop().create_task(_settle_when_done(book, entry))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    raise web.HTTPSeeOther(here)


_tasks: set[asyncio.Task] = set()


@customer
async def restore(request: web.Request) -> web.Response:
    book = _book(request)
    if book.original.exists():
        await asyncio.get_running_loop().run_in_executor(None, book.original.replace, book.list)
        book.meta.update(job=None, applied=False)
        book.save()
    raise web.HTTPSeeOther(f"/console/contacts/{book.id}")


@customer
async def delete(request: web.Request) -> web.Response:
    book = _book(request)
    entry = _job(request, book)
    if entry is not None and entry.status == "running":
        raise web.HTTPSeeOther(f"/console/contacts/{book.id}")
    await asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, book.dir, True)
    raise web.HTTPSeeOther("/console/contacts")


@customer
async def download(request: web.Request) -> web.StreamResponse:
    book = _book(request)
    which = request.query.get("file", "list")
    name = book.meta.get("name", "contacts.txt")
    if which == "report":
        entry = _job(request, book)
        report = clean._report_view(entry) if entry is not None else None
        if report is None:
            raise missing(request, "No report: this list has not been cleaned.")
        stem = name.rsplit(".", 1)[0] or name
        return web.Response(text=json.dumps(report, indent=2), content_type="application/json", headers={
            "Content-Disposition": f'attachment; filename="{stem}-report.json"'})
    path = {"list": book.list, "original": book.original}.get(which)
    if path is None or not path.is_file():
        raise missing(request, "No such file.")
    ctype = "text/csv" if name.lower().endswith(".csv") else "text/plain"
    shown = name if which == "list" else f"original-{name}"
    return web.FileResponse(path, headers={"Content-Type": ctype,
                                           "Content-Disposition": f'attachment; filename="{shown}"'})


def routes(r: web.UrlDispatcher) -> None:
    r.add_get("/console/contacts", contacts)
    r.add_post("/console/contacts", upload)
    r.add_get("/console/contacts/{book}", book_page)
    r.add_get("/console/contacts/{book}/state", book_state)
    r.add_get("/console/contacts/{book}/download", download)
    r.add_post("/console/contacts/{book}/clean", clean_book)
    r.add_post("/console/contacts/{book}/restore", restore)
    r.add_post("/console/contacts/{book}/delete", delete)
