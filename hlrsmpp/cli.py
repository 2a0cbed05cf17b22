"""The ``hlrsmpp`` command."""
from __future__ import annotations

import argparse
import asyncio
import copy
import getpass
import os
import sys

from . import config as config_mod


def _run(coro):
    try:
        import uvloop  # the faster loop where installed
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


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
    if args.reuse_port:
        overrides.setdefault("smpp", {})["reuse_port"] = True
        overrides.setdefault("http", {})["reuse_port"] = True
    cfg = config_mod.load(args.config, overrides)
    configure(cfg["log"]["format"], cfg["log"]["level"])
    # Everything the server creates (the SQLite files, cleaning jobs, traces) is the
    # operator's alone: files 0600, directories 0700.
    os.umask(0o077)
    if args.workers != 1:
        from .redis.workers import supervise  # N processes share state in Redis
        return supervise(cfg, args)
    try:
        return _run(serve(cfg)) or 0
    except config_mod.ConfigError as err:
        # Logging is set up: the reason is one log line (JSON for a container), no traceback.
        import structlog
        structlog.get_logger("hlrsmpp").error("start_failed", error=str(err))
        return 2


def cmd_migrate(args) -> int:
    from .tools import command

    def run(args) -> int:
        from .postgres.migrate import command as migrate  # only shared deployments need asyncpg
        return migrate(args)
    return command("migrate", run)(args)


class _ShowDefaults(argparse.HelpFormatter):
    """--help shows every option's default, unless its text already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default in (None, False, argparse.SUPPRESS) or text == argparse.SUPPRESS
                or "default" in text or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"

    def _format_action(self, action):
        if not action.help and action.option_strings and action.default not in (None, False):
            action = copy.copy(action)   # an option without text still shows its default
            action.help = "default: %(default)s"
        return super()._format_action(action)


class _Parser(argparse.ArgumentParser):
    """Every subcommand's parser (subparsers make their parsers of this class)."""

    def __init__(self, *args, **kw):
        kw.setdefault("formatter_class", _ShowDefaults)
        super().__init__(*args, **kw)


def cmd_hash_password(args) -> int:
    """Print the hash of a password for an account's ``password_hash`` in the YAML, or
    an operator's in ``admin.users``."""
    from .accounts.passwords import OPERATOR_PASSWORD_MIN, hash_password
    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("hlrsmpp: the two passwords differ", file=sys.stderr)
            return 1
    if args.operator:
        if not OPERATOR_PASSWORD_MIN <= len(password) <= 256:
            print(f"hlrsmpp: an operator's password has {OPERATOR_PASSWORD_MIN} to 256 characters", file=sys.stderr)
            return 1
    elif len(password) > 8:
        print("hlrsmpp: an SMPP password has at most 8 characters (--operator: a console operator's, "
              "longer)", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hlrsmpp", description="SMPP 3.4 HLR lookup server")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the SMPP and HTTP server")
    s.add_argument("--config", "-c", help="YAML config file (default: built-in defaults)")
    s.add_argument("--smpp-port", type=int, help="SMPP port (default: the config's smpp.port, 2775)")
    s.add_argument("--http-port", type=int, help="HTTP port (default: the config's http.port, 8080)")
    s.add_argument("--data", help="storage directory (default: the config's storage.path, ./data)")
    s.add_argument("--workers", type=int, default=1,
                   help="N server processes on the same ports (SO_REUSEPORT); needs storage.redis")
    s.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # a --workers child
    s.set_defaults(func=cmd_serve)
    h = sub.add_parser("hash-password", help="print a password's hash, for password_hash in the YAML "
                       "(an account's, or an operator's in admin.users)")
    h.add_argument("--stdin", action="store_true", help="read the password from the first line of stdin "
                   "(default: ask twice, without echo)")
    h.add_argument("--operator", action="store_true", help="the password of a console operator "
                   "(admin.users): 12 to 256 characters, where an SMPP password has at most 8")
    h.set_defaults(func=cmd_hash_password)
    m = sub.add_parser("migrate", help="make or upgrade a shared deployment's PostgreSQL schema; "
                       "optionally move a SQLite store into it")
    m.add_argument("--config", "-c", required=True,
                   help="YAML config of the shared deployment (storage.redis and storage.postgres)")
    m.add_argument("--from-sqlite", metavar="DIR",
                   help="a SQLite store's directory (the old storage.path): its accounts, history and "
                   "ledger move into the shared deployment, audited; stop the servers using it first")
    m.set_defaults(func=cmd_migrate)
    from .tools import add_parsers as add_tools   # lookup, clean, accounts, history
    add_tools(sub)
    try:
        from .bench.load import add_parser as add_bench
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
