"""Flow between sessions and accounts: a receiver's window grows with the transmitters
feeding it, a frozen receiver gives its slot back, one account's flood does not queue
another account's answers behind it."""
from __future__ import annotations

import gc
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

from esme import SmpplibEsme
from hlrsmpp.smpp.codec import Command, Pdu, encode

A = {"system_id": "a", "password": "p"}
#: A receiver in a process of its own: smpplib, answering every deliver_sm and enquire_link.
RECEIVER = """
import sys, smpplib.client
client = smpplib.client.Client("127.0.0.1", int(sys.argv[1]), timeout=30)
client.connect()
client.bind_receiver(system_id="a", password="p", system_type="HLR")
print("bound", flush=True)
client.listen()
"""
B = {"system_id": "b", "password": "p"}


def _bind(port: int, command: Command, system_id: str) -> tuple[socket.socket, bytearray]:
    """A raw ESME socket bound as ``command``, and what it read past the bind_resp;
    it reads only what the test asks for."""
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.sendall(encode(Pdu(command, 1, 0, {"system_id": system_id, "password": "p", "system_type": "HLR",
                                          "interface_version": 0x34})))
    buf = bytearray()
    (resp,) = _read_pdus(s, 1, buf=buf)
    assert resp[1] == command | 0x80000000 and resp[2] == 0, resp
    return s, buf


def _bind_status(port: int, command: Command, system_id: str) -> int:
    """The bind_resp status a fresh connection gets (it is closed after)."""
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(encode(Pdu(command, 1, 0, {"system_id": system_id, "password": "p",
                                              "system_type": "HLR", "interface_version": 0x34})))
        return _read_pdus(s, 1)[0][2]


def _read_pdus(s: socket.socket, n: int, timeout: float = 10.0, buf: bytearray | None = None) -> list:
    """The next ``n`` PDUs as (length, command_id, status, sequence, body)."""
    buf = bytearray() if buf is None else buf
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        while len(buf) >= 16 and len(buf) >= struct.unpack_from(">I", buf)[0]:
            length, cmd, status, seq = struct.unpack_from(">IIII", buf)
            out.append((length, cmd, status, seq, bytes(buf[16:length])))
            del buf[:length]
            if len(out) == n:
                return out
        left = deadline - time.monotonic()
        assert left > 0, f"{len(out)} of {n} PDUs arrived"
        s.settimeout(left)
        chunk = s.recv(1 << 16)
        assert chunk, f"closed after {len(out)} of {n} PDUs"
        buf += chunk
    return out


def test_a_receiver_gets_a_window_per_transmitter_feeding_it(make_server):
    """Four transmitters and one receiver (what most gateways open): the receiver may have
    window x (1 + 4) deliver_sm outstanding, as four transceivers would have in all."""
    srv = make_server([A], smpp={"window": 8})
    rx, buf = _bind(srv.smpp_port, Command.BIND_RECEIVER, "a")
    txs = [SmpplibEsme(srv.smpp_port) for _ in range(4)]
    for tx in txs:
        tx.bind("transmitter", system_id="a", password="p")
    for k, tx in enumerate(txs):
        seqs = [tx.submit(f"44791{k}{i:06d}") for i in range(20)]
        tx.pump(lambda: all(s in tx.resps for s in seqs))
    # The receiver answers none of them, yet gets more than one window's worth.
    receipts = _read_pdus(rx, 8 * 5, buf=buf)
    assert {p[1] for p in receipts} == {Command.DELIVER_SM}
    assert srv.call(lambda: len(srv.server.outboxes["a"].inflight)) == 40
    for tx in txs:
        tx.close()
    rx.close()


def _frozen_receiver(port: int) -> subprocess.Popen:
    """A real receiver process, bound, then stopped (SIGSTOP): its TCP connection stays up."""
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)], stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"bound\n"
    return proc


def _freeze(proc: subprocess.Popen) -> float:
    os.kill(proc.pid, signal.SIGSTOP)
    return time.monotonic()


def _rebind(proc: subprocess.Popen, port: int, stopped: float, limit: float) -> float:
    """Bind a new receiver of the frozen ``proc``'s account until one is accepted; the
    seconds since it froze."""
    while _bind_status(port, Command.BIND_RECEIVER, "a") != 0:
        assert time.monotonic() - stopped < limit, "the frozen receiver still holds the slot"
        assert proc.poll() is None
        time.sleep(0.1)
    took = time.monotonic() - stopped
    print(f"a new receiver bound {took:.2f} s after the old one froze")
    return took


def _thaw(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGCONT)
    proc.kill()
    proc.wait(10)


def test_a_frozen_idle_receiver_gives_its_slot_back(make_server):
    """enquire_link unanswered 3 times in a row (every 0.5 s here): the frozen receiver is
    closed after about 0.5 x (1 + 3) s, long before the inactivity timeout (120 s), and
    the account binds a new receiver."""
    srv = make_server([A], smpp={"enquire_link_interval": 0.5, "enquire_link_unanswered": 3,
                                 "response_timeout": 1.0, "tarpit": 0})
    proc = _frozen_receiver(srv.smpp_port)
    try:
        # Alive and idle, it answers the probes and keeps its slot past the bound.
        time.sleep(3.0)
        assert _bind_status(srv.smpp_port, Command.BIND_RECEIVER, "a") == 0x0D  # ESME_RBINDFAIL
        _rebind(proc, srv.smpp_port, _freeze(proc), limit=30)
    finally:
        _thaw(proc)


def test_a_receiver_frozen_with_receipts_in_flight_gives_its_slot_back(make_server):
    """deliver_sm unanswered for response_timeout, nothing else received: one probe at
    once; unanswered for response_timeout too, the receiver is closed and its receipts go
    to the next one (the idle probes are 60 s apart: they play no part here)."""
    srv = make_server([A], smpp={"enquire_link_interval": 60.0, "response_timeout": 1.0, "tarpit": 0})
    proc = _frozen_receiver(srv.smpp_port)
    tx = SmpplibEsme(srv.smpp_port)
    try:
        tx.bind("transmitter", system_id="a", password="p")
        stopped = _freeze(proc)
        seqs = [tx.submit(f"4479100{i:05d}") for i in range(5)]
        tx.pump(lambda: all(s in tx.resps for s in seqs))
        _rebind(proc, srv.smpp_port, stopped, limit=30)
    finally:
        _thaw(proc)
        tx.close()
    rx, buf = _bind(srv.smpp_port, Command.BIND_RECEIVER, "a")
    got = _read_pdus(rx, 5, buf=buf)
    assert [p[1] for p in got] == [Command.DELIVER_SM] * 5   # none lost
    rx.close()


def _submit_sm(sequence: int, number: str) -> bytes:
    return encode(Pdu(Command.SUBMIT_SM, sequence, 0, {"dest_addr_ton": 1, "dest_addr_npi": 1,
                                                      "destination_addr": number}))


def test_a_flooding_account_does_not_hold_up_another(make_server):
    """Account a writes 50,000 submit_sm in one go; b sends one meanwhile. The server
    decides b's as soon as it would if a were quiet: meanwhile at most a slice of a's
    input (16 KiB) per turn of its loop is decided, two here, never a whole read (256 KiB,
    some 5,800 submit_sm) that b would wait for. Counted per turn of the server's loop,
    by a watcher that runs once each turn: an order, not a time."""
    srv = make_server([A, B])
    flood, _ = _bind(srv.smpp_port, Command.BIND_TRANSMITTER, "a")
    victim, vbuf = _bind(srv.smpp_port, Command.BIND_TRANSMITTER, "b")
    n = 50000
    burst = b"".join(_submit_sm(i + 2, f"4479{i:08d}") for i in range(n))
    flooding, victims = srv.server.outboxes["a"], srv.server.outboxes["b"]
    loop = srv.server.loop
    turns: list[int] = []   # a's lookups decided, at each turn of the loop

    def watch() -> None:
        turns.append(flooding.size)
        if not victims.size:
            loop.call_soon(watch)

    def send_victim() -> None:
        victim.sendall(_submit_sm(2, "447912345678"))
        watch()

    sender = threading.Thread(target=flood.sendall, args=(burst,))
    sender.start()
    deadline = time.monotonic() + 30
    while not srv.call(lambda: flooding.size):  # the server is deciding the flood
        assert time.monotonic() < deadline
    srv.call(send_victim)
    (resp,) = _read_pdus(victim, 1, buf=vbuf)
    assert resp[1] == Command.SUBMIT_SM_RESP and resp[2] == 0
    sender.join(30)
    assert len(_read_pdus(flood, n, timeout=60)) == n   # the flood is answered too
    per_slice = 16384 // len(_submit_sm(2, "447900000000")) + 1
    print(f"b's submit_sm decided after {turns[-1] - turns[0]} of a's, {len(turns)} turns after it was sent")
    assert turns[-1] - turns[0] <= 3 * per_slice, (turns[0], turns[-1], len(turns))
    flood.close()
    victim.close()


def test_full_collections_skip_what_start_up_built(server):
    """The numbering tables (and all else start-up built) are frozen out of the garbage
    collector's full collections: each would walk them, for 100 ms and more, with every
    session waiting, every few seconds while a flood churns through lookups."""
    tables = server.server.resolver._countries
    assert gc.is_tracked(tables)
    assert not any(o is tables for o in gc.get_objects())
