"""``hlrsmpp accounts`` and ``hlrsmpp history`` against a real server's admin API."""
from __future__ import annotations

import csv
import io
import json

import pytest

from conftest import free_port
from esme import SmpplibEsme
from test_cli import REACHABLE, UNKNOWN, assert_friendly, hlrsmpp

TOKEN = "t0ken"


@pytest.fixture
def admin(make_server):
    srv = make_server([{"system_id": "demo", "password": "demo"},
                       {"system_id": "acme", "password": "s3cret", "credit": 5, "price": 0.1}],
                      admin={"token": TOKEN})
    srv.url = f"http://127.0.0.1:{srv.http_port}"
    return srv


def cli(srv, *argv, token=TOKEN):
    """Through the environment, as an operator would set it up."""
    return hlrsmpp(*argv, env={"HLRSMPP_URL": srv.url, "HLRSMPP_ADMIN_TOKEN": token})


def test_accounts_list_and_show(admin):
    p = cli(admin, "accounts", "list")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["SYSTEM_ID", "ENABLED", "CREDIT", "PRICE", "EXPIRES", "COVERAGE", "TODAY",
                                "QUEUED"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["acme"][:3] == ["acme", "yes", "5"] and rows["demo"][2] == "unlimited"
    p = cli(admin, "accounts", "list", "--json")
    assert {a["system_id"] for a in json.loads(p.stdout)} == {"acme", "demo"}
    p = cli(admin, "accounts", "show", "acme")
    assert p.returncode == 0, p.stderr
    assert "system_id:        acme" in p.stdout and "credit:           5" in p.stdout
    assert "password" not in p.stdout


def test_accounts_create_top_up_disable_enable(admin):
    p = cli(admin, "accounts", "create", "shop", "--password", "pw", "--credit", "2.5", "--coverage", "44,33",
            "--tps", "50")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "account shop created, credit 2.5"
    acc = admin.server.book.get("shop")
    assert acc.credit == 2_500_000 and acc.settings.coverage == frozenset({"44", "33"}) and acc.settings.password == "pw"
    p = cli(admin, "accounts", "top-up", "shop", "10", "--note", "invoice 42")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "account shop topped up by 10: credit 12.5"
    assert admin.server.book.get("shop").credit == 12_500_000
    p = cli(admin, "accounts", "show", "shop", "--ledger")
    assert "top_up" in p.stdout and "invoice 42" in p.stdout
    # The new account works over SMPP, until it is disabled.
    esme = SmpplibEsme(admin.smpp_port)
    esme.bind(system_id="shop", password="pw")
    esme.close()
    assert cli(admin, "accounts", "disable", "shop").stdout.strip() == "account shop disabled"
    assert admin.server.book.get("shop").settings.enabled is False
    p = hlrsmpp("lookup", REACHABLE, "--system-id", "shop", "--password", "pw", "--port", admin.smpp_port)
    assert p.returncode == 2 and "refused" in p.stderr
    assert cli(admin, "accounts", "enable", "shop").stdout.strip() == "account shop enabled"
    assert admin.server.book.get("shop").settings.enabled is True


def test_accounts_errors_are_one_line(admin):
    assert_friendly(cli(admin, "accounts", "show", "nobody"), "no account 'nobody'", "404", code=1)
    assert_friendly(cli(admin, "accounts", "create", "acme", "--password", "x"), "already exists", code=1)
    assert_friendly(cli(admin, "accounts", "top-up", "acme", "-3"), "positive amount", code=1)
    assert_friendly(cli(admin, "accounts", "top-up", "demo", "3"), "unlimited credit", code=1)
    assert_friendly(cli(admin, "accounts", "list", token="wrong"), "admin token refused", code=1)
    p = hlrsmpp("accounts", "list", "--url", admin.url, env={"HLRSMPP_ADMIN_TOKEN": ""})
    assert_friendly(p, "no admin token", code=2)
    p = hlrsmpp("accounts", "list", "--url", f"http://127.0.0.1:{free_port()}", "--token", TOKEN)
    assert_friendly(p, "cannot reach the admin API", code=2)
    p = hlrsmpp("history", "--url", f"http://127.0.0.1:{admin.smpp_port}", "--token", TOKEN)
    assert p.returncode != 0 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_history_table_csv_and_filters(admin, tmp_path):
    for system_id, password, numbers in (("demo", "demo", [REACHABLE, UNKNOWN]),
                                         ("acme", "s3cret", [REACHABLE])):
        p = hlrsmpp("lookup", *numbers, "--system-id", system_id, "--password", password,
                    "--port", admin.smpp_port)
        assert p.returncode == 0, p.stderr
    admin.persist()
    p = cli(admin, "history")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:5] == ["ID", "SUBMITTED", "ACCOUNT", "NUMBER", "STATUS"]
    assert len(lines) == 4
    assert [line.split()[2] for line in lines[1:]] == ["acme", "demo", "demo"]   # newest first
    assert len(cli(admin, "history", "--limit", "1").stdout.splitlines()) == 2
    p = cli(admin, "history", "--account", "demo", "--json")
    items = json.loads(p.stdout)
    assert [(i["number"], i["err"]) for i in items] == [(UNKNOWN, 12), (REACHABLE, 0)]   # newest first
    assert int(items[0]["id"]) > int(items[1]["id"])
    assert any("012 UNKNOWN_SUBSCRIBER" in line for line in cli(admin, "history", "--account", "demo")
               .stdout.splitlines())
    p = cli(admin, "history", "--since", "2000-01-01", "--until", "2000-01-02", "--json")
    assert json.loads(p.stdout) == []
    out = tmp_path / "history.csv"
    p = cli(admin, "history", "--csv", out)
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert sorted((r["account"], r["number"]) for r in rows) == [
        ("acme", REACHABLE), ("demo", REACHABLE), ("demo", UNKNOWN)]
    assert "3 lookup(s) written" in p.stderr
    p = cli(admin, "history", "--account", "acme", "--csv", "-")
    assert [r["cost"] for r in csv.DictReader(io.StringIO(p.stdout))] == ["0.1"]
    assert_friendly(cli(admin, "history", "--since", "yesterday"), "since", "HTTP 400", code=2)
    # The API's filters: one lookup of the three was undelivered (unknown subscriber).
    p = cli(admin, "history", "--status", "UNDELIV", "--json")
    assert [(i["account"], i["number"]) for i in json.loads(p.stdout)] == [("demo", UNKNOWN)]
    p = cli(admin, "history", "--prefix", REACHABLE[:6], "--err", "0", "--csv", "-")
    assert sorted(r["account"] for r in csv.DictReader(io.StringIO(p.stdout))) == ["acme", "demo"]
    assert_friendly(cli(admin, "history", "--network", "12"), "network", "HTTP 400", code=2)
