"""``hlrsmpp accounts`` and ``hlrsmpp history``: the operator's admin API
(/api/v1/, ``Authorization: Bearer <admin.token>``) from the command line.

Every command takes ``--url`` (default $HLRSMPP_URL, else http://127.0.0.1:8080) and
``--token`` (default $HLRSMPP_ADMIN_TOKEN).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .. import admin_token
from . import ToolError, atomic_file, command
from .lookup_client import format_table

DEFAULT_URL = "http://127.0.0.1:8080"


class AdminApi:
    """A small blocking client of the JSON admin API."""

    refused = "admin token refused: {message} (--token or HLRSMPP_ADMIN_TOKEN)"

    def __init__(self, url: str | None, token: str | None, timeout: float = 30.0):
        self.url = (url or os.environ.get("HLRSMPP_URL") or DEFAULT_URL).rstrip("/")
        if "://" not in self.url:
            self.url = "http://" + self.url
        self.timeout = timeout
        self.authorization = self._authorization(token)

    def _authorization(self, token: str | None) -> str:
        self.token = token or os.environ.get("HLRSMPP_ADMIN_TOKEN")
        if not self.token and (found := admin_token.local_token()) is not None:
            self.token = found[0]   # the one a server started here generated
        if not self.token:
            raise ToolError("no admin token: give --token or set HLRSMPP_ADMIN_TOKEN "
                            f"(the server's admin.token), or run from the directory holding "
                            f"data/{admin_token.TOKEN_FILE}")
        return f"Bearer {self.token}"

    def open(self, method: str, path: str, query: dict | None = None, body: dict | None = None):
        """The HTTP response (a file-like object) of a request that succeeded."""
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": self.authorization, "Accept": "application/json",
            **({"Content-Type": "application/json"} if data is not None else {})})
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as err:
            # 400: an option the API refuses (a bad --since...): the command could not run.
            raise ToolError(self._error_line(err), 2 if err.code == 400 else 1) from None
        except urllib.error.URLError as err:
            reason = err.reason
            reason = getattr(reason, "strerror", None) or str(reason)
            raise ToolError(f"cannot reach the admin API at {self.url}: {reason} "
                            "(is `hlrsmpp serve` running, with its HTTP port there?)") from None
        except (socket.timeout, TimeoutError):
            raise ToolError(f"the admin API at {self.url} did not answer within {self.timeout:g}s") from None
        except ValueError as err:   # a URL urllib cannot use
            raise ToolError(f"bad --url {self.url!r}: {err}") from None

    def call(self, method: str, path: str, query: dict | None = None, body: dict | None = None):
        with self.open(method, path, query, body) as resp:
            raw = resp.read()
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            raise ToolError(f"{self.url}{path}: the answer is not JSON (is --url the hlrsmpp "
                            "HTTP port?)") from None

    def _error_line(self, err: urllib.error.HTTPError) -> str:
        try:
            message = json.loads(err.read() or b"{}")["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = err.reason
        if err.code == 401:
            return self.refused.format(message=message)
        if err.code == 404 and not str(message).startswith("no "):
            return f"{self.url}: not found: {message} (is --url the hlrsmpp HTTP port?)"
        return f"{message} (HTTP {err.code})"


def _quote(system_id: str) -> str:
    return urllib.parse.quote(system_id, safe="")


# ------------------------------------------------------------------ accounts

def _credit(acc: dict) -> str:
    return "unlimited" if acc.get("unlimited") else str(acc.get("credit"))


def accounts_list(args) -> int:
    api = AdminApi(args.url, args.token)
    accounts = api.call("GET", "/api/v1/accounts")["accounts"]
    if args.json:
        print(json.dumps(accounts, indent=2))
        return 0
    rows = [[a["system_id"], "yes" if a.get("enabled", True) else "no", _credit(a), str(a.get("price", "")),
             a.get("expires", "") or "", ",".join(a.get("coverage", []) or []) or "all",
             str((a.get("counters") or {}).get("day", "")), str(a.get("receipts_queued", ""))]
            for a in accounts]
    print(format_table(rows, ["SYSTEM_ID", "ENABLED", "CREDIT", "PRICE", "EXPIRES", "COVERAGE",
                              "TODAY", "QUEUED"]))
    return 0


def _show(acc: dict, ledger: list | None = None) -> str:
    lines = []
    for key, value in acc.items():
        if key in ("packages", "unlimited"):
            continue
        if key == "credit":
            value = _credit(acc)
        elif key == "auto_recharge":
            value = _auto_recharge(value)
        elif isinstance(value, (dict, list)):
            value = json.dumps(value)
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        lines.append(f"{key + ':':<17} {value}")
    for p in acc.get("packages") or []:
        lines.append(f"{'package:':<17} {json.dumps(p)}")
    if ledger is not None:
        lines.append("ledger:")
        for e in ledger:
            lines.append(f"  {e['at']}  {e['kind']:<8} {e['amount']:>12}  {e.get('note', '')}".rstrip())
    return "\n".join(lines)


def _auto_recharge(ar: dict | None) -> str:
    if not ar:
        return "off"
    text = f"adds {ar['add']} when credit falls below {ar['below']}, at most {ar['max_per_month']} a month"
    return text + (f" ({ar['this_month']} in {ar['month']})" if "this_month" in ar else "")


def accounts_show(args) -> int:
    api = AdminApi(args.url, args.token)
    acc = api.call("GET", f"/api/v1/accounts/{_quote(args.system_id)}")
    ledger = None
    if args.ledger:
        ledger = api.call("GET", f"/api/v1/accounts/{_quote(args.system_id)}/ledger")["entries"]
    if args.json:
        print(json.dumps(dict(acc, ledger=ledger) if ledger is not None else acc, indent=2))
    else:
        print(_show(acc, ledger))
    return 0


def accounts_create(args) -> int:
    api = AdminApi(args.url, args.token)
    body: dict = {"system_id": args.system_id, "password": args.password}
    for key in ("credit", "price", "system_type", "expires", "max_tx", "low_credit"):
        value = getattr(args, key)
        if value is not None:
            body[key] = value
    if args.coverage is not None:
        body["coverage"] = [c.strip() for c in args.coverage.split(",") if c.strip()]
    if args.allowed_ips is not None:
        body["allowed_ips"] = [c.strip() for c in args.allowed_ips.split(",") if c.strip()]
    limits = {k: getattr(args, k) for k in ("per_day", "per_week", "per_month", "min_delay_ms", "tps")
              if getattr(args, k) is not None}
    if limits:
        body["limits"] = limits
    acc = api.call("POST", "/api/v1/accounts", body=body)
    if args.json:
        print(json.dumps(acc, indent=2))
    else:
        print(f"account {acc['system_id']} created, credit {_credit(acc)}")
    return 0


def accounts_top_up(args) -> int:
    api = AdminApi(args.url, args.token)
    body = {"credit": args.amount}
    if args.note:
        body["note"] = args.note
    if args.bought:
        body["bought"] = args.bought
    out = api.call("POST", f"/api/v1/accounts/{_quote(args.system_id)}/top-up", body=body)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"account {args.system_id} topped up by {args.amount}: credit {_credit(out['account'])}")
    return 0


def _set_enabled(args, enabled: bool) -> int:
    api = AdminApi(args.url, args.token)
    acc = api.call("POST", f"/api/v1/accounts/{_quote(args.system_id)}/{'enable' if enabled else 'disable'}")
    if args.json:
        print(json.dumps(acc, indent=2))
    else:
        print(f"account {acc['system_id']} {'enabled' if enabled else 'disabled'}")
    return 0


# ------------------------------------------------------------------ me (an account)

class AccountApi(AdminApi):
    """The JSON API as one account, with its own credentials (HTTP Basic)."""

    refused = ("credentials refused: {message} (--system-id and --password, or HLRSMPP_SYSTEM_ID "
               "and HLRSMPP_PASSWORD)")

    def __init__(self, url: str | None, system_id: str | None, password: str | None):
        self.credentials = (system_id or os.environ.get("HLRSMPP_SYSTEM_ID"),
                            password if password is not None else os.environ.get("HLRSMPP_PASSWORD"))
        super().__init__(url, None)

    def _authorization(self, token: str | None) -> str:
        system_id, password = self.credentials
        if not system_id or password is None:
            raise ToolError("no credentials: give --system-id and --password, or set HLRSMPP_SYSTEM_ID "
                            "and HLRSMPP_PASSWORD", 2)
        return "Basic " + base64.b64encode(f"{system_id}:{password}".encode()).decode()


def me(args) -> int:
    api = AccountApi(args.url, args.system_id, args.password)
    if args.stats:
        out = api.call("GET", "/api/v1/me/stats", {"by": args.stats, "since": args.since, "until": args.until})
        if args.json:
            print(json.dumps(out, indent=2))
            return 0
        cols = {"day": ["day"], "country": ["country"], "network": ["network", "network_name"],
                "status": ["status", "err", "error"]}[args.stats]
        rows = [[str(i[c]) for c in cols] + [str(i["lookups"]), i["cost"]] for i in out["items"]]
        rows.append(["total"] + [""] * (len(cols) - 1) + [str(out["total"]["lookups"]), out["total"]["cost"]])
        print(format_table(rows, [c.upper() for c in cols] + ["LOOKUPS", "COST"]))
        return 0
    acc = api.call("GET", "/api/v1/me")
    if args.json:
        print(json.dumps(acc, indent=2))
    else:
        print(_show(dict(acc, unlimited=acc.get("credit") is None)))
    return 0


# ------------------------------------------------------------------ history

HISTORY_HEADER = ["ID", "SUBMITTED", "ACCOUNT", "NUMBER", "STATUS", "ERR", "NETWORK", "NETWORK_NAME",
                  "PORTED", "ROAMING", "COST"]


def _history_row(v: dict) -> list[str]:
    err = v.get("err")
    err_text = "" if err is None else f"{err:03d} {v.get('error') or ''}".strip()
    visited = "/".join(x for x in (v.get("r_cc"), v.get("r_nnc")) if x)
    roaming = f"yes {visited} {v.get('r_nnc_name') or ''}" if v.get("roaming") else "no"
    return [v["id"], v["submitted"], v["account"], v["number"], v["status"], err_text,
            v.get("network") or "", v.get("network_name") or "", "yes" if v.get("ported") else "no",
            roaming.strip(), str(v["cost"])]


#: The history's filters (those of GET /api/v1/history): option, metavar, what it keeps.
HISTORY_FILTERS = (("status", "STAT", "lookups of this result: DELIVRD, UNDELIV or ENROUTE"),
                   ("err", "CODE", "this error code"),
                   ("cc", "CODE", "numbers of this country calling code"),
                   ("network", "MCCMNC", "this network (the ported-to one when ported)"),
                   ("prefix", "DIGITS", "numbers starting with these digits"))


def history(args) -> int:
    api = AdminApi(args.url, args.token)
    query = {"account": args.account, "since": args.since, "until": args.until,
             **{name: getattr(args, name) for name, _, _ in HISTORY_FILTERS}}
    if args.csv:
        query["format"] = "csv"
        if args.limit:
            query["limit"] = args.limit
        return _history_csv(api, query, args.csv)
    items: list[dict] = []
    after = "0"
    want = args.limit or 100
    while len(items) < want:   # the table: the newest first
        page = api.call("GET", "/api/v1/history",
                        dict(query, after=after, limit=min(1000, want - len(items)), order="desc"))
        items.extend(page["items"])
        if not page.get("next"):
            break
        after = page["next"]
    if args.json:
        print(json.dumps(items, indent=2))
    else:
        print(format_table([_history_row(v) for v in items], HISTORY_HEADER))
        if len(items) == want:
            sys.stdout.flush()   # the note follows the table on a shared terminal or file
            print(f"(first {want}; --limit N for more, --csv FILE for everything)", file=sys.stderr)
    return 0


def _history_csv(api: AdminApi, query: dict, dest: str) -> int:
    """Stream the CSV export to ``dest`` ('-': stdout), atomically for a file."""
    def copy(out) -> int:
        lines = 0
        for chunk in iter(lambda: resp.read(65536), b""):
            lines += chunk.count(b"\n")
            out.write(chunk)
        return lines

    with api.open("GET", "/api/v1/history", query) as resp:
        if dest == "-":
            copy(sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            try:
                with atomic_file(Path(dest), "wb") as out:
                    rows = copy(out)
            except OSError as err:
                raise ToolError(f"{dest}: {err.strerror or err}") from None
            print(f"{max(rows - 1, 0)} lookup(s) written to {dest}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------ parsers

def _api_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("admin API")
    g.add_argument("--url", help=f"the server's HTTP address (default $HLRSMPP_URL, else {DEFAULT_URL})")
    g.add_argument("--token", help="admin token (default $HLRSMPP_ADMIN_TOKEN)")
    g.add_argument("--json", action="store_true", help="print the API's JSON")
    return p


def add_parsers(sub) -> None:
    common = _api_options()
    acc = sub.add_parser("accounts", help="list, show, create, top up, enable or disable accounts "
                                          "(admin API)")
    asub = acc.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = asub.add_parser("list", parents=[common], help="every account, its credit and usage")
    p.set_defaults(func=command("accounts list", accounts_list))

    p = asub.add_parser("show", parents=[common], help="one account's settings and credit")
    p.add_argument("system_id", metavar="ID")
    p.add_argument("--ledger", action="store_true", help="also list its credit ledger")
    p.set_defaults(func=command("accounts show", accounts_show))

    p = asub.add_parser("create", parents=[common], help="create an account (no --credit: unlimited)")
    p.add_argument("system_id", metavar="ID")
    p.add_argument("--password", required=True)
    p.add_argument("--credit", help="prepaid credit (without it the account's credit is unlimited)")
    p.add_argument("--price", help="credit per lookup (default 0.1)")
    p.add_argument("--system-type", dest="system_type")
    p.add_argument("--expires", help="last day of use, YYYY-MM-DD")
    p.add_argument("--coverage", help="country calling codes, comma separated (default: all)")
    p.add_argument("--allowed-ips", help="CIDRs, comma separated (default: any)")
    p.add_argument("--max-tx", type=int, dest="max_tx")
    p.add_argument("--low-credit", dest="low_credit", help="low-credit alert threshold")
    for name in ("per-day", "per-week", "per-month", "min-delay-ms", "tps"):
        p.add_argument(f"--{name}", type=int, dest=name.replace("-", "_"), help=f"limit: {name}")
    p.set_defaults(func=command("accounts create", accounts_create))

    p = asub.add_parser("top-up", parents=[common], help="add a prepaid package of credit")
    p.add_argument("system_id", metavar="ID")
    p.add_argument("amount", metavar="AMOUNT", help="credit to add, e.g. 50 or 12.5")
    p.add_argument("--note", help="a note kept in the ledger")
    p.add_argument("--bought", help="purchase date of the package, YYYY-MM-DD (default today)")
    p.set_defaults(func=command("accounts top-up", accounts_top_up))

    for action, enabled in (("disable", False), ("enable", True)):
        p = asub.add_parser(action, parents=[common],
                            help=f"{action} an account" + (" (its sessions are unbound)" if not enabled else ""))
        p.add_argument("system_id", metavar="ID")
        p.set_defaults(func=command(f"accounts {action}", lambda a, e=enabled: _set_enabled(a, e)))

    p = sub.add_parser("me", help="an account's own credit, usage and limits, or its statistics "
                                  "(its own credentials)")
    p.add_argument("--url", help=f"the server's HTTP address (default $HLRSMPP_URL, else {DEFAULT_URL})")
    p.add_argument("--system-id", dest="system_id", help="the account (default $HLRSMPP_SYSTEM_ID)")
    p.add_argument("--password", help="its password (default $HLRSMPP_PASSWORD)")
    p.add_argument("--stats", choices=("day", "country", "network", "status"),
                   help="its lookups and cost by day, country, network or status")
    p.add_argument("--since", metavar="DAY", help="--stats from this day, YYYY-MM-DD (default 30 days ago)")
    p.add_argument("--until", metavar="DAY", help="--stats before this day, YYYY-MM-DD (default tomorrow)")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.set_defaults(func=command("me", me))

    p = sub.add_parser("history", parents=[common], help="the lookup history (admin API), or its CSV export")
    p.add_argument("--account", metavar="ID", help="one account's lookups (default: all)")
    p.add_argument("--since", metavar="DATE", help="from this date/time (ISO 8601, UTC) or epoch seconds")
    p.add_argument("--until", metavar="DATE", help="before this date/time (ISO 8601, UTC) or epoch seconds")
    for name, meta, what in HISTORY_FILTERS:
        p.add_argument(f"--{name}", metavar=meta, help=f"only {what}")
    p.add_argument("--limit", type=int, help="at most this many lookups (table default 100; CSV: all)")
    p.add_argument("--csv", metavar="FILE", help="export as CSV to FILE ('-' for stdout)")
    p.set_defaults(func=command("history", history))
