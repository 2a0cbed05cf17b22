"""``hlrsmpp serve --workers N``: N server processes on one host, the same SMPP and HTTP
ports (SO_REUSEPORT: the kernel spreads connections), each its own node of the shared
deployment in Redis. This process only supervises: it starts them, passes SIGTERM,
SIGINT and SIGHUP on, and restarts one that dies (its sessions' leases and its unspent
credit are freed by the others within the lease time).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import structlog

from ..config import ConfigError

log = structlog.get_logger("hlrsmpp.workers")


def check(cfg: dict, workers: int) -> None:
    if workers < 1:
        raise ConfigError(f"--workers: expected at least 1, got {workers}")
    if not cfg["storage"].get("redis"):
        raise ConfigError(
            "--workers needs storage.redis (or HLRSMPP_REDIS_URL): with the embedded SQLite store "
            "credit, limits, sessions and receipts live in one process's memory and cannot be shared")
    if cfg["smpp"]["port"] == 0 or (cfg["http"].get("enabled", True) and cfg["http"]["port"] == 0):
        raise ConfigError("--workers needs fixed ports (port 0 would give each process its own)")


def child_args(args) -> list[str]:
    out = ["--reuse-port"]
    if args.config:
        out += ["--config", os.path.abspath(args.config)]
    if args.smpp_port is not None:
        out += ["--smpp-port", str(args.smpp_port)]
    if args.http_port is not None:
        out += ["--http-port", str(args.http_port)]
    if args.data is not None:
        out += ["--data", args.data]
    return out


def supervise(cfg: dict, args) -> int:
    workers = args.workers
    check(cfg, workers)
    cmd = [sys.executable, "-m", "hlrsmpp", "serve", *child_args(args)]
    children: dict[int, subprocess.Popen] = {}
    started: dict[int, float] = {}
    quick_deaths = 0
    stopping = False

    def spawn(i: int) -> None:
        env = dict(os.environ, HLRSMPP_WORKER=str(i))
        children[i] = subprocess.Popen(cmd, env=env)
        started[i] = time.monotonic()

    def forward(sig, _frame=None) -> None:
        nonlocal stopping
        if sig in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for p in children.values():
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM if sig == signal.SIGINT else sig)
                except ProcessLookupError:
                    pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    for i in range(workers):
        spawn(i)
    log.info("workers_started", workers=workers, pids=[p.pid for p in children.values()])
    codes: dict[int, int] = {}
    while True:
        time.sleep(0.2)
        for i, p in list(children.items()):
            rc = p.poll()
            if rc is None:
                continue
            if stopping:
                codes[i] = rc
                continue
            lived = time.monotonic() - started[i]
            quick_deaths = quick_deaths + 1 if lived < 5 else 0
            log.error("worker_died", worker=i, pid=p.pid, code=rc, lived=round(lived, 1))
            if quick_deaths >= 5:
                log.error("workers_failing", action="stopping every worker")
                forward(signal.SIGTERM)
                codes[i] = rc
                continue
            time.sleep(1.0)
            spawn(i)
        if stopping and all(p.poll() is not None for p in children.values()):
            for i, p in children.items():
                codes.setdefault(i, p.returncode)
            break
    log.info("workers_stopped", codes=codes)
    return 0 if all(c == 0 for c in codes.values()) and quick_deaths < 5 else 1
