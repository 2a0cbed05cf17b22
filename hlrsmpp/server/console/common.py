"""What every console page shares: who is looking, the CSRF check, rendering, errors."""
from __future__ import annotations

import functools
import json
from datetime import datetime, timezone
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web

from ...accounts import Account
from ..http.common import SERVER
from .auth import Sessions, Viewer, csrf_ok

SESSIONS = web.AppKey("console_sessions", Sessions)
VIEWER = web.RequestKey("console_viewer", Viewer)
FORM = web.RequestKey("console_form", dict)
#: Largest form the console reads (a pasted list of 100 numbers is a few KB).
FORM_MAX = 64 * 1024


def viewer(request: web.Request) -> Viewer:
    return request[VIEWER]


def customer_account(request: web.Request) -> Account:
    """The account whose page this is (a ``customer`` page lets no one else in)."""
    account = viewer(request).account
    assert account is not None
    return account


def _login_redirect(request: web.Request) -> web.HTTPException:
    if request.method != "GET":
        return web.HTTPForbidden(text="log in first")
    return web.HTTPSeeOther(f"/console/login?next={quote(request.path_qs, safe='/')}")


def _guard(kind: str):
    """A page for ``kind`` ("customer" or "operator"): anyone else is sent to the login
    (GET) or refused (403); every other method than GET needs the form's CSRF token."""
    def wrap(handler):
        @functools.wraps(handler)
        async def page(request: web.Request) -> web.StreamResponse:
            who = request.app[SESSIONS].viewer(request)
            if who is None:
                raise _login_redirect(request)
            if who.operator != (kind == "operator"):
                if request.method == "GET":
                    raise web.HTTPSeeOther(home(who))
                raise web.HTTPForbidden(text="not yours")
            request[VIEWER] = who
            if request.method != "GET":
                token = request.headers.get("X-CSRF-Token") or request.query.get("csrf")
                if token is None and request.content_type in ("application/x-www-form-urlencoded",):
                    token = (await form(request)).get("csrf")
                if not csrf_ok(who, token):
                    return csrf_refused(request)
            return await handler(request)
        return page
    return wrap


def csrf_refused(request: web.Request) -> web.Response:
    return render(request, "error.html", {
        "title": "Refused", "message": "This form is out of date or was not sent by this console "
        "(no valid CSRF token): reload the page and try again."}, 403)


def missing(request: web.Request, message: str) -> web.HTTPNotFound:
    """A 404 page to raise: not there, or not the viewer's (which must look the same)."""
    page = render(request, "error.html", {"title": "Not found", "message": message}, 404)
    return web.HTTPNotFound(text=page.text, content_type="text/html")


customer = _guard("customer")
operator = _guard("operator")


def home(who: Viewer) -> str:
    return "/console/admin/accounts" if who.operator else "/console/"


async def form(request: web.Request) -> dict[str, str]:
    """The url-encoded form, read once (bounded)."""
    if FORM not in request:
        if request.content_length is not None and request.content_length > FORM_MAX:
            raise web.HTTPRequestEntityTooLarge(max_size=FORM_MAX, actual_size=request.content_length)
        data = await request.post()
        request[FORM] = {k: v for k, v in data.items() if isinstance(v, str)}
    return request[FORM]


def render(request: web.Request, template: str, context: dict, status: int = 200) -> web.Response:
    who = request.get(VIEWER)
    ctx = {"viewer": who, "csrf": who.csrf if who else "", "path": request.path,
           "server": request.app[SERVER]}
    ctx.update(context)
    return aiohttp_jinja2.render_template(template, request, ctx, status=status)


def api_error(resp: web.Response) -> str:
    """The message of a JSON API error answer (the console shows the API's own words)."""
    try:
        return str(json.loads(resp.text or "")["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"refused ({resp.status})"


def api_body(resp: web.Response) -> dict:
    assert resp.text is not None  # a JSON answer
    return json.loads(resp.text)


# ------------------------------------------------------------------ template filters

def _when(t) -> str:
    if t is None or t == "":
        return ""
    if isinstance(t, str):   # an ISO time of the JSON API
        t = datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
    return datetime.fromtimestamp(float(t), timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _credit(v) -> str:
    return "unlimited" if v is None else str(v)


def _yesno(v) -> str:
    return "" if v is None else "yes" if v else "no"


def _asset(app: web.Application):
    def asset(name: str) -> str:
        return str(app.router["console_static"].url_for(filename=name))
    return asset


def add_filters(env) -> None:
    env.filters.update(when=_when, credit=_credit, yesno=_yesno)


def add_globals(app: web.Application) -> None:
    env = aiohttp_jinja2.get_env(app)
    env.globals["asset"] = _asset(app)
