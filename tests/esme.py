"""Test-side ESMEs built on the real client libraries, and the receipt form."""
from __future__ import annotations

import re
import socket
import time

import smpplib.client
import smpplib.consts
import smpplib.smpp

#: The receipt text, byte for byte in form (written here independently of the server's code).
RECEIPT_RE = re.compile(
    r"^id:(?P<id>\d{1,64}) sub:001 dlvrd:001 submit date:(?P<submit>\d{10}) "
    r"done date:(?P<done>\d{10}) stat:(?P<stat>DELIVRD|UNDELIV) err:(?P<err>\d{3}) "
    r"cc:(?P<cc>\d{1,3}) nnc:(?P<nnc>\d{5,6}|) isPorted:(?P<ported>true|false) "
    r"p_nnc:(?P<p_nnc>\d{5,6}|) isRoaming:(?P<roaming>true|false) "
    r"r_cc:(?P<r_cc>\d{1,3}|) r_nnc:(?P<r_nnc>\d{5,6}|) text:dlr$")


class SmpplibEsme:
    """A blocking smpplib client that records what it gets."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5, ssl_context=None,
                 preamble: bytes = b"", source: str | None = None):
        """``ssl_context``: SMPP over TLS; ``preamble``: bytes sent first (a PROXY header);
        ``source``: the local address to connect from (another loopback address); ``host``
        may be an IPv6 address."""
        self.client = smpplib.client.Client(host, port, timeout=timeout, allow_unknown_opt_params=True,
                                            ssl_context=ssl_context)
        if source is not None or ":" in host:   # smpplib itself makes IPv4 sockets only
            raw = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            raw.settimeout(timeout)
            if source is not None:
                raw.bind((source, 0))
            self.client._socket = raw if ssl_context is None else ssl_context.wrap_socket(raw)
        self.resps: dict[int, object] = {}     # sequence -> submit_sm_resp pdu
        self.receipts: list = []               # deliver_sm pdus
        self.client.set_message_sent_handler(lambda pdu: self.resps.__setitem__(pdu.sequence, pdu))
        self.client.set_message_received_handler(lambda pdu: self.receipts.append(pdu))
        # Keep error submit_sm_resp as answers instead of exceptions.
        self.client.set_error_pdu_handler(lambda pdu: self.resps.__setitem__(pdu.sequence, pdu))
        if preamble and ssl_context is not None:   # a PROXY header, then TLS (as HAProxy passes it)
            raw = socket.create_connection((host, port), timeout)
            raw.sendall(preamble)
            self.client._socket = ssl_context.wrap_socket(raw)
            self.client.state = smpplib.consts.SMPP_CLIENT_STATE_OPEN
            return
        self.client.connect()
        if preamble:
            self.client._socket.sendall(preamble)

    def bind(self, mode: str = "transceiver", system_id="demo", password="demo", system_type="HLR"):
        return getattr(self.client, f"bind_{mode}")(system_id=system_id, password=password,
                                                    system_type=system_type)

    def submit(self, number: str, ton: int = 1, npi: int = 1, raw: bool = False) -> int:
        """submit_sm; ``raw`` skips smpplib's own bind-state check (to test the server's)."""
        fields = dict(source_addr_ton=0, source_addr_npi=0, source_addr="TEST", dest_addr_ton=ton,
                      dest_addr_npi=npi, destination_addr=number, short_message=b"")
        if raw:
            pdu = smpplib.smpp.make_pdu("submit_sm", client=self.client, **fields)
            self.client._socket.sendall(pdu.generate())
            return pdu.sequence
        return self.client.send_message(**fields).sequence

    def pump(self, until, timeout: float = 10.0) -> None:
        """Read PDUs until ``until()`` is true (or fail after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for PDUs")
            try:
                self.client.read_once(auto_send_enquire_link=False)
            except socket.timeout:
                continue

    def close(self) -> None:
        try:
            self.client.unbind()
        except Exception:
            pass
        self.client.disconnect()
