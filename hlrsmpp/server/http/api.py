"""The JSON API under /api/v1/ (docs/http.md, OpenAPI at /api/v1/openapi.json).

Lookups authenticate as an account (HTTP Basic: system_id and password), or as the
operator (``Authorization: Bearer <admin.token>``) naming the account in the body. The
account routes are the operator's only. Every error is
``{"error": {"code", "message", "smpp_status"}}`` with the code SMPP would give.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import re
import socket
import time
from datetime import date, datetime, timezone

import structlog
from aiohttp import ClientSession, ClientTimeout, ThreadedResolver, web
from yarl import URL

from ...accounts import Account, AccountBook, Refusal, from_micro, to_micro
from ...accounts.allowlist import parse_allowlist
from ...accounts.book import merge_settings
from ...ids import MAX_ID
from ..admin import IdempotencyConflict
from ...domain import Lookup
from ...sms import MAX_PARTS, UnencodableText, count_text, count_view
from .history import HistoryFilter, HistoryReaders, Query
from .common import (MAX_BATCH, SERVER, durable, iso, json_error, json_response,
                     lookup_view, with_sms, new_batch_id, read, refusal_detail, refusal_error, trace_file,
                     unknown_batch, wait_done)

log = structlog.get_logger("hlrsmpp.http")

HISTORY_PAGE_MAX = 1000


# ------------------------------------------------------------------ authentication

class Principal:
    """The caller: the operator (``admin``, no account) or an account."""

    __slots__ = ("admin", "account")

    def __init__(self, admin: bool, account: Account | None):
        self.admin, self.account = admin, account

    @property
    def system_id(self) -> str | None:
        """The account's, or None for the operator, who acts on every account."""
        return None if self.account is None else self.account.system_id


def _admin_token(server) -> str | None:
    token = (server.cfg.get("admin") or {}).get("token")
    return str(token) if token else None


def _unauthorized(scheme: str, message: str) -> web.Response:
    return json_error(401, "unauthorized", message,
                      headers={"WWW-Authenticate": f'{scheme} realm="hlrsmpp"'})


def _check_bearer(server, request: web.Request, value: str) -> web.Response | None:
    token = _admin_token(server)
    if token is None:
        return _admin_disabled()
    ip = request.remote or ""
    if not hmac.compare_digest(value.encode(), token.encode()):
        server.book.record_failure(ip, time.time())
        return _unauthorized("Bearer", "wrong admin token")
    return None


def _admin_disabled() -> web.Response:
    return json_error(403, "admin_disabled",
                      "the admin API is disabled: configure admin.token (or HLRSMPP_ADMIN_TOKEN)")


async def authenticate(request: web.Request, admin_only: bool = False) -> Principal | web.Response:
    """The caller: the operator (Bearer) or an account (Basic); else the error to answer."""
    server = request.app[SERVER]
    ip = request.remote or ""
    now = time.time()
    if admin_only and _admin_token(server) is None:
        return _admin_disabled()
    if server.book.check_ip(ip, now) is not None:
        return refusal_error(Refusal.IP_BANNED)
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer" and value:
        err = _check_bearer(server, request, value)
        return err if err is not None else Principal(True, None)
    if admin_only:
        return _unauthorized("Bearer", "this route needs Authorization: Bearer <admin token>")
    if scheme != "basic" or not value:
        return _unauthorized("Basic", "authenticate with HTTP Basic (system_id:password) "
                                      "or Bearer <admin token>")
    try:
        user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return _unauthorized("Basic", "malformed Basic credentials")
    if not sep:
        return _unauthorized("Basic", "malformed Basic credentials")
    refusal, account = await server.login(user, password, ip)
    if refusal is not None:
        resp = refusal_error(refusal)
        if resp.status == 401:
            resp.headers["WWW-Authenticate"] = 'Basic realm="hlrsmpp"'
        return resp
    assert account is not None  # a login nothing refused names its account
    return Principal(False, account)


async def _body(request: web.Request) -> dict | web.Response:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError, RecursionError):   # RecursionError: nested too deep
        return json_error(400, "bad_request", "the body must be a JSON object")
    except LookupError:   # Content-Type: ...; charset=<a name Python does not know>
        return json_error(400, "bad_request", "the body's charset is not a known text encoding "
                                              "(send UTF-8)")
    if not isinstance(body, dict):
        return json_error(400, "bad_request", "the body must be a JSON object")
    return body


def _bad(message: str) -> web.Response:
    return json_error(400, "bad_request", message)


def _not_found(message: str) -> web.Response:
    return json_error(404, "not_found", message)


def _lookup_id(text: str) -> int | None:
    if text.isascii() and text.isdigit() and len(text) <= 19:
        n = int(text)
        if n <= MAX_ID:
            return n
    return None


# ------------------------------------------------------------------ lookups

LOOKUP_KEYS = frozenset({"number", "numbers", "account", "wait", "timeout", "callback_url"})


async def create_lookups(request: web.Request) -> web.Response:
    """POST /api/v1/lookups"""
    server = request.app[SERVER]
    who = await authenticate(request)
    if isinstance(who, web.Response):
        return who
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    extra = set(body) - LOOKUP_KEYS
    if extra:
        return _bad(f"unknown field(s): {', '.join(sorted(map(str, extra)))}")
    if ("number" in body) == ("numbers" in body):
        return _bad("give either number (a string) or numbers (a list of 1..100 strings)")
    numbers = [body["number"]] if "number" in body else body["numbers"]
    if (not isinstance(numbers, list) or not 1 <= len(numbers) <= MAX_BATCH
            or not all(isinstance(n, str) for n in numbers)):
        return _bad(f"numbers: expected a list of 1..{MAX_BATCH} strings")
    account = who.account
    if account is None:  # the operator
        sid = body.get("account")
        account = server.book.get(sid) if isinstance(sid, str) else None
        if account is None:
            return _not_found("account: name an existing account (the operator looks up on its behalf)")
    elif "account" in body and body["account"] != account.system_id:
        return json_error(403, "forbidden", "an account may only look up for itself")
    callback = body.get("callback_url")
    if callback is not None:
        callback = _callback_url(callback, request.app[WEBHOOKS])
        if isinstance(callback, web.Response):
            return callback
    wait = body.get("wait", callback is None)
    if not isinstance(wait, bool):
        return _bad("wait: expected true or false")
    hc = server.cfg["http"]
    limit = float(hc.get("sync_timeout", 30.0))
    timeout = body.get("timeout", limit)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout <= 3600:
        return _bad("timeout: expected seconds between 0 and 3600")
    timeout = min(float(timeout), limit)

    submitted = await submit_lookups(server, account, numbers)
    if isinstance(submitted, web.Response):
        return submitted
    batch_id, accepted, rejected = submitted
    if callback is not None:
        request.app[WEBHOOKS].send(callback, batch_id, accepted)
    if wait:
        await wait_done(accepted, timeout)
    at = time.time()
    views = [lookup_view(lk, at, server.resolver.network_names) for lk in accepted]
    return json_response({
        "batch_id": str(batch_id),
        "account": account.system_id,
        "complete": all(v["status"] != "ENROUTE" for v in views),
        "lookups": views,
        "rejected": rejected,
    }, 200 if wait else 202)


async def submit_lookups(server, account: Account, numbers: list[str]
                         ) -> tuple[int, list[Lookup], list[dict]] | web.Response:
    """One request of 1..100 numbers for ``account`` over HTTP (the JSON API and the
    console): admitted as a whole, durable before it returns. (batch id, the accepted
    lookups, the rejected numbers with their error), or the error to answer when none
    was accepted or the store refused the commit."""
    batch_id = await new_batch_id(server)
    results = server.engine.submit_many(account, [n.strip() for n in numbers], "http", batch_id,
                                        server.ids.reserve(len(numbers)))
    accepted = [r for r in results if r.__class__ is Lookup]
    rejected = [{"index": k, "number": numbers[k], "error": refusal_detail(r)}
                for k, r in enumerate(results) if r.__class__ is not Lookup]
    if not accepted:
        return refusal_error(results[0], rejected=rejected)
    if not await durable(server, accepted, account):
        return json_error(503, "system_error", "the store refused the commit; nothing was charged",
                          None)
    return batch_id, accepted, rejected


def _callback_url(value, hooks: "Webhooks") -> str | web.Response:
    why = url_refused(value, hooks, "callback_url")
    return value if why is None else _bad(why)


def url_refused(value, hooks: "Webhooks", name: str) -> str | None:
    """Why ``value`` may not be a URL the server POSTs to (a lookup callback, a
    notification webhook), or None: an absolute http(s) URL, not to a private address."""
    if not isinstance(value, str) or len(value) > 2048:
        return f"{name}: expected an http(s) URL"
    try:
        url = URL(value)
    except (ValueError, TypeError):
        return f"{name}: expected an http(s) URL"
    if url.scheme not in ("http", "https") or not url.host or not url.is_absolute():
        return f"{name}: expected an absolute http(s) URL"
    return hooks.check_url(url.host, name)


# A text of more than this many characters is more than 255 SMS in any coding.
_SEGMENTS_MAX_TEXT = 255 * 160 * 2


async def sms_segments(request: web.Request) -> web.Response:
    """GET /api/v1/sms/segments?text=...&data_coding=: the live SMS counter."""
    who = await authenticate(request)
    if isinstance(who, web.Response):
        return who
    count = segments_of_query(request.query)
    return _bad(count) if isinstance(count, str) else json_response(count)


def segments_of_query(query) -> dict | str:
    """The live counter of a query's ``text`` and ``data_coding`` (the API's and the
    console's), or what is wrong with them."""
    text = query.get("text")
    if text is None:
        return "text is required"
    if len(text) > _SEGMENTS_MAX_TEXT:
        return f"text is longer than {MAX_PARTS} SMS"
    dc = query.get("data_coding", "")
    if dc and not (dc.isascii() and dc.isdigit() and int(dc) <= 255):
        return "data_coding must be an integer 0..255"
    try:
        return count_view(count_text(text, int(dc) if dc else None))
    except UnencodableText as err:
        return str(err)


def _owned(who: Principal, row) -> bool:
    return who.admin or row["system_id"] == who.system_id


async def get_lookup(request: web.Request) -> web.Response:
    """GET /api/v1/lookups/{id}"""
    server = request.app[SERVER]
    who = await authenticate(request)
    if isinstance(who, web.Response):
        return who
    lid = _lookup_id(request.match_info["id"])
    row = await read(server.store.lookup, lid) if lid is not None else None
    if row is None or not _owned(who, row):
        return _not_found(f"no lookup {request.match_info['id']}")
    view = lookup_view(Lookup.from_row(row), time.time(), server.resolver.network_names)
    if row["channel"] == "sms":  # a text message (docs/sms.md)
        view = with_sms(view, await read(server.store.sms, lid))
    return json_response(view)


async def batch_rows(server, batch_id: int | None, system_id: str | None) -> list:
    """The lookups of a batch, in the order of its request; only ``system_id``'s (None:
    the operator, any account's)."""
    rows = await read(server.store.batch, batch_id) if batch_id is not None else []
    return [r for r in rows if system_id is None or r["system_id"] == system_id]


async def get_batch(request: web.Request) -> web.Response:
    """GET /api/v1/batches/{id}"""
    server = request.app[SERVER]
    who = await authenticate(request)
    if isinstance(who, web.Response):
        return who
    bid = _lookup_id(request.match_info["id"])
    rows = await batch_rows(server, bid, who.system_id)
    if not rows:
        unknown_batch(server, request)
        return _not_found(f"no batch {request.match_info['id']}")
    at = time.time()
    views = [lookup_view(Lookup.from_row(r), at, server.resolver.network_names) for r in rows]
    return json_response({"batch_id": str(bid), "account": rows[0]["system_id"],
                          "complete": all(v["status"] != "ENROUTE" for v in views),
                          "lookups": views})


# ------------------------------------------------------------------ history

#: Times outside the span of lookup ids (2020 .. 2087) are clamped to it.
LATEST = 3_700_000_000.0


def _when(text: str, name: str) -> float:
    """ISO 8601 date or date-time (naive: UTC), or epoch seconds."""
    s = text.strip()
    try:
        t = float(s) if s.isascii() and s.replace(".", "", 1).isdigit() else _iso_epoch(s)
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"{name}: expected an ISO 8601 date/time or epoch seconds, got {text!r}") from None
    return min(max(t, 0.0), LATEST)


def _iso_epoch(s: str) -> float:
    if len(s) == 10:
        d = date.fromisoformat(s)
        return datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp()
    dt = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _filename(account: str | None) -> str:
    """A header-safe file name part (the account filter is caller input)."""
    if account is None:
        return "all"
    return account if SYSTEM_ID_RE.fullmatch(account) else "account"


async def history(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/history?account=&since=&until=&status=&err=&cc=&network=&prefix=&limit=&after=
    &order=asc|desc&format=json|csv"""
    who = await authenticate(request)
    if isinstance(who, web.Response):
        return who
    q = request.query
    account = q.get("account") or None
    if who.system_id is not None:
        if account is not None and account != who.system_id:
            return json_error(403, "forbidden", "an account sees only its own history")
        account = who.system_id
    try:
        since = _when(q["since"], "since") if q.get("since") else None
        until = _when(q["until"], "until") if q.get("until") else None
        where = HistoryFilter.parse(q)
    except ValueError as e:
        return _bad(str(e))
    after_text = q.get("after", "0") or "0"
    after = _lookup_id(after_text)
    if after is None:
        return _bad("after: expected the id of the last lookup of the previous page")
    fmt = (q.get("format") or "json").lower()
    if fmt not in ("json", "csv"):
        return _bad("format: expected json or csv")
    order = (q.get("order") or "asc").lower()
    if order not in ("asc", "desc"):
        return _bad("order: expected asc (oldest first) or desc (newest first)")
    desc = order == "desc"
    limit_text = q.get("limit")
    limit = None   # json: 100; csv: all
    if limit_text is not None:
        if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= (
                HISTORY_PAGE_MAX if fmt == "json" else 10_000_000):
            return _bad(f"limit: expected 1..{HISTORY_PAGE_MAX} (json) or a positive count (csv)")
        limit = int(limit_text)
    readers = request.app[HISTORY]
    query = Query(account, since, until, after, desc, where)
    if fmt == "json":
        return web.Response(body=await readers.page(query, 100 if limit is None else limit),
                            content_type="application/json")
    return await history_csv(request, query, limit)


async def history_csv(request: web.Request, query: Query, limit: int | None) -> web.StreamResponse:
    """The history as CSV (the JSON API's and the console's download): every lookup of
    ``query``, or ``limit`` of them, streamed
    a chunk at a time; each write waits for the client to drain (back-pressure)."""
    readers = request.app[HISTORY]
    account = query[0]
    resp = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="hlrsmpp-history-{_filename(account)}.csv"'})
    await resp.prepare(request)
    async for chunk in readers.csv(query, limit):
        await resp.write(chunk)
    await resp.write_eof()
    return resp


# ------------------------------------------------------------------ accounts (operator)

def account_view(server, acc: Account) -> dict:
    r = acc.to_record()
    r.pop("password", None)
    r.pop("password_hash", None)
    c = server.book.counters(acc)
    r["credit"] = from_micro(acc.credit) if acc.credit is not None else None
    r["unlimited"] = acc.packages is None
    r["counters"] = {"day": c["day"], "week": c["week"], "month": c["month"]}
    r["receipts_queued"] = server.outboxes[acc.system_id].size if acc.system_id in server.outboxes else 0
    return r


async def _admin(request: web.Request) -> web.Response | None:
    who = await authenticate(request, admin_only=True)
    return who if isinstance(who, web.Response) else None


async def admin_body(request: web.Request) -> dict | web.Response:
    """The operator's JSON object, or the error to answer (not the operator, a bad body)."""
    if (err := await _admin(request)) is not None:
        return err
    return await _body(request)


async def admin_account(request: web.Request, with_body: bool = False):
    """The operator's request about one account: (account, JSON body or None), or the
    error to answer (not the operator, no such account, a bad body)."""
    if (err := await _admin(request)) is not None:
        return err
    acc = _account_or_404(request.app[SERVER], request)
    if isinstance(acc, web.Response):
        return acc
    if not with_body:
        return acc, None
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    return acc, body


def _account_or_404(server, request) -> Account | web.Response:
    sid = request.match_info["system_id"]
    acc = server.book.get(sid)
    return acc if acc is not None else _not_found(f"no account {sid!r}")


#: Largest amount (credits) the API accepts: the store keeps micro-credits in 64-bit integers.
MAX_AMOUNT = 1_000_000_000
_ACCOUNT_ERRORS = (ValueError, TypeError, OverflowError, ArithmeticError)


SYSTEM_ID_RE = re.compile(r"[A-Za-z0-9_.@+-]{1,15}")
IDEMPOTENCY_KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")


def _encodable(v) -> bool:
    """No lone surrogates anywhere (JSON allows them; SQLite's UTF-8 does not)."""
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(v, dict):
        return all(_encodable(k) and _encodable(x) for k, x in v.items())
    if isinstance(v, list):
        return all(_encodable(x) for x in v)
    return True


def _api_trace(server, body: dict) -> web.Response | None:
    """A trace file given over the API is a NAME under the traces directory (never a path
    of the caller's choosing): ``body["trace"]`` becomes that file, or the error."""
    if isinstance(body.get("trace"), str):
        path = trace_file(server, body["trace"])
        if isinstance(path, web.Response):
            return path
        body["trace"] = str(path)
    return None


def _validate_account(server, record: dict, new: bool = False) -> str | None:
    """Why ``record`` would not make a usable account, or None. Builds it on a scratch
    book, so a bad value never reaches the live one half applied."""
    if not _encodable(record):
        return "text values must be valid Unicode"
    if new and not (isinstance(record.get("system_id"), str)
                    and SYSTEM_ID_RE.fullmatch(record["system_id"])):
        return ("system_id: 1 to 15 of A-Z a-z 0-9 _ . @ + - (an id the API can address; "
                "the YAML may use others)")
    if new and record["system_id"] in server.operators:
        return "system_id: the name of an operator of the console (admin.users)"
    try:
        acc = Account.from_config(record)
        AccountBook(tz=server.cfg.get("accounts_timezone", "UTC"), ban_after=0).add(acc)
    except _ACCOUNT_ERRORS as e:
        return str(e) or type(e).__name__
    cap = MAX_AMOUNT * 1_000_000
    s = acc.settings
    amounts = [s.price, s.low_credit] + [x for p in acc.packages or () for x in (p.credit, p.size)]
    if any(a > cap for a in amounts):
        return f"amounts above {MAX_AMOUNT} credits are not accepted"
    return None


async def list_accounts(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    if (err := await _admin(request)) is not None:
        return err
    return json_response({"accounts": [account_view(server, a) for a in
                                       sorted(server.book, key=lambda a: a.system_id)]})


async def create_account(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    body = await admin_body(request)
    if isinstance(body, web.Response):
        return body
    return await create_account_from(server, body)


async def create_account_from(server, body: dict) -> web.Response:
    """A new account from the operator's settings (the JSON API and the console)."""
    sid = body.get("system_id")
    if isinstance(sid, str) and server.book.get(sid) is not None:
        return json_error(409, "exists", f"account {sid!r} already exists")
    if (err := _api_trace(server, body)) is not None:
        return err
    if (why := _validate_account(server, body, new=True)) is not None:
        return json_error(422, "invalid_account", why)
    try:
        acc = await server.admin.create(body)
    except _ACCOUNT_ERRORS as e:
        return json_error(422, "invalid_account", str(e))
    except RuntimeError as e:
        return json_error(503, "system_error", str(e))
    return json_response(account_view(server, acc), 201,
                         headers={"Location": f"/api/v1/accounts/{acc.system_id}"})


async def get_account(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    got = await admin_account(request)
    if isinstance(got, web.Response):
        return got
    acc, _ = got
    return json_response(account_view(server, acc))


UPDATE_FORBIDDEN = {"system_id": "an account cannot be renamed",
                    "credit": "change credit with POST /api/v1/accounts/{system_id}/top-up",
                    "packages": "change credit with POST /api/v1/accounts/{system_id}/top-up"}


async def update_account(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    got = await admin_account(request, with_body=True)
    if isinstance(got, web.Response):
        return got
    acc, body = got
    return await update_account_with(server, acc, body)


async def update_account_with(server, acc: Account, body: dict) -> web.Response:
    """Change an account's settings and/or ``enabled`` (the JSON API and the console)."""
    for k, why in UPDATE_FORBIDDEN.items():
        if k in body and not (k == "system_id" and body[k] == acc.system_id):
            return json_error(422, "invalid_account", f"{k}: {why}")
    body.pop("system_id", None)
    enabled = body.pop("enabled", None)
    if enabled is not None and not isinstance(enabled, bool):
        return json_error(422, "invalid_account", "enabled: expected true or false")
    if (err := _api_trace(server, body)) is not None:
        return err
    if body and (err := await change_settings(server, acc, body)) is not None:
        return err
    try:
        if enabled is not None:
            await server.admin.set_enabled(acc.system_id, enabled)
    except _ACCOUNT_ERRORS as e:
        return json_error(422, "invalid_account", str(e))
    except RuntimeError as e:
        return json_error(503, "system_error", str(e))
    return json_response(account_view(server, server.book.get(acc.system_id)))


async def change_settings(server, acc: Account, changes: dict) -> web.Response | None:
    """Validate ``changes`` to an account's settings on a scratch copy, then apply them
    once durable (the operator's edits and an account's own); the error answer, or None."""
    try:
        record = merge_settings(acc.to_record(), changes)
        if (why := _validate_account(server, record)) is not None:
            return json_error(422, "invalid_account", why)
        await server.admin.update(acc.system_id, changes)
    except _ACCOUNT_ERRORS as e:
        return json_error(422, "invalid_account", str(e))
    except RuntimeError as e:
        return json_error(503, "system_error", str(e))
    return None


async def top_up(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    got = await admin_account(request, with_body=True)
    if isinstance(got, web.Response):
        return got
    acc, body = got
    return await top_up_account(server, acc, body, request.headers.get("Idempotency-Key"))


async def top_up_account(server, acc: Account, body: dict, key: str | None) -> web.Response:
    """Add a package of credit, once per idempotency ``key`` (the JSON API's
    Idempotency-Key header, the console's form): the JSON API's answer."""
    extra = set(body) - {"credit", "bought", "note"}
    if extra:
        return _bad(f"unknown field(s): {', '.join(sorted(map(str, extra)))}")
    credit = body.get("credit")
    if isinstance(credit, bool) or not isinstance(credit, (int, float, str)):
        return json_error(422, "invalid_amount", "credit: expected a positive amount, e.g. \"50\" or 12.5")
    bought = body.get("bought")
    if bought is not None:
        try:
            bought = date.fromisoformat(bought) if isinstance(bought, str) else None
        except ValueError:
            bought = None
        if bought is None:
            return json_error(422, "invalid_amount", "bought: expected a date YYYY-MM-DD")
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > 200 or not _encodable(note):
        return _bad("note: expected text of at most 200 characters")
    try:
        amount = to_micro(credit)
    except _ACCOUNT_ERRORS:
        amount = 0
    if not 0 < amount <= MAX_AMOUNT * 1_000_000:
        return json_error(422, "invalid_amount",
                          f"credit: expected a positive amount up to {MAX_AMOUNT}, with at most 6 decimals")
    if acc.packages is None:
        return json_error(409, "unlimited_credit",
                          f"account {acc.system_id!r} has unlimited credit: nothing to top up")
    idempotency = None
    if key is not None:
        if not IDEMPOTENCY_KEY_RE.fullmatch(key):
            return _bad("Idempotency-Key: 1 to 255 visible ASCII characters")
        # The request as understood (an amount written "50" or 50.0 is the same top-up).
        what = json.dumps([from_micro(amount), bought.isoformat() if bought else None, note])
        idempotency = key, hashlib.sha256(what.encode()).hexdigest()
    try:
        package, replayed = await server.admin.top_up(acc.system_id, credit, bought, note, idempotency)
    except IdempotencyConflict as e:
        return json_error(422, "idempotency_key_reused", str(e))
    except _ACCOUNT_ERRORS as e:
        return json_error(422, "invalid_amount", f"credit: {e}")
    except RuntimeError as e:
        return json_error(503, "system_error", str(e))
    return json_response({"account": account_view(server, acc), "package": package},
                         headers={"Idempotent-Replayed": "true"} if replayed else None)


async def _set_enabled(request: web.Request, enabled: bool) -> web.Response:
    server = request.app[SERVER]
    got = await admin_account(request)
    if isinstance(got, web.Response):
        return got
    acc, _ = got
    return await set_enabled_of(server, acc, enabled)


async def set_enabled_of(server, acc: Account, enabled: bool) -> web.Response:
    try:
        await server.admin.set_enabled(acc.system_id, enabled)
    except RuntimeError as e:
        return json_error(503, "system_error", str(e))
    return json_response(account_view(server, acc))


async def enable_account(request: web.Request) -> web.Response:
    return await _set_enabled(request, True)


async def disable_account(request: web.Request) -> web.Response:
    return await _set_enabled(request, False)


async def ledger(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    got = await admin_account(request)
    if isinstance(got, web.Response):
        return got
    acc, _ = got
    return json_response({"account": acc.system_id, "entries": await ledger_entries(server, acc)})


async def ledger_entries(server, acc: Account) -> list[dict]:
    rows = await read(server.store.ledger, acc.system_id)
    return [{"at": iso(r["at"]), "kind": r["kind"], "amount": from_micro(r["amount"]), "note": r["note"]}
            for r in rows]


# ------------------------------------------------------------------ webhooks

def _addr(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr


#: The last label of a host that URL parsers (and getaddrinfo) read as an IPv4 number.
_NUMERIC_LABEL = re.compile(r"(?:[0-9]+|0[xX][0-9a-fA-F]*)")


def _non_canonical_ipv4(host: str) -> bool:
    """``2130706433``, ``127.1``, ``0x7f000001``, ``0177.0.0.1``, ``127.0.0.1.``: hosts
    that name an IPv4 address without being its dotted-quad form. Resolvers disagree on
    them (octal or decimal?), so a check of one reading proves nothing about the other."""
    label = (host[:-1] if host.endswith(".") else host).rsplit(".", 1)[-1]
    if not _NUMERIC_LABEL.fullmatch(label):
        return False
    try:
        return str(ipaddress.IPv4Address(host)) != host
    except ValueError:
        return True


class Webhooks:
    """Asynchronous lookups' callbacks: one POST per batch once every result is final,
    retried with exponential backoff until a 2xx or the attempts run out. In memory: a
    restart forgets pending callbacks (the results stay readable by id and batch).

    Unless ``http.webhook_private``, callbacks go to public addresses only (an account
    must not make the server POST into its own network), or to the networks of
    ``http.webhook_allow``. A name is resolved once per attempt, the address checked, and
    the POST goes to THAT address (Host and TLS SNI keep the name): a second DNS answer
    cannot swap in another one. Redirects are not followed (a 3xx is a failed attempt):
    a receiver cannot bounce the POST to an address that was never checked. With
    ``http.webhook_secret`` each POST carries ``X-Hlrsmpp-Timestamp`` and
    ``X-Hlrsmpp-Signature: sha256=`` the HMAC-SHA256 of ``<timestamp>.<body>`` under
    that secret."""

    def __init__(self, cfg: dict, network_names: dict[str, str] | None = None):
        hc = cfg["http"]
        self.network_names = network_names or {}
        self.attempts = max(1, int(hc.get("webhook_attempts", 6)))
        self.backoff = float(hc.get("webhook_backoff", 1.0))
        self.backoff_max = float(hc.get("webhook_backoff_max", 300.0))
        self.timeout = float(hc.get("webhook_timeout", 10.0))
        secret, private = hc.get("webhook_secret", ""), hc.get("webhook_private", False)
        if not isinstance(secret, str) or not isinstance(private, bool):
            raise ValueError("http.webhook_secret must be a string and http.webhook_private true or false")
        self.allow = parse_allowlist(hc.get("webhook_allow"), "http.webhook_allow")
        self.secret = secret.encode()
        self.private = private
        self._resolver: ThreadedResolver | None = None
        self._session: ClientSession | None = None
        self._tasks: set[asyncio.Task] = set()
        self.delivered = 0
        self.failed = 0

    def allowed_ip(self, ip: str) -> bool:
        """Whether a callback may go to address ``ip``: a public one (not loopback, private,
        link-local, multicast, reserved or unspecified; an IPv4-mapped IPv6 address is
        judged as its IPv4), or one of ``http.webhook_allow``."""
        if self.private:
            return True
        addr = _addr(ip)
        return (addr.is_global and not addr.is_multicast) or any(addr in n for n in self.allow)

    def check_url(self, host: str, name: str = "callback_url") -> str | None:
        """Why a callback URL's host is refused when the URL is given, or None. Names are
        checked when resolved, at each POST."""
        if _non_canonical_ipv4(host):
            return f"{name}: an IPv4 address must be written as four decimal numbers (a.b.c.d)"
        try:
            ok = self.allowed_ip(host.strip("[]"))
        except ValueError:   # a name
            return None
        return None if ok else (
            f"{name}: a loopback, private or link-local address (http.webhook_private, "
            "http.webhook_allow)")

    async def _target(self, url: URL) -> tuple[URL, dict, str | None]:
        """Where one attempt connects: the URL with the address that was checked in place
        of its name, the Host header and the TLS server name that keep the name."""
        host = url.host or ""
        if (why := self.check_url(host)) is not None:
            raise OSError(why)
        try:
            _addr(host)
            return url, {}, None   # an address literal, checked above
        except ValueError:
            pass
        if self._resolver is None:
            self._resolver = ThreadedResolver()
        hosts = await self._resolver.resolve(host, url.port or 0, socket.AF_UNSPEC)
        usable = [h["host"] for h in hosts if self.allowed_ip(h["host"])]
        if not usable:
            raise OSError(f"{host} resolves to no public address (http.webhook_private)")
        return (url.with_host(usable[0]), {"Host": url.host_port_subcomponent},
                host if url.scheme == "https" else None)

    def send(self, url: str, batch_id: int, lookups: list[Lookup]) -> None:
        task = asyncio.get_running_loop().create_task(self._run(url, batch_id, lookups))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, url: str, batch_id: int, lookups: list[Lookup]) -> None:
        await wait_done(lookups, float("inf"))
        at = time.time()
        payload = json.dumps({"batch_id": str(batch_id), "account": lookups[0].system_id,
                              "complete": True,
                              "lookups": [lookup_view(lk, at, self.network_names) for lk in lookups]})
        if self._session is None:
            # Always an address in the URL (resolved above): the connector resolves nothing.
            self._session = ClientSession(timeout=ClientTimeout(total=self.timeout),
                                          headers={"User-Agent": "hlrsmpp-webhook"})
        body = payload.encode()
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            status: int | str | None = None
            headers = {"Content-Type": "application/json", "X-Hlrsmpp-Batch": str(batch_id),
                       "X-Hlrsmpp-Attempt": str(attempt)}
            if self.secret:
                stamp = str(int(time.time()))
                mac = hmac.new(self.secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
                headers |= {"X-Hlrsmpp-Timestamp": stamp, "X-Hlrsmpp-Signature": f"sha256={mac}"}
            try:
                target, host_header, server_name = await self._target(URL(url))
                async with self._session.post(target, data=body, headers=headers | host_header,
                                              server_hostname=server_name,
                                              allow_redirects=False) as resp:
                    status = resp.status
                    await resp.read()
                if 300 <= status < 400:
                    status = f"{status}: redirects are not followed"
            except asyncio.CancelledError:
                raise
            except Exception as e:  # connection refused, DNS, timeout, bad URL: retry
                status = repr(e)[:200]
            if isinstance(status, int) and 200 <= status < 300:
                self.delivered += 1
                return
            log.warning("webhook_failed", url=url, batch_id=batch_id, attempt=attempt, result=status)
            if attempt < self.attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
        self.failed += 1
        log.error("webhook_gave_up", url=url, batch_id=batch_id, attempts=self.attempts)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


WEBHOOKS = web.AppKey("webhooks", Webhooks)
HISTORY = web.AppKey("history_readers", HistoryReaders)
