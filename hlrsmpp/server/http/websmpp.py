"""The AMS HLR API over HTTP, kept exactly: /websmpp/hlr/lookup and /websmpp/hlr/report.

Batch semantics (docs/http.md): a request of 1..100 numbers is ONE request to the account
(``AccountBook.admit_many``): its limits and credit must hold every valid, covered number,
else nothing is charged and the request answers the error. Numbers that are not possible
E.164 numbers (005) or outside the account's coverage (006) are skipped, free, and absent
from the report; when no number is accepted the answer is the error of the first one.
"""
from __future__ import annotations

import time
from zoneinfo import ZoneInfo

import structlog
from aiohttp import web
from multidict import MultiDict

from ...accounts import Refusal
from ...accounts import refusal as rf
from ...smpp.status import Status
from ...domain import Lookup
from .common import (MAX_BATCH, SERVER, TEXT, durable, json_error, json_response, new_batch_id,
                     read, report_row, unknown_batch)

log = structlog.get_logger("hlrsmpp.http")

HTTP01 = "ERROR - HTTP01 --> Invalid HTTP URL Format"


def _line(text: str) -> web.Response:
    # AMS HLR API clients read the body, whatever the status: every documented answer is a
    # 200 (a Java HttpURLConnection would throw away the body of a 4xx).
    return web.Response(text=text, content_type=TEXT)


async def _params(request: web.Request) -> MultiDict[str] | None:
    """Query string and (POST) form fields, names case-insensitive (the AMS HLR API's documentation writes both
    `password` and `Password`). None when the body cannot be read as a form."""
    out: MultiDict[str] = MultiDict()
    for k, v in request.query.items():
        out.add(k.lower(), v)
    if request.method == "POST" and request.can_read_body:
        try:
            form = await request.post()
        except Exception:  # a body that is not a form: malformed request
            return None
        for k, value in form.items():
            if not isinstance(value, str):
                return None  # a file upload is not a lookup
            out.add(k.lower(), value)
    return out


def _error_of(r: Refusal | Status) -> str:
    if isinstance(r, Refusal):
        return r.http_error.line
    if r == Status.RINVDSTADR:
        return rf.INVALID_DEST_ADDR.line
    return rf.SYSTEM_ERROR.line


async def lookup(request: web.Request) -> web.Response:
    """GET|POST /websmpp/hlr/lookup?username=U&password=P&destination=N[,N...]"""
    server = request.app[SERVER]
    params = await _params(request)
    if params is None:
        return _line(HTTP01)
    username, password = params.get("username"), params.get("password")
    dests = params.getall("destination", [])
    if username is None or password is None or not dests:
        return _line(HTTP01)
    numbers = [n.strip() for d in dests for n in d.split(",")]
    numbers = [n for n in numbers if n]
    if not numbers or len(numbers) > MAX_BATCH:
        return _line(rf.INVALID_REQUEST.line)
    refusal, account = await server.login(username, password, request.remote or "")
    if refusal is not None:
        return _line(refusal.http_error.line)
    # The batch id: random, the report's secret. The lookup ids: consecutive message ids.
    batch_id = await new_batch_id(server)
    results = server.engine.submit_many(account, numbers, "http", batch_id,
                                        server.ids.reserve(len(numbers)))
    accepted = [r for r in results if r.__class__ is Lookup]
    if not accepted:
        first = results[0]
        assert not isinstance(first, Lookup)  # none accepted
        return _line(_error_of(first))
    if not await durable(server, accepted, account):
        return _line(rf.SYSTEM_ERROR.line)
    return _line(f"BatchId: {batch_id}")


async def report(request: web.Request) -> web.Response:
    """GET /websmpp/hlr/report?batchid=B[&username=U&password=P]: JSON, one object for a
    one-number batch, else an array. Errors are JSON too: {"error": {"code", "name",
    "message"}}.

    The batch id alone reads the report (the AMS HLR API's clients send nothing else): it
    is 63 random bits. Credentials, when given, are checked, and then only the account's
    own batches are found. An unknown batch id counts towards the source's ban like a
    wrong password, so ids cannot be scanned for."""
    server = request.app[SERVER]
    ip, now = request.remote or "", time.time()
    if server.book.check_ip(ip, now) is not None:
        return _report_error(403, rf.INVALID_LOGIN, "this source address is temporarily banned "
                                                    "after failed logins or unknown batch ids")
    query: dict[str, list[str]] = {}
    for k, v in request.query.items():
        query.setdefault(k.lower(), []).append(v)
    raw = query.get("batchid", [])
    if len(raw) != 1 or not raw[0].strip().isdigit() or not raw[0].strip().isascii():
        return _report_error(400, rf.INVALID_REQUEST, "batchid: expected one decimal batch id")
    account = None
    if "username" in query or "password" in query:
        username, password = (query.get(k, [""])[-1] for k in ("username", "password"))
        refusal, account = await server.login(username, password, ip)
        if refusal is not None:
            return _report_error(401, refusal.http_error, "login refused")
    text = raw[0].strip()
    batch_id = int(text)
    rows = await read(server.store.batch, batch_id) if batch_id < 1 << 63 else []
    if account is not None:
        rows = [r for r in rows if r["system_id"] == account.system_id]
    if not rows:
        unknown_batch(server, request)
        return _report_error(404, rf.INVALID_REQUEST, f"no batch {text}")
    tz = ZoneInfo(server.cfg["receipts"].get("timezone", "UTC"))
    at = time.time()
    out = [report_row(Lookup.from_row(r), at, tz) for r in rows]
    body = out[0] if len(out) == 1 else out
    return json_response(body)


def _report_error(status: int, err: rf.HttpError, message: str) -> web.Response:
    return json_error(status, err.code, message, name=err.name)
