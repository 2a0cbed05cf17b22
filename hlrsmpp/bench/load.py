"""``hlrsmpp bench``: an SMPP load generator for hlrsmpp (or any SMSC that sends receipts).

It binds N sessions -- ``trx``: one transceiver per account (the session rule allows
one receiving session per account), or ``tx+rx``: N transmitters and one receiver on
one account -- keeps W submit_sm outstanding per transmitting session (closed loop)
or offers a fixed rate (``--rate``, open loop), answers every deliver_sm at once and
matches its ``receipted_message_id`` to the submit_sm_resp ``message_id`` for the
submit -> receipt latency. With ``--spawn`` it starts the server itself and reports
that process's CPU and RSS; ``--idle-sessions N`` measures the server's RSS per bound
idle session instead.

The generator must not be the bottleneck, so it is lean on purpose: an
``asyncio.Protocol`` (uvloop when installed) around the ESME session's batch calls:
submit_sm bodies precomputed per number (``submit_sm_many``: each PDU is one header
``pack`` plus a prebuilt body), responses and receipts read into flat tuples with
only the fields needed (``receive_lean``), one ``write`` per ``data_received``.
It reports its own CPU next to the server's; ``--workers-bench K`` runs it in K
processes (trx mode) to show whether one generator process limits the figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..smpp.codec import (COMMANDS, HEADER, Command, Pdu, Tag, encode, encode_header_only, encode_receipt,
                          encode_submit_sm_resp, encode_tlvs)
from ..smpp.esme import EsmeSession, submit_sm_body
from ..smpp.framer import Framer
from ..smpp.session import BindMode, State
from ..smpp.status import Status
from .tls import client_context, self_signed

# Plain ints for the hot comparisons (IntEnum compares slower).
_SUBMIT_SM = int(Command.SUBMIT_SM)
_DELIVER_SM_RESP = int(Command.DELIVER_SM_RESP)
_ENQUIRE_LINK_RESP = int(Command.ENQUIRE_LINK_RESP)
_GENERIC_NACK = int(Command.GENERIC_NACK)
_BIND_RESPS = frozenset(int(c) for c in (Command.BIND_TRANSMITTER_RESP, Command.BIND_RECEIVER_RESP,
                                          Command.BIND_TRANSCEIVER_RESP))
_BIND_MODE = {"trx": BindMode.TRX, "tx": BindMode.TX, "rx": BindMode.RX}

#: Mobile number patterns (``x`` = any digit) valid for phonenumbers, across countries,
#: so the resolver does its real work (longest-prefix match, network, country).
DEFAULT_NUMBERS = (
    "447400xxxxxx",    # UK
    "9198xxxxxxxx",    # India
    "9190xxxxxxxx",    # India
    "49151xxxxxxxx",   # Germany
    "49170xxxxxxx",    # Germany
    "33612xxxxxx",     # France
    "34612xxxxxx",     # Spain
    "3932xxxxxxxx",    # Italy
    "551199xxxxxxx",   # Brazil
    "234803xxxxxxx",   # Nigeria
    "62812xxxxxxxx",   # Indonesia
    "359888xxxxxx",    # Bulgaria
    "1202555xxxx",     # USA
    "86138xxxxxxxx",   # China
    "27821xxxxxx",     # South Africa
    "61412xxxxxx",     # Australia
    "63917xxxxxxx",    # Philippines
    "7912xxxxxxx",     # Russia
    "90532xxxxxxx",    # Turkey
    "20101xxxxxxx",    # Egypt
)


# ------------------------------------------------------------------ options

@dataclass
class BenchConfig:
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = "demo"          # comma-separated list allowed (trx: one per session)
    password: str = "demo"           # one for all, or comma-separated per system_id
    system_type: str = "HLR"
    sessions: int = 4
    window: int = 64
    count: int | None = 100_000      # total lookups (None with duration)
    duration: float | None = None    # seconds of submitting instead of a count
    rate: float | None = None        # open loop: lookups/s offered in total
    mode: str = "trx"                # trx | tx+rx
    numbers: str | None = None       # patterns/ranges (see parse_numbers)
    pool: int = 8192                 # distinct numbers cycled through
    seed: int = 1
    workers: int = 1                 # generator processes (trx mode)
    cpus: str | None = None          # pin the generator to these CPUs ("1", "0,2", "2-3")
    drain_timeout: float = 60.0      # after submitting: wait this long for resps and receipts
    connect_timeout: float = 10.0
    server_pid: int | None = None    # measure this process's CPU/RSS
    idle_sessions: int = 0           # idle-session RSS mode
    idle_bind: str = "tx"
    idle_settle: float = 3.0
    progress: bool = False
    # --spawn
    spawn: bool = False
    null_server: bool = False        # spawn a do-nothing SMSC: the generator's own ceiling
    config: str | None = None
    credit: str = "1000000000"       # spawned accounts: prepaid (charging on) or "unlimited"
    keep: bool = False
    server_args: list[str] = field(default_factory=list)
    hostile: int = 0                 # misbehaving connections (hlrsmpp.bench.misbehaving) during the load
    data: str | None = None          # spawned server's store: this directory (kept), not a fresh one
    prefill: int = 0                 # lookups written into the spawned server's store before it starts
    tls: bool = False                # SMPP over TLS (with --spawn: the spawned server's TLS port)
    sms: bool = False                # text messages of SMS accounts (1-part SMS) instead of lookups


def parse_numbers(spec: str | None, size: int, seed: int) -> list[str]:
    """A pool of ``size`` numbers from comma-separated items: a pattern with ``x`` for a
    random digit (``447400xxxxxx``), an inclusive range ``A-B`` of equal-length numbers,
    a single number, or ``@FILE`` (one item per line)."""
    items: list[str] = []
    for raw in (spec.split(",") if spec else DEFAULT_NUMBERS):
        raw = raw.strip().lstrip("+")
        if not raw:
            continue
        if raw.startswith("@"):
            items.extend(x.strip().lstrip("+") for x in Path(raw[1:]).read_text().split() if x.strip())
        else:
            items.append(raw)
    if not items:
        raise ValueError("--numbers: no numbers given")
    rng = random.Random(seed)
    gens = []
    for item in items:
        if "-" in item:
            lo, hi = item.split("-", 1)
            if not (lo.isdigit() and hi.isdigit() and int(lo) <= int(hi)):
                raise ValueError(f"--numbers: bad range {item!r}")
            width = len(lo)
            gens.append(lambda lo=int(lo), hi=int(hi), w=width: str(rng.randint(lo, hi)).zfill(w))
        else:
            if not all(c.isdigit() or c in "xX" for c in item) or not 1 <= len(item) <= 20:
                raise ValueError(f"--numbers: bad pattern {item!r}")
            gens.append(lambda p=item: "".join(str(rng.randrange(10)) if c in "xX" else c for c in p))
    return [gens[i % len(gens)]() for i in range(size)]


#: The text of --sms: one SMS (GSM 03.38), as most messages are.
SMS_TEXT = b"Your code is 123456. It expires in 10 minutes."


def submit_bodies(numbers: list[str], sms: bool = False) -> list[bytes]:
    """The body of a submit_sm per number (destination TON 1 NPI 1, registered_delivery
    1; no text, or with ``sms`` a 1-part text message): only the header changes per PDU."""
    if sms:
        return [submit_sm_body(n, source="BENCH", short_message=SMS_TEXT) for n in numbers]
    return [submit_sm_body(n) for n in numbers]


# ------------------------------------------------------------ measurements

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu(pid: int) -> float | None:
    """user+sys CPU seconds of a process (all its threads), from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def proc_mem(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (KiB) from /proc/<pid>/status."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line[:5]] = int(line.split()[1])
    except OSError:
        pass
    return out


def proc_threads(pid: int) -> dict[str, list[float]]:
    """Per thread name: [CPU seconds, seconds runnable but waiting for a CPU] (schedstat).
    The wait is how much other processes (or our own) held the process back."""
    out: dict[str, list[float]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
            # Python does not name its OS threads: tell the event loop's apart by tid.
            name = "main" if tid == str(pid) else f"{comm}/{tid}"
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                wait = int(f.read().split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            continue
        acc = out.setdefault(name, [0.0, 0.0])
        acc[0] += (int(fields[11]) + int(fields[12])) / _CLK_TCK
        acc[1] += wait
    return out


def _threads_delta(before: dict, after: dict, wall: float) -> tuple[dict, float]:
    """({thread name: CPU % of a core}, runqueue wait % of the wall time, all threads)."""
    cpu, wait = {}, 0.0
    for name, (c1, w1) in after.items():
        c0, w0 = before.get(name, (0.0, 0.0))
        cpu[name] = round(100 * (c1 - c0) / wall, 1)
        wait += w1 - w0
    return cpu, round(100 * wait / wall, 1)


def machine_busy() -> tuple[float, int] | None:
    """(busy CPU seconds of the whole machine, number of CPUs), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    v = [int(x) for x in lines[0].split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    ncpu = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return (sum(v[:8]) - idle) / _CLK_TCK, ncpu


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def percentile(sorted_values, p: float) -> float | None:
    n = len(sorted_values)
    if not n:
        return None
    return sorted_values[min(n - 1, max(0, math.ceil(p * n) - 1))]


# ---------------------------------------------------------------- the ESME

class _Run:
    """State shared by the sessions of one generator process."""

    def __init__(self, cfg: BenchConfig, bodies, count: int | None, rate: float | None):
        self.cfg = cfg
        self.bodies = bodies
        self.window = cfg.window
        self.remaining = count            # None: until stopped (duration)
        self.rate = rate
        self.sending = False
        self.sent_at: dict[bytes, float] = {}   # message_id -> submit time, awaiting receipt
        self.early: dict[bytes, float] = {}     # receipts seen before their submit_sm_resp
        self.lat = array("d")
        self.lat_sched = array("d")         # open loop: from the scheduled send time
        self.resp_lat = array("d")          # submit_sm -> its submit_sm_resp
        self.lag_by_id: dict[bytes, float] = {}
        self.submitted = 0
        self.resp_ok = 0
        self.errors: Counter = Counter()
        self.receipts = 0                  # matched to a submit_sm_resp of this run
        self.deliver_sm = 0                # every deliver_sm received (duplicates too)
        self.states: Counter = Counter()
        self.start = 0.0
        self.last_resp = 0.0
        self.last_receipt = 0.0
        self.lost: list[str] = []
        self.max_deficit = 0

    def take(self, room: int) -> int:
        if not self.sending:
            return 0
        rem = self.remaining
        if rem is None:
            return room
        k = room if room < rem else rem
        self.remaining = rem - k
        if self.remaining == 0:
            self.sending = False
        return k


class _Esme:
    """One client session: the asyncio adapter of an ``EsmeSession`` (duck-typed
    asyncio.Protocol), on the session's batch calls: ``receive_lean`` reads a read's
    submit_sm_resp and receipts into flat tuples (and answers the receipts),
    ``submit_sm_many`` writes the window's submit_sm from the prebuilt bodies."""

    __slots__ = ("run", "role", "transport", "session", "outstanding", "bodies", "idx",
                 "bound", "closed", "submits", "paused", "deficit", "loop", "quitting",
                 "intended", "lags", "resps", "receipts")

    def __init__(self, run: _Run, role: str, offset: int = 0):
        self.run = run
        self.role = role
        self.transport = None
        self.session = EsmeSession()
        self.outstanding: dict[int, float] = {}
        self.bodies = run.bodies
        self.idx = offset % len(self.bodies) if self.bodies else 0
        self.loop = asyncio.get_running_loop()
        self.bound = self.loop.create_future()
        self.closed = self.loop.create_future()
        self.submits = role in ("trx", "tx")
        self.paused = False
        self.deficit = 0
        self.quitting = False
        self.intended: deque[list] = deque()   # open loop: [scheduled time, how many]
        self.lags: dict[int, float] = {}       # open loop: seq -> sent minus scheduled
        self.resps: list[tuple[int, int, bytes]] = []   # what one read brought, reused
        self.receipts: list = []

    # asyncio hooks
    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc) -> None:
        if not self.bound.done():
            self.bound.set_exception(ConnectionError(f"connection closed before bind_resp ({exc!r})"))
        if not self.closed.done():
            self.closed.set_result(exc)
        if not self.quitting and self.bound.done():
            self.run.lost.append(f"{self.role} session closed by the server ({exc!r})")

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.kick()

    def eof_received(self):
        return False

    def send_bind(self, system_id: str, password: str, system_type: str, mode: str) -> None:
        self.session.bind(_BIND_MODE[mode], system_id, password, system_type)
        self.transport.write(self.session.data_to_send())

    def unbind(self) -> None:
        self.quitting = True
        if self.transport is not None and not self.transport.is_closing():
            self.session.unbind()
            self.transport.write(self.session.data_to_send())

    # the hot path
    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        run = self.run
        outstanding = self.outstanding
        session = self.session
        resps, receipts = self.resps, self.receipts
        for pdu in session.receive_lean(data, resps, receipts):
            cmd = pdu.command
            if cmd in _BIND_RESPS:
                if not self.bound.done():
                    self.bound.set_result(pdu.status)
            elif cmd == _GENERIC_NACK:
                if outstanding.pop(pdu.sequence, None) is not None:
                    run.errors[pdu.status or Status.RSYSERR] += 1
        if resps:
            self._resps(resps, now)
            resps.clear()
        if receipts:
            self._receipts(receipts, now)
            receipts.clear()
        if session.state is State.CLOSED:  # unbound, or a stream that is not SMPP
            self.transport.write(session.data_to_send())
            self.transport.close()
            return
        if self.submits and not self.paused:
            room = run.window - len(outstanding)
            if room > 0:
                if run.rate is None:
                    k = run.take(room) if run.sending else 0
                else:
                    k = self.deficit if self.deficit < room else room
                    self.deficit -= k
                if k:
                    self._submits(k, now)
        if session.outgoing:
            self.transport.write(session.data_to_send())

    def _resps(self, resps: list[tuple[int, int, bytes]], now: float) -> None:
        run = self.run
        pop = self.outstanding.pop
        resp_lat = run.resp_lat.append
        sent_at, early, errors = run.sent_at, run.early, run.errors
        closed_loop = run.rate is None
        ok = 0
        for seq, status, mid in resps:
            t = pop(seq, None)
            if t is None:
                continue
            resp_lat(now - t)
            if status == 0:
                ok += 1
                if not closed_loop:
                    run.lag_by_id[mid] = self.lags.pop(seq, 0.0)
                t_receipt = early.pop(mid, None) if early else None
                if t_receipt is None:
                    sent_at[mid] = t
                else:
                    run.lat.append(t_receipt - t)
                    if not closed_loop:
                        run.lat_sched.append(t_receipt - t + run.lag_by_id.pop(mid, 0.0))
                    run.receipts += 1
                    run.last_receipt = t_receipt
            else:
                errors[status] += 1
                if not closed_loop:
                    self.lags.pop(seq, None)
        if ok:
            run.resp_ok += ok
            run.last_resp = now

    def _receipts(self, receipts: list, now: float) -> None:
        """Match each receipt's receipted_message_id to its submit_sm_resp."""
        run = self.run
        run.deliver_sm += len(receipts)
        pop, lat, states = run.sent_at.pop, run.lat.append, run.states
        closed_loop = run.rate is None
        matched = 0
        for ids in receipts:
            if ids is None:
                run.errors["bad deliver_sm"] += 1
                continue
            mid, state = ids
            if state is not None:
                states[state] += 1
            if mid is None:
                run.errors["receipt without receipted_message_id"] += 1
                continue
            t = pop(mid, None)
            if t is None:
                run.early[mid] = now
            else:
                lat(now - t)
                if not closed_loop:
                    run.lat_sched.append(now - t + run.lag_by_id.pop(mid, 0.0))
                matched += 1
        if matched:
            run.receipts += matched
            run.last_receipt = now

    def _submits(self, k: int, now: float) -> None:
        session = self.session
        self.idx = session.submit_sm_many(self.bodies, self.idx, k)
        last = session.last_sequence
        outstanding = self.outstanding
        first = last - k + 1
        # Their sequence numbers (round from 0x7FFFFFFF to 1, once in 2**31 submits).
        sequences = range(first, last + 1) if first > 0 else [(first + j - 1) % 0x7FFFFFFF + 1 for j in range(k)]
        for seq in sequences:
            outstanding[seq] = now
        self.run.submitted += k
        if self.intended:
            # Open loop: how late each submit left against its schedule (window full, loop busy).
            q, lags = self.intended, self.lags
            for s in sequences:
                head = q[0]
                lags[s] = now - head[0]
                head[1] -= 1
                if not head[1]:
                    q.popleft()
                    if not q:
                        break

    def kick(self) -> None:
        """Fill the window (closed loop) or pay the rate deficit (open loop), one write."""
        if self.paused or self.transport is None or self.transport.is_closing():
            return
        run = self.run
        room = run.window - len(self.outstanding)
        if room <= 0:
            return
        if run.rate is None:
            k = run.take(room)
        else:
            k = self.deficit if self.deficit < room else room
            self.deficit -= k
        if k:
            self._submits(k, time.perf_counter())
            self.transport.write(self.session.data_to_send())


# ----------------------------------------------------------- running a load

def _accounts(cfg: BenchConfig) -> list[tuple[str, str]]:
    """(system_id, password) per receiving session: trx needs one account per session."""
    ids = [s for s in cfg.system_id.split(",") if s]
    pws = cfg.password.split(",")
    need = cfg.sessions if cfg.mode == "trx" else 1
    base = ids[0]
    while len(ids) < need:
        ids.append(f"{base}{len(ids) + 1}")   # demo, demo2, demo3, ...
    return [(sid, pws[i] if i < len(pws) else pws[0]) for i, sid in enumerate(ids)]


async def _connect(run: _Run, cfg: BenchConfig, role: str, sid: str, pw: str,
                   offset: int = 0) -> _Esme:
    loop = asyncio.get_running_loop()
    _, esme = await asyncio.wait_for(
        loop.create_connection(lambda: _Esme(run, role, offset), cfg.host, cfg.port,
                               ssl=client_context() if cfg.tls else None), cfg.connect_timeout)
    esme.send_bind(sid, pw, cfg.system_type, role)
    status = await asyncio.wait_for(esme.bound, cfg.connect_timeout)
    if status:
        esme.quitting = True
        esme.transport.abort()
        try:
            name = Status(status).name
        except ValueError:
            name = hex(status)
        raise ConnectionError(f"bind_{role} as {sid!r} refused: {name} ({status:#x})")
    return esme


def _uvloop_policy() -> str:
    try:
        import uvloop  # noqa: F401
        return "uvloop"
    except ImportError:
        return "asyncio"


def _run_loop(coro):
    try:
        import uvloop
        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


async def _load(cfg: BenchConfig, session_plan: list[tuple[str, str, str]], count: int | None,
                rate: float | None, duration: float | None, go=None) -> dict:
    """Bind the planned sessions (role, system_id, password), run the load, return raw results."""
    bodies = submit_bodies(parse_numbers(cfg.numbers, cfg.pool, cfg.seed), cfg.sms)
    run = _Run(cfg, bodies, count, rate)
    sessions: list[_Esme] = []
    try:
        for i, (role, sid, pw) in enumerate(session_plan):
            sessions.append(await _connect(run, cfg, role, sid, pw, offset=i * 997))
        if go is not None:
            await asyncio.get_running_loop().run_in_executor(None, go)
        return await _drive(run, cfg, sessions, rate, duration)
    finally:
        for s in sessions:
            s.unbind()
        if sessions:
            await asyncio.wait([s.closed for s in sessions], timeout=2)
        for s in sessions:
            if s.transport is not None:
                s.transport.abort()


async def _drive(run: _Run, cfg: BenchConfig, sessions: list[_Esme], rate, duration) -> dict:
    loop = asyncio.get_running_loop()
    senders = [s for s in sessions if s.submits]
    cpu0 = self_cpu()
    own0 = proc_threads(os.getpid())
    run.start = time.perf_counter()
    run.sending = True
    if run.remaining == 0:
        run.sending = False
    stop_at = run.start + duration if duration else None
    ticker = None
    if rate is None:
        for s in senders:
            s.kick()
        if stop_at is not None:
            loop.call_at(loop.time() + duration, lambda: setattr(run, "sending", False))
    else:
        ticker = loop.create_task(_offer(run, senders, rate, stop_at))
    last_print = run.start
    deadline = None
    try:
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            if run.lost:
                break
            if cfg.progress and now - last_print >= 1.0:
                last_print = now
                print(f"  {now - run.start:6.1f}s  submitted {run.submitted}  resp_ok {run.resp_ok}  "
                      f"receipts {run.receipts}  errors {sum(run.errors.values())}", file=sys.stderr)
            if run.sending:
                continue
            if deadline is None:
                deadline = now + cfg.drain_timeout
            if not run.sent_at and not any(s.outstanding for s in senders):
                break  # every submit_sm answered, every accepted lookup's receipt in
            if now > deadline:
                break
    finally:
        run.sending = False
        if ticker is not None:
            ticker.cancel()
    end = time.perf_counter()
    cpu = self_cpu() - cpu0
    _, own_wait = _threads_delta(own0, proc_threads(os.getpid()), end - run.start)
    return {
        "submitted": run.submitted, "resp_ok": run.resp_ok, "receipts": run.receipts,
        "deliver_sm": run.deliver_sm, "errors": {str(k): v for k, v in run.errors.items()},
        "states": {str(k): v for k, v in run.states.items()},
        "outstanding": sum(len(s.outstanding) for s in senders),
        "awaiting_receipt": dict(run.sent_at), "early": dict(run.early),
        "lat": run.lat.tobytes(), "lat_sched": run.lat_sched.tobytes(), "resp_lat": run.resp_lat.tobytes(),
        "start": run.start, "end": end,
        "last_resp": run.last_resp, "last_receipt": run.last_receipt,
        "bench_cpu": cpu, "bench_wait_pct": own_wait, "lost": run.lost, "max_deficit": run.max_deficit,
    }


async def _offer(run: _Run, senders: list[_Esme], rate: float, stop_at: float | None) -> None:
    """Open loop: every millisecond, hand out the submits due since the start."""
    scheduled = 0
    n = len(senders)
    rr = 0
    limit = run.remaining
    while True:
        now = time.perf_counter()
        due = int((now - run.start) * rate)
        if limit is not None and due >= limit:
            due = limit
        new = due - scheduled
        scheduled = due
        if new > 0:
            share, extra = divmod(new, n)
            for j in range(n):
                s = senders[(rr + j) % n]
                k = share + (1 if j < extra else 0)
                if k:
                    s.deficit += k
                    s.intended.append([now, k])
            rr = (rr + extra) % n
            for s in senders:
                if s.deficit:
                    s.kick()
                    if s.deficit > run.max_deficit:
                        run.max_deficit = s.deficit
        if (limit is not None and scheduled >= limit) or (stop_at is not None and now >= stop_at):
            # Let the last deficits drain through the windows, then stop.
            while any(s.deficit for s in senders):
                await asyncio.sleep(0.001)
                for s in senders:
                    s.kick()
            run.sending = False
            return
        await asyncio.sleep(0.001)


def _plan(cfg: BenchConfig) -> list[tuple[str, str, str]]:
    accounts = _accounts(cfg)
    if cfg.mode == "trx":
        return [("trx", sid, pw) for sid, pw in accounts[:cfg.sessions]]
    sid, pw = accounts[0]
    return [("rx", sid, pw)] + [("tx", sid, pw)] * cfg.sessions


def _worker(cfg: BenchConfig, plan, count, rate, duration, barrier, conn) -> None:
    """A generator process (``--workers-bench``): run its share, send the raw results back."""
    try:
        res = _run_loop(_load(cfg, plan, count, rate, duration, go=barrier.wait))
        conn.send(res)
    except BaseException as err:  # report, never hang the parent
        try:
            barrier.abort()
        except Exception:
            pass
        conn.send({"error": repr(err)})
    finally:
        conn.close()


def _split(total, k: int) -> list:
    if total is None:
        return [None] * k
    return [total // k + (1 if i < total % k else 0) for i in range(k)]


def _run_workers(cfg: BenchConfig, on_start) -> list[dict]:
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    plan = _plan(cfg)
    k = cfg.workers
    if cfg.mode != "trx":
        raise ValueError("--workers-bench > 1 needs --mode trx (receipts must come back to the "
                         "process that sent their lookups)")
    if k > len(plan):
        raise ValueError("--workers-bench cannot exceed --sessions")
    plans = [plan[i::k] for i in range(k)]
    counts = _split(cfg.count if cfg.duration is None else None, k)
    rates = [None] * k if cfg.rate is None else [cfg.rate * len(p) / len(plan) for p in plans]
    barrier = ctx.Barrier(k + 1)
    pipes, procs = [], []
    for i in range(k):
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_worker, args=(cfg, plans[i], counts[i], rates[i], cfg.duration,
                                              barrier, child), daemon=True)
        p.start()
        child.close()
        pipes.append(parent)
        procs.append(p)
    try:
        barrier.wait(cfg.connect_timeout * 3)
    except Exception:
        pass
    on_start()
    results = []
    for parent in pipes:
        results.append(parent.recv())
    for p in procs:
        p.join(10)
    errs = [r["error"] for r in results if "error" in r]
    if errs:
        raise RuntimeError("; ".join(errs))
    return results


def _merge(results: list[dict]) -> dict:
    """Combine the generator processes' raw results (cross-process receipts matched by id)."""
    lat = array("d")
    lat_sched = array("d")
    resp_lat = array("d")
    sent: dict = {}
    early: dict = {}
    m = {"submitted": 0, "resp_ok": 0, "receipts": 0, "deliver_sm": 0, "outstanding": 0,
         "bench_cpu": 0.0, "bench_wait_pct": 0.0, "max_deficit": 0}
    errors: Counter = Counter()
    states: Counter = Counter()
    lost: list = []
    for r in results:
        for key in ("submitted", "resp_ok", "receipts", "deliver_sm", "outstanding", "bench_cpu",
                    "bench_wait_pct"):
            m[key] += r[key]
        m["max_deficit"] = max(m["max_deficit"], r["max_deficit"])
        errors.update(r["errors"])
        states.update(r["states"])
        lost += r["lost"]
        part = array("d")
        part.frombytes(r["lat"])
        lat.extend(part)
        part = array("d")
        part.frombytes(r["lat_sched"])
        lat_sched.extend(part)
        part = array("d")
        part.frombytes(r["resp_lat"])
        resp_lat.extend(part)
        sent.update(r["awaiting_receipt"])
        early.update(r["early"])
    last_receipt = max(r["last_receipt"] for r in results)
    for mid in list(early):
        t = sent.pop(mid, None)
        if t is not None:
            lat.append(early.pop(mid) - t)
            m["receipts"] += 1
    m.update(start=min(r["start"] for r in results), end=max(r["end"] for r in results),
             last_resp=max(r["last_resp"] for r in results), last_receipt=last_receipt,
             errors=dict(errors), states=dict(states), lost=lost, lat=lat, lat_sched=lat_sched, resp_lat=resp_lat,
             missing_receipts=len(sent), unmatched_receipts=len(early))
    return m


def _percentiles(values) -> dict:
    """p50 ... max of sorted seconds, in ms."""
    return {name: (round(v * 1000, 3) if v is not None else None) for name, v in (
        ("p50", percentile(values, 0.50)), ("p90", percentile(values, 0.90)),
        ("p99", percentile(values, 0.99)), ("p99.9", percentile(values, 0.999)),
        ("max", values[-1] if values else None))}


def _summarise(cfg: BenchConfig, m: dict, server: dict | None) -> dict:
    lat = sorted(m["lat"])
    start = m["start"]
    t_resp = (m["last_resp"] - start) if m["resp_ok"] else 0.0
    t_rcpt = (m["last_receipt"] - start) if m["receipts"] else 0.0
    wall = max(t_rcpt, t_resp, 1e-9)
    out = {
        "mode": cfg.mode, "sessions": cfg.sessions, "window": cfg.window,
        "count": cfg.count if cfg.duration is None else None, "duration": cfg.duration,
        "rate_offered": cfg.rate, "workers": cfg.workers, "loop": _uvloop_policy(), "tls": cfg.tls,
        "submitted": m["submitted"], "submit_ok": m["resp_ok"], "receipts": m["receipts"],
        "deliver_sm": m["deliver_sm"],
        "errors": {_status_name(k): v for k, v in m["errors"].items()},
        "receipt_states": {({"2": "DELIVERED", "3": "EXPIRED", "4": "DELETED", "5": "UNDELIVERABLE"}.get(k, k)): v
                           for k, v in m["states"].items()},
        "missing_receipts": m.get("missing_receipts", 0),
        "unmatched_receipts": m.get("unmatched_receipts", 0),
        "unanswered_submits": m["outstanding"],
        "elapsed_s": round(wall, 4),
        "submit_ok_per_s": round(m["resp_ok"] / t_resp, 1) if t_resp else None,
        "receipts_per_s": round(m["receipts"] / t_rcpt, 1) if t_rcpt else None,
        "lookups_per_s": round(m["receipts"] / wall, 1) if m["receipts"] else 0.0,
        "latency_ms": _percentiles(lat),
        "resp_latency_ms": _percentiles(sorted(m["resp_lat"])),
        "bench_cpu_pct": round(100 * m["bench_cpu"] / (m["end"] - start), 1),
        "bench_cpu_us_per_lookup": round(1e6 * m["bench_cpu"] / m["receipts"], 2) if m["receipts"] else None,
        "bench_runqueue_wait_pct": round(m["bench_wait_pct"], 1),
        "problems": m["lost"],
    }
    if cfg.rate:
        out["max_send_backlog"] = m["max_deficit"]
        # Coordinated omission: the same latencies counted from when each submit was due
        # (1 ms tick resolution), so time held back by a full window or a busy loop counts.
        out["latency_from_schedule_ms"] = _percentiles(sorted(m["lat_sched"]))
    if server:
        out["server"] = server
        if server.get("cpu_s") is not None and m["receipts"]:
            server["cpu_us_per_lookup"] = round(1e6 * server["cpu_s"] / m["receipts"], 2)
    return out


def _status_name(k: str) -> str:
    try:
        return Status(int(k)).name
    except ValueError:
        return k


class _ServerWatch:
    """CPU (user+sys) and memory of the server process between start() and stop()."""

    def __init__(self, pid: int | None):
        self.pid = pid
        self.cpu0 = self.t0 = None
        self.machine0 = None
        self.machine: dict | None = None
        self.result: dict | None = None

    def start(self) -> None:
        self.machine0, self.t0 = machine_busy(), time.perf_counter()
        if self.pid:
            self.cpu0 = proc_cpu(self.pid)
            self.threads0 = proc_threads(self.pid)

    def stop(self) -> dict | None:
        m1, t1 = machine_busy(), time.perf_counter()
        if self.machine0 and m1 and self.t0:
            self.machine = {"cpus": m1[1], "busy_pct": round(100 * (m1[0] - self.machine0[0]) / (t1 - self.t0), 1)}
        if not self.pid or self.cpu0 is None:
            return None
        cpu1 = proc_cpu(self.pid)
        threads, wait = _threads_delta(self.threads0, proc_threads(self.pid), t1 - self.t0)
        mem = proc_mem(self.pid)
        wall = t1 - self.t0
        cpu = (cpu1 - self.cpu0) if cpu1 is not None else None
        self.result = {
            "pid": self.pid, "cpu_s": round(cpu, 3) if cpu is not None else None,
            "cpu_pct": round(100 * cpu / wall, 1) if cpu is not None else None,
            "threads_cpu_pct": {k: v for k, v in threads.items() if v},
            "runqueue_wait_pct": wait,
            "rss_mib": round(mem.get("VmRSS", 0) / 1024, 1),
            "peak_rss_mib": round(mem.get("VmHWM", 0) / 1024, 1),
        }
        return self.result


def parse_cpus(spec: str) -> set[int]:
    """--cpus: "1", "0,2", "2-3"; each a CPU this process may run on."""
    cpus: set[int] = set()
    try:
        for part in spec.split(","):
            lo, _, hi = part.strip().partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ValueError(f"--cpus {spec!r}: CPU numbers and ranges, e.g. 1 or 0,2 or 2-3") from None
    allowed = os.sched_getaffinity(0)
    if not cpus or not cpus <= allowed:
        raise ValueError(f"--cpus {spec!r}: this process may run on CPUs {sorted(allowed)} only")
    return cpus


def run_load(cfg: BenchConfig) -> dict:
    """Run one load (count, duration or rate) against cfg.host:cfg.port; return the summary.
    With cfg.cpus, the generator (its processes too) runs on those CPUs only, and the server
    on the rest as the kernel likes: on a small machine the generator then takes its core
    instead of preempting the server's event loop (BENCHMARKS.md)."""
    if cfg.mode not in ("trx", "tx+rx"):
        raise ValueError(f"--mode must be trx or tx+rx, not {cfg.mode!r}")
    if cfg.sessions < 1 or cfg.window < 1:
        raise ValueError("--sessions and --window must be at least 1")
    if cfg.cpus is None:
        return _run_load(cfg)
    cpus, before = parse_cpus(cfg.cpus), os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        out = _run_load(cfg)
    finally:
        os.sched_setaffinity(0, before)
    out["generator_cpus"] = sorted(cpus)
    return out


def _run_load(cfg: BenchConfig) -> dict:
    count = None if cfg.duration else cfg.count
    watch = _ServerWatch(cfg.server_pid)
    if cfg.workers > 1:
        results = _run_workers(cfg, watch.start)
    else:
        def go():
            watch.start()
        results = [_run_loop(_load(cfg, _plan(cfg), count, cfg.rate, cfg.duration, go=go))]
    server = watch.stop()
    out = _summarise(cfg, _merge(results), server)
    if watch.machine:
        # Whatever else ran meanwhile competes for the same cores: say so next to the figures.
        m = watch.machine
        m["other_pct"] = round(m["busy_pct"] - out["bench_cpu_pct"] - (server or {}).get("cpu_pct", 0), 1) \
            if server else None
        out["machine"] = m
    return out


async def _idle(cfg: BenchConfig) -> dict:
    """Server RSS before and after binding cfg.idle_sessions idle sessions."""
    pid = cfg.server_pid
    accounts = _accounts(replace(cfg, sessions=1))
    sid, pw = accounts[0]
    await asyncio.sleep(0.5)
    before = proc_mem(pid).get("VmRSS") if pid else None
    cpu0 = proc_cpu(pid) if pid else None
    sessions: list[_Esme] = []
    sem = asyncio.Semaphore(256)
    run = _Run(cfg, [], 0, None)

    async def one():
        async with sem:
            s = await _connect(run, cfg, cfg.idle_bind, sid, pw)
            sessions.append(s)

    t0 = time.perf_counter()
    results = await asyncio.gather(*(one() for _ in range(cfg.idle_sessions)), return_exceptions=True)
    t_bind = time.perf_counter() - t0
    failed = [r for r in results if isinstance(r, BaseException)]
    await asyncio.sleep(cfg.idle_settle)
    after = proc_mem(pid).get("VmRSS") if pid else None
    cpu1 = proc_cpu(pid) if pid else None
    n = len(sessions)
    for s in sessions:
        s.unbind()
    if sessions:
        await asyncio.wait([s.closed for s in sessions], timeout=10)
    for s in sessions:
        s.transport.abort()
    await asyncio.sleep(1.0)
    released = proc_mem(pid).get("VmRSS") if pid else None
    out = {
        "idle_sessions": cfg.idle_sessions, "bound": n, "bind": cfg.idle_bind,
        "failed": len(failed), "first_failure": repr(failed[0]) if failed else None,
        "bind_s": round(t_bind, 3), "binds_per_s": round(n / t_bind, 1) if t_bind else None,
        "server_rss_before_mib": round(before / 1024, 2) if before else None,
        "server_rss_bound_mib": round(after / 1024, 2) if after else None,
        "server_rss_after_unbind_mib": round(released / 1024, 2) if released else None,
        "rss_per_session_kib": round((after - before) / n, 2) if (before and after and n) else None,
        "server_cpu_binding_s": round(cpu1 - cpu0, 3) if cpu0 is not None and cpu1 is not None else None,
    }
    return out


# -------------------------------------------------------------- --spawn

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SpawnedServer:
    """``python -m hlrsmpp serve`` on free loopback ports, in a temporary data directory."""

    def __init__(self, cfg: BenchConfig):
        self.cfg = cfg
        self.dir = Path(tempfile.mkdtemp(prefix="hlrsmpp-bench-"))
        self.smpp_port = free_port()
        self.http_port = free_port()
        self.tls_port = free_port() if cfg.tls else None
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "server.log"

    def write_config(self) -> Path:
        if self.cfg.config:
            return Path(self.cfg.config).resolve()
        accounts = []
        need = max(self.cfg.sessions, 1) if self.cfg.mode == "trx" and not self.cfg.idle_sessions else 1
        for sid, pw in _accounts(replace(self.cfg, sessions=need))[:need]:
            acc = {"system_id": sid, "password": pw, "system_type": self.cfg.system_type,
                   "max_tx": 100000}
            if self.cfg.sms:
                acc["service"] = "sms"
            if self.cfg.credit != "unlimited":
                acc["credit"] = float(self.cfg.credit)
            accounts.append(acc)
        conf = {
            # smpp.window stays the default: tx+rx measures the receiver as users get it.
            "smpp": {"host": "127.0.0.1", "max_connections": 100000, "max_connections_per_ip": 100000},
            "http": {"host": "127.0.0.1"},
            "hlr": {"latency_ms": 0},
            "log": {"format": "json", "level": "warning"},
            "accounts": accounts,
        }
        if self.cfg.sms:  # absent subscribers' messages expire within the run, not in 48 h
            conf["sms"] = {"validity": 1.0}
        if self.cfg.hostile:
            # The hostile clients share the bench's address: banning their failed binds
            # would ban the bench too. Unbound connections are cut after 2 s.
            conf["bans"] = {"after": 1_000_000_000, "window": 1, "time": 1}
            conf["smpp"]["session_init_timeout"] = 2.0
        if self.tls_port:
            cert, key = self_signed(self.dir)
            conf["smpp"]["tls"] = {"port": self.tls_port, "cert": cert, "key": key}
        path = self.dir / "bench.yaml"
        path.write_text(json.dumps(conf, indent=1) + "\n")  # JSON is YAML
        return path

    def start(self, timeout: float = 60) -> "SpawnedServer":
        config = self.write_config()
        data = Path(self.cfg.data).resolve() if self.cfg.data else self.dir / "data"
        if self.cfg.prefill:
            from .prefill import prefill
            print(f"prefill: {prefill(data, self.cfg.prefill)}", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "hlrsmpp", "serve", "--config", str(config),
               "--smpp-port", str(self.smpp_port), "--http-port", str(self.http_port),
               "--data", str(data), *self.cfg.server_args]
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}): {self.tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.tls_port or self.smpp_port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not listen within {timeout}s: {self.tail()}")

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> int | None:
        rc = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait(10)
        if not self.cfg.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        return rc


class _NullSmsc:
    """The cheapest SMSC that still does the protocol: bind OK, submit_sm answered with an id
    and, in the same write, its receipt (receipted_message_id TLV). Used by ``--null-server``
    to measure how many lookups/s the generator itself can drive."""

    def __init__(self):
        self.framer = Framer()
        self.seq = 0
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        pass

    def eof_received(self):
        return False

    def data_received(self, data):
        buf, size = self.framer.feed(data)
        pos, out = 0, []
        while pos < size:
            length, cmd, status, seq = HEADER.unpack_from(buf, pos)
            pos += length
            if cmd == _SUBMIT_SM:
                _NullSmsc.next_id += 1
                mid = b"%d" % _NullSmsc.next_id
                out.append(encode_submit_sm_resp(seq, 0, mid))
                self.seq += 1
                out.append(encode_receipt(self.seq, b"", b"stat:ok", 3, _NULL_RECEIPT_STATE
                                          + encode_tlvs({Tag.RECEIPTED_MESSAGE_ID: mid + b"\0"})))
            elif cmd in (_DELIVER_SM_RESP, _ENQUIRE_LINK_RESP):
                pass
            elif cmd in _BINDS:
                out.append(encode(Pdu(cmd | 0x80000000, seq, 0, {"system_id": "nullsmsc"})))
            elif not cmd & 0x80000000:
                out.append(encode_header_only(Command(cmd).response if cmd in COMMANDS else Command.GENERIC_NACK,
                                              0, seq))
        if self.framer.broken is not None:
            self.transport.abort()
        elif out:
            self.transport.write(b"".join(out))

    next_id = 0


_NULL_RECEIPT_STATE = encode_tlvs({Tag.MESSAGE_STATE: b"\x02"})
_BINDS = frozenset(int(c) for c in (Command.BIND_TRANSMITTER, Command.BIND_RECEIVER, Command.BIND_TRANSCEIVER))


def _null_server_main(port: int, ready) -> None:
    async def main():
        loop = asyncio.get_running_loop()
        await loop.create_server(_NullSmsc, "127.0.0.1", port, backlog=1024, reuse_address=True)
        ready.set()
        await asyncio.Event().wait()
    _run_loop(main())


def bench(cfg: BenchConfig) -> dict:
    """Everything ``hlrsmpp bench`` does: spawn if asked, run, stop; the summary dict."""
    spawned = None
    if cfg.null_server:
        import multiprocessing as mp
        ctx = mp.get_context("fork")
        port, ready = free_port(), ctx.Event()
        proc = ctx.Process(target=_null_server_main, args=(port, ready), daemon=True)
        proc.start()
        try:
            if not ready.wait(10):
                raise RuntimeError("the null SMSC did not start")
            cfg = replace(cfg, host="127.0.0.1", port=port, server_pid=proc.pid, null_server=False,
                          spawn=False)
            result = bench(cfg)
            result["null_server"] = True
            return result
        finally:
            proc.terminate()
            proc.join(5)
    if cfg.spawn:
        if threading.current_thread() is threading.main_thread():
            # Stopped with SIGTERM: unwind, so the finally below stops the server we started.
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        spawned = SpawnedServer(cfg).start()
        cfg = replace(cfg, host="127.0.0.1", port=spawned.tls_port or spawned.smpp_port,
                      server_pid=spawned.proc.pid)
    hostile = _start_misbehaving(cfg) if cfg.hostile else None
    try:
        if cfg.idle_sessions:
            result = _run_loop(_idle(cfg))
        else:
            result = run_load(cfg)
        if hostile is not None:
            result["hostile"] = cfg.hostile
    except BaseException:
        if spawned is not None:
            print(f"hlrsmpp bench: spawned server's log: {spawned.tail()}", file=sys.stderr)
        raise
    finally:
        if hostile is not None:
            hostile[1].set()
            hostile[0].join(20)
        if spawned is not None:
            rc = spawned.stop()
            if rc not in (0, None):
                print(f"hlrsmpp bench: the spawned server exited with {rc}: {spawned.tail()}",
                      file=sys.stderr)
    if spawned is not None:
        result["spawned"] = True
    return result


def _start_misbehaving(cfg: BenchConfig):
    """Misbehaving clients in their own process, against the server under test, settled
    for a second before the load starts."""
    import multiprocessing as mp
    from .misbehaving import misbehaving_process_main
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    proc = ctx.Process(target=misbehaving_process_main, args=(cfg.host, cfg.port, cfg.hostile, stop),
                       daemon=True)
    proc.start()
    time.sleep(1.0)
    return proc, stop


# ------------------------------------------------------------------ output

def format_text(r: dict) -> str:
    if "idle_sessions" in r:
        lines = [f"idle sessions: {r['bound']}/{r['idle_sessions']} bound ({r['bind']}) in "
                 f"{r['bind_s']} s ({r['binds_per_s']} binds/s), {r['failed']} failed"]
        if r["first_failure"]:
            lines.append(f"  first failure: {r['first_failure']}")
        if r["rss_per_session_kib"] is not None:
            lines.append(f"  server RSS {r['server_rss_before_mib']} MiB -> {r['server_rss_bound_mib']} MiB "
                         f"bound -> {r['server_rss_after_unbind_mib']} MiB after unbind: "
                         f"{r['rss_per_session_kib']} KiB per bound idle session")
        else:
            lines.append("  server RSS: unknown (use --spawn or --server-pid)")
        return "\n".join(lines)
    lat, resp = r["latency_ms"], r["resp_latency_ms"]
    load = (f"rate {r['rate_offered']:g}/s offered (open loop)" if r["rate_offered"]
            else f"window {r['window']} per session (closed loop)")
    what = f"{r['count']} lookups" if r["count"] is not None else f"{r['duration']} s"
    lines = [
        f"hlrsmpp bench: mode {r['mode']}, {r['sessions']} sessions, {load}, {what}, "
        f"{r['workers']} generator process(es), {r['loop']}{', TLS' if r.get('tls') else ''}"
        + (f", generator on CPU {','.join(map(str, r['generator_cpus']))}" if r.get("generator_cpus") else "")
        + (f", {r['hostile']} hostile connections meanwhile" if r.get("hostile") else ""),
        f"  lookups/s        {r['lookups_per_s']:,.0f}  (receipts {r['receipts']} in {r['elapsed_s']} s)",
        f"  submit_sm_resp   {r['submit_ok']} OK, {r['submit_ok_per_s'] or 0:,.0f}/s;  "
        f"receipts {r['receipts_per_s'] or 0:,.0f}/s",
        f"  latency          submit -> receipt  p50 {_ms(lat['p50'])}  p90 {_ms(lat['p90'])}  "
        f"p99 {_ms(lat['p99'])}  p99.9 {_ms(lat['p99.9'])}  max {_ms(lat['max'])}",
        f"                   submit -> resp     p50 {_ms(resp['p50'])}  p90 {_ms(resp['p90'])}  "
        f"p99 {_ms(resp['p99'])}  p99.9 {_ms(resp['p99.9'])}  max {_ms(resp['max'])}",
        f"  errors           {_fmt_counts(r['errors']) or 'none'}",
        f"  receipt states   {_fmt_counts(r['receipt_states']) or '-'}",
    ]
    if r["missing_receipts"] or r["unmatched_receipts"] or r["unanswered_submits"]:
        lines.append(f"  incomplete       {r['unanswered_submits']} submit_sm unanswered, "
                     f"{r['missing_receipts']} receipts missing, {r['unmatched_receipts']} unmatched")
    if r.get("latency_from_schedule_ms"):
        ls = r["latency_from_schedule_ms"]
        lines.append(f"  from schedule    (open loop: from when each submit was due) p50 {_ms(ls['p50'])}  "
                     f"p90 {_ms(ls['p90'])}  p99 {_ms(ls['p99'])}  p99.9 {_ms(ls['p99.9'])}  max {_ms(ls['max'])}")
    if r.get("max_send_backlog"):
        lines.append(f"  send backlog     max {r['max_send_backlog']} submits per session held back by a "
                     "full window")
    s = r.get("server")
    if s:
        lines.append(f"  server           pid {s['pid']}  CPU {s['cpu_pct']}% of a core "
                     f"({s.get('cpu_us_per_lookup')} us/lookup)  RSS {s['rss_mib']} MiB "
                     f"(peak {s['peak_rss_mib']} MiB)")
        lines.append(f"                   threads {_fmt_counts(s['threads_cpu_pct'], '%')};  "
                     f"waited for a CPU {s['runqueue_wait_pct']}% of the time")
    else:
        lines.append("  server           CPU/RSS unknown (use --spawn or --server-pid)")
    lines.append(f"  bench            CPU {r['bench_cpu_pct']}% of a core "
                 f"({r['bench_cpu_us_per_lookup']} us/lookup); waited for a CPU "
                 f"{r['bench_runqueue_wait_pct']}% of the time")
    m = r.get("machine")
    if m:
        other = f", other processes {m['other_pct']}%" if m.get("other_pct") is not None else ""
        lines.append(f"  machine          {m['cpus']} CPUs, {m['busy_pct']}% busy in all{other}")
    for p in r["problems"]:
        lines.append(f"  PROBLEM          {p}")
    return "\n".join(lines)


def _ms(v) -> str:
    return "-" if v is None else f"{v:.2f} ms"


def _fmt_counts(d: dict, unit: str = "") -> str:
    return ", ".join(f"{k} {v}{unit}" for k, v in sorted(d.items(), key=lambda kv: -kv[1]))


# --------------------------------------------------------------------- CLI

def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bench", help="SMPP load generator: lookups/s, latency, server CPU and RSS",
        description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--host", default="127.0.0.1")
    a("--port", type=int, default=2775)
    a("--system-id", default="demo",
      help="account(s), comma-separated; trx mode uses one per session (missing ones: demo2, demo3, ...)")
    a("--password", default="demo", help="one for all accounts, or comma-separated per account")
    a("--system-type", default="HLR")
    a("--sessions", type=int, default=4, help="transceivers (trx) or transmitters (tx+rx)")
    a("--window", type=int, default=64, help="outstanding submit_sm per transmitting session")
    a("--hostile", type=int, default=0,
      help="meanwhile, this many hostile connections (garbage, truncated PDUs, huge lengths, "
           "one byte a second, bad binds) from another process")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--count", type=int, default=None, help="total lookups (default 100000)")
    g.add_argument("--duration", type=float, default=None, help="seconds of submitting instead of --count")
    a("--rate", type=float, default=None, help="open loop: lookups/s offered in total (the window caps it)")
    a("--mode", choices=("trx", "tx+rx"), default="trx")
    a("--numbers", default=None,
      help="comma-separated patterns (447400xxxxxx), ranges (4479000000-4479009999) or @FILE; "
           "default: mobile ranges of 20 countries")
    a("--pool", type=int, default=8192, help="distinct numbers cycled through")
    a("--workers-bench", dest="workers", type=int, default=1,
      help="generator processes (trx mode), to check one process is not the bottleneck")
    a("--cpus", default=None,
      help="run the generator on these CPUs only (e.g. 1, 0,2 or 2-3), so that on a small machine "
           "it does not preempt the server's event loop on the others")
    a("--drain-timeout", type=float, default=60.0)
    a("--server-pid", type=int, default=None, help="measure this server process's CPU and RSS")
    a("--idle-sessions", type=int, default=0,
      help="instead of a load: server RSS before/after binding N idle sessions")
    a("--idle-bind", choices=("tx", "rx", "trx"), default="tx")
    a("--idle-settle", type=float, default=3.0)
    a("--spawn", action="store_true", help="start a server subprocess on free ports and measure it")
    a("--null-server", action="store_true",
      help="instead of hlrsmpp, spawn a do-nothing SMSC: the generator's own ceiling")
    a("--config", default=None, help="with --spawn: the server's config (default: generated)")
    a("--credit", default="1000000000",
      help="with --spawn: each generated account's prepaid credit, or 'unlimited' (no charging)")
    a("--keep", action="store_true", help="with --spawn: keep the temporary directory")
    a("--data", default=None,
      help="with --spawn: the server's store directory (kept; e.g. one filled by --prefill or "
           "python -m hlrsmpp.bench.prefill) instead of an empty temporary one")
    a("--prefill", type=int, default=0, metavar="N",
      help="with --spawn: first add N realistic lookups (30 days, 50 accounts) to the store")
    a("--tls", action="store_true",
      help="SMPP over TLS (to --port, or with --spawn to the spawned server's TLS port)")
    a("--sms", action="store_true",
      help="text messages instead of lookups: 1-part SMS from SMS accounts (with --spawn: service sms)")
    a("--json", action="store_true", help="machine-readable output")
    a("--progress", action="store_true", help="a line per second on stderr")
    p.set_defaults(func=cmd_bench)
    return p


def cmd_bench(args) -> int:
    count = args.count if args.count is not None else (None if args.duration else 100_000)
    cfg = BenchConfig(
        host=args.host, port=args.port, system_id=args.system_id, password=args.password,
        system_type=args.system_type, sessions=args.sessions, window=args.window, count=count,
        duration=args.duration, rate=args.rate, mode=args.mode, numbers=args.numbers, pool=args.pool,
        workers=args.workers, cpus=args.cpus, drain_timeout=args.drain_timeout, server_pid=args.server_pid,
        idle_sessions=args.idle_sessions, idle_bind=args.idle_bind, idle_settle=args.idle_settle,
        progress=args.progress, spawn=args.spawn, null_server=args.null_server, config=args.config,
        credit=args.credit, keep=args.keep, hostile=args.hostile, data=args.data, prefill=args.prefill,
        tls=args.tls, sms=args.sms)
    try:
        result = bench(cfg)
    except (OSError, ValueError, RuntimeError, asyncio.TimeoutError) as err:
        print(f"hlrsmpp bench: {err or type(err).__name__}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_text(result))
    bad = result.get("problems") or result.get("missing_receipts") or result.get("unanswered_submits")
    return 1 if bad else 0
