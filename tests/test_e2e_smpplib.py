"""End to end with smpplib (blocking client) against a real server on a free port."""
from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
import smpplib.exceptions

from esme import RECEIPT_RE, SmpplibEsme

NUMBER = "447912345678"  # a UK mobile number


def test_trx_bind_lookup_receipt(server):
    esme = SmpplibEsme(server.smpp_port)
    resp = esme.bind("transceiver")
    assert resp.status == 0
    seq = esme.submit(NUMBER)
    esme.pump(lambda: seq in esme.resps and esme.receipts)
    resp = esme.resps[seq]
    assert resp.status == 0
    message_id = resp.message_id.decode()
    assert message_id.isdigit() and len(message_id) <= 64
    dlr = esme.receipts[0]
    text = dlr.short_message.decode("ascii")
    m = RECEIPT_RE.match(text)
    assert m, text
    assert m["id"] == message_id
    assert m["cc"] == "44"
    assert dlr.receipted_message_id.decode() == message_id
    assert dlr.source_addr.decode() == "HLR" and dlr.source_addr_ton == 0 and dlr.source_addr_npi == 0
    assert dlr.destination_addr.decode() == NUMBER and dlr.dest_addr_ton == 0
    assert dlr.esm_class == 0x04
    assert dlr.message_state == (2 if m["stat"] == "DELIVRD" else 5)
    esme.close()


def test_receipt_after_resp_on_one_connection(server):
    """Many lookups pipelined: every resp precedes its receipt, ids match one to one."""
    esme = SmpplibEsme(server.smpp_port)
    esme.bind("transceiver")
    order: list[tuple[str, str]] = []

    def on_resp(pdu):
        esme.resps[pdu.sequence] = pdu
        order.append(("resp", pdu.message_id.decode()))

    def on_receipt(pdu):  # returning None answers deliver_sm_resp ESME_ROK
        esme.receipts.append(pdu)
        order.append(("dlr", pdu.receipted_message_id.decode()))

    esme.client.set_message_sent_handler(on_resp)
    esme.client.set_message_received_handler(on_receipt)
    seqs = [esme.submit(f"4479{i:08d}") for i in range(200)]
    esme.pump(lambda: len(esme.receipts) >= 200 and all(s in esme.resps for s in seqs))
    seen_resp = set()
    for kind, mid in order:
        if kind == "resp":
            seen_resp.add(mid)
        else:
            assert mid in seen_resp, "receipt before its submit_sm_resp"
    ids = {esme.resps[s].message_id.decode() for s in seqs}
    assert len(ids) == 200
    assert {p.receipted_message_id.decode() for p in esme.receipts} == ids
    esme.close()


def test_session_rule_five_tx_one_rx(server):
    rx = SmpplibEsme(server.smpp_port)
    rx.bind("receiver")
    txs = [SmpplibEsme(server.smpp_port) for _ in range(5)]
    for tx in txs:
        assert tx.bind("transmitter").status == 0
    for mode in ("receiver", "transceiver"):
        other = SmpplibEsme(server.smpp_port)
        with pytest.raises(smpplib.exceptions.PDUError) as err:
            other.bind(mode)
        assert err.value.args[1] == 0x0D
        other.client.disconnect()
    sent = {}
    for i, tx in enumerate(txs):
        seq = tx.submit(f"44791234{i:04d}")
        tx.pump(lambda: seq in tx.resps)
        assert tx.resps[seq].status == 0
        sent[tx.resps[seq].message_id.decode()] = f"44791234{i:04d}"
    rx.pump(lambda: len(rx.receipts) >= 5)
    got = {p.receipted_message_id.decode(): p.destination_addr.decode() for p in rx.receipts}
    assert got == sent
    for tx in txs:
        tx.close()
    rx.close()


def test_receiver_can_rebind_after_unbind(server):
    rx = SmpplibEsme(server.smpp_port)
    rx.bind("receiver")
    rx.close()
    again = SmpplibEsme(server.smpp_port)
    assert again.bind("transceiver").status == 0
    again.close()


@pytest.mark.parametrize("kwargs,status", [
    ({"system_id": "nobody"}, 0x0F),
    ({"password": "wrong"}, 0x0E),
    ({"system_type": "SMS"}, 0x53),
])
def test_bind_refusals(server, kwargs, status):
    esme = SmpplibEsme(server.smpp_port)
    with pytest.raises(smpplib.exceptions.PDUError) as err:
        esme.bind("transceiver", **kwargs)
    assert err.value.args[1] == status
    esme.client.disconnect()


def test_submit_statuses(server):
    esme = SmpplibEsme(server.smpp_port)
    esme.bind("transceiver")
    bad = esme.submit("12")  # not a possible E.164 number
    national = esme.submit("7912345678", ton=2)  # TON national: not international format
    letters = esme.submit("44791234567a")
    esme.pump(lambda: all(s in esme.resps for s in (bad, national, letters)))
    assert [esme.resps[s].status for s in (bad, national, letters)] == [0x0B] * 3
    assert esme.receipts == []
    esme.close()


def test_submit_on_receiver_is_invbndsts(server):
    rx = SmpplibEsme(server.smpp_port)
    rx.bind("receiver")
    seq = rx.submit(NUMBER, raw=True)
    rx.pump(lambda: seq in rx.resps)
    assert rx.resps[seq].status == 0x04
    rx.close()


def test_garbage_from_50_connections_does_not_stop_service(server):
    stop = threading.Event()

    def hostile(i: int) -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", server.smpp_port), 2) as s:
                    s.sendall(bytes((i * 37 + k) & 0xFF for k in range(64 + i)))
                    s.sendall(b"\x00\x00\x00\x10\x12\x34\x56\x78\x00\x00\x00\x00\x00\x00\x00\x01")
                    s.sendall(b"\xff\xff\xff\xff" * 8)
                    s.settimeout(0.5)
                    try:
                        s.recv(4096)
                    except OSError:
                        pass
            except OSError:
                time.sleep(0.01)

    threads = [threading.Thread(target=hostile, args=(i,), daemon=True) for i in range(50)]
    for t in threads:
        t.start()
    try:
        esme = SmpplibEsme(server.smpp_port)
        esme.bind("transceiver")
        seqs = [esme.submit(f"4479{i:08d}") for i in range(100)]
        esme.pump(lambda: len(esme.receipts) >= 100 and all(s in esme.resps for s in seqs), timeout=30)
        assert all(esme.resps[s].status == 0 for s in seqs)
        esme.close()
    finally:
        stop.set()
        for t in threads:
            t.join(5)


# ------------------------------------------------- an SMPP 3.3 ESME, byte by byte
# No client library here speaks SMPP 3.3 past the bind, and what matters is the octets on
# the wire: this ESME is written out from the 3.3 PDU layouts.

def _cstr(s: str) -> bytes:
    return s.encode("ascii") + b"\0"


def _send(sock: socket.socket, command_id: int, sequence: int, body: bytes = b"") -> None:
    sock.sendall(struct.pack(">IIII", 16 + len(body), command_id, 0, sequence) + body)


def _read(sock: socket.socket, n: int, timeout: float = 10.0) -> dict[int, tuple[int, int, bytes]]:
    """The next ``n`` PDUs: sequence -> (command_id, status, body)."""
    out, buf = {}, b""
    sock.settimeout(timeout)
    while len(out) < n:
        while len(buf) >= 16 and len(buf) >= struct.unpack_from(">I", buf)[0]:
            length, command_id, status, sequence = struct.unpack_from(">IIII", buf)
            out[sequence] = (command_id, status, buf[16:length])
            buf = buf[length:]
        if len(out) < n:
            data = sock.recv(65536)
            assert data, f"closed after {out}"
            buf += data
    assert buf == b""
    return out


_MESSAGE_TAIL = bytes((0, 0, 0)) + b"\0\0" + bytes((1, 0, 0, 0, 0))  # esm_class .. sm_length 0


@pytest.mark.parametrize("version", [0x33, 0x34], ids=["0x33", "0x34"])
def test_what_an_smpp33_transmitter_is_sent(server, version):
    """Every PDU sent to an SMPP 3.3 ESME ends after its mandatory parameters (3.3 has no
    TLVs), and data_sm, which 3.3 does not have, is an unknown command: generic_nack
    ESME_RINVCMDID. A 3.4 ESME's data_sm is a lookup like submit_sm."""
    with socket.create_connection(("127.0.0.1", server.smpp_port), 5) as sock:
        _send(sock, 0x02, 1, _cstr("demo") + _cstr("demo") + _cstr("HLR") + bytes((version, 0, 0)) + b"\0")
        [(command_id, status, body)] = _read(sock, 1).values()
        assert (command_id, status) == (0x80000002, 0)
        assert (body == b"hlrsmpp\0") == (version == 0x33)  # 3.4: sc_interface_version follows
        _send(sock, 0x04, 2, b"\0" + b"\0\0" + _cstr("TEST") + b"\1\1" + _cstr(NUMBER) + _MESSAGE_TAIL)
        [(command_id, status, body)] = _read(sock, 1).values()
        assert (command_id, status) == (0x80000004, 0) and body.endswith(b"\0") and body.count(b"\0") == 1
        message_id = body[:-1].decode()
        _send(sock, 0x03, 3, _cstr(message_id) + b"\0\0" + _cstr("TEST"))          # query_sm
        _send(sock, 0x21, 4, b"\0" + b"\0\0" + _cstr("TEST") + b"\2"                 # submit_multi
              + b"\1\1\1" + _cstr("447912345679") + b"\1\1\1" + _cstr("12") + _MESSAGE_TAIL)
        _send(sock, 0x103, 5, b"\0" + b"\0\0" + _cstr("TEST") + b"\1\1" + _cstr(NUMBER) + bytes(3))  # data_sm
        _send(sock, 0x15, 6)                                                           # enquire_link
        got = _read(sock, 4)
        # query_sm_resp: message_id, final_date, message_state, error_code; nothing after.
        command_id, status, body = got[3]
        mid, final, rest = body.split(b"\0", 2)
        assert (command_id, status, mid.decode(), len(rest)) == (0x80000003, 0, message_id, 2)
        assert rest[0] in (1, 2) and len(final) in (0, 16)  # ENROUTE, or DELIVERED at YYMMDDhhmmss000+
        # submit_multi_resp: message_id, no_unsuccess, then each (ton, npi, addr, status); nothing after.
        command_id, status, body = got[4]
        mid, rest = body.split(b"\0", 1)
        assert (command_id, status, rest[0]) == (0x80000021, 0, 1) and mid.isdigit()
        assert rest[1:] == b"\1\1" + _cstr("12") + struct.pack(">I", 0x0B)
        assert got[6] == (0x80000015, 0, b"")  # enquire_link_resp
        if version == 0x33:
            assert got[5] == (0x80000000, 0x03, b"")  # generic_nack ESME_RINVCMDID
        else:
            command_id, status, body = got[5]
            assert (command_id, status) == (0x80000103, 0) and body[:-1].isdigit() and body.endswith(b"\0")
        _send(sock, 0x06, 7)
        assert _read(sock, 1)[7] == (0x80000006, 0, b"")
