"""A misbehaving client never hurts another client: limits, timers,
isolation of a stuck receiver, and a soak mixing hostile and normal clients."""
from __future__ import annotations

import asyncio
import re
import socket
import struct
import threading
import time
import urllib.request

import pytest

from conftest import ServerProcess, free_port
from esme import RECEIPT_RE, SmpplibEsme
from hlrsmpp import metrics
from hlrsmpp.bench.misbehaving import run_misbehaving
from hlrsmpp.smpp.codec import Command, Pdu, encode

A = {"system_id": "a", "password": "p"}
B = {"system_id": "b", "password": "p"}


def _connect(port):
    return socket.create_connection(("127.0.0.1", port), 5)


def _closed_by_server(sock: socket.socket, timeout: float = 5.0) -> bool:
    sock.settimeout(timeout)
    try:
        while True:
            if sock.recv(65536) == b"":
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_connections_per_ip_are_capped(make_server):
    srv = make_server([A], smpp={"max_connections_per_ip": 3})
    held = [_connect(srv.smpp_port) for _ in range(3)]
    time.sleep(0.2)
    extra = _connect(srv.smpp_port)
    assert _closed_by_server(extra, 3)
    for s in held:
        s.close()
    time.sleep(0.3)
    ok = SmpplibEsme(srv.smpp_port)  # capacity comes back when they leave
    ok.bind(system_id="a", password="p")
    ok.close()


def test_unbound_connection_is_cut_by_session_init_timer(make_server):
    srv = make_server([A], smpp={"session_init_timeout": 1.0})
    slow = _connect(srv.smpp_port)
    slow.sendall(b"\x00")  # one byte of a header, then nothing
    assert _closed_by_server(slow, 6)


def test_huge_command_length_is_nacked_and_closed(make_server):
    srv = make_server([A])
    s = _connect(srv.smpp_port)
    s.sendall(struct.pack(">IIII", 0x7FFFFFFF, 4, 0, 9))
    s.settimeout(5)
    nack = s.recv(16)
    assert struct.unpack(">IIII", nack) == (16, 0x80000000, 0x02, 9)  # RINVCMDLEN
    assert _closed_by_server(s)


def _held(sock: socket.socket, hold: float) -> bytes:
    """What the server answers, asserting it answers nothing for ``hold`` seconds first."""
    sock.settimeout(hold)
    with pytest.raises(socket.timeout):
        sock.recv(65536)
    sock.settimeout(5)
    return sock.recv(65536)


def _answered_at_once(sock: socket.socket) -> bytes:
    sock.settimeout(0.5)
    return sock.recv(65536)


def _bind_pdu(password: str, sequence: int = 1) -> bytes:
    return encode(Pdu(Command.BIND_TRANSMITTER, sequence, 0, {
        "system_id": "a", "password": password, "system_type": "HLR", "interface_version": 0x34}))


def _tarpitted(srv) -> int:
    return srv.call(lambda: metrics.STATS.tarpitted)


def test_framing_error_is_answered_late_and_closed(make_server):
    """A peer that breaks framing is held smpp.tarpit seconds, unread, before its
    generic_nack and the close: one that reconnects at once cannot loop fast."""
    srv = make_server([A], smpp={"tarpit": 1.5})
    before = _tarpitted(srv)
    s = _connect(srv.smpp_port)
    s.sendall(struct.pack(">IIII", 0x7FFFFFFF, 4, 0, 9) + b"more garbage behind it")
    nack = _held(s, 1.0)
    assert struct.unpack(">IIII", nack[:16]) == (16, 0x80000000, 0x02, 9)  # RINVCMDLEN
    assert _closed_by_server(s)
    assert _tarpitted(srv) == before + 1


def test_tarpit_zero_answers_at_once(make_server):
    srv = make_server([A], smpp={"tarpit": 0})
    s = _connect(srv.smpp_port)
    s.sendall(struct.pack(">IIII", 3, 4, 0, 9))
    assert struct.unpack(">IIII", _answered_at_once(s)[:16]) == (16, 0x80000000, 0x02, 9)


def test_error_before_binding_is_answered_late_then_the_session_goes_on(make_server):
    srv = make_server([A], smpp={"tarpit": 1.0})
    s = _connect(srv.smpp_port)
    s.sendall(encode(Pdu(Command.SUBMIT_SM, 7, 0, {"destination_addr": "447912345678"})))
    resp = _held(s, 0.7)
    assert struct.unpack(">IIII", resp[:16]) == (16, 0x80000004, 0x04, 7)  # RINVBNDSTS
    s.sendall(_bind_pdu("p", 8))  # reading resumed: the connection may still bind
    bound = _answered_at_once(s)
    assert struct.unpack(">IIII", bound[:16])[1:] == (0x80000002, 0, 8)


def test_bound_session_errors_are_answered_at_once(make_server):
    srv = make_server([A], smpp={"tarpit": 5.0})
    s = _connect(srv.smpp_port)
    s.sendall(_bind_pdu("p"))
    assert struct.unpack(">IIII", _answered_at_once(s)[:16])[1:] == (0x80000002, 0, 1)
    s.sendall(struct.pack(">IIII", 16, 0x00000077, 0, 2))  # unknown command id
    assert struct.unpack(">IIII", _answered_at_once(s)[:16]) == (16, 0x80000000, 0x03, 2)  # RINVCMDID


def test_repeated_failed_binds_are_answered_late(make_server):
    """The first wrong password is answered at once (a typo); the next ones from that
    IP wait smpp.tarpit; the right password still binds at once and clears the count."""
    srv = make_server([A], smpp={"tarpit": 1.0})
    first = _connect(srv.smpp_port)
    first.sendall(_bind_pdu("wrong"))
    assert struct.unpack(">IIII", _answered_at_once(first)[:16])[1:] == (0x80000002, 0x0E, 1)
    second = _connect(srv.smpp_port)
    second.sendall(_bind_pdu("wrong"))
    assert struct.unpack(">IIII", _held(second, 0.7)[:16])[1:] == (0x80000002, 0x0E, 1)
    ok = SmpplibEsme(srv.smpp_port)
    ok.bind("transmitter", system_id="a", password="p")
    third = _connect(srv.smpp_port)
    third.sendall(_bind_pdu("wrong"))
    assert struct.unpack(">IIII", _answered_at_once(third)[:16])[1:] == (0x80000002, 0x0E, 1)
    ok.close()


def test_what_waits_behind_a_tarpitted_answer_is_answered_after_it_in_order(make_server):
    """A second wrong password on one connection is held, and so is what the ESME pipelined
    behind it (unread meanwhile); then both answers come, in order, and the connection lives."""
    srv = make_server([A], smpp={"tarpit": 1.0})
    s = _connect(srv.smpp_port)
    s.sendall(_bind_pdu("wrong", 1))
    assert struct.unpack(">IIII", _answered_at_once(s)[:16])[1:] == (0x80000002, 0x0E, 1)
    s.sendall(_bind_pdu("wrong", 2) + encode(Pdu(Command.ENQUIRE_LINK, 3)))
    data = _held(s, 0.7)
    s.settimeout(5)
    while len(data) < 16 + 16 + len("hlrsmpp") + 1:
        data += s.recv(65536)
    first = struct.unpack(">IIII", data[:16])
    assert first[1:] == (0x80000002, 0x0E, 2)
    assert struct.unpack(">IIII", data[first[0]:first[0] + 16]) == (16, 0x80000015, 0, 3)  # enquire_link_resp
    s.sendall(_bind_pdu("p", 4))  # still open, and reading again
    assert struct.unpack(">IIII", _answered_at_once(s)[:16])[1:] == (0x80000002, 0, 4)


def test_stuck_receiver_does_not_slow_another_account(make_server):
    # (A frozen receiver is closed after 2 x response_timeout: not within this test.)
    srv = make_server([A, B], smpp={"window": 8, "response_timeout": 60.0})
    # a's receiver binds and then never reads nor answers a deliver_sm.
    stuck = _connect(srv.smpp_port)
    stuck.sendall(encode(Pdu(Command.BIND_RECEIVER, 1, 0, {"system_id": "a", "password": "p",
                                                           "system_type": "HLR", "interface_version": 0x34})))
    a_tx = SmpplibEsme(srv.smpp_port)
    a_tx.bind("transmitter", system_id="a", password="p")
    a_seqs = [a_tx.submit(f"4479{i:08d}") for i in range(300)]
    b = SmpplibEsme(srv.smpp_port)
    b.bind(system_id="b", password="p")
    b_seqs = [b.submit(f"4479{i:08d}") for i in range(500)]
    b.pump(lambda: all(s in b.resps for s in b_seqs) and len(b.receipts) == 500, timeout=30)
    assert all(b.resps[s].status == 0 for s in b_seqs)
    a_tx.pump(lambda: all(s in a_tx.resps for s in a_seqs))
    assert all(a_tx.resps[s].status == 0 for s in a_seqs)  # a's lookups are accepted and kept
    box = srv.server.outboxes["a"]
    # The stuck one holds only its window: 8, and 8 more for the transmitter feeding it.
    assert len(box.inflight) == 16 and box.size == 300
    stuck.close()
    a_tx.close()
    b.close()


def _run_hostile(port: int, n: int, stop_flag: threading.Event) -> None:
    async def main():
        stop = asyncio.Event()
        runner = asyncio.create_task(run_misbehaving("127.0.0.1", port, n, stop))
        while not stop_flag.is_set():
            await asyncio.sleep(0.05)
        stop.set()
        await runner
    asyncio.run(main())


@pytest.mark.timeout(180)
@pytest.mark.e2e
@pytest.mark.slow
def test_soak_hostile_and_normal_clients(tmp_path):
    """200 hostile connections (garbage, truncated PDUs, huge lengths, one byte a
    second, failing binds) against a real server process while a normal ESME
    makes 1,000 lookups: every one is answered and receipted."""
    import yaml
    cfg = {"smpp": {"host": "127.0.0.1", "session_init_timeout": 2.0, "max_connections_per_ip": 1000},
           "http": {"host": "127.0.0.1"}, "storage": {"path": str(tmp_path / "data")},
           "bans": {"after": 1000000, "window": 60, "time": 1},
           "log": {"format": "json", "level": "warning"}, "accounts": [A, B]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = ServerProcess(tmp_path / "c.yaml", free_port(), free_port()).start()
    stop = threading.Event()
    hostile = threading.Thread(target=_run_hostile, args=(proc.smpp_port, 200, stop), daemon=True)
    hostile.start()
    try:
        time.sleep(1.0)
        b = SmpplibEsme(proc.smpp_port, timeout=10)
        b.bind(system_id="b", password="p")
        seqs = []
        for batch in range(20):  # windows of 50, as a normal ESME does
            chunk = [b.submit(f"44791{batch:02d}{k:05d}") for k in range(50)]
            b.pump(lambda: all(s in b.resps for s in chunk), timeout=30)
            seqs += chunk
        b.pump(lambda: len(b.receipts) == 1000, timeout=30)
        assert all(b.resps[s].status == 0 for s in seqs)
        assert all(RECEIPT_RE.match(r.short_message.decode()) for r in b.receipts)
        b.close()
        # The hostile ones were held by the tarpit, not served at the speed they reconnect.
        scrape = urllib.request.urlopen(f"http://127.0.0.1:{proc.http_port}/metrics", timeout=10).read()
        held = re.search(rb"^hlrsmpp_tarpitted_total (\S+)$", scrape, re.M)
        assert held and float(held.group(1)) > 0
    finally:
        stop.set()
        hostile.join(20)
        code = proc.terminate()
        assert code == 0, proc.output()[-3000:]
