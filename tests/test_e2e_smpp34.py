"""End to end with smpp34 (Rust/tokio-backed asyncio ESME) against a real server on a free port.

smpp34 surfaces submit_sm_resp (message_id, command_status) and deliver_sm (raw
short_message bytes, data_coding, TLVs) and answers deliver_sm / enquire_link itself. It does
not surface everything, so a WireTap (esme_async) between it and the server shows the rest:
- bind refusals: ``Client.connect()`` ignores a non-zero bind_resp and only raises
  ``SmppError('bind timed out')`` after ``connect_timeout_ms`` (with or without a body in the
  bind_resp: checked against a stub); the status is read on the wire.
- unbind: ``Smsc.unbind()`` does not return the unbind_resp; it is read on the wire.
- enquire_link: smpp34 sends its own on a fixed 30 s timer, not settable from Python, so
  the client-initiated case is an opt-in slow test (HLRSMPP_SLOW_TESTS=1); the
  server-initiated one (answered by the library) always runs.
- submit_sm on a receiver: refused client-side by smpp34; smpplib covers the server's 0x04.
- smpp34 does not decode text: it hands over bytes plus data_coding, decoded here as the
  data_coding says (3 = Latin-1).
"""
from __future__ import annotations

import asyncio
import os

import pytest
import smpp34

from esme import RECEIPT_RE
from esme_async import (BIND_RECEIVER, BIND_TRANSCEIVER, DELIVER_SM, ENQUIRE_LINK, RESP, SUBMIT_SM, UNBIND,
                        Smpp34Esme, WireTap, make_smpp34_client, tlv, wait_until)

NUMBER = "447912345678"  # a UK mobile number: cc 44


def check_receipt(ev: smpp34.DeliverSmEvent, message_id: str, number: str):
    """Everything docs/smpp.md says about a receipt, as smpp34 delivered it."""
    # The server's default data_coding: 3 (Latin-1), where 0x5F is '_' (GSM 03.38 reads '§').
    assert ev.data_coding == 3
    text = ev.short_message.decode("latin-1")
    m = RECEIPT_RE.match(text)
    assert m, text
    assert m["id"] == message_id
    assert b"p_nnc:" in ev.short_message and "p_nnc:" in text
    assert m["cc"] == "44"
    assert ev.esm_class == 0x04
    assert ev.source_addr == "HLR" and ev.source_addr_ton == 0 and ev.source_addr_npi == 0
    assert ev.destination_addr == number and ev.dest_addr_ton == 0 and ev.dest_addr_npi == 0
    rid = tlv(ev, smpp34.TLV_RECEIPTED_MESSAGE_ID)
    assert rid is not None and rid.as_string() == message_id
    assert rid.value in (message_id.encode(), message_id.encode() + b"\0")  # C-octet string
    state = tlv(ev, smpp34.TLV_MESSAGE_STATE)
    assert state is not None and state.as_int() == (2 if m["stat"] == "DELIVRD" else 5)
    nec = tlv(ev, smpp34.TLV_NETWORK_ERROR_CODE)
    if m["stat"] == "UNDELIV":
        # type 3 (GSM) and a 2-byte code: the MAP error the err folds into
        # (docs/numbers.md: 011 -> 6 absentSubscriberSM), so only the form is checked here.
        assert nec is not None and len(nec.value) == 3 and nec.value[:1] == b"\x03"
        assert int.from_bytes(nec.value[1:], "big") > 0
    else:
        assert nec is None
    return m


def is_message_id(mid) -> bool:
    return isinstance(mid, str) and mid.isdigit() and len(mid) <= 64


async def test_trx_bind_lookup_receipt(server):
    async with WireTap(server.smpp_port) as tap:
        esme = await Smpp34Esme.bind(tap.port, "TRX")
        try:
            assert esme.smsc.system_id  # the server's system_id from bind_resp
            resp = await esme.submit(NUMBER)
            assert resp.is_success and resp.command_status == 0
            assert is_message_id(resp.message_id)
            await wait_until(lambda: esme.receipts, what="the receipt")
            check_receipt(esme.receipts[0], resp.message_id, NUMBER)
            # smpp34 answered the receipt with deliver_sm_resp ESME_ROK (seen on the wire).
            await wait_until(lambda: tap.find(">", DELIVER_SM | RESP), what="deliver_sm_resp")
            assert [p.status for p in tap.find(">", DELIVER_SM | RESP)] == [0]
            assert tap.find(">", DELIVER_SM | RESP)[0].sequence == tap.find("<", DELIVER_SM)[0].sequence
            await asyncio.sleep(0.2)
            assert len(esme.receipts) == 1
        finally:
            await esme.close()


async def test_tx_and_rx_sessions(server):
    async with WireTap(server.smpp_port) as tap:
        rx = await Smpp34Esme.bind(tap.port, "RX")
        tx = await Smpp34Esme.bind(tap.port, "TX")
        try:
            numbers = [f"44791234{i:04d}" for i in range(5)]
            resps = [await tx.submit(number) for number in numbers]
            assert all(r.is_success for r in resps)
            sent = {r.message_id: number for r, number in zip(resps, numbers)}
            assert len(sent) == 5 and all(is_message_id(mid) for mid in sent)
            await wait_until(lambda: len(rx.receipts) >= 5, what="5 receipts on the Rx")
            got = {}
            for ev in rx.receipts:
                mid = tlv(ev, smpp34.TLV_RECEIPTED_MESSAGE_ID).as_string()
                check_receipt(ev, mid, ev.destination_addr)
                got[mid] = ev.destination_addr
            assert got == sent
            assert tx.receipts == []

            # A second receiving session for the account: bind_resp ESME_RBINDFAIL.
            for bind_type, command in (("RX", BIND_RECEIVER), ("TRX", BIND_TRANSCEIVER)):
                before = len(tap.find("<", command | RESP))
                with pytest.raises(smpp34.SmppError):
                    await make_smpp34_client(tap.port, bind_type, connect_timeout_ms=1000).connect()
                refusals = tap.find("<", command | RESP)[before:]
                assert [p.status for p in refusals] == [0x0D], bind_type
            # Another transmitter is fine, and still works.
            tx2 = await Smpp34Esme.bind(tap.port, "TX")
            assert (await tx2.submit(NUMBER)).is_success
            await wait_until(lambda: len(rx.receipts) >= 6, what="the second Tx's receipt on the Rx")
            await tx2.close()
        finally:
            await tx.close()
            await rx.close()


@pytest.mark.parametrize("kwargs,status", [
    ({"system_id": "nobody"}, 0x0F),
    ({"password": "wrong"}, 0x0E),
    ({"system_type": "SMS"}, 0x53),
])
async def test_bind_refusals(server, kwargs, status):
    async with WireTap(server.smpp_port) as tap:
        # smpp34 only reports the failure, not its status (see the module docstring).
        with pytest.raises(smpp34.SmppError):
            await make_smpp34_client(tap.port, "TRX", connect_timeout_ms=1000, **kwargs).connect()
        assert [p.status for p in tap.find("<", BIND_TRANSCEIVER | RESP)] == [status]


async def test_server_enquire_link_is_answered(make_server):
    server = make_server(smpp={"enquire_link_interval": 0.2})
    async with WireTap(server.smpp_port) as tap:
        esme = await Smpp34Esme.bind(tap.port, "TRX")
        try:
            await wait_until(lambda: tap.find("<", ENQUIRE_LINK), what="the server's enquire_link")
            probe = tap.find("<", ENQUIRE_LINK)[0]
            await wait_until(lambda: any(p.sequence == probe.sequence for p in tap.find(">", ENQUIRE_LINK | RESP)),
                             what="smpp34's enquire_link_resp")
            resp = await esme.submit(NUMBER)
            assert resp.is_success
            await wait_until(lambda: esme.receipts, what="a receipt after the probe")
            assert not esme.disconnected.is_set()
        finally:
            await esme.close()


@pytest.mark.skipif(not os.environ.get("HLRSMPP_SLOW_TESTS"),
                    reason="smpp34 sends enquire_link every 30 s (fixed); set HLRSMPP_SLOW_TESTS=1")
async def test_client_enquire_link_is_answered(server):
    async with WireTap(server.smpp_port) as tap:
        esme = await Smpp34Esme.bind(tap.port, "TRX")
        try:
            await wait_until(lambda: tap.find(">", ENQUIRE_LINK), timeout=40, what="smpp34's enquire_link")
            link = tap.find(">", ENQUIRE_LINK)[0]
            await wait_until(lambda: tap.find("<", ENQUIRE_LINK | RESP), what="enquire_link_resp")
            resp = tap.find("<", ENQUIRE_LINK | RESP)[0]
            assert resp.status == 0 and resp.sequence == link.sequence
            assert (await esme.submit(NUMBER)).is_success
        finally:
            await esme.close()


async def test_unbind_is_answered(server):
    async with WireTap(server.smpp_port) as tap:
        esme = await Smpp34Esme.bind(tap.port, "TRX")
        await esme.smsc.unbind()
        await asyncio.wait_for(esme.disconnected.wait(), 10)  # next() reported Disconnected
        await wait_until(lambda: tap.find("<", UNBIND | RESP), what="unbind_resp")
        (unbind,) = tap.find(">", UNBIND)
        (resp,) = tap.find("<", UNBIND | RESP)
        assert resp.status == 0 and resp.sequence == unbind.sequence
        await wait_until(lambda: "<" in tap.eofs, what="the server to close after unbind_resp")
        await esme.close()
    # The receiving session was released: the account can bind a receiver again.
    again = await Smpp34Esme.bind(server.smpp_port, "RX")
    await again.close()


async def test_burst_of_500(server):
    n = 500
    async with WireTap(server.smpp_port) as tap:
        esme = await Smpp34Esme.bind(tap.port, "TRX", window_size=64)
        try:
            numbers = [f"4479{i:08d}" for i in range(n)]
            resps = await asyncio.wait_for(asyncio.gather(*(esme.submit(x) for x in numbers)), 20)
            assert all(r.is_success for r in resps)
            ids = {r.message_id: number for r, number in zip(resps, numbers)}
            assert len(ids) == n, "message ids not unique"
            assert all(is_message_id(mid) for mid in ids)
            await wait_until(lambda: len(esme.receipts) >= n, timeout=20, what=f"{n} receipts")
            receipt_ids = []
            for ev in esme.receipts:
                mid = tlv(ev, smpp34.TLV_RECEIPTED_MESSAGE_ID).as_string()
                check_receipt(ev, mid, ids[mid])
                receipt_ids.append(mid)
            assert sorted(receipt_ids) == sorted(ids)
            # On the wire: every submit_sm went out, and no receipt came before its resp.
            assert len(tap.find(">", SUBMIT_SM)) == n
            seen_resp: set[str] = set()
            for p in tap.pdus:
                if p.direction != "<":
                    continue
                if p.command_id == SUBMIT_SM | RESP:
                    seen_resp.add(p.c_string())
                elif p.command_id == DELIVER_SM:
                    dlr = smpp34.decode(p.raw)
                    mid = tlv(dlr, smpp34.TLV_RECEIPTED_MESSAGE_ID).as_string()
                    assert mid in seen_resp, "receipt before its submit_sm_resp"
            await wait_until(lambda: len(tap.find(">", DELIVER_SM | RESP)) >= n, what="deliver_sm_resps")
            assert all(p.status == 0 for p in tap.find(">", DELIVER_SM | RESP))
        finally:
            await esme.close()


def receipt_id(pdu) -> str:
    """receipted_message_id of a deliver_sm seen on the wire (decoded by smpp34's codec)."""
    return tlv(smpp34.decode(pdu.raw), smpp34.TLV_RECEIPTED_MESSAGE_ID).as_string()


async def bind_rx_when_free(port: int) -> Smpp34Esme:
    """Bind a receiver once the server has seen the previous one go (it may take a moment)."""
    for _ in range(10):
        try:
            return await Smpp34Esme.bind(port, "RX", connect_timeout_ms=1000)
        except smpp34.SmppError:
            continue
    raise AssertionError("could not bind a receiver again")


async def test_receipts_in_flight_when_the_receiver_dies_go_to_the_next(server):
    n = 20
    tx = await Smpp34Esme.bind(server.smpp_port, "TX")
    # The tap swallows every deliver_sm_resp: the server sees receipts sent, none answered.
    async with WireTap(server.smpp_port, drop=lambda p: p.command_id == DELIVER_SM | RESP) as tap:
        rx = await Smpp34Esme.bind(tap.port, "RX")
        resps = [await tx.submit(f"4479{i:08d}") for i in range(n)]
        ids = {r.message_id: f"4479{i:08d}" for i, r in enumerate(resps)}
        await wait_until(lambda: len(rx.receipts) >= n, what="the first deliveries")
        await wait_until(lambda: len(tap.dropped) >= n, what="the deliver_sm_resps (swallowed)")
        tap.abort()  # the connection dies without unbind
        await asyncio.wait_for(rx.disconnected.wait(), 10)
        await rx.close()
    again = await bind_rx_when_free(server.smpp_port)
    try:
        await wait_until(lambda: {tlv(ev, smpp34.TLV_RECEIPTED_MESSAGE_ID).as_string()
                                  for ev in again.receipts} >= set(ids), what="the receipts again")
        for ev in again.receipts:
            mid = tlv(ev, smpp34.TLV_RECEIPTED_MESSAGE_ID).as_string()
            check_receipt(ev, mid, ids[mid])
    finally:
        await again.close()
        await tx.close()


async def test_unanswered_receipt_is_retried_with_the_same_id(make_server):
    server = make_server(smpp={"response_timeout": 0.5}, receipts={"retry_min": 0.1})
    n = 10
    seq_to_id: dict[int, str] = {}
    unanswered: set[str] = set()

    def drop(p) -> bool:
        """Swallow the first deliver_sm_resp of every receipt, pass the others."""
        if p.direction == "<" and p.command_id == DELIVER_SM:
            seq_to_id[p.sequence] = receipt_id(p)
        elif p.command_id == DELIVER_SM | RESP:
            mid = seq_to_id[p.sequence]
            if mid not in unanswered:
                unanswered.add(mid)
                return True
        return False

    async with WireTap(server.smpp_port, drop=drop) as tap:
        esme = await Smpp34Esme.bind(tap.port, "TRX")
        try:
            resps = [await esme.submit(f"4479{i:08d}") for i in range(n)]
            ids = {r.message_id: f"4479{i:08d}" for i, r in enumerate(resps)}
            def answered():
                return {seq_to_id[p.sequence] for p in tap.find(">", DELIVER_SM | RESP) if p.status == 0}
            await wait_until(lambda: answered() >= set(ids), timeout=20, what="every receipt answered once")
            assert unanswered == set(ids)
            # Each lookup came at least twice (same id, same text), each in the receipt form.
            texts: dict[str, set[bytes]] = {}
            for ev in esme.receipts:
                mid = tlv(ev, smpp34.TLV_RECEIPTED_MESSAGE_ID).as_string()
                check_receipt(ev, mid, ids[mid])
                texts.setdefault(mid, set()).add(ev.short_message)
            count = {mid: sum(1 for p in tap.find("<", DELIVER_SM) if receipt_id(p) == mid) for mid in ids}
            assert all(c >= 2 for c in count.values()), count
            assert set(texts) == set(ids) and all(len(t) == 1 for t in texts.values())
        finally:
            await esme.close()


async def test_submit_statuses(server):
    esme = await Smpp34Esme.bind(server.smpp_port, "TRX")
    try:
        bad = [await esme.submit("12"),                     # not a possible E.164 number
               await esme.submit("7912345678", ton=2),      # TON national: not international format
               await esme.submit("44791234567a")]
        assert [r.command_status for r in bad] == [smpp34.ESME_RINVDSTADR] * 3
        assert not any(r.is_success for r in bad)
        ok = await esme.submit("+447912345678", ton=0, npi=0)  # TON 0, leading '+' tolerated
        assert ok.is_success and is_message_id(ok.message_id)
        await wait_until(lambda: esme.receipts, what="the receipt of the accepted lookup")
        await asyncio.sleep(0.2)
        assert len(esme.receipts) == 1
        m = RECEIPT_RE.match(esme.receipts[0].short_message.decode("latin-1"))
        assert m and m["id"] == ok.message_id and m["cc"] == "44"
    finally:
        await esme.close()


async def test_account_data_coding(make_server):
    """A per-account receipt data_coding (here 1, IA5/ASCII) is what the receipt carries."""
    server = make_server(accounts=[{"system_id": "demo", "password": "demo", "data_coding": 1}])
    esme = await Smpp34Esme.bind(server.smpp_port, "TRX")
    try:
        resp = await esme.submit(NUMBER)
        await wait_until(lambda: esme.receipts, what="the receipt")
        ev = esme.receipts[0]
        assert ev.data_coding == 1
        text = ev.short_message.decode("ascii")
        m = RECEIPT_RE.match(text)
        assert m and m["id"] == resp.message_id and "p_nnc:" in text
    finally:
        await esme.close()
