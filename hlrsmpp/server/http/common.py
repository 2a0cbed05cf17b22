"""Shared by every HTTP front end: views of a lookup, time formats, durability, errors."""
from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar
from zoneinfo import ZoneInfo

from aiohttp import web

from ...accounts import Refusal, from_micro
from ...hlr import ERR_NAMES
from ...ids import random_id
from ...smpp.status import Status
from ...domain import Lookup
from ...sms import STAT_WORDS
from ...sms.alphabet import encoding_of

if TYPE_CHECKING:
    from ..app import Server

#: Outcomes saying the subscriber does not exist (the history's "active" is false).
NOT_ACTIVE = frozenset({12, 13, 18})

#: Most numbers in one lookup request (the AMS HLR API allows up to 100).
MAX_BATCH = 100
#: asyncio timers may fire up to the clock resolution early: wait a hair longer.
TIMER_SLACK = 0.005

SERVER: web.AppKey[Server] = web.AppKey("server")
T = TypeVar("T")
TEXT = "text/plain"


def now() -> float:
    return time.time()


def report_time(t: float, tz: ZoneInfo) -> str:
    """The report's `time` (AMS HLR API): YYYY-MM-DD hh:mm:ss."""
    return datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M:%S")


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def report_row(lk: Lookup, at: float, tz: ZoneInfo) -> dict:
    """One object of /websmpp/hlr/report (AMS HLR API): `id` a number, every other value a
    string. While the lookup is pending (ENROUTE) its result fields are blank."""
    done = at >= lk.done
    err = lk.err if done else 0
    return {
        "id": lk.id,
        "batchid": str(lk.batch_id) if lk.batch_id is not None else "",
        "destination": lk.msisdn,
        "time": report_time(lk.submitted, tz),
        "status": lk.stat if done else "ENROUTE",
        "error_code": f"{err:03d}",
        "error": ERR_NAMES.get(err, "") if done else "",
        "cc": lk.cc,
        "nnc": lk.nnc if done else "",
        "isPorted": "Yes" if done and lk.ported else "No",
        "p_nnc": lk.p_nnc if done else "",
        "isRoaming": "Yes" if done and lk.roaming else "No",
        "r_cc": lk.r_cc if done else "",
        "r_nnc": lk.r_nnc if done else "",
    }


#: Fields of a lookup in the JSON API and the CSV history, in this order.
LOOKUP_FIELDS = ("id", "batch_id", "account", "channel", "number", "submitted", "done", "status",
                 "err", "error", "cc", "nnc", "nnc_name", "network", "network_name", "ported",
                 "p_nnc", "p_nnc_name", "roaming", "r_cc", "r_nnc", "r_nnc_name", "active",
                 "reachable", "cost")
_RESULT_FIELDS = ("err", "error", "nnc", "nnc_name", "network", "network_name", "ported", "p_nnc",
                  "p_nnc_name", "roaming", "r_cc", "r_nnc", "r_nnc_name", "active", "reachable")


def lookup_view(lk: Lookup, at: float, names: Mapping[str, str]) -> dict:
    """A lookup in the JSON API. Ids are strings (they exceed 2**53). While it is pending
    (status ENROUTE, before its `done` time) the result fields are null. ``names``: MCC+MNC
    -> network name (the resolver's ``network_names``); "" for a network it does not name."""
    done = at >= lk.done
    network = lk.p_nnc if lk.ported and lk.p_nnc else lk.nnc
    v = {
        "id": str(lk.id),
        "batch_id": str(lk.batch_id) if lk.batch_id is not None else None,
        "account": lk.system_id,
        "channel": lk.channel,
        "number": lk.msisdn,
        "submitted": iso(lk.submitted),
        "done": iso(lk.done),
        "status": lk.stat if done else "ENROUTE",
        "err": lk.err,
        "error": ERR_NAMES.get(lk.err, ""),
        "cc": lk.cc,
        "nnc": lk.nnc,
        "nnc_name": names.get(lk.nnc, ""),
        "network": network,
        "network_name": names.get(network, ""),
        "ported": bool(lk.ported),
        "p_nnc": lk.p_nnc,
        "p_nnc_name": names.get(lk.p_nnc, ""),
        "roaming": bool(lk.roaming),
        "r_cc": lk.r_cc,
        "r_nnc": lk.r_nnc,
        "r_nnc_name": names.get(lk.r_nnc, ""),
        "active": lk.err not in NOT_ACTIVE,
        "reachable": lk.err == 0,
        "cost": from_micro(lk.cost),
    }
    if not done:
        for k in _RESULT_FIELDS:
            v[k] = None
    return v


def with_sms(v: dict, row) -> dict:
    """A text message's view (channel sms): its status the message's state (EXPIRED,
    DELETED too), its segments and encoding, from the row's ``sms`` column."""
    try:
        extra = row["sms"]
    except (IndexError, KeyError, TypeError):  # a lookup's row, or none
        return v
    if extra:
        segments, data_coding, state = (int(x) for x in extra.split(","))
        if v["status"] != "ENROUTE":
            v["status"] = STAT_WORDS.get(state, v["status"])
        v.update(segments=segments, data_coding=data_coding, encoding=encoding_of(data_coding))
    return v


def template_fields(lk: Lookup) -> dict[str, str]:
    """What a prepaid service's result template may use (docs/http.md)."""
    return {
        "id": str(lk.id), "msisdn": lk.msisdn, "number": lk.msisdn, "cc": lk.cc, "nnc": lk.nnc,
        "p_nnc": lk.p_nnc, "r_cc": lk.r_cc, "r_nnc": lk.r_nnc,
        "network": lk.p_nnc if lk.ported and lk.p_nnc else lk.nnc,
        "err": f"{lk.err:03d}", "error": ERR_NAMES.get(lk.err, ""), "status": lk.stat,
        "ported": "true" if lk.ported else "false", "roaming": "true" if lk.roaming else "false",
        "isPorted": "Yes" if lk.ported else "No", "isRoaming": "Yes" if lk.roaming else "No",
        "active": "true" if lk.err not in NOT_ACTIVE else "false",
        "reachable": "true" if lk.err == 0 else "false",
    }


async def durable(server, lookups: list[Lookup], account) -> bool:
    """Wait until the journal's next commit holds ``lookups``. On failure they are
    abandoned (credit back) even if the waiting request has gone away."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def committed(ok: bool) -> None:
        if not ok:
            for lk in lookups:
                server.engine.abandon(account, lk)
        if not fut.done():
            fut.set_result(ok)

    server.journal.after_commit(committed)
    return await asyncio.shield(fut)


async def wait_done(lookups: list[Lookup], timeout: float) -> None:
    """Sleep until every lookup's result is final (its simulated HLR latency), at most
    ``timeout`` seconds."""
    if not lookups:
        return
    delay = max(lk.done for lk in lookups) - time.time()
    if delay > 0:
        await asyncio.sleep(min(delay + TIMER_SLACK, max(0.0, timeout)))


async def read(fn: Callable[..., T], *args: Any) -> T:
    """A store read on a worker thread (each has its own SQLite reader connection)."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def new_batch_id(server) -> int:
    """A batch id: random (the report is read by the id alone: it is its secret), and not
    one the store already holds."""
    while True:
        batch_id = random_id()
        if not await read(server.store.batch, batch_id):
            return batch_id


def unknown_batch(server, request: web.Request) -> None:
    """A batch id that names no batch of the caller's: scanning for other accounts'
    batches counts towards the source address's ban, like a wrong password."""
    server.book.record_failure(request.remote or "", time.time())


# ------------------------------------------------------------------ files named over the API

#: A file name that comes over the API: no separator, no "..", not hidden, at most 64
#: characters.
FILE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TRACE_DIR = "traces"


def api_file(directory: Path, name, pattern: re.Pattern = FILE_NAME_RE) -> Path | None:
    """``directory/name`` when ``name`` is a bare file name (``pattern``, no ".."), else
    None. The one check of every name that comes over the API and names something on
    disk (trace files, cleaning jobs): the network never chooses a path on the server."""
    if not isinstance(name, str) or not pattern.fullmatch(name) or ".." in name:
        return None
    path = directory / name
    return path if path.parent == directory else None


def trace_dir(server) -> Path:
    return Path(server.cfg["storage"]["path"]) / TRACE_DIR


def trace_file(server, value: str) -> Path | web.Response:
    """An account's trace file from the API, ``<storage.path>/traces/NAME`` ready to
    append to, or the error to answer. ``value`` is the NAME, or the path the API shows
    for it (a record read, changed and written back)."""
    directory = trace_dir(server)
    if isinstance(value, str) and Path(value).is_absolute() and Path(value).parent == directory:
        value = Path(value).name
    path = api_file(directory, value)
    if path is None:
        return json_error(422, "invalid_trace",
                          "trace: true, false, or a file NAME of 1..64 of A-Z a-z 0-9 . _ - "
                          f"(no path, no '..'), written under the server's {TRACE_DIR}/ directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a"):   # what a session bound later will open: fail now, not then
            pass
    except OSError as e:
        return json_error(503, "system_error", f"cannot open trace file {path.name!r}: {e.strerror or e}")
    return path


# ------------------------------------------------------------------ JSON errors

_REFUSAL_HTTP = {
    Refusal.EXPIRED: 403, Refusal.DISABLED: 403, Refusal.NO_COVERAGE: 422,
    Refusal.LIMIT_TPS: 429, Refusal.LIMIT_DELAY: 429, Refusal.LIMIT_DAY: 429,
    Refusal.LIMIT_WEEK: 429, Refusal.LIMIT_MONTH: 429, Refusal.NO_CREDIT: 402,
    Refusal.BAD_SYSTEM_ID: 401, Refusal.BAD_PASSWORD: 401, Refusal.BAD_SYSTEM_TYPE: 401,
    Refusal.IP_NOT_ALLOWED: 403, Refusal.IP_BANNED: 403, Refusal.TLS_SUBJECT: 403,
}
_REFUSAL_TEXT = {
    Refusal.EXPIRED: "the account has expired",
    Refusal.DISABLED: "the account is disabled",
    Refusal.NO_COVERAGE: "the account does not cover this country",
    Refusal.LIMIT_TPS: "over the account's lookups per second; retry later",
    Refusal.LIMIT_DELAY: "the account's minimum delay between lookups has not passed; retry later",
    Refusal.LIMIT_DAY: "the account's daily limit is reached",
    Refusal.LIMIT_WEEK: "the account's weekly limit is reached",
    Refusal.LIMIT_MONTH: "the account's monthly limit is reached",
    Refusal.NO_CREDIT: "insufficient credit",
    Refusal.BAD_SYSTEM_ID: "unknown system_id or wrong password",
    Refusal.BAD_PASSWORD: "unknown system_id or wrong password",
    Refusal.BAD_SYSTEM_TYPE: "wrong system_type",
    Refusal.IP_NOT_ALLOWED: "this source address is not allowed for the account",
    Refusal.IP_BANNED: "this source address is temporarily banned after failed logins",
    Refusal.TLS_SUBJECT: "the account logs in only with the client certificate it pinned (SMPP over TLS)",
}
assert _REFUSAL_HTTP.keys() == _REFUSAL_TEXT.keys() == set(Refusal)


def json_response(body, status: int = 200, headers=None) -> web.Response:
    # ASCII-escaped: an echoed value (even a lone surrogate from JSON input) always encodes.
    return web.Response(text=json.dumps(body, separators=(",", ":")), status=status,
                        content_type="application/json", headers=headers)


def error_body(code: str, message: str, smpp_status: Status | None = None, **extra) -> dict:
    err = {"code": code, "message": message,
           "smpp_status": smpp_status.label if smpp_status is not None else None}
    err.update(extra)
    return {"error": err}


def json_error(status: int, code: str, message: str, smpp_status: Status | None = None,
               headers=None, **extra) -> web.Response:
    return json_response(error_body(code, message, smpp_status, **extra), status, headers)


def refusal_error(r: Refusal | Status, **extra) -> web.Response:
    """The JSON error of a refused lookup or login: the SMPP code it would get."""
    status, code, text, smpp = refusal_parts(r)
    return json_error(status, code, text, smpp, **extra)


#: Any bad credential gets one answer: which part was wrong is a guesser's clue.
_BAD_LOGIN = frozenset({Refusal.BAD_SYSTEM_ID, Refusal.BAD_PASSWORD})


def refusal_parts(r: Refusal | Status) -> tuple[int, str, str, Status | None]:
    if r in _BAD_LOGIN:
        return 401, "invalid_login", _REFUSAL_TEXT[r], None
    if isinstance(r, Refusal):
        return _REFUSAL_HTTP[r], r.value, _REFUSAL_TEXT[r], r.smpp_status
    if r == Status.RINVDSTADR:
        return 422, "invalid_destination", "not a possible E.164 number", r
    return 503, "system_error", "the lookup could not be accepted; retry later", Status(r)


def refusal_detail(r: Refusal | Status) -> dict:
    _, code, text, smpp = refusal_parts(r)
    return error_body(code, text, smpp)["error"]
