"""Scenario configuration: the seeded mix, rules, subscriber and portability files."""
from __future__ import annotations

import bisect
import csv
from collections.abc import Container
from pathlib import Path
from typing import Any

import yaml

ERR_NAMES = {
    11: "ABSENT_SUBSCRIBER", 12: "UNKNOWN_SUBSCRIBER", 13: "UNIDENTIFIED_SUBSCRIBER",
    14: "TIMEOUT", 15: "PROVIDER_GENERAL_ERROR", 16: "NO_RESPONSE", 17: "SYSTEM_FAILURE",
    18: "INVALID_MSISDN", 19: "CALL_BARRED", 20: "ILLEGAL_SUBSCRIBER",
    21: "TELESERVICE_NOT_PROVISIONED", 22: "FACILITY_NOT_SUPPORTED",
    23: "SUBSCRIBER_BUSY_FOR_MT_SMS", 24: "UNEXPECTED_DATA_VALUE",
}
# Short names used in mixes, rules and the subscriber file.
OUTCOMES = {
    "reachable": 0, "absent": 11, "unknown": 12, "unidentified": 13, "timeout": 14,
    "provider_error": 15, "no_response": 16, "system_failure": 17, "invalid": 18,
    "barred": 19, "illegal": 20, "teleservice": 21, "facility": 22, "busy": 23,
    "unexpected": 24,
}
# Realistic default: most lookups reach a live subscriber, some are off or gone.
DEFAULT_MIX = {"absent": 7, "unknown": 5, "barred": 1, "teleservice": 0.5, "busy": 0.5,
               "system_failure": 0.5, "timeout": 0.5, "ported": 10, "roaming": 3}

_SPAN = 1 << 32


def err_of(value: Any, where: str = "") -> int:
    """0 or 11..24 from 11, "011", "absent", "ABSENT_SUBSCRIBER", "DELIVRD"."""
    if isinstance(value, bool):
        raise ValueError(f"{where}bad err/status {value!r}")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        err = int(value)
        if err == 0 or err in ERR_NAMES:
            return err
    elif isinstance(value, str):
        name = value.strip().lower()
        if name in OUTCOMES:
            return OUTCOMES[name]
        if name == "delivrd":
            return 0
        for err, full in ERR_NAMES.items():
            if full.lower() == name:
                return err
    raise ValueError(f"{where}bad err/status {value!r}")


def latency_of(value: Any, where: str = "") -> tuple[int, int]:
    """latency_ms: a number of ms, or [min, max] (drawn per number, deterministically)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return (int(value), int(value))
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            and 0 <= value[0] <= value[1]):
        return (int(value[0]), int(value[1]))
    raise ValueError(f"{where}latency_ms must be ms or [min, max], not {value!r}")


def digits_of(value: Any, what: str, where: str = "", lengths: Container[int] = range(1, 16)) -> str:
    s = str(value).strip().lstrip("+")
    if not (s.isascii() and s.isdigit() and len(s) in lengths):
        raise ValueError(f"{where}bad {what} {value!r}")
    return s


def nnc_of(value: Any, where: str = "") -> str:
    """MCC+MNC kept as a string: 5 or 6 digits ("" = none)."""
    if value is None or value == "":
        return ""
    return digits_of(value, "MCC+MNC", where, (5, 6))


class Mix:
    """Seeded percentages. The outcome (reachable or an err) takes the low 32 bits of the
    number's hash; 'ported' (any outcome) and 'roaming' (of reachable subscribers) each
    take 16 more bits, so the three draws are independent."""
    __slots__ = ("cuts", "errs", "ported", "roaming", "percents")

    def __init__(self, mix: dict[str, Any] | None = None, where: str = "mix: "):
        mix = dict(DEFAULT_MIX if mix is None else mix)
        ported, roaming = (float(mix.pop(k, 0)) for k in ("ported", "roaming"))
        weights: dict[int, float] = {}
        for name, pct in mix.items():
            if name not in OUTCOMES:
                raise ValueError(f"{where}unknown outcome {name!r} (one of {', '.join(OUTCOMES)}, "
                                 f"ported, roaming)")
            if not isinstance(pct, (int, float)) or isinstance(pct, bool) or pct < 0:
                raise ValueError(f"{where}{name} must be a percentage, not {pct!r}")
            weights[OUTCOMES[name]] = float(pct)
        if 0 not in weights:   # reachable takes what the errs leave of 100
            rest = 100.0 - sum(weights.values())
            if rest < 0:
                raise ValueError(f"{where}outcomes add up to more than 100")
            weights[0] = rest
        total = sum(weights.values())
        if total <= 0 or not (0 <= ported <= 100 and 0 <= roaming <= 100):
            raise ValueError(f"{where}percentages out of range")
        self.errs, self.cuts, acc = [], [], 0.0
        for err, w in sorted(weights.items()):
            if w > 0:
                acc += w
                self.errs.append(err)
                self.cuts.append(round(acc / total * _SPAN))
        self.cuts[-1] = _SPAN
        self.ported = round(ported / 100 * 0x10000)
        self.roaming = round(roaming / 100 * 0x10000)
        self.percents = {e: w * 100 / total for e, w in weights.items()} | {
            "ported": ported, "roaming": roaming}

    def outcome(self, h: int) -> int:   # Resolver.resolve() inlines these three tests
        return self.errs[bisect.bisect_right(self.cuts, h & 0xFFFFFFFF)]


class Rule:
    """Fields a rule sets (None = left to the layers below).
    p_nnc: MCC+MNC, "" = not ported, True = ported to a network picked from the number's
    hash; roam: (r_cc, r_nnc), () = not roaming, True = a visited network from the hash."""
    __slots__ = ("err", "nnc", "p_nnc", "roam", "latency", "mix")

    def __init__(self, err: int | None = None, nnc: str | None = None, p_nnc: str | bool | None = None,
                 roam: tuple[str, ...] | bool | None = None, latency: tuple[int, int] | None = None,
                 mix: Mix | None = None):
        self.err, self.nnc, self.p_nnc, self.roam = err, nnc, p_nnc, roam
        self.latency, self.mix = latency, mix

    def under(self, top: "Rule") -> "Rule":
        """This rule overlaid by a more specific one."""
        return Rule(*(getattr(self, f) if getattr(top, f) is None else getattr(top, f)
                      for f in self.__slots__))

    def __repr__(self) -> str:
        return "Rule(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__slots__
                                   if getattr(self, f) is not None) + ")"


_RULE_KEYS = {"prefix", "msisdn", "err", "status", "nnc", "ported_to", "p_nnc", "ported",
              "roaming", "r_cc", "r_nnc", "latency_ms", "mix"}


def parse_rule(d: Any, where: str) -> tuple[str, str, Rule]:
    """A config rule -> ("prefix"|"msisdn", digits, Rule)."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}a rule is a mapping, not {d!r}")
    unknown = set(d) - _RULE_KEYS
    if unknown:
        raise ValueError(f"{where}unknown rule keys {sorted(unknown)}")
    if ("prefix" in d) == ("msisdn" in d):
        raise ValueError(f"{where}a rule needs exactly one of prefix, msisdn")
    kind = "prefix" if "prefix" in d else "msisdn"
    key = digits_of(d[kind], kind, where)
    r = Rule()
    if "err" in d or "status" in d:
        r.err = err_of(d.get("err", d.get("status")), where)
    if "nnc" in d:
        r.nnc = nnc_of(d["nnc"], where)
    if "ported_to" in d or "p_nnc" in d:
        r.p_nnc = nnc_of(d.get("ported_to", d.get("p_nnc")), where)
    elif "ported" in d:
        if not isinstance(d["ported"], bool):
            raise ValueError(f"{where}ported is true or false")
        r.p_nnc = True if d["ported"] else ""
    roaming = d.get("roaming")
    if "r_cc" in d or "r_nnc" in d or isinstance(roaming, dict):
        src = roaming if isinstance(roaming, dict) else {"cc": d.get("r_cc"), "nnc": d.get("r_nnc")}
        r.roam = (digits_of(src.get("cc"), "r_cc", where, range(1, 4)), nnc_of(src.get("nnc"), where))
    elif roaming is not None:
        if not isinstance(roaming, bool):
            raise ValueError(f"{where}roaming is true, false or {{cc, nnc}}")
        r.roam = True if roaming else ()
    if "latency_ms" in d:
        r.latency = latency_of(d["latency_ms"], where)
    if "mix" in d:
        if kind != "prefix":
            raise ValueError(f"{where}mix is for prefix rules")
        r.mix = Mix(d["mix"], f"{where}mix: ")
    return kind, key, r


def load_rules(spec: Any, base_dir: Path) -> list[Any]:
    """hlr.rules: a list of rules, or the path of a YAML file holding one."""
    if spec is None:
        return []
    where = "hlr.rules: "
    if isinstance(spec, (str, Path)):
        path = base_dir / spec
        where = f"{path}: "
        spec = yaml.safe_load(path.read_text()) or []
    if not isinstance(spec, list):
        raise ValueError(f"{where}rules are a list")
    return [parse_rule(d, f"{where}rule {i + 1}: ") for i, d in enumerate(spec)]


SUBSCRIBER_FIELDS = ("msisdn", "status", "err", "nnc", "p_nnc", "r_cc", "r_nnc", "latency_ms")


def load_subscribers(path: Path) -> dict[str, Rule]:
    """CSV msisdn,status,err,nnc,p_nnc,r_cc,r_nnc[,latency_ms] (header optional, '#'
    comments). A row is what the HLR holds: empty p_nnc = not ported, empty r_cc/r_nnc =
    not roaming, empty status and err = reachable, empty nnc = the range holder."""
    out: dict[str, Rule] = {}
    with open(path, newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if row[0].strip().lower() == "msisdn":
                continue
            where = f"{path}:{lineno}: "
            rec = dict(zip(SUBSCRIBER_FIELDS, (c.strip() for c in row)))
            msisdn = digits_of(rec["msisdn"], "msisdn", where)
            status = rec.get("err") or rec.get("status") or 0
            r_cc, r_nnc = rec.get("r_cc", ""), nnc_of(rec.get("r_nnc"), where)
            if bool(r_cc) != bool(r_nnc):
                raise ValueError(f"{where}roaming needs both r_cc and r_nnc")
            out[msisdn] = Rule(
                err=err_of(status, where),
                nnc=nnc_of(rec.get("nnc"), where) or None,
                p_nnc=nnc_of(rec.get("p_nnc"), where),
                roam=(digits_of(r_cc, "r_cc", where, range(1, 4)), r_nnc) if r_cc else (),
                latency=latency_of(float(rec["latency_ms"]), where) if rec.get("latency_ms") else None)
    return out


def load_portability(path: Path) -> dict[str, str]:
    """Kamailio pdbt-style text: 'prefix;mccmnc' a line (a full number is just the longest
    prefix), '#' comments. The number's current network: ported if it is not the range
    holder."""
    out: dict[str, str] = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            where = f"{path}:{lineno}: "
            prefix, sep, nnc = line.partition(";")
            if not sep:
                raise ValueError(f"{where}expected 'prefix;mccmnc'")
            nnc = nnc_of(nnc.strip(), where)
            if not nnc:
                raise ValueError(f"{where}missing mccmnc")
            out[digits_of(prefix, "prefix", where)] = nnc
    return out


# Sandbox: Ofcom's drama range +44 7700 900000-900999 is never allocated, so no real
# subscriber is ever looked up by accident. 4477009000EE gives err EE (11..24), 00 reachable.
SANDBOX_PREFIX = "4477009000"
SANDBOX_NNC, SANDBOX_PORTED_TO, SANDBOX_VISITED = "23410", "23415", ("33", "20801")


def sandbox() -> dict[str, Rule]:
    base: dict[str, Any] = dict(nnc=SANDBOX_NNC, p_nnc="", roam=())
    out = {SANDBOX_PREFIX + f"{err:02d}": Rule(err=err, **base) for err in [0, *ERR_NAMES]}
    out[SANDBOX_PREFIX + "30"] = Rule(err=0, nnc=SANDBOX_NNC, p_nnc=SANDBOX_PORTED_TO, roam=())
    out[SANDBOX_PREFIX + "31"] = Rule(err=0, nnc=SANDBOX_NNC, p_nnc="", roam=SANDBOX_VISITED)
    out[SANDBOX_PREFIX + "32"] = Rule(err=0, nnc=SANDBOX_NNC, p_nnc=SANDBOX_PORTED_TO,
                                      roam=SANDBOX_VISITED)
    out[SANDBOX_PREFIX + "33"] = Rule(err=11, nnc=SANDBOX_NNC, p_nnc=SANDBOX_PORTED_TO, roam=())
    out[SANDBOX_PREFIX + "40"] = Rule(err=0, latency=(5000, 5000), **base)
    return out
