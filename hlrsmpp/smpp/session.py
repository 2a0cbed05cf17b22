"""The SMSC side of one SMPP 3.4 session, sans-IO (in the manner of h11).

Feed it bytes with ``receive_data``; its framer (framer.py) cuts them into PDUs,
counting and tracing them; it decodes them, answers on its own everything that
needs no decision of the application (enquire_link, unknown commands, PDUs not
allowed in the current state, malformed bodies, unbind, a bind in a version it
cannot serve), and returns the PDUs that do need one (binds, submissions,
queries, responses to what we sent).

Every byte the server sends is produced here: the application answers through
the session (``accept_bind``, ``submit_sm_resps``, ``deliver_receipts``,
``respond``, ``outbind``...) and the bytes accumulate in ``outgoing``; the caller
drains them with ``data_to_send``, which counts and traces them on their way out.
No sockets, no clocks, no accounts.
"""
from __future__ import annotations

from enum import Enum, IntFlag
from typing import Any

from .codec import (
    BODIES, COMMANDS, HEADER, MAX_PDU_SIZE, Command, DecodeError, Pdu, Tag, U8,
    decode_body, decode_submit_sm, encode, encode_header_only, encode_receipt,
    encode_receipt_smpp33, encode_submit_sm_resp, encode_submit_sm_resps, encode_text_receipt, scan_bound,
)
from .framer import ANY_LENGTH, Counts, Framer, Tap
from .status import Status


#: Commands an SMSC never accepts from an ESME.
_NEVER_FROM_ESME = frozenset({
    Command.OUTBIND, Command.ALERT_NOTIFICATION, Command.DELIVER_SM,
    Command.BIND_RECEIVER_RESP, Command.BIND_TRANSMITTER_RESP,
    Command.BIND_TRANSCEIVER_RESP, Command.SUBMIT_SM_RESP, Command.SUBMIT_MULTI_RESP,
    Command.QUERY_SM_RESP, Command.CANCEL_SM_RESP, Command.REPLACE_SM_RESP,
})
#: ... and from an SMPP 3.3 ESME, the commands 3.3 does not have either: its peer would
#: not read a data_sm_resp, so they get generic_nack ESME_RINVCMDID like any unknown command.
_NEVER_FROM_SMPP33 = _NEVER_FROM_ESME | {Command.DATA_SM, Command.DATA_SM_RESP}


class BindMode(IntFlag):
    TX = 1
    RX = 2
    TRX = 3

    @classmethod
    def of(cls, command: int) -> "BindMode":
        return _BIND_MODE[command]

    @property
    def label(self) -> str:
        return {1: "tx", 2: "rx", 3: "trx"}[self.value]


_BIND_MODE: dict[int, BindMode] = {Command.BIND_TRANSMITTER: BindMode.TX, Command.BIND_RECEIVER: BindMode.RX,
              Command.BIND_TRANSCEIVER: BindMode.TRX}


#: What the session hands the application, by command: the name of the event, which is
#: the name of the application's handler for it. Every other PDU, and these where the
#: state does not take them, the session answers (or drops) alone.
EVENTS: dict[Command, str] = {
    Command.BIND_TRANSMITTER: "bind", Command.BIND_RECEIVER: "bind", Command.BIND_TRANSCEIVER: "bind",
    Command.UNBIND: "unbind", Command.GENERIC_NACK: "generic_nack",
    Command.SUBMIT_SM: "submit_sm", Command.SUBMIT_MULTI: "submit_multi", Command.DATA_SM: "data_sm",
    Command.QUERY_SM: "query_sm", Command.CANCEL_SM: "cancel_sm", Command.REPLACE_SM: "replace_sm",
    Command.DELIVER_SM_RESP: "deliver_sm_resp", Command.DATA_SM_RESP: "data_sm_resp",
}

#: The bind mode a bound session takes each of its commands in: a submission needs a
#: transmitter, the answer to a deliver_sm or data_sm we sent a receiver. A request in a
#: state or mode that does not take it is refused ESME_RINVBNDSTS; such a response dropped.
_NEEDS: dict[Command, BindMode] = {
    Command.SUBMIT_SM: BindMode.TX, Command.SUBMIT_MULTI: BindMode.TX, Command.DATA_SM: BindMode.TX,
    Command.QUERY_SM: BindMode.TX, Command.CANCEL_SM: BindMode.TX, Command.REPLACE_SM: BindMode.TX,
    Command.DELIVER_SM_RESP: BindMode.RX, Command.DATA_SM_RESP: BindMode.RX,
}


class RefusedBind(Pdu):
    """A bind the session refused itself, for a protocol rule (``reason``), and answered
    already: handed over only to be counted and logged; there is nothing to decide."""

    __slots__ = ("reason",)

    def __init__(self, bind: Pdu, reason: str):
        super().__init__(bind.command, bind.sequence, bind.status, bind.params, bind.tlvs)
        self.reason = reason


class State(Enum):
    OPEN = "open"          # connected, not bound
    BOUND = "bound"        # see ``mode``
    UNBINDING = "unbinding"  # we sent unbind, waiting for unbind_resp
    CLOSED = "closed"      # nothing more to read; close once outgoing is written


_SUBMIT_SM, _DELIVER_SM_RESP = Command.SUBMIT_SM, Command.DELIVER_SM_RESP


class SmscSession:
    """SMPP session state machine, server (SMSC) side."""

    __slots__ = ("state", "mode", "can_tx", "can_rx", "interface_version", "outgoing", "_buffer",
                 "_sequence", "max_pdu_size", "system_id", "close_reason", "_bind_pending", "violations",
                 "encode_receipt", "_refused", "_framer", "_sent", "_tracer")

    def __init__(self, max_pdu_size: int = MAX_PDU_SIZE, system_id: str = "hlrsmpp",
                 pdus_in: Counts | None = None, pdus_out: Counts | None = None):
        """``pdus_in`` / ``pdus_out``: tables the PDUs received and sent are counted in
        (by command id and status, see framer.py); None counts nothing."""
        self.state = State.OPEN
        self.mode: BindMode | None = None
        self.can_tx = self.can_rx = False  # plain bools: IntFlag arithmetic per PDU is slow
        self.interface_version = 0x34
        #: The receipt encoder for this peer, chosen at bind (``codec.encode_receipt``'s
        #: arguments): an SMPP 3.3 peer gets its receipts without TLVs.
        self.encode_receipt = encode_receipt
        self._refused = _NEVER_FROM_ESME  # commands answered generic_nack ESME_RINVCMDID
        self.outgoing = bytearray()
        self._framer = Framer(max_pdu_size, pdus_in)
        #: What we send, framed again only to be counted and traced (None: neither).
        self._sent = Framer(ANY_LENGTH, pdus_out) if pdus_out is not None else None
        self._tracer: Tap | None = None
        self._buffer = b""  # whole PDUs framed, waiting behind a bind not yet answered
        self._sequence = 0
        self.max_pdu_size = max_pdu_size
        self.system_id = system_id
        self.close_reason: str | None = None
        #: A bind was handed to the application and is not yet accepted or rejected.
        self._bind_pending = False
        #: Input no well-behaved ESME sends: a framing error, or a PDU before binding
        #: that draws an error. The application slows such a peer down by it.
        self.violations = 0

    # ------------------------------------------------------------ input
    def receive_data(self, data: bytes) -> list[Pdu]:
        """Frame and decode what arrived; return the PDUs the application decides on.

        What follows a bind waits, unread, until the application has answered the
        bind: a submit_sm pipelined right behind it is then judged on a bound
        session. The application calls ``receive_data(b"")`` once it has answered."""
        if self.state is State.CLOSED:
            return []
        if data:
            buf, size = self._framer.feed(data)
            if self._buffer:
                buf = self._buffer + buf[:size]
                size = len(buf)
        else:
            buf = self._buffer
            size = len(buf)
        if self._bind_pending:
            self._buffer = buf[:size] if size < len(buf) else buf
            return []
        pos = 0
        events: list[Pdu] = []
        unpack = HEADER.unpack_from
        # Bound, the run of submit_sm / deliver_sm_resp is read in C when it is built;
        # it stops before any other PDU, which the loop below then takes.
        scan = scan_bound if self.state is State.BOUND and buf.__class__ is bytes else None
        while pos < size:  # whole PDUs only, their command_length checked by the framer
            if scan is not None:
                pos = scan(buf, pos, self.max_pdu_size, self.can_tx, self.can_rx, events)
                if pos >= size:
                    break
            length, command_id, status, sequence = unpack(buf, pos)
            end = pos + length
            pdu = self._handle(buf, pos, end, command_id, status, sequence)
            pos = end
            if pdu is not None:
                events.append(pdu)
                if self._bind_pending:
                    break
            if self.state is State.CLOSED:  # type: ignore[comparison-overlap]  # _handle may close it
                self._buffer = b""
                return events
        self._buffer = buf[pos:size] if pos < size else b""
        broken = self._framer.broken
        if broken is not None and not self._buffer and not self._bind_pending:
            # The stream can no longer be framed, in any state.
            self.violations += 1
            self.outgoing += encode_header_only(Command.GENERIC_NACK, Status.RINVCMDLEN, HEADER.unpack(broken)[3])
            self._close(f"command_length {HEADER.unpack(broken)[0]}")
        return events

    @property
    def has_input(self) -> bool:
        """A whole PDU (or a header to refuse) waits behind a bind now answered:
        ``receive_data(b"")`` will make progress on it."""
        if self._bind_pending or self.state is State.CLOSED:
            return False
        return bool(self._buffer) or self._framer.broken is not None

    def _handle(self, buf: bytes, pos: int, end: int, command_id: int, status: int,
                sequence: int) -> Pdu | None:
        command = COMMANDS.get(command_id)
        if command is None or command in self._refused:
            self._nack(Status.RINVCMDID, sequence)
            return None
        if command is _DELIVER_SM_RESP and end - pos == 17 and buf[pos + 16] == 0:
            # Every receipt's answer, message_id empty (SMPP 3.4: unused, NULL): what
            # decode_body makes of it, without the generic decoder.
            return self._dispatch(Pdu(command, sequence, status, {"message_id": ""}), command)
        pdu: Pdu
        try:
            if command is _SUBMIT_SM:
                pdu = decode_submit_sm(status, sequence, buf, pos + 16, end)
            else:
                pdu = decode_body(command, status, sequence, buf, pos + 16, end)
        except DecodeError as err:
            if not command.is_response:
                self.reply(command, sequence, err.status)
            elif self.state is State.OPEN:
                self.violations += 1
            return None
        return self._dispatch(pdu, command)

    def _dispatch(self, pdu: Pdu, command: Command) -> Pdu | None:
        state = self.state
        # The two PDUs of every lookup, on a bound session, first.
        if state is State.BOUND and (command is _SUBMIT_SM and self.can_tx
                                     or command is _DELIVER_SM_RESP and self.can_rx):
            return pdu
        if command is Command.ENQUIRE_LINK:
            self.outgoing += encode_header_only(Command.ENQUIRE_LINK_RESP, 0, pdu.sequence)
            return None
        if command is Command.ENQUIRE_LINK_RESP or command is Command.GENERIC_NACK:
            return pdu if command is Command.GENERIC_NACK else None
        if command is Command.UNBIND:
            self.outgoing += encode_header_only(Command.UNBIND_RESP, 0, pdu.sequence)
            self._close("unbind")
            return pdu
        if command is Command.UNBIND_RESP:
            if state is State.UNBINDING:
                self._close("unbound")
            return None
        if command in _BIND_MODE:
            # A second bind pipelined behind one the application has not answered
            # yet is refused too: it must not bind the session a second time.
            if state is not State.OPEN or self._bind_pending:
                self.reply(command, pdu.sequence, Status.RALYBND)
                return None
            if self.bind_version(pdu) is None:
                self.reject_bind(pdu, Status.RBINDFAIL)
                return RefusedBind(pdu, "interface_version")
            self._bind_pending = True
            return pdu
        if state is not State.BOUND and state is not State.UNBINDING:
            if not command.is_response:
                self.reply(command, pdu.sequence, Status.RINVBNDSTS)
            elif state is State.OPEN:
                self.violations += 1
            return None
        if self.can_tx if _NEEDS[command] is BindMode.TX else self.can_rx:
            return pdu
        if not command.is_response:
            self.reply(command, pdu.sequence, Status.RINVBNDSTS)
        return None

    # ----------------------------------------------------------- binding
    @staticmethod
    def bind_version(bind: Pdu) -> int | None:
        """The SMPP version a bind is served in, from its interface_version: 0x34 from 0x34
        up (SMPP 5.0 clients announce 0x50 and speak 3.4 to a 3.4 SMSC), 0x33 below; None
        when it cannot be served (3.3 has no bind_transceiver): the session refuses such a
        bind itself, ESME_RBINDFAIL, and hands it over as a ``RefusedBind``."""
        if bind.params.get("interface_version", 0x34) >= 0x34:
            return 0x34
        return None if bind.command == Command.BIND_TRANSCEIVER else 0x33

    def accept_bind(self, bind: Pdu) -> None:
        version = self.bind_version(bind)
        if version is None:
            raise ValueError("accept_bind: a bind_transceiver announcing SMPP 3.3 or older")
        mode = BindMode.of(bind.command)
        self._bind_pending = False
        self.state = State.BOUND
        self.mode = mode
        self.can_tx = bool(mode & BindMode.TX)
        self.can_rx = bool(mode & BindMode.RX)
        self.interface_version = version
        # SMPP 3.3 peers know no TLVs: only a 3.4 peer gets sc_interface_version, and a
        # 3.3 peer's receipts go without theirs (the text carries the id and the state).
        tlvs: dict[int, bytes] = {Tag.SC_INTERFACE_VERSION: U8.pack(0x34)} if version == 0x34 else {}
        if version != 0x34:
            self.encode_receipt = encode_receipt_smpp33
            self._refused = _NEVER_FROM_SMPP33
        self.outgoing += encode(Pdu(Command(bind.command).response, bind.sequence, 0,
                                    {"system_id": self.system_id}, tlvs))

    def reject_bind(self, bind: Pdu, status: Status) -> None:
        """A refused bind's resp carries our system_id too: SMPP 3.4 allows no body,
        but some ESMEs (aiosmpplib) cannot parse the status of a bodiless one."""
        self._bind_pending = False
        self.outgoing += encode(Pdu(Command(bind.command).response, bind.sequence, status,
                                    {"system_id": self.system_id}))

    # ------------------------------------------------------------ output
    def reply(self, command: int, sequence: int, status: int) -> None:
        """A bodiless error response to ``command`` (SMPP 3.4 allows no body on error)."""
        response = Command(command).response
        if status == 0 and BODIES[response][0]:
            self.outgoing += encode(Pdu(response, sequence, 0))
        else:
            if self.state is State.OPEN:
                self.violations += 1
            self.outgoing += encode_header_only(response, status, sequence)

    def send(self, pdu: Pdu) -> None:
        self.outgoing += encode(pdu)

    def respond(self, request: Pdu, status: int = 0, params: dict[str, Any] | None = None,
                tlvs: dict[int, bytes] | None = None) -> None:
        """The response to ``request``: with ``params`` (its body) or, without, as
        ``reply`` answers (bodiless on error)."""
        if params is None and not tlvs:
            self.reply(request.command, request.sequence, status)
        else:
            self.outgoing += encode(Pdu(Command(request.command).response, request.sequence, status,
                                        params, tlvs))

    def generic_nack(self, sequence: int, status: int) -> None:
        self.outgoing += encode_header_only(Command.GENERIC_NACK, status, sequence)

    # The per-lookup PDUs, without a Pdu object each (the C encoders when built).
    def submit_sm_resp(self, sequence: int, status: int) -> None:
        """A submit_sm refused (or answered without a lookup): bodiless on error."""
        self.outgoing += encode_submit_sm_resp(sequence, status)

    def submit_sm_resps(self, sequences: list[int], lookups: list[Any]) -> None:
        """ESME_ROK submit_sm_resp for each sequence, message_id its lookup's ``id``."""
        self.outgoing += encode_submit_sm_resps(sequences, lookups)

    def submit_sm_failed(self, sequences: list[int], status: int) -> None:
        for sequence in sequences:
            self.outgoing += encode_submit_sm_resp(sequence, status)

    def deliver_receipts(self, receipts: list[tuple[bytes, bytes, bytes]], data_coding: int,
                         reverse: bool = False) -> list[int]:
        """A deliver_sm per ``(destination, text, tlvs)`` (see ``codec.encode_receipt``;
        a 3.3 peer's without TLVs), in one buffer; their sequence numbers, in turn.
        ``reverse`` writes them in the reverse order (the test bench's out_of_order)."""
        encode_one = self.encode_receipt
        sequences = []
        chunks = []
        seq = self._sequence
        for destination, text, tlvs in receipts:
            seq = seq + 1 if seq < 0x7FFFFFFF else 1
            chunks.append(encode_one(seq, destination, text, data_coding, tlvs))
            sequences.append(seq)
        self._sequence = seq
        if reverse:
            chunks.reverse()
        self.outgoing += b"".join(chunks)
        return sequences

    def deliver_sms_receipts(self, receipts: list[tuple[str, str, bytes, bytes]], data_coding: int,
                             reverse: bool = False) -> list[int]:
        """A text message's receipt per ``(source, destination, text, tlvs)``, as an SMSC
        sends it: from the handset (TON 1, NPI 1) to the ESME's source_addr; otherwise as
        ``deliver_receipts``."""
        sequences = []
        chunks = []
        has_tlvs = self.encode_receipt is not encode_receipt_smpp33
        encode_one = encode_text_receipt
        seq = self._sequence
        for source, destination, text, tlvs in receipts:
            seq = seq + 1 if seq < 0x7FFFFFFF else 1
            chunks.append(encode_one(seq, source, destination, text, data_coding, tlvs if has_tlvs else b""))
            sequences.append(seq)
        self._sequence = seq
        if reverse:
            chunks.reverse()
        self.outgoing += b"".join(chunks)
        return sequences

    def outbind(self, system_id: str, password: str) -> None:
        """Ask the ESME we connected to to bind (SMPP 3.4 outbind)."""
        self.outgoing += encode(Pdu(Command.OUTBIND, self.next_sequence(), 0,
                                    {"system_id": system_id, "password": password}))

    def next_sequence(self) -> int:
        seq = self._sequence + 1
        if seq > 0x7FFFFFFF:  # SMPP 3.4 §5.1.4: 0x00000001 .. 0x7FFFFFFF
            seq = 1
        self._sequence = seq
        return seq

    def enquire_link(self) -> None:
        self.outgoing += encode_header_only(Command.ENQUIRE_LINK, 0, self.next_sequence())

    def unbind(self) -> None:
        if self.state is State.BOUND:
            self.outgoing += encode_header_only(Command.UNBIND, 0, self.next_sequence())
            self.state = State.UNBINDING
        elif self.state is State.OPEN:
            self._close("unbind before bind")

    def data_to_send(self) -> bytes:
        """Everything to write to the peer now, counted and traced as it leaves."""
        out = bytes(self.outgoing)
        self.outgoing.clear()
        if self._sent is not None and out:
            self._sent.feed(out)
        return out

    # ------------------------------------------------------------ tracing
    @property
    def tracer(self) -> Tap | None:
        return self._tracer

    @tracer.setter
    def tracer(self, tracer: Tap | None) -> None:
        """Hand each PDU from now on, both directions, to ``tracer`` (None: stop)."""
        self._tracer = tracer
        self._framer.tap = tracer.inbound if tracer is not None else None
        if tracer is not None and self._sent is None:
            self._sent = Framer(ANY_LENGTH)
        if self._sent is not None:
            self._sent.tap = tracer.outbound if tracer is not None else None

    @property
    def can_submit(self) -> bool:
        return self.state is State.BOUND and self.can_tx

    @property
    def can_receive(self) -> bool:
        return self.state is State.BOUND and self.can_rx

    def _nack(self, status: Status, sequence: int) -> None:
        if self.state is State.OPEN:
            self.violations += 1
        self.outgoing += encode_header_only(Command.GENERIC_NACK, status, sequence)

    def _close(self, reason: str) -> None:
        self.state = State.CLOSED
        self.close_reason = reason
