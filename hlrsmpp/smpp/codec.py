"""SMPP 3.4 codec: bytes <-> PDUs, sans-IO.

Every SMPP 3.4 PDU is described once, in ``BODIES``, as its ordered mandatory
parameters; one generic decoder and one encoder walk that table. Bytes from the
network are untrusted: every length is checked against the frame and against
the field maxima of SMPP 3.4 §5.2, and a malformed body yields a
``DecodeError`` carrying the ``command_status`` to answer with.

The hot path (submit_sm in, submit_sm_resp and deliver_sm out) has dedicated
encoders that build one ``bytes`` object with no intermediate PDU.
"""
from __future__ import annotations

import re
from enum import IntEnum
from struct import Struct
from typing import Any, Callable

from ..native import load as load_native
from .status import Status

HEADER = Struct(">IIII")
U8 = Struct(">B")
U16 = Struct(">H")
U32 = Struct(">I")
TLV_HEAD = Struct(">HH")

#: No legitimate SMPP 3.4 PDU is larger: submit_multi with 254 destinations and a
#: 254-octet message plus TLVs stays well under this. Configurable lower per server.
MAX_PDU_SIZE = 65536


class Command(IntEnum):
    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    REPLACE_SM = 0x00000007
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM = 0x00000008
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI = 0x00000021
    SUBMIT_MULTI_RESP = 0x80000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103

    @property
    def is_response(self) -> bool:
        return bool(self & 0x80000000)

    @property
    def response(self) -> "Command":
        """The _resp of a request (generic_nack for those that have none)."""
        try:
            return Command(self | 0x80000000)
        except ValueError:
            return Command.GENERIC_NACK


class Tag(IntEnum):
    """SMPP 3.4 §5.3.2 optional parameter tags."""
    DEST_ADDR_SUBUNIT = 0x0005
    DEST_NETWORK_TYPE = 0x0006
    DEST_BEARER_TYPE = 0x0007
    DEST_TELEMATICS_ID = 0x0008
    SOURCE_ADDR_SUBUNIT = 0x000D
    SOURCE_NETWORK_TYPE = 0x000E
    SOURCE_BEARER_TYPE = 0x000F
    SOURCE_TELEMATICS_ID = 0x0010
    QOS_TIME_TO_LIVE = 0x0017
    PAYLOAD_TYPE = 0x0019
    ADDITIONAL_STATUS_INFO_TEXT = 0x001D
    RECEIPTED_MESSAGE_ID = 0x001E
    MS_MSG_WAIT_FACILITIES = 0x0030
    PRIVACY_INDICATOR = 0x0201
    SOURCE_SUBADDRESS = 0x0202
    DEST_SUBADDRESS = 0x0203
    USER_MESSAGE_REFERENCE = 0x0204
    USER_RESPONSE_CODE = 0x0205
    SOURCE_PORT = 0x020A
    DESTINATION_PORT = 0x020B
    SAR_MSG_REF_NUM = 0x020C
    LANGUAGE_INDICATOR = 0x020D
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    SC_INTERFACE_VERSION = 0x0210
    CALLBACK_NUM_PRES_IND = 0x0302
    CALLBACK_NUM_ATAG = 0x0303
    NUMBER_OF_MESSAGES = 0x0304
    CALLBACK_NUM = 0x0381
    DPF_RESULT = 0x0420
    SET_DPF = 0x0421
    MS_AVAILABILITY_STATUS = 0x0422
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_PAYLOAD = 0x0424
    DELIVERY_FAILURE_REASON = 0x0425
    MORE_MESSAGES_TO_SEND = 0x0426
    MESSAGE_STATE = 0x0427
    USSD_SERVICE_OP = 0x0501
    DISPLAY_TIME = 0x1201
    SMS_SIGNAL = 0x1203
    MS_VALIDITY = 0x1204
    ALERT_ON_MESSAGE_DELIVERY = 0x130C
    ITS_REPLY_TYPE = 0x1380
    ITS_SESSION_INFO = 0x1383


#: Value lengths SMPP 3.4 fixes (or bounds) per tag: (min, max).
TLV_LENGTHS: dict[int, tuple[int, int]] = {
    Tag.DEST_ADDR_SUBUNIT: (1, 1), Tag.DEST_NETWORK_TYPE: (1, 1),
    Tag.DEST_BEARER_TYPE: (1, 1), Tag.DEST_TELEMATICS_ID: (2, 2),
    Tag.SOURCE_ADDR_SUBUNIT: (1, 1), Tag.SOURCE_NETWORK_TYPE: (1, 1),
    Tag.SOURCE_BEARER_TYPE: (1, 1), Tag.SOURCE_TELEMATICS_ID: (1, 1),
    Tag.QOS_TIME_TO_LIVE: (4, 4), Tag.PAYLOAD_TYPE: (1, 1),
    Tag.ADDITIONAL_STATUS_INFO_TEXT: (1, 256), Tag.RECEIPTED_MESSAGE_ID: (1, 65),
    Tag.MS_MSG_WAIT_FACILITIES: (1, 1), Tag.PRIVACY_INDICATOR: (1, 1),
    Tag.SOURCE_SUBADDRESS: (2, 23), Tag.DEST_SUBADDRESS: (2, 23),
    Tag.USER_MESSAGE_REFERENCE: (2, 2), Tag.USER_RESPONSE_CODE: (1, 1),
    Tag.SOURCE_PORT: (2, 2), Tag.DESTINATION_PORT: (2, 2),
    Tag.SAR_MSG_REF_NUM: (2, 2), Tag.LANGUAGE_INDICATOR: (1, 1),
    Tag.SAR_TOTAL_SEGMENTS: (1, 1), Tag.SAR_SEGMENT_SEQNUM: (1, 1),
    Tag.SC_INTERFACE_VERSION: (1, 1), Tag.CALLBACK_NUM_PRES_IND: (1, 1),
    Tag.CALLBACK_NUM_ATAG: (0, 65), Tag.NUMBER_OF_MESSAGES: (1, 1),
    Tag.CALLBACK_NUM: (4, 19), Tag.DPF_RESULT: (1, 1), Tag.SET_DPF: (1, 1),
    Tag.MS_AVAILABILITY_STATUS: (1, 1), Tag.NETWORK_ERROR_CODE: (3, 3),
    Tag.MESSAGE_PAYLOAD: (0, 65535), Tag.DELIVERY_FAILURE_REASON: (1, 1),
    Tag.MORE_MESSAGES_TO_SEND: (1, 1), Tag.MESSAGE_STATE: (1, 1),
    Tag.USSD_SERVICE_OP: (1, 1), Tag.DISPLAY_TIME: (1, 1), Tag.SMS_SIGNAL: (2, 2),
    Tag.MS_VALIDITY: (1, 1), Tag.ALERT_ON_MESSAGE_DELIVERY: (0, 0),
    Tag.ITS_REPLY_TYPE: (1, 1), Tag.ITS_SESSION_INFO: (2, 2),
}

# Field kinds of the mandatory parameters.
C = "c"          # C-Octet String; the size is the maximum INCLUDING the NUL (§5.2)
B = "b"          # Integer, 1 octet
I4 = "i"         # Integer, 4 octets
SM = "sm"        # sm_length (1 octet) then that many octets of short_message
DESTS = "dests"  # submit_multi: number_of_dests then dest_address entries
UNSUCC = "unsucc"  # submit_multi_resp: no_unsuccess then unsuccess_sme entries

_ADDR21 = [("ton", B), ("npi", B), ("addr", C, 21)]
_MESSAGE_TAIL = [
    ("esm_class", B), ("protocol_id", B), ("priority_flag", B),
    ("schedule_delivery_time", C, 17), ("validity_period", C, 17),
    ("registered_delivery", B), ("replace_if_present_flag", B),
    ("data_coding", B), ("sm_default_msg_id", B), ("short_message", SM),
]
_BIND = [
    ("system_id", C, 16), ("password", C, 9), ("system_type", C, 13),
    ("interface_version", B), ("addr_ton", B), ("addr_npi", B), ("address_range", C, 41),
]
_SM_BODY = [
    ("service_type", C, 6),
    ("source_addr_ton", B), ("source_addr_npi", B), ("source_addr", C, 21),
    ("dest_addr_ton", B), ("dest_addr_npi", B), ("destination_addr", C, 21),
] + _MESSAGE_TAIL

#: command -> (mandatory parameters, optional parameters allowed?)
BODIES: dict[Command, tuple[list[tuple[Any, ...]], bool]] = {
    Command.GENERIC_NACK: ([], False),
    Command.BIND_RECEIVER: (_BIND, False),
    Command.BIND_TRANSMITTER: (_BIND, False),
    Command.BIND_TRANSCEIVER: (_BIND, False),
    Command.BIND_RECEIVER_RESP: ([("system_id", C, 16)], True),
    Command.BIND_TRANSMITTER_RESP: ([("system_id", C, 16)], True),
    Command.BIND_TRANSCEIVER_RESP: ([("system_id", C, 16)], True),
    Command.OUTBIND: ([("system_id", C, 16), ("password", C, 9)], False),
    Command.UNBIND: ([], False),
    Command.UNBIND_RESP: ([], False),
    Command.ENQUIRE_LINK: ([], False),
    Command.ENQUIRE_LINK_RESP: ([], False),
    Command.SUBMIT_SM: (_SM_BODY, True),
    Command.SUBMIT_SM_RESP: ([("message_id", C, 65)], False),
    Command.DELIVER_SM: (_SM_BODY, True),
    Command.DELIVER_SM_RESP: ([("message_id", C, 65)], False),
    Command.SUBMIT_MULTI: ([
        ("service_type", C, 6),
        ("source_addr_ton", B), ("source_addr_npi", B), ("source_addr", C, 21),
        ("dest_address", DESTS),
    ] + _MESSAGE_TAIL, True),
    Command.SUBMIT_MULTI_RESP: ([("message_id", C, 65), ("unsuccess_sme", UNSUCC)], False),
    Command.DATA_SM: ([
        ("service_type", C, 6),
        ("source_addr_ton", B), ("source_addr_npi", B), ("source_addr", C, 65),
        ("dest_addr_ton", B), ("dest_addr_npi", B), ("destination_addr", C, 65),
        ("esm_class", B), ("registered_delivery", B), ("data_coding", B),
    ], True),
    Command.DATA_SM_RESP: ([("message_id", C, 65)], True),
    Command.QUERY_SM: ([
        ("message_id", C, 65),
        ("source_addr_ton", B), ("source_addr_npi", B), ("source_addr", C, 21),
    ], False),
    Command.QUERY_SM_RESP: ([
        ("message_id", C, 65), ("final_date", C, 17), ("message_state", B), ("error_code", B),
    ], False),
    Command.CANCEL_SM: ([
        ("service_type", C, 6), ("message_id", C, 65),
        ("source_addr_ton", B), ("source_addr_npi", B), ("source_addr", C, 21),
        ("dest_addr_ton", B), ("dest_addr_npi", B), ("destination_addr", C, 21),
    ], False),
    Command.CANCEL_SM_RESP: ([], False),
    Command.REPLACE_SM: ([
        ("message_id", C, 65),
        ("source_addr_ton", B), ("source_addr_npi", B), ("source_addr", C, 21),
        ("schedule_delivery_time", C, 17), ("validity_period", C, 17),
        ("registered_delivery", B), ("sm_default_msg_id", B), ("short_message", SM),
    ], False),
    Command.REPLACE_SM_RESP: ([], False),
    Command.ALERT_NOTIFICATION: ([
        ("source_addr_ton", B), ("source_addr_npi", B), ("source_addr", C, 65),
        ("esme_addr_ton", B), ("esme_addr_npi", B), ("esme_addr", C, 65),
    ], True),
}

#: A _resp to a failed request may carry no body at all (SMPP 3.4 §4, e.g. bind_resp).
_EMPTY_BODY_OK_ON_ERROR = frozenset(c for c in Command if c.is_response)

#: Some ESMEs acknowledge a receipt with a bare 16-octet header. Refusing that
#: would redeliver their receipts forever; the ack is unambiguous, so accept it.
_ACK_WITHOUT_BODY = frozenset({Command.DELIVER_SM_RESP, Command.DATA_SM_RESP})

#: Which status answers a field that overruns its maximum.
_FIELD_STATUS = {
    "destination_addr": Status.RINVDSTADR, "source_addr": Status.RINVSRCADR,
    "system_id": Status.RINVSYSID, "password": Status.RINVPASWD,
    "system_type": Status.RINVSYSTYP, "message_id": Status.RINVMSGID,
    "short_message": Status.RINVMSGLEN, "service_type": Status.RINVSERTYP,
    "schedule_delivery_time": Status.RINVSCHED, "validity_period": Status.RINVEXPIRY,
    "dest_address": Status.RINVNUMDESTS, "dl_name": Status.RINVDLNAME,
}


class DecodeError(Exception):
    """A PDU body that breaks SMPP 3.4: answer ``status`` (a value, not a crash)."""

    def __init__(self, status: Status, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Pdu:
    """One SMPP PDU: header, mandatory parameters by name, TLVs by tag (raw values)."""

    __slots__ = ("command", "status", "sequence", "params", "tlvs")

    def __init__(self, command: int, sequence: int = 0, status: int = 0,
                 params: dict[str, Any] | None = None, tlvs: dict[int, bytes] | None = None):
        self.command = command
        self.status = status
        self.sequence = sequence
        self.params = params if params is not None else {}
        self.tlvs = tlvs if tlvs is not None else {}

    def __getitem__(self, name: str) -> Any:
        return self.params[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pdu) and (
            self.command, self.status, self.sequence, self.params, self.tlvs
        ) == (other.command, other.status, other.sequence, other.params, other.tlvs)

    def __repr__(self) -> str:
        try:
            name = Command(self.command).name.lower()
        except ValueError:
            name = hex(self.command)
        return f"<{name} seq={self.sequence} status={self.status:#x} {self.params} tlvs={self.tlvs}>"


def _cstring(body: bytes, pos: int, end: int, size: int, name: str) -> tuple[str, int]:
    """Read a C-Octet String of at most ``size`` octets including its NUL."""
    nul = body.find(b"\0", pos, min(end, pos + size))
    if nul < 0:
        status = _FIELD_STATUS.get(name, Status.RINVCMDLEN if end - pos < size else Status.RINVPARLEN)
        raise DecodeError(status, f"{name}: no NUL within {size} octets")
    return body[pos:nul].decode("latin-1"), nul + 1


def _u8(body: bytes, pos: int, end: int, name: str) -> int:
    if pos >= end:
        raise DecodeError(Status.RINVCMDLEN, f"{name}: body too short")
    return body[pos]


def decode_tlvs(body: bytes, pos: int, end: int) -> dict[int, bytes]:
    tlvs: dict[int, bytes] = {}
    while pos < end:
        if end - pos < 4:
            raise DecodeError(Status.RINVOPTPARSTREAM, "truncated TLV header")
        tag, length = TLV_HEAD.unpack_from(body, pos)
        pos += 4
        if pos + length > end:
            raise DecodeError(Status.RINVOPTPARSTREAM, f"TLV {tag:#06x} overruns the PDU")
        bounds = TLV_LENGTHS.get(tag)
        if bounds is not None and not bounds[0] <= length <= bounds[1]:
            raise DecodeError(Status.RINVPARLEN, f"TLV {tag:#06x} has length {length}")
        tlvs[tag] = body[pos:pos + length]
        pos += length
    return tlvs


def _compile(command: Command) -> Callable[[bytes, int, int], tuple[dict[str, Any], int]]:
    """Generate a straight-line decoder for one command's mandatory parameters.

    Walking the field table per PDU costs a loop and a branch per field; the
    generated function does only the reads and bound checks (about twice as fast).
    Errors are raised by the same helpers the table walk uses, so they are identical.
    """
    lines = [f"def decode_{command.name.lower()}(body, pos, end):"]
    names = []
    for i, field in enumerate(BODIES[command][0]):
        name, kind = field[0], field[1]
        var = f"f{i}"
        names.append((name, var))
        if kind is C:
            size = field[2]
            lines += [
                f"    nul = body.find(b'\\0', pos, pos + {size} if pos + {size} < end else end)",
                f"    if nul < 0: _cstring(body, pos, end, {size}, {name!r})",
                f"    {var} = body[pos:nul].decode('latin-1')",
                "    pos = nul + 1",
            ]
        elif kind is B:
            lines += [
                f"    if pos >= end: _u8(body, pos, end, {name!r})",
                f"    {var} = body[pos]",
                "    pos += 1",
            ]
        elif kind is SM:
            lines += [
                "    if pos >= end: _u8(body, pos, end, 'sm_length')",
                "    length = body[pos]",
                "    pos += 1",
                "    if length > 254 or pos + length > end: _sm_overrun(length)",
                f"    {var} = body[pos:pos + length]",
                "    pos += length",
            ]
        elif kind is DESTS:
            lines.append(f"    {var}, pos = _decode_dests(body, pos, end)")
        elif kind is UNSUCC:
            lines.append(f"    {var}, pos = _decode_unsuccess(body, pos, end)")
        else:  # pragma: no cover - table error
            raise AssertionError(kind)
    lines.append("    return {" + ", ".join(f"{n!r}: {v}" for n, v in names) + "}, pos")
    namespace: dict[str, Any] = {"_cstring": _cstring, "_u8": _u8, "_sm_overrun": _sm_overrun,
                 "_decode_dests": _decode_dests, "_decode_unsuccess": _decode_unsuccess}
    exec("\n".join(lines), namespace)  # noqa: S102 - source built from our own table
    return namespace[f"decode_{command.name.lower()}"]  # type: ignore[no-any-return]


def _sm_overrun(length: int) -> None:
    raise DecodeError(Status.RINVMSGLEN, f"sm_length {length} overruns the PDU")


def decode_body(command: Command, status: int, sequence: int, body: bytes,
                pos: int = 0, end: int | None = None) -> Pdu:
    """Decode the body of a known command; raises DecodeError with the status to answer."""
    if end is None:
        end = len(body)
    if pos == end and command in _EMPTY_BODY_OK_ON_ERROR:
        if status:
            return Pdu(command, sequence, status, {})
        if command in _ACK_WITHOUT_BODY:
            return Pdu(command, sequence, 0, {"message_id": ""})
    params, pos = _DECODERS[command](body, pos, end)
    if pos < end:
        if not BODIES[command][1]:
            raise DecodeError(Status.RINVCMDLEN, f"{end - pos} octets after the last parameter")
        return Pdu(command, sequence, status, params, decode_tlvs(body, pos, end))
    return Pdu(command, sequence, status, params)


def _decode_dests(body: bytes, pos: int, end: int) -> tuple[list[tuple[int, int, str] | str], int]:
    count = _u8(body, pos, end, "number_of_dests")
    pos += 1
    if not 1 <= count <= 254:
        raise DecodeError(Status.RINVNUMDESTS, f"number_of_dests {count}")
    dests: list[tuple[int, int, str] | str] = []
    for _ in range(count):
        flag = _u8(body, pos, end, "dest_flag")
        pos += 1
        if flag == 1:
            ton = _u8(body, pos, end, "dest_addr_ton")
            npi = _u8(body, pos + 1, end, "dest_addr_npi")
            addr, pos = _cstring(body, pos + 2, end, 21, "destination_addr")
            dests.append((ton, npi, addr))
        elif flag == 2:
            name, pos = _cstring(body, pos, end, 21, "dl_name")
            dests.append(name)
        else:
            raise DecodeError(Status.RINVDESTFLAG, f"dest_flag {flag}")
    return dests, pos


def _decode_unsuccess(body: bytes, pos: int, end: int) -> tuple[list[tuple[int, int, str, int]], int]:
    count = _u8(body, pos, end, "no_unsuccess")
    pos += 1
    items = []
    for _ in range(count):
        ton = _u8(body, pos, end, "dest_addr_ton")
        npi = _u8(body, pos + 1, end, "dest_addr_npi")
        addr, pos = _cstring(body, pos + 2, end, 21, "destination_addr")
        if pos + 4 > end:
            raise DecodeError(Status.RINVCMDLEN, "error_status_code: body too short")
        items.append((ton, npi, addr, U32.unpack_from(body, pos)[0]))
        pos += 4
    return items, pos


_DECODERS = {command: _compile(command) for command in BODIES}


# ------------------------------------------------------- submit_sm, lean

def _compile_pattern(command: Command, keep: tuple[str, ...]) -> re.Pattern[bytes]:
    """A regular expression over ``command``'s mandatory parameters that checks every
    bound the full decoder checks (a C-Octet String's NUL within its size) in one C
    call; its groups are the fields in ``keep``, then sm_length (the message itself,
    sm_length octets, is the caller's to bound)."""
    parts = []
    for field in BODIES[command][0]:
        name, kind = field[0], field[1]
        if kind is C:
            text = f"[^\\x00]{{0,{field[2] - 1}}}"
            parts.append((f"({text})" if name in keep else text) + "\\x00")
        elif kind is B:
            parts.append("(.)" if name in keep else ".")
        elif kind is SM:
            parts.append("(.)")
            break
        else:  # pragma: no cover - table error
            raise AssertionError(kind)
    return re.compile("".join(parts).encode(), re.DOTALL)


_SUBMIT_SM_FIELDS = _compile_pattern(Command.SUBMIT_SM, ("dest_addr_ton", "dest_addr_npi", "destination_addr")).match
_PDU_PARAMS = Pdu.__dict__["params"]  # the slot SubmitSm.params fills on first use
#: What an SMSC reads of a text message (``SubmitSm.message``), in the body's order.
MESSAGE_FIELDS = ("service_type", "source_addr", "esm_class", "schedule_delivery_time", "validity_period",
                  "registered_delivery", "replace_if_present_flag", "data_coding")


class SubmitSm(Pdu):
    """A submit_sm as the server reads it per lookup: the destination at hand, the
    other parameters decoded only when asked for (faults, traces, tests). It equals
    the Pdu that ``decode`` makes of the same bytes."""

    __slots__ = ("dest_addr_ton", "dest_addr_npi", "destination_addr", "_body")
    dest_addr_ton: int
    dest_addr_npi: int
    destination_addr: str
    _body: tuple[bytes, int, int]

    @property  # Pdu's slot, filled when first read
    def params(self) -> dict[str, Any]:
        try:
            return _PDU_PARAMS.__get__(self)  # type: ignore[no-any-return]
        except AttributeError:
            self._decode()
            return _PDU_PARAMS.__get__(self)  # type: ignore[no-any-return]

    @params.setter
    def params(self, value: dict[str, Any]) -> None:
        _PDU_PARAMS.__set__(self, value)

    def message(self) -> tuple[str, str, int, str, str, int, int, int, bytes]:
        """The text message's fields (``MESSAGE_FIELDS``, then short_message), without
        decoding the rest (an SMSC's per-message read; equal to the full decoder's)."""
        body, pos, _ = self._body
        if _submit_sm_message is not None:
            fields = _submit_sm_message(body, pos)
            if fields is not None:
                return fields  # type: ignore[no-any-return]
        return py_submit_sm_message(body, pos)

    def _decode(self) -> None:
        body, pos, end = self._body
        _PDU_PARAMS.__set__(self, _DECODERS[Command.SUBMIT_SM](body, pos, end)[0])


def py_submit_sm_message(body: bytes, pos: int) -> tuple[str, str, int, str, str, int, int, int, bytes]:
    """``SubmitSm.message`` in Python: the reference of the C reader."""
    # The bounds were checked when the PDU was framed: each C-Octet String ends
    # at its NUL, the octets between them are where the layout puts them.
    find = body.index
    i = find(0, pos)          # service_type
    j = find(0, i + 3)        # source_addr (after its ton and npi)
    d = find(0, j + 3)        # destination_addr; then esm_class, protocol_id, priority_flag
    k = find(0, d + 4)        # schedule_delivery_time
    v = find(0, k + 1)        # validity_period; then registered_delivery, replace_if_present_flag,
    n = body[v + 5]           # data_coding, sm_default_msg_id, sm_length
    return (body[pos:i].decode("latin-1"), body[i + 3:j].decode("latin-1"), body[d + 1],
            body[d + 4:k].decode("latin-1"), body[k + 1:v].decode("latin-1"), body[v + 1], body[v + 2],
            body[v + 3], body[v + 6:v + 6 + n])


def decode_submit_sm(status: int, sequence: int, body: bytes, pos: int, end: int) -> SubmitSm:
    """``decode_body`` for submit_sm, several times cheaper; the same DecodeError."""
    m = _SUBMIT_SM_FIELDS(body, pos, end)
    if m is not None:
        ton, npi, addr, sm_length = m.groups()
        length = sm_length[0]
        tail = m.end() + length
        if length <= 254 and tail <= end:
            pdu = SubmitSm.__new__(SubmitSm)
            pdu.command = Command.SUBMIT_SM
            pdu.status = status
            pdu.sequence = sequence
            pdu.dest_addr_ton = ton[0]
            pdu.dest_addr_npi = npi[0]
            pdu.destination_addr = addr.decode("latin-1")
            pdu.tlvs = decode_tlvs(body, tail, end) if tail < end else {}  # checked now, like every PDU's
            pdu._body = (body, pos, end)
            return pdu
    decode_body(Command.SUBMIT_SM, status, sequence, body, pos, end)  # raises the exact error
    raise AssertionError("the pattern refused what the decoder accepts")  # pragma: no cover


#: command_id -> Command without the cost of an Enum call per PDU.
COMMANDS: dict[int, Command] = {int(c): c for c in Command}


def decode(data: bytes) -> Pdu:
    """Decode exactly one complete PDU (header included). For tests and tools;
    the session machine frames a byte stream itself."""
    if len(data) < 16:
        raise DecodeError(Status.RINVCMDLEN, "shorter than a PDU header")
    length, command_id, status, sequence = HEADER.unpack_from(data)
    if length != len(data):
        raise DecodeError(Status.RINVCMDLEN, f"command_length {length} != {len(data)}")
    command = COMMANDS.get(command_id)
    if command is None:
        raise DecodeError(Status.RINVCMDID, f"command_id {command_id:#010x}")
    return decode_body(command, status, sequence, data, 16, length)


# ---------------------------------------------------------------- encoding

def _enc_cstring(value: str | bytes, size: int, name: str) -> bytes:
    raw = value.encode("latin-1") if isinstance(value, str) else bytes(value)
    if len(raw) >= size or b"\0" in raw:
        raise ValueError(f"{name}: {len(raw)} octets do not fit a C-string of {size}")
    return raw + b"\0"


def encode_tlvs(tlvs: dict[int, bytes]) -> bytes:
    return b"".join(TLV_HEAD.pack(tag, len(v)) + v for tag, v in tlvs.items())


def encode(pdu: Pdu) -> bytes:
    """Encode any PDU from its params (missing params default to 0 / empty)."""
    command = Command(pdu.command)
    fields, has_tlvs = BODIES[command]
    parts: list[bytes] = []
    params = pdu.params
    if not (pdu.status and command.is_response and not params and not pdu.tlvs):
        for field in fields:
            name, kind = field[0], field[1]
            value = params.get(name)
            if kind is C:
                parts.append(_enc_cstring(value or "", field[2], name))
            elif kind is B:
                parts.append(U8.pack(value or 0))
            elif kind is SM:
                value = value or b""
                if len(value) > 254:
                    raise ValueError("short_message longer than 254 octets")
                parts.append(U8.pack(len(value)) + value)
            elif kind is DESTS:
                value = value or []
                parts.append(U8.pack(len(value)))
                for dest in value:
                    if isinstance(dest, str):
                        parts.append(b"\x02" + _enc_cstring(dest, 21, "dl_name"))
                    else:
                        ton, npi, addr = dest
                        parts.append(bytes((1, ton, npi)) + _enc_cstring(addr, 21, "destination_addr"))
            elif kind is UNSUCC:
                value = value or []
                parts.append(U8.pack(len(value)))
                for ton, npi, addr, err in value:
                    parts.append(bytes((ton, npi)) + _enc_cstring(addr, 21, "destination_addr") + U32.pack(err))
        if pdu.tlvs:
            if not has_tlvs:
                raise ValueError(f"{command.name.lower()} takes no TLVs")
            parts.append(encode_tlvs(pdu.tlvs))
    body = b"".join(parts)
    return HEADER.pack(16 + len(body), command, pdu.status, pdu.sequence) + body


# ------------------------------------------------------ hot-path encoders

def encode_header_only(command: int, status: int, sequence: int) -> bytes:
    return HEADER.pack(16, command, status, sequence)


_SUBMIT_SM_RESP = int(Command.SUBMIT_SM_RESP)  # a plain int: an Enum member costs a lookup per use
_pack_header = HEADER.pack


def encode_submit_sm_resp(sequence: int, status: int, message_id: bytes = b"") -> bytes:
    """submit_sm_resp; on error the body is omitted (SMPP 3.4 §4.4.2)."""
    if status:
        return _pack_header(16, _SUBMIT_SM_RESP, status, sequence)
    return _pack_header(17 + len(message_id), _SUBMIT_SM_RESP, 0, sequence) + message_id + b"\0"


def encode_submit_sm_resps(sequences: list[int], lookups: list[Any]) -> bytes:
    """ESME_ROK submit_sm_resp for each sequence and its lookup (message_id: the
    lookup's ``id``) of a group commit, in one buffer."""
    return b"".join([_pack_header(17 + len(mid := b"%d" % lookup.id), _SUBMIT_SM_RESP, 0, sequence) + mid + b"\0"
                     for sequence, lookup in zip(sequences, lookups)])


_DELIVER_SM = int(Command.DELIVER_SM)
_DELIVER_HEAD = b"\0" + b"\0\0HLR\0"  # service_type "", source TON 0 NPI 0 "HLR"
_DELIVER_MID = bytes((0x04, 0, 0)) + b"\0\0" + bytes((0, 0))
# esm_class 0x04 (SMSC delivery receipt), protocol_id 0, priority 0,
# schedule/validity "" , registered_delivery 0, replace_if_present 0


def encode_receipt(sequence: int, destination: bytes, text: bytes, data_coding: int,
                   tlvs: bytes) -> bytes:
    """deliver_sm carrying an HLR receipt, (source_addr HLR 0/0, destination_addr the number 0/0)."""
    body = b"".join((
        _DELIVER_HEAD, b"\0\0", destination, b"\0", _DELIVER_MID,
        bytes((data_coding, 0, len(text))), text, tlvs,
    ))
    return _pack_header(16 + len(body), _DELIVER_SM, 0, sequence) + body


def encode_text_receipt(sequence: int, source: str, destination: str, text: bytes, data_coding: int,
                        tlvs: bytes) -> bytes:
    """deliver_sm carrying a text message's receipt, as an SMSC sends it: from the
    handset (source_addr the number, TON 1 NPI 1) to the ESME's address (destination_addr
    its source_addr, at most 20 characters, TON 0 NPI 0)."""
    body = b"".join((b"\0\x01\x01", source.encode("latin-1"), b"\0\0\0", destination[:20].encode("latin-1"), b"\0",
                     _DELIVER_MID, bytes((data_coding, 0, len(text))), text, tlvs))
    return _pack_header(16 + len(body), _DELIVER_SM, 0, sequence) + body


def encode_receipt_smpp33(sequence: int, destination: bytes, text: bytes, data_coding: int,
                          tlvs: bytes) -> bytes:
    """``encode_receipt`` for an SMPP 3.3 peer, which knows no TLVs: the body ends after
    short_message (its text carries the id and the state). A text that went to
    message_payload (over 254 octets) comes back to short_message, cut to 254."""
    if not text and tlvs:
        text = decode_tlvs(tlvs, 0, len(tlvs)).get(Tag.MESSAGE_PAYLOAD, b"")[:254]
    return encode_receipt(sequence, destination, text, data_coding, b"")  # the C one when built


# ------------------------------------------------ the C versions, when built

def _submit_sm_layout() -> tuple[tuple[int, int], ...]:
    """submit_sm's fields for the C reader, as ``_compile_pattern`` reads them:
    (size, kept) with size > 0 a C-Octet String's maximum, 0 one octet, -1 sm_length;
    kept 0/1/2 for dest_addr_ton, dest_addr_npi, destination_addr, else -1."""
    keep = {"dest_addr_ton": 0, "dest_addr_npi": 1, "destination_addr": 2}
    layout = []
    for field in BODIES[Command.SUBMIT_SM][0]:
        name, kind = field[0], field[1]
        if kind is SM:
            layout.append((-1, -1))
            break
        layout.append((field[2] if kind is C else 0, keep.get(name, -1)))
    return tuple(layout)


#: hlrsmpp.smpp._speedups, or None (hlrsmpp.native): the Python functions above stay the reference.
speedups = load_native("hlrsmpp.smpp._speedups")
if speedups is not None:
    speedups.configure(_submit_sm_layout(), SubmitSm, Pdu, Command.SUBMIT_SM, Command.DELIVER_SM_RESP)
#: The Python encoders, kept as the reference the C ones are tested against.
py_encode_submit_sm_resps, py_encode_receipt = encode_submit_sm_resps, encode_receipt
py_encode_text_receipt = encode_text_receipt
#: ``scan_bound(buf, pos, max_pdu_size, can_tx, can_rx, events) -> pos``: the run of
#: per-lookup PDUs a bound session reads (see _speedups.c); None without the C module.
scan_bound = None
_submit_sm_message = None
if speedups is not None:
    _submit_sm_message = speedups.submit_sm_message
    encode_submit_sm_resps = speedups.encode_submit_sm_resps
    encode_receipt = speedups.encode_receipt
    encode_text_receipt = speedups.encode_text_receipt
    scan_bound = speedups.scan_bound
