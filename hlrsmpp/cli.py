"""The ``hlrsmpp`` command."""
from __future__ import annotations

import argparse
import asyncio
import sys

from . import config as config_mod


def _run(coro) -> None:
    try:
        import uvloop  # the faster loop where installed
        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


def cmd_serve(args) -> int:
    from .log import configure
    from .server.app import serve
    overrides: dict = {}
    if args.smpp_port is not None:
        overrides.setdefault("smpp", {})["port"] = args.smpp_port
    if args.http_port is not None:
        overrides.setdefault("http", {})["port"] = args.http_port
    if args.data is not None:
        overrides.setdefault("storage", {})["path"] = args.data
    cfg = config_mod.load(args.config, overrides)
    configure(cfg["log"]["format"], cfg["log"]["level"])
    _run(serve(cfg))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hlrsmpp", description="SMPP 3.4 HLR lookup server")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the SMPP and HTTP server")
    s.add_argument("--config", "-c", help="YAML config file (default: built-in defaults)")
    s.add_argument("--smpp-port", type=int)
    s.add_argument("--http-port", type=int)
    s.add_argument("--data", help="storage directory (SQLite)")
    s.set_defaults(func=cmd_serve)
    from .tools import add_parsers as add_tools   # lookup, clean, accounts, history
    add_tools(sub)
    try:
        from .bench import add_parser as add_bench
        add_bench(sub)
    except ImportError:
        pass
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except config_mod.ConfigError as err:
        print(f"hlrsmpp: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
