"""Who is looking at the console: signed session cookies, CSRF tokens, the login.

A session is a cookie signed with the server's console secret (HMAC-SHA256): who (an
account's system_id, or the operator), until when, a random nonce (the CSRF token is an
HMAC of it) and a fingerprint of the credential it was opened with, so a changed
password or admin token ends the sessions opened with the old one. Nothing is kept on
the server: every process of a deployment that shares the secret reads the same cookie,
and a restart logs nobody out. The secret is derived from the admin token when there
is one (the processes of a shared deployment agree on it), else kept in
``<storage.path>/console_secret`` (mode 0600, made at the first start).

The login is the one of SMPP binds and HTTP Basic (``Server.login``: bans, allowlist,
disabled, expired); ``admin`` with the admin token, or a user of ``admin.users`` with
their password, opens an operator's session. Failed logins count towards the source
address's ban, shared with SMPP.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from ... import admin_token
from ...accounts import Account
from ...accounts.allowlist import ip_allowed
from ...accounts.passwords import OPERATOR

if TYPE_CHECKING:
    from ..app import Server

COOKIE = "hlrsmpp_console"
LOGIN_COOKIE = "hlrsmpp_login"       # the login form's CSRF nonce, before any session
SECRET_FILE = "console_secret"
#: A session lasts this long from its login (seconds).
SESSION_TTL = 12 * 3600


@dataclass(frozen=True)
class Viewer:
    """The person behind a request: an account (``account`` set) or an operator
    (``name``: ``admin``, or a user of ``admin.users``)."""
    operator: bool
    account: Account | None
    nonce: str
    csrf: str
    name: str = OPERATOR

    @property
    def system_id(self) -> str:
        return self.name if self.account is None else self.account.system_id


def console_secret(server: Server) -> bytes:
    token = (server.cfg.get("admin") or {}).get("token")
    if token:
        return hmac.new(str(token).encode(), b"hlrsmpp console sessions", hashlib.sha256).digest()
    path = Path(server.cfg["storage"]["path"]) / SECRET_FILE
    try:
        secret, _ = admin_token.ensure(path)
    except FileExistsError:   # another process of the deployment made it just now
        secret = admin_token.read(path) or ""
    return hashlib.sha256(secret.encode()).digest()


def _mac(secret: bytes, *parts: str) -> str:
    return hmac.new(secret, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def fingerprint(server: Server, operator: bool, account: Account | None, name: str = OPERATOR) -> str | None:
    """What the session was opened with, hashed: the admin token, an operator user's
    password hash, or the account's (a new password ends the old sessions); None for an
    operator user no longer configured."""
    if operator and name == OPERATOR:
        cred = str((server.cfg.get("admin") or {}).get("token") or "")
    elif operator:
        if (found := server.operators.get(name)) is None:
            return None
        cred = found
    else:
        assert account is not None  # an account's session
        cred = account.settings.password_hash or account.settings.password or ""
    return hashlib.sha256(cred.encode()).hexdigest()[:16]


class Sessions:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.secret = console_secret(server)

    # ------------------------------------------------------------ cookies
    def issue(self, resp: web.StreamResponse, request: web.Request, operator: bool,
              account: Account | None, name: str = OPERATOR) -> None:
        assert operator or account is not None
        payload = {"o": operator, "u": name if account is None else account.system_id,
                   "e": int(time.time()) + SESSION_TTL, "n": secrets.token_hex(16),
                   "f": fingerprint(self.server, operator, account, name)}
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        value = f"{body}.{_mac(self.secret, 'session', body)}"
        resp.set_cookie(COOKIE, value, max_age=SESSION_TTL, path="/console", httponly=True,
                        samesite="Strict", secure=request.secure)
        resp.del_cookie(LOGIN_COOKIE, path="/console")

    def clear(self, resp: web.StreamResponse) -> None:
        resp.del_cookie(COOKIE, path="/console")

    def viewer(self, request: web.Request) -> Viewer | None:
        """The request's session, when its cookie is ours, current, and its person may
        still come in (the account exists, is enabled, the address is allowed and not
        banned; the credential has not changed)."""
        value = request.cookies.get(COOKIE)
        if not value or value.count(".") != 1 or len(value) > 1024:
            return None
        body, mac = value.split(".")
        if not hmac.compare_digest(mac, _mac(self.secret, "session", body)):
            return None
        try:
            p = json.loads(_unb64(body))
            operator, sid, expires, nonce, fp = bool(p["o"]), str(p["u"]), int(p["e"]), str(p["n"]), str(p["f"])
        except (ValueError, KeyError, TypeError):
            return None
        now = time.time()
        if expires < now:
            return None
        server, ip = self.server, request.remote or ""
        if server.book.check_ip(ip, now) is not None:
            return None
        account = None
        if not operator:
            account = server.book.get(sid)
            if account is None or not account.settings.enabled or (
                    account.settings.allowed_ips and not ip_allowed(ip, account.settings.allowed_ips)):
                return None
        expected = fingerprint(server, operator, account, sid)
        if expected is None or not hmac.compare_digest(fp, expected):
            return None
        return Viewer(operator, account, nonce, _mac(self.secret, "csrf", nonce)[:32],
                      sid if operator else OPERATOR)

    # ------------------------------------------------------------ CSRF
    def login_token(self, request: web.Request) -> tuple[str, str | None]:
        """The login form's CSRF token, tied to a nonce cookie; and the nonce to set
        (``set_login_nonce``) when the browser has none yet."""
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        fresh = None
        if not (len(nonce) == 32 and all(c in "0123456789abcdef" for c in nonce)):
            nonce = fresh = secrets.token_hex(16)
        return _mac(self.secret, "login", nonce)[:32], fresh

    @staticmethod
    def set_login_nonce(request: web.Request, resp: web.StreamResponse, nonce: str | None) -> None:
        if nonce is not None:
            resp.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, path="/console", httponly=True,
                            samesite="Strict", secure=request.secure)

    def login_token_ok(self, request: web.Request, token: str) -> bool:
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        return bool(nonce) and hmac.compare_digest(token, _mac(self.secret, "login", nonce)[:32])


def csrf_ok(viewer: Viewer, token: str | None) -> bool:
    return isinstance(token, str) and hmac.compare_digest(token.encode(), viewer.csrf.encode())


def operator_token_ok(server: Server, password: str) -> bool:
    token = (server.cfg.get("admin") or {}).get("token")
    return bool(token) and hmac.compare_digest(password.encode(), str(token).encode())
