"""SMS accounts end to end: a real server, real SQLite, real clients (smpplib, and a raw
socket ESME for the PDUs smpplib does not send). Every final state for the sandbox
numbers, the Appendix B receipt, long messages split by the client (UDH) or sent whole
(message_payload) charged per segment, bad concatenation refused, registered_delivery,
scheduled delivery, query_sm, cancel_sm, replace_sm, submit_multi, data_sm, and a
receipt owed across a restart."""
from __future__ import annotations

import re
import socket
import time

import pytest
import smpplib.consts
import smpplib.gsm

from esme import SmpplibEsme
from hlrsmpp.smpp.codec import Command, Pdu, Tag, decode, encode
from hlrsmpp.smpp.status import Status

SMS = {"system_id": "texter", "password": "pw", "service": "sms", "credit": 100}
# Appendix B, written here independently of the server's code.
APPENDIX_B = re.compile(
    r"^id:(?P<id>\d+) sub:001 dlvrd:(?P<dlvrd>00[01]) submit date:\d{10} done date:\d{10} "
    r"stat:(?P<stat>DELIVRD|UNDELIV|EXPIRED|DELETED) err:(?P<err>\d{3}) text:(?P<text>.{0,20})$", re.S)


def _esme(st) -> SmpplibEsme:
    e = SmpplibEsme(st.smpp_port)
    e.bind("transceiver", system_id="texter", password="pw", system_type="ANY")
    return e


def _send(e: SmpplibEsme, number: str, text: bytes = b"hello", **fields) -> object:
    f = dict(source_addr_ton=5, source_addr_npi=0, source_addr="ACME", dest_addr_ton=1, dest_addr_npi=1,
             destination_addr=number, short_message=text, registered_delivery=1)
    f.update(fields)
    if "message_payload" in f:
        del f["short_message"]   # smpplib sends one or the other
    pdu = e.client.send_message(**f)
    e.pump(lambda: pdu.sequence in e.resps)
    return e.resps[pdu.sequence]


def _credit(st, sid="texter") -> int:
    return st.server.book.get(sid).credit


def _receipt(e: SmpplibEsme, message_id: str, timeout: float = 10.0):
    def found():
        return [r for r in e.receipts if _fields(r)["id"] == message_id]
    e.pump(lambda: found(), timeout)
    return found()[0]


def _fields(receipt) -> dict:
    m = APPENDIX_B.match(receipt.short_message.decode("latin-1"))
    assert m, receipt.short_message
    return m.groupdict()


class RawEsme:
    """A blocking ESME on a plain socket, for the PDUs smpplib does not send
    (cancel_sm, replace_sm, submit_multi)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.seq = 0
        self.inbox: list[Pdu] = []

    def request(self, command: Command, params: dict | None = None, tlvs: dict | None = None) -> Pdu:
        self.seq += 1
        self.sock.sendall(encode(Pdu(command, self.seq, 0, params or {}, tlvs or {})))
        while True:
            pdu = self.read()
            if pdu.sequence == self.seq and pdu.command == Command(command).response:
                return pdu
            self.inbox.append(pdu)

    def read(self) -> Pdu:
        head = self._exactly(4)
        pdu = decode(head + self._exactly(int.from_bytes(head, "big") - 4))
        if pdu.command == Command.DELIVER_SM:
            self.sock.sendall(encode(Pdu(Command.DELIVER_SM_RESP, pdu.sequence, 0, {"message_id": ""})))
        return pdu

    def receipt(self, message_id: str, timeout: float = 10.0) -> Pdu:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pdu in self.inbox:
                if pdu.command == Command.DELIVER_SM and pdu.tlvs.get(Tag.RECEIPTED_MESSAGE_ID) == \
                        message_id.encode() + b"\0":
                    return pdu
            self.inbox.append(self.read())
        raise AssertionError(f"no receipt for {message_id}")

    def _exactly(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    def close(self) -> None:
        self.sock.close()


def _raw(st) -> RawEsme:
    e = RawEsme(st.smpp_port)
    resp = e.request(Command.BIND_TRANSCEIVER, {"system_id": "texter", "password": "pw", "system_type": "",
                                                "interface_version": 0x34})
    assert resp.status == 0
    return e


SUBMIT = {"source_addr_ton": 5, "source_addr": "ACME", "dest_addr_ton": 1, "dest_addr_npi": 1,
          "registered_delivery": 1}


def test_each_final_state_for_the_sandbox_numbers(make_server):
    st = make_server([SMS])
    e = _esme(st)
    cases = [("447700900000", "DELIVRD", "000", 2), ("447700900012", "UNDELIV", "012", 5),
             ("447700900019", "UNDELIV", "019", 5), ("447700900021", "UNDELIV", "021", 5),
             ("447700900033", "EXPIRED", "011", 3)]
    ids = {}
    for number, _, _, _ in cases:
        # The absent subscriber is retried until its validity period (3 s from now) ends.
        resp = _send(e, number, b"Final state test", validity_period="000000000003000R")
        assert resp.status == 0
        ids[number] = resp.message_id.decode()
    for number, stat, err, state in cases:
        r = _receipt(e, ids[number])
        f = _fields(r)
        assert (f["stat"], f["err"], f["text"]) == (stat, err, "Final state test")
        assert f["dlvrd"] == ("001" if stat == "DELIVRD" else "000")
        assert r.source_addr == number.encode() and r.destination_addr == b"ACME"
        assert r.esm_class == 0x04 and r.message_state == state
        assert r.receipted_message_id == ids[number].encode()
    assert _credit(st) == 95_000_000   # 5 SMS, 1 credit each (sms_price)
    e.close()


def test_a_long_message_split_by_smpplib_is_charged_per_part_and_reassembled(make_server):
    st = make_server([dict(SMS, sms_price="0.5")])
    e = _esme(st)
    text = "Dear customer, your parcel " + "is on its way and will arrive soon. " * 10   # 387 GSM characters
    parts, coding, esm_class = smpplib.gsm.make_parts(text)
    assert len(parts) == 3 and esm_class == 0x40
    ids = []
    for part in parts:
        resp = _send(e, "447700900000", part, data_coding=coding, esm_class=esm_class)
        assert resp.status == 0
        ids.append(resp.message_id.decode())
    assert len(set(ids)) == 3                       # one message_id per submit_sm
    assert _credit(st) == 100_000_000 - 3 * 500_000
    for mid in ids:   # each part's receipt has the text of the message's start
        assert _fields(_receipt(e, mid))["text"] == text[:20]
    # The same text whole, in message_payload: the SMSC splits it, 3 segments charged.
    resp = _send(e, "447700900000", b"", message_payload=smpplib.gsm.gsm_encode(text))
    assert resp.status == 0
    assert _credit(st) == 100_000_000 - 6 * 500_000
    # UCS2: 71 code units are 2 SMS.
    resp = _send(e, "447700900000", ("Ж" * 71).encode("utf-16-be"), data_coding=8)
    assert resp.status == 0 and _credit(st) == 100_000_000 - 8 * 500_000
    e.close()


@pytest.mark.parametrize("fields, status", [
    (dict(esm_class=0x40, short_message=b"\x05\x00\x03\x01\x00\x01hello"), Status.RINVESMCLASS),  # 0 parts
    (dict(esm_class=0x40, short_message=b"\x05\x00\x03\x01\x02\x03hello"), Status.RINVESMCLASS),  # part 3 of 2
    (dict(esm_class=0x40, short_message=b"\x09\x00\x03\x01\x02\x01"), Status.RINVMSGLEN),        # UDH too long
    (dict(esm_class=0x40, short_message=b"\x05\x00\x03\x01\x02\x01" + b"a" * 154), Status.RINVMSGLEN),
    (dict(esm_class=0x40, short_message=b"\x05\x00\x03\x01\x02\x01hello", sar_msg_ref_num=1,
          sar_total_segments=2, sar_segment_seqnum=2), Status.RINVESMCLASS),                    # UDH and SAR disagree
    (dict(sar_msg_ref_num=7, sar_total_segments=2), Status.RMISSINGOPTPARAM),
    (dict(sar_msg_ref_num=7, sar_total_segments=2, sar_segment_seqnum=3), Status.RINVOPTPARAMVAL),
    (dict(registered_delivery=3), Status.RINVREGDLVFLG),
    (dict(schedule_delivery_time="261399000000000+"), Status.RINVSCHED),
    (dict(validity_period="not a time at al"), Status.RINVEXPIRY),
    (dict(data_coding=8, short_message=b"\x04\x10\x04"), Status.RINVMSGLEN),   # half a UCS2 unit
    (dict(destination_addr="12"), Status.RINVDSTADR),
])
def test_bad_messages_are_refused_and_cost_nothing(make_server, fields, status):
    st = make_server([SMS])
    e = _esme(st)
    resp = _send(e, fields.pop("destination_addr", "447700900000"), fields.pop("short_message", b"hello"), **fields)
    assert resp.status == status
    assert _credit(st) == 100_000_000
    e.close()


def test_short_message_and_message_payload_together_are_refused(make_server):
    st = make_server([SMS])
    raw = _raw(st)
    resp = raw.request(Command.SUBMIT_SM, dict(SUBMIT, destination_addr="447700900000", short_message=b"x"),
                       {Tag.MESSAGE_PAYLOAD: b"y"})
    assert resp.status == Status.RINVOPTPARAMVAL
    assert _credit(st) == 100_000_000
    raw.close()


def test_a_message_split_with_the_sar_tlvs_is_charged_per_part(make_server):
    st = make_server([SMS])
    e = _esme(st)
    text = smpplib.gsm.gsm_encode("Dear customer, your parcel " + "is on its way and will arrive soon. " * 6)
    parts = [text[i:i + 153] for i in range(0, len(text), 153)]
    ids = [_send(e, "447700900000", part, sar_msg_ref_num=0x1234, sar_total_segments=len(parts),
                 sar_segment_seqnum=k).message_id.decode() for k, part in enumerate(parts, 1)]
    assert len(parts) == 2 and all(ids) and _credit(st) == 98_000_000
    assert {_fields(_receipt(e, mid))["text"] for mid in ids} == {"Dear customer, your "}
    e.close()


def test_a_split_message_whose_parts_disagree_is_refused(make_server):
    st = make_server([SMS])
    e = _esme(st)
    assert _send(e, "447700900000", b"\x05\x00\x03\x2a\x02\x01first", esm_class=0x40).status == 0
    assert _send(e, "447700900000", b"\x05\x00\x03\x2a\x03\x02second", esm_class=0x40).status == \
        Status.RINVESMCLASS     # reference 0x2a was a message of 2 parts
    assert _send(e, "447700900000", b"\x06\x08\x04\x01\x2a\x02\x02second", esm_class=0x40).status == 0
    assert _credit(st) == 98_000_000
    e.close()


def test_registered_delivery(make_server):
    st = make_server([SMS])
    e = _esme(st)
    quiet = _send(e, "447700900000", registered_delivery=0).message_id.decode()
    failure_only_ok = _send(e, "447700900000", registered_delivery=2).message_id.decode()
    failure_only_bad = _send(e, "447700900012", registered_delivery=2).message_id.decode()
    assert _fields(_receipt(e, failure_only_bad))["stat"] == "UNDELIV"
    last = _send(e, "447700900000", registered_delivery=1).message_id.decode()
    _receipt(e, last)
    assert {_fields(r)["id"] for r in e.receipts} == {failure_only_bad, last}
    assert quiet and failure_only_ok
    e.close()


def test_query_replace_cancel_and_scheduled_delivery(make_server):
    st = make_server([SMS])
    raw = _raw(st)
    # 447700900040 answers after 5 s: the message is ENROUTE meanwhile.
    resp = raw.request(Command.SUBMIT_SM, dict(SUBMIT, destination_addr="447700900040", short_message=b"first text"))
    mid = resp.params["message_id"]
    q = raw.request(Command.QUERY_SM, {"message_id": mid, "source_addr": "ACME"})
    assert (q.status, q.params["message_state"], q.params["final_date"]) == (0, 1, "")
    r = raw.request(Command.REPLACE_SM, {"message_id": mid, "source_addr": "ACME", "short_message": b"second text",
                                         "registered_delivery": 1})
    assert r.status == 0
    # More segments than were charged: refused.
    r = raw.request(Command.REPLACE_SM, {"message_id": mid, "source_addr": "ACME", "short_message": b"x" * 200})
    assert r.status == Status.RREPLACEFAIL
    c = raw.request(Command.CANCEL_SM, {"message_id": mid, "source_addr": "ACME", "destination_addr": "447700900040"})
    assert c.status == 0
    receipt = raw.receipt(mid)
    text = receipt.params["short_message"].decode()
    assert APPENDIX_B.match(text)["stat"] == "DELETED" and text.endswith("text:second text")
    assert receipt.tlvs[Tag.MESSAGE_STATE] == b"\x04"
    q = raw.request(Command.QUERY_SM, {"message_id": mid, "source_addr": "ACME"})
    assert q.params["message_state"] == 4 and len(q.params["final_date"]) == 16
    assert raw.request(Command.CANCEL_SM, {"message_id": mid}).status == Status.RCANCELFAIL   # final already
    assert raw.request(Command.QUERY_SM, {"message_id": "123"}).status == Status.RQUERYFAIL
    # Scheduled 2 s from now: ENROUTE until then, then delivered.
    resp = raw.request(Command.SUBMIT_SM, dict(SUBMIT, destination_addr="447700900000", short_message=b"later",
                                               schedule_delivery_time="000000000002000R"))
    later = resp.params["message_id"]
    assert raw.request(Command.QUERY_SM, {"message_id": later}).params["message_state"] == 1
    assert APPENDIX_B.match(raw.receipt(later).params["short_message"].decode())["stat"] == "DELIVRD"
    assert raw.request(Command.QUERY_SM, {"message_id": later}).params["message_state"] == 2
    raw.close()


def test_replace_if_present_deletes_the_pending_message(make_server):
    st = make_server([SMS])
    raw = _raw(st)
    first = raw.request(Command.SUBMIT_SM, dict(SUBMIT, destination_addr="447700900040", short_message=b"v1"))
    second = raw.request(Command.SUBMIT_SM, dict(SUBMIT, destination_addr="447700900040", short_message=b"v2",
                                                 replace_if_present_flag=1))
    assert second.status == 0
    q = raw.request(Command.QUERY_SM, {"message_id": first.params["message_id"]})
    assert q.params["message_state"] == 4   # DELETED
    raw.close()


def test_submit_multi_and_data_sm(make_server):
    st = make_server([SMS])
    raw = _raw(st)
    dests = [(1, 1, "447700900000"), (1, 1, "447700900019"), (1, 1, "12"), "friends"]
    resp = raw.request(Command.SUBMIT_MULTI, {"source_addr": "ACME", "dest_address": dests,
                                               "registered_delivery": 1, "short_message": b"to many"})
    assert resp.status == 0
    first = int(resp.params["message_id"])
    assert [u[2:] for u in resp.params["unsuccess_sme"]] == [("12", Status.RINVDSTADR), ("friends", Status.RINVDLNAME)]
    assert APPENDIX_B.match(raw.receipt(str(first)).params["short_message"].decode())["stat"] == "DELIVRD"
    assert APPENDIX_B.match(raw.receipt(str(first + 1)).params["short_message"].decode())["err"] == "019"
    data = raw.request(Command.DATA_SM, {"source_addr": "ACME", "dest_addr_ton": 1, "dest_addr_npi": 1,
                                         "destination_addr": "447700900000", "registered_delivery": 1},
                       {Tag.MESSAGE_PAYLOAD: b"d" * 200})
    assert data.status == 0
    assert raw.receipt(data.params["message_id"]).params["short_message"].decode().endswith("text:" + "d" * 20)
    assert _credit(st) == 100_000_000 - 2 * 1_000_000 - 2 * 1_000_000   # 2 destinations, then 2 segments
    raw.close()


def test_a_receipt_owed_at_a_stop_is_sent_after_the_restart(make_server):
    st = make_server([SMS])
    raw = _raw(st)
    resp = raw.request(Command.SUBMIT_SM, dict(SUBMIT, destination_addr="447700900040", short_message=b"durable"))
    mid = resp.params["message_id"]
    raw.close()
    st.stop()
    st2 = make_server([SMS])
    raw = _raw(st2)
    text = raw.receipt(mid, timeout=15).params["short_message"].decode()
    assert APPENDIX_B.match(text)["stat"] == "DELIVRD" and text.endswith("text:durable")
    assert _credit(st2) == 99_000_000
    raw.close()


def test_an_hlr_account_is_unchanged(make_server):
    """A lookup account beside an SMS one still gets the HLR receipt, not an SMS one."""
    st = make_server([SMS, {"system_id": "demo", "password": "demo"}])
    e = SmpplibEsme(st.smpp_port)
    e.bind()
    seq = e.submit("447700900000")
    e.pump(lambda: seq in e.resps and e.receipts)
    assert e.receipts[0].short_message.endswith(b"text:dlr")
    e.close()


async def test_history_rows_carry_segments_encoding_and_the_final_state(make_server):
    from http_client import ApiClient, basic, clients
    st = make_server([SMS])
    e = _esme(st)
    delivered = _send(e, "447700900000", ("Ж" * 71).encode("utf-16-be"), data_coding=8).message_id.decode()
    expired = _send(e, "447700900011", b"gone", validity_period="000000000001000R").message_id.decode()
    _receipt(e, expired)
    e.close()
    async with clients(ApiClient) as factory:
        a = await factory(st)
        status, body, _ = await a.call("GET", f"/lookups/{delivered}", basic("texter", "pw"))
        assert status == 200, body
        assert (body["channel"], body["status"], body["segments"], body["encoding"], body["cost"]) == \
            ("sms", "DELIVRD", 2, "UCS2", "2")
        status, body, _ = await a.call("GET", "/history", basic("texter", "pw"))
        rows = {r["id"]: r for r in body["items"]}
        assert rows[expired]["status"] == "EXPIRED" and rows[expired]["err"] == 11
        assert (rows[expired]["segments"], rows[expired]["encoding"]) == (1, "GSM")
    metrics = (await _metrics(st))
    assert 'hlrsmpp_lookups_total{channel="sms"' in metrics


async def _metrics(st) -> str:
    import aiohttp
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{st.http_port}/metrics") as r:
            return await r.text()


@pytest.mark.parametrize("split", ["udh", "message_payload"])
async def test_a_long_message_sent_by_aiosmpplib_is_charged_per_segment(make_server, split):
    """aiosmpplib splits a long text with a UDH (esm_class 0x40, and the SAR TLVs saying
    the same), or sends it whole in message_payload: 3 SMS charged either way, each
    receipt with the start of the whole text. (Its SAR-only split, without esm_class
    0x40, sends nothing in the version pinned: smpplib's SAR parts are tested below.)"""
    import aiosmpplib
    from esme_async import AioEsme, wait_until
    st = make_server([SMS])
    esme = await AioEsme(st.smpp_port, system_id="texter", password="pw", system_type="").start()
    text = "Dear customer, your parcel " + "is on its way and will arrive soon. " * 10   # 387 GSM characters
    kwargs = {"udh": dict(esm_class=0x40, auto_message_payload=False),
              "message_payload": {}}[split]
    await esme.send(aiosmpplib.SubmitSm(short_message=text, source=aiosmpplib.PhoneNumber("ACME"),
                                        destination=aiosmpplib.PhoneNumber("447700900000", aiosmpplib.TON.INTERNATIONAL,
                                                                           aiosmpplib.NPI.ISDN),
                                        log_id="long", **kwargs))
    parts = 1 if split == "message_payload" else 3

    def seen(command: int) -> list[Pdu]:
        # aiosmpplib parses only the PDUs it can correlate (the first part's): the others it
        # hands over raw; all of them are what the server sent.
        return [decode(raw) for raw in esme.hook.raw_unparsed if int.from_bytes(raw[4:8], "big") == command]

    await wait_until(lambda: len(esme.resps) + len(seen(Command.SUBMIT_SM_RESP)) >= parts
                     and len(esme.receipts) + len(seen(Command.DELIVER_SM)) >= parts, what="resps and receipts")
    assert all(r.command_status == 0 for r in esme.resps) and all(r.status == 0 for r in seen(Command.SUBMIT_SM_RESP))
    assert _credit(st) == 97_000_000
    texts = [r.short_message or r.message_payload for r in esme.receipts] + \
        [r.params["short_message"].decode() for r in seen(Command.DELIVER_SM)]
    assert len(texts) == parts and all(APPENDIX_B.match(t)["text"] == text[:20] for t in texts), texts
    await esme.close()


@pytest.mark.slow
async def test_a_long_message_sent_through_kannel_is_split_with_a_udh_and_charged_per_part(make_server, tmp_path):
    """Kannel (bearerbox + smsbox, as the interop matrix runs it) splits a long text with a
    UDH itself: 3 parts, 3 SMS charged, a delivery report with the message's start."""
    import urllib.parse

    import aiohttp
    from esme_async import wait_until
    from test_interop import Kannel, dlr_hook
    st = make_server([dict(SMS, system_id="demo", password="demo")])   # the account Kannel's config binds as
    reports, runner, hook_port = await dlr_hook()
    kannel = Kannel(st.smpp_port, tmp_path, "trx")
    # Long messages are split (concatenated with a UDH) up to 5 parts.
    kannel.conf.write_text(kannel.conf.read_text().replace(
        "username = interop\npassword = interop\n", "username = interop\npassword = interop\nmax-messages = 5\n"))
    text = "Dear customer, your parcel " + "is on its way and will arrive soon. " * 10   # 387 GSM characters
    try:
        async with aiohttp.ClientSession() as http:
            await kannel.start(http)
            query = urllib.parse.urlencode({
                "username": "interop", "password": "interop", "to": "447700900000", "from": "SHOP", "text": text,
                "dlr-mask": "3", "dlr-url": f"http://127.0.0.1:{hook_port}/dlr?type=%d&text=%A"})
            async with http.get(f"http://127.0.0.1:{kannel.sendsms}/cgi-bin/sendsms?{query}") as r:
                assert r.status == 202, await r.text()
            await wait_until(lambda: reports, timeout=30, what="a delivery report")
            await wait_until(lambda: _credit(st, "demo") == 97_000_000, timeout=10, what="3 SMS charged")
    finally:
        kannel.stop()
        await runner.cleanup()
    assert st.server.store.totals()["demo"][0] == 3     # 3 submit_sm: Kannel split it
    report = APPENDIX_B.match(reports[0]["text"])
    assert report and report["stat"] == "DELIVRD" and report["text"] == text[:20], (reports, kannel.log_tail())
