"""hlrsmpp.smpp.session.SmscSession, driven with plain bytes (no sockets, no clocks)."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

try:
    import hlrsmpp  # noqa: F401
except ImportError:  # pragma: no cover - running without the project on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import smpplib.smpp

from hlrsmpp.smpp.codec import (
    MAX_PDU_SIZE, Command, Pdu, Tag, decode, encode, encode_receipt, encode_submit_sm_resp,
    encode_tlvs,
)
from hlrsmpp.smpp.session import EVENTS, BindMode, RefusedBind, SmscSession, State
from hlrsmpp.smpp.status import Status

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

BINDS = {BindMode.TX: Command.BIND_TRANSMITTER, BindMode.RX: Command.BIND_RECEIVER,
         BindMode.TRX: Command.BIND_TRANSCEIVER}
TRANSMIT = [Command.SUBMIT_SM, Command.SUBMIT_MULTI, Command.DATA_SM, Command.QUERY_SM,
            Command.CANCEL_SM, Command.REPLACE_SM]
NEVER_FROM_ESME = [Command.OUTBIND, Command.ALERT_NOTIFICATION, Command.DELIVER_SM,
                   Command.BIND_RECEIVER_RESP, Command.BIND_TRANSMITTER_RESP,
                   Command.BIND_TRANSCEIVER_RESP, Command.SUBMIT_SM_RESP,
                   Command.SUBMIT_MULTI_RESP, Command.QUERY_SM_RESP, Command.CANCEL_SM_RESP,
                   Command.REPLACE_SM_RESP]
#: Responses an SMSC takes from an ESME and never answers.
ACCEPTED_RESPONSES = {Command.GENERIC_NACK, Command.ENQUIRE_LINK_RESP, Command.UNBIND_RESP,
                      Command.DELIVER_SM_RESP, Command.DATA_SM_RESP}


# ------------------------------------------------------------------------ helpers

def frame(command_id: int, body: bytes = b"", status: int = 0, sequence: int = 1) -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, status, sequence) + body


def frames(data: bytes) -> list[Pdu]:
    """Split what the session wrote into PDUs (each must decode)."""
    out, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        assert length >= 16 and pos + length <= len(data)
        out.append(decode(data[pos:pos + length]))
        pos += length
    return out


def sent(session: SmscSession) -> list[Pdu]:
    return frames(session.data_to_send())


def bind_pdu(mode: BindMode = BindMode.TRX, sequence: int = 1, version: int = 0x34) -> Pdu:
    return Pdu(BINDS[mode], sequence, 0, {
        "system_id": "esme01", "password": "secret", "system_type": "HLR",
        "interface_version": version, "addr_ton": 0, "addr_npi": 0, "address_range": ""})


def submit(sequence: int = 2, destination: str = "447700900123", **tlvs) -> Pdu:
    return Pdu(Command.SUBMIT_SM, sequence, 0, {
        "service_type": "", "source_addr_ton": 1, "source_addr_npi": 1, "source_addr": "4477",
        "dest_addr_ton": 1, "dest_addr_npi": 1, "destination_addr": destination,
        "esm_class": 0, "protocol_id": 0, "priority_flag": 0, "schedule_delivery_time": "",
        "validity_period": "", "registered_delivery": 1, "replace_if_present_flag": 0,
        "data_coding": 0, "sm_default_msg_id": 0, "short_message": b"hlr"}, dict(tlvs))


def request(command: Command, sequence: int) -> Pdu:
    """A valid PDU of any command (mandatory params at their defaults)."""
    params = {"dest_address": [(1, 1, "4477")]} if command is Command.SUBMIT_MULTI else {}
    if command in (Command.DELIVER_SM_RESP, Command.DATA_SM_RESP):
        params = {"message_id": ""}
    return Pdu(command, sequence, 0, params)


def bound(mode: BindMode = BindMode.TRX, version: int = 0x34, **kwargs) -> SmscSession:
    session = SmscSession(**kwargs)
    [event] = session.receive_data(encode(bind_pdu(mode, 1, version)))
    session.accept_bind(event)
    session.data_to_send()
    return session


def unbinding(mode: BindMode = BindMode.TRX) -> SmscSession:
    session = bound(mode)
    session.unbind()
    session.data_to_send()
    return session


def header_only(command: int, status: int, sequence: int) -> Pdu:
    return Pdu(command, sequence, status)


SESSION_MAKERS = {
    "open": SmscSession,
    "tx": lambda: bound(BindMode.TX),
    "rx": lambda: bound(BindMode.RX),
    "trx": lambda: bound(BindMode.TRX),
    "unbinding": unbinding,
}


# ------------------------------------------------------------------------ framing

def test_byte_at_a_time_equals_one_chunk():
    stream = b"".join(encode(p) for p in (
        submit(2), Pdu(Command.ENQUIRE_LINK, 3), submit(4, "491701234567"),
        Pdu(Command.DELIVER_SM_RESP, 5, 0, {"message_id": ""})))
    whole = bound()
    events = whole.receive_data(stream)
    assert [e.sequence for e in events] == [2, 4, 5]
    assert events[0] == submit(2)
    one = bound()
    trickle = []
    for i in range(len(stream)):
        trickle += one.receive_data(stream[i:i + 1])
    assert trickle == events
    assert one.data_to_send() == whole.data_to_send() == encode(Pdu(Command.ENQUIRE_LINK_RESP, 3))


def test_partial_header_and_body_wait_for_more():
    session = bound()
    data = encode(submit(9))
    assert session.receive_data(data[:10]) == []
    assert session.receive_data(data[10:16]) == []
    assert session.receive_data(data[16:-1]) == []
    assert session.data_to_send() == b""
    assert session.receive_data(data[-1:]) == [submit(9)]
    assert session.receive_data(b"") == []


def test_empty_input_and_empty_output():
    session = SmscSession()
    assert session.receive_data(b"") == []
    assert session.data_to_send() == b""
    assert session.state is State.OPEN and session.mode is None


STREAM_PDUS = st.sampled_from([
    encode(submit(10)), encode(submit(11, "12345678901234567890")),
    encode(Pdu(Command.ENQUIRE_LINK, 12)), encode(Pdu(Command.ENQUIRE_LINK_RESP, 13)),
    encode(Pdu(Command.DELIVER_SM_RESP, 14, 0, {"message_id": ""})),
    encode(Pdu(Command.DELIVER_SM_RESP, 15, Status.RX_T_APPN)),
    encode(Pdu(Command.GENERIC_NACK, 16, Status.RINVCMDID)),
    encode(Pdu(Command.QUERY_SM, 17, 0, {"message_id": "42"})),
    encode(Pdu(Command.DATA_SM, 18, 0, {"destination_addr": "1" * 64},
               {Tag.MESSAGE_PAYLOAD: b"x" * 300})),
    frame(0x0000000A, b"unknown", sequence=19),
    frame(Command.SUBMIT_SM, b"\0\1\1" + b"1" * 40, sequence=20),   # malformed
    frame(Command.OUTBIND, sequence=21),
    encode(Pdu(Command.BIND_TRANSMITTER, 22, 0, {"system_id": "again"})),
])


@SETTINGS
@given(pdus=st.lists(STREAM_PDUS, min_size=1, max_size=12),
       cuts=st.lists(st.integers(0, 10_000), max_size=20),
       mode=st.sampled_from([BindMode.TX, BindMode.RX, BindMode.TRX]))
def test_framing_across_arbitrary_split_points(pdus, cuts, mode):
    stream = b"".join(pdus)
    whole = bound(mode)
    expected_events = whole.receive_data(stream)
    expected_out = whole.data_to_send()
    points = sorted({c % (len(stream) + 1) for c in cuts})
    split = bound(mode)
    events, prev = [], 0
    for point in points + [len(stream)]:
        events += split.receive_data(stream[prev:point])
        prev = point
    assert events == expected_events
    assert split.data_to_send() == expected_out
    assert split.state is whole.state


# ---------------------------------------------------------------- enquire_link

@pytest.mark.parametrize("state", SESSION_MAKERS)
def test_enquire_link_answered_in_any_state(state):
    session = SESSION_MAKERS[state]()
    before = session.state
    assert session.receive_data(encode(Pdu(Command.ENQUIRE_LINK, 0x7FFFFFFF))) == []
    assert sent(session) == [header_only(Command.ENQUIRE_LINK_RESP, 0, 0x7FFFFFFF)]
    assert session.state is before


@pytest.mark.parametrize("state", SESSION_MAKERS)
def test_enquire_link_resp_and_generic_nack_from_esme(state):
    session = SESSION_MAKERS[state]()
    assert session.receive_data(encode(Pdu(Command.ENQUIRE_LINK_RESP, 4))) == []
    nack = Pdu(Command.GENERIC_NACK, 5, Status.RINVCMDLEN)
    assert session.receive_data(encode(nack)) == [nack]
    assert session.data_to_send() == b""


def test_enquire_link_from_server_uses_next_sequence():
    session = bound()
    session.enquire_link()
    session.enquire_link()
    assert sent(session) == [header_only(Command.ENQUIRE_LINK, 0, 1),
                             header_only(Command.ENQUIRE_LINK, 0, 2)]


# ---------------------------------------------------------------- generic_nack

@pytest.mark.parametrize("command_id", [0x0000000A, 0x00000000, 0x80000022, 0x00010200,
                                        0xFFFFFFFF, 0x00000104])
@pytest.mark.parametrize("state", SESSION_MAKERS)
def test_unknown_command_id_gets_generic_nack(state, command_id):
    session = SESSION_MAKERS[state]()
    before = session.state
    data = frame(command_id, b"whatever body", sequence=0x1234) + encode(Pdu(Command.ENQUIRE_LINK, 8))
    assert session.receive_data(data) == []
    assert sent(session) == [header_only(Command.GENERIC_NACK, Status.RINVCMDID, 0x1234),
                             header_only(Command.ENQUIRE_LINK_RESP, 0, 8)]
    assert session.state is before


@pytest.mark.parametrize("command", NEVER_FROM_ESME, ids=lambda c: c.name.lower())
@pytest.mark.parametrize("state", ["open", "trx"])
def test_smsc_only_commands_from_esme_get_generic_nack(state, command):
    session = SESSION_MAKERS[state]()
    assert session.receive_data(encode(request(command, 77))) == []
    assert sent(session) == [header_only(Command.GENERIC_NACK, Status.RINVCMDID, 77)]
    assert session.state is not State.CLOSED


@pytest.mark.parametrize("status", [0, 0x45, 0x58])
@pytest.mark.parametrize("message_id", ["", "7", "x" * 64])
def test_deliver_sm_resp_event_equals_the_decoded_pdu(status, message_id):
    """The receipt answer's short path (empty message_id) and the decoder's agree."""
    session = bound(BindMode.RX)
    data = encode(Pdu(Command.DELIVER_SM_RESP, 7, status, {"message_id": message_id}))
    assert session.receive_data(data) == [decode(data)]


# ---------------------------------------------------------------- violations

@pytest.mark.parametrize("state", SESSION_MAKERS)
def test_violations_count_framing_errors_in_any_state_and_errors_only_before_binding(state):
    """What the application tarpits: a bound ESME's error (an unknown command,
    a cancel_sm it may not send) is ordinary; before binding, or a broken frame, it is not."""
    session = SESSION_MAKERS[state]()
    session.receive_data(frame(0x77, sequence=1) + encode(submit(2)) + encode(Pdu(Command.ENQUIRE_LINK, 3)))
    session.data_to_send()
    assert session.violations == (2 if state == "open" else 0)  # unknown id; submit_sm unbound
    session.receive_data(struct.pack(">IIII", 3, 4, 0, 4))
    assert session.violations == (3 if state == "open" else 1)
    assert session.state is State.CLOSED


def test_bind_and_enquire_link_are_no_violations():
    session = SmscSession()
    session.receive_data(encode(Pdu(Command.ENQUIRE_LINK, 1)) + encode(bind_pdu(BindMode.TX, 2)))
    session.reject_bind(bind_pdu(BindMode.TX, 2), Status.RINVPASWD)  # the application's call
    assert session.violations == 0


# ---------------------------------------------------------------- command_length

@pytest.mark.parametrize("length", [0, 1, 15])
@pytest.mark.parametrize("state", SESSION_MAKERS)
def test_command_length_below_16_closes(state, length):
    session = SESSION_MAKERS[state]()
    data = encode(Pdu(Command.ENQUIRE_LINK, 3)) + struct.pack(">IIII", length, 0x15, 0, 4) \
        + encode(submit(5))
    assert session.receive_data(data) == []
    assert sent(session) == [header_only(Command.ENQUIRE_LINK_RESP, 0, 3),
                             header_only(Command.GENERIC_NACK, Status.RINVCMDLEN, 4)]
    assert session.state is State.CLOSED and session.close_reason
    assert session.receive_data(encode(Pdu(Command.ENQUIRE_LINK, 6))) == []
    assert session.data_to_send() == b""


def test_command_length_above_max_pdu_size_closes_before_the_body_arrives():
    session = bound(max_pdu_size=1024)
    events = session.receive_data(encode(submit(2)) + struct.pack(">IIII", 1025, 4, 0, 3))
    assert events == [submit(2)]  # what came before is still delivered
    assert sent(session) == [header_only(Command.GENERIC_NACK, Status.RINVCMDLEN, 3)]
    assert session.state is State.CLOSED
    assert session.receive_data(b"\0" * 2000) == [] and session.data_to_send() == b""


@pytest.mark.parametrize("length", [MAX_PDU_SIZE + 1, 0xFFFFFFFF])
def test_command_length_above_default_maximum(length):
    session = SmscSession()
    assert session.receive_data(struct.pack(">IIII", length, 4, 0, 9)) == []
    assert sent(session) == [header_only(Command.GENERIC_NACK, Status.RINVCMDLEN, 9)]
    assert session.state is State.CLOSED


def test_command_length_exactly_max_pdu_size_is_accepted():
    session = bound(max_pdu_size=1024)
    pdu = submit(2)
    pad = 1024 - len(encode(pdu)) - 4
    pdu.tlvs = {0x1400: b"v" * pad}
    assert len(encode(pdu)) == 1024
    assert session.receive_data(encode(pdu)) == [pdu]
    assert session.state is State.BOUND


# ------------------------------------------------------------------ bind states

@pytest.mark.parametrize("command", TRANSMIT, ids=lambda c: c.name.lower())
def test_transmit_before_bind_is_rinvbndsts(command):
    session = SmscSession()
    assert session.receive_data(encode(request(command, 31))) == []
    assert sent(session) == [header_only(command.response, Status.RINVBNDSTS, 31)]
    assert session.state is State.OPEN


def test_submit_sm_before_bind_is_rinvbndsts():
    session = SmscSession()
    assert session.receive_data(encode(submit(2))) == []
    data = session.data_to_send()
    assert data == encode_submit_sm_resp(2, Status.RINVBNDSTS)
    sl = smpplib.smpp.parse_pdu(data, client=None)
    assert (sl.command, sl.status, sl.sequence) == ("submit_sm_resp", Status.RINVBNDSTS, 2)


@pytest.mark.parametrize("command", TRANSMIT, ids=lambda c: c.name.lower())
def test_transmit_on_receiver_is_rinvbndsts(command):
    session = bound(BindMode.RX)
    assert session.receive_data(encode(request(command, 32))) == []
    assert sent(session) == [header_only(command.response, Status.RINVBNDSTS, 32)]
    assert session.state is State.BOUND


@pytest.mark.parametrize("mode", [BindMode.TX, BindMode.TRX])
@pytest.mark.parametrize("command", TRANSMIT, ids=lambda c: c.name.lower())
def test_transmit_on_transmitter_is_an_event(mode, command):
    session = bound(mode)
    pdu = decode(encode(request(command, 33)))
    assert session.receive_data(encode(pdu)) == [pdu]
    assert session.data_to_send() == b""


@pytest.mark.parametrize("mode", [BindMode.TX, BindMode.RX, BindMode.TRX])
@pytest.mark.parametrize("response", [Command.DELIVER_SM_RESP, Command.DATA_SM_RESP])
def test_receipt_responses_reach_the_application_only_on_receivers(mode, response):
    session = bound(mode)
    ok = Pdu(response, 40, 0, {"message_id": ""})
    err = Pdu(response, 41, Status.RX_T_APPN)
    events = session.receive_data(encode(ok) + encode(err))
    assert events == ([ok, err] if mode & BindMode.RX else [])
    assert session.data_to_send() == b""


def test_receipt_response_before_bind_is_dropped():
    session = SmscSession()
    assert session.receive_data(encode(Pdu(Command.DELIVER_SM_RESP, 3, 0, {"message_id": ""}))) == []
    assert session.data_to_send() == b""


def test_malformed_receipt_response_is_dropped_without_an_answer():
    """A response is never answered; a malformed one just does not reach the app."""
    session = bound(BindMode.RX)
    assert session.receive_data(frame(Command.DELIVER_SM_RESP, b"no-nul", sequence=3)) == []
    assert session.data_to_send() == b""
    assert session.state is State.BOUND


@pytest.mark.parametrize("first", [BindMode.TX, BindMode.RX, BindMode.TRX])
@pytest.mark.parametrize("second", [BindMode.TX, BindMode.RX, BindMode.TRX])
def test_bind_on_a_bound_session_is_ralybnd(first, second):
    session = bound(first)
    assert session.receive_data(encode(bind_pdu(second, 7))) == []
    assert sent(session) == [header_only(BINDS[second].response, Status.RALYBND, 7)]
    assert session.state is State.BOUND and session.mode is first


def test_bind_while_unbinding_is_ralybnd():
    session = unbinding()
    assert session.receive_data(encode(bind_pdu(BindMode.TX, 7))) == []
    assert sent(session) == [header_only(Command.BIND_TRANSMITTER_RESP, Status.RALYBND, 7)]


@pytest.mark.parametrize("mode", [BindMode.TX, BindMode.RX, BindMode.TRX])
def test_accept_bind_v34_sends_sc_interface_version(mode):
    session = SmscSession(system_id="hlrsmpp")
    bind = bind_pdu(mode, 0x55)
    [event] = session.receive_data(encode(bind))
    assert event == bind and session.data_to_send() == b""
    assert not session.can_submit and not session.can_receive
    session.accept_bind(event)
    data = session.data_to_send()
    assert frames(data) == [Pdu(BINDS[mode].response, 0x55, 0, {"system_id": "hlrsmpp"},
                                {Tag.SC_INTERFACE_VERSION: b"\x34"})]
    sl = smpplib.smpp.parse_pdu(data, client=None)
    assert (sl.command, sl.status, sl.sequence) == (BINDS[mode].response.name.lower(), 0, 0x55)
    assert (sl.system_id, sl.sc_interface_version) == (b"hlrsmpp", 0x34)
    assert session.state is State.BOUND and session.mode is mode
    assert session.interface_version == 0x34
    assert session.can_submit == bool(mode & BindMode.TX)
    assert session.can_receive == bool(mode & BindMode.RX)


@pytest.mark.parametrize("version", [0x35, 0x50, 0xFF])
@pytest.mark.parametrize("mode", [BindMode.TX, BindMode.RX, BindMode.TRX])
def test_bind_above_v34_binds_as_v34(mode, version):
    """SMPP 5.0 clients (0x50) and anything newer get a 3.4 session and learn it from
    sc_interface_version."""
    session = SmscSession(system_id="hlrsmpp")
    [event] = session.receive_data(encode(bind_pdu(mode, 9, version=version)))
    assert session.bind_version(event) == 0x34
    session.accept_bind(event)
    assert sent(session) == [Pdu(BINDS[mode].response, 9, 0, {"system_id": "hlrsmpp"},
                                 {Tag.SC_INTERFACE_VERSION: b"\x34"})]
    assert session.interface_version == 0x34 and session.state is State.BOUND


@pytest.mark.parametrize("version", [0x33, 0x10, 0x00])
@pytest.mark.parametrize("mode", [BindMode.TX, BindMode.RX])
def test_accept_bind_v33_and_below_sends_no_tlv(mode, version):
    session = SmscSession(system_id="hlrsmpp")
    [event] = session.receive_data(encode(bind_pdu(mode, 3, version=version)))
    assert session.bind_version(event) == 0x33
    session.accept_bind(event)
    data = session.data_to_send()
    assert frames(data) == [Pdu(BINDS[mode].response, 3, 0, {"system_id": "hlrsmpp"})]
    assert data == encode(Pdu(BINDS[mode].response, 3, 0, {"system_id": "hlrsmpp"}))
    assert session.interface_version == 0x33 and session.state is State.BOUND


@pytest.mark.parametrize("version", [0x33, 0x00])
def test_transceiver_bind_in_v33_cannot_be_served(version):
    """The session refuses it alone, ESME_RBINDFAIL, before any account is looked at, and
    hands it over only to be counted; what follows it is read at once."""
    session = SmscSession(system_id="hlrsmpp")
    data = encode(bind_pdu(BindMode.TRX, 4, version=version)) + encode(Pdu(Command.ENQUIRE_LINK, 5))
    [event] = session.receive_data(data)
    assert isinstance(event, RefusedBind) and event.reason == "interface_version"
    assert event.sequence == 4 and event["system_id"] == "esme01"
    assert session.bind_version(event) is None
    with pytest.raises(ValueError):
        session.accept_bind(event)
    assert sent(session) == [Pdu(Command.BIND_TRANSCEIVER_RESP, 4, Status.RBINDFAIL, {"system_id": "hlrsmpp"}),
                             Pdu(Command.ENQUIRE_LINK_RESP, 5)]
    assert session.state is State.OPEN
    # Still open: a bind it can serve is handed over to be decided.
    [bind] = session.receive_data(encode(bind_pdu(BindMode.TX, 6)))
    assert type(bind) is Pdu and bind.command == Command.BIND_TRANSMITTER


@pytest.mark.parametrize("version", [0x33, 0x34, 0x50], ids=["0x33", "0x34", "0x50"])
def test_data_sm_is_smpp34_only(version):
    """SMPP 3.3 has no data_sm: from a 3.3 transmitter it is an unknown command
    (generic_nack ESME_RINVCMDID, as a 3.3 peer reads it); a 3.4 one's is handed on."""
    session = bound(BindMode.TX, version)
    data_sm = Pdu(Command.DATA_SM, 5, 0, {"destination_addr": "447700900123"})
    events = session.receive_data(encode(data_sm) + encode(submit(6)))
    if version == 0x33:
        assert [e.command for e in events] == [Command.SUBMIT_SM]
        assert sent(session) == [header_only(Command.GENERIC_NACK, Status.RINVCMDID, 5)]
        assert session.violations == 0  # a bound peer, not a stranger: no tarpit
    else:
        assert [e.command for e in events] == [Command.DATA_SM, Command.SUBMIT_SM]
        assert events[0].params["destination_addr"] == "447700900123" and sent(session) == []
    assert session.state is State.BOUND


@pytest.mark.parametrize("version", [0x33, 0x34], ids=["0x33", "0x34"])
def test_a_receivers_receipt_encoder_follows_its_version(version):
    """A 3.3 receiver's receipts end after short_message; a 3.4 one's keep their TLVs."""
    session = bound(BindMode.RX, version)
    tlvs = encode_tlvs({Tag.MESSAGE_STATE: b"\x02", Tag.RECEIPTED_MESSAGE_ID: b"42\0"})
    pdu = decode(session.encode_receipt(7, b"447700900123", b"id:42 stat:DELIVRD", 3, tlvs))
    assert pdu.command == Command.DELIVER_SM and pdu.params["short_message"] == b"id:42 stat:DELIVRD"
    assert pdu.tlvs == ({} if version == 0x33 else {Tag.MESSAGE_STATE: b"\x02", Tag.RECEIPTED_MESSAGE_ID: b"42\0"})
    # A 3.3 receiver's data_sm_resp answers nothing we sent: generic_nack, nothing handed on.
    if version == 0x33:
        assert session.receive_data(encode(Pdu(Command.DATA_SM_RESP, 7, 0, {"message_id": ""}))) == []
        assert sent(session) == [header_only(Command.GENERIC_NACK, Status.RINVCMDID, 7)]


@pytest.mark.parametrize("status", [Status.RINVSYSID, Status.RINVPASWD, Status.RINVSYSTYP,
                                    Status.RBINDFAIL, Status.RACCEXPIRY])
@pytest.mark.parametrize("mode", [BindMode.TX, BindMode.RX, BindMode.TRX])
def test_reject_bind_carries_the_status_and_system_id(mode, status):
    session = SmscSession()
    [event] = session.receive_data(encode(bind_pdu(mode, 9)))
    session.reject_bind(event, status)
    data = session.data_to_send()
    assert frames(data) == [Pdu(BINDS[mode].response, 9, status, {"system_id": "hlrsmpp"})]
    assert session.state is State.OPEN and session.mode is None
    # the ESME may try again
    assert session.receive_data(encode(bind_pdu(mode, 10))) == [bind_pdu(mode, 10)]


def test_malformed_bind_gets_the_decode_status():
    session = SmscSession()
    body = b"s" * 20 + b"\0" + b"pw\0HLR\0\x34\0\0\0"
    assert session.receive_data(frame(Command.BIND_TRANSCEIVER, body, sequence=4)) == []
    assert sent(session) == [header_only(Command.BIND_TRANSCEIVER_RESP, Status.RINVSYSID, 4)]
    assert session.state is State.OPEN


def test_bind_with_trailing_tlv_is_rinvcmdlen():
    session = SmscSession()
    data = encode(bind_pdu(BindMode.TX, 4))
    data = struct.pack(">I", len(data) + 5) + data[4:] + b"\x02\x10\x00\x01\x34"
    assert session.receive_data(data) == []
    assert sent(session) == [header_only(Command.BIND_TRANSMITTER_RESP, Status.RINVCMDLEN, 4)]


@pytest.mark.parametrize("state", SESSION_MAKERS)
@pytest.mark.parametrize("command", list(Command), ids=lambda c: c.name.lower())
def test_every_command_is_answered_by_the_session_or_is_a_named_event(state, command):
    """The session's table says, per state, what it takes; what it hands over is an event
    the application has a handler for (``EVENTS``), what it does not it answers or drops."""
    session = SESSION_MAKERS[state]()
    pdu = bind_pdu(BindMode.TX, 5) if command is Command.BIND_TRANSMITTER else request(command, 5)
    events = session.receive_data(encode(pdu))
    assert all(event.command in EVENTS for event in events)
    assert events or command.is_response or session.data_to_send(), "a request left unanswered"


def test_the_adapter_has_a_handler_for_every_event():
    from hlrsmpp.server.smpp import HANDLERS
    inline = {Command.SUBMIT_SM, Command.DELIVER_SM_RESP}  # decided in the batch loop
    assert set(HANDLERS) | inline == set(EVENTS) and not set(HANDLERS) & inline


# ---------------------------------------------------------------------- unbind

@pytest.mark.parametrize("state", SESSION_MAKERS)
def test_unbind_from_esme(state):
    session = SESSION_MAKERS[state]()
    data = encode(Pdu(Command.UNBIND, 11)) + encode(submit(12)) + encode(Pdu(Command.ENQUIRE_LINK, 13))
    assert session.receive_data(data) == [Pdu(Command.UNBIND, 11)]
    assert sent(session) == [header_only(Command.UNBIND_RESP, 0, 11)]
    assert session.state is State.CLOSED and session.close_reason == "unbind"
    assert not session.can_submit and not session.can_receive
    assert session.receive_data(encode(Pdu(Command.ENQUIRE_LINK, 14))) == []
    assert session.data_to_send() == b""


def test_server_unbind_then_unbind_resp():
    session = bound()
    session._sequence = 41
    session.unbind()
    assert session.state is State.UNBINDING
    assert sent(session) == [header_only(Command.UNBIND, 0, 42)]
    session.unbind()  # a second call sends nothing more
    assert session.data_to_send() == b""
    # still answers enquire_link and still takes receipts' responses meanwhile
    ack = Pdu(Command.DELIVER_SM_RESP, 5, 0, {"message_id": ""})
    assert session.receive_data(encode(Pdu(Command.ENQUIRE_LINK, 3)) + encode(ack)) == [ack]
    assert sent(session) == [header_only(Command.ENQUIRE_LINK_RESP, 0, 3)]
    assert session.receive_data(encode(Pdu(Command.UNBIND_RESP, 42))) == []
    assert session.state is State.CLOSED and session.data_to_send() == b""


def test_unbind_resp_when_not_unbinding_is_ignored():
    session = bound()
    assert session.receive_data(encode(Pdu(Command.UNBIND_RESP, 3))) == []
    assert session.state is State.BOUND and session.data_to_send() == b""


def test_server_unbind_before_bind_just_closes():
    session = SmscSession()
    session.unbind()
    assert session.state is State.CLOSED and session.data_to_send() == b""


def test_server_unbind_when_closed_does_nothing():
    session = bound()
    session.receive_data(encode(Pdu(Command.UNBIND, 2)))
    session.data_to_send()
    session.unbind()
    assert session.state is State.CLOSED and session.data_to_send() == b""


def test_unbind_with_a_body_is_answered_rinvcmdlen_and_stays_bound():
    session = bound()
    assert session.receive_data(frame(Command.UNBIND, b"\0", sequence=6)) == []
    assert sent(session) == [header_only(Command.UNBIND_RESP, Status.RINVCMDLEN, 6)]
    assert session.state is State.BOUND


# --------------------------------------------------------------- malformed bodies

@pytest.mark.parametrize("body_fix,status", [
    (lambda b: b.replace(b"447700900123\0", b"4" * 25 + b"\0"), Status.RINVDSTADR),
    (lambda b: b.replace(b"4477\0", b"4" * 30 + b"\0", 1), Status.RINVSRCADR),
    (lambda b: b[:-4] + b"\x09hlr", Status.RINVMSGLEN),
    (lambda b: b + b"\x04\x24\x00\x10abc", Status.RINVOPTPARSTREAM),
    (lambda b: b + b"\x04\x24", Status.RINVOPTPARSTREAM),
    (lambda b: b + b"\x02\x04\x00\x01\x01", Status.RINVPARLEN),
    (lambda b: b[:30], Status.RINVCMDLEN),
], ids=["dest_too_long", "source_too_long", "sm_length_overrun", "tlv_overrun",
        "tlv_truncated_header", "tlv_wrong_length", "cut_short"])
def test_malformed_submit_sm_gets_submit_sm_resp_with_the_decode_status(body_fix, status):
    session = bound(BindMode.TX)
    body = body_fix(encode(submit(2))[16:])
    data = frame(Command.SUBMIT_SM, body, sequence=77) + encode(submit(78))
    assert session.receive_data(data) == [submit(78)]
    assert sent(session) == [header_only(Command.SUBMIT_SM_RESP, status, 77)]
    assert session.state is State.BOUND


def test_malformed_submit_multi_statuses():
    session = bound(BindMode.TX)
    good = encode(request(Command.SUBMIT_MULTI, 5))
    zero = good[:16 + 4] + b"\0" + good[16 + 4 + 1 + 3 + 5:]
    assert decode(good)["dest_address"] == [(1, 1, "4477")]
    zero = struct.pack(">I", len(zero)) + zero[4:]
    assert session.receive_data(zero) == []
    assert sent(session) == [header_only(Command.SUBMIT_MULTI_RESP, Status.RINVNUMDESTS, 5)]


# -------------------------------------------------------------------- sequences

def test_next_sequence_counts_from_one():
    session = SmscSession()
    assert [session.next_sequence() for _ in range(3)] == [1, 2, 3]


def test_next_sequence_wraps_at_0x7fffffff_to_1():
    session = SmscSession()
    session._sequence = 0x7FFFFFFE
    assert session.next_sequence() == 0x7FFFFFFF
    assert session.next_sequence() == 1
    assert session.next_sequence() == 2


# ----------------------------------------------------------------------- output

def test_send_and_reply():
    session = bound()
    receipt = Pdu(Command.DELIVER_SM, session.next_sequence(), 0, {"source_addr": "HLR"},
                  {Tag.MESSAGE_STATE: b"\x02"})
    session.send(receipt)
    session.reply(Command.SUBMIT_SM, 8, 0)
    session.reply(Command.SUBMIT_SM, 9, Status.RTHROTTLED)
    session.reply(Command.ENQUIRE_LINK, 10, 0)
    out = sent(session)
    assert out[0] == decode(encode(receipt))
    assert out[1] == Pdu(Command.SUBMIT_SM_RESP, 8, 0, {"message_id": ""})
    assert out[2] == header_only(Command.SUBMIT_SM_RESP, Status.RTHROTTLED, 9)
    assert out[3] == header_only(Command.ENQUIRE_LINK_RESP, 0, 10)
    assert session.data_to_send() == b""


def test_a_whole_conversation_with_smpplib():
    """An smpplib ESME: bind, submit, receipt and its resp, enquire_link, unbind."""

    class Client:
        sequence = 0

        def next_sequence(self):
            self.sequence += 1
            return self.sequence

    esme = Client()
    session = SmscSession(system_id="hlrsmpp")

    def esme_sends(name, **fields):
        pdu = smpplib.smpp.make_pdu(name, client=esme)
        for key, value in fields.items():
            setattr(pdu, key, value)
        return session.receive_data(pdu.generate())

    def esme_reads():
        data = session.data_to_send()
        out = []
        for pdu in frames(data):
            start = sum(len(encode(p)) for p in out)
            out.append(pdu)
            assert smpplib.smpp.parse_pdu(data[start:start + len(encode(pdu))], client=esme)
        return out

    [bind] = esme_sends("bind_transceiver", system_id="esme01", password="secret",
                        system_type="HLR")
    assert bind.command == Command.BIND_TRANSCEIVER and bind["interface_version"] == 0x34
    session.accept_bind(bind)
    data = session.data_to_send()
    resp = smpplib.smpp.parse_pdu(data, client=esme)
    assert (resp.command, resp.status, resp.sequence, resp.system_id, resp.sc_interface_version) == (
        "bind_transceiver_resp", 0, bind.sequence, b"hlrsmpp", 0x34)

    [sub] = esme_sends("submit_sm", source_addr="4477", destination_addr="447700900123",
                       dest_addr_ton=1, dest_addr_npi=1, short_message=b"x")
    assert sub["destination_addr"] == "447700900123" and sub["short_message"] == b"x"
    session.outgoing += encode_submit_sm_resp(sub.sequence, 0, b"6002")
    receipt_seq = session.next_sequence()
    session.outgoing += encode_receipt(
        receipt_seq, b"447700900123", b"id:6002 stat:DELIVRD err:000", 3,
        encode_tlvs({Tag.RECEIPTED_MESSAGE_ID: b"6002\0", Tag.MESSAGE_STATE: b"\x02"}))
    data = session.data_to_send()
    resp = smpplib.smpp.parse_pdu(data[:21], client=esme)
    assert (resp.command, resp.sequence, resp.message_id) == ("submit_sm_resp", sub.sequence, b"6002")
    dlr = smpplib.smpp.parse_pdu(data[21:], client=esme)
    assert (dlr.command, dlr.sequence, dlr.esm_class, dlr.receipted_message_id, dlr.message_state) == (
        "deliver_sm", receipt_seq, 0x04, b"6002", 2)

    [ack] = esme_sends("deliver_sm_resp", sequence=receipt_seq)
    assert (ack.command, ack.sequence, ack.status) == (Command.DELIVER_SM_RESP, receipt_seq, 0)

    assert esme_sends("enquire_link") == []
    [link] = esme_reads()
    assert link.command == Command.ENQUIRE_LINK_RESP and link.sequence == esme.sequence

    [unbind] = esme_sends("unbind")
    assert unbind.command == Command.UNBIND
    [unbind_resp] = esme_reads()
    assert unbind_resp == header_only(Command.UNBIND_RESP, 0, unbind.sequence)
    assert session.state is State.CLOSED


# ------------------------------------------------------------------- hypothesis

@SETTINGS
@given(chunks=st.lists(st.binary(max_size=64), max_size=12),
       state=st.sampled_from(sorted(SESSION_MAKERS)))
def test_random_bytes_never_raise(chunks, state):
    session = SESSION_MAKERS[state]()
    closed_at = None
    for chunk in chunks:
        events = session.receive_data(chunk)
        assert all(isinstance(e, Pdu) for e in events)
        if closed_at is not None:
            assert events == [] and len(session.outgoing) == closed_at
        if session.state is State.CLOSED and closed_at is None:
            closed_at = len(session.outgoing)
    frames(session.data_to_send())  # whatever it wrote is well-formed


UNKNOWN_IDS = st.sampled_from([0x0A, 0x80000000 | 0x0A, 0x00010200, 0xFFFFFFFF, 0x0])


@st.composite
def esme_pdus(draw, sequence: int):
    """One framed PDU: a valid one of any command, noise in a real command, or unknown."""
    kind = draw(st.sampled_from(["valid", "valid", "noise", "unknown"]))
    status = draw(st.sampled_from([0, 0, Status.RX_T_APPN]))
    if kind == "unknown":
        return frame(draw(UNKNOWN_IDS), draw(st.binary(max_size=20)), status, sequence)
    command = draw(st.sampled_from(list(Command)))
    if kind == "noise":
        return frame(command, draw(st.binary(max_size=60)), status, sequence)
    pdu = request(command, sequence)
    if command in BINDS.values():
        pdu = bind_pdu({v: k for k, v in BINDS.items()}[command], sequence)
    if command.is_response and status:
        pdu = Pdu(command, sequence, status)
    return encode(pdu)


@st.composite
def esme_streams(draw):
    n = draw(st.integers(1, 15))
    return [draw(esme_pdus(sequence=i + 100)) for i in range(n)]


@SETTINGS
@given(stream=esme_streams(), state=st.sampled_from(sorted(SESSION_MAKERS)))
def test_every_request_is_answered_once_or_handed_to_the_application(stream, state):
    """Fed framed PDUs one by one: each request is either returned as an event or
    answered (its _resp, or generic_nack) exactly once with its sequence; the
    responses an SMSC takes are never answered; nothing at all once CLOSED."""
    session = SESSION_MAKERS[state]()
    for data in stream:
        command_id, status, sequence = struct.unpack_from(">III", data, 4)
        was_closed = session.state is State.CLOSED
        waiting = session._bind_pending  # behind an unanswered bind, input waits unread
        events = session.receive_data(data)
        out = sent(session)
        if was_closed or waiting:
            assert events == [] and out == []
            continue
        assert all(e.sequence == sequence for e in events) and len(events) <= 1
        assert all(o.sequence == sequence for o in out) and len(out) <= 1
        try:
            command = Command(command_id)
        except ValueError:
            assert out == [header_only(Command.GENERIC_NACK, Status.RINVCMDID, sequence)]
            assert events == []
            continue
        if command in NEVER_FROM_ESME:
            assert out == [header_only(Command.GENERIC_NACK, Status.RINVCMDID, sequence)]
            assert events == []
        elif command in ACCEPTED_RESPONSES:
            assert out == []
            if events:
                assert events[0].command == command
        elif command is Command.UNBIND and events:
            assert out == [header_only(Command.UNBIND_RESP, 0, sequence)]
            assert session.state is State.CLOSED
        else:  # a request the SMSC takes
            assert len(events) + len(out) == 1, (command, events, out)
            if events:
                assert events[0].command == command and session.data_to_send() == b""
                assert command in TRANSMIT or command in BINDS.values()
            else:
                assert out[0].command == command.response
                assert out[0].status != 0 or command is Command.ENQUIRE_LINK
                assert not out[0].params or command is not Command.ENQUIRE_LINK


@SETTINGS
@given(stream=esme_streams(), state=st.sampled_from(sorted(SESSION_MAKERS)),
       cuts=st.lists(st.integers(0, 10_000), max_size=10))
def test_streams_of_any_pdus_frame_the_same_however_split(stream, state, cuts):
    data = b"".join(stream)
    one = SESSION_MAKERS[state]()
    expected = one.receive_data(data)
    points = sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]
    other = SESSION_MAKERS[state]()
    events, prev = [], 0
    for point in points:
        events += other.receive_data(data[prev:point])
        prev = point
    assert events == expected
    assert other.data_to_send() == one.data_to_send()
    assert other.state is one.state


# ------------------------------------------------------- pipelined binds (regression)

@pytest.mark.parametrize("second", [BindMode.TX, BindMode.RX, BindMode.TRX])
def test_second_bind_pipelined_before_the_first_is_answered_is_ralybnd(second):
    """Both binds in one read: only the first reaches the application; what follows
    waits until it is answered; then the second bind must not bind the session
    again (it would claim a second mode) and the submit_sm finds the session bound."""
    session = SmscSession()
    data = encode(bind_pdu(BindMode.TX, 1)) + encode(bind_pdu(second, 2)) + encode(submit(3))
    events = session.receive_data(data)
    assert events == [bind_pdu(BindMode.TX, 1)]
    assert sent(session) == [] and not session.has_input
    session.accept_bind(events[0])
    assert session.mode is BindMode.TX
    assert session.has_input
    sent(session)  # the bind_resp
    assert session.receive_data(b"") == [submit(3)]
    assert sent(session) == [header_only(BINDS[second].response, Status.RALYBND, 2)]


def test_after_a_rejected_bind_the_esme_may_bind_again():
    session = SmscSession()
    [first] = session.receive_data(encode(bind_pdu(BindMode.RX, 1)))
    assert session.receive_data(encode(bind_pdu(BindMode.RX, 2))) == []  # waits behind the first
    session.reject_bind(first, Status.RINVPASWD)
    assert [p.status for p in sent(session)] == [Status.RINVPASWD]
    [again] = session.receive_data(b"")  # the waiting bind is a fresh attempt
    assert again.sequence == 2
    session.accept_bind(again)
    assert session.state is State.BOUND and session.mode is BindMode.RX


def test_partial_pdu_behind_an_answered_bind_waits_for_more_bytes():
    """Regression: a bind followed by the first bytes of a PDU must not make the
    application spin on input that cannot progress."""
    session = SmscSession()
    tail = encode(submit(2))
    [bind] = session.receive_data(encode(bind_pdu(BindMode.TX, 1)) + tail[:20])
    session.accept_bind(bind)
    assert not session.has_input
    assert session.receive_data(tail[20:]) == [submit(2)]


def test_bad_header_behind_an_answered_bind_is_refused_at_once():
    session = SmscSession()
    [bind] = session.receive_data(encode(bind_pdu(BindMode.TX, 1)) + struct.pack(">IIII", 0xFFFFFFFF, 4, 0, 9))
    session.accept_bind(bind)
    sent(session)
    assert session.has_input
    assert session.receive_data(b"") == []
    assert session.state is State.CLOSED
    assert sent(session) == [header_only(Command.GENERIC_NACK, Status.RINVCMDLEN, 9)]
