"""A process alone on its store (SQLite): the session rule in its memory, the receipts of
its durable lookups straight into the account's outbox, and the history's retention (a
``Deployment``; the shared one is ``hlrsmpp.redis.cluster.Cluster``)."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .. import metrics
from ..domain import Lookup
from ..accounts.store import Store as SQLiteStore
from ..storage.local import LocalRegistry
from .receipts import Outbox

if TYPE_CHECKING:
    from .app import Server
    from .smpp import SmppProtocol


class Standalone:
    def __init__(self, server: "Server", store: SQLiteStore):
        self.server = server
        self.store = store
        self.node = server.cfg.get("node_id", 0)
        self.registry = LocalRegistry()

    async def start(self) -> None:
        """Nothing to join; the history's retention starts (pruning the store's file)."""
        self.server.start_retention(self.store)

    async def stop(self) -> None:
        """Nothing to give back."""

    def deliver(self, system_id: str, lookups: list[Lookup]) -> None:
        server = self.server
        box = server.outboxes[system_id]
        now = time.time()
        if server.faults.active:
            self._deliver_with_faults(box, lookups, now)
        else:
            for lookup in lookups:
                box.add(lookup, now)
        box.pump()

    def _deliver_with_faults(self, box: Outbox, lookups: list[Lookup], now: float) -> None:
        for lookup in lookups:
            delay = 0.0
            for fault in self.server.faults.on_receipt(box.system_id, lookup.msisdn):
                metrics.STATS.faults[fault.action] += 1
                if fault.action == "duplicate_receipt":
                    lookup.duplicate = True
                elif fault.action == "delay_receipt":
                    delay += fault.delay_seconds(str(lookup.id))
                elif fault.action == "withhold_receipts":
                    lookup.withheld = True
            if lookup.withheld:
                box.withheld.append(lookup)
            else:
                box.add(lookup, now, delay)

    def attach_receiver(self, proto: "SmppProtocol") -> None:
        assert proto.account is not None  # bound
        box = self.server.outboxes[proto.account.system_id]
        box.receiver = proto
        if box.withheld:  # the test bench held them "until the ESME reconnects"
            now = time.time()
            for lookup in box.withheld:
                lookup.withheld = False
                box.add(lookup, now)
            box.withheld.clear()
        self.server.loop.call_soon(box.pump)
