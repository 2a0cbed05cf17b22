"""hlrsmpp.smpp.esme.EsmeSession, driven with plain bytes, against the SMSC session
in memory, and through a thin asyncio adapter against the real server."""
from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hlrsmpp.smpp.codec import (
    Command, Pdu, Tag, encode, encode_header_only, encode_receipt, encode_submit_sm_resp,
    encode_submit_sm_resps, encode_tlvs,
)
from hlrsmpp.smpp.esme import EsmeSession, decode_lenient, submit_sm_body
from hlrsmpp.smpp.session import BindMode, SmscSession, State
from hlrsmpp.smpp.status import Status

from esme import RECEIPT_RE
from test_session import frames

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
NUMBER = "447912345678"  # a UK mobile number


def bound(mode: BindMode = BindMode.TRX, **kwargs) -> EsmeSession:
    esme = EsmeSession(**kwargs)
    seq = esme.bind(mode, "esme01", "secret", "HLR")
    esme.data_to_send()
    esme.receive_data(encode(Pdu(BindMode_RESP[mode], seq, 0, {"system_id": "smsc"})))
    assert esme.state is State.BOUND
    return esme


BindMode_RESP = {BindMode.TX: Command.BIND_TRANSMITTER_RESP, BindMode.RX: Command.BIND_RECEIVER_RESP,
                 BindMode.TRX: Command.BIND_TRANSCEIVER_RESP}


def receipt(sequence: int, message_id: bytes, state: int = 2, text: bytes = b"id:1 stat:DELIVRD") -> bytes:
    return encode_receipt(sequence, NUMBER.encode(), text, 3,
                          encode_tlvs({Tag.MESSAGE_STATE: bytes((state,)),
                                       Tag.RECEIPTED_MESSAGE_ID: message_id + b"\0"}))


# ------------------------------------------------------------------- requests

@pytest.mark.parametrize("mode", [BindMode.TX, BindMode.RX, BindMode.TRX])
def test_bind_is_the_pdu_and_its_ok_resp_binds_in_that_mode(mode):
    esme = EsmeSession()
    seq = esme.bind(mode, "esme01", "secret", "HLR")
    assert seq == 1
    assert frames(esme.data_to_send()) == [Pdu(BindMode_RESP[mode] & 0x7FFFFFFF, 1, 0, {
        "system_id": "esme01", "password": "secret", "system_type": "HLR", "interface_version": 0x34,
        "addr_ton": 0, "addr_npi": 0, "address_range": ""})]
    [resp] = esme.receive_data(encode(Pdu(BindMode_RESP[mode], 1, 0, {"system_id": "smsc"})))
    assert resp.params["system_id"] == "smsc"
    assert esme.state is State.BOUND and esme.mode is mode and esme.bound


def test_a_refused_bind_leaves_the_session_open():
    esme = EsmeSession()
    esme.bind(BindMode.TX, "esme01", "wrong", "HLR")
    [resp] = esme.receive_data(encode_header_only(Command.BIND_TRANSMITTER_RESP, Status.RINVPASWD, 1))
    assert resp.status == Status.RINVPASWD and esme.state is State.OPEN and not esme.bound


def test_a_field_too_long_for_smpp_is_refused_before_anything_is_sent():
    esme = EsmeSession()
    with pytest.raises(ValueError):
        esme.bind(BindMode.TX, "x" * 16, "secret")
    assert esme.data_to_send() == b""


def test_submit_sm_is_the_pdu():
    esme = bound()
    seq = esme.submit_sm(NUMBER, 1, 1, source="4477", source_ton=1, source_npi=1)
    [pdu] = frames(esme.data_to_send())
    assert pdu.command == Command.SUBMIT_SM and pdu.sequence == seq == 2
    assert (pdu["destination_addr"], pdu["dest_addr_ton"], pdu["dest_addr_npi"]) == (NUMBER, 1, 1)
    assert (pdu["source_addr"], pdu["source_addr_ton"], pdu["registered_delivery"]) == ("4477", 1, 1)


def test_submit_sm_many_is_n_submit_sm_round_the_bodies():
    numbers = ["447912345678", "491511234567", "33612345678"]
    one, many = bound(), bound()
    for i in range(7):
        one.submit_sm(numbers[(1 + i) % 3])
    index = many.submit_sm_many([submit_sm_body(n) for n in numbers], 1, 7)
    assert index == (1 + 7) % 3
    assert many.data_to_send() == one.data_to_send()
    assert many.last_sequence == one.last_sequence == 8


def test_sequence_numbers_wrap_at_0x7fffffff_to_1_in_a_batch_too():
    esme = bound()
    esme._sequence = 0x7FFFFFFE
    esme.submit_sm_many([submit_sm_body(NUMBER)], 0, 3)
    assert [p.sequence for p in frames(esme.data_to_send())] == [0x7FFFFFFF, 1, 2]
    assert esme.enquire_link() == 3


def test_unbind_then_unbind_resp_closes():
    esme = bound()
    seq = esme.unbind()
    assert frames(esme.data_to_send()) == [Pdu(Command.UNBIND, seq)]
    assert esme.state is State.UNBINDING
    [resp] = esme.receive_data(encode_header_only(Command.UNBIND_RESP, 0, seq))
    assert resp.command == Command.UNBIND_RESP
    assert esme.state is State.CLOSED and esme.close_reason == "unbound"


# --------------------------------------------------------- what the SMSC sends

def test_a_receipt_is_an_event_and_answered_ok():
    esme = bound()
    [dlr] = esme.receive_data(receipt(7, b"42"))
    assert dlr.command == Command.DELIVER_SM and dlr.tlvs[Tag.RECEIPTED_MESSAGE_ID] == b"42\0"
    assert frames(esme.data_to_send()) == [Pdu(Command.DELIVER_SM_RESP, 7, 0, {"message_id": ""})]


def test_without_auto_ack_the_application_answers_each_receipt():
    esme = bound(auto_ack=False)
    [dlr] = esme.receive_data(receipt(7, b"42"))
    assert esme.data_to_send() == b""
    esme.acknowledge(dlr, Status.RX_T_APPN)
    assert frames(esme.data_to_send()) == [Pdu(Command.DELIVER_SM_RESP, 7, Status.RX_T_APPN, {"message_id": ""})]


def test_data_sm_from_the_smsc_is_answered_data_sm_resp():
    esme = bound()
    [pdu] = esme.receive_data(encode(Pdu(Command.DATA_SM, 9, 0, {"destination_addr": NUMBER})))
    assert pdu.command == Command.DATA_SM
    assert frames(esme.data_to_send()) == [Pdu(Command.DATA_SM_RESP, 9, 0, {"message_id": ""})]


@pytest.mark.parametrize("state", ["open", "bound"])
def test_enquire_link_is_answered_alone(state):
    esme = EsmeSession() if state == "open" else bound()
    assert esme.receive_data(encode_header_only(Command.ENQUIRE_LINK, 0, 5)) == []
    assert esme.data_to_send() == encode_header_only(Command.ENQUIRE_LINK_RESP, 0, 5)


def test_unbind_from_the_smsc_is_answered_and_closes():
    esme = bound()
    [pdu] = esme.receive_data(encode_header_only(Command.UNBIND, 0, 5) + receipt(6, b"1"))
    assert pdu.command == Command.UNBIND and esme.state is State.CLOSED and esme.close_reason == "unbind"
    assert esme.data_to_send() == encode_header_only(Command.UNBIND_RESP, 0, 5)  # the receipt after it: unread
    assert esme.receive_data(receipt(7, b"2")) == [] and esme.data_to_send() == b""


@pytest.mark.parametrize("command", [Command.SUBMIT_SM, Command.BIND_TRANSCEIVER, Command.QUERY_SM, 0x7777])
def test_a_request_an_esme_does_not_take_is_generic_nack(command):
    esme = bound()
    assert esme.receive_data(struct.pack(">IIII", 16, command, 0, 3)) == []
    assert esme.data_to_send() == encode_header_only(Command.GENERIC_NACK, Status.RINVCMDID, 3)


def test_outbind_and_alert_notification_are_events_without_an_answer():
    esme = EsmeSession()
    events = esme.receive_data(encode(Pdu(Command.OUTBIND, 1, 0, {"system_id": "smsc", "password": "pw"}))
                               + encode(Pdu(Command.ALERT_NOTIFICATION, 2, 0, {"source_addr": NUMBER})))
    assert [e.command for e in events] == [Command.OUTBIND, Command.ALERT_NOTIFICATION]
    assert esme.data_to_send() == b""


def test_a_receipt_beyond_smpp_field_limits_is_still_read():
    """Another provider's deviation (a 30-digit source_addr, a TLV of the wrong length)
    must not lose a receipt: read field by field."""
    body = (b"\0" + b"\1\1" + b"1" * 30 + b"\0" + b"\1\1" + NUMBER.encode() + b"\0" + b"\x04\0\0"
            + b"\0\0" + b"\0\0\3\0" + bytes((7,)) + b"stat:ok"
            + struct.pack(">HH", Tag.MESSAGE_STATE, 2) + b"\2\0")
    esme = bound()
    [dlr] = esme.receive_data(struct.pack(">IIII", 16 + len(body), Command.DELIVER_SM, 0, 4) + body)
    assert dlr.params["source_addr"] == "1" * 30 and dlr.params["short_message"] == b"stat:ok"
    assert dlr.tlvs[Tag.MESSAGE_STATE] == b"\2\0"
    assert frames(esme.data_to_send()) == [Pdu(Command.DELIVER_SM_RESP, 4, 0, {"message_id": ""})]
    assert decode_lenient(Command.DELIVER_SM, 0, 4, body) == dlr


@pytest.mark.parametrize("length", [0, 15, 65537])
def test_a_stream_that_is_not_smpp_closes_the_session_as_a_value(length):
    esme = bound()
    events = esme.receive_data(encode_header_only(Command.ENQUIRE_LINK_RESP, 0, 2)
                               + struct.pack(">IIII", length, Command.DELIVER_SM, 0, 3))
    assert [e.command for e in events] == [Command.ENQUIRE_LINK_RESP]
    assert esme.state is State.CLOSED and esme.close_reason == f"command_length {length}"
    assert esme.receive_data(receipt(4, b"1")) == []


# ------------------------------------------------------------------ lean reads

def test_the_lean_read_sees_what_the_full_read_sees():
    class Lookup:
        def __init__(self, id):
            self.id = id
    stream = (encode_submit_sm_resps([2, 3], [Lookup(600), Lookup(601)])
              + encode_submit_sm_resp(4, Status.RTHROTTLED) + receipt(1, b"600", 2) + receipt(2, b"601", 5)
              + encode_receipt(3, b"", b"no tlvs", 0, b"") + encode_header_only(Command.GENERIC_NACK, 8, 5))
    full, lean = bound(), bound()
    events = full.receive_data(stream)
    resps: list = []
    receipts: list = []
    rest = lean.receive_lean(stream, resps, receipts)
    assert resps == [(2, 0, b"600"), (3, 0, b"601"), (4, Status.RTHROTTLED, b"")]
    assert receipts == [(b"600", 2), (b"601", 5), (None, None)]
    assert rest == [events[-1]] and rest[0].command == Command.GENERIC_NACK
    got = [(e.sequence, e.status, e.params.get("message_id", "").encode()) for e in events
           if e.command == Command.SUBMIT_SM_RESP]
    assert got == resps
    assert [(e.tlvs.get(Tag.RECEIPTED_MESSAGE_ID, b"\0")[:-1] or None,
             e.tlvs[Tag.MESSAGE_STATE][0] if Tag.MESSAGE_STATE in e.tlvs else None)
            for e in events if e.command == Command.DELIVER_SM] == receipts
    assert lean.data_to_send() == full.data_to_send()  # the same answers


def test_a_receipt_that_cannot_be_walked_is_none_in_the_lean_read():
    esme = bound()
    receipts: list = []
    esme.receive_lean(struct.pack(">IIII", 20, Command.DELIVER_SM, 0, 9) + b"\1\1\1\1", [], receipts)
    assert receipts == [None]
    assert frames(esme.data_to_send()) == [Pdu(Command.DELIVER_SM_RESP, 9, 0, {"message_id": ""})]


# ----------------------------------------------------------- both sessions

def test_a_whole_conversation_with_the_smsc_session():
    """bind, submit_sm, its resp and receipt, enquire_link both ways, unbind: the two
    sans-IO sessions talking to each other, no socket."""
    esme, smsc = EsmeSession(), SmscSession(system_id="hlrsmpp")

    def to_smsc() -> list[Pdu]:
        return smsc.receive_data(esme.data_to_send())

    def to_esme() -> list[Pdu]:
        return esme.receive_data(smsc.data_to_send())

    esme.bind(BindMode.TRX, "esme01", "secret", "HLR")
    [bind] = to_smsc()
    smsc.accept_bind(bind)
    [bind_resp] = to_esme()
    assert bind_resp.status == 0 and bind_resp.tlvs == {Tag.SC_INTERFACE_VERSION: b"\x34"} and esme.bound
    seq = esme.submit_sm(NUMBER)
    [submit] = to_smsc()
    assert submit.sequence == seq and submit.destination_addr == NUMBER

    class Lookup:
        id = 6002
    smsc.submit_sm_resps([submit.sequence], [Lookup()])
    [receipt_seq] = smsc.deliver_receipts([(NUMBER.encode(), b"id:6002 stat:DELIVRD",
                                            encode_tlvs({Tag.RECEIPTED_MESSAGE_ID: b"6002\0"}))], 3)
    resp, dlr = to_esme()
    assert (resp.command, resp.sequence, resp.params["message_id"]) == (Command.SUBMIT_SM_RESP, seq, "6002")
    assert dlr.sequence == receipt_seq and dlr.tlvs[Tag.RECEIPTED_MESSAGE_ID] == b"6002\0"
    [ack] = to_smsc()
    assert (ack.command, ack.sequence, ack.status) == (Command.DELIVER_SM_RESP, receipt_seq, 0)
    link = esme.enquire_link()
    assert to_smsc() == []
    assert [(p.command, p.sequence) for p in to_esme()] == [(Command.ENQUIRE_LINK_RESP, link)]
    smsc.enquire_link()
    assert to_esme() == [] and to_smsc() == []  # answered by the ESME session, taken by the SMSC's
    esme.unbind()
    [unbind] = to_smsc()
    assert unbind.command == Command.UNBIND and smsc.state is State.CLOSED
    [unbind_resp] = to_esme()
    assert unbind_resp.command == Command.UNBIND_RESP and esme.state is State.CLOSED


# ------------------------------------------------------------------ hypothesis

@st.composite
def smsc_streams(draw):
    """What an SMSC (or something pretending) may send: valid PDUs of any command,
    noise framed in a real header, bad lengths, raw bytes."""
    parts = []
    for i in range(draw(st.integers(0, 10))):
        kind = draw(st.sampled_from(["valid", "valid", "noise", "raw", "length"]))
        command = draw(st.sampled_from(list(Command) + [0x7777, 0x80007777]))
        status = draw(st.sampled_from([0, 0, Status.RTHROTTLED]))
        if kind == "valid" and command in Command.__members__.values():
            params = {"dest_address": [(1, 1, NUMBER)]} if command == Command.SUBMIT_MULTI else {}
            parts.append(encode(Pdu(command, i + 1, status, params)))
        elif kind == "length":
            parts.append(struct.pack(">IIII", draw(st.sampled_from([0, 15, 1 << 21])), command, 0, i))
        elif kind == "raw":
            parts.append(draw(st.binary(max_size=30)))
        else:
            body = draw(st.binary(max_size=60))
            parts.append(struct.pack(">IIII", 16 + len(body), command, status, i + 1) + body)
    return b"".join(parts)


@SETTINGS
@given(smsc_streams(), st.lists(st.integers(0, 2000), max_size=8), st.booleans(), st.booleans())
def test_any_bytes_from_the_smsc_are_events_or_a_closed_session_never_an_exception(stream, cuts, lean, open_):
    esme = EsmeSession(1 << 20) if open_ else bound(max_pdu_size=1 << 20)
    points = sorted({c % (len(stream) + 1) for c in cuts}) + [len(stream)]
    prev = 0
    resps: list = []
    receipts: list = []
    for point in points:
        chunk = stream[prev:point]
        prev = point
        was_closed = esme.state is State.CLOSED
        events = esme.receive_lean(chunk, resps, receipts) if lean else esme.receive_data(chunk)
        assert all(isinstance(e, Pdu) for e in events)
        if was_closed:
            assert events == []
    if esme.state is State.CLOSED:
        assert esme.close_reason
    assert all(p.command & 0x80000000 for p in frames(esme.data_to_send()))  # only answers, well-formed


@SETTINGS
@given(smsc_streams(), st.lists(st.integers(0, 2000), max_size=8))
def test_the_events_are_the_same_however_the_stream_is_cut(stream, cuts):
    one = bound()
    expected = one.receive_data(stream)
    other = bound()
    points = sorted({c % (len(stream) + 1) for c in cuts}) + [len(stream)]
    events, prev = [], 0
    for point in points:
        events += other.receive_data(stream[prev:point])
        prev = point
    assert events == expected
    assert other.data_to_send() == one.data_to_send() and other.state is one.state


# ----------------------------------------------------- against the real server

class Esme(asyncio.Protocol):
    """The thinnest asyncio adapter: bytes to the session, its events to a queue."""

    def __init__(self):
        self.session = EsmeSession()
        self.events: asyncio.Queue = asyncio.Queue()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        for event in self.session.receive_data(data):
            self.events.put_nowait(event)
        self.flush()

    def flush(self):
        self.transport.write(self.session.data_to_send())

    async def next(self, command: int) -> Pdu:
        while True:
            event = await asyncio.wait_for(self.events.get(), 10)
            if event.command == command:
                return event


@pytest.mark.e2e
async def test_the_esme_session_against_the_server(server):
    loop = asyncio.get_running_loop()
    _, esme = await loop.create_connection(Esme, "127.0.0.1", server.smpp_port)
    session = esme.session
    bind = session.bind(BindMode.TRX, "demo", "demo", "HLR")
    esme.flush()
    resp = await esme.next(Command.BIND_TRANSCEIVER_RESP)
    assert (resp.sequence, resp.status) == (bind, 0) and session.bound
    seqs = [session.submit_sm(NUMBER), session.submit_sm(NUMBER)]
    esme.flush()
    resps = [await esme.next(Command.SUBMIT_SM_RESP) for _ in seqs]
    assert sorted(r.sequence for r in resps) == seqs and all(r.status == 0 for r in resps)
    ids = {r.params["message_id"] for r in resps}
    receipts = [await esme.next(Command.DELIVER_SM) for _ in seqs]
    assert {r.tlvs[Tag.RECEIPTED_MESSAGE_ID].rstrip(b"\0").decode() for r in receipts} == ids
    for r in receipts:
        m = RECEIPT_RE.match(r.params["short_message"].decode())
        assert m and m["id"] in ids
    link = session.enquire_link()
    esme.flush()
    assert (await esme.next(Command.ENQUIRE_LINK_RESP)).sequence == link
    session.unbind()
    esme.flush()
    await esme.next(Command.UNBIND_RESP)
    assert session.state is State.CLOSED
    esme.transport.close()
    # The receipts were answered by the session: the server holds none for redelivery.
    assert server.server.outboxes["demo"].size == 0
