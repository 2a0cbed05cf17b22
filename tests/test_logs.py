"""Logs: JSON lines off a terminal, readable on one; one event per session change,
error and operator action, with the session's context; never a password or token;
nothing per PDU at info level.
"""
from __future__ import annotations

import io
import json
import logging
import socket
import subprocess
import sys
import threading
import urllib.parse
import urllib.request

import pytest
import smpplib.exceptions
import structlog

from hlrsmpp import log as log_mod
from conftest import ServerProcess, free_port
from http_client import http_request
from esme import SmpplibEsme

# Distinctive secrets (passwords are at most 8 characters in SMPP 3.4).
ALPHA_PW, BETA_PW, WRONG_PW, NEW_PW = "Qz7pW2xk", "Vk9mR4tj", "Wr0ngPwq", "Nw5acctz"
ADMIN_TOKEN = "tok-Hq83Zx-admin-77"
SECRETS = (ALPHA_PW, BETA_PW, WRONG_PW, NEW_PW, ADMIN_TOKEN)

CONFIG = f"""
storage: {{path: ./data}}
hlr: {{latency_ms: 0}}
admin: {{token: "{ADMIN_TOKEN}"}}
log: {{level: info}}
accounts:
  - {{system_id: alpha, password: "{ALPHA_PW}"}}
  - {{system_id: beta, password: "{BETA_PW}", credit: 10.0}}
"""


@pytest.fixture
def served(tmp_path):
    cfg = tmp_path / "hlrsmpp.yaml"
    cfg.write_text(CONFIG)
    env = {"HLRSMPP_LOG_FORMAT": ""}   # not forced: stderr is a pipe, so JSON
    proc = ServerProcess(cfg, free_port(), free_port(), env=env).start()
    yield proc
    proc.kill()


def test_logs_are_json_lines_without_secrets_and_quiet_per_pdu(served):
    base = f"http://127.0.0.1:{served.http_port}"
    # A bound transceiver, 500 lookups, their 500 receipts.
    esme = SmpplibEsme(served.smpp_port)
    esme.bind("transceiver", system_id="alpha", password=ALPHA_PW)
    seqs = [esme.submit(f"4474{i:08d}") for i in range(500)]
    esme.pump(lambda: all(s in esme.resps for s in seqs) and len(esme.receipts) == 500, timeout=60)
    # A bind with a wrong password.
    bad = SmpplibEsme(served.smpp_port)
    with pytest.raises(smpplib.exceptions.PDUError):
        bad.bind("transmitter", system_id="beta", password=WRONG_PW)
    bad.client.disconnect()
    # HTTP lookups carrying passwords in the query string, right and wrong.
    for pw in (BETA_PW, WRONG_PW):
        q = urllib.parse.urlencode({"username": "beta", "password": pw, "destination": "447400000001"})
        http_request(f"{base}/websmpp/hlr/lookup?{q}")
    # Operator actions with the admin token: create, change a password, top up, disable.
    status, body = http_request(f"{base}/api/v1/accounts", "POST",
                            {"system_id": "gamma", "password": NEW_PW, "credit": 5}, ADMIN_TOKEN)
    assert status == 201, body
    status, body = http_request(f"{base}/api/v1/accounts/gamma", "PATCH", {"password": ALPHA_PW[::-1]}, ADMIN_TOKEN)
    assert status == 200, body
    status, body = http_request(f"{base}/api/v1/accounts/gamma/top-up", "POST", {"credit": 1}, ADMIN_TOKEN)
    assert status in (200, 201), body
    status, body = http_request(f"{base}/api/v1/accounts/gamma/disable", "POST", {}, ADMIN_TOKEN)
    assert status == 200, body
    http_request(f"{base}/api/v1/accounts", "GET", token="not-the-token")
    esme.close()
    assert served.terminate() == 0
    text = served.output()   # stdout and stderr of the process

    # Every line is one JSON object with an event, a level and a time.
    lines = [line for line in text.splitlines() if line.strip()]
    events = []
    for line in lines:
        event = json.loads(line)
        assert {"event", "level", "timestamp", "logger"} <= event.keys(), line
        events.append(event)

    # No secret, in any form, anywhere.
    for secret in SECRETS:
        for form in {secret, urllib.parse.quote(secret), ALPHA_PW[::-1]}:
            assert form not in text, f"{form!r} in the logs"

    # Nothing per PDU: 500 lookups and receipts, a handful of lines.
    assert len(events) < 40, f"{len(events)} lines for 500 lookups:\n" + "\n".join(lines[:60])
    names = [e["event"] for e in events]
    for expected in ("server_started", "session_bound", "bind_refused", "session_closed",
                     "account_created", "account_updated", "credit_topped_up", "account_disabled",
                     "server_stopping", "server_stopped"):
        assert expected in names, (expected, names)

    # Session events carry the session's context.
    bound = next(e for e in events if e["event"] == "session_bound")
    assert bound["system_id"] == "alpha" and bound["mode"] == "trx" and bound["peer"] == "127.0.0.1"
    closed = next(e for e in events if e["event"] == "session_closed")
    assert closed["system_id"] == "alpha" and closed["mode"] == "trx" and closed["reason"]
    refused = next(e for e in events if e["event"] == "bind_refused")
    assert refused["system_id"] == "beta" and refused["reason"] == "bad_password"
    assert refused["level"] == "info" and refused["peer"] == "127.0.0.1"
    updated = next(e for e in events if e["event"] == "account_updated")
    assert updated["system_id"] == "gamma" and updated["keys"] == ["password"]   # the name, not the value


# ------------------------------------------------------------------ configure()

class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    hooks = sys.excepthook, threading.excepthook
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook, threading.excepthook = hooks
    structlog.reset_defaults()


def test_auto_is_json_off_a_terminal_and_readable_on_one(restore_logging):
    pipe = io.StringIO()
    log_mod.configure("auto", "info", pipe)
    structlog.get_logger("hlrsmpp.test").bind(peer="10.0.0.1").info("session_bound", system_id="x")
    line = json.loads(pipe.getvalue())
    assert line["event"] == "session_bound" and line["peer"] == "10.0.0.1" and line["logger"] == "hlrsmpp.test"

    tty = Tty()
    log_mod.configure("auto", "info", tty)
    structlog.get_logger("hlrsmpp.test").info("session_bound", system_id="x")
    text = tty.getvalue()
    assert "session_bound" in text and "system_id" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_levels_filter_and_stdlib_logs_share_the_format(restore_logging):
    pipe = io.StringIO()
    log_mod.configure("json", "warning", pipe)
    structlog.get_logger("hlrsmpp.test").info("quiet")
    structlog.get_logger("hlrsmpp.test").warning("loud")
    logging.getLogger("asyncio").error("Task exception was never retrieved")
    try:
        1 / 0
    except ZeroDivisionError:
        structlog.get_logger("hlrsmpp.test").exception("boom")
    lines = [json.loads(x) for x in pipe.getvalue().splitlines()]
    assert [x["event"] for x in lines] == ["loud", "Task exception was never retrieved", "boom"]
    assert lines[1]["logger"] == "asyncio" and lines[1]["level"] == "error"
    assert "ZeroDivisionError" in lines[2]["exception"]


def test_secret_keys_are_masked(restore_logging):
    pipe = io.StringIO()
    log_mod.configure("json", "info", pipe)
    structlog.get_logger("t").info("x", password="p4ss", token="t0k", params={"password": "p", "n": 1})
    line = json.loads(pipe.getvalue())
    assert line["password"] == line["token"] == log_mod.MASK
    assert line["params"] == {"password": log_mod.MASK, "n": 1}


def test_uncaught_exceptions_are_logged_too(restore_logging):
    pipe = io.StringIO()
    log_mod.configure("json", "info", pipe)
    try:
        raise OSError(98, "address already in use")
    except OSError:
        sys.excepthook(*sys.exc_info())
    t = threading.Thread(target=lambda: 1 / 0, name="commit-thread")
    t.start()
    t.join()
    crash, thread = (json.loads(x) for x in pipe.getvalue().splitlines())
    assert crash["event"] == "unhandled_exception" and crash["level"] == "critical"
    assert "address already in use" in crash["error"] and "Traceback" in crash["exception"]
    assert thread["event"] == "thread_exception" and thread["thread_name"] == "commit-thread"


@pytest.mark.e2e
def test_a_server_that_cannot_start_says_why_in_json(tmp_path):
    """The HTTP port is taken: the process exits 2, its output still JSON lines, the
    reason one of them, without a traceback."""
    cfg = tmp_path / "hlrsmpp.yaml"
    cfg.write_text("storage: {path: ./data}\naccounts: [{system_id: a, password: b}]\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "hlrsmpp", "serve", "--config", str(cfg),
                            "--smpp-port", str(free_port()), "--http-port", str(port)],
                           cwd=tmp_path, capture_output=True, timeout=60)
    assert r.returncode == 2
    events = [json.loads(line) for line in r.stderr.decode().splitlines() if line.strip()]
    failed = [e for e in events if e["event"] == "start_failed"]
    assert failed and "address already in use" in failed[0]["error"], r.stderr.decode()[-2000:]
    assert "Traceback" not in r.stderr.decode()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        log_mod.configure("xml", "info", io.StringIO())
    with pytest.raises(ValueError):
        log_mod.configure("json", "loud", io.StringIO())


def test_credentials_inside_values_are_masked(restore_logging):
    """A Redis URL, a webhook URL or an AMS HLR API query string in any value or message."""
    pipe = io.StringIO()
    log_mod.configure("json", "info", pipe)
    t = structlog.get_logger("t")
    t.info("cluster_joined", storage="redis://:S3cretPw@redis:6379/0")
    t.warning("webhook_failed", url="https://bob:pw123@cb.example/x?token=abc42&n=1")
    logging.getLogger("aiohttp.server").error(
        "Error handling request GET /websmpp/hlr/lookup?username=a&password=Qz7pW2xk&destination=1")
    try:
        raise ConnectionError("cannot reach redis://user:hunter2@h:6379")
    except ConnectionError:
        t.error("redis_call_failed", exc_info=sys.exc_info())
    text = pipe.getvalue()
    for secret in ("S3cretPw", "pw123", "abc42", "Qz7pW2xk", "hunter2"):
        assert secret not in text, secret
    lines = [json.loads(x) for x in text.splitlines()]
    assert lines[0]["storage"] == "redis://***@redis:6379/0"
    assert lines[1]["url"] == "https://***@cb.example/x?token=***&n=1"
    assert "username=a&password=***&destination=1" in lines[2]["event"]
    assert "Traceback" in lines[3]["exception"] and "redis://***@h:6379" in lines[3]["exception"]
