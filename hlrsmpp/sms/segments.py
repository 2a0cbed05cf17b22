"""How many SMS a message is, as every SMS platform bills it.

GSM 7-bit (data_coding 0, and IA5, also 7-bit on the air): 160 septets in one SMS, 153 a
part when split (the concatenation header takes 7); a character of the extension table
is two septets and never split across parts. UCS2: 70 UTF-16 code units, 67 a part; a
surrogate pair (an emoji) is never split. 8-bit (Latin-1, binary and the rest): 140
octets, 134 a part."""
from __future__ import annotations

from typing import NamedTuple

from .alphabet import BINARY, DATA_CODING, ESCAPE, GSM, IA5, UCS2, UnencodableText, encode, encoding_of, gsm_septets

#: encoding -> (unit, capacity of a single SMS, of each part of a concatenated one)
CAPACITY = {GSM: ("septets", 160, 153), IA5: ("septets", 160, 153), UCS2: ("code units", 70, 67)}
OCTETS = ("octets", 140, 134)
#: One SMS's user data: 140 octets.
USER_DATA_OCTETS = 140  # header included
#: A concatenated message has at most 255 parts (the header's count is one octet).
MAX_PARTS = 255


class Count(NamedTuple):
    """What a message costs: its encoding, characters, length in the encoding's units,
    SMS segments, and the units left in the last segment."""
    encoding: str
    data_coding: int
    characters: int
    units: int
    unit: str
    segments: int
    left: int


def _capacity(data_coding: int) -> tuple[str, int, int]:
    return CAPACITY.get(encoding_of(data_coding), OCTETS)


def _chunks(payload: bytes, data_coding: int) -> list[bytes]:
    """The octets of each character, as they may not be split."""
    enc = encoding_of(data_coding)
    if enc == GSM:
        out, i, n = [], 0, len(payload)
        while i < n:
            step = 2 if payload[i] == ESCAPE and i + 1 < n else 1
            out.append(payload[i:i + step])
            i += step
        return out
    if enc == UCS2:
        out, i, n = [], 0, len(payload) & ~1
        while i < n:
            # A high surrogate and the low one after it: one character, two code units.
            step = 4 if 0xD8 <= payload[i] <= 0xDB and i + 3 < n and 0xDC <= payload[i + 2] <= 0xDF else 2
            out.append(payload[i:i + step])
            i += step
        return out
    return [payload[i:i + 1] for i in range(len(payload))]


def _unit_octets(data_coding: int) -> int:
    return 2 if encoding_of(data_coding) == UCS2 else 1


def split_payload(payload: bytes, data_coding: int) -> list[bytes]:
    """The octets of each SMS the SMSC sends for a message (without their headers)."""
    _, single, part = _capacity(data_coding)
    width = _unit_octets(data_coding)
    if len(payload) <= single * width:
        return [payload]
    parts: list[bytes] = []
    current: list[bytes] = []
    used = 0
    for chunk in _chunks(payload, data_coding):
        units = len(chunk) // width
        if used + units > part:
            parts.append(b"".join(current))
            current, used = [], 0
        current.append(chunk)
        used += units
    parts.append(b"".join(current))
    return parts


def segments_of(payload: bytes, data_coding: int) -> int:
    """SMS segments of a message's octets: the hot path's question (one SMS needs no scan)."""
    if len(payload) <= USER_DATA_OCTETS:
        return 1  # one SMS in every coding (160 septets, 70 UCS2 code units, 140 octets)
    _, single, _ = _capacity(data_coding)
    if len(payload) <= single * _unit_octets(data_coding):
        return 1
    return len(split_payload(payload, data_coding))


def count_payload(payload: bytes, data_coding: int, characters: int | None = None) -> Count:
    """The full count of a message's octets."""
    unit, single, part = _capacity(data_coding)
    width = _unit_octets(data_coding)
    parts = split_payload(payload, data_coding)
    units = len(payload) // width
    last = len(parts[-1]) // width
    left = (single if len(parts) == 1 else part) - last
    if characters is None:
        characters = len(_chunks(payload, data_coding))
    return Count(encoding_of(data_coding), data_coding, characters, units, unit, len(parts), left)


def count_text(text: str, data_coding: int | None = None) -> Count:
    """The count of a text a user would send: in data_coding, or when none is given in the
    GSM alphabet if every character is in it, else in UCS2 (as handsets choose). A binary
    data_coding takes the octets in hex.

    Raises UnencodableText when data_coding cannot carry the text, or the message would
    be more than MAX_PARTS SMS."""
    if data_coding is None:
        data_coding = DATA_CODING[GSM] if gsm_septets(text) is not None else DATA_CODING[UCS2]
    if encoding_of(data_coding) == BINARY:
        try:
            payload = bytes.fromhex(text)
        except ValueError:
            raise UnencodableText(f"data_coding {data_coding} is binary: give the octets in hex") from None
        count = count_payload(payload, data_coding)
    else:
        count = count_payload(encode(text, data_coding), data_coding, len(text))
    if count.segments > MAX_PARTS:
        raise UnencodableText(f"{count.segments} SMS: a message has at most {MAX_PARTS} parts")
    return count


def count_view(count: Count) -> dict[str, int | str]:
    """A count as the HTTP API and the command line give it."""
    return {"encoding": count.encoding, "data_coding": count.data_coding, "characters": count.characters,
            "units": count.units, "unit": count.unit, "segments": count.segments,
            "per_segment": _capacity(count.data_coding)[1 if count.segments == 1 else 2],
            "left": count.left}


__all__ = ["Count", "count_payload", "count_text", "count_view", "segments_of", "split_payload", "MAX_PARTS",
           "UnencodableText"]
