"""What a password guesser learns, and how long a ban holds: the order of the bind checks,
one answer for any bad credential over HTTP, bans that survive a restart, IPv6 banned
per /64. Real server, real sockets (several source addresses), real SQLite."""
from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import secrets
import socket
import struct
import subprocess
import urllib.parse

import pytest

ROK, RINVPASWD, RBINDFAIL = 0x00, 0x0E, 0x0D


def bind(port: int, system_id: str, password: str, host: str = "127.0.0.1", source: str | None = None,
         system_type: str = "HLR") -> int:
    """One bind_transceiver (SMPP 3.4 §4.1.5, written out here) from ``source``; its
    command_status."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.settimeout(10)
        if source is not None:
            s.bind((source, 0))
        s.connect((host, port))
        body = b"".join(v.encode() + b"\0" for v in (system_id, password, system_type)) + bytes([0x34, 0, 0]) + b"\0"
        s.sendall(struct.pack(">IIII", 16 + len(body), 0x00000009, 0, 1) + body)
        head = b""
        while len(head) < 16:
            chunk = s.recv(16 - len(head))
            assert chunk, "the server closed without a bind_resp"
            head += chunk
        length, command, status, seq = struct.unpack(">IIII", head)
        assert command == 0x80000009 and seq == 1
        return status


def get(port: int, path: str, headers=None, host: str = "127.0.0.1", source: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=10,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


NO_BANS = {"after": 0}
FAR = {"system_id": "far", "password": "right", "allowed_ips": ["10.0.0.0/8"]}
NEAR = {"system_id": "near", "password": "right"}


def test_outside_the_allowlist_every_password_gets_bindfail(make_server):
    st = make_server([FAR, NEAR], bans=NO_BANS)
    assert bind(st.smpp_port, "far", "wrong") == RBINDFAIL
    assert bind(st.smpp_port, "far", "right") == RBINDFAIL
    # Inside an allowlist (or without one) the codes stay those of the SMPP spec.
    assert bind(st.smpp_port, "near", "wrong") == RINVPASWD
    assert bind(st.smpp_port, "near", "right") == ROK


def test_a_banned_ip_with_the_right_password_gets_bindfail(make_server):
    st = make_server([NEAR], bans={"after": 2, "window": 60, "time": 600}, smpp={"tarpit": 0})
    assert bind(st.smpp_port, "near", "wrong", source="127.0.0.2") == RINVPASWD
    assert bind(st.smpp_port, "near", "wrong", source="127.0.0.2") == RINVPASWD  # banned now
    assert bind(st.smpp_port, "near", "right", source="127.0.0.2") == RBINDFAIL
    # IPv4: per address, a neighbour is not banned.
    assert bind(st.smpp_port, "near", "right", source="127.0.0.3") == ROK


def test_http_gives_one_answer_for_any_bad_credential(make_server):
    st = make_server([NEAR, FAR], bans=NO_BANS, admin={"token": "t0ken"})
    answers = {}
    for who, pw in (("near", "wrong"), ("nobody", "right"), ("nobody", "")):
        status, body = get(st.http_port, "/api/v1/history", basic(who, pw))
        answers[who, pw] = (status, json.loads(body))
    assert len({json.dumps(a, sort_keys=True) for a in answers.values()}) == 1, answers
    status, body = answers["near", "wrong"]
    assert status == 401 and body["error"]["code"] == "invalid_login"
    assert "system_id" not in body["error"]["code"] and "password" not in body["error"]["code"]
    # From outside the allowlist the password makes no difference either.
    assert get(st.http_port, "/api/v1/history", basic("far", "wrong")) == \
        get(st.http_port, "/api/v1/history", basic("far", "right"))
    # The AMS-style HTTP API: one line for all of them.
    lines = set()
    for who, pw in (("near", "wrong"), ("nobody", "right"), ("far", "wrong"), ("far", "right")):
        q = urllib.parse.urlencode({"username": who, "password": pw, "destination": "447400123456"})
        lines.add(get(st.http_port, f"/websmpp/hlr/lookup?{q}")[1])
    assert lines == {b"ERROR - 001 --> Either Systemid or password is incorrect"}


def test_a_ban_survives_a_restart(make_server):
    bans = {"after": 2, "window": 60, "time": 600}
    st = make_server([NEAR], bans=bans, smpp={"tarpit": 0})
    for _ in range(2):
        assert bind(st.smpp_port, "near", "wrong", source="127.0.0.4") == RINVPASWD
    assert bind(st.smpp_port, "near", "right", source="127.0.0.4") == RBINDFAIL
    st.stop()
    again = make_server([NEAR], bans=bans, smpp={"tarpit": 0})  # the same data directory
    assert bind(again.smpp_port, "near", "right", source="127.0.0.4") == RBINDFAIL
    status, body = get(again.http_port, "/api/v1/history", basic("near", "right"), source="127.0.0.4")
    assert status == 403 and json.loads(body)["error"]["code"] == "ip_banned"
    assert bind(again.smpp_port, "near", "right", source="127.0.0.5") == ROK


def test_an_ended_ban_is_not_restored(make_server):
    bans = {"after": 1, "window": 60, "time": 0.5}
    st = make_server([NEAR], bans=bans, smpp={"tarpit": 0})
    assert bind(st.smpp_port, "near", "wrong", source="127.0.0.6") == RINVPASWD
    st.stop()
    import time
    time.sleep(0.6)
    again = make_server([NEAR], bans=bans, smpp={"tarpit": 0})
    assert bind(again.smpp_port, "near", "right", source="127.0.0.6") == ROK


@pytest.fixture
def ipv6_prefix():
    """Three addresses of a random unique-local /64 on the loopback interface (and a
    fourth in another /64), removed afterwards. Needs root and IPv6."""
    net = ipaddress.IPv6Network((0xFD00 << 112 | secrets.randbits(40) << 64, 64))
    other = ipaddress.IPv6Network((int(net.network_address) + (1 << 64), 64))
    addrs = [str(net[1]), str(net[2]), str(net[0x1234_5678_9abc]), str(other[2])]
    added = []
    try:
        for a in addrs:
            subprocess.run(["ip", "-6", "addr", "add", f"{a}/64", "dev", "lo", "nodad"], check=True,
                           capture_output=True)
            added.append(a)
    except (OSError, subprocess.CalledProcessError) as e:
        for a in added:
            subprocess.run(["ip", "-6", "addr", "del", f"{a}/64", "dev", "lo"], capture_output=True)
        pytest.skip(f"cannot add IPv6 addresses to lo here (needs root and IPv6): {e}")
    yield addrs
    for a in added:
        subprocess.run(["ip", "-6", "addr", "del", f"{a}/64", "dev", "lo"], capture_output=True)


def test_ipv6_is_banned_per_64(make_server, ipv6_prefix):
    server_addr, guesser, neighbour, elsewhere = ipv6_prefix
    st = make_server([NEAR], bans={"after": 2, "window": 60, "time": 600}, smpp={"tarpit": 0, "host": "::"})
    for _ in range(2):
        assert bind(st.smpp_port, "near", "wrong", host=server_addr, source=guesser) == RINVPASWD
    assert bind(st.smpp_port, "near", "right", host=server_addr, source=guesser) == RBINDFAIL
    # Another address of the same /64 is the same subscriber: banned too.
    assert bind(st.smpp_port, "near", "right", host=server_addr, source=neighbour) == RBINDFAIL
    # Another /64 is not.
    assert bind(st.smpp_port, "near", "right", host=server_addr, source=elsewhere) == ROK
