"""The one SMPP framer: a byte stream cut into PDUs, sans-IO, for both roles.

Each direction of a connection has a ``Framer``. ``feed`` takes what arrived and
returns the buffer of whole PDUs: every command_length is checked (16 octets at
least, at most the session's ``max_pdu_size``), a partial PDU waits for the next
chunk, and a command_length no PDU can have breaks the stream for good (the
session answers generic_nack ESME_RINVCMDLEN and closes: nothing after it can be
framed). What observes the stream hangs off the framer instead of framing again:
the PDU counters (a table ``(command_id, status) -> n``, the Prometheus
``pdus_received`` / ``pdus_sent``) and a tap that sees each PDU's bytes (the PDU
trace).

The walk over the headers is in C when built (``_speedups.frame_pdus``); the
Python loop below is its reference and fallback.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

from .codec import COMMANDS, HEADER, MAX_PDU_SIZE, speedups
from .status import Status

#: Key of a command id or status value no name is known for (bounded cardinality:
#: a peer sending random ids makes a handful of keys, not millions).
UNKNOWN = -1
_STATUSES = frozenset(int(s) for s in Status)
_HEAD = HEADER.unpack_from
#: The most an outbound stream's PDU may be: we frame only what we built.
ANY_LENGTH = 0xFFFFFFFF

#: ``counts[(command_id, status)] -> n``: PDUs counted by command and status.
Counts = dict[tuple[int, int], int]


class Tap(Protocol):
    """What sees each PDU of a session in both directions (the PDU trace)."""

    def inbound(self, raw: bytes) -> None: ...

    def outbound(self, raw: bytes) -> None: ...


def bounded_key(command_id: int, status: int) -> tuple[int, int]:
    """The key a PDU is counted under when its exact key is new: unknown ids fold."""
    return (command_id if command_id in COMMANDS else UNKNOWN, status if status in _STATUSES else UNKNOWN)


def add_count(table: Counts, command_id: int, status: int, n: int) -> None:
    key = (command_id, status)
    c = table.get(key)
    if c is None:
        key = bounded_key(command_id, status)
        c = table.get(key, 0)
    table[key] = c + n


def frame_pdus(table: Counts | None, data: Any, pos: int, max_pdu_size: int,
               add: Callable[[Counts, int, int, int], None]) -> int:
    """Walk the PDUs of ``data`` from ``pos``; count each whole one into ``table``
    (unless None). Returns where the whole PDUs end (a partial PDU, or fewer than 16
    octets, follows); or ``-1 - p`` when the header at ``p`` has a command_length
    below 16 or above ``max_pdu_size`` (counted too: nothing after it is a PDU).
    One unpack per PDU and one ``add`` per run of PDUs of the same command and
    status (a batch of submit_sm_resp is one)."""
    n = len(data)
    unpack = _HEAD
    last_c = last_s = -2
    run = 0
    bad = False
    while n - pos >= 16:
        length, command_id, status, _ = unpack(data, pos)
        bad = length < 16 or length > max_pdu_size
        if not bad and length > n - pos:
            break
        if table is not None:
            if command_id == last_c and status == last_s:
                run += 1
            else:
                if run:
                    add(table, last_c, last_s, run)
                last_c, last_s, run = command_id, status, 1
        if bad:
            break
        pos += length
    if run and table is not None:
        add(table, last_c, last_s, run)
    return -1 - pos if bad else pos


py_frame_pdus = frame_pdus  # the reference of the C loop
if speedups is not None:
    frame_pdus = speedups.frame_pdus


class Framer:
    """One direction of an SMPP stream cut into whole PDUs (see the module)."""

    __slots__ = ("max_pdu_size", "counts", "tap", "broken", "_tail")

    def __init__(self, max_pdu_size: int = MAX_PDU_SIZE, counts: Counts | None = None,
                 tap: Callable[[bytes], None] | None = None):
        self.max_pdu_size = max_pdu_size
        #: Where every PDU framed is counted (None: not counted).
        self.counts = counts
        #: Called with each PDU's bytes as it is framed (None: off, free).
        self.tap = tap
        #: The 16-octet header whose command_length broke the stream, or None.
        self.broken: bytes | None = None
        self._tail = b""  # a partial PDU, waiting for the rest

    def feed(self, data: bytes) -> tuple[bytes, int]:
        """``(buf, end)``: ``buf[:end]`` is a run of whole PDUs (counted, tapped);
        ``buf[end:]`` is what waits for more, or, once ``broken`` is set, the header
        that broke the stream (and whatever came after it, never read)."""
        if self.broken is not None:
            return b"", 0
        buf = self._tail + data if self._tail else data
        end = frame_pdus(self.counts, buf, 0, self.max_pdu_size, add_count)
        if end < 0:
            end = -1 - end
            self.broken = buf[end:end + 16]
            self._tail = b""
        else:
            self._tail = buf[end:] if end < len(buf) else b""
        if self.tap is not None:
            self._tap(buf, end)
        return buf, end

    @property
    def pending(self) -> int:
        """Octets of a partial PDU waiting for the rest."""
        return len(self._tail)

    def _tap(self, buf: bytes, end: int) -> None:
        tap = self.tap
        assert tap is not None
        pos = 0
        while pos < end:
            length = _HEAD(buf, pos)[0]
            tap(buf[pos:pos + length])
            pos += length
        if self.broken is not None:
            tap(buf[end:])  # the rest as one entry: it can no longer be framed


def count_pdus(table: Counts, data: Any, pos: int = 0) -> int:
    """Count the PDUs of ``data[pos:]`` (whole, as we write them) into ``table``;
    where counting stopped: ``len(data)`` past a command_length no PDU has."""
    end = frame_pdus(table, data, pos, ANY_LENGTH, add_count)
    return len(data) if end < 0 else end


def py_count_pdus(table: Counts, data: Any, pos: int = 0) -> int:
    """``count_pdus`` on the Python loop (the reference of the C one)."""
    end = py_frame_pdus(table, data, pos, ANY_LENGTH, add_count)
    return len(data) if end < 0 else end


class PduCounter(Framer):
    """Counts the PDUs of a byte stream arriving in arbitrary chunks: a Framer that
    only counts (``feed(chunk)``; the counts in ``table``)."""

    __slots__ = ()

    def __init__(self, table: Counts):
        super().__init__(ANY_LENGTH, table)

    @property
    def table(self) -> Counts:
        assert self.counts is not None
        return self.counts
