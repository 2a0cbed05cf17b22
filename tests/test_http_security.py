"""The HTTP server on the open internet: what an attacker on the network can and cannot
make it do. Paths from the API stay under their directory; malformed input is a 400 and
a debug line, never a 500 or a traceback. Real servers, real sockets."""
from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from pathlib import Path

import pytest
from aiohttp import web

from conftest import ServerProcess, free_port
from http_client import ApiClient, basic, clients, error_code

TOKEN = "T0k-sec"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def api():
    async with clients(ApiClient) as factory:
        yield factory


def raw_http(port: int, data: bytes, timeout: float = 5.0, close_after: float | None = None) -> bytes:
    """Send ``data`` on a fresh connection; the answer (until the server closes or
    ``timeout``), or nothing when the client hangs up after ``close_after`` seconds."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if close_after is not None:
            time.sleep(close_after)
            return b""
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def wait_http(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "the HTTP listener did not start"
            time.sleep(0.05)


# ------------------------------------------------------------------ files named over the API

async def test_trace_file_from_the_api_is_a_bare_name(make_server, api, tmp_path):
    """PATCH and POST of an account cannot make the server append PDU traces outside
    <storage.path>/traces/: every file name from the API is checked in one place."""
    st = make_server(admin={"token": TOKEN})
    a = await api(st)
    data = Path(st.cfg["storage"]["path"])
    outside = tmp_path / "owned"
    for bad in ("../../owned", "../owned", str(outside), "/etc/passwd", ".hidden", "a/b", "..", ""):
        status, body, _ = await a.call("PATCH", "/accounts/demo", ADMIN, json={"trace": bad})
        assert error_code(status, body, 422) == "invalid_trace", (bad, body)
        status, body, _ = await a.call("POST", "/accounts", ADMIN,
                                       json={"system_id": "new1", "password": "pw", "trace": bad})
        assert error_code(status, body, 422) == "invalid_trace", (bad, body)
    assert not outside.exists() and not (data.parent / "owned").exists()
    assert st.server.book.get("demo").settings.trace is False and st.server.book.get("new1") is None
    # A bare name lands under traces/; the path the API then shows is accepted back.
    status, body, _ = await a.call("PATCH", "/accounts/demo", ADMIN, json={"trace": "demo.log"})
    assert status == 200, body
    shown = body["trace"]
    assert Path(shown) == data / "traces" / "demo.log" and Path(shown).exists()
    status, body, _ = await a.call("PATCH", "/accounts/demo", ADMIN, json={"trace": shown})
    assert status == 200 and body["trace"] == shown
    status, body, _ = await a.call("POST", "/accounts", ADMIN,
                                   json={"system_id": "new2", "password": "pw", "trace": "new2.log"})
    assert status == 201 and Path(body["trace"]) == data / "traces" / "new2.log"
    # Cleaning job ids go through the same check.
    status, body, _ = await a.call("GET", "/clean/..%2F..%2Fdata", ADMIN)
    assert status == 404


# ------------------------------------------------------------------ malformed input

async def test_deep_json_and_unknown_charset_are_400(make_server, api):
    st = make_server(admin={"token": TOKEN})
    a = await api(st)
    deep = b"[" * 100_000 + b"]" * 100_000
    for path, headers in (("/lookups", basic("demo", "demo")), ("/accounts/demo", ADMIN)):
        method = "POST" if path == "/lookups" else "PATCH"
        status, body, _ = await a.call(method, path, dict(headers, **{"Content-Type": "application/json"}),
                                       data=deep)
        assert error_code(status, body, 400) == "bad_request", body
        status, body, _ = await a.call(method, path, dict(headers, **{
            "Content-Type": "application/json; charset=no-such-charset"}), data=b'{"number": "1"}')
        assert error_code(status, body, 400) == "bad_request", body
        assert "charset" in body["error"]["message"]


CONFIG = f"""
storage: {{path: ./data}}
admin: {{token: "{TOKEN}"}}
log: {{level: info, format: json}}
accounts:
  - {{system_id: demo, password: demo}}
"""


@pytest.mark.e2e
def test_client_faults_are_a_debug_line_not_an_error(tmp_path):
    """A client that hangs up mid-body or sends an over-long URL is not the server's
    failure: nothing at error level, no traceback (at info level: nothing at all)."""
    cfg = tmp_path / "hlrsmpp.yaml"
    cfg.write_text(CONFIG)
    proc = ServerProcess(cfg, free_port(), free_port()).start()
    try:
        port = proc.http_port
        wait_http(port)
        auth = b"Authorization: Basic " + base64.b64encode(b"demo:demo") + b"\r\n"
        raw_http(port, b"POST /api/v1/lookups HTTP/1.1\r\nHost: x\r\n" + auth +
                 b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"numbers\"",
                 close_after=0.3)
        answer = raw_http(port, b"GET /websmpp/hlr/report?batchid=" + b"1" * 20_000 +
                          b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n", 1)[0]
        answer = raw_http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        assert b" 400 " in answer.split(b"\r\n", 1)[0]
        time.sleep(0.5)
        # The server still serves, and said nothing about it above debug level.
        assert b" 200 " in raw_http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    finally:
        proc.terminate()
    out = proc.output()
    assert "Traceback" not in out, out
    for line in out.splitlines():
        if line.startswith("{"):
            assert json.loads(line).get("level") not in ("error", "critical"), line


# ------------------------------------------------------------------ reports belong to their account

class Ams(ApiClient):
    """The AMS HLR API's two calls."""

    async def lookup(self, user: str, password: str, *numbers: str) -> int:
        async with self.session.get(f"http://127.0.0.1:{self.st.http_port}/websmpp/hlr/lookup",
                                    params={"username": user, "password": password,
                                            "destination": ",".join(numbers)}) as r:
            text = await r.text()
        assert text.startswith("BatchId: "), text
        return int(text.split()[1])

    async def report(self, batch_id, **creds) -> tuple[int, object]:
        async with self.session.get(f"http://127.0.0.1:{self.st.http_port}/websmpp/hlr/report",
                                    params={"batchid": str(batch_id), **creds}) as r:
            return r.status, await r.json()


@pytest.fixture
async def ams():
    async with clients(Ams) as factory:
        yield factory


TWO = [{"system_id": "a", "password": "pwa"}, {"system_id": "b", "password": "pwb"}]


async def test_batch_ids_cannot_be_scanned(make_server, ams):
    """Batch ids are 63 random bits: another account's batch made a moment later is
    nowhere near, and scanning the ids around one's own finds nothing else."""
    st = make_server(TWO, bans={"after": 0})        # no ban: the scan itself is what is tested
    c = await ams(st)
    mine = await c.lookup("a", "pwa", "447400000001")
    theirs = [await c.lookup("b", "pwb", "447400000002", "447400000003") for _ in range(3)]
    mine2 = await c.lookup("a", "pwa", "447400000004")
    ids = [mine, *theirs, mine2]
    assert len(set(ids)) == len(ids) and all(0 < i < 1 << 63 for i in ids)
    # Consecutive batches are far apart (time-ordered ids would be a few thousand apart).
    assert min(abs(x - y) for x in ids for y in ids if x != y) > 1 << 32
    found = []
    for centre in (mine, mine2):
        for bid in range(centre - 300, centre + 301):
            status, body = await c.report(bid)
            if status == 200:
                found.append(bid)
            else:
                assert status == 404 and body["error"]["name"] == "INVALID_REQUEST"
    assert found == [mine, mine2]
    # The id alone reads the report (what the AMS HLR API's clients send).
    status, body = await c.report(theirs[0])
    assert status == 200 and [r["destination"] for r in body] == ["447400000002", "447400000003"]


async def test_report_credentials_when_given_are_checked(make_server, ams):
    st = make_server(TWO)
    c = await ams(st)
    mine = await c.lookup("a", "pwa", "447400000001")
    status, body = await c.report(mine, username="a", password="pwa")
    assert status == 200 and body["batchid"] == str(mine)
    status, body = await c.report(mine, username="a", password="wrong")
    assert status == 401 and (body["error"]["code"], body["error"]["name"]) == ("001", "INVALID_LOGIN")
    status, body = await c.report(mine, username="b", password="pwb")   # someone else's batch
    assert status == 404 and body["error"]["name"] == "INVALID_REQUEST"


async def test_scanning_batch_ids_is_banned_like_password_guessing(make_server, ams, api, tmp_path):
    """bans.after unknown batch ids from one address ban it (bans.time), as wrong
    passwords do."""
    st = make_server(TWO, bans={"after": 4, "time": 60})
    c = await ams(st)
    mine = await c.lookup("a", "pwa", "447400000001")
    for k in range(1, 4):
        assert (await c.report(mine + k))[0] == 404
    assert (await c.report(mine))[0] == 200         # a good id does not reset the count
    assert (await c.report(mine + 4))[0] == 404     # the 4th unknown id: banned
    status, body = await c.report(mine)             # even its own batch, now
    assert status == 403 and body["error"]["name"] == "INVALID_LOGIN"
    # The JSON API's batch ids are as random, and an account finds only its own batches
    # (without valid credentials nothing is read at all; a successful login forgives
    # earlier failures, as for passwords).
    st2 = make_server(TWO, bans={"after": 0}, storage={"path": str(tmp_path / "d2")})
    j = await api(st2)
    bids = []
    for who in (basic("a", "pwa"), basic("b", "pwb"), basic("a", "pwa")):
        status, created, _ = await j.call("POST", "/lookups", who, json={"number": "447400000001"})
        assert status == 200
        bids.append(int(created["batch_id"]))
    assert min(abs(x - y) for x in bids for y in bids if x != y) > 1 << 32
    assert (await j.call("GET", f"/batches/{bids[1]}", basic("a", "pwa")))[0] == 404
    for bid in range(bids[0] - 100, bids[0] + 101):
        status, _, _ = await j.call("GET", f"/batches/{bid}", basic("a", "pwa"))
        assert status == (200 if bid == bids[0] else 404)


# ------------------------------------------------------------------ callbacks (SSRF)

async def _receiver(host: str, handler) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, 0).start()
    return runner, runner.addresses[0][1]


async def _settled(st, want: int = 1, timeout: float = 15.0):
    from hlrsmpp.server.http.api import WEBHOOKS
    hooks = st.server.http_runner.app[WEBHOOKS]
    deadline = time.monotonic() + timeout
    while hooks.failed + hooks.delivered < want and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return hooks


async def test_callback_redirect_to_a_private_address_is_not_followed(make_server, api):
    """A callback receiver that answers 307 to a private address cannot make the server
    POST there: redirects are not followed (the attempt fails, and is retried to the
    checked address only)."""
    private_calls, redirect_calls = [], []

    async def private(request):
        private_calls.append(await request.read())
        return web.Response(status=204)

    async def redirect(request):
        redirect_calls.append(request.headers.get("X-Hlrsmpp-Attempt"))
        raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{private_port}/hook")

    private_runner, private_port = await _receiver("127.0.0.1", private)
    redirect_runner, redirect_port = await _receiver("127.0.0.2", redirect)
    try:
        # Not webhook_private: only 127.0.0.2 (a receiver of the operator's) is allowed.
        st = make_server(http={"webhook_private": False, "webhook_allow": ["127.0.0.2/32"],
                               "webhook_backoff": 0.05, "webhook_attempts": 2})
        a = await api(st)
        status, body, _ = await a.call("POST", "/lookups", basic("demo", "demo"), json={
            "number": "447400000001", "callback_url": f"http://127.0.0.1:{private_port}/hook"})
        assert error_code(status, body, 400) == "bad_request"
        status, body, _ = await a.call("POST", "/lookups", basic("demo", "demo"), json={
            "number": "447400000001", "callback_url": f"http://127.0.0.2:{redirect_port}/hook"})
        assert status == 202, body
        hooks = await _settled(st)
        assert redirect_calls == ["1", "2"] and private_calls == []
        assert hooks.failed == 1 and hooks.delivered == 0
    finally:
        await redirect_runner.cleanup()
        await private_runner.cleanup()


async def test_callback_goes_to_the_checked_address_with_its_name(make_server, api):
    """A name is resolved once per attempt through the checking resolver, and the POST
    goes to that address with the name kept in Host."""
    seen = []

    async def hook(request):
        seen.append((request.host, await request.read()))
        return web.Response(status=204)

    runner, port = await _receiver("127.0.0.1", hook)
    try:
        st = make_server(http={"webhook_allow": ["127.0.0.1/32"], "webhook_backoff": 0.05,
                               "webhook_attempts": 2})
        a = await api(st)
        status, body, _ = await a.call("POST", "/lookups", basic("demo", "demo"), json={
            "number": "447400000001", "callback_url": f"http://localhost:{port}/hook"})
        assert status == 202, body
        hooks = await _settled(st)
        assert hooks.delivered == 1 and seen and seen[0][0] == f"localhost:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("host", ["2130706433", "127.1", "0x7f000001", "0177.0.0.1", "127.0.0.1.",
                                  "0x7f.0.0.1", "017700000001", "8.8.8.010"])
async def test_non_canonical_ipv4_callbacks_are_refused(make_server, api, host):
    """Hosts that name an IPv4 address in another form than a.b.c.d: resolvers disagree on
    them, so they are refused when the URL is given, whatever webhook_private says."""
    st = make_server(http={"webhook_private": True, "webhook_attempts": 1})
    a = await api(st)
    status, body, _ = await a.call("POST", "/lookups", basic("demo", "demo"), json={
        "number": "447400000001", "callback_url": f"http://{host}:8080/hook"})
    assert error_code(status, body, 400) == "bad_request"
    assert "a.b.c.d" in body["error"]["message"]
    status, _, _ = await a.call("POST", "/lookups", basic("demo", "demo"), json={
        "number": "447400000001", "callback_url": "http://127.0.0.1:9/hook", "wait": False})
    assert status == 202


# ------------------------------------------------------------------ connections, timeouts, descriptors

def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> bool:
    """Whether the server closes ``sock`` within ``seconds`` (sending ``trickle`` a byte
    every 0.2 s meanwhile, like a slow client)."""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.2)
    pos = 0
    while time.monotonic() < deadline:
        if pos < len(trickle):
            try:
                sock.sendall(trickle[pos:pos + 1])
            except OSError:
                return True
            pos += 1
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def _is_closed(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (without waiting)."""
    sock.setblocking(False)
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def test_slow_and_idle_http_connections_are_closed(make_server):
    """A client that trickles its headers, stalls in its body, or says nothing at all no
    longer holds a connection (and a descriptor) for minutes."""
    st = make_server(http={"header_timeout": 1.0, "body_timeout": 1.0, "idle_timeout": 1.5})
    port = st.http_port
    slow_header = socket.create_connection(("127.0.0.1", port))
    stalled_body = socket.create_connection(("127.0.0.1", port))
    stalled_body.sendall(b"POST /api/v1/lookups HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"num")
    idle = socket.create_connection(("127.0.0.1", port))
    kept_alive = socket.create_connection(("127.0.0.1", port))
    kept_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    kept_alive.settimeout(5)
    assert kept_alive.recv(65536).startswith(b"HTTP/1.1 200")
    try:
        # Each well before aiohttp's own keep-alive default (about an hour) would close it.
        assert _closed_within(slow_header, 8, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100)
        assert _closed_within(stalled_body, 8)
        assert _closed_within(idle, 8)
        assert _closed_within(kept_alive, 8)
    finally:
        for s in (slow_header, stalled_body, idle, kept_alive):
            s.close()
    from hlrsmpp import metrics
    assert metrics.STATS.http_timeouts["header"] >= 1 and metrics.STATS.http_timeouts["body"] >= 1
    # A request that is merely slow to be answered is not cut (a synchronous lookup waits).
    answer = raw_http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")


def test_http_connections_per_ip_are_capped(make_server):
    st = make_server(http={"max_connections_per_ip": 3})
    port = st.http_port
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", port))
        assert _closed_within(extra, 3)          # the 4th is closed at once
        extra.close()
        held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")   # the 3 still serve
        held[0].settimeout(5)
        assert held[0].recv(65536).startswith(b"HTTP/1.1 200")
        held.pop(0).close()
        time.sleep(0.2)
        again = raw_http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert again.startswith(b"HTTP/1.1 200")  # a slot was freed
    finally:
        for s in held:
            s.close()
    from hlrsmpp import metrics
    assert metrics.STATS.connections_rejected["http", "max_connections_per_ip"] >= 1


FD_CONFIG = """
storage: {path: ./data}
log: {level: info, format: json}
smpp: {fd_reserve: 60}
http: {max_connections_per_ip: 10000, header_timeout: 120, idle_timeout: 120}
accounts:
  - {system_id: demo, password: demo}
  - {system_id: late, password: late}
"""


@pytest.mark.e2e
@pytest.mark.slow
def test_descriptors_are_kept_for_smpp_when_http_floods(tmp_path):
    """With the process's descriptors nearly used up by HTTP connections, HTTP is refused
    (and that is logged once, and counted) while a bound SMPP session still works and a
    new bind still succeeds. The soft RLIMIT_NOFILE is raised to the hard one first."""
    from esme import SmpplibEsme
    cfg = tmp_path / "hlrsmpp.yaml"
    cfg.write_text(FD_CONFIG)
    # The soft limit is raised to the hard one at start: 200 descriptors, not 120.
    proc = ServerProcess(cfg, free_port(), free_port(), nofile=(120, 200)).start()
    flood: list[socket.socket] = []
    try:
        wait_http(proc.http_port)
        bound = SmpplibEsme(proc.smpp_port)
        bound.bind("transceiver")
        # The server opens its own files in its first seconds (the notifications outbox,
        # the retention's and the readers' connections): flood a settled process, whose
        # free descriptors the reserve is then measured against, not one still opening.
        time.sleep(2.0)
        for _ in range(220):                     # more than the process has descriptors
            try:
                flood.append(socket.create_connection(("127.0.0.1", proc.http_port), timeout=2))
            except OSError:
                break
        time.sleep(1.0)
        # The bound session still looks up and gets its receipt...
        seq = bound.submit("447400123456")
        bound.pump(lambda: seq in bound.resps and bound.receipts)
        assert bound.resps[seq].status == 0
        # ... and a new ESME still binds...
        late = SmpplibEsme(proc.smpp_port)
        late.bind("transmitter", system_id="late", password="late")
        late.close()
        # ... while HTTP was admitted up to the reserve only, and is refused now.
        alive = [s for s in flood if not _is_closed(s)]
        assert 60 < len(alive) < 200 - 30, len(alive)
        assert _closed_within(socket.create_connection(("127.0.0.1", proc.http_port)), 3)
        bound.close()
        for s in flood:
            s.close()
        flood.clear()
        time.sleep(1.5)
        metrics_text = raw_http(proc.http_port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b'hlrsmpp_connections_rejected_total{listener="http",reason="descriptors"}' in metrics_text
    finally:
        for s in flood:
            s.close()
        proc.terminate()
    refused = [json.loads(line) for line in proc.output().splitlines()
               if line.startswith("{") and "connections_refused" in line]
    assert len(refused) == 1 and refused[0]["reason"] == "descriptors", refused   # once per burst
    assert "Traceback" not in proc.output()
