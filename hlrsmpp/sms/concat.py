"""Messages an ESME already split: the concatenation header in the user data (UDH, with
esm_class 0x40: IE 0x00 with an 8-bit reference, IE 0x08 with a 16-bit one) or the SAR
TLVs (sar_msg_ref_num, sar_total_segments, sar_segment_seqnum); each part checked as it
comes, and the parts put back together for the receipt's text."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import NamedTuple

from ..smpp.status import Status
from .alphabet import decode
from .segments import CAPACITY, OCTETS, USER_DATA_OCTETS, _unit_octets
from .alphabet import encoding_of

UDHI = 0x40  # esm_class: the short_message starts with a user data header
IE_CONCAT_8, IE_CONCAT_16 = 0x00, 0x08


class ConcatError(ValueError):
    """A part that cannot be taken, with the command_status that says why."""

    def __init__(self, status: Status, reason: str):
        super().__init__(reason)
        self.status = status


class Concat(NamedTuple):
    """One part of a concatenated message: its reference, the parts in all, its number (1..)."""
    ref: int
    total: int
    seq: int
    scheme: str  # "udh8", "udh16" or "sar": parts of one message share it


def split_udh(short_message: bytes) -> tuple[bytes, bytes]:
    """(header with its length octet, the rest) of a message with esm_class 0x40."""
    if not short_message:
        raise ConcatError(Status.RINVMSGLEN, "esm_class 0x40 (UDHI) with an empty message")
    end = short_message[0] + 1
    if end > len(short_message):
        raise ConcatError(Status.RINVMSGLEN, f"UDH length {short_message[0]} is longer than the message")
    return short_message[:end], short_message[end:]


def parse_udh(udh: bytes) -> Concat | None:
    """The concatenation IE of a header (as split_udh gives it), or None when it has none."""
    found: Concat | None = None
    i, end = 1, len(udh)
    while i < end:
        if i + 2 > end or i + 2 + udh[i + 1] > end:
            raise ConcatError(Status.RINVESMCLASS, "an information element runs past the UDH")
        iei, size = udh[i], udh[i + 1]
        data = udh[i + 2:i + 2 + size]
        if iei in (IE_CONCAT_8, IE_CONCAT_16):
            if size != (3 if iei == IE_CONCAT_8 else 4):
                raise ConcatError(Status.RINVESMCLASS, f"concatenation IE 0x{iei:02X} of length {size}")
            if found is not None:
                raise ConcatError(Status.RINVESMCLASS, "two concatenation IEs in one UDH")
            ref = data[0] if iei == IE_CONCAT_8 else int.from_bytes(data[:2], "big")
            total, seq = data[-2], data[-1]
            _check(total, seq, Status.RINVESMCLASS)
            found = Concat(ref, total, seq, "udh8" if iei == IE_CONCAT_8 else "udh16")
        i += 2 + size
    return found


def parse_sar(ref: int | None, total: int | None, seq: int | None) -> Concat | None:
    """The part the SAR TLVs describe: all three or none."""
    if ref is None and total is None and seq is None:
        return None
    if ref is None or total is None or seq is None:
        raise ConcatError(Status.RMISSINGOPTPARAM,
                          "sar_msg_ref_num, sar_total_segments and sar_segment_seqnum go together")
    _check(total, seq, Status.RINVOPTPARAMVAL)
    return Concat(ref, total, seq, "sar")


def _check(total: int, seq: int, status: Status) -> None:
    if total == 0:
        raise ConcatError(status, "a concatenated message of 0 parts")
    if not 1 <= seq <= total:
        raise ConcatError(status, f"part {seq} of {total}")


def check_part_length(udh: bytes, text: bytes, data_coding: int, sar_total: int = 0) -> None:
    """A part must fit one SMS: with its UDH, 140 octets of user data (in 7-bit, the
    header padded to whole septets, then 160 septets in all); a SAR part, to which the
    SMSC adds the header, the capacity of a part (153, 67, 134)."""
    unit, single, part = CAPACITY.get(encoding_of(data_coding), OCTETS)
    width = _unit_octets(data_coding)
    if udh:
        if unit == "septets":
            fits = (len(udh) * 8 + 6) // 7 + len(text) <= single
        else:
            fits = len(udh) + len(text) <= USER_DATA_OCTETS
    else:
        fits = len(text) <= (single if sar_total == 1 else part) * width
    if not fits:
        raise ConcatError(Status.RINVMSGLEN, "a part longer than one SMS")


class Pending:
    """The parts of one concatenated message seen so far."""
    __slots__ = ("total", "parts", "data_coding", "seen")

    def __init__(self, total: int, data_coding: int, seen: float):
        self.total = total
        self.parts: dict[int, bytes] = {}
        self.data_coding = data_coding
        self.seen = seen

    @property
    def complete(self) -> bool:
        return len(self.parts) == self.total

    def text(self) -> str:
        """The message's text from its start, as far as the parts run unbroken from part 1."""
        run = []
        for seq in range(1, self.total + 1):
            if seq not in self.parts:
                break
            run.append(self.parts[seq])
        return decode(b"".join(run), self.data_coding)


class Reassembly:
    """Concatenated messages being put back together, by the key the caller gives (the
    account, the addresses, the reference and scheme): bounded in number and time."""

    def __init__(self, max_pending: int = 10000, ttl: float = 3600.0):
        self.max_pending = max_pending
        self.ttl = ttl
        self._pending: OrderedDict[Hashable, Pending] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, key: Hashable, part: Concat, payload: bytes, data_coding: int, now: float) -> Pending:
        """Record a part; a part whose count of parts disagrees with the message's earlier
        parts is refused (a repeated part replaces the earlier copy: an ESME's retry)."""
        self._expire(now)
        full = (key, part.scheme, part.ref)
        entry = self._pending.get(full)
        if entry is not None and entry.total != part.total:
            raise ConcatError(Status.RINVOPTPARAMVAL if part.scheme == "sar" else Status.RINVESMCLASS,
                              f"part {part.seq} of {part.total}, but earlier parts of reference "
                              f"{part.ref} said {entry.total}")
        if entry is None:
            entry = self._pending[full] = Pending(part.total, data_coding, now)
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)
        entry.parts[part.seq] = payload
        return entry

    def _expire(self, now: float) -> None:
        while self._pending:
            oldest = next(iter(self._pending.values()))
            if now - oldest.seen <= self.ttl:
                break
            self._pending.popitem(last=False)
