"""Account passwords at rest: salted scrypt hashes (the standard library's, no new
dependency), and a per-process memory of credentials already verified.

A hash reads ``scrypt$ln=14,r=8,p=1$<salt>$<key>`` (base64 without padding): 2**14
iterations of 8 blocks, 16 MiB and about 50 ms of one core per check, so a stolen data
file gives up a password only at that price per guess. Binds must stay cheap: after one
successful check, the process remembers a keyed digest (HMAC-SHA256 under a random key of
its own, never stored) of the password that passed, per account and hash, so the next
bind with that password costs one HMAC; any other password pays the full scrypt again,
which also slows guessing. Every comparison is constant-time.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Collection

#: scrypt cost: log2(N), r, p. About 50 ms and 16 MiB per check on a 2020s core.
N_LOG2, R, P = 14, 8, 1
_SALT = 16
_KEY = 32
_FORM = re.compile(r"scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]{16,})\$([A-Za-z0-9+/]{32,})")


def hash_password(password: str, n_log2: int = N_LOG2, r: int = R, p: int = P) -> str:
    """A fresh salted hash of ``password``."""
    salt = os.urandom(_SALT)
    return f"scrypt$ln={n_log2},r={r},p={p}${_b64(salt)}${_b64(_kdf(password, salt, n_log2, r, p))}"


def check_hash(encoded: str) -> str:
    """``encoded`` if it is a hash this module can verify, else ValueError."""
    if not isinstance(encoded, str) or _parse(encoded) is None:
        raise ValueError("expected a hash made by `hlrsmpp hash-password` (scrypt$ln=..,r=..,p=..$salt$key)")
    return encoded


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` is the one ``encoded`` was made of (the full scrypt)."""
    parsed = _parse(encoded)
    if parsed is None:
        return False
    n_log2, r, p, salt, key = parsed
    return hmac.compare_digest(_kdf(password, salt, n_log2, r, p), key)


class Verified:
    """Credentials this process has verified: system_id -> keyed digest of (hash,
    password). Thread-safe enough: one dict store per success, read anywhere."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._ok: dict[str, bytes] = {}

    def _tag(self, system_id: str, encoded: str, password: str) -> bytes:
        msg = b"\0".join((system_id.encode("utf-8", "surrogatepass"), encoded.encode(),
                          password.encode("utf-8", "surrogatepass")))
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def known(self, system_id: str, encoded: str, password: str) -> bool:
        """True when this password passed the full check for this hash before: cheap."""
        tag = self._ok.get(system_id)
        return tag is not None and hmac.compare_digest(tag, self._tag(system_id, encoded, password))

    def check(self, system_id: str, encoded: str, password: str) -> bool:
        """The full scrypt check (run it off the event loop); remembered when it passes."""
        if not verify_password(password, encoded):
            return False
        self.remember(system_id, encoded, password)
        return True

    def remember(self, system_id: str, encoded: str, password: str) -> None:
        self._ok[system_id] = self._tag(system_id, encoded, password)


def _kdf(password: str, salt: bytes, n_log2: int, r: int, p: int) -> bytes:
    # The GIL is released while OpenSSL works: other threads (and the loop) go on.
    return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=1 << n_log2, r=r, p=p,
                          dklen=_KEY, maxmem=256 * 1024 * 1024)


def _parse(encoded: str) -> tuple[int, int, int, bytes, bytes] | None:
    m = _FORM.fullmatch(encoded)
    if m is None:
        return None
    n_log2, r, p = int(m[1]), int(m[2]), int(m[3])
    if not (10 <= n_log2 <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
        return None
    try:
        salt, key = _unb64(m[4]), _unb64(m[5])
    except ValueError:
        return None
    return n_log2, r, p, salt, key


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode().rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)


#: The operator's own login name (with the admin token): no user of admin.users has it.
OPERATOR = "admin"
_OPERATOR_NAME = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")
#: The shortest password ``hlrsmpp hash-password --operator`` hashes.
OPERATOR_PASSWORD_MIN = 12


def parse_operators(users: object, account_ids: Collection[str]) -> dict[str, str]:
    """``admin.users`` (``[{name, password_hash}]``): name -> hash; ValueError names what
    is wrong. A name is never ``admin`` nor an account's system_id (the console's one
    login form tells them apart by the name)."""
    if not isinstance(users, list):
        raise ValueError("admin.users: expected a list of {name, password_hash}")
    out: dict[str, str] = {}
    for i, u in enumerate(users):
        where = f"admin.users[{i}]"
        if not isinstance(u, dict) or set(u) != {"name", "password_hash"}:
            raise ValueError(f"{where}: expected {{name, password_hash}} (the hash from "
                             "`hlrsmpp hash-password --operator`)")
        name = u["name"]
        if not isinstance(name, str) or not _OPERATOR_NAME.fullmatch(name) or name == OPERATOR:
            raise ValueError(f"{where}.name: 1 to 64 of A-Z a-z 0-9 _ . @ + -, not {OPERATOR!r}")
        if name in out or name in account_ids:
            raise ValueError(f"{where}.name: {name!r} is already {'an operator' if name in out else 'an account'}")
        try:
            out[name] = check_hash(u["password_hash"])
        except ValueError as err:
            raise ValueError(f"{where}.password_hash: {err}") from None
    return out
