"""A small JSON-API client for the HTTP tests (one place for what they all need)."""
from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request

import aiohttp


def http_request(url: str, method: str = "GET", body: dict | None = None,
                 token: str | None = None, timeout: float = 10) -> tuple[int, str]:
    """A blocking request (from a test's thread, to a server in another thread or
    process): (status, text), an error status included."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def basic(user: str, password: str) -> dict:
    if hasattr(aiohttp, "encode_basic_auth"):  # aiohttp >= 3.12; BasicAuth is deprecated there
        return {"Authorization": aiohttp.encode_basic_auth(user, password)}
    return {"Authorization": aiohttp.BasicAuth(user, password).encode()}


def error_code(status, body, want_status) -> str:
    """Check a JSON error answer's shape and status; return its code."""
    assert status == want_status, body
    assert set(body["error"]) >= {"code", "message", "smpp_status"}
    assert body["error"]["message"]
    return body["error"]["code"]


class ApiClient:
    def __init__(self, st, session: aiohttp.ClientSession):
        self.st, self.session = st, session
        self.base = f"http://127.0.0.1:{st.http_port}/api/v1"

    async def call(self, method: str, path: str, headers=None, **kw) -> tuple[int, object, dict]:
        """(status, JSON or text body, headers)."""
        async with self.session.request(method, self.base + path, headers=headers, **kw) as r:
            raw = await r.read()
            ctype = r.headers.get("Content-Type", "")
            body = json.loads(raw) if ctype.startswith("application/json") else raw.decode(r.charset or "utf-8")
            return r.status, body, r.headers


@contextlib.asynccontextmanager
async def clients(cls):
    """A factory of ``cls(server, session)``; every session is closed afterwards."""
    sessions: list[aiohttp.ClientSession] = []

    async def factory(st):
        s = aiohttp.ClientSession()
        sessions.append(s)
        return cls(st, s)

    try:
        yield factory
    finally:
        for s in sessions:
            await s.close()
