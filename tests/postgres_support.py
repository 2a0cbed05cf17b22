"""A real PostgreSQL for the tests of shared deployments: Debian's ``postgresql`` package
(``make test`` installs it), a cluster made by ``initdb`` in a temporary directory and run
by ``pg_ctl`` on a free loopback port, as an unprivileged user (the ``postgres`` account
when the tests run as root: PostgreSQL refuses to run as root). No fakes: when the
binaries are missing the tests fail and say how to get them.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from redis_support import _free_port


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        pytest.fail("PostgreSQL's initdb is not under /usr/lib/postgresql/*/bin: run `make test` (it "
                    "installs the postgresql package with apt-get as root)", pytrace=False)
    return Path(found[-1]).parent


class PostgresServer:
    def __init__(self):
        self.bin = _bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="hlrsmpp-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.user = "hlrsmpp"
        self.dsn = f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"
        self._as: list[str] = []
        if os.getuid() == 0:
            # Root: the package's own unprivileged account runs the cluster.
            owner = pwd.getpwnam("postgres")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        out = subprocess.run(self._as + list(args), capture_output=True, text=True, cwd=self.dir)
        if out.returncode:
            raise RuntimeError(f"{args[0]} failed: {out.stdout[-1000:]}{out.stderr[-1000:]}")

    def init(self) -> "PostgresServer":
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, "-A", "trust",
                  "-E", "UTF8", "--no-sync")
        return self

    def start(self, timeout: float = 30) -> "PostgresServer":
        # fsync stays on: a restart in the middle of a test must not lose what was committed.
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "pg.log"), "-w",
                  "-t", str(int(timeout)), "-o",
                  f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=200", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def query(self, sql: str, *args):
        """One statement's rows (or, with no args, a script), on a connection of its own."""
        import asyncio

        import asyncpg

        async def go():
            conn = await asyncpg.connect(self.dsn)
            try:
                return await (conn.fetch(sql, *args) if args or not sql.rstrip().endswith(";")
                              else conn.execute(sql))
            finally:
                await conn.close()
        return asyncio.run(go())

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_server():
    server = PostgresServer().init().start()
    yield server
    server.destroy()


@pytest.fixture
def postgres_dsn(postgres_server) -> str:
    """A clean database for each test: every table of ours dropped."""
    postgres_server.query("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    return postgres_server.dsn
