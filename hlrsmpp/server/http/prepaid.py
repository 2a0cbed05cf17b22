"""The SMSPAY prepaid API's HLR service, kept exactly: GET /users/hlr_prepaid.php.

A *service* (config ``prepaid.services``, docs/http.md) is what an SMSPAY prepaid client names
with ``user_id`` + ``service_id``. It draws on an account's credit (and obeys that
account's limits, coverage, expiry: a lookup costs and counts the same on every channel),
and has its own day/week/month/min-delay limits, source IP allowlist, enabled flag and
result format. Unknown user/service pairs count towards the server's temporary IP ban,
shared with SMPP binds and HTTP logins.
"""
from __future__ import annotations

import string
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from ...accounts import Account, AccountBook, AccountSettings, Limits, Refusal
from ...accounts.allowlist import IpNetwork, ip_allowed, parse_allowlist
from ...smpp.status import Status
from ...domain import Lookup
from .common import SERVER, TEXT, durable, template_fields, wait_done

log = structlog.get_logger("hlrsmpp.http")

# The prepaid API's answers other than a result.
BAN_IP_TEMP, INVALID_IP, INVALID_INPUT = "BAN_IP_TEMP", "INVALID_IP", "INVALID_INPUT"
SERVICE_DISABLED, INVALID_MSISDN = "SERVICE_DISABLED", "INVALID_MSISDN"
# Not in the SMSPAY prepaid API (which has no answer for it): the store refused the commit.
SYSTEM_ERROR = "SYSTEM_ERROR"

SERVICE_KEYS = frozenset({"service_id", "user_id", "account", "format", "enabled", "allowed_ips",
                          "limits", "name"})
TEMPLATE_FIELDS = frozenset({"id", "msisdn", "number", "cc", "nnc", "p_nnc", "r_cc", "r_nnc",
                             "network", "err", "error", "status", "ported", "roaming", "isPorted",
                             "isRoaming", "active", "reachable"})

#: Named formats. A mapping format answers map[field] or default.
PRESETS: dict[str, object] = {
    # The SMSPAY prepaid API's Bulgarian answer: the network a number is ported to (MCC 284).
    "bg_port": {"field": "p_nnc", "map": {"28401": "BG_MTEL_PORT", "28403": "BG_VIVA_PORT",
                                          "28405": "BG_GLOB_PORT"}, "default": "BG_NONE"},
    "network": "{network}",
    "nnc": "{nnc}",
    "status": "{status} {err}",
    "receipt": ("id:{id} stat:{status} err:{err} cc:{cc} nnc:{nnc} isPorted:{ported} "
                "p_nnc:{p_nnc} isRoaming:{roaming} r_cc:{r_cc} r_nnc:{r_nnc}"),
}


class Format:
    """A result format: a template over TEMPLATE_FIELDS, or a field mapped to words."""

    def __init__(self, spec: object, where: str) -> None:
        name = spec
        if isinstance(spec, str) and spec in PRESETS:
            spec = PRESETS[spec]
        self.name = name if isinstance(name, str) else "map"
        self.template: str | None = None
        self.field = self.default = ""   # a mapping's (template is None)
        self.map: dict[str, str] = {}
        if isinstance(spec, str):
            if "{" not in spec:
                raise ValueError(f"{where}: {spec!r} is neither a preset ({', '.join(sorted(PRESETS))}) "
                                 "nor a template with {fields}")
            _check_template(spec, where)
            self.template = spec
        elif isinstance(spec, dict):
            extra = set(spec) - {"field", "map", "default"}
            if extra:
                raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(map(str, extra)))}; "
                                 "expected field, map, default")
            if spec.get("field") not in TEMPLATE_FIELDS:
                raise ValueError(f"{where}.field: expected one of {', '.join(sorted(TEMPLATE_FIELDS))}")
            m = spec.get("map") or {}
            if not isinstance(m, dict):
                raise ValueError(f"{where}.map: expected a mapping of values to answers")
            self.field = spec["field"]
            self.map = {str(k): _one_line(v, f"{where}.map") for k, v in m.items()}
            self.default = _one_line(spec.get("default", ""), f"{where}.default")
        else:
            raise ValueError(f"{where}: expected a preset name, a template or a mapping")

    def render(self, lk: Lookup) -> str:
        values = template_fields(lk)
        if self.template is not None:
            return self.template.format_map(values)
        return self.map.get(values[self.field], self.default)


def _one_line(v: object, where: str) -> str:
    if not isinstance(v, (str, int)) or isinstance(v, bool):
        raise ValueError(f"{where}: expected text, got {v!r}")
    text = str(v)
    if "\n" in text or "\r" in text:
        raise ValueError(f"{where}: the answer is one line of text")
    return text


def _check_template(t: str, where: str) -> None:
    _one_line(t, where)
    try:
        parts = list(string.Formatter().parse(t))
    except ValueError as e:
        raise ValueError(f"{where}: bad template {t!r}: {e}") from None
    for _, name, spec, conv in parts:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS:
            raise ValueError(f"{where}: unknown field {{{name}}} in {t!r}; "
                             f"known: {', '.join(sorted(TEMPLATE_FIELDS))}")
        if conv or (spec and "{" in spec):
            raise ValueError(f"{where}: {t!r}: only plain {{field}} or {{field:spec}} is allowed")
    try:
        t.format_map(dict.fromkeys(TEMPLATE_FIELDS, "x"))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}: bad template {t!r}: {e}") from None


@dataclass
class Service:
    service_id: str
    user_id: str
    account: str
    format: Format
    enabled: bool = True
    allowed_ips: tuple[IpNetwork, ...] = ()
    limits: Limits = field(default_factory=Limits)
    name: str = ""
    meter: Account | None = None  # counts the service's own limits in Services.book


def _id(v: object, where: str) -> str:
    # The prepaid API's ids are numbers. YAML gives ints; quoted digits are fine too.
    s = str(v).strip() if isinstance(v, (int, str)) and not isinstance(v, bool) else ""
    if not (s.isdigit() and s.isascii()):
        raise ValueError(f"{where}: expected a number, got {v!r}")
    return s


def parse_service(d: object, i: int) -> Service:
    where = f"prepaid.services[{i}]"
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping")
    extra = set(d) - SERVICE_KEYS
    if extra:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(map(str, extra)))}; "
                         f"expected some of {', '.join(sorted(SERVICE_KEYS))}")
    for k in ("service_id", "user_id", "account"):
        if k not in d:
            raise ValueError(f"{where}: {k} is required")
    account = d["account"]
    if not isinstance(account, str) or not account:
        raise ValueError(f"{where}.account: expected the system_id of an account")
    enabled = d.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"{where}.enabled: expected true or false")
    nets = parse_allowlist(d.get("allowed_ips") or None, f"{where}.allowed_ips")
    return Service(service_id=_id(d["service_id"], f"{where}.service_id"),
                   user_id=_id(d["user_id"], f"{where}.user_id"), account=account,
                   format=Format(d.get("format", "bg_port"), f"{where}.format"),
                   enabled=enabled, allowed_ips=nets,
                   limits=Limits.from_config(d.get("limits"), f"{where}.limits"),
                   name=str(d.get("name", "")))


class Services:
    """The configured prepaid services, and a private AccountBook that meters their
    own limits (the service's quota is separate from its account's)."""

    def __init__(self, cfg: dict[str, Any], accounts: AccountBook) -> None:
        pc = cfg.get("prepaid") or {}
        self.timeout = float(pc.get("timeout", 5.0))
        self.book = AccountBook(tz=cfg.get("accounts_timezone", "UTC"), ban_after=0)
        self.by_id: dict[str, Service] = {}
        specs = pc.get("services") or []
        if not isinstance(specs, list):
            raise ValueError("prepaid.services: expected a list of services")
        for i, d in enumerate(specs):
            svc = parse_service(d, i)
            if svc.service_id in self.by_id:
                raise ValueError(f"prepaid.services[{i}]: service_id {svc.service_id} appears twice")
            if accounts.get(svc.account) is None:
                raise ValueError(f"prepaid.services[{i}].account: no account {svc.account!r}")
            svc.meter = self.book.add(Account(AccountSettings(
                system_id=f"service:{svc.service_id}", password="", price=0, limits=svc.limits)))
            self.by_id[svc.service_id] = svc

    def __len__(self) -> int:
        return len(self.by_id)


def _answer(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type=TEXT)


async def handle(request: web.Request) -> web.Response:
    """GET /users/hlr_prepaid.php?user_id=..&service_id=..&msisdn=.. -> one line."""
    server = request.app[SERVER]
    services: Services = request.app[SERVICES]
    book = server.book
    ip = request.remote or ""
    t = time.time()
    if book.check_ip(ip, t) is not None:
        return _answer(BAN_IP_TEMP)
    q = request.query
    values = {}
    for k in ("user_id", "service_id", "msisdn"):
        got = q.getall(k, [])
        if len(got) != 1 or not got[0].strip():
            return _answer(INVALID_INPUT)
        values[k] = got[0].strip()
    svc = services.by_id.get(values["service_id"])
    if svc is None or svc.user_id != values["user_id"]:
        book.record_failure(ip, t)  # guessing ids: counts towards the temporary ban
        return _answer(INVALID_INPUT)
    if svc.allowed_ips and not ip_allowed(ip, svc.allowed_ips):
        return _answer(INVALID_IP)
    account = book.get(svc.account)
    if not svc.enabled or account is None or not account.settings.enabled:
        return _answer(SERVICE_DISABLED)
    dest = server.resolver.parse(values["msisdn"], 1, 1)
    if dest is None:
        return _answer(INVALID_MSISDN)
    # The service's own limits first; given back if the account then refuses.
    assert svc.meter is not None  # Services gives each its meter
    hold = services.book.reserve(svc.meter, dest.cc, t)
    if isinstance(hold, Refusal):
        return _answer(hold.prepaid_answer)
    r = server.engine.submit(account, values["msisdn"], 1, 1, channel="http")
    if r.__class__ is not Lookup:
        services.book.rollback(hold)
        if isinstance(r, Refusal):
            return _answer(r.prepaid_answer)
        return _answer(INVALID_MSISDN if r == Status.RINVDSTADR else SYSTEM_ERROR,
                       200 if r == Status.RINVDSTADR else 503)
    services.book.commit(hold)
    if not await durable(server, [r], account):
        return _answer(SYSTEM_ERROR, 503)
    # Synchronous (the SMSPAY prepaid API answers in "1 to 3 seconds"): answer once the HLR result is final.
    await wait_done([r], services.timeout)
    return _answer(svc.format.render(r))


SERVICES = web.AppKey("prepaid_services", Services)
