"""Trusted reverse proxies on HTTP: X-Forwarded-For / Forwarded name the client only when
the peer is one of ``http.trusted_proxies``, and then drive allowlists and bans."""
from __future__ import annotations

import urllib.parse
import urllib.request

import pytest
from multidict import CIMultiDict

from hlrsmpp.accounts.allowlist import parse_allowlist
from hlrsmpp.server.http.guard import client_address

TRUSTED = parse_allowlist(["10.0.0.0/8", "2001:db8:f::/48"], "http.trusted_proxies")
E001 = "ERROR - 001 --> Either Systemid or password is incorrect"


def headers(*pairs) -> CIMultiDict:
    return CIMultiDict(pairs)


@pytest.mark.parametrize("hdrs, client", [
    ([("X-Forwarded-For", "203.0.113.9")], "203.0.113.9"),
    # The client wrote the leftmost hop itself; the proxies appended the rest.
    ([("X-Forwarded-For", "6.6.6.6, 203.0.113.9, 10.1.1.1")], "203.0.113.9"),
    ([("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.9, 10.1.1.1")], "203.0.113.9"),
    ([("X-Forwarded-For", "10.2.2.2, 10.1.1.1")], "10.2.2.2"),         # only proxies: the farthest
    ([("X-Forwarded-For", "6.6.6.6, unknown")], "10.0.0.1"),           # the proxy did not know
    ([("X-Forwarded-For", "")], "10.0.0.1"),
    ([], "10.0.0.1"),
    ([("Forwarded", 'for=192.0.2.60;proto=https;by=10.0.0.1')], "192.0.2.60"),
    ([("Forwarded", 'for="[2001:db8:cafe::17]:4711"')], "2001:db8:cafe::17"),
    ([("Forwarded", 'for=6.6.6.6, for="192.0.2.61:8443", for=10.3.3.3')], "192.0.2.61"),
    ([("Forwarded", "for=_hidden, for=10.3.3.3")], "10.0.0.1"),
    ([("Forwarded", "proto=https")], "10.0.0.1"),                      # an element without for=
    # Forwarded, the standard, wins over the older header.
    ([("Forwarded", "for=192.0.2.62"), ("X-Forwarded-For", "6.6.6.6")], "192.0.2.62"),
    ([("X-Forwarded-For", "2001:db8:f::1, ::ffff:198.51.100.4")], "198.51.100.4"),
])
def test_the_client_is_the_rightmost_untrusted_hop(hdrs, client):
    assert client_address("10.0.0.1", headers(*hdrs), TRUSTED) == client


def get(st, path: str, xff: str | None = None, **params) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{st.http_port}{path}?{urllib.parse.urlencode(params)}")
    if xff is not None:
        req.add_header("X-Forwarded-For", xff)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()


ACCOUNTS = [{"system_id": "far", "password": "pw", "allowed_ips": ["203.0.113.0/24"]},
            {"system_id": "demo", "password": "demo"}]


def lookup(st, xff=None, user="far", password="pw") -> str:
    return get(st, "/websmpp/hlr/lookup", xff, username=user, password=password,
               destination="447912345678")


def test_a_trusted_proxy_names_the_client_for_the_allowlist(make_server):
    st = make_server(ACCOUNTS, http={"trusted_proxies": ["127.0.0.1"]})
    assert lookup(st, "203.0.113.9").startswith("BatchId: ")
    assert lookup(st, "198.51.100.1") == E001
    assert lookup(st) == E001                                   # the proxy's own address
    assert lookup(st, "203.0.113.9, 198.51.100.1") == E001      # the rightmost untrusted hop


def test_from_anyone_else_the_header_is_ignored(make_server):
    st = make_server(ACCOUNTS, http={"trusted_proxies": ["10.0.0.0/8"]})
    assert lookup(st, "203.0.113.9") == E001
    st = make_server(ACCOUNTS)
    assert lookup(st, "203.0.113.9") == E001


def test_bans_count_the_client_behind_the_proxy(make_server):
    st = make_server(ACCOUNTS, http={"trusted_proxies": ["127.0.0.1"]}, bans={"after": 2})
    for _ in range(2):
        assert lookup(st, "198.51.100.66", "demo", "wrong") == E001
    assert lookup(st, "198.51.100.66", "demo", "demo") == E001        # banned, right password
    assert lookup(st, "198.51.100.67", "demo", "demo").startswith("BatchId: ")
    assert st.call(lambda: st.server.book.check_ip("198.51.100.66", 0) is not None)
    assert st.call(lambda: st.server.book.check_ip("127.0.0.1", 0) is None)


def _open(port: int, n: int) -> list:
    import socket
    return [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]


def _still_open(sock) -> bool:
    sock.settimeout(0.5)
    try:
        return sock.recv(1) != b""
    except TimeoutError:
        return True
    except OSError:
        return False


@pytest.mark.parametrize("trusted, kept", [([], 1), (["127.0.0.1"], 3)])
def test_a_trusted_proxy_is_not_capped_per_address(make_server, trusted, kept):
    """A proxy carries many clients: its connections count towards the listener's total
    only (http.max_connections), not one address's cap."""
    st = make_server(ACCOUNTS, http={"trusted_proxies": trusted, "max_connections_per_ip": 1})
    socks = _open(st.http_port, 3)
    try:
        assert sum(_still_open(s) for s in socks) == kept
    finally:
        for s in socks:
            s.close()
