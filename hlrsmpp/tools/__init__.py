"""Operator tools behind the ``hlrsmpp`` command: an SMPP ESME client (``lookup``),
contact-list cleaning (``clean``), and the admin API client (``accounts``, ``history``).
"""
from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Callable


class ToolError(Exception):
    """Something the user can fix (a file, an address, a credential): printed as one
    line on stderr, exit status ``code``, never a traceback."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


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


def add_parsers(sub) -> None:
    """Register the tool subcommands on the ``hlrsmpp`` subparsers."""
    from . import admin, clean, lookup_client
    lookup_client.add_parser(sub)
    clean.add_parser(sub)
    admin.add_parsers(sub)


def command(name: str, fn):
    """The boundary of a tool command: ``fn(args)`` (a coroutine function or a plain
    one) runs; whatever goes wrong is one line on stderr and an exit status, never a
    traceback (HLRSMPP_DEBUG=1 shows it)."""
    import asyncio
    import inspect
    import os
    import sys

    def run(args) -> int:
        try:
            if inspect.iscoroutinefunction(fn):
                return asyncio.run(fn(args))
            return fn(args)
        except ToolError as err:
            sys.stdout.flush()   # what was printed before the error comes before it
            print(f"hlrsmpp {name}: {err}", file=sys.stderr)
            return err.code
        except KeyboardInterrupt:
            print(f"hlrsmpp {name}: interrupted", file=sys.stderr)
            return 130
        except Exception as err:   # a bug: still one line, the traceback on request
            if os.environ.get("HLRSMPP_DEBUG"):
                raise
            print(f"hlrsmpp {name}: unexpected error: {type(err).__name__}: {err} "
                  "(HLRSMPP_DEBUG=1 shows the traceback)", file=sys.stderr)
            return 3
    return run
