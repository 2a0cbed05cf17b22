"""A misbehaving client never hurts another client (issue 5): limits, timers,
isolation of a stuck receiver, and a soak mixing hostile and normal clients."""
from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
import time

import pytest

from conftest import ServerProcess, free_port
from esme import RECEIPT_RE, SmpplibEsme
from hlrsmpp.hostile import run_hostile
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


def test_stuck_receiver_does_not_slow_another_account(make_server):
    srv = make_server([A, B], smpp={"window": 8})
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
    assert len(box.inflight) == 8 and box.size == 300  # the stuck one holds only its window
    stuck.close()
    a_tx.close()
    b.close()


def _run_hostile(port: int, n: int, stop_flag: threading.Event) -> None:
    async def main():
        stop = asyncio.Event()
        runner = asyncio.create_task(run_hostile("127.0.0.1", port, n, stop))
        while not stop_flag.is_set():
            await asyncio.sleep(0.05)
        stop.set()
        await runner
    asyncio.run(main())


@pytest.mark.timeout(180)
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
    finally:
        stop.set()
        hostile.join(20)
        code = proc.terminate()
        assert code == 0, proc.output()[-3000:]
