"""An account's settings: one table of keys, and the immutable values read from it.

Each key of an account (and of its ``limits`` and ``packages``) is declared once, here, as
a field of `AccountSettings` or `Limits` (or an entry of `BALANCE_KEYS`, `PACKAGE_KEYS`)
with its `Key`: how the YAML or API value is checked, its default, how the record writes
it, its JSON schema and its description. From that one table come the validation of the
configuration and of the admin API, the durable record, the OpenAPI schema of an account
(server/http/openapi.py) and the accounts section of docs/configuration.md
(tools/confdoc.py). Adding a key is one field here, and its use.

Settings are frozen once validated: an operator's change builds new settings and the book
swaps them in whole (`AccountBook.replace`). What an account uses at run time (credit,
counters, tokens) is the book's (book.py).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Callable, Mapping

from .allowlist import IpNetwork, parse_allowlist, parse_subject
from .passwords import check_hash

MICRO = 1_000_000
INF = float("inf")

# SMPP 3.4 §4.1 C-Octet String sizes minus the NUL: longer values could never bind.
MAX_SYSTEM_ID, MAX_PASSWORD, MAX_SYSTEM_TYPE = 15, 8, 12
#: Receipt profiles: the standard text; the standard text plus imsi/msc/mccmnc keys;
#: the standard text plus vendor TLVs carrying MCC and MNC.
RECEIPT_PROFILES = frozenset({"standard", "extended", "tlv"})
#: What an account's submit_sm are: HLR lookups, or text messages (server/sms.py).
SERVICES = ("hlr", "sms")


# --- amounts ------------------------------------------------------------------------

def to_micro(x: float | str | int | Decimal) -> int:
    """Credits to integer micro-credits, exactly: the decimal text is what the user meant."""
    if isinstance(x, bool):
        raise ValueError(f"not an amount: {x!r}")
    if isinstance(x, int):
        return x * MICRO
    try:
        d = Decimal(str(x).strip())
    except InvalidOperation:
        raise ValueError(f"not an amount: {x!r}") from None
    if not d.is_finite():
        raise ValueError(f"not an amount: {x!r}")
    m = d * MICRO
    if m != m.to_integral_value():
        raise ValueError(f"amount {x!r} has more than 6 decimals")
    return int(m)


def from_micro(m: int) -> str:
    """Exact decimal text of micro-credits: 1_500_000 -> '1.5'."""
    if type(m) is int and m >= 0:  # each commit writes every dirty account's credit: no Decimal
        units, micro = divmod(m, MICRO)
        return f"{units}.{micro:06d}".rstrip("0") if micro else str(units)
    return format(Decimal(m).scaleb(-6).normalize(), "f")


# --- the table ----------------------------------------------------------------------

REQUIRED: Any = object()  # a key without a default: it must be given


def _same(v: Any) -> Any:
    return v


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key: its checks, default, record form, schema and description."""
    parse: Callable[[Any, str], Any]  # (YAML/API value, where) -> the value, or ValueError
    doc: str                          # the description in docs/configuration.md
    schema: Mapping[str, Any]         # JSON schema of the value the YAML and the API take
    default: Any = REQUIRED           # the value of an absent key, as the user would write it
    dump: Callable[[Any], Any] = _same  # the value -> its record (JSON, and valid YAML)
    record_schema: Mapping[str, Any] | None = None  # JSON schema of the dumped value; None: schema
    shown: str | None = None          # the default as the docs show it; None: the default itself
    always: bool = False              # written in the record even when it is the default
    secret: bool = False              # never shown (the API's view of an account)
    recorded: bool = True             # False: kept in memory only, never in the record
    name: str = ""                    # filled in from the field's name

    def read(self, d: Mapping[str, Any], where: str) -> Any:
        if self.default is REQUIRED and self.name not in d:
            raise ValueError(f"{where}{self.name}: required")
        return self.parse(d.get(self.name, self.default), f"{where}{self.name}")


def key(default: Any = REQUIRED, **kw: Any) -> Any:
    """A field of a settings class, declared by its `Key`."""
    k = Key(default=default, **kw)
    if default is REQUIRED:
        return field(metadata={"key": k})
    value = k.parse(default, "default")
    if isinstance(value, MappingProxyType):  # immutable, though not hashable: shared as is
        return field(default_factory=lambda: value, metadata={"key": k})
    return field(default=value, metadata={"key": k})


def table(cls: type) -> dict[str, Key]:
    """The keys of a settings class, in declaration order (the docs' order)."""
    return {f.name: dataclasses.replace(f.metadata["key"], name=f.name) for f in dataclasses.fields(cls)}


def parse_keys(cls: type, keys: dict[str, Key], d: Any, where: str, sep: str) -> Any:
    """Build `cls` from mapping `d`, each key checked by its table entry."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping, got {d!r}")
    no_unknown(d, frozenset(keys), where)
    return cls(**{name: k.read(d, where + sep) for name, k in keys.items()})


def dump_keys(obj: Any, keys: dict[str, Key]) -> dict[str, Any]:
    """The record of a settings object: keys at their default left out, unless `always`."""
    out = {}
    for name, k in keys.items():
        value = getattr(obj, name)
        if k.recorded and (k.always or value != _parsed_default(k)):
            out[name] = k.dump(value)
    return out


#: id(key) -> (key, its parsed default): parsed once, not at every record (each commit
#: writes the record of every account it charged). The key is held so its id stays its own.
_DEFAULTS: dict[int, tuple[Key, Any]] = {}


def _parsed_default(k: Key) -> Any:
    held = _DEFAULTS.get(id(k))
    if held is None:
        held = _DEFAULTS[id(k)] = (k, None if k.default is REQUIRED else k.parse(k.default, "default"))
    return held[1]


def no_unknown(d: Mapping[Any, Any], known: frozenset[str], where: str) -> None:
    if extra := set(d) - known:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(map(str, extra)))}; "
                         f"expected some of {', '.join(sorted(known))}")


# --- value checks ---------------------------------------------------------------------

def integer(minimum: int | None = None, maximum: int | None = None,
            optional: bool = False) -> Callable[[Any, str], int | None]:
    def parse(v: Any, where: str) -> int | None:
        value: int | None = _int(v, where, minimum, maximum, optional)
        return value
    return parse


def _int(v: Any, where: str, minimum: int | None = None, maximum: int | None = None,
         optional: bool = False) -> Any:
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{where}: expected an integer, got {v!r}")
    if minimum is not None and v < minimum or maximum is not None and v > maximum:
        raise ValueError(f"{where}: {v} out of range {minimum}..{'' if maximum is None else maximum}")
    return v


def positive_number(v: Any, where: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < INF:
        raise ValueError(f"{where}: expected a positive number, got {v!r}")
    return float(v)


def boolean(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"{where}: expected true or false, got {v!r}")
    return v


def amount(v: Any, where: str) -> int:
    try:
        m = to_micro(v)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if m < 0:
        raise ValueError(f"{where}: must not be negative, got {v!r}")
    return m


def optional_date(v: Any, where: str) -> date | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    if isinstance(v, str):
        try:
            return date.fromisoformat(v.strip())
        except ValueError:
            pass
    raise ValueError(f"{where}: expected a date YYYY-MM-DD, got {v!r}")


def text(size: int, what: str = "a string") -> Callable[[Any, str], str | None]:
    def parse(v: Any, where: str) -> str | None:
        if v is not None and (not isinstance(v, str) or len(v) > size):
            # YAML reads 0123 as the integer 83: make the user quote rather than guess.
            raise ValueError(f"{where}: expected {what} of at most {size} characters (quote "
                             f"digits in YAML), got {type(v).__name__}")
        return v
    return parse


def _system_id(v: Any, where: str) -> str:
    if not isinstance(v, str) or not 0 < len(v) <= MAX_SYSTEM_ID:
        raise ValueError(f"{where}: expected a string of 1..{MAX_SYSTEM_ID} characters (quote digits in YAML)")
    return v


def _password_hash(v: Any, where: str) -> str | None:
    if v is not None:
        try:
            check_hash(v)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    return None if v is None else str(v)


def _system_type(v: Any, where: str) -> str:
    if not isinstance(v, str) or len(v) > MAX_SYSTEM_TYPE:
        raise ValueError(f"{where}: expected a string of at most {MAX_SYSTEM_TYPE} characters")
    return v


def _coverage(v: Any, where: str) -> frozenset[str]:
    if v is None:
        return frozenset()
    items = v if isinstance(v, (list, tuple, set, frozenset)) else [v]
    out = set()
    for c in items:
        s = str(c).strip().lstrip("+") if not isinstance(c, bool) else ""
        if not (s.isdigit() and s.isascii() and 1 <= len(s) <= 3 and s[0] != "0"):
            raise ValueError(f"{where}: {c!r} is not a country calling code (1 to 3 digits)")
        out.add(s)
    return frozenset(out)


def _receipt(v: Any, where: str) -> Mapping[str, Any]:
    """``standard`` | ``extended`` | ``tlv``, or {profile, mcc_tag, mnc_tag} (vendor TLV tags)."""
    if v is None:
        return MappingProxyType({"profile": "standard"})
    if isinstance(v, str):
        v = {"profile": v}
    if not isinstance(v, Mapping):
        raise ValueError(f"{where}: expected a profile name or a mapping")
    no_unknown(v, frozenset({"profile", "mcc_tag", "mnc_tag"}), where)
    out = {"profile": v.get("profile", "standard")}
    if out["profile"] == "seed":   # the standard profile's former name, in older files and stores
        out["profile"] = "standard"
    if out["profile"] not in RECEIPT_PROFILES:
        raise ValueError(f"{where}: profile must be one of {', '.join(sorted(RECEIPT_PROFILES))}")
    for name, default in (("mcc_tag", 0x1401), ("mnc_tag", 0x1402)):
        tag = v.get(name, default)
        tag = int(tag, 0) if isinstance(tag, str) else tag
        # SMPP 3.4 §5.3.2: 0x1400-0x3FFF are reserved for SMSC vendors.
        out[name] = _int(tag, f"{where}: {name}", minimum=0x1400, maximum=0x3FFF)
    return MappingProxyType(out)


def _outbind(v: Any, where: str) -> Mapping[str, Any] | None:
    if v is None:
        return None
    if not isinstance(v, Mapping) or "host" not in v or "port" not in v:
        raise ValueError(f"{where}: expected {{host, port}} of the ESME to connect to")
    no_unknown(v, frozenset({"host", "port", "system_id", "password"}), where)
    out = {"host": str(v["host"]), "port": _int(v["port"], f"{where}: port", minimum=1, maximum=65535)}
    for name, size in (("system_id", MAX_SYSTEM_ID), ("password", MAX_PASSWORD)):
        if name in v:
            if not isinstance(v[name], str) or len(v[name]) > size:
                raise ValueError(f"{where}: {name}: a string of at most {size} characters")
            out[name] = v[name]
    return MappingProxyType(out)


def _notify(v: Any, where: str) -> Mapping[str, Any] | None:
    if v is None:
        return None
    if not isinstance(v, Mapping):
        raise ValueError(f"{where}: expected {{email: [addresses], webhook: URL}}")
    no_unknown(v, frozenset({"email", "webhook"}), where)
    out: dict[str, Any] = {}
    emails = v.get("email") or []
    if isinstance(emails, str):
        emails = [emails]
    if not isinstance(emails, list) or not all(
            isinstance(e, str) and e.count("@") == 1 and e.strip() == e and "\n" not in e and "," not in e
            and len(e) <= 254 for e in emails):
        raise ValueError(f"{where}: email: a list of e-mail addresses")
    if emails:
        out["email"] = tuple(emails)
    hook = v.get("webhook")
    if hook is not None:
        if not isinstance(hook, str) or not hook.startswith(("http://", "https://")) or len(hook) > 2000:
            raise ValueError(f"{where}: webhook: an http:// or https:// URL")
        out["webhook"] = hook
    return MappingProxyType(out)


def _dump_notify(m: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if m is None else {k: list(v) if k == "email" else v for k, v in m.items()}


def _trace(v: Any, where: str) -> bool | str:
    if isinstance(v, bool) or (isinstance(v, str) and v):
        return v
    raise ValueError(f"{where}: true (in memory), false, or a file path")


def _service(v: Any, where: str) -> str:
    if v not in SERVICES:
        raise ValueError(f"{where}: expected {' or '.join(SERVICES)}, got {v!r}")
    return str(v)


def _tls_subject(v: Any, where: str) -> str | None:
    if v is None:
        return None
    parse_subject(v, where)
    return str(v).strip()


def _limits(v: Any, where: str) -> Limits:
    return Limits.from_config(v, where)


def _label(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{where}: expected a string, got {v!r}")
    return v


def parse_balance(d: Mapping[str, Any], at: str) -> list[dict[str, Any]] | None:
    """The opening balance an account mapping gives: its packages' values (credit, bought,
    label, size), or None for unlimited credit."""
    if "credit" in d and "packages" in d:
        raise ValueError(f"{at}: give credit or packages, not both")
    if "credit" in d:
        credit = amount(d["credit"], f"{at}: credit")
        return [{"credit": credit, "bought": None, "label": "", "size": credit}]
    if "packages" not in d:
        return None
    ps = d["packages"]
    if not isinstance(ps, list):
        raise ValueError(f"{at}: packages: expected a list, got {ps!r}")
    out = []
    for i, p in enumerate(ps):
        w = f"{at}: packages[{i}]"
        if not isinstance(p, dict) or "credit" not in p:
            raise ValueError(f"{w}: expected a mapping with credit")
        no_unknown(p, PACKAGE_KEYS, w)
        v = {name: k.read(p, w + ".") for name, k in PACKAGE_TABLE.items()}
        if v["size"] is None:
            v["size"] = v["credit"]
        elif v["size"] < v["credit"]:
            raise ValueError(f"{w}.size: smaller than credit")
        out.append(v)
    return out


def _iso(d: date | None) -> str | None:
    return None if d is None else d.isoformat()


def _plain(m: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if m is None else dict(m)


# --- JSON schema fragments -------------------------------------------------------------

AMOUNT: Mapping[str, Any] = {"oneOf": [{"type": "string", "example": "12.5"}, {"type": "number"}],
                             "description": "Credits, at most 6 decimals."}
AMOUNT_TEXT: Mapping[str, Any] = {"type": "string", "example": "12.5"}
DATE: Mapping[str, Any] = {"type": "string", "format": "date"}
_STRINGS: Mapping[str, Any] = {"type": "array", "items": {"type": "string"}}
_TAG: Mapping[str, Any] = {"oneOf": [{"type": "integer", "minimum": 0x1400, "maximum": 0x3FFF},
                                     {"type": "string"}]}


# --- the settings -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Limits:
    """Rate and volume limits of an account (or of a prepaid service)."""
    per_day: int | None = key(None, parse=integer(0, optional=True), shown="(none)",
                              doc="accepted lookups per calendar day",
                              schema={"type": ["integer", "null"], "minimum": 0})
    per_week: int | None = key(None, parse=integer(0, optional=True), shown="(none)",
                               doc="per ISO week (Monday to Sunday)",
                               schema={"type": ["integer", "null"], "minimum": 0})
    per_month: int | None = key(None, parse=integer(0, optional=True), shown="(none)",
                                doc="per calendar month", schema={"type": ["integer", "null"], "minimum": 0})
    min_delay_ms: int = key(0, parse=integer(0), doc="least time between two lookups (ms)",
                            schema={"type": "integer", "minimum": 0})
    tps: float | None = key(None, parse=positive_number, shown="(none)", doc="lookups per second, token bucket",
                            schema={"type": ["number", "null"], "exclusiveMinimum": 0})
    # None: max(1, tps)
    burst: float | None = key(None, parse=positive_number, shown="max(1, tps)",
                              doc="token bucket depth (needs tps)", schema={"type": ["number", "null"], "minimum": 1})

    @property
    def depth(self) -> float:
        return self.burst if self.burst is not None else max(1.0, self.tps or 0.0)

    @classmethod
    def from_config(cls, d: Any, where: str = "limits") -> Limits:
        if d is None:
            return cls()
        lim: Limits = parse_keys(cls, LIMIT_TABLE, d, where, ".")
        if lim.burst is not None and lim.tps is None:
            raise ValueError(f"{where}.burst: needs tps")
        if lim.burst is not None and lim.burst < 1:
            raise ValueError(f"{where}.burst: must be at least 1, got {lim.burst!r}")
        return lim

    def to_config(self) -> dict[str, Any]:
        return dump_keys(self, LIMIT_TABLE)


LIMIT_TABLE = table(Limits)


def _positive_amount(v: Any, where: str) -> int:
    m = amount(v, where)
    if m <= 0:
        raise ValueError(f"{where}: must be more than 0, got {v!r}")
    return m


@dataclass(frozen=True, slots=True)
class AutoRecharge:
    """Credit that adds itself: a package of `add` when credit falls below `below`."""
    # micro-credits
    below: int = key(parse=amount, dump=from_micro, shown="(required)", schema=AMOUNT, record_schema=AMOUNT_TEXT,
                     doc="when credit falls below this (from this amount or more), a package is added")
    add: int = key(parse=_positive_amount, dump=from_micro, shown="(required)", schema=AMOUNT,
                   record_schema=AMOUNT_TEXT, doc="the credit of that package (more than 0)")
    max_per_month: int = key(parse=integer(1), shown="(required)", schema={"type": "integer", "minimum": 1},
                             doc="packages added at most per calendar month (in accounts_timezone); "
                                 "a fall below `below` past it adds nothing")

    @classmethod
    def from_config(cls, d: Any, where: str = "auto_recharge") -> AutoRecharge | None:
        if d is None:
            return None
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected {{below, add, max_per_month}}, got {d!r}")
        recharge: AutoRecharge = parse_keys(cls, AUTO_RECHARGE_TABLE, d, where, ".")
        return recharge

    def to_config(self) -> dict[str, Any]:
        return dump_keys(self, AUTO_RECHARGE_TABLE)


AUTO_RECHARGE_TABLE = table(AutoRecharge)


def _auto_recharge(v: Any, where: str) -> AutoRecharge | None:
    return AutoRecharge.from_config(v, where)


def _dump_auto_recharge(a: AutoRecharge | None) -> dict[str, Any] | None:
    return None if a is None else a.to_config()


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountSettings:
    """What the operator set for an account (the YAML file, the admin API), validated."""
    system_id: str = key(parse=_system_id, shown="(required)", always=True,
                         doc="SMPP system_id (1 to 15 characters); also the HTTP username",
                         schema={"type": "string", "minLength": 1, "maxLength": MAX_SYSTEM_ID})
    # In clear only when the YAML file or the API gave it so, and only in memory: the
    # store keeps password_hash, a salted scrypt hash (passwords.py).
    password: str | None = key(None, parse=text(MAX_PASSWORD), shown="(required)", secret=True, recorded=False,
                               doc="SMPP password (at most 8 characters: quote digits in YAML); "
                                   "stored only as a salted hash. Give it or `password_hash`",
                               schema={"type": "string", "maxLength": MAX_PASSWORD})
    # None until hashed (Server.start, or the first record)
    password_hash: str | None = key(None, parse=_password_hash, shown="(none)", secret=True,
                                    doc="the password as a hash from `hlrsmpp hash-password`, instead of "
                                        "`password`: the config file then holds no password either",
                                    schema={"type": "string"})
    system_type: str = key("HLR", parse=_system_type, always=True, doc="system_type a bind must carry",
                           schema={"type": "string", "maxLength": MAX_SYSTEM_TYPE})
    # micro-credits per accepted lookup; 0.1 credit is the usual price of an HLR lookup
    price: int = key(Decimal("0.1"), parse=amount, dump=from_micro, always=True, shown="`0.1`",
                     doc="credit charged per accepted lookup (refunded when the HLR side fails: err 14 to 17)",
                     schema=AMOUNT, record_schema=AMOUNT_TEXT)
    # usable through that whole day, in the book's timezone
    expires: date | None = key(None, parse=optional_date, dump=_iso, shown="(never)", schema=DATE,
                               doc="last day the account may be used (`YYYY-MM-DD`, in accounts_timezone); "
                                   "then binds and lookups get ESME_RACCEXPIRY")
    coverage: frozenset[str] = key(None, parse=_coverage, dump=lambda c: sorted(c, key=lambda x: (len(x), x)),
                                   shown="(all)", schema=_STRINGS,
                                   doc="country calling codes the account may look up; others get ESME_RCOVERR")
    limits: Limits = key(None, parse=_limits, dump=Limits.to_config, shown="(none)",
                         doc="rate and volume limits (below); over one: ESME_RTHROTTLED",
                         schema={"type": "object", "additionalProperties": False,
                                 "properties": {n: k.schema for n, k in LIMIT_TABLE.items()}})
    allowed_ips: tuple[IpNetwork, ...] = key(None, parse=parse_allowlist, dump=lambda ns: [str(n) for n in ns],
                                             shown="(any)", schema=_STRINGS,
                                             doc="CIDR networks binds may come from; others get ESME_RBINDFAIL")
    max_tx: int = key(10, parse=integer(0), always=True, schema={"type": "integer", "minimum": 0},
                      doc="transmitter sessions at once (the one receiver, Rx or TRx, is apart)")
    # micro-credits; alert when credit falls below it
    low_credit: int = key(0, parse=amount, dump=from_micro, shown="`0`", schema=AMOUNT, record_schema=AMOUNT_TEXT,
                          doc="log a `low_credit` warning when credit falls below this (0: never)")
    auto_recharge: AutoRecharge | None = key(
        None, parse=_auto_recharge, dump=_dump_auto_recharge, shown="(none)",
        doc="`{below, add, max_per_month}` (below): credit that adds itself, a package of `add` each "
            "time credit falls below `below`, at most `max_per_month` times a month; needs prepaid credit",
        schema={"type": ["object", "null"], "required": ["below", "add", "max_per_month"],
                "additionalProperties": False,
                "properties": {n: k.schema for n, k in AUTO_RECHARGE_TABLE.items()}})
    data_coding: int | None = key(None, parse=integer(0, 255, optional=True), shown="receipts.data_coding",
                                  doc="data_coding of this account's receipts",
                                  schema={"type": "integer", "minimum": 0, "maximum": 255})
    enabled: bool = key(True, parse=boolean, always=True, schema={"type": "boolean"},
                        doc="false: binds refused, live sessions unbound")
    receipt: Mapping[str, Any] = key(
        None, parse=_receipt, dump=_plain, shown="standard",
        doc="receipt profile: `standard` (the text of docs/smpp.md), `extended` (adds imsi, msc, "
            "mccmnc) or `tlv` (adds vendor TLVs `mcc_tag`/`mnc_tag`, default "
            "0x1401/0x1402); a name or `{profile, mcc_tag, mnc_tag}`",
        schema={"oneOf": [{"type": "string", "enum": sorted(RECEIPT_PROFILES)},
                          {"type": "object", "additionalProperties": False, "properties": {
                              "profile": {"type": "string", "enum": sorted(RECEIPT_PROFILES)},
                              "mcc_tag": _TAG, "mnc_tag": _TAG}}]})
    outbind: Mapping[str, Any] | None = key(
        None, parse=_outbind, dump=_plain, shown="(none)",
        doc="`{host, port, system_id?, password?}`: connect out to the ESME "
            "(SMPP outbind) to deliver receipts when it has no receiver bound",
        schema={"type": "object", "required": ["host", "port"], "additionalProperties": False,
                "properties": {"host": {"type": "string"},
                               "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                               "system_id": {"type": "string", "maxLength": MAX_SYSTEM_ID},
                               "password": {"type": "string", "maxLength": MAX_PASSWORD}}})
    metrics: bool = key(False, parse=boolean, schema={"type": "boolean"},
                        doc="true: the account's lookups have a series of their own in /metrics "
                            "(`hlrsmpp_account_lookups_total`; the 10 busiest accounts have one anyway)")
    notify: Mapping[str, Any] | None = key(
        None, parse=_notify, dump=_dump_notify, shown="(none)",
        doc="where the account's notifications go (low credit, 80 % and 100 % of a period "
            "limit, expiry in 7 days, auto-recharge, cleaning finished): `{email: [addresses], "
            "webhook: URL}` (e-mail through the server's `smtp:`, a webhook signed and checked "
            "as lookup callbacks are)",
        schema={"type": "object", "additionalProperties": False, "properties": {
            "email": {"type": "array", "items": {"type": "string", "format": "email"}},
            "webhook": {"type": "string", "format": "uri"}}})
    # False, True (kept in memory), or a file path
    trace: bool | str = key(False, parse=_trace, schema={"type": ["boolean", "string"]},
                            doc="PDU trace of the account's sessions: true (kept in memory, read over "
                                "the admin API) or a file path (over the API: a file NAME under "
                                "`<storage.path>/traces/`)")

    # the client certificate's subject its binds must present
    tls_subject: str | None = key(None, parse=_tls_subject, shown="(none)", schema={"type": "string"},
                                  doc="the client certificate its SMPP binds must present (with "
                                      "`smpp.tls.client_ca`): `CN=esme1,O=Acme` (every attribute named "
                                      "must match) or a bare common name; binds without it are refused "
                                      "ESME_RBINDFAIL, and so are its HTTP logins (HTTP has no client "
                                      "certificate)")

    service: str = key("hlr", parse=_service, schema={"type": "string", "enum": list(SERVICES)},
                       doc="`hlr`: submit_sm are HLR lookups; `sms`: text messages, counted in segments and "
                           "charged `sms_price` each, with Appendix B receipts (docs/sms.md); its binds take "
                           "any `system_type` unless the account sets one")
    # micro-credits per SMS segment
    sms_price: int = key(1, parse=amount, dump=from_micro, shown="`1`", schema=AMOUNT, record_schema=AMOUNT_TEXT,
                         doc="credit charged per SMS segment (`service: sms`)")

    def __copy__(self) -> AccountSettings:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> AccountSettings:
        return self  # immutable

    def notify_channels(self) -> list[str]:
        """Where the account's notifications go: "email", "webhook", both or none."""
        return [c for c in ("email", "webhook") if self.notify and self.notify.get(c)]

    def evolve(self, **changes: Any) -> AccountSettings:
        """These settings with `changes` (already valid values)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_config(cls, d: Any) -> AccountSettings:
        """Check a YAML or API account mapping (without its balance keys); ValueError names
        account and key."""
        if not isinstance(d, dict):
            raise ValueError(f"account: expected a mapping, got {d!r}")
        sid = d.get("system_id")
        try:
            _system_id(sid, "")
        except ValueError as e:
            raise ValueError(f"account {sid!r}: system_id{e}") from None
        at = f"account {sid!r}"
        no_unknown(d, ACCOUNT_KEYS, at)
        s: AccountSettings = parse_keys(cls, ACCOUNT_TABLE, {k: v for k, v in d.items() if k not in BALANCE_KEYS},
                                        at, ": ")
        if s.service == "sms" and "system_type" not in d:
            s = s.evolve(system_type="")  # an SMS account's binds carry any system_type
        if (s.password is None) == (s.password_hash is None):
            raise ValueError(f"{at}: password: give it, or password_hash (from `hlrsmpp "
                             "hash-password`): one of the two")
        return s

    def to_record(self) -> dict[str, Any]:
        return dump_keys(self, ACCOUNT_TABLE)


ACCOUNT_TABLE = table(AccountSettings)

#: The opening balance: not settings, the credit the book takes over (book.Package).
#: Neither key: unlimited credit.
BALANCE_KEYS: dict[str, Key] = {k.name: k for k in (
    Key(name="credit", parse=amount, default=None, shown="(unlimited)", schema=AMOUNT, record_schema=AMOUNT_TEXT,
        doc="prepaid credit, one opening package; give `credit` or `packages`, neither means unlimited"),
    Key(name="packages", parse=lambda v, where: v, default=None, shown="(unlimited)",
        doc="prepaid packages (below), consumed oldest `bought` first",
        schema={"type": "array", "items": {"type": "object"}}),
)}
PACKAGE_TABLE: dict[str, Key] = {k.name: k for k in (  # in the order records show them
    Key(name="credit", parse=amount, dump=from_micro, shown="(required)", doc="credit left in the package",
        schema=AMOUNT, record_schema=AMOUNT_TEXT, always=True),
    Key(name="size", parse=lambda v, where: None if v is None else amount(v, where), default=None,
        shown="credit", dump=from_micro, always=True,
        doc="credit bought; refunds refill the package up to it", schema=AMOUNT, record_schema=AMOUNT_TEXT),
    Key(name="bought", parse=optional_date, default=None, dump=_iso, shown="(opening balance)",
        doc="date bought (`YYYY-MM-DD`): older packages are used first", schema=DATE),
    Key(name="label", parse=_label, default="", shown='""', doc="free text, e.g. an invoice number",
        schema={"type": "string"}),
)}

#: Keys an account may carry in the YAML. Anything else is a typo and is refused.
ACCOUNT_KEYS = frozenset(ACCOUNT_TABLE) | frozenset(BALANCE_KEYS)
LIMIT_KEYS = frozenset(LIMIT_TABLE)
PACKAGE_KEYS = frozenset(PACKAGE_TABLE)


def doc_order() -> list[Key]:
    """Every key of an account, in the order the docs list them: the balance before packages."""
    keys = list(ACCOUNT_TABLE.values())
    keys.insert(list(ACCOUNT_TABLE).index("receipt"), BALANCE_KEYS["credit"])
    keys.insert(list(ACCOUNT_TABLE).index("receipt") + 1, BALANCE_KEYS["packages"])
    return keys


def settings_schema() -> dict[str, Any]:
    """The JSON schema of an account's settings as the API takes them (AccountSettings)."""
    props = {k.name: dict(k.schema) for k in doc_order()}
    props["packages"] = {"type": "array", "items": {
        "type": "object", "required": ["credit"], "additionalProperties": False,
        "properties": {n: dict(k.schema) for n, k in PACKAGE_TABLE.items()}}}
    return {"type": "object", "additionalProperties": False,
            "description": "As in the YAML configuration (docs/configuration.md).", "properties": props}


def record_schema() -> dict[str, Any]:
    """The JSON schema of an account's record as the API shows it (never its password)."""
    def shown(k: Key) -> dict[str, Any]:
        return dict(k.record_schema if k.record_schema is not None else k.schema)
    props = {k.name: shown(k) for k in ACCOUNT_TABLE.values() if not k.secret}
    props["receipt"] = {"type": "object"}
    props["limits"] = {"type": "object"}
    props["packages"] = {"type": "array", "items": {
        "type": "object", "properties": {n: shown(k) for n, k in PACKAGE_TABLE.items()}}}
    return props
