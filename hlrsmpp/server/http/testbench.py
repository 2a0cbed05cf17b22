"""The ESME test bench over the admin API (docs/testbench.md): fault rules and PDU traces.

Operator only (``Authorization: Bearer <admin.token>``), like the account routes:

- ``GET /api/v1/faults``, ``PUT /api/v1/faults``: the rules in force, replaced as a whole
  and validated in full first (a bad rule changes nothing).
- ``GET /api/v1/accounts/{system_id}/trace?limit=N``, ``PUT .../trace``: an account's
  PDU trace setting and its last entries. A trace file is a plain NAME under
  ``<storage.path>/traces/``: the network never chooses a path on the server.

Fault rules live in this process until they are replaced or it restarts (the YAML's
``faults:`` apply at start-up); on a shared deployment each process has its own.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aiohttp import web

from ..faults import FaultError, FaultPlan
from .api import _admin, _bad, admin_account, admin_body
from .common import SERVER, json_error, json_response, trace_file

if TYPE_CHECKING:
    from ...accounts import Account
    from ..app import Server

TRACE_LIMIT_DEFAULT = 1000
TRACE_LIMIT_MAX = 10000
#: Everything a rule can go wrong with: Fault.from_config converts values with int()/float().
_RULE_ERRORS = (FaultError, ValueError, TypeError, OverflowError)


# ------------------------------------------------------------------ faults

def _validate_faults(rules: object) -> str | None:
    """Why ``rules`` cannot replace the rules in force, or None. Built on a scratch plan,
    so nothing in force changes on a bad rule."""
    if not isinstance(rules, list):
        return "faults: expected a list of rules"
    for i, d in enumerate(rules):
        # Server.replace_faults keys a set by account: only a name (or none) is usable.
        if isinstance(d, dict) and d.get("account") is not None and not isinstance(d["account"], str):
            return f"faults[{i}]: account must be a system_id (a string)"
    try:
        plan = FaultPlan(rules)
        # What GET will answer must be JSON (no NaN or infinite delays and percentages).
        json.dumps(plan.to_config(), allow_nan=False)
    except _RULE_ERRORS as e:
        return str(e) or type(e).__name__
    return None


async def get_faults(request: web.Request) -> web.Response:
    """GET /api/v1/faults"""
    server = request.app[SERVER]
    if (err := await _admin(request)) is not None:
        return err
    return json_response({"faults": server.faults.to_config()})


async def put_faults(request: web.Request) -> web.Response:
    """PUT /api/v1/faults  {"faults": [rule, ...]}"""
    server = request.app[SERVER]
    body = await admin_body(request)
    if isinstance(body, web.Response):
        return body
    extra = set(body) - {"faults"}
    if extra:
        return _bad(f"unknown field(s): {', '.join(sorted(map(str, extra)))}")
    if "faults" not in body:
        return _bad('faults: expected {"faults": [rule, ...]} ([] removes every rule)')
    return replace_faults(server, body["faults"])


def replace_faults(server: Server, rules: object) -> web.Response:
    """Replace the fault rules in force, all validated first (the JSON API and the console)."""
    if not isinstance(rules, list):
        return _bad("faults: expected a list of rules")
    if (why := _validate_faults(rules)) is not None:
        return json_error(422, "invalid_faults", why)
    try:
        server.replace_faults(rules)
    except _RULE_ERRORS as e:   # validated above: not expected, but never half applied
        return json_error(422, "invalid_faults", str(e) or type(e).__name__)
    return json_response({"faults": server.faults.to_config()})


# ------------------------------------------------------------------ PDU trace

def _trace_setting(value: object) -> bool | str:
    return value if isinstance(value, (bool, str)) else bool(value)


def _trace_limit(text: str | None) -> int | None:
    if text is None:
        return TRACE_LIMIT_DEFAULT
    if text.isascii() and text.isdigit() and len(text) <= 6 and 1 <= int(text) <= TRACE_LIMIT_MAX:
        return int(text)
    return None


async def get_trace(request: web.Request) -> web.Response:
    """GET /api/v1/accounts/{system_id}/trace?limit=N"""
    server = request.app[SERVER]
    got = await admin_account(request)
    if isinstance(got, web.Response):
        return got
    acc, _ = got
    limit = _trace_limit(request.query.get("limit"))
    if limit is None:
        return _bad(f"limit: expected 1..{TRACE_LIMIT_MAX} (the last entries)")
    return json_response({"account": acc.system_id, "trace": _trace_setting(acc.settings.trace),
                          "lines": server.trace_lines(acc.system_id, limit)})


async def put_trace(request: web.Request) -> web.Response:
    """PUT /api/v1/accounts/{system_id}/trace  {"trace": true | false | "NAME"}"""
    server = request.app[SERVER]
    got = await admin_account(request, with_body=True)
    if isinstance(got, web.Response):
        return got
    acc, body = got
    extra = set(body) - {"trace"}
    if extra:
        return _bad(f"unknown field(s): {', '.join(sorted(map(str, extra)))}")
    return await set_trace(server, acc, body.get("trace"))


async def set_trace(server: Server, acc: Account, trace: object) -> web.Response:
    """Turn an account's PDU trace on (in memory, or to a file NAME) or off (the JSON API
    and the console)."""
    if not isinstance(trace, (bool, str)):
        return _bad('trace: expected true (in memory), false (off) or a file NAME')
    if isinstance(trace, str):
        path = trace_file(server, trace)
        if isinstance(path, web.Response):
            return path
        trace = str(path)
    sid = acc.system_id
    try:
        await server.set_trace(sid, trace)
    except (ValueError, TypeError, RuntimeError) as e:
        if isinstance(e, RuntimeError):
            return json_error(503, "system_error", str(e))
        return json_error(422, "invalid_trace", str(e))
    changed = server.book.get(sid)   # the account as the change left it
    assert changed is not None
    return json_response({"account": sid, "trace": _trace_setting(changed.settings.trace),
                          "lines": server.trace_lines(sid, TRACE_LIMIT_DEFAULT)})
