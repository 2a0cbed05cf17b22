"""Every metric of hlrsmpp, defined here once.

The hot path only bumps plain integers and dict entries on ``STATS`` (tens of
nanoseconds); ``ServerCollector`` turns them, and the live server state
(sessions, queues, credit), into prometheus-client metric families at scrape
time. Names are resolved then too: PDUs are counted by raw command id and
command_status, err codes as integers.

Labels are bounded: command names (unknown ids fold into ``unknown``), status
names (unknown values fold into ``other``), err codes of the receipt table,
bind modes and results, refusal reasons, HTTP route templates, and account ids
(bounded by configuration). ``STATS`` is per process, like every Prometheus
client library's default registry.

Families (``_total`` is added to counters by the exposition format):

========================================  =======  =================================
hlrsmpp_build_info                        gauge    version, codec, commit, draws (c or python)
hlrsmpp_connections                       gauge    open SMPP TCP connections
hlrsmpp_connections_rejected_total        counter  listener, reason (caps, descriptors, PROXY header, TLS handshake)
hlrsmpp_http_timeouts_total               counter  phase (header, body): slow requests closed
hlrsmpp_tarpitted_total                   counter  misbehaving peers answered smpp.tarpit late
hlrsmpp_sessions                          gauge    bound sessions by mode (tx, rx, trx)
hlrsmpp_binds_total                       counter  mode, result (ok or the refusal)
hlrsmpp_pdus_received_total               counter  command, status
hlrsmpp_pdus_sent_total                   counter  command, status
hlrsmpp_unexpected_responses_total        counter  deliver_sm_resp matching nothing
hlrsmpp_lookups_total                     counter  channel, status, err
hlrsmpp_lookups_refused_total             counter  channel, reason (limits, credit...)
hlrsmpp_account_lookups_total             counter  account: accounts marked metrics: true, and the 10 busiest
hlrsmpp_notifications_total               counter  kind, result (noted, email_sent, email_failed, webhook_...)
hlrsmpp_receipt_latency_seconds           histo    submit accepted -> deliver_sm_resp OK
hlrsmpp_receipts_queued                   gauge    account: receipts not acknowledged
hlrsmpp_receipts_inflight                 gauge    account: deliver_sm awaiting a resp
hlrsmpp_receipts_acknowledged_total       counter  account
hlrsmpp_receipt_retries_total             counter  account, cause (error, timeout)
hlrsmpp_receipts_expired_total            counter  account: dropped past receipts.ttl
hlrsmpp_account_credit                    gauge    account (prepaid accounts only)
hlrsmpp_http_requests_total               counter  route (template), code
hlrsmpp_journal_commits_total             counter  group commits
hlrsmpp_journal_commit_failures_total     counter
hlrsmpp_faults_injected_total             counter  action (test bench, docs/testing.md)
========================================  =======  =================================

plus the standard ``process_*`` and ``python_info`` families.
"""
from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from importlib import metadata

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from .accounts.store import COMMIT_IN_C
from .hlr.resolver import DRAWS_IN_C
from .smpp.codec import Command, speedups
from .smpp.framer import bounded_key
from .smpp.status import Status

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_COMMAND_NAMES = {int(c): c.name.lower() for c in Command}
_STATUS_NAMES = {int(s): s.label for s in Status}

try:
    VERSION = metadata.version("hlrsmpp")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    VERSION = "unknown"
#: What reads and writes the per-lookup PDUs, what runs a group commit in SQLite, and what
#: computes a number's seeded draws: "c" (built) or "python" (the fallback).
CODEC = "c" if speedups is not None else "python"
COMMIT = "c" if COMMIT_IN_C else "python"
DRAWS = "c" if DRAWS_IN_C else "python"


#: Accounts with a series of their own besides those marked ``metrics: true``: the busiest
#: N, so the number of series stays bounded however many accounts there are.
TOP_ACCOUNTS = 10


def account_samples(counts: Counter, book) -> list[tuple[str, int]]:
    """(system_id, lookups) of the marked accounts and the TOP_ACCOUNTS busiest, by name."""
    marked = {a.system_id for a in book if a.settings.metrics}
    chosen = marked | {sid for sid, _ in counts.most_common(TOP_ACCOUNTS)}
    return sorted((sid, counts.get(sid, 0)) for sid in chosen)


class Stats:
    """Plain counters the server bumps; read only at scrape time."""

    # (command_id, status) -> n, counted by the sessions' framers (smpp/framer.py;
    # unknown ids and statuses fold into UNKNOWN).
    pdus_in: dict[tuple[int, int], int]
    pdus_out: dict[tuple[int, int], int]
    binds: Counter[tuple[str, str]]               # (mode, result)
    lookups: Counter[tuple[str, int]]             # (channel, err)
    account_lookups: Counter[str]                 # system_id
    notifications: Counter[tuple[str, str]]
    refusals: Counter[tuple[str, str]]            # (channel, reason)
    http: Counter[tuple[str, int]]                # (route, code)
    receipts_expired: Counter[str]                # system_id
    faults: Counter[str]                          # action
    connections_rejected: Counter[tuple[str, str]]  # (listener, reason)
    http_timeouts: Counter[str]                   # phase

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Zero everything (tests). Tables are cleared in place: connections hold them."""
        for name in ("pdus_in", "pdus_out", "binds", "lookups", "account_lookups", "notifications", "refusals",
                     "http",
                     "receipts_expired", "faults", "connections_rejected", "http_timeouts"):
            table = self.__dict__.get(name)
            if table is None:
                self.__dict__[name] = {} if name.startswith("pdus") else Counter()
            else:
                table.clear()
        self.unexpected_resp = 0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.tarpitted = 0

    def observe_latencies(self, now: float, lookups) -> None:
        """Submit-to-acknowledged latency of each lookup, at ``now``."""
        counts, total = self.latency_counts, 0.0
        for lookup in lookups:
            seconds = now - lookup.submitted
            counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
            total += seconds
        self.latency_sum += total

    def count_out(self, command_id: int, status: int = 0, n: int = 1) -> None:
        """``n`` PDUs sent outside the session's own buffer (not per PDU on the hot path)."""
        key = (command_id, status)
        if key not in self.pdus_out:
            key = bounded_key(command_id, status)
        self.pdus_out[key] = self.pdus_out.get(key, 0) + n


STATS = Stats()


def _pdu_samples(table: dict, extra: dict | None = None):
    merged: dict = dict(table)
    for key, n in (extra or {}).items():
        if n:
            merged[key] = merged.get(key, 0) + n
    for (command_id, status), n in sorted(merged.items()):
        yield [_COMMAND_NAMES.get(command_id, "unknown"), _STATUS_NAMES.get(status, "other")], n


class ServerCollector:
    """Reads live server state (sessions, queues, credit) plus STATS. ``server`` is a
    started Server, or None: the counters of this process (STATS) only."""

    def __init__(self, server):
        self.server = server

    def collect(self):
        s, server = STATS, self.server
        g = GaugeMetricFamily("hlrsmpp_build_info",
                              "hlrsmpp version; its per-lookup codec, group commit and number draws",
                              labels=["version", "codec", "commit", "draws"])
        g.add_metric([VERSION, CODEC, COMMIT, DRAWS], 1)
        yield g
        g = GaugeMetricFamily("hlrsmpp_connections", "Open SMPP TCP connections")
        g.add_metric([], len(server.protocols) if server is not None else 0)
        yield g
        c = CounterMetricFamily("hlrsmpp_connections_rejected",
                                "Connections refused, by listener (smpp, http) and reason "
                                "(max_connections, max_connections_per_ip, descriptors, stopping; "
                                "before the session: proxy_header, tls_handshake, too_slow)",
                                labels=["listener", "reason"])
        for (listener, reason), n in sorted(s.connections_rejected.items()):
            c.add_metric([listener, reason], n)
        yield c
        c = CounterMetricFamily("hlrsmpp_http_timeouts", "HTTP connections closed for a request "
                                "too slow to arrive, by phase (header, body)", labels=["phase"])
        for phase, n in sorted(s.http_timeouts.items()):
            c.add_metric([phase], n)
        yield c
        c = CounterMetricFamily("hlrsmpp_tarpitted", "Misbehaving SMPP peers (framing errors, errors "
                                "before binding, repeated failed binds) answered smpp.tarpit seconds late")
        c.add_metric([], s.tarpitted)
        yield c
        g = GaugeMetricFamily("hlrsmpp_sessions", "Bound SMPP sessions by mode", labels=["mode"])
        counts = server.session_counts() if server is not None else {}
        for mode in ("tx", "rx", "trx"):
            g.add_metric([mode], counts.get(mode, 0))
        yield g
        c = CounterMetricFamily("hlrsmpp_binds", "Bind attempts by mode and result (ok or why refused)",
                                labels=["mode", "result"])
        for (mode, result), n in sorted(s.binds.items()):
            c.add_metric([mode, result], n)
        yield c
        c = CounterMetricFamily("hlrsmpp_pdus_received", "SMPP PDUs received by command and command_status",
                                labels=["command", "status"])
        for labels, n in _pdu_samples(s.pdus_in):
            c.add_metric(labels, n)
        yield c
        c = CounterMetricFamily("hlrsmpp_pdus_sent", "SMPP PDUs sent by command and command_status",
                                labels=["command", "status"])
        for labels, n in _pdu_samples(s.pdus_out):
            c.add_metric(labels, n)
        yield c
        c = CounterMetricFamily("hlrsmpp_unexpected_responses",
                                "deliver_sm_resp/data_sm_resp/generic_nack matching no deliver_sm in flight")
        c.add_metric([], s.unexpected_resp)
        yield c
        c = CounterMetricFamily("hlrsmpp_lookups", "Accepted lookups by channel, receipt status and err",
                                labels=["channel", "status", "err"])
        for (channel, err), n in sorted(s.lookups.items()):
            c.add_metric([channel, "DELIVRD" if err == 0 else "UNDELIV", f"{err:03d}"], n)
        yield c
        if server is not None:
            c = CounterMetricFamily("hlrsmpp_account_lookups",
                                    "Accepted lookups of the accounts marked metrics: true and of the "
                                    f"{TOP_ACCOUNTS} busiest (since the process started)", labels=["account"])
            for sid, n in account_samples(s.account_lookups, server.book):
                c.add_metric([sid], n)
            yield c
        c = CounterMetricFamily("hlrsmpp_notifications",
                                "Account notifications by kind and what happened: noted (in the outbox), "
                                "email_sent, email_failed, webhook_sent, webhook_failed (a try)",
                                labels=["kind", "result"])
        for (kind, result), n in sorted(s.notifications.items()):
            c.add_metric([kind, result], n)
        yield c
        c = CounterMetricFamily("hlrsmpp_lookups_refused",
                                "Refused lookups by channel and reason (limits, credit, coverage, number)",
                                labels=["channel", "reason"])
        for (channel, reason), n in sorted(s.refusals.items()):
            c.add_metric([channel, reason], n)
        yield c
        buckets, acc = [], 0
        for bound, n in zip(LATENCY_BUCKETS + (float("inf"),), s.latency_counts):
            acc += n
            buckets.append(("+Inf" if bound == float("inf") else str(bound), acc))
        h = HistogramMetricFamily("hlrsmpp_receipt_latency_seconds",
                                  "From submit_sm accepted to its receipt's deliver_sm_resp ESME_ROK")
        h.add_metric([], buckets, s.latency_sum)
        yield h
        if server is not None:
            yield from self._receipts()
        g = GaugeMetricFamily("hlrsmpp_account_credit", "Remaining prepaid credit (credits)",
                              labels=["account"])
        for account in (server.book if server is not None else ()):
            credit = account.credit
            if credit is not None:
                g.add_metric([account.system_id], credit / 1_000_000)
        yield g
        c = CounterMetricFamily("hlrsmpp_http_requests", "HTTP requests by route template and status code",
                                labels=["route", "code"])
        for (route, code), n in sorted(s.http.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            c.add_metric([route, str(code)], n)
        yield c
        c = CounterMetricFamily("hlrsmpp_faults_injected", "Test-bench faults applied", labels=["action"])
        for action, n in sorted(s.faults.items()):
            c.add_metric([action], n)
        yield c
        if server is None:
            return
        c = CounterMetricFamily("hlrsmpp_journal_commits", "Group commits to the store")
        c.add_metric([], server.journal.commits)
        yield c
        c = CounterMetricFamily("hlrsmpp_journal_commit_failures",
                                "Group commits the store refused (their lookups answered ESME_RSYSERR)")
        c.add_metric([], server.journal.failures)
        yield c
        if server.retention is not None:
            yield from retention_families(server.retention)

    def _receipts(self):
        s = STATS
        queued = GaugeMetricFamily("hlrsmpp_receipts_queued", "Receipts not yet acknowledged",
                                   labels=["account"])
        inflight = GaugeMetricFamily("hlrsmpp_receipts_inflight", "deliver_sm awaiting a response",
                                     labels=["account"])
        acked = CounterMetricFamily("hlrsmpp_receipts_acknowledged", "Receipts answered ESME_ROK",
                                    labels=["account"])
        retries = CounterMetricFamily("hlrsmpp_receipt_retries",
                                      "deliver_sm sent again after an error status or no response",
                                      labels=["account", "cause"])
        expired = CounterMetricFamily("hlrsmpp_receipts_expired", "Receipts dropped past receipts.ttl",
                                      labels=["account"])
        outboxes = self.server.outboxes
        for sid in sorted(outboxes):
            box = outboxes[sid]
            queued.add_metric([sid], box.size)
            inflight.add_metric([sid], len(box.inflight))
            acked.add_metric([sid], box.acked)
            retries.add_metric([sid, "error"], box.retries)
            retries.add_metric([sid, "timeout"], box.timeouts)
            expired.add_metric([sid], s.receipts_expired.get(sid, 0))
        yield from (queued, inflight, acked, retries, expired)


def retention_families(retention):
    """History retention: rows removed, the oldest lookup kept, the store's bytes (as of
    its last round, once a minute: nothing is measured on a scrape)."""
    c = CounterMetricFamily("hlrsmpp_history_pruned_rows",
                            "History rows removed by history.retention_days, by table", labels=["table"])
    for table, n in sorted(retention.pruned.items()):
        c.add_metric([table], n)
    yield c
    g = GaugeMetricFamily("hlrsmpp_store_bytes", "The store on disk, by kind: file (the database), wal "
                          "(its write-ahead log), free (pages inside the file that new lookups reuse)",
                          labels=["kind"])
    for kind, n in sorted(retention.sizes.items()):
        g.add_metric([kind], n)
    yield g
    if retention.oldest is not None:
        g = GaugeMetricFamily("hlrsmpp_history_oldest_timestamp_seconds",
                              "When the oldest lookup the store keeps was made (Unix time)")
        g.add_metric([], retention.oldest)
        yield g


def registry_for(server, process: bool = True) -> CollectorRegistry:
    """The registry /metrics serves: the server's families (``server`` None: this
    process's counters only), plus process_* and python_info (``process=False`` leaves
    those out)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ServerCollector(server))
    if process:
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
    return reg


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
