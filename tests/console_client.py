"""A browser-like HTTP client of the console for the tests: a cookie jar, forms posted
with the CSRF token of the page they came from."""
from __future__ import annotations

import html
import re

import aiohttp

_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(page: str) -> str:
    m = _CSRF.search(page)
    assert m, "no CSRF token on the page"
    return html.unescape(m.group(1))


class Console:
    def __init__(self, st, session: aiohttp.ClientSession):
        self.st, self.session = st, session
        self.base = f"http://127.0.0.1:{st.http_port}"
        self.csrf = ""

    async def get(self, path: str, **kw) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.session.get(self.base + path, allow_redirects=kw.pop("allow_redirects", True), **kw) as r:
            text = await r.text()
            if _CSRF.search(text):
                self.csrf = csrf_of(text)
            return r.status, text, r

    async def post(self, path: str, data: dict | None = None, csrf: bool = True, **kw):
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf", self.csrf)
        async with self.session.post(self.base + path, data=data,
                                     allow_redirects=kw.pop("allow_redirects", True), **kw) as r:
            text = await r.text()
            if _CSRF.search(text):
                self.csrf = csrf_of(text)
            return r.status, text, r

    async def login(self, system_id: str, password: str) -> tuple[int, str, aiohttp.ClientResponse]:
        await self.get("/console/login")
        return await self.post("/console/login", {"system_id": system_id, "password": password})


def console_session() -> aiohttp.ClientSession:
    # The server is 127.0.0.1: aiohttp keeps cookies of IP hosts only when told (browsers do).
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
