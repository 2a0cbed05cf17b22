"""The PROXY protocol header parser (v1 text, v2 binary), sans-IO: headers built here by
hand, byte by byte as HAProxy writes them, then hostile and random inputs."""
from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings, strategies as st

from hlrsmpp.server.proxy_header import ProxyHeader, ProxyHeaderError, parse

SIG = b"\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A"


def v1(src: str, dst: str, sport: int, dport: int) -> bytes:
    family = "TCP4" if ipaddress.ip_address(src).version == 4 else "TCP6"
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src: str, dst: str, sport: int, dport: int, command: int = 1, tlvs: bytes = b"",
       family: int | None = None, version: int = 2) -> bytes:
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if family is None:
        family = 0x11 if a.version == 4 else 0x21
    body = a.packed + b.packed + struct.pack("!HH", sport, dport) + tlvs
    return SIG + bytes([version << 4 | command, family]) + struct.pack("!H", len(body)) + body


def test_version_1_names_the_client():
    header = v1("203.0.113.7", "10.0.0.5", 51234, 2775)
    assert parse(header + b"\x00\x00\x00\x10bind") == ProxyHeader(len(header), ("203.0.113.7", 51234))
    header = v1("2001:db8::7", "2001:db8::1", 1, 65535)
    assert parse(header) == ProxyHeader(len(header), ("2001:db8::7", 1))


def test_version_1_unknown_is_the_peers_own():
    assert parse(b"PROXY UNKNOWN\r\nrest") == ProxyHeader(15, None)
    assert parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n") == ProxyHeader(35, None)


def test_version_2_names_the_client():
    header = v2("198.51.100.9", "10.0.0.5", 40000, 3550)
    assert parse(header + b"rest") == ProxyHeader(28, ("198.51.100.9", 40000))
    header = v2("2001:db8:1::9", "2001:db8::5", 7, 2775, tlvs=b"\x02\x00\x03abc")   # an authority TLV
    assert parse(header) == ProxyHeader(16 + 36 + 6, ("2001:db8:1::9", 7))


def test_version_2_local_is_the_peers_own():
    # A health check of the balancer: LOCAL, UNSPEC, no addresses.
    assert parse(SIG + b"\x20\x00\x00\x00") == ProxyHeader(16, None)
    assert parse(v2("10.0.0.1", "10.0.0.2", 1, 2, command=0)) == ProxyHeader(28, None)


@pytest.mark.parametrize("header", [
    v1("203.0.113.7", "10.0.0.5", 51234, 2775),
    v2("198.51.100.9", "10.0.0.5", 40000, 3550),
    v2("2001:db8::1", "2001:db8::2", 1, 2, tlvs=b"\x01\x00\x02h2"),
])
def test_every_prefix_asks_for_more(header):
    for n in range(len(header)):
        assert parse(header[:n]) is None, n


@pytest.mark.parametrize("data, why", [
    (b"\x00\x00\x00\x2f\x00\x00\x00\x09", "not a PROXY protocol header"),   # an SMPP bind
    (b"GET / HTTP/1.1\r\n", "not a PROXY protocol header"),
    (b"\x16\x03\x01\x02\x00", "not a PROXY protocol header"),                 # a TLS ClientHello
    (b"PROXZ", "not a PROXY protocol header"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "without CRLF"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "without CRLF"),
    (b"PROXY " + b"A" * 101, "without CRLF"),                                 # 107 bytes, no end
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "expected PROXY TCP4"),
    (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "expected PROXY TCP4"),
    (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol"),
    (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "is not an TCP4 address"),
    (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "is not an TCP6 address"),
    (b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", "is not an TCP4 address"),
    (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "is not an TCP6 address"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "is not a port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "is not a port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "is not a port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \xd9\xa3\r\n", "not ASCII"),
    (SIG[:5] + b"X", "not a PROXY protocol header"),
    (SIG + b"\x10", "unknown version"),
    (v2("1.2.3.4", "5.6.7.8", 1, 2, version=1), "unknown version"),
    (v2("1.2.3.4", "5.6.7.8", 1, 2, command=2), "unknown command"),
    (v2("1.2.3.4", "5.6.7.8", 1, 2, family=0x12), "only TCP"),                # UDP
    (v2("1.2.3.4", "5.6.7.8", 1, 2, family=0x31), "only TCP"),                # a UNIX socket
    (SIG + b"\x21\x11\x00\x08" + bytes(8), "does not fit"),                   # too short for IPv4
    (SIG + b"\x21\x21\x00\x0c" + bytes(12), "does not fit"),                  # IPv4 size, IPv6 family
    (SIG + b"\x21\x11\xff\xff", "does not fit"),                              # 64 KiB of TLVs
])
def test_hostile_headers_are_refused(data, why):
    with pytest.raises(ProxyHeaderError, match=why):
        parse(data)


addresses4 = st.ip_addresses(v=4).map(str)
addresses6 = st.ip_addresses(v=6).map(str)
ports = st.integers(0, 65535)


@given(st.one_of(st.tuples(addresses4, addresses4), st.tuples(addresses6, addresses6)), ports, ports,
       st.booleans(), st.binary(max_size=64), st.binary(max_size=300))
def test_any_valid_header_names_its_client(pair, sport, dport, text, tlvs, rest):
    src, dst = pair
    header = v1(src, dst, sport, dport) if text else v2(src, dst, sport, dport, tlvs=tlvs)
    got = parse(header + rest)
    assert got == ProxyHeader(len(header), (str(ipaddress.ip_address(src)), sport))


@settings(max_examples=500)
@given(st.one_of(st.binary(max_size=300),
                 st.binary(max_size=120).map(lambda b: b"PROXY " + b),
                 st.binary(max_size=120).map(lambda b: SIG + b)))
def test_any_bytes_give_a_header_more_or_a_refusal(data):
    """Never another exception, and a bounded wait: what is not a header yet is refused
    at once past the longest header there can be."""
    try:
        got = parse(data)
    except ProxyHeaderError:
        return
    if got is None:
        assert len(data) < 16 + 216 + 2048
        if data.startswith(b"P"):
            assert len(data) < 107
    else:
        assert 0 < got.consumed <= len(data)
        assert got.source is None or 0 <= got.source[1] <= 65535
