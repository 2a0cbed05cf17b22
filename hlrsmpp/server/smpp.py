"""The asyncio adapter of the SMPP listener: one ``SmppProtocol`` per TCP
connection around a sans-IO ``SmscSession``, which frames, counts, traces and
produces every SMPP byte; this module moves bytes between the socket and the
session and takes the decisions the protocol leaves to the server (who may bind,
what a submission costs, what a query finds). The session rule (per account one
receiving session, Rx or TRx, and up to ``max_tx`` transmitters) is the
deployment's ``SessionRegistry``.

Work is batched per ``data_received``: every PDU that arrived (a flood's read is
decided 4 KiB per turn of the loop, so that one flooding session does not hold up
the others) is decided, the accepted lookups go into one group commit, and their
submit_sm_resp go out in one write once it is durable.

The session says which commands each state takes and names the event each is
(``EVENTS``); beyond submit_sm and deliver_sm_resp (the two of every lookup, inline in
``_on_events``) each event goes to its handler here, ``_on_`` and its name, which
answers through the session.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from ..accounts import Refusal, smpp_status_of
from ..smpp.codec import Command, Pdu, SubmitSm
from ..smpp.session import EVENTS, BindMode, RefusedBind, SmscSession, State
from ..smpp.status import Status
from .. import metrics
from ..domain import Lookup
from .multi import submit_to_each
from .sms import SmsMessage
from .tls import peer_subject

log = structlog.get_logger("hlrsmpp.smpp")
# Input of one session decided per turn of the loop. A read brings up to 256 KiB (some
# 5,000 submit_sm from a flooding ESME): decided at once, every other session would wait
# for all of them. The rest waits, unread, for the next turns; the sessions' input
# interleaves. An ESME within its window never sends this much at once: a read over
# _FLOOD is a flood, decided _SLICE at a time (some 90 submit_sm, well under a
# millisecond); the reads of an ESME within its window stay whole.
_FLOOD = 16384
_SLICE = 4096


class SmppProtocol(asyncio.Protocol):
    """One ESME connection."""

    __slots__ = ("server", "session", "transport", "peer_ip", "peer_port", "account", "outbox", "last_rx",
                 "connected_at", "last_probe", "paused", "log", "closed", "unanswered", "delayed",
                 "pdus_in", "flushing", "tarpitted", "probes_unanswered", "backlog", "sms")

    def __init__(self, server):
        self.server = server
        cfg = server.cfg["smpp"]
        # Every PDU in and out is counted by command id and status (names at scrape time).
        self.session = SmscSession(cfg["max_pdu_size"], cfg["system_id"], metrics.STATS.pdus_in,
                                   metrics.STATS.pdus_out)
        self.transport = None
        self.peer_ip = "?"
        self.peer_port = 0
        self.account = None
        self.outbox = None
        self.sms = None  # the SmsCenter, for an SMS account's session
        self.paused = False
        self.closed = False
        self.log = log
        self.unanswered = 0   # accepted submit_sm whose resp is not written yet
        self.delayed: dict[int, float] = {}  # test bench: sequence -> resp delay
        self.pdus_in = 0      # counted only while the test bench is active
        self.flushing = False  # the session's output goes out at the end of this turn
        self.tarpitted = False  # a misbehaving peer: its answers wait, it is not read
        self.probes_unanswered = 0  # our enquire_link in a row with nothing received since
        self.backlog: memoryview | None = None  # input read but left for the next turns (_SLICE)

    # ------------------------------------------------------ asyncio hooks
    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer_ip, self.peer_port = peer[0], peer[1]
        self.last_rx = self.connected_at = self.last_probe = time.monotonic()
        if not self.server.admit_connection(self):   # counted and logged by the gate
            self.closed = True
            transport.abort()
            return
        self.log = log.bind(peer=self.peer_ip)
        limit = self.server.cfg["smpp"]["max_unanswered_writes"]
        transport.set_write_buffer_limits(high=limit, low=limit // 4)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.server.forget(self)
        reason = self.session.close_reason or (repr(exc) if exc else "peer closed")
        if self.account is not None:
            self.log.info("session_closed", reason=reason)
        else:  # never bound: port scanners, health probes, refused binds
            self.log.debug("connection_closed", reason=reason)

    def pause_writing(self) -> None:
        # The peer does not read what we send: stop reading what it sends, so a
        # client that floods submit_sm without reading holds at most the buffer limit.
        self.paused = True
        if not self.closed:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if not self.closed and not self.tarpitted and self.backlog is None:
            self.transport.resume_reading()
        if self.outbox is not None and self.outbox.receiver is self:
            self.outbox.pump()

    def eof_received(self):
        return False

    def flush(self) -> None:
        """Send what the session has to send at the end of this turn of the loop: all
        of it (resps of several commits, receipts, acks) in ONE write. Order holds
        across sessions too: flushes run in the order they were asked for, so a
        submit_sm_resp still leaves before the receipt asked for after it."""
        if not self.flushing and self.session.outgoing and not self.closed:
            self.flushing = True
            self.server.loop.call_soon(self._uncork)

    def _uncork(self) -> None:
        self.flushing = False
        if self.tarpitted or self.closed:  # sent when the tarpit lets go
            return
        data = self.session.data_to_send()
        if data:
            self.transport.write(data)

    @property
    def tracer(self):
        """The PduTrace of this session while it is traced (set by the server)."""
        return self.session.tracer

    @tracer.setter
    def tracer(self, tracer) -> None:
        self.session.tracer = tracer

    # ----------------------------------------------------------- input
    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        if self.backlog is not None:  # after what is still waiting (a read under way)
            self.backlog = memoryview(bytes(self.backlog) + data)
            return
        if len(data) > _FLOOD:
            self.backlog = memoryview(data)[_SLICE:]  # sliced without copying the rest
            data = data[:_SLICE]
            self.transport.pause_reading()
            self.server.loop.call_soon(self._next_slice)
        self._decide(data)

    def _next_slice(self) -> None:
        """The next part of a large read, one turn of the loop after the last."""
        if self.closed or self.tarpitted:  # the tarpit goes on when it lets go
            return
        backlog = self.backlog
        assert backlog is not None
        data = bytes(backlog[:_SLICE])
        if len(backlog) > _SLICE:
            self.backlog = backlog[_SLICE:]
            self.server.loop.call_soon(self._next_slice)
        else:
            self.backlog = None
            if not self.paused:
                self.transport.resume_reading()
        self._decide(data)

    def _decide(self, data: bytes) -> None:
        session = self.session
        violations = session.violations
        self._on_events(session.receive_data(data), violations)
        # PDUs pipelined behind a bind the registry answered at once.
        while session.has_input and not self.tarpitted:
            self._on_events(session.receive_data(b""), session.violations)

    def _on_events(self, events: list[Any], violations: int) -> None:
        """Decide on the PDUs ``receive_data`` returned (a submit_sm: a ``codec.SubmitSm``);
        ``violations`` is the session's count before it framed them."""
        session = self.session
        # The accepted lookups of this batch and their submit_sm sequences, in step.
        sequences: list[int] = []
        held: list[Lookup] = []
        texts: list[SmsMessage] = []  # an SMS account's accepted messages (their sequences: ``sequences``)
        answers: list[Pdu] = []  # deliver_sm_resp: settled together after the batch
        if events:
            submit = Command.SUBMIT_SM
            resp = Command.DELIVER_SM_RESP
            server = self.server
            engine = server.engine
            account = self.account
            # The test bench and the window cost one test per batch when unused.
            faults = server.faults if server.faults.active else None
            window = server.submit_window - self.unanswered if server.submit_window else None
            for pdu in events:
                cmd = pdu.command
                if cmd == submit:
                    if window is not None and len(held) >= window:
                        session.submit_sm_resp(pdu.sequence, server.submit_window_status)
                        metrics.STATS.refusals["smpp", "submit_window"] += 1
                        continue
                    if faults is not None and self._submit_fault(pdu, faults):
                        continue
                    if self.sms is not None:
                        r = self.sms.submit_sm(self, pdu, time.time())
                        if r.__class__ is SmsMessage:
                            sequences.append(pdu.sequence)
                            texts.append(r)
                        else:
                            session.submit_sm_resp(pdu.sequence, smpp_status_of(r))
                        continue
                    r = engine.submit(account, pdu.destination_addr, pdu.dest_addr_ton, pdu.dest_addr_npi)
                    if r.__class__ is Lookup:
                        sequences.append(pdu.sequence)
                        held.append(r)
                    else:
                        session.submit_sm_resp(pdu.sequence, smpp_status_of(r))
                elif cmd == resp:
                    answers.append(pdu)
                elif self.sms is not None and cmd in _SMS_COMMANDS:
                    getattr(self.sms, _SMS_COMMANDS[cmd])(self, pdu)
                else:
                    HANDLERS[cmd](self, pdu)
            if faults is not None:
                self._session_fault(len(events), faults)
        if session.violations != violations:
            self.tarpit()
        self.flush()
        if held:
            self.unanswered += len(held)
            self.server.journal.after_commit(lambda ok: self._committed(sequences, held, ok))
        if texts:
            self.server.journal.after_commit(lambda ok: self.sms.committed(self, sequences, texts, ok))
        if answers:
            self.outbox.acknowledge_all(answers)
            self.outbox.pump()
        if session.state is State.CLOSED:
            self._close_after_flush()

    def _committed(self, sequences: list[int], held: list[Lookup], ok: bool) -> None:
        """The lookups are durable: answer, then hand their receipts over."""
        server = self.server
        self.unanswered -= len(held)
        if not ok:
            for lookup in held:
                server.engine.abandon(self.account, lookup)
            self.session.submit_sm_failed(sequences, Status.RSYSERR)
            self.flush()
            return
        if self.delayed:
            sequences, held = self._hold_delayed(sequences, held)
        self.session.submit_sm_resps(sequences, held)
        self.flush()
        # The receipts may go out now: their submit_sm_resp have been written.
        server.deliver(self.account.system_id, held)

    # ------------------------------------------------------- test bench
    def _submit_fault(self, pdu: SubmitSm, faults) -> bool:
        """Apply a submit_sm fault; True when the PDU is fully handled by it."""
        fault = faults.on_submit(self.account.system_id, pdu.destination_addr)
        if fault is None:
            return False
        action = fault.action
        metrics.STATS.faults[action] += 1
        if action == "status":
            self.session.submit_sm_resp(pdu.sequence, fault.status)
        elif action == "generic_nack":
            self.session.generic_nack(pdu.sequence, fault.status)
        elif action == "no_response":
            pass
        elif action == "delay_response":
            # The lookup is made; only its answer (and so its receipt) waits.
            self.delayed[pdu.sequence] = fault.delay_seconds(f"{pdu.sequence}:{pdu.destination_addr}")
            return False
        return True

    def _hold_delayed(self, sequences: list[int], held: list[Lookup]) -> tuple[list[int], list[Lookup]]:
        ready_seqs, ready = [], []
        for seq, lookup in zip(sequences, held):
            delay = self.delayed.pop(seq, None)
            if delay is None:
                ready_seqs.append(seq)
                ready.append(lookup)
            else:
                self.server.loop.call_later(delay, self._committed_late, seq, lookup)
        return ready_seqs, ready

    def _committed_late(self, seq: int, lookup: Lookup) -> None:
        self.unanswered += 1
        self._committed([seq], [lookup], True)

    def _session_fault(self, received: int, faults) -> None:
        self.pdus_in += received
        fault = faults.session_limit(self.account.system_id) if self.account is not None else None
        if fault is None or self.pdus_in < fault.after or self.closed:
            return
        metrics.STATS.faults[fault.action] += 1
        if fault.action == "close":
            self.session.close_reason = "fault: close"
            self._close_after_flush()
        elif self.session.state is State.BOUND:
            self.unbind()

    # ------------------------------------------------- the other commands
    def _on_unbind(self, pdu: Pdu) -> None:
        self.log.info("unbind_received")  # the session answered it and closes

    def _on_cancel_sm(self, pdu: Pdu) -> None:
        self.session.respond(pdu, Status.RCANCELFAIL)  # a lookup cannot be recalled

    def _on_replace_sm(self, pdu: Pdu) -> None:
        self.session.respond(pdu, Status.RREPLACEFAIL)

    def _on_generic_nack(self, pdu: Pdu) -> None:
        # The ESME rejected one of our PDUs (a deliver_sm): retry it later.
        if self.outbox is not None:
            self.outbox.acknowledge(pdu.sequence, pdu.status or Status.RSYSERR)

    def _on_data_sm_resp(self, pdu: Pdu) -> None:
        if self.outbox is not None:
            self.outbox.acknowledge(pdu.sequence, pdu.status)

    # ----------------------------------------------------------- binding
    def _on_bind(self, pdu: Pdu) -> None:
        server = self.server
        mode = BindMode.of(pdu.command)
        if pdu.__class__ is RefusedBind:  # the session's rule (the version), answered already
            self._bind_counted(pdu, mode, Status.RBINDFAIL, pdu.reason)
            return
        params = pdu.params
        book, now = server.book, time.time()
        refusal, account = book.identify(params["system_id"], self.peer_ip, now,
                                         peer_subject(self.transport))
        if refusal is None:
            known = book.password_known(account, params["password"])
            if known is None:
                # A password this process has not verified yet: the full check (scrypt,
                # tens of ms) on a worker thread; the session waits, the loop does not.
                server.loop.create_task(self._bind_checked(pdu, mode, account))
                return
            refusal, account = book.conclude(account, known, params["system_type"], self.peer_ip, now)
        self._bind_decided(pdu, mode, refusal, account)

    async def _bind_checked(self, pdu: Pdu, mode: BindMode, account) -> None:
        server, params = self.server, pdu.params
        try:
            ok = await server.check_password(account, params["password"])
        except Exception as err:  # the KDF threads are gone (stopping)
            self.log.error("password_check_failed", error=repr(err))
            ok = None
        if self.closed:
            return
        if ok is None:
            self._bind_refused(pdu, mode, Status.RSYSERR, "password_check_failed")
        else:
            refusal, account = server.book.conclude(account, ok, params["system_type"], self.peer_ip,
                                                    time.time())
            self._bind_decided(pdu, mode, refusal, account)
        self.flush()
        if self.session.has_input and not self.tarpitted:  # what the ESME pipelined behind its bind
            self.data_received(b"")

    def _bind_decided(self, pdu: Pdu, mode: BindMode, refusal, account) -> None:
        server = self.server
        if refusal is not None:
            if refusal in _GUESSES and server.book.guessing(self.peer_ip, time.time()):
                self.tarpit()  # the first mistyped password is answered at once
            self._bind_refused(pdu, mode, refusal.smpp_status, refusal.name.lower())
            return
        claim = server.registry.claim(account, mode, self)
        if claim.done():  # decided here: a pipelined submit_sm finds the session bound
            self._claimed(pdu, mode, account, claim.result())
        else:
            # A remote registry: until it answers, a second bind gets ESME_RALYBND
            # (the session machine knows a bind is pending).
            claim.add_done_callback(lambda answer: self._claim_answered(pdu, mode, account, answer))

    def _claim_answered(self, pdu: Pdu, mode: BindMode, account, claim) -> None:
        if claim.cancelled():  # the server stops
            return
        try:
            status = claim.result()
        except Exception as err:  # the shared registry is unreachable
            self.log.error("registry_failed", error=repr(err))
            status = Status.RSYSERR
        if self.closed:
            if not status:
                self.server.registry.release(account.system_id, self)
            return
        self._claimed(pdu, mode, account, status)
        self.flush()
        if self.session.has_input:  # what the ESME pipelined behind its bind
            self.data_received(b"")

    def _claimed(self, pdu: Pdu, mode: BindMode, account, status: int) -> None:
        if status:
            self._bind_refused(pdu, mode, status, "session_rule")
        else:
            self._bound(pdu, mode, account)

    def _bind_refused(self, pdu: Pdu, mode: BindMode, status: int, reason: str) -> None:
        self._bind_counted(pdu, mode, status, reason)
        self.session.reject_bind(pdu, status)

    def _bind_counted(self, pdu: Pdu, mode: BindMode, status: int, reason: str) -> None:
        metrics.STATS.binds[mode.label, reason] += 1
        # Never log the password; the system_id is what an operator needs.
        self.log.info("bind_refused", system_id=pdu.params["system_id"], mode=mode.label,
                      status=Status(status).label, reason=reason)

    def _bound(self, pdu: Pdu, mode: BindMode, account) -> None:
        server = self.server
        metrics.STATS.binds[mode.label, "ok"] += 1
        self.account = account
        server.trace_session(self, pdu)
        self.session.accept_bind(pdu)
        self.log = self.log.bind(system_id=account.system_id, mode=mode.label)
        self.log.info("session_bound", interface_version=hex(pdu.params["interface_version"]))
        self.outbox = server.outboxes[account.system_id]
        self.sms = server.sms if account.settings.service == "sms" else None
        if mode & BindMode.RX:
            server.attach_receiver(self)

    # ----------------------------------------------------------- queries
    def _on_query_sm(self, pdu: Pdu) -> None:
        try:
            lookup_id = int(pdu.params["message_id"])
        except ValueError:
            lookup_id = -1
        row = self.server.store.lookup(lookup_id) if 0 <= lookup_id < 1 << 63 else None
        if row is None or row["system_id"] != self.account.system_id:
            self.session.respond(pdu, Status.RQUERYFAIL)
            return
        lookup = Lookup.from_row(row)
        state = lookup.message_state(time.time())
        final = "" if state == 1 else time.strftime("%y%m%d%H%M%S", time.gmtime(lookup.done)) + "000+"
        self.session.respond(pdu, 0, {
            "message_id": pdu.params["message_id"], "final_date": final,
            "message_state": state, "error_code": lookup.err if state != 1 else 0})

    def _on_submit_multi(self, pdu: Pdu) -> None:
        """One lookup per SME destination, all in one commit; failures in unsuccess_sme."""
        engine, account = self.server.engine, self.account
        submit_to_each(self, pdu, Lookup,
                       lambda ton, npi, addr, lookup_id: engine.submit(account, addr, ton, npi,
                                                                       lookup_id=lookup_id),
                       lambda lookup: engine.abandon(account, lookup),
                       lambda accepted: self.server.deliver(account.system_id, accepted))

    def _on_data_sm(self, pdu: Pdu) -> None:
        """data_sm is a submission too: the same lookup, answered with data_sm_resp."""
        p = pdu.params
        r = self.server.engine.submit(self.account, p["destination_addr"], p["dest_addr_ton"], p["dest_addr_npi"])
        if r.__class__ is not Lookup:
            self.session.respond(pdu, smpp_status_of(r))
            return

        def committed(ok: bool) -> None:
            if not ok:
                self.server.engine.abandon(self.account, r)
                self.session.respond(pdu, Status.RSYSERR)
                self.flush()
                return
            self.session.respond(pdu, 0, {"message_id": str(r.id)})
            self.flush()
            self.server.deliver(self.account.system_id, [r])

        self.server.journal.after_commit(committed)

    # ---------------------------------------------------------- closing
    def _close_after_flush(self) -> None:
        self.server.release(self)
        if not self.closed and not self.tarpitted:  # else the tarpit closes it
            self._uncork()
            self.closed = True
            self.transport.close()  # flushes what is buffered, then closes

    def tick(self, now: float, timers: dict) -> None:
        """Called about once a second by the server: the SMPP timers."""
        session = self.session
        if session.state is State.OPEN and now - self.connected_at > timers["session_init_timeout"]:
            session.close_reason = "session_init_timeout"
            self.abort()
            return
        idle = now - self.last_rx
        if idle > timers["inactivity_timeout"]:
            session.close_reason = "inactivity_timeout"
            self.abort()
            return
        interval = timers["enquire_link_interval"]
        if session.state is State.BOUND and idle > interval and now - self.last_probe > interval:
            # Nothing at all since the last probe: it went unanswered. A frozen ESME (its
            # process stopped, its TCP connection up) would hold its slot until the
            # inactivity timeout; closed, its account can bind again.
            if self.last_rx < self.last_probe:
                self.probes_unanswered += 1
                if self.probes_unanswered >= timers["enquire_link_unanswered"] > 0:
                    self.drop("enquire_link_unanswered")
                    return
            else:
                self.probes_unanswered = 0
            self.probe(now)

    def probe(self, now: float) -> None:
        self.session.enquire_link()
        self.flush()
        self.last_probe = now

    def receipts_unanswered(self, now: float, timeout: float) -> bool:
        """A deliver_sm went unanswered for ``timeout`` and nothing else came meanwhile:
        probe at once rather than after the idle interval; when the probe goes
        unanswered for ``timeout`` too, the receiver is frozen: close it (True).
        A live ESME that lost one answer answers the probe and keeps its session."""
        if self.last_rx >= self.last_probe:
            self.probe(now)
            return False
        if now - self.last_probe > timeout:
            self.drop("deliver_sm_unanswered")
            return True
        return False

    # ----------------------------------------------------------- tarpit
    def tarpit(self) -> None:
        """Answer a misbehaving peer ``smpp.tarpit`` seconds late and read nothing from
        it meanwhile. Such clients reconnect as soon as they are answered or cut off:
        held, each costs one connection per interval instead of thousands a second,
        and the server's core stays with the ESMEs that behave."""
        delay = self.server.cfg["smpp"]["tarpit"]
        if not delay or self.tarpitted or self.closed:
            return
        self.tarpitted = True
        metrics.STATS.tarpitted += 1
        self.transport.pause_reading()
        self.server.loop.call_later(delay, self._untarpit)

    def _untarpit(self) -> None:
        self.tarpitted = False
        if self.closed:
            return
        self._uncork()
        if self.session.state is State.CLOSED:
            self._close_after_flush()
            return
        if self.backlog is not None:
            self._next_slice()
        elif not self.paused:
            self.transport.resume_reading()
        if self.session.has_input:
            self.data_received(b"")

    def unbind(self) -> None:
        self.session.unbind()
        self.flush()

    def outbind(self, system_id: str, password: str) -> None:
        self.session.outbind(system_id, password)
        self.flush()

    def drop(self, reason: str) -> None:
        """Close a session that stopped answering; its slot is free at once."""
        self.session.close_reason = reason
        self.server.release(self)
        self.abort()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.abort()


# What an SMS account's session sends to the SMSC (server/sms.py), by the method taking it.
_SMS_COMMANDS = {Command.QUERY_SM: "query", Command.SUBMIT_MULTI: "submit_multi", Command.DATA_SM: "data_sm",
                 Command.CANCEL_SM: "cancel", Command.REPLACE_SM: "replace"}
_GUESSES = frozenset({Refusal.BAD_SYSTEM_ID, Refusal.BAD_PASSWORD, Refusal.IP_BANNED})

#: The handler of each event the session hands over (``EVENTS`` in smpp/session.py, where
#: the session decides which states take which command), beyond the two of every lookup
#: (submit_sm, deliver_sm_resp) decided inline in ``_on_events``: ``_on_`` and the
#: event's name. It answers through ``proto.session``.
HANDLERS = {command: getattr(SmppProtocol, "_on_" + event) for command, event in EVENTS.items()
            if command is not Command.SUBMIT_SM and command is not Command.DELIVER_SM_RESP}
