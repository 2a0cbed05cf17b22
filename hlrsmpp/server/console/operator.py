"""The operator's pages under /console/admin/: accounts, sessions, the test bench, the
system. Every change goes through the JSON API's own functions (validation, durability,
idempotent top-ups), so the console and the API cannot disagree."""
from __future__ import annotations

import importlib.metadata
import json
import os
import secrets
import time
from urllib.parse import quote

from aiohttp import web

from ...accounts import from_micro
from ..http import api, testbench
from ..http.common import SERVER
from .common import api_body, api_error, form, missing, operator, render
from .sessions import bound_sessions, disconnect

_LIMITS = (("per_day", int), ("per_week", int), ("per_month", int), ("tps", float), ("min_delay_ms", int))


def _account_row(server, acc, counts: dict[str, int]) -> dict:
    c = server.book.counters(acc)
    return {"system_id": acc.system_id, "enabled": acc.settings.enabled,
            "credit": from_micro(acc.credit) if acc.credit is not None else None,
            "day": c["day"], "month": c["month"], "sessions": counts.get(acc.system_id, 0),
            "expires": acc.settings.expires.isoformat() if acc.settings.expires else ""}


def _back(path: str, notice: str = "", error: str = "") -> web.HTTPSeeOther:
    """Post/redirect/get, the outcome in the query (shown escaped, never trusted)."""
    q = f"notice={quote(notice)}" if notice else f"error={quote(error)}" if error else ""
    return web.HTTPSeeOther(path + ("&" if "?" in path else "?") + q if q else path)


def _flash(request: web.Request) -> dict:
    return {"notice": request.query.get("notice", "")[:300], "flash_error": request.query.get("error", "")[:300]}


# ------------------------------------------------------------------ accounts

@operator
async def accounts(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    counts: dict[str, int] = {}
    for s in bound_sessions(server):
        counts[s["account"]] = counts.get(s["account"], 0) + 1
    rows = [_account_row(server, a, counts) for a in sorted(server.book, key=lambda a: a.system_id)]
    return render(request, "admin_accounts.html", {"title": "Accounts", "rows": rows, **_flash(request)})


def _settings(data: dict, new: bool) -> dict:
    """The account form as the JSON API's body; ValueError says which field is wrong."""
    body: dict = {}
    if new:
        body["system_id"] = data.get("system_id", "").strip()
    if data.get("password"):
        body["password"] = data["password"]
    for key in ("price", "low_credit"):
        if data.get(key, "").strip():
            body[key] = data[key].strip()
        elif key == "low_credit" and not new:
            body[key] = 0
    if new and data.get("credit", "").strip():
        body["credit"] = data["credit"].strip()
    if data.get("expires", "").strip():
        body["expires"] = data["expires"].strip()
    elif not new:
        body["expires"] = None
    limits = {}
    for key, kind in _LIMITS:
        text = data.get(key, "").strip()
        if text:
            try:
                limits[key] = kind(text)
            except ValueError:
                raise ValueError(f"{key}: expected a {'whole ' if kind is int else ''}number") from None
    body["limits"] = limits
    body["coverage"] = [c for c in data.get("coverage", "").replace(",", " ").split() if c]
    body["allowed_ips"] = [c for c in data.get("allowed_ips", "").replace(",", " ").split() if c]
    if data.get("max_tx", "").strip():
        try:
            body["max_tx"] = int(data["max_tx"])
        except ValueError:
            raise ValueError("max_tx: expected a whole number") from None
    return body


def _form_values(acc=None) -> dict:
    if acc is None:
        return {"price": "0.1", "max_tx": "10"}
    s = acc.settings
    lim = s.limits.to_config()
    v = {"price": from_micro(s.price), "low_credit": from_micro(s.low_credit) if s.low_credit else "",
         "expires": s.expires.isoformat() if s.expires else "", "max_tx": str(s.max_tx),
         "coverage": ", ".join(sorted(s.coverage, key=lambda c: (len(c), c))),
         "allowed_ips": ", ".join(str(n) for n in s.allowed_ips)}
    v.update({k: str(lim[k]) for k, _ in _LIMITS if k in lim})
    return v


@operator
async def new_account(request: web.Request) -> web.Response:
    return render(request, "admin_account_form.html", {"title": "New account", "new": True,
                                                       "values": _form_values(), "error": None})


@operator
async def create_account(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    data = await form(request)
    try:
        body = _settings(data, new=True)
        if not body.get("password"):
            raise ValueError("password: give the account a password")
    except ValueError as e:
        resp = None
        error: str | None = str(e)
    else:
        resp = await api.create_account_from(server, body)
        error = api_error(resp) if resp.status >= 400 else None
    if error is not None:
        values = {k: v for k, v in data.items() if k not in ("password", "csrf")}
        return render(request, "admin_account_form.html", {"title": "New account", "new": True,
                                                           "values": values, "error": error},
                      resp.status if resp is not None else 422)
    raise _back(f"/console/admin/accounts/{quote(body['system_id'])}", notice="Account created.")


def _account(request: web.Request):
    acc = request.app[SERVER].book.get(request.match_info["system_id"])
    if acc is None:
        raise missing(request, "No such account.")
    return acc


@operator
async def account(request: web.Request) -> web.Response:
    server, acc = request.app[SERVER], _account(request)
    live = [s for s in bound_sessions(server) if s["account"] == acc.system_id]
    return render(request, "admin_account.html", {
        "title": f"Account {acc.system_id}", "acc": acc, "row": _account_row(server, acc, {acc.system_id: len(live)}),
        "view": api.account_view(server, acc), "values": _form_values(acc), "error": None,
        "ledger": list(reversed(await api.ledger_entries(server, acc)))[:200],
        "sessions": live,
        "idempotency_key": secrets.token_urlsafe(18), **_flash(request)})


@operator
async def edit_account(request: web.Request) -> web.Response:
    server, acc = request.app[SERVER], _account(request)
    here = f"/console/admin/accounts/{quote(acc.system_id)}"
    try:
        body = _settings(await form(request), new=False)
    except ValueError as e:
        raise _back(here, error=str(e)) from None
    resp = await api.update_account_with(server, acc, body)
    if resp.status >= 400:
        raise _back(here, error=api_error(resp))
    raise _back(here, notice="Settings saved.")


@operator
async def set_enabled(request: web.Request) -> web.Response:
    server, acc = request.app[SERVER], _account(request)
    enabled = request.match_info["action"] == "enable"
    resp = await api.set_enabled_of(server, acc, enabled)
    here = f"/console/admin/accounts/{quote(acc.system_id)}"
    if resp.status >= 400:
        raise _back(here, error=api_error(resp))
    raise _back(here, notice="Account enabled." if enabled else "Account disabled.")


@operator
async def top_up(request: web.Request) -> web.Response:
    """The form carries an idempotency key made when it was shown: sent twice (a double
    click, a reload), it credits once."""
    server, acc = request.app[SERVER], _account(request)
    data = await form(request)
    body = {"credit": data.get("credit", "").strip()}
    if data.get("note", "").strip():
        body["note"] = data["note"].strip()
    resp = await api.top_up_account(server, acc, body, data.get("idempotency_key") or None)
    here = f"/console/admin/accounts/{quote(acc.system_id)}"
    if resp.status >= 400:
        raise _back(here, error=api_error(resp))
    credit = api_body(resp)["account"]["credit"]
    replayed = resp.headers.get("Idempotent-Replayed") == "true"
    raise _back(here, notice=("Already topped up (the form was sent twice): " if replayed else "Topped up: ")
                + f"credit is now {credit}.")


# ------------------------------------------------------------------ sessions

@operator
async def sessions(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    return render(request, "admin_sessions.html", {"title": "Sessions", "sessions": bound_sessions(server),
                                                   **_flash(request)})


@operator
async def disconnect_session(request: web.Request) -> web.Response:
    sid = disconnect(request.app[SERVER], request.match_info["key"])
    if sid is None:
        raise _back("/console/admin/sessions", error="That session has already gone.")
    raise _back("/console/admin/sessions", notice=f"Session of {sid} disconnected.")


# ------------------------------------------------------------------ test bench

@operator
async def bench(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    sid = request.query.get("account", "")
    acc = server.book.get(sid) if sid else None
    return render(request, "admin_testbench.html", {
        "title": "Test bench", "faults": json.dumps(server.faults.to_config(), indent=2),
        "accounts": sorted(a.system_id for a in server.book), "account": acc,
        "trace": testbench._trace_setting(acc.settings.trace) if acc else False,
        "lines": server.trace_lines(acc.system_id, 500) if acc else [], **_flash(request)})


@operator
async def put_faults(request: web.Request) -> web.Response:
    text = (await form(request)).get("faults", "").strip() or "[]"
    try:
        rules = json.loads(text)
    except ValueError as e:
        raise _back("/console/admin/testbench", error=f"faults: not JSON ({e})") from None
    resp = testbench.replace_faults(request.app[SERVER], rules)
    if resp.status >= 400:
        raise _back("/console/admin/testbench", error=api_error(resp))
    raise _back("/console/admin/testbench", notice=f"{len(rules)} fault rule(s) in force.")


@operator
async def put_trace(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    data = await form(request)
    acc = server.book.get(data.get("account", ""))
    if acc is None:
        raise _back("/console/admin/testbench", error="account: choose an account")
    choice = data.get("trace", "off")
    trace = {"off": False, "memory": True}.get(choice, data.get("file", "").strip())
    resp = await testbench.set_trace(server, acc, trace)
    here = f"/console/admin/testbench?account={quote(acc.system_id)}"
    if resp.status >= 400:
        raise _back(here, error=api_error(resp))
    raise web.HTTPSeeOther(here)


# ------------------------------------------------------------------ system

def _version() -> str:
    try:
        return importlib.metadata.version("hlrsmpp")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@operator
async def system(request: web.Request) -> web.Response:
    from ..http import health_checks   # the package imports this one: its names come later
    server = request.app[SERVER]
    storage = server.cfg["storage"]
    store_file = server.store.file
    try:
        size = os.path.getsize(store_file) if store_file else None
    except OSError:
        size = None
    return render(request, "admin_system.html", {
        "title": "System", "checks": await health_checks(server), "version": _version(),
        "storage": {"kind": "Redis" if storage.get("redis") else "SQLite", "path": storage["path"],
                    "file": str(store_file or ""), "size": size},
        "sessions": server.session_counts(), "accounts": len(server.book), "pid": os.getpid(),
        "now": time.time(), "ports": {"smpp": server.smpp_port, "http": server.http_port}})


def routes(r: web.UrlDispatcher) -> None:
    r.add_get("/console/admin/", admin_home)
    r.add_get("/console/admin/accounts", accounts)
    r.add_post("/console/admin/accounts", create_account)
    r.add_get("/console/admin/new-account", new_account)
    r.add_get("/console/admin/accounts/{system_id}", account)
    r.add_post("/console/admin/accounts/{system_id}", edit_account)
    r.add_post("/console/admin/accounts/{system_id}/top-up", top_up)
    r.add_post("/console/admin/accounts/{system_id}/{action:enable|disable}", set_enabled)
    r.add_get("/console/admin/sessions", sessions)
    r.add_post("/console/admin/sessions/{key}/disconnect", disconnect_session)
    r.add_get("/console/admin/testbench", bench)
    r.add_post("/console/admin/testbench/faults", put_faults)
    r.add_post("/console/admin/testbench/trace", put_trace)
    r.add_get("/console/admin/system", system)


async def admin_home(request: web.Request) -> web.Response:
    raise web.HTTPFound("/console/admin/accounts")
