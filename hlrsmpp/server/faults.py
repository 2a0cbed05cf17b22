"""The ESME test bench: protocol faults on demand, reproducibly.

A fault rule says WHO (an account, a destination prefix, or everyone), HOW
OFTEN (every time, or a seeded percentage: the same traffic gives the same
faults) and WHAT (one action). Rules live in the YAML (`faults:`) and can be
replaced at run time through the admin API. Faults are timers and flags,
never sleeps: a fault on one session never blocks another.

Actions on submit_sm (the lookup is neither made nor charged unless said):
  status         answer submit_sm_resp with ``status`` (e.g. RTHROTTLED)
  generic_nack   answer generic_nack (``status``, default RSYSERR)
  no_response    never answer
  delay_response make the lookup, answer after ``delay_ms`` (fixed or [min, max])
  close          close the connection once the session has received ``after`` PDUs
  unbind         send unbind once the session has received ``after`` PDUs
Actions on receipts (the lookup is made and charged as usual):
  duplicate_receipt  deliver the receipt a second time after it is acknowledged
  out_of_order       deliver receipts in reverse order within each window
  delay_receipt      deliver ``delay_ms`` after the lookup is done
  withhold_receipts  hold receipts until the ESME binds a new receiving session
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Mapping

import structlog

from ..smpp.status import Status

log = structlog.get_logger("hlrsmpp.server")

SUBMIT_ACTIONS = frozenset({"status", "generic_nack", "no_response", "delay_response", "close", "unbind"})
RECEIPT_ACTIONS = frozenset({"duplicate_receipt", "out_of_order", "delay_receipt", "withhold_receipts"})
ACTIONS = SUBMIT_ACTIONS | RECEIPT_ACTIONS


class FaultError(ValueError):
    """A fault rule written wrong."""


@dataclass
class Fault:
    action: str
    account: str | None = None
    prefix: str = ""
    percent: float = 100.0
    status: int = Status.RSYSERR
    delay: tuple[float, float] = (0.0, 0.0)  # seconds
    after: int = 0
    seed: int = 0
    _draws: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def from_config(cls, d: dict[str, Any], index: int = 0) -> "Fault":
        where = f"faults[{index}]"
        if not isinstance(d, dict):
            raise FaultError(f"{where}: must be a mapping")
        unknown = set(d) - {"action", "account", "prefix", "percent", "status", "delay_ms", "after", "seed"}
        if unknown:
            raise FaultError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        action = d.get("action")
        if action not in ACTIONS:
            raise FaultError(f"{where}: action must be one of {', '.join(sorted(ACTIONS))}")
        status = d.get("status", "RSYSERR")
        try:
            status = Status[str(status).upper().removeprefix("ESME_")] if isinstance(status, str) else Status(status)
        except (KeyError, ValueError):
            raise FaultError(f"{where}: unknown status {d.get('status')!r}") from None
        delay = d.get("delay_ms", 0)
        if isinstance(delay, (int, float)):
            delay = (delay, delay)
        try:
            lo, hi = (float(x) / 1000 for x in delay)
        except (TypeError, ValueError):
            raise FaultError(f"{where}: delay_ms is a number or [min, max]") from None
        if lo < 0 or hi < lo:
            raise FaultError(f"{where}: delay_ms must be >= 0 and min <= max")
        percent = float(d.get("percent", 100))
        if not 0 <= percent <= 100:
            raise FaultError(f"{where}: percent must be within 0..100")
        prefix = str(d.get("prefix", "")).lstrip("+")
        if prefix and not prefix.isdigit():
            raise FaultError(f"{where}: prefix must be digits")
        after = int(d.get("after", 0))
        if action in ("close", "unbind") and after < 1:
            raise FaultError(f"{where}: {action} needs after: N (PDUs received) >= 1")
        seed = int(d.get("seed", index))
        return cls(action, d.get("account"), prefix, percent, status, (lo, hi), after, seed,
                   random.Random(seed))

    def matches(self, system_id: str, msisdn: str) -> bool:
        if self.account is not None and self.account != system_id:
            return False
        if self.prefix and not msisdn.lstrip("+").startswith(self.prefix):
            return False
        # A seeded draw per matching PDU: the same traffic gives the same faults.
        return self.percent >= 100 or self._draws.random() * 100 < self.percent

    def delay_seconds(self, key: str) -> float:
        lo, hi = self.delay
        if hi == lo:
            return lo
        h = int.from_bytes(hashlib.blake2b(f"{self.seed}:{key}".encode(), digest_size=8).digest(), "big")
        return lo + (hi - lo) * (h / 2 ** 64)

    def to_config(self) -> dict[str, Any]:
        d: dict[str, Any] = {"action": self.action}
        if self.account is not None:
            d["account"] = self.account
        if self.prefix:
            d["prefix"] = self.prefix
        if self.percent < 100:
            d["percent"] = self.percent
        if self.action in ("status", "generic_nack"):
            d["status"] = Status(self.status).name
        if self.delay != (0.0, 0.0):
            d["delay_ms"] = [self.delay[0] * 1000, self.delay[1] * 1000]
        if self.after:
            d["after"] = self.after
        d["seed"] = self.seed
        return d


class FaultPlan:
    """The rules in force. ``active`` is False when there are none, so the hot
    path pays one attribute test per batch for the whole feature."""

    def __init__(self, rules: list[dict[str, Any]] | None = None):
        self.replace(rules or [])

    def replace(self, rules: list[dict[str, Any]], outboxes: Mapping[str, Any] | None = None) -> None:
        """Put `rules` in force (all checked first: a bad one changes nothing), and turn
        the accounts' `outboxes` out of order where a rule says so."""
        if not isinstance(rules, list):
            raise FaultError("faults: must be a list of rules")
        faults = [Fault.from_config(d, i) for i, d in enumerate(rules)]
        self.submit = [f for f in faults if f.action in SUBMIT_ACTIONS and f.action not in ("close", "unbind")]
        self.session = [f for f in faults if f.action in ("close", "unbind")]
        self.receipt = [f for f in faults if f.action in RECEIPT_ACTIONS]
        self.faults = faults
        self.active = bool(faults)
        if outboxes is not None:
            reverse = {f.account for f in self.receipt if f.action == "out_of_order"}
            for sid, box in outboxes.items():
                box.reverse = None in reverse or sid in reverse
            log.info("faults_replaced", rules=len(faults))

    def on_submit(self, system_id: str, msisdn: str) -> Fault | None:
        for f in self.submit:
            if f.matches(system_id, msisdn):
                return f
        return None

    def on_receipt(self, system_id: str, msisdn: str) -> list[Fault]:
        return [f for f in self.receipt if f.matches(system_id, msisdn)]

    def session_limit(self, system_id: str) -> Fault | None:
        for f in self.session:
            if f.account is None or f.account == system_id:
                return f
        return None

    def to_config(self) -> list[dict[str, Any]]:
        return [f.to_config() for f in self.faults]
