"""PDU trace: every PDU of a session in both directions, decoded and
in hex, to a file or to a ring kept in memory (read over the admin API).

Off by default and free when off: a session without a tracer pays one ``is
None`` test per read and per write, nothing per PDU. The session's framers (one
per direction, smpp/framer.py) hand a tracer each PDU's bytes; what breaks the
framing comes as one last entry.
"""
from __future__ import annotations

import time
from collections import deque
from pathlib import Path

from ..smpp.codec import COMMANDS, DecodeError, Pdu, decode
from ..smpp.status import Status

RING_SIZE = 10000


def format_pdu(direction: str, label: str, raw: bytes, pdu: Pdu | None = None, at: float | None = None) -> str:
    """One trace entry: time, session, direction (``<`` in, ``>`` out), fields, hex."""
    at = time.time() if at is None else at
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1e6):06d}Z"
    if pdu is None:
        try:
            pdu = decode(raw)
        except DecodeError as err:
            pdu = None
            what = f"undecodable ({Status(err.status).label}: {err.detail})"
    if pdu is not None:
        command = COMMANDS.get(pdu.command)
        name = command.name.lower() if command is not None else hex(pdu.command)
        try:
            status = Status(pdu.status).label
        except ValueError:
            status = hex(pdu.status)
        fields = " ".join(f"{k}={v!r}" for k, v in pdu.params.items() if k != "password")
        if "password" in pdu.params:
            fields += " password=<hidden>"
        tlvs = " ".join(f"tlv[{tag:#06x}]={value.hex()}" for tag, value in pdu.tlvs.items())
        what = f"{name} seq={pdu.sequence} status={status} {fields} {tlvs}".rstrip()
    if pdu is not None and "password" in pdu.params:
        raw = b""  # a bind's hex would show the password: never written anywhere
    hexed = " ".join(raw[i:i + 4].hex() for i in range(0, len(raw), 4))
    return f"{stamp} {label} {direction} {what}\n    {hexed}" if hexed else f"{stamp} {label} {direction} {what}"


class PduTrace:
    """The tracer of one session: the session's framers hand it each PDU."""

    __slots__ = ("label", "sink")

    def __init__(self, label: str, sink: "MemorySink | FileSink") -> None:
        self.label = label
        self.sink = sink

    def record(self, direction: str, pdu: Pdu, raw: bytes = b"") -> None:
        self.sink.add(format_pdu(direction, self.label, raw, pdu))

    def inbound(self, raw: bytes) -> None:
        self.sink.add(format_pdu("<", self.label, raw))

    def outbound(self, raw: bytes) -> None:
        self.sink.add(format_pdu(">", self.label, raw))


class MemorySink:
    """The last ``RING_SIZE`` entries of an account's sessions."""

    def __init__(self, size: int = RING_SIZE):
        self.lines: deque[str] = deque(maxlen=size)

    def add(self, line: str) -> None:
        self.lines.append(line)

    def close(self) -> None:
        pass


class FileSink:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", buffering=1)
        self.lines: deque[str] = deque(maxlen=RING_SIZE)  # also readable over the admin API

    def add(self, line: str) -> None:
        self.lines.append(line)
        if not self._file.closed:
            self._file.write(line + "\n")

    def close(self) -> None:
        self._file.close()
