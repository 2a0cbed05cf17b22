"""SMS accounts on a shared store: two real ``hlrsmpp serve`` processes on one real
redis-server. A message accepted by one process is queried, replaced and cancelled on the
other; its receipt reaches the receiver wherever it is bound, with the final state the
message has when it ends (DELETED at once when cancelled elsewhere); absent destinations
are retried until their validity period; replace_if_present_flag finds the message another
process accepted; credit and history are exact."""
from __future__ import annotations

import time

import pytest
import redis

from redis_support import redis_server, redis_url  # noqa: F401  (fixtures)
from test_e2e_sms import APPENDIX_B, SUBMIT, RawEsme
from conftest import eventually
from test_redis_e2e import P, _config, _http, procs  # noqa: F401  (fixture)
from hlrsmpp.smpp.codec import Command, Tag
from hlrsmpp.smpp.status import Status

pytestmark = pytest.mark.slow  # two server processes on one redis-server

SMS = {"system_id": "texter", "password": "pw", "service": "sms", "credit": "100000", "max_tx": 2}


def _bind(port: int, command: Command, within: float = 0.0) -> RawEsme:
    """A bound session; ``within`` seconds to wait for the receiving slot a receiver just
    unbound elsewhere still holds (its process frees it as the session ends, as an ESME
    binding again at once meets: ESME_RBINDFAIL until then)."""
    deadline = time.monotonic() + within
    while True:
        e = RawEsme(port)
        resp = e.request(command, {"system_id": "texter", "password": "pw", "system_type": "", "interface_version": 0x34})
        if resp.status == Status.RBINDFAIL and time.monotonic() < deadline:
            e.close()
            time.sleep(0.05)
            continue
        assert resp.status == 0
        return e


def _stat(receipt) -> dict:
    m = APPENDIX_B.match(receipt.params["short_message"].decode("latin-1"))
    assert m, receipt.params["short_message"]
    return m.groupdict()


def _two(tmp_path, redis_url, procs):
    cfg = _config(tmp_path, redis_url, [SMS])
    a, b = procs(cfg), procs(cfg)
    rx = _bind(a.smpp_port, Command.BIND_TRANSCEIVER)   # the receiver: on A
    tx = _bind(b.smpp_port, Command.BIND_TRANSMITTER)   # messages submitted on B
    return a, b, rx, tx


def test_a_message_accepted_by_one_process_is_queried_replaced_and_cancelled_on_the_other(
        tmp_path, redis_url, procs):
    a, b, rx, tx = _two(tmp_path, redis_url, procs)
    # 447700900040 answers after 5 s: the message is ENROUTE meanwhile.
    mid = tx.request(Command.SUBMIT_SM, dict(SUBMIT, destination_addr="447700900040",
                                             short_message=b"first text")).params["message_id"]
    q = rx.request(Command.QUERY_SM, {"message_id": mid, "source_addr": "ACME"})
    assert (q.status, q.params["message_state"], q.params["final_date"]) == (0, 1, "")
    r = rx.request(Command.REPLACE_SM, {"message_id": mid, "source_addr": "ACME", "short_message": b"second text",
                                        "registered_delivery": 1})
    assert r.status == 0
    # More segments than were charged: refused, wherever it is asked.
    r = tx.request(Command.REPLACE_SM, {"message_id": mid, "source_addr": "ACME", "short_message": b"x" * 200})
    assert r.status == Status.RREPLACEFAIL
    cancelled = time.monotonic()
    assert tx.request(Command.CANCEL_SM, {"message_id": mid}).status == 0
    # The receiver's process (A) hears of the change made on B: DELETED at once, not in 5 s.
    receipt = rx.receipt(mid, timeout=10)
    assert time.monotonic() - cancelled < 3
    f = _stat(receipt)
    assert f["stat"] == "DELETED" and f["text"] == "second text"
    assert receipt.tlvs[Tag.MESSAGE_STATE] == b"\x04"
    for e in (rx, tx):
        q = e.request(Command.QUERY_SM, {"message_id": mid})
        assert q.params["message_state"] == 4 and len(q.params["final_date"]) == 16
        assert e.request(Command.CANCEL_SM, {"message_id": mid}).status == Status.RCANCELFAIL   # final already
    assert tx.request(Command.QUERY_SM, {"message_id": "123"}).status == Status.RQUERYFAIL
    # Another account's message is not found.
    rx.close()
    tx.close()


def test_every_final_state_reaches_the_receiver_on_the_other_process(tmp_path, redis_url, procs):
    a, b, rx, tx = _two(tmp_path, redis_url, procs)
    cases = [("447700900000", "DELIVRD", "000"), ("447700900012", "UNDELIV", "012"),
             ("447700900021", "UNDELIV", "021"), ("447700900033", "EXPIRED", "011")]
    ids = {}
    for number, _, _ in cases:
        # The absent subscriber is retried until its validity period (3 s from now) ends.
        resp = tx.request(Command.SUBMIT_SM, dict(SUBMIT, destination_addr=number, short_message=b"Final state test",
                                                  validity_period="000000000003000R"))
        assert resp.status == 0
        ids[number] = resp.params["message_id"]
    # A 3-part message in message_payload: 3 segments charged.
    long = tx.request(Command.SUBMIT_SM, dict(SUBMIT, destination_addr="447700900000"),
                      {Tag.MESSAGE_PAYLOAD: b"Hello " * 60})
    assert long.status == 0
    for number, stat, err in cases:
        f = _stat(rx.receipt(ids[number], timeout=15))
        assert (f["stat"], f["err"], f["text"]) == (stat, err, "Final state test")
    assert _stat(rx.receipt(long.params["message_id"]))["text"] == "Hello Hello Hello He"
    r = redis.Redis.from_url(redis_url)
    n, cost = (int(x) for x in r.hmget(f"{P}tot:texter", "n", "c"))
    assert (n, cost) == (5, 7 * 1_000_000)   # 5 messages, 4 + 3 SMS at 1 credit each
    # Every receipt acknowledged: nothing left queued for the account.
    assert eventually(lambda: int(r.get(f"{P}q:texter") or 0) == 0)
    # The history of either process shows the message's segments and state.
    status, body = _http(b.http_port, f"/api/v1/lookups/{long.params['message_id']}")
    assert status == 200 and '"segments": 3' in body.replace('":3', '": 3'), body
    rx.close()
    tx.close()


def test_replace_if_present_finds_the_message_the_other_process_accepted(tmp_path, redis_url, procs):
    a, b, rx, tx = _two(tmp_path, redis_url, procs)
    first = rx.request(Command.SUBMIT_SM, dict(SUBMIT, destination_addr="447700900040", short_message=b"v1"))
    second = tx.request(Command.SUBMIT_SM, dict(SUBMIT, destination_addr="447700900040", short_message=b"v2",
                                                replace_if_present_flag=1))
    assert (first.status, second.status) == (0, 0)
    f = _stat(rx.receipt(first.params["message_id"], timeout=4))   # DELETED now, not in 5 s
    assert (f["stat"], f["text"]) == ("DELETED", "v1")
    q = tx.request(Command.QUERY_SM, {"message_id": first.params["message_id"]})
    assert q.params["message_state"] == 4
    assert _stat(rx.receipt(second.params["message_id"], timeout=10))["stat"] == "DELIVRD"
    rx.close()
    tx.close()


def test_a_message_waiting_for_its_validity_follows_the_receiver_to_another_process(tmp_path, redis_url, procs):
    a, b, rx, tx = _two(tmp_path, redis_url, procs)
    # Absent: retried until its validity period (4 s) ends, then EXPIRED.
    mid = tx.request(Command.SUBMIT_SM, dict(SUBMIT, destination_addr="447700900033", short_message=b"absent",
                                             validity_period="000000000004000R")).params["message_id"]
    time.sleep(1)   # A's process holds it, waiting
    rx.request(Command.UNBIND)
    rx.close()
    rx = _bind(b.smpp_port, Command.BIND_RECEIVER, within=5)   # the receiver is on B now
    f = _stat(rx.receipt(mid, timeout=15))
    assert (f["stat"], f["err"], f["text"]) == ("EXPIRED", "011", "absent")
    rx.close()
    tx.close()
