"""SMPP over TLS on its own port and HTTPS, end to end: certificates made at test time
(tests/certs.py), smpplib and urllib as the clients, client certificates and an
account's pinned subject, certificates reloaded on SIGHUP, handshakes under the caps and
the deadline."""
from __future__ import annotations

import asyncio
import json
import signal
import socket
import ssl
import time
import urllib.parse
import urllib.request

import pytest
import smpplib.exceptions
from hypothesis import HealthCheck, given, settings, strategies as hs
import yaml

from certs import Pki
from conftest import ServerProcess, free_port
from esme import RECEIPT_RE, SmpplibEsme
from hlrsmpp import metrics
from hlrsmpp.server.tls import HandshakePacer
from test_proxy_header import v1, v2

NUMBER = "447912345678"
#: What a client refused during its TLS handshake sees (smpplib wraps some of them).
REFUSED = (ssl.SSLError, OSError, smpplib.exceptions.ConnectionError)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    pki = Pki(tmp_path_factory.mktemp("pki"))
    pki.client("esme1", "/CN=esme1/O=Acme")
    pki.client("esme2", "/CN=esme2/O=Acme")
    pki.client("rogue", "/CN=esme1/O=Acme", ca="rogue_ca")
    return pki


def tls_section(pki, client_ca=False) -> dict:
    tls = {"port": 0, "cert": pki.path("server.pem"), "key": pki.path("server.key")}
    if client_ca:
        tls["client_ca"] = pki.path("ca.pem")
    return tls


ACCOUNTS = [{"system_id": "demo", "password": "demo"},
            {"system_id": "acme", "password": "pw", "tls_subject": "CN=esme1,O=Acme"}]


def lookup(esme: SmpplibEsme) -> None:
    seq = esme.submit(NUMBER)
    esme.pump(lambda: seq in esme.resps and esme.receipts)
    assert RECEIPT_RE.match(esme.receipts[-1].short_message.decode())


def bound(st) -> list[str]:
    return st.call(lambda: sorted(p.account.system_id for p in st.server.protocols if p.account))


def test_smpplib_binds_over_tls_beside_the_plain_port(make_server, pki):
    st = make_server(smpp={"tls": tls_section(pki)})
    assert st.server.smpp_tls_port not in (None, st.smpp_port)
    esme = SmpplibEsme(st.server.smpp_tls_port, ssl_context=pki.client_context())
    try:
        esme.bind()
        assert esme.client._socket.version() in ("TLSv1.2", "TLSv1.3")
        lookup(esme)
    finally:
        esme.close()
    plain = SmpplibEsme(st.smpp_port)        # the plain port still answers in clear
    plain.bind()
    plain.close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_tls_below_1_2_is_refused(make_server, pki):
    st = make_server(smpp={"tls": tls_section(pki)})
    before = metrics.STATS.connections_rejected["smpp", "tls_handshake"]
    ctx = pki.client_context()
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")      # this client would speak TLS 1.1
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(REFUSED):
        SmpplibEsme(st.server.smpp_tls_port, ssl_context=ctx).bind()
    assert metrics.STATS.connections_rejected["smpp", "tls_handshake"] == before + 1


def test_a_client_certificate_is_required_with_client_ca(make_server, pki):
    st = make_server(smpp={"tls": tls_section(pki, client_ca=True)})
    port = st.server.smpp_tls_port
    esme = SmpplibEsme(port, ssl_context=pki.client_context("esme2"))
    esme.bind()
    esme.close()
    before = metrics.STATS.connections_rejected["smpp", "tls_handshake"], metrics.STATS.tarpitted
    for cert in (None, "rogue"):    # none at all; one signed by a CA the server does not trust
        with pytest.raises(REFUSED):
            SmpplibEsme(port, ssl_context=pki.client_context(cert)).bind()
    # Refused, each after the tarpit (held unread, then told why).
    assert (metrics.STATS.connections_rejected["smpp", "tls_handshake"], metrics.STATS.tarpitted) == \
        (before[0] + 2, before[1] + 2)
    assert st.call(lambda: st.server.smpp_gate.count) == 0
    assert bound(st) == []


def test_an_account_binds_only_with_the_certificate_it_pinned(make_server, pki):
    st = make_server(ACCOUNTS, smpp={"tls": tls_section(pki, client_ca=True)})
    port = st.server.smpp_tls_port
    esme = SmpplibEsme(port, ssl_context=pki.client_context("esme1"))
    esme.bind(system_id="acme", password="pw")
    lookup(esme)
    esme.close()
    # Another certificate of the same CA, and the plain port (no certificate at all).
    for esme in (SmpplibEsme(port, ssl_context=pki.client_context("esme2")), SmpplibEsme(st.smpp_port)):
        with pytest.raises(smpplib.exceptions.PDUError) as err:
            esme.bind(system_id="acme", password="pw")
        assert err.value.args[1] == 0x0D        # ESME_RBINDFAIL
        esme.close()
    # The other account has no pin: any certificate of the CA will do.
    esme = SmpplibEsme(port, ssl_context=pki.client_context("esme2"))
    esme.bind()
    esme.close()


def test_a_bad_pin_is_named(make_server):
    with pytest.raises(ValueError, match=r"account 'acme': tls_subject: 'CN' is not NAME=VALUE"):
        make_server([{"system_id": "acme", "password": "pw", "tls_subject": "CN,O=Acme"}])


def test_a_handshake_never_finished_is_closed_on_time(make_server, pki):
    st = make_server(smpp={"tls": tls_section(pki), "session_init_timeout": 0.5})
    before = metrics.STATS.connections_rejected["smpp", "too_slow"]
    silent = socket.create_connection(("127.0.0.1", st.server.smpp_tls_port))
    half = socket.create_connection(("127.0.0.1", st.server.smpp_tls_port))
    half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")   # the start of a ClientHello
    for sock in (silent, half):
        sock.settimeout(10)
        start = time.monotonic()
        assert sock.recv(100) == b""
        assert time.monotonic() - start < 5
        sock.close()
    assert metrics.STATS.connections_rejected["smpp", "too_slow"] == before + 2
    assert st.call(lambda: st.server.smpp_gate.count) == 0


def test_handshakes_are_under_the_per_address_cap(make_server, pki):
    st = make_server(smpp={"tls": tls_section(pki), "max_connections_per_ip": 2})
    port = st.server.smpp_tls_port
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    deadline = time.monotonic() + 5
    while st.call(lambda: st.server.smpp_gate.count) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    before = metrics.STATS.connections_rejected["smpp", "max_connections_per_ip"]
    with pytest.raises(REFUSED):
        SmpplibEsme(port, ssl_context=pki.client_context()).bind()
    assert metrics.STATS.connections_rejected["smpp", "max_connections_per_ip"] == before + 1
    for sock in idle:
        sock.close()


def test_handshake_steps_take_turns_with_the_loop():
    """One handshake step per turn of the loop: a session served every turn (here, a
    callback that books itself again) runs between any two steps."""
    order: list[str] = []

    class Step:
        def __init__(self, name):
            self.name = name

        def step(self):
            order.append(self.name)

    def session(turns: int) -> None:
        order.append("io")
        if turns:
            loop.call_soon(session, turns - 1)

    loop = asyncio.new_event_loop()
    try:
        pacer = HandshakePacer(loop)
        loop.call_soon(session, 6)
        for name in ("a", "b", "c", "d"):
            pacer.add(Step(name))      # type: ignore[arg-type]
        loop.run_until_complete(asyncio.sleep(0.05))
    finally:
        loop.close()
    steps = [x for x in order if x != "io"]
    assert steps == ["a", "b", "c", "d"]
    assert all("io" in pair for pair in zip(order, order[1:])), order


def test_https_on_the_http_port(make_server, pki):
    st = make_server(http={"tls": {"cert": pki.path("server.pem"), "key": pki.path("server.key")}})
    ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
    with urllib.request.urlopen(f"https://localhost:{st.http_port}/healthz", context=ctx, timeout=10) as r:
        assert json.load(r)["status"] == "ok"
    with pytest.raises(OSError):      # clear HTTP on it is not answered
        urllib.request.urlopen(f"http://127.0.0.1:{st.http_port}/healthz", timeout=5).read()


def test_a_tls_setting_without_its_files_is_named(make_server, pki):
    with pytest.raises(ValueError, match=r"smpp.tls.key: a file name is needed"):
        make_server(smpp={"tls": {"port": 0, "cert": pki.path("server.pem")}})
    with pytest.raises(ValueError, match=r"http.tls: cannot use cert .*nothere.pem"):
        make_server(http={"tls": {"cert": pki.path("nothere.pem"), "key": pki.path("server.key")}})
    with pytest.raises(ValueError, match=r"http.tls.client_ca: unknown key"):
        make_server(http={"tls": {"cert": pki.path("server.pem"), "key": pki.path("server.key"),
                                  "client_ca": pki.path("ca.pem")}})


def _serial(port: int, pki) -> int:
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with pki.client_context().wrap_socket(raw) as tls:
            return int(tls.getpeercert()["serialNumber"], 16)


def test_sighup_reloads_the_certificate_keeping_bound_sessions(tmp_path, pki):
    tls_port = free_port()
    cfg = {"smpp": {"host": "127.0.0.1", "tls": {"port": tls_port, "cert": "server.pem", "key": "server.key"}},
           "http": {"host": "127.0.0.1"}, "storage": {"path": str(tmp_path / "data")},
           "log": {"format": "json", "level": "info"}, "accounts": [{"system_id": "a", "password": "p"}]}
    for name in ("server.pem", "server.key"):
        (tmp_path / name).write_bytes((pki.root / name).read_bytes())
    (tmp_path / "hlrsmpp.yaml").write_text(yaml.safe_dump(cfg))
    proc = ServerProcess(tmp_path / "hlrsmpp.yaml", free_port(), free_port()).start()
    try:
        esme = SmpplibEsme(tls_port, ssl_context=pki.client_context())
        esme.bind(system_id="a", password="p")
        lookup(esme)
        first = _serial(tls_port, pki)
        pki.server("renewed", "ca")
        for name in ("pem", "key"):
            (tmp_path / f"server.{name}").write_bytes((pki.root / f"renewed.{name}").read_bytes())
        proc.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while '"reloaded"' not in proc.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _serial(tls_port, pki) != first      # new handshakes get the new certificate
        lookup(esme)                                  # the bound session goes on
        # A broken file is logged; the certificate in force stays.
        (tmp_path / "server.key").write_text("not a key\n")
        proc.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reload_failed" not in proc.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "smpp.tls: cannot use cert" in proc.output()
        lookup(esme)
        esme.close()
    finally:
        assert proc.terminate() == 0


def test_a_pinned_account_has_no_http_login(make_server, pki):
    """HTTP carries no client certificate: the pin refuses the account's HTTP logins too,
    so its password alone is never enough."""
    st = make_server(ACCOUNTS, smpp={"tls": tls_section(pki, client_ca=True)})
    query = urllib.parse.urlencode({"username": "acme", "password": "pw", "destination": NUMBER})
    with urllib.request.urlopen(f"http://127.0.0.1:{st.http_port}/websmpp/hlr/lookup?{query}", timeout=10) as r:
        assert r.read().decode() == "ERROR - 001 --> Either Systemid or password is incorrect"


def test_bench_over_tls(make_server, pki):
    """``hlrsmpp bench --tls``: every lookup and receipt over TLS (the figures are for
    BENCHMARKS.md, not asserted here)."""
    from hlrsmpp.bench.load import BenchConfig, run_load
    st = make_server([{"system_id": "demo", "password": "demo"}, {"system_id": "demo2", "password": "demo"}],
                     smpp={"tls": tls_section(pki)})
    r = run_load(BenchConfig(port=st.server.smpp_tls_port, tls=True, sessions=2, window=32, count=2000))
    assert (r["errors"], r["submit_ok"], r["receipts"], r["tls"]) == ({}, 2000, 2000, True)
    with pytest.raises((ssl.SSLError, OSError)):     # the plain port does not speak TLS
        run_load(BenchConfig(port=st.smpp_port, tls=True, sessions=1, count=10, connect_timeout=2))


@pytest.mark.slow
def test_bench_spawns_a_server_with_tls():
    from hlrsmpp.bench.load import BenchConfig, bench
    r = bench(BenchConfig(spawn=True, tls=True, sessions=2, window=16, count=5000))
    assert (r["errors"], r["submit_ok"], r["receipts"], r["tls"]) == ({}, 5000, 5000, True)


async def test_kannel_binds_over_tls_with_its_client_certificate(make_server, pki, tmp_path, monkeypatch):
    """Kannel 1.4.5 (``use-ssl = true``, its client certificate and our CA in its core
    group) binds to the TLS port as an account pinned to that certificate."""
    import aiohttp
    import test_interop
    st = make_server([{"system_id": "demo", "password": "demo", "tls_subject": "CN=esme1,O=Acme"}],
                     smpp={"tls": tls_section(pki, client_ca=True)})
    monkeypatch.setitem(test_interop.KANNEL_MODES, "trx+tls",
                        [dict(port="{smpp}", extra="transceiver-mode = true\nuse-ssl = true\n")])
    certkey = tmp_path / "kannel-client.pem"
    certkey.write_bytes((pki.root / "esme1.pem").read_bytes() + (pki.root / "esme1.key").read_bytes())
    kannel = test_interop.Kannel(st.server.smpp_tls_port, tmp_path, "trx+tls")
    kannel.conf.write_text(kannel.conf.read_text().replace(
        "group = core\n", f"group = core\nssl-client-certkey-file = {certkey}\n"
                          f"ssl-trusted-ca-file = {pki.path('ca.pem')}\n", 1))
    try:
        async with aiohttp.ClientSession() as http:
            await kannel.start(http)
        assert await asyncio.to_thread(bound, st) == ["demo"]
    finally:
        kannel.stop()


def test_a_proxy_header_before_tls(make_server, pki):
    """A TCP balancer passes TLS through untouched after its PROXY header: the client's
    address drives the allowlist, its certificate the pin."""
    st = make_server([{"system_id": "acme", "password": "pw", "allowed_ips": ["203.0.113.7"],
                       "tls_subject": "CN=esme1"}],
                     smpp={"tls": tls_section(pki, client_ca=True), "proxy_protocol": ["127.0.0.1"]})
    port = st.server.smpp_tls_port
    esme = SmpplibEsme(port, preamble=v2("203.0.113.7", "127.0.0.1", 1, 3550),
                       ssl_context=pki.client_context("esme1"))
    esme.bind(system_id="acme", password="pw")
    assert st.call(lambda: [p.peer_ip for p in st.server.protocols]) == ["203.0.113.7"]
    lookup(esme)
    esme.close()
    esme = SmpplibEsme(port, preamble=v1("198.51.100.1", "127.0.0.1", 1, 3550),
                       ssl_context=pki.client_context("esme1"))
    with pytest.raises(smpplib.exceptions.PDUError):
        esme.bind(system_id="acme", password="pw")
    esme.close()
    with pytest.raises(REFUSED):     # TLS straight from a balancer: no header, closed
        SmpplibEsme(port, ssl_context=pki.client_context("esme1")).bind(system_id="acme", password="pw")


def test_a_banned_clients_handshake_waits_the_tarpit(make_server, pki):
    st = make_server(smpp={"tls": tls_section(pki), "tarpit": 0.3}, bans={"after": 1})
    st.call(lambda: st.server.book.record_failure("127.0.0.1", time.time()))
    before = metrics.STATS.tarpitted
    esme = SmpplibEsme(st.server.smpp_tls_port, ssl_context=pki.client_context())
    with pytest.raises(smpplib.exceptions.PDUError) as err:
        esme.bind()
    assert err.value.args[1] == 0x0D                 # then refused, as a banned bind is
    esme.close()
    # Held back twice: its handshake, then its bind (as any bind from a banned address).
    assert metrics.STATS.tarpitted == before + 2


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, pki):
    from conftest import ServerThread, make_config
    server = ServerThread(make_config(tmp_path_factory.mktemp("fuzz"), smpp={
        "tls": tls_section(pki), "session_init_timeout": 0.5, "tarpit": 0.1})).start()
    yield server
    # Every connection gone, every slot given back, and a client still served.
    try:
        assert server.connections_left() == (0, 0)
        esme = SmpplibEsme(server.server.smpp_tls_port, ssl_context=pki.client_context())
        esme.bind()
        esme.close()
    finally:
        server.stop()


_HELLO = b"\x16\x03\x01"    # a TLS handshake record's start


@pytest.mark.e2e
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=hs.one_of(hs.binary(min_size=1, max_size=600),
                      hs.binary(max_size=600).map(lambda b: _HELLO + b)))
def test_hostile_bytes_on_the_tls_port_leave_nothing_behind(tls_server, data):
    sock = socket.create_connection(("127.0.0.1", tls_server.server.smpp_tls_port))
    sock.sendall(data)
    sock.close()
