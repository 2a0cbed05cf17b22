"""The rest of the ESME test bench: outbind, receipt profiles, PDU trace."""
from __future__ import annotations

import re
import socket
import struct
import time

import smpplib.smpp

from esme import RECEIPT_RE, SmpplibEsme


class _Seq:
    n = 100

    def next_sequence(self):
        self.n += 1
        return self.n


def _read_raw(sock: socket.socket) -> bytes:
    head = b""
    while len(head) < 4:
        head += sock.recv(4 - len(head))
    length = struct.unpack(">I", head)[0]
    body = b""
    while len(body) < length - 4:
        body += sock.recv(length - 4 - len(body))
    return head + body


def _read_pdu(sock: socket.socket):
    return smpplib.smpp.parse_pdu(_read_raw(sock), client=_Seq(), allow_unknown_opt_params=True)


def test_outbind_when_receipts_wait(make_server):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    esme_port = listener.getsockname()[1]
    srv = make_server([{"system_id": "a", "password": "pw",
                        "outbind": {"host": "127.0.0.1", "port": esme_port}}])
    tx = SmpplibEsme(srv.smpp_port)
    tx.bind("transmitter", system_id="a", password="pw")
    seq = tx.submit("447912345678")
    tx.pump(lambda: seq in tx.resps)
    mid = tx.resps[seq].message_id
    listener.settimeout(10)
    conn, _ = listener.accept()  # the server connects out to us
    conn.settimeout(10)
    from hlrsmpp.smpp.codec import Command, decode
    outbind = decode(_read_raw(conn))  # smpplib has no outbind: decode it per SMPP 3.4 §4.1.7
    assert outbind.command == Command.OUTBIND
    assert outbind.params["password"] == "pw" and outbind.params["system_id"] == "hlrsmpp"
    bind = smpplib.smpp.make_pdu("bind_receiver", client=_Seq(), system_id="a", password="pw",
                                 system_type="HLR")
    conn.sendall(bind.generate())
    resp = _read_pdu(conn)
    assert resp.command == "bind_receiver_resp" and resp.status == 0
    dlr = _read_pdu(conn)
    assert dlr.command == "deliver_sm" and dlr.receipted_message_id == mid
    ack = smpplib.smpp.make_pdu("deliver_sm_resp", client=_Seq())
    ack.sequence = dlr.sequence
    conn.sendall(ack.generate())
    conn.close()
    listener.close()
    tx.close()


def _one_receipt(srv, account):
    esme = SmpplibEsme(srv.smpp_port)
    esme.bind(system_id=account, password="p")
    seq = esme.submit("447912345678")
    esme.pump(lambda: seq in esme.resps and esme.receipts)
    dlr = esme.receipts[0]
    esme.close()
    return esme.resps[seq], dlr


def test_receipt_profiles(make_server):
    srv = make_server([
        {"system_id": "std", "password": "p"},
        {"system_id": "ext", "password": "p", "receipt": "extended"},
        {"system_id": "tlv", "password": "p", "receipt": {"profile": "tlv", "mcc_tag": 0x1501, "mnc_tag": 0x1502}},
    ])
    _, std = _one_receipt(srv, "std")
    assert RECEIPT_RE.match(std.short_message.decode())
    _, ext = _one_receipt(srv, "ext")
    text = ext.short_message.decode()
    m = re.search(r" imsi:(\d*) msc:(\d*) mccmnc:(\d{5,6}) text:dlr$", text)
    assert m, text
    nnc = re.search(r" nnc:(\d+) ", text).group(1)
    p_nnc = re.search(r" p_nnc:(\d*) ", text).group(1)
    assert m.group(3) == (p_nnc or nnc)
    if m.group(1):
        assert m.group(1).startswith(m.group(3)) and len(m.group(1)) == 15
    _, tlv = _one_receipt(srv, "tlv")
    assert RECEIPT_RE.match(tlv.short_message.decode())
    # smpplib keeps unknown TLVs raw when allow_unknown_opt_params is set: decode ours by hand.
    text = tlv.short_message.decode()
    serving = re.search(r" p_nnc:(\d*) ", text).group(1) or re.search(r" nnc:(\d+) ", text).group(1)
    raw = _raw_receipt_tlvs(srv, "tlv")
    assert raw[0x1501] == serving[:3].encode() + b"\0"
    assert raw[0x1502] == serving[3:].encode() + b"\0"


def _raw_receipt_tlvs(srv, account) -> dict[int, bytes]:
    """Bind with a raw socket to see the deliver_sm's TLVs exactly as sent."""
    from hlrsmpp.smpp.codec import Command, Pdu, decode, encode
    s = socket.create_connection(("127.0.0.1", srv.smpp_port), 5)
    s.sendall(encode(Pdu(Command.BIND_TRANSCEIVER, 1, 0, {"system_id": account, "password": "p",
                                                          "system_type": "HLR", "interface_version": 0x34})))
    s.sendall(encode(Pdu(Command.SUBMIT_SM, 2, 0, {"dest_addr_ton": 1, "dest_addr_npi": 1,
                                                   "destination_addr": "447912345678"})))
    buf = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        buf += s.recv(65536)
        while len(buf) >= 4 and len(buf) >= struct.unpack(">I", buf[:4])[0]:
            n = struct.unpack(">I", buf[:4])[0]
            pdu, buf = decode(buf[:n]), buf[n:]
            if pdu.command == Command.DELIVER_SM:
                s.sendall(encode(Pdu(Command.DELIVER_SM_RESP, pdu.sequence, 0, {})))
                s.close()
                return pdu.tlvs
    raise AssertionError("no receipt")


def test_pdu_trace_of_bind_lookup_receipt(make_server, tmp_path):
    trace_file = tmp_path / "trace.log"
    srv = make_server([{"system_id": "t", "password": "secretpw", "trace": str(trace_file)},
                       {"system_id": "quiet", "password": "p"}])
    esme = SmpplibEsme(srv.smpp_port)
    esme.bind(system_id="t", password="secretpw")
    seq = esme.submit("447912345678")
    esme.pump(lambda: seq in esme.resps and esme.receipts)
    esme.close()
    _one_receipt(srv, "quiet")  # an untraced account leaves no lines
    time.sleep(0.2)
    text = trace_file.read_text()
    for needle in ("< bind_transceiver", "> bind_transceiver_resp", "< submit_sm", "> submit_sm_resp",
                   "> deliver_sm", "< deliver_sm_resp", "< unbind", "> unbind_resp"):
        assert needle in text, needle
    assert "secretpw" not in text and "quiet" not in text
    assert esme.resps[seq].message_id.decode() in text
    assert srv.server.trace_lines("t")  # also readable over the admin API
    assert srv.server.trace_lines("quiet") == []
