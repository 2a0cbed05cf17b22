"""``hlrsmpp clean``: the command line of contact-list cleaning (its options, the progress
bar, the summary); the cleaning itself is ``hlrsmpp.cleaning``."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from ..cleaning import STYLES, CleanJob, detect_layout
from . import ToolError, command


# ------------------------------------------------------------------ the command

class ProgressBar:
    """A one-line bar on stderr, only on a terminal."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.t0 = time.monotonic()

    def __call__(self, p: dict) -> None:
        if not self.enabled:
            return
        frac = p["fraction"]
        width = 30
        done = int(frac * width)
        rows = p["counts"]["total"]
        rate = rows / max(time.monotonic() - self.t0, 1e-6)
        self.stream.write(f"\r[{'#' * done}{'.' * (width - done)}] {frac * 100:5.1f}%  "
                          f"{rows:,} rows  {rate:,.0f} rows/s ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 72 + "\r")
            self.stream.flush()


def summary(report: dict) -> str:
    c = report["counts"]
    lines = [f"{report['file']}: {report['mode']} clean {report['status']} in {report['duration_s']:.1f}s",
             f"  rows            {c['total']:>10,}",
             f"  kept            {c['kept']:>10,}",
             f"  removed         {c['removed']:>10,}",
             f"    duplicates    {c['duplicates']:>10,}",
             f"    invalid       {c['invalid_syntax']:>10,}",
             f"    empty         {c['empty']:>10,}"]
    if report["mode"] == "premium":
        lines.append(f"    HLR invalid   {c['dropped_hlr']:>10,}")
        lines.append(f"  looked up       {c['looked_up']:>10,}  (charged to {report.get('account', '?')})")
        for code, e in report["err"].items():
            lines.append(f"    err {code} {e['name'] or 'OK':<28} {e['count']:>8,}  "
                         f"{'kept' if e['kept'] else 'removed'}")
        for name, n in report["refused"].items():
            lines.append(f"    refused {name:<25} {n:>8,}")
        if c["no_receipt"]:
            lines.append(f"    no receipt (kept)               {c['no_receipt']:>8,}")
    if report.get("output"):
        lines.append(f"  cleaned file    {report['output']}")
    if report.get("original"):
        lines.append(f"  original kept   {report['original']}")
    lines.append(f"  report          {report['report']}")
    lines.append(f"  peak memory     {report['peak_rss_mb']} MB")
    return "\n".join(lines)


def _connection(args) -> tuple[dict, str, int, str | None]:
    """(config, SMPP host, port, the account's password from the config)"""
    from .. import config as config_mod
    try:
        cfg = config_mod.load(args.config)
    except config_mod.ConfigError as err:
        raise ToolError(str(err)) from None
    host = args.host or cfg["smpp"]["host"]
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    port = args.port if args.port is not None else cfg["smpp"]["port"]
    password = None
    for acc in cfg["accounts"] if args.config else ():
        if acc.get("system_id") == args.account:
            password = str(acc.get("password"))
    return cfg, host, port, password


def _resolver(cfg: dict):
    from ..hlr import Resolver
    hlr = {k: v for k, v in (cfg.get("hlr") or {}).items() if k == "tables"}
    try:
        return Resolver.from_config(dict(hlr, warm=False), Path(cfg["base_dir"]))
    except (OSError, ValueError) as err:
        raise ToolError(f"cannot load the numbering tables: {err}") from None


async def run_clean(args) -> int:
    cfg, host, port, cfg_password = _connection(args)
    resolver = _resolver(cfg)
    checker = None
    info: dict = {}
    if args.premium:
        if not args.account:
            raise ToolError("--premium needs --account (the account charged per contact)")
        password = args.password if args.password is not None else (
            os.environ.get("HLRSMPP_PASSWORD") or cfg_password)
        if password is None:
            raise ToolError(f"--premium needs the password of account {args.account!r} "
                            "(--password, HLRSMPP_PASSWORD, or --config with that account)")
        detect_layout(Path(args.file), args.format, args.delimiter, args.column, args.encoding)
        from .lookup_client import HlrClient
        checker = await HlrClient.open(host, port, args.account, password, args.system_type,
                                       window=args.window, timeout=args.timeout)
        info = {"account": args.account, "server": f"{host}:{port}"}
    bar = ProgressBar() if not args.quiet else None
    job = CleanJob(args.file, resolver, checker=checker, output=args.output, report=args.report,
                   fmt=args.format, delimiter=args.delimiter, column=args.column, style=args.style,
                   drop_absent=args.drop_absent, encoding=args.encoding, on_progress=bar, info=info)
    try:
        report = await job.run()
    finally:
        if bar is not None:
            bar.close()
        if checker is not None:
            await checker.close()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(summary(report))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "clean", help="clean a contact list: duplicates and syntax (free) or HLR validity (premium)",
        description="Clean a CSV with a 'numbers' column (other columns kept) or a text file with one "
                    "international number a line. The cleaned file replaces FILE; the original is kept "
                    "as FILE.orig-YYYYmmddHHMMSS and a JSON report is written beside it. "
                    "See docs/cli.md.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--premium", action="store_true",
                   help="also look every number up on the server, charged per contact to --account")
    p.add_argument("--account", metavar="ID", help="premium: the account (system_id) charged")
    p.add_argument("--password", help="premium: its password (or HLRSMPP_PASSWORD, or from --config)")
    p.add_argument("--system-type", default="HLR")
    p.add_argument("--host", help="premium: SMPP server (default: --config's smpp.host, else 127.0.0.1)")
    p.add_argument("--port", type=int, help="premium: SMPP port (default: --config's smpp.port, "
                                            "else $HLRSMPP_SMPP_PORT, else 2775)")
    p.add_argument("--config", "-c", metavar="FILE",
                   help="the server's YAML config: SMPP address, numbering tables, account password")
    p.add_argument("--format", choices=("auto", "csv", "text"), default="auto")
    p.add_argument("--delimiter", help="CSV delimiter (default: the one among , ; tab | that makes "
                                       "a numbers column of the header)")
    p.add_argument("--column", default="numbers", help="name of the numbers column (default: numbers)")
    p.add_argument("--encoding", help="file encoding (default: UTF-8, with or without BOM)")
    p.add_argument("--style", choices=STYLES, default="digits",
                   help="how kept numbers are written: digits (E.164 without '+', the default), "
                        "plus (+E.164), keep (as they were written)")
    p.add_argument("--drop-absent", action="store_true",
                   help="premium: also remove absent subscribers (err 011, switched off)")
    p.add_argument("--output", "-o", metavar="OUT",
                   help="write the cleaned file to OUT and leave FILE as it is")
    p.add_argument("--report", metavar="PATH", help="where the JSON report goes "
                                                    "(default: FILE.report-YYYYmmddHHMMSS.json)")
    p.add_argument("--window", type=int, default=256, help="premium: lookups in flight (default 256)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="premium: seconds to wait for a receipt (then the number is kept, unverified)")
    p.add_argument("--json", action="store_true", help="print the JSON report instead of the summary")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=command("clean", run_clean))
