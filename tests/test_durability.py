"""Receipts are never lost, charges never lost nor doubled: kill -9 under load, restart.

A real ``hlrsmpp serve`` process, real smpplib clients (4 Tx and one Rx), real SQLite.
"""
from __future__ import annotations

import json
import re
import socket
import sqlite3
import threading
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from conftest import ServerProcess, free_port
from esme import RECEIPT_RE, SmpplibEsme

pytestmark = pytest.mark.slow  # kill -9 and SIGTERM under load, restarts

PER_TX = 5000
TXS = 4
CREDIT = Decimal("100000")


def _write_config(tmp_path, **extra) -> "Path":
    cfg = {
        "smpp": {"host": "127.0.0.1"},
        "http": {"host": "127.0.0.1"},
        "storage": {"path": str(tmp_path / "data")},
        "log": {"format": "json", "level": "warning"},
        "accounts": [{"system_id": "load", "password": "load", "credit": str(CREDIT), "price": 0.1}],
    }
    cfg.update(extra)
    path = tmp_path / "hlrsmpp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _transmitter(port: int, index: int, acked: dict, stop: threading.Event, window: int = 50) -> None:
    """Submit PER_TX lookups in windows; record every ESME_ROK id. Stops quietly when
    the server dies under it."""
    try:
        esme = SmpplibEsme(port, timeout=2)
        esme.bind("transmitter", system_id="load", password="load")
        sent = 0
        while sent < PER_TX and not stop.is_set():
            seqs = [esme.submit(f"4479{index}{(sent + k):07d}") for k in range(window)]
            sent += window
            esme.pump(lambda: all(s in esme.resps for s in seqs), timeout=20)
            for s in seqs:
                if esme.resps[s].status == 0:
                    acked[esme.resps[s].message_id.decode()] = True
    except Exception:
        return  # the server was killed: what was acknowledged so far is recorded


class Receiver:
    """An Rx session acknowledging every receipt, collecting receipted ids."""

    def __init__(self, port: int):
        self.ids: list[str] = []
        self.texts_ok = True
        self.esme = SmpplibEsme(port, timeout=0.5)
        self.esme.bind("receiver", system_id="load", password="load")
        self.esme.client.set_message_received_handler(self._on_receipt)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _on_receipt(self, pdu):
        mid = pdu.receipted_message_id.decode()
        m = RECEIPT_RE.match(pdu.short_message.decode("ascii"))
        if not m or m["id"] != mid:
            self.texts_ok = False
        self.ids.append(mid)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.esme.client.read_once(auto_send_enquire_link=False)
            except socket.timeout:
                continue
            except Exception:
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        try:
            self.esme.client.disconnect()
        except Exception:
            pass


def _store_rows(tmp_path) -> tuple[set[str], int, int]:
    db = sqlite3.connect(tmp_path / "data" / "hlrsmpp.sqlite3")
    ids = {str(r[0]) for r in db.execute("SELECT id FROM lookups")}
    cost = db.execute("SELECT COALESCE(SUM(cost), 0) FROM lookups").fetchone()[0]
    pending = db.execute("SELECT COUNT(*) FROM receipt_queue").fetchone()[0]
    db.close()
    return ids, cost, pending


def _credit(tmp_path) -> Decimal:
    """The account's remaining credit as the store holds it."""
    db = sqlite3.connect(tmp_path / "data" / "hlrsmpp.sqlite3")
    record = json.loads(db.execute("SELECT record FROM accounts WHERE system_id='load'").fetchone()[0])
    db.close()
    return sum(Decimal(p["credit"]) for p in record["packages"])


@pytest.mark.timeout(300)
def test_kill_9_under_load_loses_no_receipt_and_no_charge(tmp_path):
    smpp_port, http_port = free_port(), free_port()
    proc = ServerProcess(_write_config(tmp_path), smpp_port, http_port).start()
    acked: dict[str, bool] = {}
    stop = threading.Event()
    rx = Receiver(smpp_port)
    threads = [threading.Thread(target=_transmitter, args=(smpp_port, i, acked, stop), daemon=True)
               for i in range(TXS)]
    for t in threads:
        t.start()
    # Kill mid-run: after a good share of lookups were acknowledged.
    deadline = time.monotonic() + 120
    while len(acked) < TXS * PER_TX // 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(acked) >= TXS * PER_TX // 3, "load did not get going"
    proc.kill()
    stop.set()
    for t in threads:
        t.join(30)
    rx.close()
    acked_before_kill = set(acked)
    received_before = set(rx.ids)

    # Restart on the same data: every acknowledged lookup's receipt must come.
    proc = ServerProcess(_write_config(tmp_path), smpp_port, http_port).start()
    try:
        rx2 = Receiver(smpp_port)
        deadline = time.monotonic() + 120
        while not acked_before_kill <= (received_before | set(rx2.ids)) and time.monotonic() < deadline:
            time.sleep(0.05)
        received = received_before | set(rx2.ids)
        missing = acked_before_kill - received
        assert not missing, f"{len(missing)} acknowledged lookups never got a receipt"
        # Lookups committed just before the kill whose submit_sm_resp never reached the
        # ESME get their receipts too, last (oldest first): wait for the queue to empty.
        deadline = time.monotonic() + 60
        while _queued(http_port, "load") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rx.texts_ok and rx2.texts_ok
        rx2.close()
    finally:
        assert proc.terminate() == 0  # SIGTERM flushes the last acknowledgements
    credit_left = _credit(tmp_path)
    ids, cost, pending = _store_rows(tmp_path)
    assert received <= ids, "a receipt for a lookup the store never recorded"
    assert acked_before_kill <= ids
    # Exact money: every recorded lookup charged once, nothing charged unrecorded.
    assert Decimal(cost) / 1_000_000 == CREDIT - credit_left
    assert cost == sum(1 for _ in ids) * 100_000 - _refunded(tmp_path)
    assert pending == 0
    # The per-day rollups hold every recorded lookup exactly once: those summed before the
    # kill, those after it, none twice.
    db = sqlite3.connect(tmp_path / "data" / "hlrsmpp.sqlite3")
    for dim in "dcns":
        assert db.execute("SELECT SUM(count), SUM(cost) FROM rollup_sums WHERE dim = ?", (dim,)).fetchone() \
            == (len(ids), cost), dim
    db.close()


def _queued(http_port: int, account: str) -> float:
    """The server's receipts not yet acknowledged for ``account`` (its /metrics)."""
    scrape = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10).read().decode()
    found = re.search(rf'^hlrsmpp_receipts_queued{{account="{account}"}} (\S+)$', scrape, re.M)
    assert found, f"no hlrsmpp_receipts_queued for {account}"
    return float(found.group(1))


def _refunded(tmp_path) -> int:
    db = sqlite3.connect(tmp_path / "data" / "hlrsmpp.sqlite3")
    n = db.execute("SELECT COUNT(*) FROM lookups WHERE cost = 0").fetchone()[0]
    db.close()
    return n * 100_000


def test_sigterm_drains_and_restart_redelivers(tmp_path):
    """Receipts queued while no receiver is bound survive a clean stop and come after restart."""
    smpp_port, http_port = free_port(), free_port()
    proc = ServerProcess(_write_config(tmp_path), smpp_port, http_port).start()
    tx = SmpplibEsme(smpp_port)
    tx.bind("transmitter", system_id="load", password="load")
    seqs = [tx.submit(f"44791{k:07d}") for k in range(300)]
    tx.pump(lambda: all(s in tx.resps for s in seqs))
    ids = {tx.resps[s].message_id.decode() for s in seqs if tx.resps[s].status == 0}
    assert len(ids) == 300
    tx.client.disconnect()
    assert proc.terminate() == 0  # SIGTERM: clean exit
    proc = ServerProcess(_write_config(tmp_path), smpp_port, http_port).start()
    try:
        rx = Receiver(smpp_port)
        deadline = time.monotonic() + 30
        while not ids <= set(rx.ids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ids <= set(rx.ids)
        assert len(rx.ids) == len(set(rx.ids)) == 300  # a clean stop redelivers nothing twice
        rx.close()
    finally:
        proc.terminate()
