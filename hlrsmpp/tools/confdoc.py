"""Generate docs/configuration.md from the configuration model.

Sources, so the reference cannot drift from the code:

- ``hlrsmpp/config.py``: ``DEFAULTS`` (keys and default values) and the comment on
  each key's line (its description), ``_ENV`` (environment overrides);
- ``hlrsmpp/accounts/policy.py``: ``ACCOUNT_KEYS``, ``LIMIT_KEYS``, ``PACKAGE_KEYS``
  and the ``Account``/``Limits`` defaults;
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
import dataclasses
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
    "log.format": "`json`, `console`, or `auto` (console on a terminal, JSON otherwise)",
    "log.level": "`debug`, `info`, `warning` or `error`",
    "accounts": "the accounts (section below); more can be created at run time over the admin API",
}

#: Keys not in DEFAULTS that the code accepts.
EXTRA_KEYS = {
    "storage.redis": ("(unset)", "`{url: redis://host:6379/0}`: share state across processes "
                                 "and hosts instead of SQLite (docs/scaling.md)"),
}

ACCOUNT_DOCS = {
    "system_id": ("(required)", "SMPP system_id (1 to 15 characters); also the HTTP username"),
    "password": ("(required)", "SMPP password (at most 8 characters: quote digits in YAML); "
                               "stored only as a salted hash. Give it or `password_hash`"),
    "password_hash": ("(none)", "the password as a hash from `hlrsmpp hash-password`, instead of "
                                "`password`: the config file then holds no password either"),
    "system_type": (None, "system_type a bind must carry"),
    "credit": ("(unlimited)", "prepaid credit, one opening package; give `credit` or `packages`, "
                              "neither means unlimited"),
    "packages": ("(unlimited)", "prepaid packages (below), consumed oldest `bought` first"),
    "price": (None, "credit charged per accepted lookup (refunded when the HLR side fails: "
                    "err 14 to 17)"),
    "expires": ("(never)", "last day the account may be used (`YYYY-MM-DD`, in accounts_timezone); "
                           "then binds and lookups get ESME_RACCEXPIRY"),
    "coverage": ("(all)", "country calling codes the account may look up; others get ESME_RCOVERR"),
    "limits": (None, "rate and volume limits (below); over one: ESME_RTHROTTLED"),
    "allowed_ips": ("(any)", "CIDR networks binds may come from; others get ESME_RBINDFAIL"),
    "max_tx": (None, "transmitter sessions at once (the one receiver, Rx or TRx, is apart)"),
    "low_credit": (None, "log a `low_credit` warning when credit falls below this (0: never)"),
    "data_coding": ("receipts.data_coding", "data_coding of this account's receipts"),
    "enabled": (None, "false: binds refused, live sessions unbound"),
    "receipt": ("standard", "receipt profile: `standard` (the text of docs/smpp.md), `extended` (adds imsi, msc, "
                        "mccmnc) or `tlv` (adds vendor TLVs `mcc_tag`/`mnc_tag`, default "
                        "0x1401/0x1402); a name or `{profile, mcc_tag, mnc_tag}`"),
    "outbind": ("(none)", "`{host, port, system_id?, password?}`: connect out to the ESME "
                          "(SMPP outbind) to deliver receipts when it has no receiver bound"),
    "trace": (None, "PDU trace of the account's sessions: true (kept in memory, read over "
                    "the admin API) or a file path (over the API: a file NAME under "
                    "`<storage.path>/traces/`)"),
    "tls_subject": ("(none)", "the client certificate its SMPP binds must present (with "
                              "`smpp.tls.client_ca`): `CN=esme1,O=Acme` (every attribute named "
                              "must match) or a bare common name; binds without it are refused "
                              "ESME_RBINDFAIL, and so are its HTTP logins (HTTP has no client "
                              "certificate)"),
}
LIMIT_DOCS = {
    "per_day": ("(none)", "accepted lookups per calendar day"),
    "per_week": ("(none)", "per ISO week (Monday to Sunday)"),
    "per_month": ("(none)", "per calendar month"),
    "min_delay_ms": (None, "least time between two lookups (ms)"),
    "tps": ("(none)", "lookups per second, token bucket"),
    "burst": ("max(1, tps)", "token bucket depth (needs tps)"),
}
PACKAGE_DOCS = {
    "credit": ("(required)", "credit left in the package"),
    "bought": ("(opening balance)", "date bought (`YYYY-MM-DD`): older packages are used first"),
    "label": ('""', "free text, e.g. an invoice number"),
    "size": ("credit", "credit bought; refunds refill the package up to it"),
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


def _dataclass_defaults(cls) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


# ------------------------------------------------------------------- the page

def generate() -> str:
    from hlrsmpp import config
    from hlrsmpp.accounts import policy
    from hlrsmpp.hlr import resolver

    undocumented: list[str] = []
    comments = default_comments(Path(config.__file__))
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m hlrsmpp.tools.confdoc --write` from hlrsmpp/config.py,",
        "     hlrsmpp/accounts/policy.py and hlrsmpp/hlr (with docs/numbers.md). Do not edit. -->",
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
    account_defaults = _dataclass_defaults(policy.Account)
    limit_defaults = _dataclass_defaults(policy.Limits)
    lines += ["## `accounts`", "",
              "A list; each account a mapping with at least `system_id` and `password` (or "
              "`password_hash`):", "",
              "```yaml", "accounts:", "  - {system_id: demo, password: demo}   # unlimited credit",
              "  - system_id: acme", "    password: s3cret", "    credit: 100.0",
              "    coverage: [91, 44]", "    limits: {per_day: 10000, tps: 100}", "```", "",
              "| key | default | |", "|---|---|---|"]
    order = [f.name for f in dataclasses.fields(policy.Account)]
    order.insert(order.index("packages") if "packages" in order else len(order), "credit")
    keys = sorted(policy.ACCOUNT_KEYS, key=lambda k: (order.index(k) if k in order else len(order), k))
    for key in keys:
        default, text = ACCOUNT_DOCS.get(key, (None, None))
        if default is None:
            value = account_defaults.get(key)
            if key == "price":
                value = policy.from_micro(value)
            elif key == "low_credit":
                value = policy.from_micro(value)
            elif key == "limits":
                value = "(none)"
            elif key == "receipt" and isinstance(value, dict):
                value = value.get("profile")
            default = value if isinstance(value, str) and value.startswith("(") else f"`{fmt(value)}`"
        if not text:
            undocumented.append(f"accounts[].{key}")
            text = "**undocumented**"
        lines.append(f"| `{key}` | {default} | {cell(text)} |")
    lines += ["", "### `limits`", "", "| key | default | |", "|---|---|---|"]
    for key in sorted(policy.LIMIT_KEYS, key=lambda k: list(limit_defaults).index(k) if k in limit_defaults else 99):
        default, text = LIMIT_DOCS.get(key, (None, None))
        if default is None:
            default = f"`{fmt(limit_defaults.get(key))}`"
        if not text:
            undocumented.append(f"accounts[].limits.{key}")
            text = "**undocumented**"
        lines.append(f"| `{key}` | {default} | {cell(text)} |")
    lines += ["", "### `packages`", "", "A list of prepaid packages; credit is consumed "
              "from the oldest.", "", "| key | default | |", "|---|---|---|"]
    for key in sorted(policy.PACKAGE_KEYS, key=lambda k: list(PACKAGE_DOCS).index(k) if k in PACKAGE_DOCS else 99):
        default, text = PACKAGE_DOCS.get(key, ("", None))
        if not text:
            undocumented.append(f"accounts[].packages[].{key}")
            text = "**undocumented**"
        lines.append(f"| `{key}` | {default} | {cell(text)} |")
    lines.append("")
    if undocumented:
        lines += ["## Undocumented", "", "Keys the code accepts that nothing describes yet:", ""]
        lines += [f"- `{k}`" for k in undocumented] + [""]
    return "\n".join(lines)


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
