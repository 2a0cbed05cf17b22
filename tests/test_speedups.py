"""The C codec (hlrsmpp/smpp/_speedups.c) against the Python one, its reference.

Every function the server takes from C is held to the same bytes, the same PDUs
and the same errors as the Python code on valid, damaged and random input; and
a bound session reads any stream, cut anywhere, exactly as it does without C.
"""
from __future__ import annotations

import struct
import urllib.request

import pytest
from hypothesis import given, strategies as st

from hlrsmpp import native
from hlrsmpp.smpp import codec, session as session_module
from hlrsmpp.smpp.codec import Command, Pdu, encode, encode_submit_sm_resp
from hlrsmpp.smpp.session import BindMode, SmscSession

from test_codec import SETTINGS, U32S, framed_noise, mutated, pdus
from test_session import bound

C = codec.speedups
needs_c = pytest.mark.skipif(C is None, reason="hlrsmpp.smpp._speedups is not built (HLRSMPP_PURE_PYTHON)")


def test_the_c_codec_is_built_unless_turned_off():
    # setup.py builds it on every install (make test does one); optional=True only so that
    # a machine without a compiler still runs the server. Here, a silent fallback is a bug.
    if native.PURE_PYTHON:
        assert C is None and session_module.scan_bound is None
    else:
        assert C is not None and session_module.scan_bound is C.scan_bound
        assert codec.encode_submit_sm_resps is C.encode_submit_sm_resps
        assert codec.encode_receipt is C.encode_receipt
    # A 3.4 peer's receipts go straight to the encoder: no wrapper, no per-receipt cost.
    assert SmscSession().encode_receipt is codec.encode_receipt


class _Lookup:
    __slots__ = ("id",)

    def __init__(self, id):
        self.id = id


IDS = st.lists(st.tuples(st.integers(1, 0x7FFFFFFF), st.integers(0, (1 << 63) - 1)), max_size=20)


@given(IDS)
def test_submit_sm_resps_are_each_resp_in_turn(accepted):
    sequences = [seq for seq, _ in accepted]
    lookups = [_Lookup(i) for _, i in accepted]
    want = b"".join(encode_submit_sm_resp(seq, 0, str(i).encode()) for seq, i in accepted)
    assert codec.py_encode_submit_sm_resps(sequences, lookups) == want
    if C is not None:
        assert C.encode_submit_sm_resps(sequences, lookups) == want


@needs_c
@pytest.mark.parametrize("sequences, lookups, error", [
    ([1], [], TypeError),                      # not in step
    ((1,), (_Lookup(1),), TypeError),          # lists only
    ([1 << 32], [_Lookup(1)], OverflowError),  # a sequence is 32 bits
    ([-1], [_Lookup(1)], OverflowError),
    ([1], [_Lookup(-1)], OverflowError),       # an id is not negative
    ([1], [object()], AttributeError),
    (["1"], [_Lookup(1)], TypeError),
])
def test_submit_sm_resps_refuse_what_they_cannot_encode(sequences, lookups, error):
    with pytest.raises(error):
        C.encode_submit_sm_resps(sequences, lookups)


@SETTINGS
@given(U32S, st.binary(max_size=30), st.binary(max_size=256), st.integers(0, 256), st.binary(max_size=300))
def test_receipts_are_the_python_encoders_bytes(sequence, destination, text, data_coding, tlvs):
    try:
        want = codec.py_encode_receipt(sequence, destination, text, data_coding, tlvs)
    except ValueError:  # a short_message or data_coding over one octet
        if C is not None:
            with pytest.raises(ValueError):
                C.encode_receipt(sequence, destination, text, data_coding, tlvs)
        return
    if C is not None:
        assert C.encode_receipt(sequence, destination, text, data_coding, tlvs) == want


ADDRESS = st.characters(min_codepoint=1, max_codepoint=0x17F)  # latin-1 and beyond, no NUL


@SETTINGS
@given(U32S, st.text(ADDRESS, max_size=20), st.text(ADDRESS, max_size=30), st.binary(max_size=256), st.integers(0, 256),
       st.binary(max_size=300))
def test_text_receipts_are_the_python_encoders_bytes(sequence, source, destination, text, data_coding, tlvs):
    # A text message's receipt: the same bytes, or the same error (a short_message or
    # data_coding over one octet, an address not in latin-1).
    try:
        want = codec.py_encode_text_receipt(sequence, source, destination, text, data_coding, tlvs)
    except ValueError as err:
        if C is not None:
            with pytest.raises(type(err)):
                C.encode_text_receipt(sequence, source, destination, text, data_coding, tlvs)
        return
    if C is not None:
        assert C.encode_text_receipt(sequence, source, destination, text, data_coding, tlvs) == want
    pdu = codec.decode(codec.py_encode_text_receipt(sequence, source, destination, text, data_coding, b""))
    assert (pdu.command, pdu.sequence) == (Command.DELIVER_SM, sequence)
    p = pdu.params
    assert (p["source_addr_ton"], p["source_addr_npi"], p["source_addr"]) == (1, 1, source)
    assert (p["dest_addr_ton"], p["dest_addr_npi"], p["destination_addr"]) == (0, 0, destination[:20])
    assert (p["esm_class"], p["data_coding"], p["short_message"]) == (0x04, data_coding, text)


@SETTINGS
@given(U32S, st.binary(max_size=30), st.binary(min_size=1, max_size=254), st.integers(0, 255),
       st.binary(max_size=300))
def test_smpp33_receipts_are_the_python_encoders_bytes_without_tlvs(sequence, destination, text,
                                                                     data_coding, tlvs):
    want = codec.py_encode_receipt(sequence, destination, text, data_coding, b"")
    assert codec.encode_receipt_smpp33(sequence, destination, text, data_coding, tlvs) == want


# ------------------------------------------------------------- reading


def _read(stream: bytes, cuts: list[int], mode: BindMode, scan) -> tuple:
    """What a bound session makes of ``stream`` arriving in pieces cut at ``cuts``."""
    saved = session_module.scan_bound
    session_module.scan_bound = scan
    try:
        session = bound(mode)
        events, pos = [], 0
        for cut in sorted(set(cuts)) + [len(stream)]:
            events += session.receive_data(stream[pos:cut])
            pos = cut
        return (events, [type(e) for e in events], bytes(session.outgoing), session.state,
                session.violations, session.close_reason, session._buffer)
    finally:
        session_module.scan_bound = saved


def _stream_pdu():
    """The PDUs of a bound session's stream: the two the C reader takes, in many shapes,
    and whatever else a peer may send."""
    lean_submit = pdus((Command.SUBMIT_SM,)).map(lambda p: Pdu(p.command, p.sequence, p.status, p.params))
    empty_resp = st.tuples(U32S, st.one_of(st.just(0), U32S)).map(
        lambda t: Pdu(Command.DELIVER_SM_RESP, t[0], t[1], {"message_id": ""}))
    return st.one_of(
        lean_submit.map(encode), lean_submit.map(encode), empty_resp.map(encode),
        pdus((Command.SUBMIT_SM, Command.DELIVER_SM_RESP, Command.ENQUIRE_LINK, Command.UNBIND,
              Command.QUERY_SM, Command.DATA_SM_RESP)).map(encode),
        mutated(), framed_noise(),
        st.binary(max_size=20),
    )


@pytest.mark.slow
@needs_c
@SETTINGS
@given(st.lists(_stream_pdu(), max_size=12), st.sampled_from([BindMode.TX, BindMode.RX, BindMode.TRX]), st.data())
def test_a_bound_session_reads_any_stream_as_without_c(parts, mode, data):
    stream = b"".join(parts)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=4))
    assert _read(stream, cuts, mode, C.scan_bound) == _read(stream, cuts, mode, None)


@pytest.mark.slow
@needs_c
@SETTINGS
@given(st.lists(pdus((Command.SUBMIT_SM,)), min_size=1, max_size=20), st.data())
def test_the_lean_pdus_are_read_in_c(submits, data):
    # Without TLVs, every submit_sm and every empty deliver_sm_resp is the C reader's:
    # the fast path is taken, not only correct when taken.
    lean = [Pdu(p.command, p.sequence, p.status, p.params) for p in submits]
    resps = [Pdu(Command.DELIVER_SM_RESP, p.sequence, 0, {"message_id": ""}) for p in submits]
    stream = b"".join(encode(p) for pair in zip(lean, resps) for p in pair)
    events: list = []
    assert C.scan_bound(stream, 0, 65536, True, True, events) == len(stream)
    assert events == [p for pair in zip(lean, resps) for p in pair]
    for got, want in zip(events[::2], lean):
        assert (got.dest_addr_ton, got.dest_addr_npi, got.destination_addr) == (
            want.params["dest_addr_ton"], want.params["dest_addr_npi"], want.params["destination_addr"])
    # A transmitter reads no deliver_sm_resp in C (the session decides), a receiver no submit_sm.
    assert C.scan_bound(stream, 0, 65536, True, False, []) == len(encode(lean[0]))
    assert C.scan_bound(stream, 0, 65536, False, True, []) == 0


@needs_c
@pytest.mark.parametrize("length", [0, 15, 65537, 0xFFFFFFFF])
def test_the_c_reader_leaves_a_bad_length_to_the_session(length):
    head = struct.pack(">IIII", length, Command.SUBMIT_SM, 0, 7)
    events: list = []
    assert C.scan_bound(head + bytes(64), 0, 65536, True, True, events) == 0 and events == []


@needs_c
@given(st.binary(max_size=64), st.integers(-5, 80))
def test_the_c_reader_takes_any_start_in_the_buffer(data, pos):
    events: list = []
    if not 0 <= pos <= len(data):
        with pytest.raises(ValueError):
            C.scan_bound(data, pos, 65536, True, True, events)
        return
    end = C.scan_bound(data, pos, 65536, True, True, events)
    assert pos <= end <= len(data) and (end > pos) == bool(events)


def _submit_body(sm_length: int, message: bytes, addr: bytes = b"447700900123", service: bytes = b"") -> bytes:
    return (service + b"\0" + b"\1\1" + b"HLRCLIENT\0" + b"\1\1" + addr + b"\0"
            + bytes(3) + b"\0\0" + bytes(4) + bytes((sm_length,)) + message)


@needs_c
@pytest.mark.parametrize("body", [
    _submit_body(254, bytes(254)),              # the longest short_message
    _submit_body(255, bytes(255)),              # one over: an error, the session's to answer
    _submit_body(3, b"abc" + b"\x02\x04\0\1\7"),  # TLVs follow: the session reads them
    _submit_body(3, b"ab"),                     # short_message cut short
    _submit_body(0, b"", addr=b"1" * 20),       # destination_addr at its size, NUL included
    _submit_body(0, b"", addr=b"1" * 21),       # one over
    _submit_body(0, b"", service=b"CMT12"),     # service_type at its size
    _submit_body(0, b"", service=b"CMT123"),    # one over
    _submit_body(0, b"", addr=b"\xe9\xff"),     # latin-1, as the Python codec reads it
    _submit_body(0, b"")[:-1],                  # no sm_length
])
def test_the_bounds_of_submit_sm_are_the_python_codecs(body):
    pdu = struct.pack(">IIII", 16 + len(body), Command.SUBMIT_SM, 0, 7) + body
    stream = pdu + encode(Pdu(Command.ENQUIRE_LINK, 8))
    assert _read(stream, [], BindMode.TRX, C.scan_bound) == _read(stream, [], BindMode.TRX, None)


@needs_c
@SETTINGS
@given(st.lists(pdus((Command.SUBMIT_SM,)), min_size=1, max_size=10))
def test_a_text_messages_fields_are_read_in_c_as_in_python(submits):
    # An SMSC's per-message read of submit_sm: the C reader's fields are the Python
    # reader's and the full decoder's, wherever the PDU starts in the stream.
    stream = b"".join(encode(Pdu(p.command, p.sequence, p.status, p.params)) for p in submits)
    events: list = []
    C.scan_bound(stream, 0, 65536, True, True, events)
    assert events
    for got, want in zip(events, submits):
        body, pos, _ = got._body
        fields = C.submit_sm_message(body, pos)
        assert fields == codec.py_submit_sm_message(body, pos) == got.message()
        assert fields == (*(want.params[name] for name in codec.MESSAGE_FIELDS), want.params["short_message"])


@needs_c
@given(st.binary(max_size=80), st.integers(-3, 90))
def test_the_c_text_message_reader_leaves_what_it_cannot_read_to_python(body, pos):
    # Anywhere in any bytes: the Python reader's fields, or None where it would fail or
    # read past the end (the caller then asks the Python reader).
    fields = C.submit_sm_message(body, pos)
    try:
        want = codec.py_submit_sm_message(body, pos)
    except (ValueError, IndexError):
        assert fields is None
        return
    if fields is None:  # only from the end (a negative pos), or a short_message cut short
        sm_length = body[body.index(0, body.index(0, body.index(0, body.index(0, body.index(0, pos) + 3) + 3) + 4)
                                    + 1) + 5]
        assert pos < 0 or len(want[8]) < sm_length
    else:
        assert fields == want


# ------------------------------------------------------------ end to end

NUMBERS = ["447700900123", "447911123456", "33612345678", "4915112345678", "12025550123",
           "919876543210", "359888123456", "61412345678", "5511987654321", "12", "+447700900124",
           "4477009001", "8613800138000", "27821234567", "0044", "447400123456"]


def _answers(tmp_path, pure: bool) -> dict[str, tuple]:
    """What a real ESME gets for NUMBERS from a server with or without the C codec:
    per number, the submit_sm_resp status and the receipt's fields but id and dates."""
    from conftest import ServerProcess, free_port
    from esme import RECEIPT_RE, SmpplibEsme
    import yaml

    home = tmp_path / ("pure" if pure else "c")
    home.mkdir()
    config = home / "hlrsmpp.yaml"
    config.write_text(yaml.safe_dump({
        "smpp": {"host": "127.0.0.1"}, "http": {"host": "127.0.0.1"}, "hlr": {"latency_ms": 0},
        "storage": {"path": str(home / "data")}, "log": {"format": "json", "level": "warning"},
        "accounts": [{"system_id": "demo", "password": "demo"}]}))
    port, http_port = free_port(), free_port()
    proc = ServerProcess(config, port, http_port, env={"HLRSMPP_PURE_PYTHON": "1" if pure else "0"}).start()
    try:
        esme = SmpplibEsme(port)
        esme.bind("transceiver")
        seqs = [esme.submit(n) for n in NUMBERS]
        esme.pump(lambda: all(s in esme.resps for s in seqs))
        ids = {esme.resps[s].message_id.decode(): n for s, n in zip(seqs, NUMBERS)
               if esme.resps[s].status == 0}
        esme.pump(lambda: len(esme.receipts) >= len(ids))
        esme.close()
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10).read().decode()
        mode = "python" if pure else "c"  # the server runs the code asked for
        assert all(f'{part}="{mode}"' in metrics for part in ("codec", "commit", "draws"))
    finally:
        assert proc.terminate() == 0
    out = {n: (esme.resps[s].status,) for s, n in zip(seqs, NUMBERS)}
    for pdu in esme.receipts:
        m = RECEIPT_RE.match(pdu.short_message.decode())
        assert m, pdu.short_message
        fields = m.groupdict()
        number = ids[fields.pop("id")]
        del fields["submit"], fields["done"]
        out[number] += (pdu.destination_addr.decode(), tuple(sorted(fields.items())))
    return out


@needs_c
@pytest.mark.timeout(120)
@pytest.mark.e2e
@pytest.mark.slow
def test_a_real_esme_gets_the_same_answers_with_and_without_c(tmp_path):
    pure, fast = _answers(tmp_path, pure=True), _answers(tmp_path, pure=False)
    assert pure == fast
    assert sum(1 for a in fast.values() if a[0] == 0 and len(a) == 3) >= 10  # lookups, with receipts
    assert any(a[0] != 0 for a in fast.values())                             # and refusals


@pytest.mark.slow
@needs_c
@SETTINGS
@given(st.lists(st.one_of(_stream_pdu(), st.binary(max_size=40)), max_size=10), st.integers(0, 40), st.data())
def test_pdus_are_counted_as_the_python_loop_counts_them(parts, pos, data):
    from hlrsmpp.smpp import framer
    stream = b"".join(parts)
    pos = min(pos, len(stream))
    want: dict = {}
    got: dict = {}
    assert framer.count_pdus(got, stream, pos) == framer.py_count_pdus(want, stream, pos)
    assert got == want
    # Seeded tables (keys already there) and a memoryview, as PduCounter feeds it.
    seeded = {(int(Command.SUBMIT_SM), 0): 5}
    again = dict(seeded)
    framer.count_pdus(again, memoryview(stream), pos)
    framer.py_count_pdus(seeded, stream, pos)
    assert again == seeded


@pytest.mark.slow
@needs_c
@SETTINGS
@given(st.lists(st.one_of(_stream_pdu(), st.binary(max_size=40)), max_size=10), st.integers(0, 40),
       st.sampled_from([16, 40, 65536]), st.booleans())
def test_the_framer_walks_as_the_python_loop_walks(parts, pos, maximum, counting):
    from hlrsmpp.smpp import framer
    stream = b"".join(parts)
    pos = min(pos, len(stream))
    got: dict | None = {} if counting else None
    want: dict | None = {} if counting else None
    add = framer.add_count
    assert framer.frame_pdus(got, stream, pos, maximum, add) == framer.py_frame_pdus(want, stream, pos, maximum, add)
    assert got == want
