"""hlrsmpp.smpp.framer: the one framer of both roles, its counting and its tap."""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hlrsmpp.smpp import framer
from hlrsmpp.smpp.codec import Command
from hlrsmpp.smpp.framer import UNKNOWN, Framer

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def frame(command_id: int, body: bytes = b"", status: int = 0, sequence: int = 1) -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, status, sequence) + body


def feed_all(f: Framer, chunks: list[bytes]) -> list[bytes]:
    """The PDUs ``f`` frames out of ``chunks``, each as its bytes."""
    out = []
    for chunk in chunks:
        buf, end = f.feed(chunk)
        pos = 0
        while pos < end:
            length = struct.unpack_from(">I", buf, pos)[0]
            out.append(buf[pos:pos + length])
            pos += length
        assert pos == end
    return out


PDUS = st.lists(st.tuples(st.sampled_from([0x04, 0x80000004, 0x15, 0x80000005, 0x09, 0x77]),
                          st.sampled_from([0, 0x58, 0xDEAD]), st.binary(max_size=40)), max_size=15)


@SETTINGS
@given(PDUS, st.lists(st.integers(0, 2000), max_size=12))
def test_whole_pdus_come_out_in_order_however_the_stream_is_cut(pdus, cuts):
    stream = [frame(c, body, s, i) for i, (c, s, body) in enumerate(pdus)]
    data = b"".join(stream)
    points = sorted({c for c in cuts if c < len(data)}) + [len(data)]
    chunks = [data[a:b] for a, b in zip([0] + points, points)]
    counts: dict = {}
    f = Framer(counts=counts)
    assert feed_all(f, chunks) == stream
    assert f.pending == 0 and f.broken is None
    want: dict = {}
    for c, s, _ in pdus:
        key = (c if c != 0x77 else UNKNOWN, s if s != 0xDEAD else UNKNOWN)
        want[key] = want.get(key, 0) + 1
    assert counts == want


@pytest.mark.parametrize("length", [0, 15, 65, 0xFFFFFFFF])
def test_a_command_length_out_of_bounds_breaks_the_stream_for_good(length):
    counts: dict = {}
    tapped: list[bytes] = []
    f = Framer(64, counts, tapped.append)
    good = frame(Command.ENQUIRE_LINK, sequence=1)
    bad = struct.pack(">IIII", length, Command.SUBMIT_SM, 0, 9)
    buf, end = f.feed(good + bad + b"after")
    assert buf[:end] == good and f.broken == bad
    # Counted, and traced as one last entry with what followed it.
    assert counts == {(int(Command.ENQUIRE_LINK), 0): 1, (int(Command.SUBMIT_SM), 0): 1}
    assert tapped == [good, bad + b"after"]
    assert f.feed(good) == (b"", 0)  # nothing after it is read


def test_a_header_is_judged_only_once_it_is_whole():
    f = Framer(64)
    bad = struct.pack(">IIII", 1 << 20, Command.SUBMIT_SM, 0, 9)
    assert f.feed(bad[:15]) == (bad[:15], 0) and f.broken is None and f.pending == 15
    f.feed(bad[15:])
    assert f.broken == bad


def test_a_pdu_of_exactly_the_maximum_is_framed():
    pdu = frame(Command.SUBMIT_SM, bytes(48))
    assert Framer(64).feed(pdu) == (pdu, 64)


def test_the_tap_sees_each_pdu_once_and_can_be_turned_off():
    tapped: list[bytes] = []
    f = Framer(tap=tapped.append)
    a, b = frame(Command.ENQUIRE_LINK, sequence=1), frame(Command.UNBIND, sequence=2)
    f.feed(a + b[:7])
    f.feed(b[7:])
    assert tapped == [a, b]
    f.tap = None
    f.feed(a)
    assert tapped == [a, b]


@SETTINGS
@given(st.lists(st.binary(max_size=80), max_size=12), st.sampled_from([16, 64, 65536]))
def test_random_bytes_never_raise_and_frame_a_prefix(chunks, maximum):
    """Noise: the framer hands out a prefix of the stream made of PDUs within bounds,
    keeps at most one partial PDU, or breaks; never an exception."""
    f = Framer(maximum, {})
    framed = b"".join(feed_all(f, chunks))
    data = b"".join(chunks)
    assert data.startswith(framed)
    pos = 0
    while pos < len(framed):
        length = struct.unpack_from(">I", framed, pos)[0]
        assert 16 <= length <= maximum
        pos += length
    if f.broken is None:
        assert len(framed) + f.pending == len(data) and f.pending < maximum
    else:
        assert data[len(framed):].startswith(f.broken)


def test_counting_whole_pdus_returns_their_end():
    data = frame(Command.SUBMIT_SM_RESP, b"7\0") * 3
    table: dict = {}
    assert framer.count_pdus(table, data) == len(data)
    assert table == {(int(Command.SUBMIT_SM_RESP), 0): 3}
