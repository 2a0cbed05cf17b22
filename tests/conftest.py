"""Shared fixtures: a real hlrsmpp server on free loopback ports, real SQLite.

``ServerThread`` runs the server on its own event loop in a thread, so blocking
clients (smpplib) and asyncio clients (aiosmpplib, smpp34) can both talk to it
from the test.
"""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hlrsmpp import config as config_mod
from hlrsmpp.server.app import Server

ROOT = Path(__file__).resolve().parent.parent


def eventually(check, timeout: float = 10.0, every: float = 0.1):
    """``check()`` once it is true, or its last answer after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_config(tmp_path: Path, accounts=None, **sections) -> dict:
    overrides = {
        "smpp": {"host": "127.0.0.1", "port": 0},
        "http": {"host": "127.0.0.1", "port": 0},
        "storage": {"path": str(tmp_path / "data")},
        "accounts": accounts if accounts is not None else [{"system_id": "demo", "password": "demo"}],
        "log": {"format": "json", "level": "warning"},
        # Tests give the admin token they use; none generated (the admin API is off without).
        "admin": {"token_file": ""},
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            overrides.setdefault(key, {}).update(value)
        else:
            overrides[key] = value
    return config_mod.load(None, overrides, environ={})


class ServerThread:
    """A Server on its own loop in a background thread."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.loop = asyncio.new_event_loop()
        self.server = Server(cfg)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start())
        except BaseException as err:  # surface start-up failures in the test
            self._error = err
            self._started.set()
            return
        self._started.set()
        self.loop.run_until_complete(self.server.stopped.wait())

    def start(self) -> "ServerThread":
        self._thread.start()
        self._started.wait(30)
        if self._error:
            raise self._error
        self.smpp_port = self.server.smpp_port
        self.http_port = self.server.http_port
        return self

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the server's loop and return its result."""
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def connections_left(self, timeout: float = 10.0) -> tuple[int, int]:
        """Once the SMPP connections are gone (or after ``timeout``): how many the gate
        still counts and how many sessions the server still holds; (0, 0) when every
        slot was given back."""
        deadline = time.monotonic() + timeout
        while self.call(lambda: self.server.smpp_gate.count) and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.call(lambda: (self.server.smpp_gate.count, len(self.server.protocols)))

    def persist(self) -> None:
        """Wait until everything the server decided so far is committed."""
        asyncio.run_coroutine_threadsafe(self.server.persist(), self.loop).result(10)

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.stop(grace=1.0), self.loop).result(30)
            self._thread.join(10)
        self.loop.close()


# ------------------------------------------------------------------ test tiers
# Every test is `unit` or `e2e`, and `slow` when it takes seconds (pyproject.toml registers
# the markers; `make test-fast` leaves the slow ones out, `make test` runs everything):
#   unit  this process's code: no server of ours, no child process
#   e2e   a real server (a thread or a process) or redis-server, and real clients
#   slow  a fresh-venv install, load and kill -9 runs, HTTP fuzzing, big files, several processes
# A test is e2e when it uses one of SERVER_FIXTURES (directly or through another fixture)
# or its module is in E2E_MODULES (servers started by hand); else unit. Marks on a test
# or its module win: a test that starts a server by hand in a mostly-unit module says e2e.
SERVER_FIXTURES = {"server", "make_server", "served", "redis_server", "procs"}
E2E_MODULES = {"test_durability", "test_exactness",
               "test_redis_e2e", "test_reload"}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("unit") or item.get_closest_marker("e2e"):
            continue
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        e2e = module in E2E_MODULES or SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
        item.add_marker(pytest.mark.e2e if e2e else pytest.mark.unit)


@pytest.fixture
def make_server(tmp_path):
    started: list[ServerThread] = []

    def factory(accounts=None, **sections) -> ServerThread:
        st = ServerThread(make_config(tmp_path, accounts, **sections)).start()
        started.append(st)
        return st

    yield factory
    for st in started:
        st.stop()


@pytest.fixture
def server(make_server) -> ServerThread:
    return make_server()


_SPAWNED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True, scope="session")
def _no_orphan_servers():
    """A test that fails before stopping its server process must not leave it running."""
    yield
    for proc in _SPAWNED:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


class ServerProcess:
    """``hlrsmpp serve`` as a real process (for kill -9 and signal tests)."""

    def __init__(self, config_file: Path, smpp_port: int, http_port: int, env=None,
                 nofile: int | tuple[int, int] | None = None, cwd: Path | None = None):
        self.config_file = config_file
        self.cwd = cwd or config_file.parent   # where relative paths (storage.path) start
        self.smpp_port = smpp_port
        self.http_port = http_port
        self.env = dict(os.environ, **(env or {}))
        self.nofile = nofile   # RLIMIT_NOFILE of the server process: n or (soft, hard)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> "ServerProcess":
        # Output goes to a file, never to an undrained pipe a chatty server would block on.
        self.log_path = self.cwd / f"server-{self.smpp_port}.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hlrsmpp", "serve", "--config", str(self.config_file),
             "--smpp-port", str(self.smpp_port), "--http-port", str(self.http_port)],
            cwd=self.cwd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=self._limit if self.nofile else None)
        _SPAWNED.append(self.proc)
        # Started once both ports answer: SMPP listens first, and the loop is busy starting
        # HTTP for a few tenths of a second more, which a short client timeout would feel.
        deadline = time.monotonic() + timeout
        ports = [self.smpp_port, self.http_port]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", ports[0]), 0.2).close()
                ports.pop(0)
                if not ports:
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def _limit(self) -> None:
        import resource
        soft, hard = self.nofile if isinstance(self.nofile, tuple) else (self.nofile, self.nofile)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()

    def terminate(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(30)
        finally:
            self._log.close()


class SmallDisk:
    """A filesystem of its own (a small tmpfs) mounted where the server keeps its data,
    that a test fills to the last byte: writes then really fail (ENOSPC), as on a full
    disk. As root, permissions do not stop a write; a full filesystem does."""

    def __init__(self, path: Path, size: str = "16m"):
        self.path = path
        self.filler = path / "filler"
        path.mkdir(parents=True, exist_ok=True)
        got = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                             capture_output=True, text=True)
        if got.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs for a full-disk test (needs root and mount): "
                        f"{got.stderr.strip()}")

    def fill(self) -> None:
        """Take every free byte."""
        with open(self.filler, "ab", buffering=0) as f:
            for chunk in (1 << 20, 1 << 12, 1):
                try:
                    while True:
                        f.write(b"\0" * chunk)
                except OSError:
                    pass

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    """The data directory of servers made by ``make_server`` (tmp_path/data) on a
    SmallDisk. Request it before ``make_server``, so it is unmounted after they stop."""
    disk = SmallDisk(tmp_path / "data")
    yield disk
    disk.unmount()
