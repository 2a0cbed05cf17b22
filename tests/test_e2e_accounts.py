"""Account policy over SMPP, end to end: every bind and submit status of docs/smpp.md with smpplib."""
from __future__ import annotations

import datetime as dt
import time

import smpplib.exceptions

from esme import SmpplibEsme

UK = "447912345678"


def _bind_status(port, mode="transceiver", **kw) -> int:
    esme = SmpplibEsme(port)
    try:
        esme.bind(mode, **kw)
        return 0
    except smpplib.exceptions.PDUError as err:
        return err.args[1]
    finally:
        esme.client.disconnect()


def _statuses(esme, numbers):
    seqs = [esme.submit(n) for n in numbers]
    esme.pump(lambda: all(s in esme.resps for s in seqs))
    return [esme.resps[s].status for s in seqs]


def test_insufficient_credit(make_server):
    srv = make_server([{"system_id": "a", "password": "p", "credit": 0.25, "price": 0.1}])
    esme = SmpplibEsme(srv.smpp_port)
    esme.bind(system_id="a", password="p")
    assert _statuses(esme, [UK, "447912345679", "447912345670"]) == [0, 0, 0x10]
    esme.close()
    acc = srv.server.book.get("a")
    assert acc.credit == 50_000  # 0.25 - 2 x 0.1, the refused one not charged


def test_no_coverage(make_server):
    srv = make_server([{"system_id": "a", "password": "p", "coverage": [91]}])
    esme = SmpplibEsme(srv.smpp_port)
    esme.bind(system_id="a", password="p")
    assert _statuses(esme, [UK, "919589123456"]) == [0x12, 0]
    esme.close()


def test_expired_account_cannot_bind(make_server):
    yesterday = (dt.date.today() - dt.timedelta(days=2)).isoformat()
    srv = make_server([{"system_id": "a", "password": "p", "expires": yesterday}])
    assert _bind_status(srv.smpp_port, system_id="a", password="p") == 0x16


def test_expiry_while_bound_refuses_submit(make_server):
    srv = make_server([{"system_id": "a", "password": "p"}])
    esme = SmpplibEsme(srv.smpp_port)
    esme.bind(system_id="a", password="p")
    acc = srv.server.book.get("a")
    record = acc.to_record()
    record["expires"] = (dt.date.today() - dt.timedelta(days=2)).isoformat()
    srv.call(lambda: srv.server.book.replace(type(acc).from_config(record)))
    assert _statuses(esme, [UK]) == [0x16]
    esme.close()


def test_daily_limit_and_min_delay(make_server):
    srv = make_server([
        {"system_id": "day", "password": "p", "limits": {"per_day": 2}},
        {"system_id": "gap", "password": "p", "limits": {"min_delay_ms": 60000}},
        {"system_id": "tps", "password": "p", "limits": {"tps": 1}},
    ])
    for sid, expect in (("day", [0, 0, 0x58]), ("gap", [0, 0x58, 0x58]), ("tps", [0, 0x58, 0x58])):
        esme = SmpplibEsme(srv.smpp_port)
        esme.bind(system_id=sid, password="p")
        assert _statuses(esme, [UK, "447912345679", "447912345670"]) == expect, sid
        esme.close()


def test_a_restart_does_not_reopen_the_limits(make_server):
    """The day's, week's and month's counts come back from the history (SQLite), so a
    restart does not give an account its limits afresh."""
    accounts = [{"system_id": "day", "password": "p", "limits": {"per_day": 3}},
                {"system_id": "month", "password": "p", "limits": {"per_month": 2}},
                {"system_id": "free", "password": "p"}]
    srv = make_server(accounts)
    for sid, n in (("day", 2), ("month", 2), ("free", 2)):
        esme = SmpplibEsme(srv.smpp_port)
        esme.bind(system_id=sid, password="p")
        assert _statuses(esme, ["44791234567%d" % i for i in range(n)]) == [0] * n
        esme.close()
    srv.persist()
    srv.stop()
    srv = make_server(accounts)   # the same data directory
    counters = srv.call(lambda: {sid: srv.server.book.counters(srv.server.book.get(sid))
                                 for sid in ("day", "month")})
    assert (counters["day"]["day"], counters["day"]["month"]) == (2, 2)
    assert counters["month"]["month"] == 2
    for sid, expect in (("day", [0, 0x58]), ("month", [0x58]), ("free", [0, 0])):
        esme = SmpplibEsme(srv.smpp_port)
        esme.bind(system_id=sid, password="p")
        assert _statuses(esme, ["44791234568%d" % i for i in range(len(expect))]) == expect, sid
        esme.close()


def test_allowed_ips(make_server):
    srv = make_server([{"system_id": "in", "password": "p", "allowed_ips": ["127.0.0.0/8"]},
                       {"system_id": "out", "password": "p", "allowed_ips": ["10.1.2.0/24"]}])
    assert _bind_status(srv.smpp_port, system_id="in", password="p") == 0
    assert _bind_status(srv.smpp_port, system_id="out", password="p") == 0x0D


def test_max_tx(make_server):
    srv = make_server([{"system_id": "a", "password": "p", "max_tx": 2}])
    held = []
    for _ in range(2):
        e = SmpplibEsme(srv.smpp_port)
        e.bind("transmitter", system_id="a", password="p")
        held.append(e)
    assert _bind_status(srv.smpp_port, "transmitter", system_id="a", password="p") == 0x0D
    # The receiver is not a transmitter: it still binds.
    assert _bind_status(srv.smpp_port, "receiver", system_id="a", password="p") == 0
    for e in held:
        e.close()


def test_ip_ban_after_failed_logins(make_server):
    srv = make_server([{"system_id": "a", "password": "p"}], bans={"after": 3, "window": 60, "time": 300})
    for _ in range(3):
        assert _bind_status(srv.smpp_port, system_id="a", password="bad") == 0x0E
    # Banned now: even the right password is refused before it is checked.
    assert _bind_status(srv.smpp_port, system_id="a", password="p") == 0x0D


def test_receipt_queue_full(make_server):
    srv = make_server([{"system_id": "a", "password": "p"}], receipts={"max_queue": 3})
    tx = SmpplibEsme(srv.smpp_port)
    tx.bind("transmitter", system_id="a", password="p")  # no receiver: receipts wait
    assert _statuses(tx, [UK, "447912345679", "447912345670", "447912345671"]) == [0, 0, 0, 0x14]
    rx = SmpplibEsme(srv.smpp_port)
    rx.bind("receiver", system_id="a", password="p")
    rx.pump(lambda: len(rx.receipts) == 3)
    # Acknowledged receipts free the queue.
    deadline = time.monotonic() + 5
    while srv.server.outboxes["a"].size and time.monotonic() < deadline:
        rx.client.poll()
        time.sleep(0.01)
    assert _statuses(tx, ["447912345672"]) == [0]
    tx.close()
    rx.close()


def test_history_and_credit_exact(make_server):
    srv = make_server([{"system_id": "a", "password": "p", "credit": 1000}])
    esme = SmpplibEsme(srv.smpp_port)
    esme.bind(system_id="a", password="p")
    statuses = _statuses(esme, [f"4479{i:08d}" for i in range(500)] + ["12", "999"])
    assert statuses.count(0) == 500
    esme.pump(lambda: len(esme.receipts) == 500)
    esme.close()
    srv.persist()
    n, cost = srv.server.store.totals()["a"]
    assert n == 500
    acc = srv.server.book.get("a")
    assert acc.credit == 1000 * 1_000_000 - cost
