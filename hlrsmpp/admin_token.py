"""The admin token when the configuration gives none: created at the first start in the
data directory (mode 0600), read back at every later start, and found there by the
``hlrsmpp accounts``/``history`` commands run from the same directory. So the admin API
is on from the first ``make run``, with a secret nobody chose badly and only this
machine's user can read.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

#: The file in the data directory (``storage.path``); the default of ``admin.token_file``.
TOKEN_FILE = "admin_token"


def token_path(cfg: dict) -> Path | None:
    """Where this configuration keeps a generated token; None when it does not (a token
    is configured, ``admin.token_file`` is empty, or the store is shared on Redis: the
    processes of a deployment must agree on one token, so the operator gives it)."""
    admin, storage = cfg.get("admin") or {}, cfg.get("storage") or {}
    name = admin.get("token_file")
    if admin.get("token") or not name or storage.get("redis"):
        return None
    return Path(storage.get("path") or ".") / name


def read(path: Path) -> str | None:
    """The token in ``path``, or None when there is no such file."""
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        return None
    return token or None


def ensure(path: Path) -> tuple[str, bool]:
    """(the token in ``path``, created now?): an existing file is kept, else a new random
    token is written, readable by this user only."""
    token = read(path)
    if token is not None:
        return token, False
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    return token, True


def local_token(environ: dict | None = None) -> tuple[str, Path] | None:
    """For the command line: the token a server started from this directory generated
    (``$HLRSMPP_STORAGE_PATH`` or ``./data``, the default data directory)."""
    env = os.environ if environ is None else environ
    path = Path(env.get("HLRSMPP_STORAGE_PATH") or "data") / TOKEN_FILE
    try:
        token = read(path)
    except OSError:   # not ours to read: as if absent
        return None
    return (token, path) if token else None
