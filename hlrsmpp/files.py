"""Crash-safe file replacement, for the cleaned lists, their reports and the tools' outputs."""
from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Callable


@contextmanager
def atomic_file(path: Path, mode: str = "w", before_replace: Callable[[Path], None] | None = None,
                **kw):
    """Write a file beside ``path``; once the block ends, fsync it, call
    ``before_replace(tmp)``, rename it over ``path`` and fsync the directory. If anything
    fails, nothing is left behind and ``path`` is untouched."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, mode, **kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)   # the rename itself survives a crash
    except OSError:
        pass
    finally:
        os.close(fd)
