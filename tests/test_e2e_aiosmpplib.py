"""End to end with aiosmpplib (pure-Python asyncio ESME) against a real server on a free port.

aiosmpplib is driven the way an application drives it: ``ESME.start()`` in a task, requests
through its broker, everything observed through an ``AbstractHook`` (esme_async.AioEsme).
What it cannot express, and how it is covered here:
- bind refusals: ``ESME.connect()`` (what ``start()`` calls) raises; the status is read from
  the bind_resp PDU that the library hands its hook. With the server's bodiless error
  bind_resp (SMPP 3.4 §4.1: no body when command_status is non-zero) aiosmpplib raises a
  ValueError from its parser instead of ``SmppError(status)``; see the xfail below.
- ``ESME.stop()`` sends unbind but drops its socket before reading unbind_resp (its
  ``_disconnect`` releases the StreamWriter, which CPython 3.11 closes on collection), so
  unbind is sent through the broker instead, where the library reads the answer.
- submit_sm on a receiver: aiosmpplib discards it client-side; smpplib covers the server's 0x04.
"""
from __future__ import annotations

import asyncio
import struct

import aiosmpplib
import pytest
from aiosmpplib import NPI, TON, SmppCommandStatus

from esme import RECEIPT_RE
from esme_async import (AioEsme, WireTap, bind_resp_tlvs, deliver_sm_tlv_start, opt, wait_until, wire_tlvs,
                        BIND_RECEIVER, BIND_TRANSCEIVER, DELIVER_SM, RESP, UNBIND)

NUMBER = "447912345678"  # a UK mobile number: cc 44
RECEIPTED_MESSAGE_ID, MESSAGE_STATE, NETWORK_ERROR_CODE = 0x001E, 0x0427, 0x0423


def check_receipt(dlr: aiosmpplib.DeliverSm, message_id: str, number: str, tlvs: bool = True):
    """Everything docs/smpp.md says about a receipt, as aiosmpplib decoded it; ``tlvs``
    False: an SMPP 3.3 receiver's, which carries none (the text says it all)."""
    text = dlr.short_message  # already decoded by the library, per data_coding
    m = RECEIPT_RE.match(text)
    assert m, text
    assert m["id"] == message_id
    # The library decoded the text unchanged: '_' is not GSM 03.38's '§'.
    assert "p_nnc:" in text and "§" not in text
    assert m["cc"] == "44"
    assert dlr.is_receipt() and dlr.esm_class == 0x04
    assert dlr.source.number == "HLR" and dlr.source.ton == TON.UNKNOWN and dlr.source.npi == NPI.UNKNOWN
    assert dlr.destination.number == number
    assert dlr.destination.ton == TON.UNKNOWN and dlr.destination.npi == NPI.UNKNOWN
    if not tlvs:
        assert not dlr.optional_params
    else:
        check_receipt_tlvs(dlr, message_id, m["stat"])
    # aiosmpplib's own receipt parser reads the same fields.
    parsed = dlr.parse_receipt()
    assert parsed["id"] == message_id and parsed["stat"] == m["stat"] and parsed["err"] == int(m["err"])
    assert parsed["p_nnc"] == m["p_nnc"] and parsed["cc"] == "44"
    return m


def check_receipt_tlvs(dlr: aiosmpplib.DeliverSm, message_id: str, stat: str):
    assert opt(dlr, RECEIPTED_MESSAGE_ID) == message_id
    assert opt(dlr, MESSAGE_STATE) == (2 if stat == "DELIVRD" else 5)
    if stat == "UNDELIV":
        # network_error_code: type 3 (GSM) + the err, 2 bytes (aiosmpplib keeps it as text)
        # (the server sends the MAP error the err folds into, see docs/numbers.md, so only
        # the form is checked.)
        raw = opt(dlr, NETWORK_ERROR_CODE)
        assert raw is not None
        assert len(raw) == 3 and raw[0] == "\x03" and int.from_bytes(raw[1:].encode("latin-1"), "big") > 0
    else:
        assert opt(dlr, NETWORK_ERROR_CODE) is None


def is_message_id(mid: str) -> bool:
    return mid.isdigit() and len(mid) <= 64


async def test_trx_bind_lookup_receipt(server):
    esme = await AioEsme(server.smpp_port).start()
    try:
        await esme.submit(NUMBER, log_id="lookup-1")
        await wait_until(lambda: esme.resps and esme.receipts, what="submit_sm_resp and receipt")
        resp = esme.resps[0]
        assert resp.command_status == SmppCommandStatus.ESME_ROK
        assert is_message_id(resp.message_id)
        assert resp.log_id == "lookup-1"
        dlr = esme.receipts[0]
        check_receipt(dlr, resp.message_id, NUMBER)
        # aiosmpplib correlated the receipt to our submit_sm through the id (its correlator).
        assert dlr.log_id == "lookup-1"
        # The receipt was answered deliver_sm_resp ESME_ROK by the library: none comes again.
        sent_resps = [m for m in esme.hook.outgoing if type(m) is aiosmpplib.DeliverSmResp]
        assert [m.sequence_num for m in sent_resps] == [dlr.sequence_num]
        assert sent_resps[0].command_status == SmppCommandStatus.ESME_ROK
        assert len(esme.receipts) == 1
    finally:
        await esme.close()


async def test_tx_and_rx_sessions(server):
    rx = await AioEsme(server.smpp_port, mode="receiver").start()
    tx = await AioEsme(server.smpp_port, mode="transmitter").start()
    tx2 = None
    try:
        numbers = [f"44791234{i:04d}" for i in range(5)]
        for i, number in enumerate(numbers):
            await tx.submit(number, log_id=f"n{i}")
        await wait_until(lambda: len(tx.resps) == 5, what="5 submit_sm_resp on the Tx")
        assert all(r.command_status == SmppCommandStatus.ESME_ROK for r in tx.resps)
        sent = {r.message_id: numbers[int(r.log_id[1:])] for r in tx.resps}
        assert len(sent) == 5 and all(is_message_id(mid) for mid in sent)
        await wait_until(lambda: len(rx.receipts) >= 5, what="5 receipts on the Rx")
        got = {}
        for dlr in rx.receipts:
            m = check_receipt(dlr, opt(dlr, RECEIPTED_MESSAGE_ID), dlr.destination.number)
            got[m["id"]] = dlr.destination.number
        assert got == sent
        assert tx.receipts == []  # a transmitter never gets receipts

        # A second receiving session for the account is refused with ESME_RBINDFAIL.
        for mode in ("receiver", "transceiver"):
            other = AioEsme(server.smpp_port, mode=mode)
            error, status = await refused_bind(other)
            assert status == 0x0D, (mode, error)
        # ... while another transmitter is welcome.
        tx2 = await AioEsme(server.smpp_port, mode="transmitter").start()
        await tx2.submit(NUMBER)
        await wait_until(lambda: tx2.resps and len(rx.receipts) >= 6, what="the second Tx's receipt on the Rx")
    finally:
        await asyncio.gather(*(e.close() for e in (tx, rx, tx2) if e is not None))


async def refused_bind(esme: AioEsme):
    """``ESME.connect()`` must fail; return its error and the bind_resp status on the wire."""
    with pytest.raises((aiosmpplib.SmppError, ValueError)) as err:
        await esme.esme.connect()
    assert esme.esme.session_state == aiosmpplib.SmppSessionState.CLOSED or isinstance(err.value, ValueError)
    parsed = [m for m in esme.hook.incoming if "Bind" in type(m).__name__]
    if parsed:
        status = int(parsed[-1].command_status)
    else:
        # aiosmpplib could not parse the bodiless bind_resp but gave the hook its bytes.
        raw = esme.hook.raw_unparsed[-1]
        command_id, status = struct.unpack("!II", raw[4:12])
        assert command_id & RESP
    # The library has no public close for a connection whose bind failed.
    esme.esme._writer.close()
    return err.value, status


@pytest.mark.parametrize("kwargs,status", [
    ({"system_id": "nobody"}, 0x0F),
    ({"password": "wrong"}, 0x0E),
    ({"system_type": "SMS"}, 0x53),
])
async def test_bind_refusals(server, kwargs, status):
    esme = AioEsme(server.smpp_port, **kwargs)
    _error, got = await refused_bind(esme)
    assert got == status


async def test_bind_refusal_reported_as_smpp_error(server):
    """The error bind_resp carries system_id, so aiosmpplib reports the status itself."""
    esme = AioEsme(server.smpp_port, password="wrong")
    try:
        with pytest.raises(aiosmpplib.SmppError) as err:
            await esme.esme.connect()
        assert err.value.command_status == SmppCommandStatus.ESME_RINVPASWD
    finally:
        if esme.esme._writer is not None:
            esme.esme._writer.close()


async def test_client_enquire_link_is_answered(server):
    # The library sends enquire_link after this much silence and drops the session if
    # nothing comes back within socket_timeout.
    esme = await AioEsme(server.smpp_port, enquire_link_interval=0.2).start()
    try:
        await wait_until(lambda: len(esme.hook.of(aiosmpplib.EnquireLinkResp)) >= 2, what="enquire_link_resp")
        sent = {m.sequence_num for m in esme.hook.of(aiosmpplib.EnquireLink, "outgoing")}
        for resp in esme.hook.of(aiosmpplib.EnquireLinkResp):
            assert resp.command_status == SmppCommandStatus.ESME_ROK
            assert resp.sequence_num in sent
        assert esme.esme.session_state == aiosmpplib.SmppSessionState.BOUND_TRX
        await esme.submit(NUMBER)
        await wait_until(lambda: esme.receipts, what="a receipt after the enquire_links")
    finally:
        await esme.close()


async def test_server_enquire_link_is_answered(make_server):
    server = make_server(smpp={"enquire_link_interval": 0.2})
    esme = await AioEsme(server.smpp_port).start()
    try:
        await wait_until(lambda: esme.hook.of(aiosmpplib.EnquireLink), timeout=10, what="the server's enquire_link")
        probe = esme.hook.of(aiosmpplib.EnquireLink)[0]
        await wait_until(lambda: any(m.sequence_num == probe.sequence_num
                                     for m in esme.hook.of(aiosmpplib.EnquireLinkResp, "outgoing")),
                         what="aiosmpplib's enquire_link_resp")
        await esme.submit(NUMBER)
        await wait_until(lambda: esme.receipts, what="a receipt after the probe")
        assert esme.esme.session_state == aiosmpplib.SmppSessionState.BOUND_TRX
    finally:
        await esme.close()


async def test_unbind_is_answered(server):
    async with WireTap(server.smpp_port) as tap:
        esme = await AioEsme(tap.port).start()
        try:
            await esme.send(aiosmpplib.Unbind())
            await wait_until(lambda: esme.hook.of(aiosmpplib.UnbindResp), what="unbind_resp")
            unbind = esme.hook.of(aiosmpplib.Unbind, "outgoing")[0]
            resp = esme.hook.of(aiosmpplib.UnbindResp)[0]
            assert resp.command_status == SmppCommandStatus.ESME_ROK
            assert resp.sequence_num == unbind.sequence_num
            # Then the server closes the connection (NoRetry keeps it closed).
            await wait_until(lambda: "<" in tap.eofs, what="the server to close after unbind_resp")
            assert esme.esme.session_state == aiosmpplib.SmppSessionState.CLOSED
        finally:
            await esme.close()
        # stop() path: the library sends unbind and gives up its socket at once; the server
        # still answers it on the wire (the tap passes the client's FIN on after the unbind).
        esme = await AioEsme(tap.port).start()
        await esme.close()
        await wait_until(lambda: len(tap.find("<", UNBIND | RESP)) == 2, what="unbind_resp to stop()")
        unbinds = tap.find(">", UNBIND)
        assert [p.status for p in tap.find("<", UNBIND | RESP)] == [0, 0]
        assert [p.sequence for p in tap.find("<", UNBIND | RESP)] == [p.sequence for p in unbinds]
        assert [p.status for p in tap.find("<", BIND_TRANSCEIVER | RESP)] == [0, 0]
    # The receiving session was released: the account can bind a receiver again.
    again = await AioEsme(server.smpp_port, mode="receiver").start()
    await again.close()


async def test_burst_of_500(server):
    n = 500
    esme = await AioEsme(server.smpp_port).start()
    try:
        numbers = {f"n{i}": f"4479{i:08d}" for i in range(n)}
        for log_id, number in numbers.items():
            await esme.submit(number, log_id=log_id)
        await wait_until(lambda: len(esme.resps) == n and len(esme.receipts) >= n, timeout=25,
                         what=f"{n} submit_sm_resp and receipts")
        assert all(r.command_status == SmppCommandStatus.ESME_ROK for r in esme.resps)
        ids = {r.message_id: r.log_id for r in esme.resps}
        assert len(ids) == n, "message ids not unique"
        assert all(is_message_id(mid) for mid in ids)
        assert set(ids.values()) == set(numbers)
        # Every receipt matches one lookup, exactly once, and arrives after its resp.
        seen_resp: set[str] = set()
        receipt_ids = []
        for m in esme.hook.incoming:
            if type(m) is aiosmpplib.SubmitSmResp:
                seen_resp.add(m.message_id)
            elif type(m) is aiosmpplib.DeliverSm:
                mid = opt(m, RECEIPTED_MESSAGE_ID)
                assert mid in seen_resp, "receipt before its submit_sm_resp"
                receipt_ids.append(mid)
                m_ = check_receipt(m, mid, numbers[ids[mid]])
                assert m_["id"] == mid
        assert sorted(receipt_ids) == sorted(ids)
    finally:
        await esme.close()


async def test_receipts_wait_for_a_receiver(server):
    """Lookups made while the account has no receiving session are delivered when one binds."""
    tx = await AioEsme(server.smpp_port, mode="transmitter").start()
    try:
        numbers = {f"q{i}": f"44791234{i:04d}" for i in range(10)}
        for log_id, number in numbers.items():
            await tx.submit(number, log_id=log_id)
        await wait_until(lambda: len(tx.resps) == 10, what="10 submit_sm_resp")
        assert all(r.command_status == SmppCommandStatus.ESME_ROK for r in tx.resps)
        sent = {r.message_id: numbers[r.log_id] for r in tx.resps}
        rx = await AioEsme(server.smpp_port, mode="receiver").start()
        try:
            await wait_until(lambda: len(rx.receipts) >= 10, what="the queued receipts")
            got = {opt(d, RECEIPTED_MESSAGE_ID): d.destination.number for d in rx.receipts}
            assert got == sent
            for dlr in rx.receipts:
                check_receipt(dlr, opt(dlr, RECEIPTED_MESSAGE_ID), sent[opt(dlr, RECEIPTED_MESSAGE_ID)])
        finally:
            await rx.close()
    finally:
        await tx.close()


async def test_submit_statuses(server):
    esme = await AioEsme(server.smpp_port).start()
    try:
        await esme.submit("12", log_id="short")                                # not a possible E.164 number
        await esme.submit("7912345678", log_id="national", ton=TON.NATIONAL)   # not international format
        await esme.submit("44791234567a", log_id="letters")
        await esme.submit("+447912345678", log_id="plus", ton=TON.UNKNOWN, npi=NPI.UNKNOWN)  # tolerated
        await wait_until(lambda: len(esme.resps) == 4, what="4 submit_sm_resp")
        status = {r.log_id: r.command_status for r in esme.resps}
        assert status == {"short": SmppCommandStatus.ESME_RINVDSTADR, "national": SmppCommandStatus.ESME_RINVDSTADR,
                          "letters": SmppCommandStatus.ESME_RINVDSTADR, "plus": SmppCommandStatus.ESME_ROK}
        (ok,) = [r for r in esme.resps if r.log_id == "plus"]
        assert is_message_id(ok.message_id)
        await wait_until(lambda: esme.receipts, what="the receipt of the accepted lookup")
        assert len(esme.receipts) == 1
        m = RECEIPT_RE.match(esme.receipts[0].short_message)
        assert m and m["id"] == ok.message_id and m["cc"] == "44"
    finally:
        await esme.close()


@pytest.mark.parametrize("version,mode,sc_interface_version", [
    (0x50, "transceiver", b"\x34"),   # SMPP 5.0 clients: served as 3.4, and told so
    (0x34, "transceiver", b"\x34"),
    (0x33, "receiver", None),          # 3.3 knows no TLVs
], ids=["0x50", "0x34", "0x33"])
async def test_bind_interface_version(server, version, mode, sc_interface_version):
    """interface_version from 0x34 up binds as 3.4 (sc_interface_version 0x34 in the
    bind_resp); 0x33 binds as 3.3, with no TLV. Each one then gets its receipt."""
    async with WireTap(server.smpp_port) as tap:
        esme = AioEsme(tap.port, mode=mode)
        esme.esme.interface_version = version
        await esme.start()
        tx = None
        try:
            [bind] = tap.find(">", BIND_TRANSCEIVER if mode == "transceiver" else BIND_RECEIVER)
            assert bind.raw[16:].split(b"\0", 3)[3][0] == version  # what the library announced
            [resp] = tap.find("<", bind.command_id | RESP)
            assert resp.status == 0
            assert bind_resp_tlvs(resp.raw) == ([(0x0210, sc_interface_version)] if sc_interface_version else [])
            tx = esme if mode == "transceiver" else await AioEsme(server.smpp_port, mode="transmitter").start()
            await tx.submit(NUMBER)
            await wait_until(lambda: tx.resps and esme.receipts, what="submit_sm_resp and receipt")
            assert tx.resps[0].command_status == SmppCommandStatus.ESME_ROK
            check_receipt(esme.receipts[0], tx.resps[0].message_id, NUMBER, tlvs=version >= 0x34)
        finally:
            await asyncio.gather(*(e.close() for e in {esme, tx} if e is not None))


@pytest.mark.parametrize("rx_version,tx_version,number,tags", [
    (0x33, 0x34, "447700900011", []),
    (0x33, 0x33, "447700900000", []),
    (0x34, 0x33, "447700900011", [MESSAGE_STATE, NETWORK_ERROR_CODE, RECEIPTED_MESSAGE_ID]),
    (0x50, 0x34, "447700900011", [MESSAGE_STATE, NETWORK_ERROR_CODE, RECEIPTED_MESSAGE_ID]),
], ids=["rx33-tx34", "rx33-tx33", "rx34-tx33", "rx50-tx34"])
async def test_receipts_carry_tlvs_only_for_a_34_receiver(server, rx_version, tx_version, number, tags):
    """SMPP 3.3 has no TLVs: a receiver bound with interface_version 0x33 gets receipts whose
    body ends after short_message, whichever version the lookup was submitted in; a 3.4
    receiver gets message_state, network_error_code (undelivered) and receipted_message_id."""
    async with WireTap(server.smpp_port) as tap:
        rx = AioEsme(tap.port, mode="receiver")
        rx.esme.interface_version = rx_version
        tx = AioEsme(server.smpp_port, mode="transmitter")
        tx.esme.interface_version = tx_version
        await rx.start()
        try:
            await tx.start()
            await tx.submit(number)
            await wait_until(lambda: tx.resps and rx.receipts, what="submit_sm_resp and receipt")
            [dlr] = tap.find("<", DELIVER_SM)
            start = deliver_sm_tlv_start(dlr.raw)
            assert [tag for tag, _ in wire_tlvs(dlr.raw, start)] == tags
            assert (start == len(dlr.raw)) == (not tags)
            m = check_receipt(rx.receipts[0], tx.resps[0].message_id, number, tlvs=bool(tags))
            assert m["stat"] == ("UNDELIV" if number.endswith("11") else "DELIVRD")
            # Answered deliver_sm_resp ESME_ROK: settled, not sent again.
            await wait_until(lambda: tap.find(">", DELIVER_SM | RESP), what="deliver_sm_resp")
            await asyncio.sleep(0.3)
            assert len(tap.find("<", DELIVER_SM)) == 1
        finally:
            await asyncio.gather(rx.close(), tx.close())


@pytest.mark.parametrize("number,tags", [
    ("447700900000", [MESSAGE_STATE, RECEIPTED_MESSAGE_ID]),                      # reachable
    ("447700900011", [MESSAGE_STATE, NETWORK_ERROR_CODE, RECEIPTED_MESSAGE_ID]),  # absent
], ids=["delivered", "undelivered"])
async def test_receipted_message_id_is_the_last_tlv(server, number, tags):
    """Some ESMEs take the id from the first 0x001E tag of a deliver_sm to the end of the
    PDU: the receipt's receipted_message_id comes after every other TLV, on the wire."""
    async with WireTap(server.smpp_port) as tap:
        esme = await AioEsme(tap.port).start()
        try:
            await esme.submit(number)
            await wait_until(lambda: esme.resps and esme.receipts, what="submit_sm_resp and receipt")
            message_id = esme.resps[0].message_id
            [dlr] = tap.find("<", DELIVER_SM)
            start = deliver_sm_tlv_start(dlr.raw)
            assert [tag for tag, _ in wire_tlvs(dlr.raw, start)] == tags
            # The naive reading: from the first 0x001E tag to the end of the PDU.
            naive = dlr.raw[dlr.raw.index(b"\x00\x1e", start) + 4:]
            assert naive == message_id.encode() + b"\0"
            check_receipt(esme.receipts[0], message_id, number)
        finally:
            await esme.close()


async def test_interface_version_33(server):
    """0x33 binds as transmitter or receiver; a transceiver needs 0x34."""
    tx = AioEsme(server.smpp_port, mode="transmitter")
    tx.esme.interface_version = 0x33
    await tx.start()
    try:
        await tx.submit(NUMBER)
        await wait_until(lambda: tx.resps, what="submit_sm_resp")
        assert tx.resps[0].command_status == SmppCommandStatus.ESME_ROK
        trx = AioEsme(server.smpp_port, mode="transceiver")
        trx.esme.interface_version = 0x33
        _error, status = await refused_bind(trx)
        assert status == 0x0D
        rx = AioEsme(server.smpp_port, mode="receiver")
        rx.esme.interface_version = 0x33
        await rx.start()
        await wait_until(lambda: rx.receipts, what="the receipt on the 0x33 receiver")
        check_receipt(rx.receipts[0], tx.resps[0].message_id, NUMBER, tlvs=False)
        await rx.close()
    finally:
        await tx.close()


@pytest.mark.parametrize("data_coding,reads_underscore", [(1, True), (3, True), (0, False)])
async def test_account_data_coding(make_server, data_coding, reads_underscore):
    """The per-account receipt data_coding is honoured; why the default is 3: aiosmpplib reads
    data_coding 0 as GSM 03.38, where the byte 0x5F of 'p_nnc' is '§'."""
    server = make_server(accounts=[{"system_id": "demo", "password": "demo", "data_coding": data_coding}])
    esme = await AioEsme(server.smpp_port).start()
    try:
        await esme.submit(NUMBER)
        await wait_until(lambda: esme.resps and esme.receipts, what="resp and receipt")
        text = esme.receipts[0].short_message
        if reads_underscore:
            check_receipt(esme.receipts[0], esme.resps[0].message_id, NUMBER)
        else:
            assert "p§nnc:" in text and "p_nnc:" not in text
            assert RECEIPT_RE.match(text.replace("§", "_"))
    finally:
        await esme.close()
