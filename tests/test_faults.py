"""The ESME test bench, end to end: each fault observed by a real smpplib client."""
from __future__ import annotations

import time

import pytest

from esme import RECEIPT_RE, SmpplibEsme

A = {"system_id": "a", "password": "p"}
B = {"system_id": "b", "password": "p"}


def _bound(srv, account=A, mode="transceiver", timeout=5):
    esme = SmpplibEsme(srv.smpp_port, timeout=timeout)
    esme.bind(mode, system_id=account["system_id"], password=account["password"])
    return esme


def test_status_fault_by_prefix(make_server):
    srv = make_server([A], faults=[{"action": "status", "prefix": "4477", "status": "RTHROTTLED"}])
    esme = _bound(srv)
    hit, miss = esme.submit("447712345678"), esme.submit("447912345678")
    esme.pump(lambda: hit in esme.resps and miss in esme.resps)
    assert esme.resps[hit].status == 0x58
    assert esme.resps[miss].status == 0
    esme.pump(lambda: len(esme.receipts) == 1)
    assert srv.server.store.totals()["a"][0] == 1  # the faulted one was not a lookup
    esme.close()


def test_generic_nack_fault(make_server):
    srv = make_server([A], faults=[{"action": "generic_nack", "status": "RSYSERR"}])
    esme = _bound(srv)
    nacks = []
    esme.client.set_error_pdu_handler(lambda pdu: nacks.append(pdu))
    seq = esme.submit("447912345678")
    esme.pump(lambda: nacks)
    assert nacks[0].command == "generic_nack" and nacks[0].sequence == seq and nacks[0].status == 0x08
    esme.close()


def test_no_response_fault_only_for_its_account(make_server):
    srv = make_server([A, B], faults=[{"action": "no_response", "account": "a"}])
    a, b = _bound(srv, A, timeout=0.3), _bound(srv, B)
    silent = a.submit("447912345678")
    # Account b is served in full while a's request stays unanswered.
    seqs = [b.submit(f"4479{i:08d}") for i in range(200)]
    b.pump(lambda: all(s in b.resps for s in seqs) and len(b.receipts) == 200)
    assert all(b.resps[s].status == 0 for s in seqs)
    with pytest.raises(AssertionError):
        a.pump(lambda: silent in a.resps, timeout=1.0)
    a.close()
    b.close()


def test_delay_response_holds_resp_and_receipt_not_other_sessions(make_server):
    srv = make_server([A, B], faults=[{"action": "delay_response", "account": "a", "delay_ms": 1500}])
    a, b = _bound(srv, A, timeout=0.2), _bound(srv, B)
    t0 = time.monotonic()
    slow = a.submit("447912345678")
    seqs = [b.submit(f"4479{i:08d}") for i in range(100)]
    b.pump(lambda: all(s in b.resps for s in seqs) and len(b.receipts) == 100)
    assert slow not in a.resps, "b finished while a's answer is still delayed"
    a.pump(lambda: slow in a.resps and a.receipts)
    assert time.monotonic() - t0 >= 1.4  # the fault itself: held at least its delay
    assert a.resps[slow].status == 0
    assert a.receipts[0].receipted_message_id == a.resps[slow].message_id
    a.close()
    b.close()


def test_close_after_n_pdus(make_server):
    srv = make_server([A], faults=[{"action": "close", "after": 3}])
    esme = _bound(srv, timeout=2)  # the bind is PDU 1
    esme.submit("447912345678")
    esme.submit("447912345679")
    with pytest.raises(Exception):
        esme.pump(lambda: False, timeout=3)  # the server closes the connection under us
    with pytest.raises(OSError):
        for _ in range(50):
            esme.client._socket.sendall(b"\0" * 16)
            time.sleep(0.02)


def test_unbind_after_n_pdus(make_server):
    srv = make_server([A], faults=[{"action": "unbind", "after": 3}])
    esme = _bound(srv, timeout=2)  # the bind is PDU 1
    got = []
    orig = esme.client.read_pdu

    def read_pdu():
        pdu = orig()
        got.append(pdu.command)
        return pdu

    esme.client.read_pdu = read_pdu
    esme.submit("447912345678")  # PDU 2; smpplib answers the receipt: deliver_sm_resp is PDU 3
    esme.pump(lambda: "unbind" in got)
    # Not on PDU 2 (the unbind would come before the submit_sm_resp), not later (none at all).
    assert got == ["submit_sm_resp", "deliver_sm", "unbind"]


def test_duplicate_receipt_same_id(make_server):
    srv = make_server([A], faults=[{"action": "duplicate_receipt"}])
    esme = _bound(srv)
    seq = esme.submit("447912345678")
    esme.pump(lambda: len(esme.receipts) == 2)
    mid = esme.resps[seq].message_id
    assert [r.receipted_message_id for r in esme.receipts] == [mid, mid]
    esme.close()


def test_out_of_order_receipts(make_server):
    srv = make_server([A], faults=[{"action": "out_of_order"}])
    tx = _bound(srv, mode="transmitter")
    seqs = [tx.submit(f"4479{i:08d}") for i in range(10)]
    tx.pump(lambda: all(s in tx.resps for s in seqs))
    ids = [tx.resps[s].message_id for s in seqs]
    rx = _bound(srv, mode="receiver")  # all ten wait, then go out in one window
    rx.pump(lambda: len(rx.receipts) == 10)
    got = [r.receipted_message_id for r in rx.receipts]
    assert sorted(got) == sorted(ids) and got != ids and got == ids[::-1]
    tx.close()
    rx.close()


def test_delay_receipt(make_server):
    srv = make_server([A], faults=[{"action": "delay_receipt", "delay_ms": 800}])
    esme = _bound(srv)
    t0 = time.monotonic()
    seq = esme.submit("447912345678")
    esme.pump(lambda: seq in esme.resps)
    esme.pump(lambda: esme.receipts)
    assert time.monotonic() - t0 >= 0.75
    esme.close()


def test_withhold_receipts_until_reconnect(make_server):
    srv = make_server([A], faults=[{"action": "withhold_receipts"}])
    esme = _bound(srv, timeout=0.2)
    seq = esme.submit("447912345678")
    esme.pump(lambda: seq in esme.resps)
    with pytest.raises(AssertionError):
        esme.pump(lambda: esme.receipts, timeout=1.0)
    mid = esme.resps[seq].message_id
    esme.close()
    again = _bound(srv)
    again.pump(lambda: again.receipts)
    assert again.receipts[0].receipted_message_id == mid
    assert RECEIPT_RE.match(again.receipts[0].short_message.decode())
    again.close()


def test_submit_window_throttles(make_server):
    srv = make_server([A], smpp={"submit_window": 5, "submit_window_status": "RMSGQFUL"})
    esme = _bound(srv)
    # 20 submit_sm in one write: past the window of 5 unanswered, RMSGQFUL.
    pdus = []
    import smpplib.smpp
    for i in range(20):
        p = smpplib.smpp.make_pdu("submit_sm", client=esme.client, source_addr="X", dest_addr_ton=1,
                                  dest_addr_npi=1, destination_addr=f"4479{i:08d}", short_message=b"")
        pdus.append(p)
    esme.client._socket.sendall(b"".join(p.generate() for p in pdus))
    esme.pump(lambda: all(p.sequence in esme.resps for p in pdus))
    statuses = [esme.resps[p.sequence].status for p in pdus]
    assert statuses[:5] == [0] * 5 and set(statuses[5:]) == {0x14}
    esme.close()


def test_faults_replaced_at_run_time(make_server):
    srv = make_server([A])
    esme = _bound(srv)
    first = esme.submit("447912345678")
    esme.pump(lambda: first in esme.resps)
    srv.call(srv.server.replace_faults, [{"action": "status", "status": 0x45}])
    second = esme.submit("447912345678")
    esme.pump(lambda: second in esme.resps)
    assert (esme.resps[first].status, esme.resps[second].status) == (0, 0x45)
    esme.close()


def test_bad_fault_rule_is_a_clear_error(tmp_path):
    from hlrsmpp.server.faults import FaultError, FaultPlan
    for rule, words in (({"action": "explode"}, "action must be one of"),
                        ({"action": "status", "status": "NOPE"}, "unknown status"),
                        ({"action": "close"}, "needs after"),
                        ({"action": "status", "percent": 150}, "percent"),
                        ({"action": "delay_response", "delay_ms": [5, 1]}, "min <= max")):
        with pytest.raises(FaultError, match=words):
            FaultPlan([rule])


def test_seeded_percentage_is_reproducible():
    from hlrsmpp.server.faults import FaultPlan
    runs = []
    for _ in range(2):
        plan = FaultPlan([{"action": "status", "percent": 30, "seed": 7}])
        runs.append([plan.on_submit("a", f"4479{i:08d}") is not None for i in range(1000)])
    assert runs[0] == runs[1]
    assert 240 <= sum(runs[0]) <= 360
