"""IPv6 and dual-stack listeners on the loopback (::1): SMPP, SMPP over TLS and HTTP; an
IPv6 client's ban covers its /64."""
from __future__ import annotations

import json
import socket
import urllib.request

import pytest
import smpplib.exceptions

from certs import Pki
from esme import SmpplibEsme


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _has_ipv6_loopback(),
                                reason="this machine has no IPv6 loopback (::1) to bind")


def peers_of(st) -> list[str]:
    return st.call(lambda: sorted(p.peer_ip for p in st.server.protocols))


def test_smpp_and_http_on_ipv6(make_server):
    st = make_server(smpp={"host": "::1"}, http={"host": "::1"})
    esme = SmpplibEsme(st.smpp_port, host="::1")
    try:
        esme.bind()
        assert peers_of(st) == ["::1"]
    finally:
        esme.close()
    with urllib.request.urlopen(f"http://[::1]:{st.http_port}/healthz", timeout=10) as r:
        assert json.load(r)["status"] == "ok"


def test_dual_stack_takes_ipv4_and_ipv6(make_server, tmp_path):
    pki = Pki(tmp_path / "pki")
    st = make_server([{"system_id": "v4", "password": "pw", "allowed_ips": ["127.0.0.1"]},
                      {"system_id": "v6", "password": "pw", "allowed_ips": ["::1"]}],
                     smpp={"host": "::", "tls": {"port": 0, "cert": pki.path("server.pem"),
                                                  "key": pki.path("server.key")}},
                     http={"host": "::"})
    for host, account in (("127.0.0.1", "v4"), ("::1", "v6")):
        plain = SmpplibEsme(st.smpp_port, host=host)
        secure = SmpplibEsme(st.server.smpp_tls_port, host=host, ssl_context=pki.client_context())
        try:
            plain.bind(system_id=account, password="pw")
            secure.bind(system_id=account, password="pw", mode="transmitter")
        finally:
            plain.close()
            secure.close()
        url_host = f"[{host}]" if ":" in host else host
        with urllib.request.urlopen(f"http://{url_host}:{st.http_port}/healthz", timeout=10) as r:
            assert r.status == 200
    # Each account's allowlist still tells the two apart.
    esme = SmpplibEsme(st.smpp_port, host="::1")
    with pytest.raises(smpplib.exceptions.PDUError):
        esme.bind(system_id="v4", password="pw")
    esme.close()


def test_an_ipv6_ban_covers_the_64(make_server):
    st = make_server(smpp={"host": "::1"}, bans={"after": 2})
    for _ in range(2):
        esme = SmpplibEsme(st.smpp_port, host="::1")
        with pytest.raises(smpplib.exceptions.PDUError):
            esme.bind(password="wrong")
        esme.close()
    book = st.server.book
    assert st.call(lambda: book.check_ip("::1", 0) is not None)
    assert st.call(lambda: book.check_ip("::abcd:1", 0) is not None)       # the same /64
    assert st.call(lambda: book.check_ip("0:0:0:1::1", 0) is None)         # the next /64
