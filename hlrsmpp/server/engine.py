"""The lookup engine SMPP and HTTP share: parse → admit (limits, charge) →
resolve → record. A lookup costs and counts the same whichever way it came.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

from ..accounts import Account, AccountBook, Refusal
from ..smpp.status import Status
from .. import metrics
from ..domain import PENDING_NONE, PENDING_RECEIPT, Lookup
from .receipts import Outbox

if TYPE_CHECKING:
    from ..hlr.resolver import Destination, Resolver
    from ..ids import IdGenerator
    from .journal import Journal

#: Failures on our side of the HLR query: the lookup is refunded: the customer does not pay for our failure.
REFUNDED_ERRS = frozenset({14, 15, 16, 17})


class LookupEngine:
    def __init__(self, resolver: Resolver, book: AccountBook, journal: Journal, ids: IdGenerator,
                 outboxes: dict[str, Outbox], max_queue: int):
        self.resolver = resolver
        self.book = book
        self.journal = journal
        self.ids = ids
        self.outboxes = outboxes
        self.max_queue = max_queue

    def submit(self, account: Account, destination_addr: str, ton: int = 1, npi: int = 1,
               channel: str = "smpp", batch_id: int | None = None,
               lookup_id: int | None = None) -> Lookup | Status | Refusal:
        """Accept (charge, record) or refuse one lookup. Accepted lookups are in the
        journal; they are durable once its next commit completes."""
        dest = self.resolver.parse(destination_addr, ton, npi)
        if dest is None:
            metrics.STATS.refusals[channel, "invalid_destination"] += 1
            return Status.RINVDSTADR
        receipt = channel == "smpp"
        if receipt:
            box = self.outboxes[account.system_id]
            if box.size >= self.max_queue:
                metrics.STATS.refusals[channel, "queue_full"] += 1
                return Status.RMSGQFUL
        now = time.time()
        refusal = self.book.admit(account, dest.cc, now)
        if refusal is not None:
            metrics.STATS.refusals[channel, refusal.name.lower()] += 1
            return refusal
        if receipt:
            box.size += 1
        return self._accept(account, dest, now, channel, batch_id, lookup_id,
                            PENDING_RECEIPT if receipt else PENDING_NONE)

    def _accept(self, account: Account, dest: Destination, now: float, channel: str, batch_id: int | None,
                lookup_id: int | None, pending: int) -> Lookup:
        """An admitted (charged) lookup: resolve, refund our own failures, record."""
        resolver = self.resolver
        fields = resolver.fast_fields(dest)   # in C for most numbers; None: resolve() decides
        msisdn, cc, nnc, err, ported, p_nnc, roaming, r_cc, r_nnc, latency, map_error = \
            fields if fields is not None else resolver.result_fields(dest)
        cost = account.usage.price
        if err in REFUNDED_ERRS and cost:
            self.book.refund(account, cost)
            cost = 0
        # The history row (LOOKUP_COLUMNS order) first, and the Lookup made of it: one
        # tuple per lookup, read from locals, not a second pass over the Lookup's slots.
        row = (lookup_id or self.ids.next(now), batch_id, account.system_id, channel, msisdn, now,
               now + latency, cost, err, cc, nnc, int(ported), p_nnc, int(roaming),
               r_cc, r_nnc, map_error, pending)
        self.journal.add_lookup(row)
        stats = metrics.STATS
        stats.lookups[channel, err] += 1
        stats.account_lookups[row[2]] += 1
        return Lookup(*row)

    def submit_many(self, account: Account, addrs: list[str], channel: str = "http",
                    batch_id: int | None = None, first_id: int | None = None,
                    ) -> list[Lookup | Status | Refusal]:
        """A batch (HTTP: up to 100 numbers) admitted as ONE request, per
        ``AccountBook.admit_many``: invalid numbers get RINVDSTADR and uncovered ones
        NO_COVERAGE (both free); the rest is all-or-nothing on limits and credit.
        No receipts (``channel`` is not smpp). Lookup ids are ``first_id + k`` when given."""
        out: list[Lookup | Status | Refusal | None] = []
        dests = []
        for addr in addrs:
            dest = self.resolver.parse(addr, 1, 1)
            if dest is None:
                metrics.STATS.refusals[channel, "invalid_destination"] += 1
                out.append(Status.RINVDSTADR)
            else:
                out.append(None)
                dests.append(dest)
        if not dests:
            return cast("list[Lookup | Status | Refusal]", out)
        now = time.time()
        admitted = iter(self.book.admit_many(account, [d.cc for d in dests], now))
        dests_it = iter(dests)
        for k, slot in enumerate(out):
            if slot is not None:
                continue
            dest, refusal = next(dests_it), next(admitted)
            if refusal is not None:
                metrics.STATS.refusals[channel, refusal.name.lower()] += 1
                out[k] = refusal
                continue
            out[k] = self._accept(account, dest, now, channel, batch_id,
                                  first_id + k if first_id is not None else None, PENDING_NONE)
        return cast("list[Lookup | Status | Refusal]", out)  # every None filled in above

    def abandon(self, account: Account, lookup: Lookup) -> None:
        """The commit holding ``lookup`` failed: give the credit back, forget it."""
        if lookup.cost:
            self.book.refund(account, lookup.cost)
        if lookup.pending:
            self.outboxes[account.system_id].size -= 1
