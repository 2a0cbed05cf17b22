"""The PROXY protocol header (versions 1 and 2, as HAProxy writes them), sans-IO.

A load balancer in front of the SMPP port opens its own TCP connection to the server, so
the server would see the balancer's address instead of the client's. A balancer that
speaks the PROXY protocol writes one header first, naming the client's address; the
server reads it only from the peers its operator trusts (``smpp.proxy_protocol``).

``parse(data)`` takes the bytes received so far: None while more are needed, a
``ProxyHeader`` once a whole header is there (``consumed`` bytes of it; the rest is the
client's), ``ProxyHeaderError`` as soon as the bytes cannot be a valid header. Strict:
version 1 within its 107 bytes, one space between fields, canonical addresses and ports;
version 2 with its signature, version 2, a known command, TCP over IPv4 or IPv6 and a
length that holds the addresses. A header that names no client (version 1 ``UNKNOWN``,
version 2 ``LOCAL``: the balancer's own health checks) gives ``source`` None: the
connection is the balancer's own.
"""
from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

V1_PREFIX = b"PROXY "
V1_MAX = 107                       # the longest version 1 header, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16                      # signature, version and command, family, length
V2_MAX_TLVS = 2048                 # bytes of TLVs after the addresses (ALPN, SNI, unique id ...)
_V2_ADDRESSES = {0x11: (4, 12), 0x21: (16, 36)}   # TCP over IPv4, IPv6: address size, block size


class ProxyHeaderError(ValueError):
    """Bytes that are not a valid PROXY protocol header."""


class ProxyHeader(NamedTuple):
    consumed: int                          # bytes of the header
    source: tuple[str, int] | None         # the client's address and port; None: the peer's own


def parse(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``; None while it is incomplete."""
    if data[:1] == b"P":
        return _parse_v1(data)
    if data[:1] == b"\r":
        return _parse_v2(data)
    if not data:
        return None
    raise ProxyHeaderError("not a PROXY protocol header")


def _parse_v1(data: bytes) -> ProxyHeader | None:
    if not data.startswith(V1_PREFIX[:len(data)]):
        raise ProxyHeaderError("not a PROXY protocol header")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        cr = data.find(b"\r")
        if len(data) >= V1_MAX or b"\n" in data or 0 <= cr < len(data) - 1:
            raise ProxyHeaderError("version 1 header without CRLF within 107 bytes")
        return None
    line = data[:end]
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("version 1 header is not ASCII") from None
    fields = text.split(" ")
    if len(fields) >= 2 and fields[1] == "UNKNOWN":   # anything may follow; the peer's own
        return ProxyHeader(end + 2, None)
    if len(fields) != 6 or fields[0] != "PROXY":
        raise ProxyHeaderError("version 1 header: expected PROXY TCP4|TCP6 SRC DST SPORT DPORT")
    _, family, src, dst, sport, dport = fields
    version = {"TCP4": 4, "TCP6": 6}.get(family)
    if version is None:
        raise ProxyHeaderError(f"version 1 header: unknown protocol {family[:8]!r}")
    source = _address(src, version, family)
    _address(dst, version, family)
    port = _port(sport)
    _port(dport)
    return ProxyHeader(end + 2, (source, port))


def _address(text: str, version: int, family: str) -> str:
    try:
        if "%" in text or ipaddress.ip_address(text).version != version:  # no IPv6 scope
            raise ValueError
    except ValueError:
        raise ProxyHeaderError(f"version 1 header: {text[:48]!r} is not an {family} address") from None
    return str(ipaddress.ip_address(text))


def _port(text: str) -> int:
    """A port as version 1 writes it: decimal, 0..65535, no sign, no leading zero."""
    if not (text.isdigit() and text.isascii() and len(text) <= 5) or (text[0] == "0" and text != "0"):
        raise ProxyHeaderError(f"version 1 header: {text[:8]!r} is not a port")
    port = int(text)
    if port > 65535:
        raise ProxyHeaderError(f"version 1 header: {text!r} is not a port")
    return port


def _parse_v2(data: bytes) -> ProxyHeader | None:
    head = data[:12]
    if not V2_SIGNATURE.startswith(head):
        raise ProxyHeaderError("not a PROXY protocol header")
    if len(data) < V2_FIXED:
        if len(data) > 12 and data[12] >> 4 != 2:
            raise ProxyHeaderError("version 2 header: unknown version")
        return None
    ver_cmd, family, length = struct.unpack_from("!BBH", data, 12)
    if ver_cmd >> 4 != 2:
        raise ProxyHeaderError("version 2 header: unknown version")
    command = ver_cmd & 0x0F
    if command > 1:
        raise ProxyHeaderError("version 2 header: unknown command")
    if command == 1 and family not in _V2_ADDRESSES:
        raise ProxyHeaderError("version 2 header: only TCP over IPv4 or IPv6 is forwarded")
    # LOCAL may carry any family's block (up to a UNIX one: 216 bytes), which is ignored.
    low, high = (_V2_ADDRESSES[family][1], 0) if command == 1 else (0, 216)
    if not low <= length <= max(low, high) + V2_MAX_TLVS:
        raise ProxyHeaderError(f"version 2 header: length {length} does not fit its addresses")
    if len(data) < V2_FIXED + length:
        return None
    if command == 0:                          # LOCAL: the balancer's own connection
        return ProxyHeader(V2_FIXED + length, None)
    size = _V2_ADDRESSES[family][0]
    src = data[V2_FIXED:V2_FIXED + size]
    (sport,) = struct.unpack_from("!H", data, V2_FIXED + 2 * size)
    address = ipaddress.IPv4Address(src) if size == 4 else ipaddress.IPv6Address(src)
    return ProxyHeader(V2_FIXED + length, (str(address), sport))
