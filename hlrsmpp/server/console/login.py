"""/console/login and /console/logout: one form for customers and the operator."""
from __future__ import annotations

import asyncio
import time

from aiohttp import web

from ...accounts import Refusal
from ...accounts.passwords import verify_password

from ..http.common import SERVER, refusal_parts
from .auth import OPERATOR, csrf_ok, operator_token_ok
from .common import SESSIONS, VIEWER, csrf_refused, form, home, render

def _next(value: str | None) -> str | None:
    """Where a login may send the browser on: this console's pages only."""
    if value and value.startswith("/console/") and not value.startswith("/console//") \
            and "\\" not in value and value.isprintable():
        return value
    return None


async def login_page(request: web.Request) -> web.Response:
    sessions = request.app[SESSIONS]
    who = sessions.viewer(request)
    if who is not None:
        raise web.HTTPSeeOther(_next(request.query.get("next")) or home(who))
    return _form(request, None, "", _next(request.query.get("next")) or "", 200)


def _form(request: web.Request, error: str | None, system_id: str, nxt: str, status: int) -> web.Response:
    sessions = request.app[SESSIONS]
    token, nonce = sessions.login_token(request)
    resp = render(request, "login.html", {"title": "Log in", "error": error, "system_id": system_id,
                                          "next": nxt, "csrf": token}, status)
    sessions.set_login_nonce(request, resp, nonce)
    return resp


async def login_post(request: web.Request) -> web.Response:
    server, sessions = request.app[SERVER], request.app[SESSIONS]
    data = await form(request)
    system_id, password = data.get("system_id", "").strip(), data.get("password", "")
    nxt = _next(data.get("next"))
    ip = request.remote or ""

    def refuse(message: str, status: int) -> web.Response:
        return _form(request, message, system_id, nxt or "", status)

    if not sessions.login_token_ok(request, data.get("csrf", "")):
        return refuse("This form is out of date: log in again.", 403)
    if not system_id or not password or len(system_id) > 64 or len(password) > 256:
        return refuse("Give your system_id and password.", 400)
    operator_hash = server.operators.get(system_id)
    if (system_id == OPERATOR and operator_token_ok(server, password)) or operator_hash is not None:
        if (banned := server.book.check_ip(ip, time.time())) is not None:
            return refuse(_sentence(refusal_parts(banned)[2]), 403)
        if operator_hash is not None and not await asyncio.get_running_loop().run_in_executor(
                server.kdf, verify_password, password, operator_hash):
            # As a wrong account password: counts towards the address's ban (SMPP's too).
            server.book.record_failure(ip, time.time())
            return refuse(_sentence(refusal_parts(Refusal.BAD_PASSWORD)[2]), 401)
        resp = web.HTTPSeeOther(nxt if nxt and nxt.startswith("/console/admin/") else "/console/admin/accounts")
        sessions.issue(resp, request, True, None, system_id)
        raise resp
    refusal, account = await server.login(system_id, password, ip)
    if refusal is not None:
        status, _, text, _ = refusal_parts(refusal)
        return refuse(_sentence(text), status)
    resp = web.HTTPSeeOther(nxt if nxt and not nxt.startswith("/console/admin/") else "/console/")
    sessions.issue(resp, request, False, account)
    raise resp


async def logout(request: web.Request) -> web.Response:
    """POST only, with the session's CSRF token: a link elsewhere cannot log anyone out."""
    sessions = request.app[SESSIONS]
    who = sessions.viewer(request)
    resp = web.HTTPSeeOther("/console/login")
    if who is not None:
        data = await form(request)
        if not csrf_ok(who, data.get("csrf")):
            request[VIEWER] = who
            return csrf_refused(request)
    sessions.clear(resp)
    raise resp


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def routes(r: web.UrlDispatcher) -> None:
    r.add_get("/console/login", login_page)
    r.add_post("/console/login", login_post)
    r.add_post("/console/logout", logout)
