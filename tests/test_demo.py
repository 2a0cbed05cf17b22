"""The demo as a new user meets it: ``hlrsmpp serve --config conf/hlrsmpp.yaml`` (what
``make run`` does) listens on loopback only, creates an admin token at its first start
(0600 in the data directory, printed once on a terminal, kept across restarts), and the
admin commands of docs/cli.md work as written from the same directory."""
from __future__ import annotations

import os
import pty
import select
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, ServerProcess, free_port
from test_cli import hlrsmpp, json_lines

pytestmark = pytest.mark.e2e   # hlrsmpp serve processes

NO_TOKEN = {"HLRSMPP_ADMIN_TOKEN": "", "HLRSMPP_URL": "", "HLRSMPP_STORAGE_PATH": "",
            "HLRSMPP_LOG_FORMAT": "json"}


@pytest.fixture
def demo_dir(tmp_path) -> Path:
    """A copy of conf/ to run the demo from (its ./data lands beside it)."""
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    return tmp_path / "conf"


def serve_demo(demo_dir: Path) -> ServerProcess:
    return ServerProcess(demo_dir / "hlrsmpp.yaml", free_port(), free_port(), env=NO_TOKEN).start()


def other_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))   # TEST-NET-1: nothing is sent, the route picks the source
        except OSError:
            return None
        ip = s.getsockname()[0]
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


def test_demo_creates_an_admin_token_the_cli_finds(demo_dir):
    srv = serve_demo(demo_dir)
    try:
        token_file = demo_dir / "data" / "admin_token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 32
        assert '"admin_token_created"' in srv.output() and token not in srv.output()  # not logged
        env = dict(NO_TOKEN, HLRSMPP_URL=f"http://127.0.0.1:{srv.http_port}")
        p = hlrsmpp("accounts", "list", cwd=demo_dir, env=env)   # as docs/cli.md shows it
        assert p.returncode == 0, p.stderr
        assert [line.split()[0] for line in p.stdout.splitlines()[1:]] == ["acme", "demo", "smspay"]
        # Elsewhere there is no token to find: the error says where it would be.
        p = hlrsmpp("accounts", "list", cwd=demo_dir.parent, env=env)
        assert p.returncode == 2 and "data/admin_token" in p.stderr
    finally:
        assert srv.terminate() == 0
    # A restart keeps the token, and says so when others may read it.
    token_file.chmod(0o644)
    srv = serve_demo(demo_dir)
    try:
        assert token_file.read_text().strip() == token
        restart = srv.output().split('"server_stopped"')[-1]
        assert '"admin_token_created"' not in restart
        assert '"admin_token_file_readable_by_others"' in restart and '"0o644"' in restart
        req = urllib.request.Request(f"http://127.0.0.1:{srv.http_port}/api/v1/accounts",
                                     headers={"Authorization": f"Bearer {token}"})
        assert urllib.request.urlopen(req, timeout=10).status == 200
    finally:
        srv.terminate()


def test_demo_prints_the_new_token_once_on_a_terminal(demo_dir):
    smpp_port, http_port = free_port(), free_port()
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "hlrsmpp", "serve", "--config", "hlrsmpp.yaml",
                             "--smpp-port", str(smpp_port), "--http-port", str(http_port)],
                            cwd=demo_dir, env=dict(os.environ, **NO_TOKEN), stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 60
        while b"server_started" not in out and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    out += os.read(master, 65536)
                except OSError:
                    break
    finally:
        proc.terminate()
        proc.wait(30)
        os.close(master)
    token = (demo_dir / "data" / "admin_token").read_text().strip()
    assert f"Authorization: Bearer {token}".encode() in out, out.decode(errors="replace")[-2000:]


def test_demo_listens_on_loopback_only(demo_dir):
    ip = other_address()
    srv = serve_demo(demo_dir)
    try:
        socket.create_connection(("127.0.0.1", srv.http_port), 5).close()
        if ip is None:
            pytest.skip("this machine has no address but loopback")
        for port in (srv.smpp_port, srv.http_port):
            with pytest.raises(OSError):
                socket.create_connection((ip, port), 5).close()
    finally:
        srv.terminate()


def test_the_documented_demo_answers(demo_dir):
    """README's first lookup is DELIVRD; docs/http.md's prepaid number is ported to Viva."""
    srv = serve_demo(demo_dir)
    try:
        p = hlrsmpp("lookup", "--system-id", "demo", "--password", "demo", "447400123456",
                    "919589123457", "--json", "--port", srv.smpp_port, cwd=demo_dir)
        assert p.returncode == 0, p.stderr
        assert [(r["number"], r["stat"]) for r in json_lines(p.stdout)] == [
            ("447400123456", "DELIVRD"), ("919589123457", "DELIVRD")]
        url = (f"http://127.0.0.1:{srv.http_port}/users/hlr_prepaid.php?user_id=42&service_id=1001"
               "&msisdn=359888000001")
        assert urllib.request.urlopen(url, timeout=30).read().decode() == "BG_VIVA_PORT"
    finally:
        srv.terminate()
