"""The SMSC side of one SMPP 3.4 session, sans-IO (in the manner of h11).

Feed it bytes with ``receive_data``; it frames and decodes PDUs, answers on
its own everything that needs no decision of the application (enquire_link,
unknown commands, PDUs not allowed in the current state, malformed bodies,
unbind), and returns the PDUs that do need one (binds, submissions, queries,
responses to what we sent). Bytes to send accumulate in ``outgoing``; the
caller drains it with ``data_to_send``. No sockets, no clocks, no accounts.
"""
from __future__ import annotations

from enum import Enum, IntFlag

from .codec import (
    BODIES, COMMANDS, HEADER, MAX_PDU_SIZE, Command, DecodeError, Pdu, Tag, U8,
    decode_body, decode_submit_sm, encode, encode_header_only, encode_receipt,
    encode_receipt_smpp33, scan_bound,
)
from .status import Status

_RECEIVE_ALLOWED = frozenset({Command.DELIVER_SM_RESP, Command.DATA_SM_RESP})
_TRANSMIT_ALLOWED = frozenset({
    Command.SUBMIT_SM, Command.SUBMIT_MULTI, Command.DATA_SM, Command.QUERY_SM,
    Command.CANCEL_SM, Command.REPLACE_SM,
})
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
BIND_COMMANDS = frozenset({Command.BIND_TRANSMITTER, Command.BIND_RECEIVER, Command.BIND_TRANSCEIVER})


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
                 "encode_receipt", "_refused")

    def __init__(self, max_pdu_size: int = MAX_PDU_SIZE, system_id: str = "hlrsmpp"):
        self.state = State.OPEN
        self.mode: BindMode | None = None
        self.can_tx = self.can_rx = False  # plain bools: IntFlag arithmetic per PDU is slow
        self.interface_version = 0x34
        #: The receipt encoder for this peer, chosen at bind (``codec.encode_receipt``'s
        #: arguments): an SMPP 3.3 peer gets its receipts without TLVs.
        self.encode_receipt = encode_receipt
        self._refused = _NEVER_FROM_ESME  # commands answered generic_nack ESME_RINVCMDID
        self.outgoing = bytearray()
        self._buffer = b""
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
        buf = self._buffer + data if self._buffer else data
        if self._bind_pending:
            self._buffer = buf
            return []
        size = len(buf)
        pos = 0
        events: list[Pdu] = []
        unpack = HEADER.unpack_from
        # Bound, the run of submit_sm / deliver_sm_resp is read in C when it is built;
        # it stops before any other PDU, which the loop below then takes.
        scan = scan_bound if self.state is State.BOUND and buf.__class__ is bytes else None
        while size - pos >= 16:
            if scan is not None:
                pos = scan(buf, pos, self.max_pdu_size, self.can_tx, self.can_rx, events)
                if size - pos < 16:
                    break
            length, command_id, status, sequence = unpack(buf, pos)
            if length < 16 or length > self.max_pdu_size:
                self.violations += 1  # in any state: the stream can no longer be framed
                self.outgoing += encode_header_only(Command.GENERIC_NACK, Status.RINVCMDLEN, sequence)
                self._close(f"command_length {length}")
                self._buffer = b""
                return events
            end = pos + length
            if end > size:
                break
            pdu = self._handle(buf, pos, end, command_id, status, sequence)
            pos = end
            if pdu is not None:
                events.append(pdu)
                if self._bind_pending:
                    break
            if self.state is State.CLOSED:  # type: ignore[comparison-overlap]  # _handle may close it
                self._buffer = b""
                return events
        self._buffer = buf[pos:] if pos < size else b""
        return events

    @property
    def has_input(self) -> bool:
        """A whole PDU (or a header to refuse) waits behind a bind now answered:
        ``receive_data(b"")`` will make progress on it."""
        buf = self._buffer
        if len(buf) < 16 or self._bind_pending or self.state is State.CLOSED:
            return False
        length: int = HEADER.unpack_from(buf)[0]
        return len(buf) >= length or length < 16 or length > self.max_pdu_size

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
        if command in BIND_COMMANDS:
            # A second bind pipelined behind one the application has not answered
            # yet is refused too: it must not bind the session a second time.
            if state is not State.OPEN or self._bind_pending:
                self.reply(command, pdu.sequence, Status.RALYBND)
                return None
            self._bind_pending = True
            return pdu
        if state is not State.BOUND and state is not State.UNBINDING:
            if not command.is_response:
                self.reply(command, pdu.sequence, Status.RINVBNDSTS)
            elif state is State.OPEN:
                self.violations += 1
            return None
        if command in _TRANSMIT_ALLOWED:
            if not self.can_tx:
                self.reply(command, pdu.sequence, Status.RINVBNDSTS)
                return None
            return pdu
        if command in _RECEIVE_ALLOWED:
            return pdu if self.can_rx else None
        return None  # pragma: no cover - every command is classified above

    # ----------------------------------------------------------- binding
    @staticmethod
    def bind_version(bind: Pdu) -> int | None:
        """The SMPP version a bind is served in, from its interface_version: 0x34 from 0x34
        up (SMPP 5.0 clients announce 0x50 and speak 3.4 to a 3.4 SMSC), 0x33 below; None
        when it cannot be served (3.3 has no bind_transceiver): refuse it ESME_RBINDFAIL."""
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
        out = bytes(self.outgoing)
        self.outgoing.clear()
        return out

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
