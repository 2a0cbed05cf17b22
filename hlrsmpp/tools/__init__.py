"""Operator tools behind the ``hlrsmpp`` command: an SMPP ESME client (``lookup``),
contact-list cleaning (``clean``), the SMS segment counter (``segments``), and the admin API
client (``accounts``, ``history``).
"""
from __future__ import annotations

from ..errors import ToolError as ToolError
from ..files import atomic_file as atomic_file


def add_parsers(sub) -> None:
    """Register the tool subcommands on the ``hlrsmpp`` subparsers."""
    from . import admin, clean, lookup_client, segments
    lookup_client.add_parser(sub)
    clean.add_parser(sub)
    segments.add_parser(sub)
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
