"""/metrics during a run: every family moves as the traffic says.

Real clients (smpplib, urllib) against a real server (make_server); each scrape is
parsed with prometheus-client's own parser, and the checks are on the change
between two scrapes (STATS is per process: other tests' traffic only shifts the
baseline).
"""
from __future__ import annotations

import json
import random
import socket
import struct
import time
import urllib.request
from pathlib import Path

import pytest
import smpplib.exceptions
import smpplib.smpp
from hypothesis import given, settings, strategies as st_
from prometheus_client.parser import text_string_to_metric_families

from hlrsmpp import metrics
from hlrsmpp.smpp import framer
from hlrsmpp.smpp.codec import Command, Pdu, decode, encode, encode_submit_sm_resp
from hlrsmpp.smpp.status import Status
from esme import SmpplibEsme

ROOT = Path(__file__).resolve().parent.parent

OK_PREFIX, ABSENT_PREFIX = "447400", "447401"
HLR = {"rules": [{"prefix": OK_PREFIX, "err": 0, "latency_ms": 0},
                 {"prefix": ABSENT_PREFIX, "err": 11, "latency_ms": 0}]}


def uk(prefix: str, i: int) -> str:
    return f"{prefix}{i:06d}"


# ------------------------------------------------------------------ scraping

class Scrape(dict):
    """{(sample name, frozenset of labels): value} of one /metrics answer."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text
        self.families = {}
        for family in text_string_to_metric_families(text):
            self.families[family.name] = family
            for s in family.samples:
                self[s.name, frozenset(s.labels.items())] = s.value

    def v(self, name: str, **labels) -> float:
        return self.get((name, frozenset(labels.items())), 0.0)

    def minus(self, before: "Scrape", name: str, **labels) -> float:
        return self.v(name, **labels) - before.v(name, **labels)


def scrape(st) -> Scrape:
    assert st.http_port, "the HTTP server is not up: /metrics is served by it"
    with urllib.request.urlopen(f"http://127.0.0.1:{st.http_port}/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return Scrape(r.read().decode())


def wait_for(st, check, timeout: float = 10.0) -> Scrape:
    deadline = time.monotonic() + timeout
    while True:
        s = scrape(st)
        if check(s):
            return s
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics never got there:\n{s.text}")
        time.sleep(0.1)


def http_get(st, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{st.http_port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def submit_all(esme: SmpplibEsme, numbers: list[str]) -> dict[str, int]:
    """submit_sm each number; {number: command_status of its submit_sm_resp}."""
    seqs = {esme.submit(n): n for n in numbers}
    esme.pump(lambda: all(s in esme.resps for s in seqs))
    return {n: esme.resps[s].status for s, n in seqs.items()}


# ------------------------------------------------------------------ end to end

def test_every_family_moves_with_the_traffic(make_server):
    st = make_server(accounts=[
        {"system_id": "demo", "password": "demo"},
        {"system_id": "pre", "password": "pre", "credit": 0.25, "price": 0.1, "coverage": [44]},
        {"system_id": "lim", "password": "lim", "limits": {"per_day": 1}},
    ], hlr=HLR)
    before = scrape(st)
    d = lambda name, **labels: after.minus(before, name, **labels)  # noqa: E731

    # A transceiver binds; a bad password is refused.
    trx = SmpplibEsme(st.smpp_port)
    trx.bind("transceiver")
    bad = SmpplibEsme(st.smpp_port)
    with pytest.raises(smpplib.exceptions.PDUError):
        bad.bind("transmitter", password="nope")
    bad.client.disconnect()

    # Lookups: 3 reachable, 2 absent, 1 impossible number; receipts acknowledged.
    answers = submit_all(trx, [uk(OK_PREFIX, i) for i in range(3)] +
                         [uk(ABSENT_PREFIX, i) for i in range(2)] + ["12"])
    assert sorted(answers.values()) == [0, 0, 0, 0, 0, 0x0B]
    trx.pump(lambda: len(trx.receipts) == 5)

    # A prepaid account with coverage [44]: refused for coverage, then for credit.
    pre = SmpplibEsme(st.smpp_port)
    pre.bind("transmitter", system_id="pre", password="pre")
    assert list(submit_all(pre, ["919810000001"]).values()) == [0x12]
    assert list(submit_all(pre, [uk(OK_PREFIX, 10), uk(OK_PREFIX, 11)]).values()) == [0, 0]
    assert list(submit_all(pre, [uk(OK_PREFIX, 12)]).values()) == [0x10]

    # One lookup a day: the second is throttled.
    lim = SmpplibEsme(st.smpp_port)
    lim.bind("transmitter", system_id="lim", password="lim")
    assert list(submit_all(lim, [uk(OK_PREFIX, 20)]).values()) == [0]
    assert list(submit_all(lim, [uk(OK_PREFIX, 21)]).values()) == [0x58]

    # enquire_link, and an unknown command id (generic_nack).
    got = []
    trx.client.set_error_pdu_handler(got.append)
    trx.client.send_pdu(smpplib.smpp.make_pdu("enquire_link", client=trx.client))
    trx.client._socket.sendall(struct.pack(">IIII", 16, 0x00000099, 0, 4242))
    trx.pump(lambda: any(p.command == "generic_nack" for p in got))

    # An HTTP lookup (AMS HLR API).
    status, body = http_get(st, f"/websmpp/hlr/lookup?username=demo&password=demo&destination={uk(OK_PREFIX, 30)}")
    assert status == 200 and body.startswith("BatchId: "), body

    after = wait_for(st, lambda s: s.v("hlrsmpp_receipts_queued", account="demo") == 0
                     and s.v("hlrsmpp_receipts_inflight", account="demo") == 0)

    # Sessions and binds.
    assert after.v("hlrsmpp_sessions", mode="trx") == 1
    assert after.v("hlrsmpp_sessions", mode="tx") == 2
    assert after.v("hlrsmpp_sessions", mode="rx") == 0
    assert after.v("hlrsmpp_connections") == 3
    assert d("hlrsmpp_binds_total", mode="trx", result="ok") == 1
    assert d("hlrsmpp_binds_total", mode="tx", result="ok") == 2
    assert d("hlrsmpp_binds_total", mode="tx", result="bad_password") == 1

    # Every PDU in and out, by command and status.
    rx = lambda c, s="ESME_ROK": d("hlrsmpp_pdus_received_total", command=c, status=s)  # noqa: E731
    tx = lambda c, s="ESME_ROK": d("hlrsmpp_pdus_sent_total", command=c, status=s)  # noqa: E731
    assert rx("bind_transceiver") == 1
    assert rx("bind_transmitter") == 3
    assert rx("submit_sm") == 6 + 4 + 2
    assert rx("deliver_sm_resp") == 5
    assert rx("enquire_link") == 1
    assert rx("unknown") == 1
    assert tx("bind_transceiver_resp") == 1
    assert tx("bind_transmitter_resp") == 2
    assert tx("bind_transmitter_resp", "ESME_RINVPASWD") == 1
    assert tx("submit_sm_resp") == 5 + 2 + 1
    assert tx("submit_sm_resp", "ESME_RINVDSTADR") == 1
    assert tx("submit_sm_resp", "ESME_RCOVERR") == 1
    assert tx("submit_sm_resp", "ESME_RINSBAL") == 1
    assert tx("submit_sm_resp", "ESME_RTHROTTLED") == 1
    assert tx("deliver_sm") == 5
    assert tx("enquire_link_resp") == 1
    assert tx("generic_nack", "ESME_RINVCMDID") == 1

    # Lookups by channel, status and err; refusals by reason.
    assert d("hlrsmpp_lookups_total", channel="smpp", status="DELIVRD", err="000") == 3 + 2 + 1
    assert d("hlrsmpp_lookups_total", channel="smpp", status="UNDELIV", err="011") == 2
    assert d("hlrsmpp_lookups_total", channel="http", status="DELIVRD", err="000") == 1
    for reason in ("invalid_destination", "no_coverage", "no_credit", "limit_day"):
        assert d("hlrsmpp_lookups_refused_total", channel="smpp", reason=reason) == 1, reason

    # Receipts: latency of the 5 acknowledged, queues of accounts nobody receives for.
    assert d("hlrsmpp_receipt_latency_seconds_count") == 5
    assert d("hlrsmpp_receipt_latency_seconds_bucket", le="+Inf") == 5
    assert 0 < d("hlrsmpp_receipt_latency_seconds_sum") < 5 * 10
    assert d("hlrsmpp_receipts_acknowledged_total", account="demo") == 5
    assert after.v("hlrsmpp_receipts_queued", account="pre") == 2
    assert after.v("hlrsmpp_receipts_queued", account="lim") == 1
    assert d("hlrsmpp_receipt_retries_total", account="demo", cause="error") == 0

    # Credit: prepaid accounts only, in credits.
    assert after.v("hlrsmpp_account_credit", account="pre") == pytest.approx(0.05)
    assert ("hlrsmpp_account_credit", frozenset({("account", "demo")})) not in after

    # HTTP by route template and code (the first scrape is counted by the second).
    assert d("hlrsmpp_http_requests_total", route="/websmpp/hlr/lookup", code="200") == 1
    assert d("hlrsmpp_http_requests_total", route="/metrics", code="200") >= 1
    assert d("hlrsmpp_journal_commits_total") >= 1
    assert after.v("hlrsmpp_build_info", version=metrics.VERSION, codec=metrics.CODEC, commit=metrics.COMMIT,
                   draws=metrics.DRAWS) == 1
    assert "process_resident_memory_bytes" in after.families or "process_cpu_seconds" in after.families

    # Everything unbinds: the gauges go back to zero.
    for esme in (trx, pre, lim):
        esme.close()
    final = wait_for(st, lambda s: s.v("hlrsmpp_connections") == 0)
    for mode in ("tx", "rx", "trx"):
        assert final.v("hlrsmpp_sessions", mode=mode) == 0
    assert final.minus(after, "hlrsmpp_pdus_received_total", command="unbind", status="ESME_ROK") == 3
    assert final.minus(after, "hlrsmpp_pdus_sent_total", command="unbind_resp", status="ESME_ROK") == 3


def test_a_bind_refused_for_its_version_is_counted(make_server):
    """A bind_transceiver announcing SMPP 3.3 is refused ESME_RBINDFAIL for its version
    before the account is looked at (its wrong password is not what is counted)."""
    st = make_server(accounts=[{"system_id": "demo", "password": "demo"}])
    before = scrape(st)
    bind = Pdu(Command.BIND_TRANSCEIVER, 1, 0, {
        "system_id": "demo", "password": "nope", "system_type": "", "interface_version": 0x33,
        "addr_ton": 0, "addr_npi": 0, "address_range": ""})
    with socket.create_connection(("127.0.0.1", st.smpp_port), timeout=10) as sock:
        sock.sendall(encode(bind))
        data = b""
        while len(data) < 4 or len(data) < struct.unpack(">I", data[:4])[0]:
            chunk = sock.recv(4096)
            assert chunk, "closed before the bind_transceiver_resp"
            data += chunk
    resp = decode(data)
    assert (resp.command, resp.status, resp.sequence) == (Command.BIND_TRANSCEIVER_RESP, Status.RBINDFAIL, 1)
    after = scrape(st)
    assert after.minus(before, "hlrsmpp_binds_total", mode="trx", result="interface_version") == 1
    assert after.minus(before, "hlrsmpp_binds_total", mode="trx", result="bad_password") == 0


def test_receipt_retries_by_cause(make_server):
    """An error deliver_sm_resp and a missing one each make one retry, per account."""
    st = make_server(hlr=HLR, smpp={"response_timeout": 1.0},
                     receipts={"retry_min": 0.1, "retry_max": 0.2})
    before = scrape(st)
    esme = SmpplibEsme(st.smpp_port)
    answers = iter([0x08])  # the first receipt is refused, the others acknowledged
    esme.client.set_message_received_handler(lambda pdu: (esme.receipts.append(pdu), next(answers, None))[1])
    esme.bind("transceiver")
    submit_all(esme, [uk(OK_PREFIX, 1)])
    esme.pump(lambda: len(esme.receipts) == 2)   # refused, then sent again
    s = wait_for(st, lambda s: s.minus(before, "hlrsmpp_receipts_acknowledged_total", account="demo") == 1)
    assert s.minus(before, "hlrsmpp_receipt_retries_total", account="demo", cause="error") == 1
    assert s.minus(before, "hlrsmpp_receipt_retries_total", account="demo", cause="timeout") == 0

    # Now stop reading: the deliver_sm goes unanswered past response_timeout.
    seq = esme.submit(uk(OK_PREFIX, 2))
    esme.pump(lambda: seq in esme.resps)
    wait_for(st, lambda s: s.minus(before, "hlrsmpp_receipt_retries_total", account="demo", cause="timeout") == 1)
    esme.pump(lambda: len(esme.receipts) >= 4)   # the late one and its retry, both answered
    s = wait_for(st, lambda s: s.minus(before, "hlrsmpp_receipts_acknowledged_total", account="demo") == 2)
    assert s.minus(before, "hlrsmpp_unexpected_responses_total") == 1   # the late answer
    assert s.minus(before, "hlrsmpp_receipt_latency_seconds_count") == 2
    esme.close()


def test_receipts_expire_and_connections_are_refused(make_server):
    st = make_server(hlr=HLR, receipts={"ttl": 1.0}, smpp={"max_connections_per_ip": 1})
    before = scrape(st)
    esme = SmpplibEsme(st.smpp_port)
    esme.bind("transmitter")
    submit_all(esme, [uk(OK_PREFIX, 1), uk(OK_PREFIX, 2)])   # nobody to receive them
    assert scrape(st).v("hlrsmpp_receipts_queued", account="demo") == 2
    extra = socket.create_connection(("127.0.0.1", st.smpp_port))
    extra.settimeout(5)
    assert extra.recv(16) == b""   # over max_connections_per_ip: closed at once
    extra.close()
    s = wait_for(st, lambda s: s.v("hlrsmpp_receipts_queued", account="demo") == 0)
    assert s.minus(before, "hlrsmpp_receipts_expired_total", account="demo") == 2
    assert s.minus(before, "hlrsmpp_connections_rejected_total", listener="smpp",
                   reason="max_connections_per_ip") == 1
    esme.close()


def test_grafana_dashboard_uses_only_exposed_metrics(server):
    """conf/grafana-dashboard.json is a dashboard model whose every query names
    families /metrics serves."""
    dash = json.loads((ROOT / "conf" / "grafana-dashboard.json").read_text())
    assert dash["title"] and dash["uid"] and isinstance(dash["schemaVersion"], int)
    panels = [p for p in dash["panels"] if p.get("type") != "row"]
    assert len(panels) >= 7
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    exposed = set()
    for fam in text_string_to_metric_families(metrics.exposition(metrics.registry_for(server.server)).decode()):
        # A family with no sample yet (no traffic) still declares its sample names.
        exposed.update(s.name for s in fam.samples)
        exposed.add(fam.name)
        if fam.type == "counter":
            exposed.add(fam.name + "_total")
        elif fam.type == "histogram":
            exposed.update(fam.name + suffix for suffix in ("_bucket", "_count", "_sum"))
    import re
    used = set()
    for p in panels:
        assert p["targets"], p["title"]
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        for t in p["targets"]:
            used.update(re.findall(r"\b(hlrsmpp_[a-z_]+)", t["expr"]))
            assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]
    assert used, "no hlrsmpp metric in the dashboard"
    missing = {m for m in used if m not in exposed}
    assert not missing, missing
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    assert "histogram_quantile(0.5" in exprs and "histogram_quantile(0.99" in exprs
    for family in ("hlrsmpp_lookups_total", "hlrsmpp_sessions", "hlrsmpp_receipts_queued",
                   "hlrsmpp_account_credit", "hlrsmpp_lookups_refused_total", "hlrsmpp_http_requests_total"):
        assert family in exprs, family


# ------------------------------------------------------------------ units

def test_unknown_commands_and_statuses_fold():
    table: dict = {}
    data = b"".join(struct.pack(">IIII", 16, cid, status, 1)
                    for cid, status in [(0x15, 0), (0x99, 0), (0x12345, 7), (0x80000005, 0xDEAD), (0x80000005, 0)])
    assert framer.count_pdus(table, data) == len(data)
    assert table == {(0x15, 0): 1, (framer.UNKNOWN, 0): 1, (framer.UNKNOWN, 0x07): 1,
                     (0x80000005, framer.UNKNOWN): 1, (0x80000005, 0): 1}
    # A flood of random ids and statuses stays a handful of keys.
    rnd = random.Random(1)
    flood = b"".join(struct.pack(">IIII", 16, rnd.getrandbits(32), rnd.getrandbits(32), 1) for _ in range(2000))
    framer.count_pdus(table, flood)
    assert len(table) < 120


def test_an_impossible_length_ends_counting():
    table: dict = {}
    data = struct.pack(">IIII", 4, 0x15, 0, 1) + struct.pack(">IIII", 16, 0x15, 0, 2)
    assert framer.count_pdus(table, data) == len(data)
    assert table == {(0x15, 0): 1}


pdus = st_.lists(st_.tuples(st_.sampled_from([0x04, 0x80000004, 0x15, 0x80000005, 0x09]),
                            st_.sampled_from([0, 0x58, 0x0B]), st_.binary(max_size=40)), max_size=20)


@settings(max_examples=200, deadline=None)
@given(pdus, st_.lists(st_.integers(0, 2000), max_size=12))
def test_pdu_counter_any_chunking(pdus, cuts):
    data = b"".join(struct.pack(">IIII", 16 + len(body), cid, status, i) + body
                    for i, (cid, status, body) in enumerate(pdus))
    expected: dict = {}
    for cid, status, _ in pdus:
        expected[cid, status] = expected.get((cid, status), 0) + 1
    counter = framer.PduCounter({})
    prev = 0
    for cut in sorted({c for c in cuts if c < len(data)}) + [len(data)]:
        counter.feed(data[prev:cut])
        prev = cut
    assert counter.table == expected


def test_count_out_and_names():
    metrics.STATS.reset()
    try:
        metrics.STATS.count_out(int(Command.SUBMIT_SM_RESP), 0x58, 2)
        metrics.STATS.count_out(0x7777, 0)
        framer.count_pdus(metrics.STATS.pdus_out, encode_submit_sm_resp(1, 0, b"7") * 3)

        # No server: the collector still answers with the process's counters.
        s = Scrape(metrics.exposition(metrics.registry_for(None, process=False)).decode())
        assert s.v("hlrsmpp_pdus_sent_total", command="submit_sm_resp", status="ESME_RTHROTTLED") == 2
        assert s.v("hlrsmpp_pdus_sent_total", command="submit_sm_resp", status="ESME_ROK") == 3
        assert s.v("hlrsmpp_pdus_sent_total", command="unknown", status="ESME_ROK") == 1
    finally:
        metrics.STATS.reset()
