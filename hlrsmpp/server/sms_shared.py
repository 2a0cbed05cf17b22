"""Text messages on a shared (Redis) store: several processes, one deployment.

Any process accepts a message (its record is written with its group commit, see
redis/messages.py); its receipt travels in the account's receipt stream to whichever
process holds the account's receiver, which waits for the message's final state and reads
the message again then (another process may have cancelled or replaced it meanwhile: that
process also tells it, through the stream, so a DELETED receipt goes at once).
query_sm, cancel_sm and replace_sm read the message from Redis, wherever it was accepted;
a change is a compare-and-set on its version.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import structlog

from ..domain import LOOKUP_COLUMNS, Lookup
from ..smpp.codec import Pdu
from ..smpp.status import Status
from ..sms import DELETED, ENROUTE, EXPIRED, outcome_of
from ..sms.times import format_smpp_time

if TYPE_CHECKING:
    from .sms import SmsCenter, SmsMessage

log = structlog.get_logger("hlrsmpp.sms")


class SharedMessages:
    def __init__(self, center: "SmsCenter", messages: Any):
        self.center = center
        self.server = center.server
        self.messages = messages          # the store's RedisMessages
        # The receiver's side: messages whose receipt this process holds, waiting for
        # their final state (by id), and those being read (a change seen meanwhile: again).
        self.waiting: dict[int, SmsMessage] = {}
        self.reading: dict[int, bool] = {}
        self._tasks: set[asyncio.Task] = set()

    def _spawn(self, coro) -> None:
        task = self.server.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sms_shared_failed", error=repr(task.exception()))

    async def _run(self, fn, *args):
        return await self.server.deployment.run(fn, *args)

    # -------------------------------------------------- the receiver's process
    def receive(self, system_id: str, gen: int, lookups: list[Lookup]) -> None:
        """Receipts of text messages from the account's stream (any process accepted them)."""
        from .sms import SmsMessage
        ms = []
        for lookup in lookups:
            m = SmsMessage(*(getattr(lookup, c) for c in LOOKUP_COLUMNS))
            m.gen, m.version, m.entry, m.key, m.tail = gen, -1, None, None, None
            self.waiting[m.id] = m
            ms.append(m)
        self._spawn(self._read(ms))

    def changed(self, ids: list[int]) -> None:
        """Another process changed these messages: read again those waiting here."""
        again = []
        for mid in ids:
            if mid in self.reading:
                self.reading[mid] = True
            m = self.waiting.get(mid)
            if m is not None:
                again.append(m)
        if again:
            self._spawn(self._read(again))

    def due(self, ms: list["SmsMessage"]) -> None:
        """Their final time came: read them once more (a change may not have reached us)."""
        self._spawn(self._read(ms))

    async def _read(self, ms: list["SmsMessage"]) -> None:
        ids = [m.id for m in ms]
        for mid in ids:
            self.reading[mid] = False
        try:
            recs = await self._run(self.messages.get, ids)
        finally:
            changed = {mid for mid in ids if self.reading.pop(mid, False)}
        now = time.time()
        final, again = [], []
        receiving = self.server.deployment.receiving
        waiting = self.waiting
        for m in ms:
            if waiting.get(m.id) is not m:
                continue  # settled meanwhile (a change and its final time read it at once)
            if not receiving(m.system_id, m.gen):
                del waiting[m.id]
                continue  # the receiver went away: the next one's process has it from the stream
            rec = recs.get(m.id)
            if rec is not None and rec.version > m.version:
                (_, m.segments, m.data_coding, m.registered_delivery, m.source_addr, m.text, m.state, m.done,
                 m.version, _) = rec
                m.tail = None
            elif rec is None and m.version < 0:  # no record (past its TTL): as its lookup says
                m.segments, m.data_coding, m.registered_delivery, m.source_addr, m.text = 1, 0, 1, "", ""
                m.state, m.version = outcome_of(m.err).state, 0
                if outcome_of(m.err).retried:
                    m.state = EXPIRED
            if m.id in changed:
                again.append(m)
            elif m.done > now:
                self.center._wake_at(m, now)
            else:
                del waiting[m.id]
                final.append(m)
        if final:
            self.center._finals(final)
        if again:
            await self._read(again)

    # --------------------------------------------- any process: the PDUs
    async def _find(self, account, message_id: str) -> tuple["SmsMessage", Any] | None:
        from .sms import SmsCenter
        try:
            mid = int(message_id)
        except ValueError:
            return None
        if not 0 <= mid < 1 << 63:
            return None
        store = self.server.store
        row = await self._run(store.lookup, mid)
        if row is None or row["system_id"] != account.system_id:
            return None
        rec = await self._run(store.sms, mid)
        if rec is None:
            return None
        m = SmsCenter.rebuild(row, rec)
        m.version = rec.version
        return m, rec

    def query(self, proto, pdu: Pdu) -> None:
        self._spawn(self._query(proto, pdu))

    async def _query(self, proto, pdu: Pdu) -> None:
        found = await self._find(proto.account, pdu.params["message_id"])
        if found is None:
            return _answer(proto, pdu, Status.RQUERYFAIL)
        m, _ = found
        state = m.message_state(time.time())
        _answer(proto, pdu, 0, {
            "message_id": pdu.params["message_id"], "final_date": "" if state == ENROUTE else format_smpp_time(m.done),
            "message_state": state, "error_code": m.receipt_err() if state != ENROUTE else 0})

    def cancel(self, proto, pdu: Pdu) -> None:
        self._spawn(self._cancel(proto, pdu))

    async def _cancel(self, proto, pdu: Pdu) -> None:
        found = await self._find(proto.account, pdu.params["message_id"])
        now = time.time()
        if found is None or now >= found[0].done:
            return _answer(proto, pdu, Status.RCANCELFAIL)
        _, rec = found
        new = rec._replace(state=DELETED, done=now, version=rec.version + 1)
        ok = await self._run(self.messages.change, new, proto.account.system_id, now)
        _answer(proto, pdu, Status.ROK if ok else Status.RCANCELFAIL)

    def replace(self, proto, pdu: Pdu) -> None:
        self._spawn(self._replace(proto, pdu))

    async def _replace(self, proto, pdu: Pdu) -> None:
        p = pdu.params
        found = await self._find(proto.account, p["message_id"])
        now = time.time()
        if found is None or now >= found[0].done or (p["source_addr"] and p["source_addr"] != found[0].source_addr):
            return _answer(proto, pdu, Status.RREPLACEFAIL)
        m, rec = found
        change = self.center.replacement(m, p, now)
        if isinstance(change, Status):
            return _answer(proto, pdu, change)
        text, rd, state, done = change
        new = rec._replace(text=text, registered_delivery=rd, state=state, done=done, version=rec.version + 1)
        ok = await self._run(self.messages.change, new, proto.account.system_id, now)
        _answer(proto, pdu, Status.ROK if ok else Status.RREPLACEFAIL)


def _answer(proto, pdu: Pdu, status: int, params: dict | None = None) -> None:
    if proto.closed:
        return
    proto.session.respond(pdu, status, params)
    proto.flush()
