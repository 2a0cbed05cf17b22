"""The ESME side of one SMPP 3.4 session, sans-IO (in the manner of h11).

Every client in the repository speaks through it: the lookup client, the test
ESME, the load generator and the misbehaving clients of the benchmarks. The
requests (``bind``, ``submit_sm``, ``enquire_link``, ``unbind``, any other with
``send``) are numbered and encoded into ``outgoing``; the caller drains it with
``data_to_send``. ``receive_data`` frames what the SMSC sent (the one framer,
framer.py), answers on its own what needs no decision (enquire_link, unbind,
deliver_sm and data_sm with ESME_ROK unless ``auto_ack`` is off, generic_nack for
a request an ESME does not take) and returns the rest as events: responses to our
requests, the receipts, outbind and alert_notification.

Errors are values: a stream that cannot be framed closes the session (``state``
CLOSED, ``close_reason`` says why) and raises nothing. What the SMSC sends is read
tolerantly: a body that breaks SMPP 3.4's field limits (another provider's small
deviation) is still read, field by field, rather than lose a receipt.

For a load generator, ``submit_sm_many`` writes N submit_sm from prebuilt bodies
in one call and ``receive_lean`` reads a run of submit_sm_resp and receipts into
flat tuples, with no PDU object each.
"""
from __future__ import annotations

from struct import Struct
from typing import Any

from .codec import (
    B, BODIES, C, COMMANDS, HEADER, MAX_PDU_SIZE, SM, TLV_HEAD, Command, DecodeError, Pdu, Tag,
    decode_body, encode, encode_header_only,
)
from .framer import Framer
from .session import BindMode, State
from .status import Status

_SUBMIT_SM = int(Command.SUBMIT_SM)
_SUBMIT_SM_RESP = int(Command.SUBMIT_SM_RESP)
_DELIVER_SM = int(Command.DELIVER_SM)
_DATA_SM = int(Command.DATA_SM)
_ENQUIRE_LINK = int(Command.ENQUIRE_LINK)
_UNBIND = int(Command.UNBIND)
_UNBIND_RESP = int(Command.UNBIND_RESP)
_ALERT_NOTIFICATION = int(Command.ALERT_NOTIFICATION)
_OUTBIND = int(Command.OUTBIND)
_BIND_COMMAND = {BindMode.TX: Command.BIND_TRANSMITTER, BindMode.RX: Command.BIND_RECEIVER,
                 BindMode.TRX: Command.BIND_TRANSCEIVER}
_BIND_RESPS = {int(c.response): mode for mode, c in _BIND_COMMAND.items()}
#: Requests an ESME takes from an SMSC; any other request is answered generic_nack.
_TAKEN = frozenset({_DELIVER_SM, _DATA_SM, _ENQUIRE_LINK, _UNBIND, _ALERT_NOTIFICATION, _OUTBIND})
_RECEIPTED_MESSAGE_ID = int(Tag.RECEIPTED_MESSAGE_ID)
_MESSAGE_STATE = int(Tag.MESSAGE_STATE)
_pack_header = HEADER.pack
_unpack_header = HEADER.unpack_from
_unpack_tlv = TLV_HEAD.unpack_from
#: A deliver_sm_resp ESME_ROK: the header and an empty message_id.
_pack_ack = Struct(">IIIIB").pack
_DELIVER_SM_RESP = int(Command.DELIVER_SM_RESP)


def submit_sm_body(destination: str, ton: int = 1, npi: int = 1, source: str = "", source_ton: int = 0,
                   source_npi: int = 0, registered_delivery: int = 1, short_message: bytes = b"",
                   data_coding: int = 0, tlvs: dict[int, bytes] | None = None) -> bytes:
    """The body of a submit_sm (everything after the header): built once per number,
    it is sent any number of times by ``submit_sm_many``."""
    return encode(Pdu(Command.SUBMIT_SM, 0, 0, {
        "service_type": "", "source_addr_ton": source_ton, "source_addr_npi": source_npi,
        "source_addr": source, "dest_addr_ton": ton, "dest_addr_npi": npi, "destination_addr": destination,
        "esm_class": 0, "protocol_id": 0, "priority_flag": 0, "schedule_delivery_time": "",
        "validity_period": "", "registered_delivery": registered_delivery, "replace_if_present_flag": 0,
        "data_coding": data_coding, "sm_default_msg_id": 0, "short_message": short_message}, tlvs))[16:]


def decode_lenient(command: int, status: int, sequence: int, body: bytes, pos: int = 0,
                   end: int | None = None) -> Pdu:
    """A PDU from an SMSC, decoded by SMPP 3.4's rules when it keeps them; else its
    mandatory parameters walked without the size limits and its TLVs read loosely."""
    end = len(body) if end is None else end
    known = COMMANDS.get(command)
    if known is not None:
        try:
            return decode_body(known, status, sequence, body, pos, end)
        except DecodeError:
            pass
    params: dict[str, Any] = {}
    for f in (BODIES[known][0] if known is not None else []):
        name, kind = f[0], f[1]
        if kind is C:
            nul = body.find(b"\0", pos, end)
            nul = end if nul < 0 else nul
            params[name] = body[pos:nul].decode("latin-1")
            pos = nul + 1
        elif kind is B:
            params[name] = body[pos] if pos < end else 0
            pos += 1
        elif kind is SM:
            n = body[pos] if pos < end else 0
            params[name] = bytes(body[pos + 1:min(end, pos + 1 + n)])
            pos += 1 + n
        else:
            break
    tlvs: dict[int, bytes] = {}
    while pos + 4 <= end:
        tag, length = _unpack_tlv(body, pos)
        tlvs[tag] = bytes(body[pos + 4:min(end, pos + 4 + length)])
        pos += 4 + length
    return Pdu(command, sequence, status, params, tlvs)


class EsmeSession:
    """SMPP session state machine, client (ESME) side."""

    __slots__ = ("state", "mode", "outgoing", "auto_ack", "close_reason", "_framer", "_sequence",
                 "_bind_sequence", "_unbind_sequence")

    def __init__(self, max_pdu_size: int = MAX_PDU_SIZE, auto_ack: bool = True):
        self.state = State.OPEN
        self.mode: BindMode | None = None
        self.outgoing = bytearray()
        #: Answer deliver_sm / data_sm ESME_ROK on our own; off, the application answers
        #: each with ``acknowledge`` (e.g. ESME_RX_T_APPN for a receipt it cannot place).
        self.auto_ack = auto_ack
        self.close_reason: str | None = None
        self._framer = Framer(max_pdu_size)
        self._sequence = 0
        self._bind_sequence = 0
        self._unbind_sequence = 0

    # ---------------------------------------------------------- requests
    def next_sequence(self) -> int:
        seq = self._sequence + 1
        if seq > 0x7FFFFFFF:  # 0x00000001 .. 0x7FFFFFFF
            seq = 1
        self._sequence = seq
        return seq

    def send(self, pdu: Pdu) -> int:
        """Number a request (any command), encode it; its sequence number."""
        pdu.sequence = self.next_sequence()
        self.outgoing += encode(pdu)
        return pdu.sequence

    def bind(self, mode: BindMode, system_id: str, password: str, system_type: str = "",
             interface_version: int = 0x34, addr_ton: int = 0, addr_npi: int = 0, address_range: str = "") -> int:
        """bind_transmitter, _receiver or _transceiver; raises ValueError when a field
        does not fit SMPP 3.4 (system_id 15 octets, password 8, system_type 12)."""
        self.mode = mode
        self._bind_sequence = self.send(Pdu(_BIND_COMMAND[mode], 0, 0, {
            "system_id": system_id, "password": password, "system_type": system_type,
            "interface_version": interface_version, "addr_ton": addr_ton, "addr_npi": addr_npi,
            "address_range": address_range}))
        return self._bind_sequence

    def submit_sm(self, destination: str, ton: int = 1, npi: int = 1, source: str = "",
                  source_ton: int = 0, source_npi: int = 0, registered_delivery: int = 1,
                  short_message: bytes = b"", data_coding: int = 0, tlvs: dict[int, bytes] | None = None) -> int:
        body = submit_sm_body(destination, ton, npi, source, source_ton, source_npi, registered_delivery,
                              short_message, data_coding, tlvs)
        seq = self.next_sequence()
        self.outgoing += _pack_header(16 + len(body), _SUBMIT_SM, 0, seq) + body
        return seq

    def submit_sm_many(self, bodies: list[bytes], index: int, k: int) -> int:
        """``k`` submit_sm, their bodies (``submit_sm_body``) taken from ``bodies`` in
        turn from ``index`` (round the end), in one go. Their sequence numbers follow
        one another up to ``last_sequence``. Returns the index to go on from."""
        n = len(bodies)
        seq = self._sequence
        out = self.outgoing
        pack = _pack_header
        for _ in range(k):
            seq = seq + 1 if seq < 0x7FFFFFFF else 1
            body = bodies[index]
            index += 1
            if index == n:
                index = 0
            out += pack(16 + len(body), _SUBMIT_SM, 0, seq)
            out += body
        self._sequence = seq
        return index

    @property
    def last_sequence(self) -> int:
        """The sequence number of the last request."""
        return self._sequence

    def enquire_link(self) -> int:
        seq = self.next_sequence()
        self.outgoing += encode_header_only(Command.ENQUIRE_LINK, 0, seq)
        return seq

    def unbind(self) -> int:
        seq = self.next_sequence()
        self.outgoing += encode_header_only(Command.UNBIND, 0, seq)
        self._unbind_sequence = seq
        if self.state is State.BOUND:
            self.state = State.UNBINDING
        return seq

    def acknowledge(self, pdu: Pdu, status: int = 0) -> None:
        """Answer a deliver_sm or data_sm (with ``auto_ack`` off)."""
        self.outgoing += encode(Pdu(Command(pdu.command).response, pdu.sequence, status, {"message_id": ""}))

    def data_to_send(self) -> bytes:
        out = bytes(self.outgoing)
        self.outgoing.clear()
        return out

    @property
    def bound(self) -> bool:
        return self.state is State.BOUND

    # ------------------------------------------------------------- input
    def receive_data(self, data: bytes) -> list[Pdu]:
        """Frame, answer and decode what arrived; the events, in order: responses
        (bind_resp, submit_sm_resp, enquire_link_resp, unbind_resp, generic_nack...)
        and requests from the SMSC (deliver_sm, data_sm, outbind, alert_notification),
        each a Pdu."""
        return self._receive(data, None, None)

    def receive_lean(self, data: bytes, resps: list[tuple[int, int, bytes]],
                     receipts: list[tuple[bytes | None, int | None] | None]) -> list[Pdu]:
        """``receive_data`` for a load generator: each submit_sm_resp is appended to
        ``resps`` as ``(sequence, status, message_id)``, each deliver_sm to ``receipts``
        as ``(receipted_message_id, message_state)`` (each None when absent; the id
        without its NUL), or None when its body cannot be walked; every deliver_sm is
        answered ESME_ROK. The other PDUs are returned as events."""
        return self._receive(data, resps, receipts)

    def _receive(self, data: bytes, resps: list[tuple[int, int, bytes]] | None,
                 receipts: list[tuple[bytes | None, int | None] | None] | None) -> list[Pdu]:
        events: list[Pdu] = []
        if self.state is State.CLOSED:
            return events
        buf, size = self._framer.feed(data)
        pos = 0
        out = self.outgoing
        unpack = _unpack_header
        find = buf.index
        tlv = _unpack_tlv
        ack = _pack_ack
        resp = resps.append if resps is not None else None
        receipt = receipts.append if receipts is not None else None
        while pos < size:
            length, command, status, seq = unpack(buf, pos)
            end = pos + length
            if command == _SUBMIT_SM_RESP and resp is not None:
                resp((seq, status, buf[pos + 16:end - 1] if length > 16 else b""))
            elif command == _DELIVER_SM and receipt is not None:
                out += ack(17, _DELIVER_SM_RESP, 0, seq, 0)
                # receipt_ids, inline: the walk to the TLVs, then the two we read.
                try:
                    p = find(0, pos + 16, end) + 3   # service_type; source TON, NPI
                    p = find(0, p, end) + 3          # source_addr; dest TON, NPI
                    p = find(0, p, end) + 4          # destination_addr; esm_class .. priority
                    p = find(0, p, end) + 1          # schedule_delivery_time
                    p = find(0, p, end) + 5          # validity_period .. sm_default_msg_id
                    p += 1 + buf[p]                  # sm_length, short_message
                except (ValueError, IndexError):
                    receipt(None)
                else:
                    mid = state = None
                    while p + 4 <= end:
                        tag, tlv_length = tlv(buf, p)
                        p += 4
                        if tag == _RECEIPTED_MESSAGE_ID:
                            mid = buf[p:p + tlv_length - 1] if tlv_length and buf[p + tlv_length - 1] == 0 \
                                else buf[p:p + tlv_length]
                        elif tag == _MESSAGE_STATE and tlv_length == 1 and p < end:
                            state = buf[p]
                        p += tlv_length
                    receipt((mid, state))
            else:
                if command & 0x80000000:
                    events.append(self._response(decode_lenient(command, status, seq, buf, pos + 16, end)))
                elif command in _TAKEN:
                    self._request(decode_lenient(command, status, seq, buf, pos + 16, end), events)
                else:
                    out += encode_header_only(Command.GENERIC_NACK, Status.RINVCMDID, seq)
                if self.state is State.CLOSED:  # type: ignore[comparison-overlap]  # unbind, unbind_resp
                    return events
            pos = end
        broken = self._framer.broken
        if broken is not None:
            self._close(f"command_length {HEADER.unpack(broken)[0]}")
        return events

    def _response(self, pdu: Pdu) -> Pdu:
        command = pdu.command
        if command in _BIND_RESPS and pdu.sequence == self._bind_sequence and self.state is State.OPEN:
            if pdu.status == 0:
                self.state = State.BOUND
                self.mode = _BIND_RESPS[command]
        elif command == _UNBIND_RESP and pdu.sequence == self._unbind_sequence:
            self._close("unbound")
        return pdu

    def _request(self, pdu: Pdu, events: list[Pdu]) -> None:
        command = pdu.command
        if command == _DELIVER_SM or command == _DATA_SM:
            if self.auto_ack:
                self.acknowledge(pdu)
        elif command == _ENQUIRE_LINK:
            self.outgoing += encode_header_only(Command.ENQUIRE_LINK_RESP, 0, pdu.sequence)
            return
        elif command == _UNBIND:
            self.outgoing += encode_header_only(Command.UNBIND_RESP, 0, pdu.sequence)
            self._close("unbind")
        events.append(pdu)  # alert_notification and outbind have no response

    def _close(self, reason: str) -> None:
        self.state = State.CLOSED
        self.close_reason = reason
