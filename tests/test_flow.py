"""Flow between sessions and accounts: a receiver's window grows with the transmitters
feeding it, a frozen receiver gives its slot back, one account's flood does not queue
another account's answers behind it."""
from __future__ import annotations

import socket
import struct
import time

from esme import SmpplibEsme
from hlrsmpp.smpp.codec import Command, Pdu, encode

A = {"system_id": "a", "password": "p"}
B = {"system_id": "b", "password": "p"}


def _bind(port: int, command: Command, system_id: str) -> socket.socket:
    """A raw ESME socket bound as ``command``; it reads only what the test asks for."""
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.sendall(encode(Pdu(command, 1, 0, {"system_id": system_id, "password": "p", "system_type": "HLR",
                                          "interface_version": 0x34})))
    (resp,) = _read_pdus(s, 1)
    assert resp[1] == command | 0x80000000 and resp[2] == 0, resp
    return s


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
    rx = _bind(srv.smpp_port, Command.BIND_RECEIVER, "a")
    txs = [SmpplibEsme(srv.smpp_port) for _ in range(4)]
    for k, tx in enumerate(txs):
        tx.bind("transmitter", system_id="a", password="p")
    for k, tx in enumerate(txs):
        seqs = [tx.submit(f"44791{k}{i:06d}") for i in range(20)]
        tx.pump(lambda: all(s in tx.resps for s in seqs))
    # The receiver answers none of them, yet gets more than one window's worth.
    receipts = _read_pdus(rx, 8 * 5)
    assert {p[1] for p in receipts} == {Command.DELIVER_SM}
    assert srv.call(lambda: len(srv.server.outboxes["a"].inflight)) == 40
    for tx in txs:
        tx.close()
    rx.close()
