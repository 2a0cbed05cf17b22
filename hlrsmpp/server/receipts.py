"""Each account's outbox: its receipts on their way to the ESME.

An ``Outbox`` holds an account's receipts from the moment their lookup is
durable until the ESME answers deliver_sm_resp ESME_ROK: ready ones in id
order, the ones in flight on the receiving session (bounded by its window, which grows
with the transmitters feeding it), and
the ones waiting for their HLR latency or a retry. It never drops one except
past the TTL, and that is counted.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable

from ..domain import EXPIRED, Lookup
from .. import metrics

if TYPE_CHECKING:
    import asyncio

    from ..smpp.codec import Pdu


class Outbox:
    """The receipts of one account, and the session they go to."""

    __slots__ = ("system_id", "ready", "inflight", "size", "receiver", "window", "transmitters", "data_coding",
                 "on_ack", "retry_min", "retry_max", "_call_later", "withheld", "reverse", "profile",
                 "acked", "retries", "timeouts", "sms")

    def __init__(self, system_id: str, on_ack: Callable[[list[Lookup], int], None],
                 call_later: Callable[..., asyncio.TimerHandle],
                 window: int = 64, data_coding: int = 3, retry_min: float = 1.0, retry_max: float = 60.0):
        self.system_id = system_id
        self.ready: deque[Lookup] = deque()
        self.inflight: dict[int, tuple[Lookup, float]] = {}
        self.size = 0          # every receipt not yet acknowledged (for ESME_RMSGQFUL)
        self.receiver: Any = None   # the SmppProtocol bound Rx/TRx for this account
        self.window = window
        # The account's bound transmitters (the registry's live set): each feeds the one
        # receiver as much as a transceiver feeds itself, so each adds a window.
        self.transmitters: set[Any] = set()
        self.data_coding = data_coding
        self.on_ack = on_ack
        self.retry_min = retry_min
        self.retry_max = retry_max
        self._call_later = call_later
        self.withheld: list[Lookup] = []  # test bench: until the ESME reconnects
        self.reverse = False              # test bench: each window out of order
        self.profile: Mapping[str, Any] | None = None  # the account's receipt profile (None: standard)
        self.sms = False                  # an SMS account's: its receipts are text messages' (server/sms.py)
        # Metrics, read at scrape time: answered ESME_ROK, sent again after an error
        # status, sent again after no answer within smpp.response_timeout.
        self.acked = self.retries = self.timeouts = 0

    def add(self, lookup: Lookup, now: float, extra: float = 0.0) -> None:
        """A durable lookup: deliver at its done time (plus ``extra``)."""
        delay = lookup.done - now + extra
        if delay > 0.0005:
            self._call_later(delay, self._due, lookup)
        else:
            self.ready.append(lookup)

    def _due(self, lookup: Lookup) -> None:
        self.ready.append(lookup)
        self.pump()

    def pump(self) -> None:
        """Send ready receipts while the receiver's window has room: one write."""
        receiver = self.receiver
        if receiver is None or not self.ready or receiver.paused:
            return
        room = self.window * (1 + len(self.transmitters)) - len(self.inflight)
        if room <= 0:
            return
        ready, inflight = self.ready, self.inflight
        now = time.monotonic()
        sent: list[Lookup] = []
        parts = []
        profile = self.profile
        sms = self.sms
        while room and ready:
            lookup = ready.popleft()
            text, tlvs = lookup.receipt_parts(profile)
            # A text message's receipt comes from the handset to the ESME's address (server/sms.py).
            parts.append((lookup.msisdn, lookup.source_addr, text, tlvs) if sms else  # type: ignore[attr-defined]
                         (lookup.msisdn.encode(), text, tlvs))
            sent.append(lookup)
            room -= 1
        # The session encodes them for its peer (an SMPP 3.3 peer's have no TLVs).
        session = receiver.session
        sequences = (session.deliver_sms_receipts if sms else session.deliver_receipts)(
            parts, self.data_coding, self.reverse)
        for seq, lookup in zip(sequences, sent):
            inflight[seq] = (lookup, now)
        receiver.flush()

    def acknowledge(self, sequence: int, status: int) -> None:
        """One answer to a deliver_sm: deliver_sm_resp, data_sm_resp or generic_nack."""
        lookup = self._answer(self.inflight.pop(sequence, None), status)
        if lookup is not None:
            self.size -= 1
            self.acked += 1
            self.on_ack([lookup], 0)

    def acknowledge_all(self, responses: list[Pdu]) -> None:
        """The deliver_sm_resp of one read, in order: what they acknowledge is settled
        in one ``on_ack`` (one journal entry, one clock read for the metrics)."""
        done = []
        pop = self.inflight.pop
        for pdu in responses:
            entry = pop(pdu.sequence, None)
            if entry is not None and pdu.status == 0 and not entry[0].duplicate:
                done.append(entry[0])
            else:
                lookup = self._answer(entry, pdu.status)
                if lookup is not None:
                    done.append(lookup)
        if done:
            self.size -= len(done)
            self.acked += len(done)
            self.on_ack(done, 0)

    def _answer(self, entry: tuple[Lookup, float] | None, status: int) -> Lookup | None:
        """The lookup whose receipt is now done (ESME_ROK), else None: an answer to
        nothing in flight is counted, an error retries, a test-bench duplicate goes again."""
        if entry is None:
            metrics.STATS.unexpected_resp += 1
            return None
        lookup = entry[0]
        if status:
            self.retries += 1
            self._retry(lookup)
            return None
        if lookup.duplicate:  # test bench: the same receipt, same id, once more
            lookup.duplicate = False
            self.ready.append(lookup)
            return None
        return lookup

    def _retry(self, lookup: Lookup) -> None:
        lookup.attempts += 1
        delay = min(self.retry_min * (2 ** (lookup.attempts - 1)), self.retry_max)
        self._call_later(delay, self._due, lookup)

    def oldest_sent(self) -> float:
        """When the longest-waiting deliver_sm in flight was sent (they are kept in send order)."""
        return next(iter(self.inflight.values()))[1]

    def timed_out(self, deadline: float) -> None:
        """Retry every deliver_sm sent before ``deadline`` and still unanswered."""
        late = [seq for seq, (_, sent) in self.inflight.items() if sent < deadline]
        for seq in late:
            lookup, _ = self.inflight.pop(seq)
            self.timeouts += 1
            self._retry(lookup)

    def expire(self, before: float) -> int:
        """Drop ready receipts submitted before ``before`` (the TTL); count them."""
        expired = []
        ready = self.ready
        while ready and ready[0].submitted < before:
            expired.append(ready.popleft())
        if expired:
            self.size -= len(expired)
            self.on_ack(expired, EXPIRED)
        return len(expired)

    def detach(self, receiver: Any) -> None:
        """The receiver went away: what was in flight goes back first, in id order."""
        if self.receiver is not receiver:
            return
        self.receiver = None
        if self.inflight:
            back = sorted((lk for lk, _ in self.inflight.values()), key=lambda lk: lk.id, reverse=True)
            self.inflight.clear()
            self.ready.extendleft(back)
