"""Every metric of hlrsmpp, defined here once.

The hot path only bumps plain integers on ``STATS`` (tens of nanoseconds); a
prometheus-client collector turns them into metric families at scrape time.
Labels are bounded: command names, status names, err codes, bind modes, and
account ids (bounded by configuration).
"""
from __future__ import annotations

from bisect import bisect_left
from collections import Counter

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Stats:
    """Plain counters the server bumps; read only at scrape time."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.pdus_in: Counter = Counter()      # (command, status) -> n
        self.pdus_out: Counter = Counter()
        self.binds: Counter = Counter()        # (mode, result) -> n
        self.lookups: Counter = Counter()      # (channel, err) -> n
        self.refusals: Counter = Counter()     # (channel, reason) -> n
        self.http: Counter = Counter()         # (route, code) -> n
        self.receipts_expired: Counter = Counter()  # account -> n
        self.faults: Counter = Counter()       # test-bench action -> n
        self.submit_sm = 0
        self.deliver_sm = 0
        self.receipt_retries = 0
        self.receipt_timeouts = 0
        self.unexpected_resp = 0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.connections_rejected = 0

    def observe_latency(self, seconds: float) -> None:
        self.latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds


STATS = Stats()


class ServerCollector:
    """Reads live server state (sessions, queues, credit) plus STATS."""

    def __init__(self, server):
        self.server = server

    def collect(self):
        s, server = STATS, self.server
        c = CounterMetricFamily("hlrsmpp_pdus_received", "SMPP PDUs received", labels=["command"])
        c.add_metric(["submit_sm"], s.submit_sm)
        for (cmd, _), n in s.pdus_in.items():
            c.add_metric([cmd], n)
        yield c
        c = CounterMetricFamily("hlrsmpp_pdus_sent", "SMPP PDUs sent", labels=["command", "status"])
        c.add_metric(["deliver_sm", "ESME_ROK"], s.deliver_sm)
        for (cmd, status), n in s.pdus_out.items():
            c.add_metric([cmd, status], n)
        yield c
        c = CounterMetricFamily("hlrsmpp_binds", "Bind attempts by mode and result", labels=["mode", "result"])
        for (mode, result), n in s.binds.items():
            c.add_metric([mode, result], n)
        yield c
        c = CounterMetricFamily("hlrsmpp_lookups", "Accepted lookups by channel and err",
                                labels=["channel", "err"])
        for (channel, err), n in s.lookups.items():
            c.add_metric([channel, f"{err:03d}"], n)
        yield c
        c = CounterMetricFamily("hlrsmpp_lookups_refused", "Refused lookups by channel and reason",
                                labels=["channel", "reason"])
        for (channel, reason), n in s.refusals.items():
            c.add_metric([channel, reason], n)
        yield c
        c = CounterMetricFamily("hlrsmpp_http_requests", "HTTP requests by route and code",
                                labels=["route", "code"])
        for (route, code), n in s.http.items():
            c.add_metric([route, str(code)], n)
        yield c
        c = CounterMetricFamily("hlrsmpp_receipt_retries", "deliver_sm retried after an error status")
        c.add_metric([], s.receipt_retries)
        yield c
        c = CounterMetricFamily("hlrsmpp_receipt_timeouts", "deliver_sm retried after no response")
        c.add_metric([], s.receipt_timeouts)
        yield c
        c = CounterMetricFamily("hlrsmpp_receipts_expired", "Receipts dropped past their TTL",
                                labels=["account"])
        for account, n in s.receipts_expired.items():
            c.add_metric([account], n)
        yield c
        c = CounterMetricFamily("hlrsmpp_faults_injected", "Test-bench faults applied", labels=["action"])
        for action, n in s.faults.items():
            c.add_metric([action], n)
        yield c
        c = CounterMetricFamily("hlrsmpp_connections_rejected", "Connections refused by limits or bans")
        c.add_metric([], s.connections_rejected)
        yield c
        buckets, acc = [], 0
        for bound, n in zip(LATENCY_BUCKETS + (float("inf"),), s.latency_counts):
            acc += n
            buckets.append(("+Inf" if bound == float("inf") else str(bound), acc))
        h = HistogramMetricFamily("hlrsmpp_receipt_latency_seconds",
                                  "submit_sm accepted to deliver_sm_resp ESME_ROK")
        h.add_metric([], buckets, s.latency_sum)
        yield h
        g = GaugeMetricFamily("hlrsmpp_sessions", "Bound SMPP sessions by mode", labels=["mode"])
        for mode, n in server.session_counts().items():
            g.add_metric([mode], n)
        yield g
        q = GaugeMetricFamily("hlrsmpp_receipts_queued", "Receipts not yet acknowledged",
                              labels=["account"])
        inflight = GaugeMetricFamily("hlrsmpp_receipts_inflight", "deliver_sm awaiting a response",
                                     labels=["account"])
        for sid, box in server.outboxes.items():
            q.add_metric([sid], box.size)
            inflight.add_metric([sid], len(box.inflight))
        yield q
        yield inflight
        g = GaugeMetricFamily("hlrsmpp_account_credit", "Remaining prepaid credit (credits)",
                              labels=["account"])
        for account in server.book:
            credit = account.credit
            if credit is not None:
                g.add_metric([account.system_id], credit / 1_000_000)
        yield g


def registry_for(server) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ServerCollector(server))
    return reg


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
