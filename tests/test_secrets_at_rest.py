"""Secrets at rest: passwords kept as salted scrypt hashes (SQLite and Redis), rows that
still hold one in clear are migrated at start, ``password_hash`` in the YAML (made by
``hlrsmpp hash-password``), data files 0600 in a 0700 directory, passwords never logged.
Real server (in-process and ``hlrsmpp serve``), real SQLite file, real redis-server."""
from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time

import pytest
import yaml

from conftest import ServerProcess, free_port
from redis_support import redis_server, redis_url  # noqa: F401  (fixtures)
from test_login_guards import RINVPASWD, ROK, bind
from test_store_failures import TOKEN, call

PLAIN = ("Yel10wSb", "Qz7rmX2k", "Nw4pL9tv")  # distinctive: easy to find in a file


def _raw(data_dir) -> bytes:
    """Every byte the store wrote: the database, its WAL and shared memory."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.iterdir()) if p.is_file())


def _records(db) -> dict[str, dict]:
    with sqlite3.connect(db) as c:
        return {sid: json.loads(rec) for sid, rec in c.execute("SELECT system_id, record FROM accounts")}


def test_passwords_are_stored_as_salted_hashes(make_server, tmp_path):
    accounts = [{"system_id": "acme", "password": PLAIN[0], "credit": 5},
                {"system_id": "twin", "password": PLAIN[0], "credit": 5}]
    st = make_server(accounts, admin={"token": TOKEN})
    status, body, _ = call(st.http_port, "POST", "/api/v1/accounts",
                           {"system_id": "made", "password": PLAIN[1], "credit": 1})
    assert status == 201 and "password" not in body and "password_hash" not in body
    assert call(st.http_port, "PATCH", "/api/v1/accounts/acme", {"password": PLAIN[2]})[0] == 200
    st.persist()
    data = tmp_path / "data"
    raw = _raw(data)
    for pw in PLAIN:
        assert pw.encode() not in raw
    recs = _records(data / "hlrsmpp.sqlite3")
    assert all("password" not in r and r["password_hash"].startswith("scrypt$") for r in recs.values())
    assert recs["twin"]["password_hash"] != _records(data / "hlrsmpp.sqlite3")["acme"]["password_hash"]
    # Binds check against the hashes: a changed password works, the old one no more.
    assert bind(st.smpp_port, "acme", PLAIN[2]) == ROK
    assert bind(st.smpp_port, "acme", PLAIN[0]) == RINVPASWD
    assert bind(st.smpp_port, "made", PLAIN[1]) == ROK
    assert bind(st.smpp_port, "made", "x" + PLAIN[1][1:]) == RINVPASWD
    st.stop()
    again = make_server(accounts, admin={"token": TOKEN})  # the stored hashes, after a restart
    assert bind(again.smpp_port, "made", PLAIN[1]) == ROK
    assert bind(again.smpp_port, "twin", PLAIN[0]) == ROK


def test_rows_with_a_password_in_clear_are_migrated_at_start(make_server, tmp_path):
    st = make_server([{"system_id": "acme", "password": "pw"}])
    st.stop()
    db = tmp_path / "data" / "hlrsmpp.sqlite3"
    legacy = {"system_id": "old", "password": PLAIN[1], "system_type": "HLR", "price": "0.1",
              "max_tx": 10, "enabled": True, "packages": [{"credit": "3", "size": "3"}]}
    with sqlite3.connect(db) as c:  # as an earlier version wrote it
        c.execute("INSERT INTO accounts (system_id, record, updated) VALUES (?, ?, ?)",
                  ("old", json.dumps(legacy), time.time()))
    again = make_server([{"system_id": "acme", "password": "pw"}])
    again.persist()
    rec = _records(db)["old"]
    assert "password" not in rec and rec["password_hash"].startswith("scrypt$")
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        c.execute("VACUUM")  # the old row's bytes leave the free pages too
    assert PLAIN[1].encode() not in _raw(tmp_path / "data")
    assert bind(again.smpp_port, "old", PLAIN[1]) == ROK


def _hash_cli(password: str) -> str:
    got = subprocess.run([sys.executable, "-m", "hlrsmpp", "hash-password", "--stdin"], input=password + "\n",
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    assert password not in got.stdout
    return got.stdout.strip()


def test_password_hash_in_the_yaml(make_server, tmp_path):
    hashed = _hash_cli(PLAIN[2])
    st = make_server([{"system_id": "acme", "password_hash": hashed}], bans={"after": 0})
    assert bind(st.smpp_port, "acme", PLAIN[2]) == ROK
    assert bind(st.smpp_port, "acme", PLAIN[2]) == ROK  # the second: remembered as verified
    assert bind(st.smpp_port, "acme", PLAIN[1]) == RINVPASWD
    for bad, why in (({"password_hash": "md5$abc"}, "password_hash"),
                     ({"password": "pw", "password_hash": hashed}, "one of the two")):
        with pytest.raises(Exception, match=why):
            make_server([{"system_id": "bad", **bad}])


def _serve(tmp_path, accounts, **extra) -> ServerProcess:
    cfg = {"smpp": {"host": "127.0.0.1"}, "http": {"host": "127.0.0.1"},
           "storage": {"path": str(tmp_path / "data")}, "log": {"format": "json", "level": "debug"},
           "admin": {"token": TOKEN}, "accounts": accounts, **extra}
    path = tmp_path / "hlrsmpp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = ServerProcess(path, free_port(), free_port()).start()
    deadline = time.monotonic() + 20
    while True:
        try:
            call(proc.http_port, "GET", "/healthz", token=None)
            return proc
        except OSError:
            assert time.monotonic() < deadline, proc.output()[-2000:]
            time.sleep(0.05)


@pytest.mark.e2e
def test_data_files_are_private_and_passwords_never_logged(tmp_path):
    old = os.umask(0o022)  # the usual umask: the server must not rely on a stricter one
    try:
        proc = _serve(tmp_path, [{"system_id": "acme", "password": PLAIN[0], "credit": 5}])
    finally:
        os.umask(old)
    try:
        assert bind(proc.smpp_port, "acme", PLAIN[0]) == ROK
        assert bind(proc.smpp_port, "acme", PLAIN[1]) == RINVPASWD
        assert call(proc.http_port, "PATCH", "/api/v1/accounts/acme", {"password": PLAIN[2]})[0] == 200
        assert call(proc.http_port, "POST", "/api/v1/accounts/acme/top-up", {"credit": "1"})[0] == 200
        status, _, _ = call(proc.http_port, "GET", "/api/v1/history", token=None,
                            headers={"Authorization": "Basic YWNtZTpZZWwxMHdTYg=="})  # acme:PLAIN[0]
        assert status == 401
    finally:
        assert proc.terminate() == 0
    data = tmp_path / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    files = [p for p in data.rglob("*")]
    assert any(p.name == "hlrsmpp.sqlite3" for p in files)
    for p in files:
        want = 0o700 if p.is_dir() else 0o600
        assert stat.S_IMODE(p.stat().st_mode) == want, (p, oct(p.stat().st_mode))
    log = proc.output()
    assert "bind_refused" in log and "account_updated" in log
    for pw in PLAIN:
        assert pw not in log


def test_redis_keeps_hashes_only(tmp_path, redis_url, redis_server):
    cfg = {"smpp": {"host": "127.0.0.1"}, "http": {"host": "127.0.0.1"},
           "storage": {"redis": {"url": redis_url}}, "log": {"format": "json", "level": "info"},
           "admin": {"token": TOKEN}, "accounts": [{"system_id": "acme", "password": PLAIN[0], "credit": 5}]}
    path = tmp_path / "hlrsmpp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = ServerProcess(path, free_port(), free_port()).start()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                call(proc.http_port, "GET", "/healthz", token=None)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert call(proc.http_port, "POST", "/api/v1/accounts",
                    {"system_id": "made", "password": PLAIN[1], "credit": 1})[0] == 201
        assert bind(proc.smpp_port, "made", PLAIN[1]) == ROK
    finally:
        proc.terminate()
    r = redis_server.client()
    for key in r.keys("*"):
        if r.type(key) == b"hash":
            blob = b"".join(v for kv in r.hgetall(key).items() for v in kv)
        elif r.type(key) == b"string":
            blob = r.get(key) or b""
        else:
            continue
        for pw in PLAIN:
            assert pw.encode() not in blob, key
    settings = json.loads(r.hget("hlrsmpp:acct:made", "settings"))
    assert "password" not in settings and settings["password_hash"].startswith("scrypt$")
