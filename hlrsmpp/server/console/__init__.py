"""The console: web pages on the HTTP port under /console/ (docs/console.md), for the
customers (their account, lookups, history, contact lists) and the operator (accounts,
sessions, the test bench, the system).

Server-rendered (Jinja, autoescaped), a little JavaScript of ours for the live parts
(every page works without it), no CDN and no build step. Every operation calls the code
the JSON API calls: the console is another face of the same server, never a second
implementation.
"""
from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from .auth import Sessions
from .common import SESSIONS, add_filters, add_globals
from . import contacts, customer, login, operator, sms

__all__ = ["setup"]

HERE = Path(__file__).resolve().parent

#: No inline script or style, nothing from elsewhere, no framing, forms post here only.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


async def _headers(request: web.Request, resp: web.StreamResponse) -> None:
    if request.path == "/" or request.path.startswith("/console"):
        h = resp.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "same-origin")
        if not request.path.startswith("/console/static/"):
            h.setdefault("Cache-Control", "no-store")


async def _root(request: web.Request) -> web.Response:
    raise web.HTTPFound("/console/")


def setup(app: web.Application, server) -> None:
    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                               autoescape=True, undefined=jinja2.StrictUndefined,
                               trim_blocks=True, lstrip_blocks=True)
    add_filters(env)
    add_globals(app)
    app[SESSIONS] = Sessions(server)
    app.on_response_prepare.append(_headers)
    r = app.router
    r.add_get("/", _root)
    r.add_get("/console", _root)
    r.add_static("/console/static/", HERE / "static", name="console_static", append_version=True)
    login.routes(r)
    customer.routes(r)
    sms.routes(r)
    contacts.routes(r)
    operator.routes(r)
