"""HLR lookup simulation: number -> home network and a deterministic scenario.

What a real HLR lookup (MAP SendRoutingInfoForSM) answers, per number, in layers where
the later layer wins on the fields it sets:
  numbering plan (allocated? mobile? range holder)  ->  seeded mix (outcome, ported,
  roaming)  ->  portability file  ->  sandbox numbers  ->  prefix rules (longest wins)
  ->  subscriber file  ->  per-number rules.
Pure and synchronous: no I/O after start-up (reload() reads files, then swaps tables).
"""
from __future__ import annotations

import hashlib
import struct
import threading
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ..native import load as load_native
from .networks import DEFAULT_DIR, Region, load_holders, load_network_names, load_regions
from .numbering import MOBILE_TYPES, Node, NumberingPlan, Range
from .rules import (ERR_NAMES, OUTCOMES, Mix, Rule, latency_of, load_portability,
                    load_rules, load_subscribers, sandbox)

__all__ = ["Destination", "HlrResult", "Resolver", "ERR_NAMES", "MAP_ERRORS", "PERMANENT",
           "OUTCOMES"]

# Receipt err -> MAP error of SendRoutingInfoForSM (3GPP TS 29.002), whose only user errors
# are those below; errs a lookup provider reports from elsewhere fold into the nearest.
MAP_ERRORS = {
    11: 6,    # ABSENT_SUBSCRIBER          absentSubscriberSM
    12: 1,    # UNKNOWN_SUBSCRIBER         unknownSubscriber
    13: 1,    # UNIDENTIFIED_SUBSCRIBER    unknownSubscriber (no unidentifiedSubscriber in SRI-SM)
    14: 34,   # TIMEOUT                    systemFailure (TCAP timer expiry, no MAP answer)
    15: 34,   # PROVIDER_GENERAL_ERROR     systemFailure
    16: 35,   # NO_RESPONSE                dataMissing (answer without the routing info)
    17: 34,   # SYSTEM_FAILURE             systemFailure
    18: 36,   # INVALID_MSISDN             unexpectedDataValue
    19: 13,   # CALL_BARRED                callBarred
    20: 13,   # ILLEGAL_SUBSCRIBER         callBarred (barred by the HLR as illegal)
    21: 11,   # TELESERVICE_NOT_PROVISIONED teleserviceNotProvisioned
    22: 21,   # FACILITY_NOT_SUPPORTED     facilityNotSupported
    23: 6,    # SUBSCRIBER_BUSY_FOR_MT_SMS absentSubscriberSM (retry later)
    24: 36,   # UNEXPECTED_DATA_VALUE      unexpectedDataValue
}
# Outcomes that a retry will not change (list cleaning drops these numbers).
PERMANENT = frozenset({12, 13, 18, 19, 20, 21, 22, 24})

# Where roaming subscribers are, when the mix or a rule says so without naming a network.
ROAMING_REGIONS = ("GB", "FR", "DE", "ES", "IT", "US", "AE", "TR", "TH", "CH", "NL", "AT",
                   "GR", "PT", "SG", "CA", "MX", "SA", "IN", "CN")


class Destination(NamedTuple):
    msisdn: str   # E.164 digits, no '+'
    cc: str       # country calling code


_new_destination = tuple.__new__
# The 128-bit hash of a number, little-endian, as the fields resolve() draws from:
# bits 0-31 outcome, 32-47 ported, 48-63 roaming, 64-95 latency, 96-127 network picks.
# One unpack to small ints instead of shifts and masks on a 128-bit int.
_hash_fields = struct.Struct("<IHHII").unpack
# The same draws in one C call (hlrsmpp.native, _resolve.c); hashlib when not built.
_NativeResolver = getattr(load_native("hlrsmpp.hlr._resolve"), "NativeResolver", None)
#: Whether a number's draws are computed in C (for hlrsmpp_build_info and the start-up log).
DRAWS_IN_C = _NativeResolver is not None


@dataclass(slots=True)
class HlrResult:
    msisdn: str
    cc: str
    nnc: str          # home network (range holder) MCC+MNC, "" if unknown
    err: int          # 0 reachable, else 11..24
    ported: bool
    p_nnc: str        # ported-to network
    roaming: bool
    r_cc: str         # visited country calling code
    r_nnc: str        # visited network
    latency: float    # seconds until the result is final
    map_error: int | None

    # resolve() builds results as _new(HlrResult) + _init(r, ...): calling the class goes
    # through type.__call__ and slot_tp_init, ~60 ns more per result.

    @property
    def delivered(self) -> bool:
        return self.err == 0

    @property
    def permanent(self) -> bool:
        return self.err in PERMANENT

    @property
    def err_name(self) -> str:
        return ERR_NAMES.get(self.err, "")


_new = object.__new__
_init = HlrResult.__init__
# MAP_ERRORS.get(err) for every err a result can carry (0, 11..24), as one subscript.
_MAP_ERROR_OF = tuple(MAP_ERRORS.get(err) for err in range(max(ERR_NAMES) + 1))


class _Tables(NamedTuple):
    """What reload() re-reads; swapped as one object so lookups never see a mix."""
    prefixes: dict[str, Rule]
    prefix_lens: tuple[int, ...]
    numbers: dict[str, Rule]      # subscriber file overlaid by per-number rules
    special: dict[str, tuple[Rule | None, Rule | None]]  # msisdn -> (sandbox rule, numbers rule): one get a number
    ported: dict[str, str]        # portability: prefix -> current network
    ported_lens: tuple[int, ...]


_PLANS: dict[Path, tuple[NumberingPlan, dict[str, Region], dict[str, str]]] = {}
_PLANS_LOCK = threading.Lock()


def _plan(tables_dir: Path) -> tuple[NumberingPlan, dict[str, Region], dict[str, str]]:
    """Numbering plans are immutable once built: one per process and tables dir."""
    with _PLANS_LOCK:
        if tables_dir not in _PLANS:
            regions = load_regions(tables_dir / "countries.csv")
            plan = NumberingPlan(load_holders(tables_dir / "networks.csv"),
                                 {r.region: r.default_nnc for r in regions.values()})
            _PLANS[tables_dir] = (plan, regions, load_network_names(tables_dir / "networks.csv"))
        return _PLANS[tables_dir]


def _lengths(prefixes: dict[str, Any]) -> tuple[int, ...]:
    """Prefix lengths present, longest first: the longest-prefix match probes only these."""
    return tuple(sorted({len(k) for k in prefixes}, reverse=True))


_CONFIG_KEYS = {"latency_ms", "timeout_ms", "seed", "mix", "rules", "subscribers",
                "portability", "sandbox", "tables", "warm"}


class Resolver:
    def __init__(self, *, seed: int = 0, mix: dict[str, Any] | None = None, latency_ms: Any = 0,
                 timeout_ms: Any = None, rules: Any = None, subscribers: str | Path | None = None,
                 portability: str | Path | None = None, sandbox_numbers: bool = True,
                 tables: str | Path | None = None, warm: bool = True,
                 base_dir: Path = Path(".")):
        self.base_dir = Path(base_dir)
        if tables is None:   # the config's own hlr/ tables, else the shipped ones
            local = self.base_dir / "hlr"
            tables = local.resolve() if (local / "networks.csv").exists() else DEFAULT_DIR
        self._plan, self._regions, names = _plan((self.base_dir / tables).resolve())
        #: MCC+MNC -> the network's name (networks.csv), for the views that name networks.
        self.network_names: dict[str, str] = names
        if warm:
            self._plan.warm()
        self._countries = self._plan.countries
        self._e164 = self._plan.e164
        key = hashlib.blake2b(str(seed).encode(), digest_size=32).digest()
        self._h0 = hashlib.blake2b(digest_size=16, key=key)
        # In C when built (_resolve.c): the draws, parse, and resolve's common case.
        self._c = _NativeResolver(key) if _NativeResolver is not None else None
        self._draws = self._c.draw if self._c is not None else self._hashlib_draws
        self.mix = Mix(mix)
        self._latency = latency_of(latency_ms, "hlr.latency_ms: ")
        self._timeout = (latency_of(timeout_ms, "hlr.timeout_ms: ")
                         if timeout_ms is not None else self._latency)
        self._sandbox = sandbox() if sandbox_numbers else {}
        self._visits = [self._regions[r] for r in ROAMING_REGIONS
                        if r in self._regions and self._regions[r].networks]
        # _visit() and _port() choices, precomputed per calling code / (region, network).
        self._abroad = {r.cc: tuple(v for v in self._visits if v.cc != r.cc)
                        for r in self._visits}
        self._abroad_any = tuple(self._visits)
        self._others = {(r.region, nnc): tuple(n for n in r.networks if n != nnc)
                        for r in self._regions.values() for nnc in r.networks}
        # Fixed latencies (the usual case) as seconds, computed once.
        self._latency_s = self._latency[0] / 1000 if self._latency[0] == self._latency[1] else None
        self._timeout_s = self._timeout[0] / 1000 if self._timeout[0] == self._timeout[1] else None
        self._rules_spec, self._subscribers, self._portability = rules, subscribers, portability
        self._t = self._load()
        #: resolve(dest) as a tuple of HlrResult's fields (the engine's hot path): the C
        #: common case, which answers None when this module's resolve() must decide.
        self.fast_fields = self._c.resolve_fields if self._c is not None else self.result_fields
        if self._c is not None:
            self.parse = self._c.parse  # type: ignore[method-assign]  # the same answers as the method below
            self._configure_c()

    @classmethod
    def from_config(cls, hlr: dict[str, Any] | None, base_dir: Path) -> "Resolver":
        hlr = dict(hlr or {})
        unknown = set(hlr) - _CONFIG_KEYS
        if unknown:
            raise ValueError(f"hlr: unknown keys {sorted(unknown)} (known: {sorted(_CONFIG_KEYS)})")
        if "sandbox" in hlr:
            hlr["sandbox_numbers"] = bool(hlr.pop("sandbox"))
        return cls(base_dir=Path(base_dir), **hlr)

    # -- files -----------------------------------------------------------------------

    def _load(self) -> _Tables:
        prefixes: dict[str, Rule] = {}
        numbers: dict[str, Rule] = {}
        if self._subscribers:
            numbers.update(load_subscribers(self.base_dir / self._subscribers))
        for kind, key, rule in load_rules(self._rules_spec, self.base_dir):
            table = prefixes if kind == "prefix" else numbers
            table[key] = table[key].under(rule) if key in table else rule
        ported = load_portability(self.base_dir / self._portability) if self._portability else {}
        special = {n: (self._sandbox.get(n), numbers.get(n)) for n in {*self._sandbox, *numbers}}
        return _Tables(prefixes, _lengths(prefixes), numbers, special, ported, _lengths(ported))

    def _configure_c(self) -> None:
        t, mix = self._t, self.mix
        self._c.configure(  # type: ignore[union-attr]  # called only with the C module
self._e164, self._countries, Node, Destination, MOBILE_TYPES, mix.errs, mix.cuts,
                          mix.ported, mix.roaming, t.prefix_lens, t.prefixes, t.ported_lens, t.ported,
                          t.special, self._latency_s, self._timeout_s, _MAP_ERROR_OF)

    def healthy(self) -> bool:
        """The numbering tables are loaded and answer (for /healthz)."""
        return bool(self._countries) and self.parse("447400123456", 1, 1) is not None

    def reload(self) -> None:
        """Re-read rule, subscriber and portability files (SIGHUP). On a bad file the
        error propagates and the previous tables stay in force."""
        self._t = self._load()
        if self._c is not None:
            self._configure_c()

    # -- lookups ---------------------------------------------------------------------

    def parse(self, destination_addr: str, ton: int = 1, npi: int = 1) -> Destination | None:
        """None unless a possible E.164 number: TON 1/NPI 1, or TON 0 (NPI 0 or 1); digits
        with an optional '+'; a known calling code; a length valid for that country."""
        if ton == 1:
            if npi != 1:
                return None
        elif ton != 0 or npi not in (0, 1):
            return None
        addr = destination_addr.removeprefix("+")
        hit = self._e164.get(addr[:3])   # (cc, valid lengths): see NumberingPlan.e164
        if hit is None or len(addr) not in hit[1] or not (addr.isdigit() and addr.isascii()):
            return None
        return _new_destination(Destination, (addr, hit[0]))   # skips NamedTuple.__new__

    def describe(self, dest: Destination) -> Range:
        """Numbering facts: region, number type ("" = unallocated), range holder."""
        return self._plan.lookup(dest.msisdn, self._countries[dest.cc])

    def resolve(self, dest: Destination) -> HlrResult:
        # Hot path (every submit_sm): inlined dict gets and bit tests, no helper calls.
        # dest comes from parse(): ASCII digits, at most 15 of them.
        msisdn, cc = dest
        country = self._countries[cc]
        node = country.index
        if node is None:   # tables not built yet (warm=False): build this calling code's
            node = self._plan.table(country).index
        rng = node.map.get(msisdn[:node.depth], node.best)  # type: ignore[union-attr]  # Country.lookup(), inlined
        while rng.__class__ is Node:
            rng = rng.map.get(msisdn[:rng.depth], rng.best)
        region, ntype, nnc = rng[len(msisdn)]
        t = self._t
        prule = None
        for k in t.prefix_lens:
            prule = t.prefixes.get(msisdn[:k])
            if prule is not None:
                break
        mix = prule.mix if prule is not None and prule.mix is not None else self.mix

        if ntype in MOBILE_TYPES:   # outcome, ported, roaming: independent hash bits
            draw_err, draw_ported, draw_roaming, draw_ms, draw_pick = self._draws(msisdn)
            err = mix.errs[bisect_right(mix.cuts, draw_err)]
            p_nnc: str | bool = True if draw_ported < mix.ported else ""
            roam: tuple[str, ...] | bool = True if draw_roaming < mix.roaming else ()
        else:   # no HLR serves it: not allocated, or not a mobile number; the hash is
            # drawn below only if a rule or a latency range needs it
            err, p_nnc, roam = (18 if ntype else 12), "", ()
            draw_ms = draw_pick = None
        for k in t.ported_lens:
            current = t.ported.get(msisdn[:k])
            if current is not None:
                p_nnc = current
                break
        latency, roam_set = None, False
        special = t.special.get(msisdn)
        if special is not None or prule is not None:
            srule, nrule = special or (None, None)
            for rule in (srule, prule, nrule):
                if rule is not None:
                    if rule.err is not None:
                        err = rule.err
                    if rule.nnc is not None:
                        nnc = rule.nnc
                    if rule.p_nnc is not None:
                        p_nnc = rule.p_nnc
                    if rule.roam is not None:
                        roam, roam_set = rule.roam, True
                    if rule.latency is not None:
                        latency = rule.latency

        if p_nnc is True:
            if draw_pick is None:
                draw_pick = self._draws(msisdn)[4]
            p_nnc = self._port(region, nnc, draw_pick)
        if p_nnc == nnc:
            p_nnc = ""
        r_cc = r_nnc = ""
        if roam is True:
            if roam_set or err == 0:   # only a registered subscriber has a visited network
                if draw_pick is None:
                    draw_pick = self._draws(msisdn)[4]
                r_cc, r_nnc = self._visit(cc, draw_pick)
        elif roam:
            r_cc, r_nnc = roam
        if latency is None:
            seconds = self._timeout_s if err == 14 else self._latency_s
            if seconds is None:
                latency = self._timeout if err == 14 else self._latency
        if latency is not None:
            lo, hi = latency
            if lo != hi and draw_ms is None:
                draw_ms = self._draws(msisdn)[3]
            seconds = (lo if lo == hi else lo + draw_ms % (hi - lo + 1)) / 1000
        res = _new(HlrResult)
        # p_nnc is a network (str) and seconds a delay by now: the branches above decided both.
        _init(res, msisdn, cc, nnc, err, p_nnc != "", p_nnc, r_cc != "", r_cc, r_nnc, seconds,  # type: ignore[arg-type]
              _MAP_ERROR_OF[err])
        return res

    def result_fields(self, dest: Destination) -> tuple[Any, ...]:
        """resolve(dest) as a tuple, in HlrResult's field order."""
        r = self.resolve(dest)
        return (r.msisdn, r.cc, r.nnc, r.err, r.ported, r.p_nnc, r.roaming, r.r_cc, r.r_nnc, r.latency,
                r.map_error)

    def lookup(self, destination_addr: str, ton: int = 1, npi: int = 1) -> HlrResult | None:
        dest = self.parse(destination_addr, ton, npi)
        return None if dest is None else self.resolve(dest)

    def _hashlib_draws(self, msisdn: str) -> tuple[int, int, int, int, int]:
        """The number's seeded hash as (outcome, ported, roaming, latency, pick) draws
        (``self._draws``: in C when built, the same values)."""
        h = self._h0.copy()
        h.update(msisdn.encode())
        return _hash_fields(h.digest())

    def _port(self, region: str, nnc: str, pick: int) -> str:
        """Another network of the same country, "" if it has no other (pick: hash bits
        96-127)."""
        others = self._others.get((region, nnc))
        if others is None:   # nnc is none of the region's networks (or no such region)
            r = self._regions.get(region)
            others = r.networks if r else ()
        return others[pick % len(others)] if others else ""

    def _visit(self, cc: str, pick: int) -> tuple[str, str]:
        """A network abroad: a popular destination other than the home country (pick:
        hash bits 96-127)."""
        abroad = self._abroad.get(cc, self._abroad_any)
        r = abroad[(pick >> 8) % len(abroad)]
        return r.cc, r.networks[(pick >> 16) % len(r.networks)]
