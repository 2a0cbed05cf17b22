"""Generate docs/configuration.md from the configuration model.

Sources, so the reference cannot drift from the code:

- ``hlrsmpp/config.py``: ``DEFAULTS`` (keys and default values) and the comment on
  each key's line (its description), ``_ENV`` (environment overrides);
- ``hlrsmpp/accounts/settings.py``: the table of account keys (and of ``limits`` and
  ``packages``), each with its default and description;
- ``hlrsmpp/hlr``: the keys ``Resolver.from_config`` accepts, with the defaults of
  ``Resolver.__init__``; their descriptions are the comments of the example in
  docs/numbers.md §7 (that page is the reference for number intelligence).

Keys the code has and nothing describes are listed under "Undocumented" (a test
fails on it): describe a new key by a comment on its line in DEFAULTS, or in the
tables below.

    python -m hlrsmpp.tools.confdoc           # print
    python -m hlrsmpp.tools.confdoc --write   # rewrite docs/configuration.md
    python -m hlrsmpp.tools.confdoc --check   # exit 1 if the file is stale
"""
from __future__ import annotations

import argparse
import ast
import inspect
import io
import re
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "docs" / "configuration.md"
NUMBERS_DOC = ROOT / "docs" / "numbers.md"

#: Sections: what each is for.
SECTIONS = {
    "smpp": "The SMPP listener, its timers and limits (docs/smpp.md).",
    "http": "The HTTP listener: the AMS HLR and SMSPAY prepaid APIs, the JSON API, `/metrics`, `/healthz` (docs/http.md).",
    "prepaid": "SMSPAY-style prepaid services, `/users/hlr_prepaid.php` (docs/http.md).",
    "storage": "Where state lives: SQLite in a directory by default, or Redis "
               "(docs/operations.md, docs/scaling.md).",
    "receipts": "The deliver_sm receipts: queueing, retries, expiry, encoding (docs/smpp.md).",
    "accounts_timezone": "",
    "bans": "Temporary bans of source IPs after failed binds.",
    "hlr": "Number intelligence (docs/numbers.md).",
    "admin": "The admin (operator) part of the JSON API.",
    "log": "Logs on stderr (docs/operations.md#logs).",
    "faults": "Fault injection, to test how an ESME copes (off when empty).",
    "accounts": "The accounts (below).",
}

#: Descriptions of DEFAULTS keys that have no comment on their line in config.py.
KEYS = {
    "smpp.host": "address the SMPP listener binds (0.0.0.0: every interface)",
    "smpp.port": "SMPP port (0: any free port, logged at start-up)",
    "smpp.max_connections": "open SMPP connections at most; more are closed at once (metric "
                            "`hlrsmpp_connections_rejected_total{listener=\"smpp\"}`)",
    "smpp.max_connections_per_ip": "open SMPP connections from one IP at most",
    "http.host": "address the HTTP listener binds",
    "http.port": "HTTP port (0: any free port)",
    "http.enabled": "serve HTTP at all (false: SMPP only, no /metrics)",
    "prepaid.timeout": "seconds a prepaid request waits for its HLR answer",
    "prepaid.services": "SMSPAY-style services: `{service_id, user_id, account, format}` each (docs/http.md)",
    "storage.path": "directory of the SQLite store (`hlrsmpp.sqlite3`); relative to the working "
                    "directory",
    "storage.synchronous": "SQLite `PRAGMA synchronous` (NORMAL: durable across a process crash; "
                           "FULL: across a power cut too, slower)",
    "receipts.retry_max": "longest backoff between two deliveries of one receipt (doubling from retry_min)",
    "accounts_timezone": "time zone of the per_day/per_week/per_month calendars and of `expires`",
    "bans.after": "failed binds from one IP ...",
    "bans.window": "... within this many seconds ...",
    "bans.time": "... ban that IP (IPv6: its /64) for this many seconds (binds get ESME_RBINDFAIL); kept across restarts",
    "admin.token": "bearer token of the admin API (`HLRSMPP_ADMIN_TOKEN`); unset: the one in "
                   "`admin.token_file`",
    "admin.token_file": "without `admin.token`: the file in `storage.path` holding the token, "
                        "created at the first start (random, mode 0600, printed once on a "
                        "terminal) and read by `hlrsmpp accounts`/`history` run from the same "
                        "directory; empty, or with `storage.redis`: none, and the admin API is "
                        "off without `admin.token`",
    "admin.users": "operators of the console besides `admin`: `[{name, password_hash}]`, the hash from "
                   "`hlrsmpp hash-password --operator` (scrypt); a name is never `admin` nor an account's "
                   "system_id; they log in on `/console/login` like `admin` with the token, their failed "
                   "logins counting towards the address's ban",
    "log.format": "`json`, `console`, or `auto` (console on a terminal, JSON otherwise)",
    "log.level": "`debug`, `info`, `warning` or `error`",
    "accounts": "the accounts (section below); more can be created at run time over the admin API",
}

#: Keys not in DEFAULTS that the code accepts.
EXTRA_KEYS = {
    "storage.redis": ("(unset)", "`{url: redis://host:6379/0}`: share state across processes "
                                 "and hosts instead of SQLite (docs/scaling.md)"),
    "storage.postgres": ("(unset)", "`{dsn: postgresql://user@host/db}`: with `storage.redis`, the "
                                    "history in PostgreSQL, partitioned by day; Redis keeps only what "
                                    "is hot (docs/scaling.md)"),
}

HLR_ARG = {"sandbox": "sandbox_numbers"}   # config key -> Resolver.__init__ argument
#: hlr keys whose docs/numbers.md comment is missing or too short here: (default, text).
HLR_DOCS = {
    "mix": ("(built in)", "percentages of outcomes (absent, unknown, barred, timeout, ...) and of "
                          "ported and roaming subscribers; replaces the built-in mix whole "
                          "(docs/numbers.md §4)"),
    "rules": ("[]", "per-prefix and per-number answers, a list or the path of a YAML file "
                    "holding one (docs/numbers.md, Rules)"),
    "subscribers": ("(none)", "CSV of per-number answers `msisdn,status,err,nnc,p_nnc,r_cc,r_nnc"
                              "[,latency_ms]`, relative to the config file's directory"),
    "portability": ("(none)", "file of ported numbers and the network each is ported to, "
                              "relative to the config file's directory"),
    "tables": (None, None),
}
ENV_DOCS = {"HLRSMPP_REDIS_URL": ("storage.redis.url", "use Redis at this URL (docs/scaling.md)")}


# --------------------------------------------------------------------- sources

def default_comments(path: Path) -> dict[str, str]:
    """{"smpp.port": "comment", ...}: the comment on each DEFAULTS key's line."""
    source = path.read_text()
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    tree = ast.parse(source)
    out: dict[str, str] = {}

    def walk(node: ast.Dict, prefix: str) -> None:
        single_line = node.lineno == node.end_lineno
        for key, value in zip(node.keys, node.values):
            if not isinstance(key, ast.Constant):
                continue
            name = prefix + str(key.value)
            if isinstance(value, ast.Dict):
                walk(value, name + ".")
            elif not single_line and value.end_lineno in comments:
                out[name] = comments[value.end_lineno]

    for stmt in tree.body:
        target = getattr(stmt, "target", None) or (stmt.targets[0] if isinstance(stmt, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id == "DEFAULTS" and isinstance(stmt.value, ast.Dict):
            walk(stmt.value, "")
    return out


def numbers_doc_comments(path: Path = NUMBERS_DOC) -> dict[str, str]:
    """The comments of the ``hlr:`` example in docs/numbers.md (§ Configuration)."""
    if not path.exists():
        return {}
    text = path.read_text()
    m = re.search(r"```yaml\nhlr:\n(.*?)```", text, re.S)
    out = {}
    for line in (m.group(1) if m else "").splitlines():
        km = re.match(r"\s{2}(\w+):.*?#\s*(.+)$", line)
        if km:
            out[km.group(1)] = km.group(2).strip()
    return out


def fmt(value) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1e5:
        return f"{value:.1f}"
    if isinstance(value, (list, tuple, frozenset, set)):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for key, value in d.items():
        name = prefix + key
        if isinstance(value, dict) and value:
            out.extend(flatten(value, name + "."))
        else:
            out.append((name, value))
    return out


# ------------------------------------------------------------------- the page

def generate() -> str:
    from hlrsmpp import config
    from hlrsmpp.accounts import settings
    from hlrsmpp.hlr import resolver

    undocumented: list[str] = []
    comments = default_comments(Path(config.__file__))
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m hlrsmpp.tools.confdoc --write` from hlrsmpp/config.py,",
        "     hlrsmpp/accounts/settings.py and hlrsmpp/hlr (with docs/numbers.md). Do not edit. -->",
        "",
        "hlrsmpp reads one YAML file, `hlrsmpp serve --config FILE` ([`conf/hlrsmpp.yaml`]"
        "(../conf/hlrsmpp.yaml) is the demo). Every key is optional and has the default below; "
        "an unknown section or key is refused at start-up with one line saying which. Files "
        "named in `hlr` are relative to the config file's directory; `storage.path` to the "
        "working directory. `hlrsmpp serve --smpp-port N --http-port N --data DIR` override "
        "the matching keys.",
        "",
        "## Environment",
        "",
        "Set in the environment, these win over the file (for containers and secrets):",
        "",
        "| variable | sets |",
        "|---|---|",
    ]
    for var, (section, key, kind) in config._ENV.items():
        lines.append(f"| `{var}` | `{section}.{key}` ({kind.__name__}) |")
    for var, (key, text) in ENV_DOCS.items():
        lines.append(f"| `{var}` | `{key}`: {text} |")
    lines.append("")

    flat = dict(flatten(config.DEFAULTS))
    for section in config.DEFAULTS:
        if section in ("accounts", "hlr"):
            continue
        lines += [f"## `{section}`", ""]
        if SECTIONS.get(section):
            lines += [SECTIONS[section], ""]
        lines += ["| key | default | |", "|---|---|---|"]
        names = [n for n in flat if n == section or n.startswith(section + ".")]
        names += [n for n in EXTRA_KEYS if n.startswith(section + ".")]
        for name in names:
            if name in EXTRA_KEYS:
                default, text = EXTRA_KEYS[name]
            else:
                default, text = f"`{fmt(flat[name])}`", KEYS.get(name) or comments.get(name)
            if not text:
                undocumented.append(name)
                text = "**undocumented**"
            lines.append(f"| `{name}` | {default} | {cell(text)} |")
        lines.append("")

    # hlr
    lines += ["## `hlr`", "", SECTIONS["hlr"] + " Rules and file formats: docs/numbers.md.", "",
              "| key | default | |", "|---|---|---|"]
    hlr_text = numbers_doc_comments()
    params = inspect.signature(resolver.Resolver.__init__).parameters
    hlr_defaults = dict(config.DEFAULTS.get("hlr") or {})
    for key in sorted(resolver._CONFIG_KEYS):
        p = params.get(HLR_ARG.get(key, key))
        default, text = HLR_DOCS.get(key, (None, None))
        if default is None:
            default = f"`{fmt(hlr_defaults.get(key, p.default if p is not None else None))}`"
        text = text or hlr_text.get(key)
        if not text:
            undocumented.append(f"hlr.{key}")
            text = "**undocumented**"
        lines.append(f"| `hlr.{key}` | {default} | {cell(text)} |")
    rule_keys = getattr(__import__("hlrsmpp.hlr.rules", fromlist=["_RULE_KEYS"]), "_RULE_KEYS", ())
    if rule_keys:
        lines += ["", "A rule (`hlr.rules`) has one of `prefix`, `msisdn` and any of: "
                  + ", ".join(f"`{k}`" for k in sorted(set(rule_keys) - {"prefix", "msisdn"})) + "."]
    lines.append("")

    # accounts
    lines += ["## `accounts`", "",
              "A list; each account a mapping with at least `system_id` and `password` (or "
              "`password_hash`):", "",
              "```yaml", "accounts:", "  - {system_id: demo, password: demo}   # unlimited credit",
              "  - system_id: acme", "    password: s3cret", "    credit: 100.0",
              "    coverage: [91, 44]", "    limits: {per_day: 10000, tps: 100}", "```", ""]
    lines += _key_table(settings.doc_order(), "accounts[].", undocumented)
    lines += ["", "### `limits`", ""]
    lines += _key_table(settings.LIMIT_TABLE.values(), "accounts[].limits.", undocumented)
    lines += ["", "### `auto_recharge`", "", "Credit that adds itself (docs/http.md, Auto-recharge): "
              "`auto_recharge: {below: 10, add: 100, max_per_month: 3}`.", ""]
    lines += _key_table(settings.AUTO_RECHARGE_TABLE.values(), "accounts[].auto_recharge.", undocumented)
    lines += ["", "### `packages`", "", "A list of prepaid packages; credit is consumed "
              "from the oldest.", ""]
    lines += _key_table(settings.PACKAGE_TABLE.values(), "accounts[].packages[].", undocumented)
    lines.append("")
    if undocumented:
        lines += ["## Undocumented", "", "Keys the code accepts that nothing describes yet:", ""]
        lines += [f"- `{k}`" for k in undocumented] + [""]
    return "\n".join(lines)


def _key_table(keys, prefix: str, undocumented: list[str]) -> list[str]:
    """A table of keys from the settings table: name, default as shown, description."""
    lines = ["| key | default | |", "|---|---|---|"]
    for k in keys:
        default = k.shown if k.shown is not None else f"`{fmt(k.default)}`"
        text = k.doc
        if not text:
            undocumented.append(prefix + k.name)
            text = "**undocumented**"
        lines.append(f"| `{k.name}` | {default} | {cell(text)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hlrsmpp.tools.confdoc", description=__doc__.split("\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help=f"rewrite {OUTPUT.relative_to(ROOT)}")
    g.add_argument("--check", action="store_true", help="exit 1 if the file is not up to date")
    args = p.parse_args(argv)
    text = generate()
    if args.write:
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        OUTPUT.write_text(text)
        print(f"wrote {OUTPUT.relative_to(ROOT)}")
    elif args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(ROOT)} is stale: python -m hlrsmpp.tools.confdoc --write",
                  file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
