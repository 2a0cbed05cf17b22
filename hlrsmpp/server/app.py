"""The hlrsmpp server: wires the store, accounts, resolver, journal, engine,
outboxes and listeners together; runs the timers; shuts down cleanly.
"""
from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import structlog

from .. import admin_token, metrics
from ..config import ConfigError
from ..accounts import Account, AccountBook, from_micro
from ..accounts.allowlist import parse_allowlist
from ..accounts.passwords import hash_password, parse_operators
from ..accounts.store import Store as SQLiteStore
from ..domain import EXPIRED, Lookup
from ..storage.protocols import Deployment, Store
from ..hlr import Resolver
from ..smpp.status import Status
from .admin import AccountAdmin
from .engine import LookupEngine
from .faults import FaultPlan
from .front import Listener, listen
from .retention import Retention
from .gate import ConnectionGate, Descriptors
from .tls import Certificates
from .trace import FileSink, MemorySink, PduTrace
from ..smpp.codec import Command, Pdu
from ..smpp.session import BindMode
from ..ids import IdGenerator
from .journal import Journal
from .notify import Notifier, ledger_recharges
from .http.api import Webhooks
from .outbind import Outbinder
from .receipts import Outbox
from .sms import CHANNEL as SMS_CHANNEL, SmsCenter
from .smpp import SmppProtocol
from .standalone import Standalone

if TYPE_CHECKING:
    from aiohttp import web

log = structlog.get_logger("hlrsmpp.server")


def open_store(storage: dict[str, Any], tz: str = "UTC") -> tuple[Store, Callable[[Server], Deployment]]:
    """The store, its days (rollups, ledger) in the accounts' timezone ``tz``, and how this
    process takes part in it (built once the book exists): the embedded SQLite store,
    alone, by default; Redis, shared with other processes, when ``storage.redis`` is set,
    with the history in PostgreSQL when ``storage.postgres`` is set too. The only place
    that asks which."""
    if storage.get("postgres"):
        if not storage.get("redis"):
            raise ConfigError("storage.postgres: needs storage.redis too (Redis keeps the hot state)")
        from ..postgres import ArchivedCluster, ArchivedStore  # only these deployments need asyncpg
        archived = ArchivedStore(storage, tz)
        return archived, lambda server: ArchivedCluster(server, archived)
    if storage.get("redis"):
        from ..redis import Cluster, RedisStore  # only deployments on Redis need the client
        shared = RedisStore(storage["redis"], tz)
        return shared, lambda server: Cluster(server, shared)
    local = SQLiteStore(storage["path"], storage.get("synchronous", "NORMAL"), tz)
    return local, lambda server: Standalone(server, local)


def _lower_priority() -> None:
    try:  # Linux: a thread's nice value is its own (best effort elsewhere)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


class Server:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.loop: asyncio.AbstractEventLoop  # from start() on
        self.protocols: set[SmppProtocol] = set()
        # Connection caps and the descriptor reserve, the same rules on both listeners.
        self.descriptors = Descriptors()
        sc, hc = cfg["smpp"], cfg["http"]
        reserve = int(sc.get("fd_reserve", 0))
        self.smpp_gate = ConnectionGate("smpp", sc["max_connections"], sc["max_connections_per_ip"],
                                        self.descriptors, reserve // 2)
        self.http_gate = ConnectionGate("http", hc["max_connections"], hc["max_connections_per_ip"],
                                        self.descriptors, reserve)
        self.outboxes: dict[str, Outbox] = {}
        self.trace_sinks: dict = {}
        self.smpp_server: asyncio.AbstractServer | None = None
        self.smpp_port: int | None = None
        self.smpp_tls_server: asyncio.AbstractServer | None = None
        self.smpp_tls_port: int | None = None
        self.smpp_tls: Certificates | None = None  # when the listener has TLS
        self.http_tls: Certificates | None = None
        self.http_runner: web.AppRunner | None = None
        self.http_port: int | None = None
        self.notifier: Notifier | None = None
        self._ticker: asyncio.Task | None = None
        self.retention: Retention | None = None
        self._stopping = False
        self.stopped = asyncio.Event()
        self.exit_code = 0
        # Password checks (scrypt) on ONE thread of lower priority: a flood of wrong
        # passwords, or the hashing at start-up, never takes more than a core from the
        # lookups, the heartbeat of a shared deployment or the other processes of one.
        self.kdf = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hlrsmpp-kdf",
                                      initializer=_lower_priority)
        self.faults = FaultPlan()

    @property
    def stopping(self) -> bool:
        return self._stopping

    # ------------------------------------------------------------ start-up
    async def start(self) -> None:
        cfg = self.cfg
        self.loop = asyncio.get_running_loop()
        self.store, join = open_store(cfg["storage"], cfg["accounts_timezone"])
        self._admin_token()
        bans = cfg["bans"]
        self.book = AccountBook(tz=cfg["accounts_timezone"], ban_after=bans["after"],
                                ban_window=bans["window"], ban_time=bans["time"],
                                on_low_credit=self._low_credit, on_auto_recharge=self._auto_recharged)
        try:
            await self._start_from_config(join)
        except ValueError as err:
            # The validators of accounts, hlr and faults name what is wrong: one line for
            # the operator (exit 2), not a traceback; what was opened is closed (they are
            # all checked before the journal starts).
            self.store.close()
            self.kdf.shutdown(wait=False)
            raise ConfigError(str(err)) from None
        await self._listen()

    async def _start_from_config(self, join: Callable[[Server], Deployment]) -> None:
        cfg = self.cfg
        # The numbering tables first (seconds on a busy machine): a shared store's node
        # lease, taken by joining below, runs from then on until the heartbeat renews it.
        self.resolver = Resolver.from_config(cfg.get("hlr") or {}, Path(cfg["base_dir"]))
        stored = self.store.account_records()
        self.config_accounts = [Account.from_config(d) for d in cfg["accounts"]]
        #: The console's operator users (admin.users): name -> password hash.
        self.operators = parse_operators(cfg["admin"].get("users", []), {a.system_id for a in self.config_accounts})
        await self._hash_passwords(self.config_accounts, stored)
        # This process joins its store (its node number, the session registry; on a shared
        # store, the file's accounts seeded: read the records again) before the accounts
        # are loaded.
        self.deployment = join(self)
        self.registry = self.deployment.registry
        stored = self.store.account_records()
        fresh, self._rewrite = self._load_accounts(stored)
        # Records that still hold a password in clear (written before hashes): hashed now,
        # and rewritten once listening (a shared deployment's cluster has started then).
        await self._hash_passwords(self._rewrite, {})
        if self.book.has_limits():
            now = time.time()
            self.book.restore_counts(self.store.period_counts(self.book.periods(now)), now)
        self._restore_recharges()
        self.replace_faults(cfg.get("faults") or [])
        self.journal = Journal(self.store, self.book, self.loop)
        self.admin = AccountAdmin(self.book, self.journal, self.store, self._hash_passwords, self.add_account,
                                  self.ensure_outbox, self.unbind_account)
        self.outbinder = Outbinder(self.book, lambda: SmppProtocol(self), cfg["smpp"]["system_id"],
                                   cfg["smpp"]["outbind_interval"])
        now = time.time()
        self.book.restore_bans(self.store.bans(now), now)
        self.book.on_ban = self.journal.add_ban
        self.ids = IdGenerator(self.deployment.node, floor=self.store.max_id())
        rc = cfg["receipts"]
        self.submit_window = cfg["smpp"]["submit_window"]
        self.submit_window_status = Status[cfg["smpp"]["submit_window_status"].upper().removeprefix("ESME_")]
        self.engine = LookupEngine(self.resolver, self.book, self.journal, self.ids, self.outboxes,
                                   rc["max_queue"])
        self.sms = SmsCenter(self)
        self.replayed = self._replay_receipts()
        # Credit as loaded is already durable; no need to write it back.
        self.book.take_dirty()
        if opening := [(a, a.credit) for a in fresh if a.credit]:
            # Credit the store has not seen yet enters the ledger once, with the record:
            # from then on an account's credit is always its ledger less its lookups. (A
            # shared store has seen every account of the file: joining seeded them.)
            now = time.time()
            for account, credit in opening:
                self.book.mark_dirty(account)
                self.journal.add_ledger(account.system_id, now, "top_up", credit, "config")
            await self.persist()

    async def _listen(self) -> None:
        cfg = self.cfg
        await self.deployment.start()  # shared: leases, receipt streams, heartbeat
        if self._rewrite:
            for account in self._rewrite:
                self.book.mark_dirty(account)
            await self.persist()
            log.info("passwords_hashed", accounts=len(self._rewrite))
        sc = cfg["smpp"]
        self.http_port = None
        section, port = "smpp", sc["port"]
        try:
            # The PROXY header's peers and the certificates: a front door before the session.
            self.smpp_tls = Certificates.from_config("smpp", sc["tls"], cfg["base_dir"])
            self.http_tls = Certificates.from_config("http", cfg["http"]["tls"], cfg["base_dir"])
            plain, secure = (Listener(self.loop, self.smpp_gate, lambda: SmppProtocol(self),
                                      sc["session_init_timeout"],
                                      parse_allowlist(sc["proxy_protocol"], "smpp.proxy_protocol"),
                                      certs, sc["tarpit"], self._banned)
                             for certs in (None, self.smpp_tls))
            self.smpp_server = await listen(
                self.loop, plain if plain.needed else lambda: SmppProtocol(self), sc["host"], port,
                bool(sc.get("reuse_port")))  # serve --workers: one port, N processes
            self.smpp_port = self.smpp_server.sockets[0].getsockname()[1]
            if self.smpp_tls is not None:
                section, port = "smpp.tls", sc["tls"]["port"]
                self.smpp_tls_server = await listen(self.loop, secure, sc["host"], port,
                                                    bool(sc.get("reuse_port")))
                self.smpp_tls_port = self.smpp_tls_server.sockets[0].getsockname()[1]
            section, port = "http", cfg["http"]["port"]
            if cfg["http"].get("enabled", True):
                await self._start_http()
        except OSError as err:
            # A port in use or an address not ours: the operator's to fix, in one line.
            await self.stop(grace=0)
            host = cfg[section.partition(".")[0]]["host"]
            reason = os.strerror(err.errno) if err.errno else str(err)   # uvloop: no strerror
            hint = "" if "." in section else f" or --{section}-port"
            raise ConfigError(f"{section}: cannot listen on {host}:{port}: {reason.lower()} "
                              f"(set {section}.port{hint})") from None
        except ValueError as err:   # the prepaid services' validator names service and key
            await self.stop(grace=0)
            raise ConfigError(str(err)) from None
        self._ticker = self.loop.create_task(self._tick_loop())
        try:
            self.notifier = Notifier(self, Webhooks(cfg))
        except ConfigError:
            await self.stop(grace=0)
            raise
        self.notifier.start()
        _freeze_long_lived()
        log.info("server_started", smpp_port=self.smpp_port, smpp_tls_port=self.smpp_tls_port,
                 http_port=self.http_port, https=self.http_tls is not None,
                 storage=str(self.store.file), accounts=len(self.outboxes), receipts_replayed=self.replayed,
                 codec=metrics.CODEC, commit=metrics.COMMIT, draws=metrics.DRAWS)

    def start_retention(self, store: SQLiteStore) -> None:
        """History retention on the embedded store, which the local deployment starts (a
        shared store expires its own)."""
        days = self.cfg["history"]["retention_days"]
        periods = store.periods
        self.retention = Retention(store.file, days, lambda t: periods.span(t)[2],
                                   initializer=_lower_priority)
        self.retention.start()
        if days and store.auto_vacuum != "incremental":
            log.warning("store_keeps_its_size", file=str(store.file),
                        hint="pruned pages are reused, not given back: see docs/operations.md, History retention")

    def _admin_token(self) -> None:
        """No admin.token configured: the one in the data directory, created at the first
        start and printed once where someone watches (a terminal, as Jupyter does)."""
        path = admin_token.token_path(self.cfg)
        if path is None:
            return
        try:
            token, created = admin_token.ensure(path)
        except OSError as err:
            raise ConfigError(f"admin.token_file: cannot use {path}: "
                              f"{err.strerror or err} (or set admin.token)") from None
        self.cfg["admin"]["token"] = token
        if not created:
            if (mode := path.stat().st_mode & 0o777) & 0o077:   # loosened since: say so
                log.warning("admin_token_file_readable_by_others", file=str(path), mode=oct(mode))
            return
        log.warning("admin_token_created", file=str(path))
        if sys.stderr.isatty():
            print(f"\n    No admin.token configured: created one in {path} (mode 0600).\n"
                  f"    The admin API takes:  Authorization: Bearer {token}\n"
                  f"    hlrsmpp accounts and hlrsmpp history read it from that file when run\n"
                  f"    from this directory.\n", file=sys.stderr, flush=True)

    async def _start_http(self) -> None:
        try:
            from .http import start_http
        except ImportError:  # the HTTP app arrives with its own issue
            return
        self.http_runner, self.http_port = await start_http(self)

    def _load_accounts(self, stored: dict[str, dict]) -> tuple[list[Account], list[Account]]:
        """Config accounts, overlaid by the durable state (credit spent, top-ups,
        accounts created at run time) from the ``stored`` records; (those of the config
        the store does not know yet, those whose stored record must be rewritten: a
        password in clear, or another hash than the config's)."""
        fresh, rewrite = [], []
        stored = dict(stored)
        for account in self.config_accounts:
            rec = stored.pop(account.system_id, None)
            if rec is not None:
                # Settings come from the file; credit as spent and topped up, from the store.
                account.packages = Account.from_record(rec).packages
                if "password" in rec or rec.get("password_hash") != account.settings.password_hash:
                    rewrite.append(account)
            else:
                fresh.append(account)
            self.add_account(account)
        for rec in stored.values():
            account = Account.from_record(rec)
            if account.settings.password_hash is None:
                rewrite.append(account)
            self.add_account(account)
        return fresh, rewrite

    async def _hash_passwords(self, accounts: list[Account], stored: dict[str, dict]) -> None:
        """Give each account given a password in clear its hash, on the KDF threads: the
        stored one if it is of this password (the record stays the same), else a new one.
        Either way the password is remembered as verified: the first bind is cheap too."""
        verified = self.book.verified

        def work(system_id: str, password: str) -> str:
            earlier = (stored.get(system_id) or {}).get("password_hash")
            if isinstance(earlier, str) and verified.check(system_id, earlier, password):
                return earlier
            encoded = hash_password(password)
            verified.remember(system_id, encoded, password)
            return encoded

        todo = [(a, a.settings.password) for a in accounts
                if a.settings.password_hash is None and a.settings.password is not None]
        hashes = await asyncio.gather(*(self.loop.run_in_executor(self.kdf, work, a.system_id, password)
                                        for a, password in todo))
        for (account, _), encoded in zip(todo, hashes):
            self.book.set_password_hash(account, encoded)

    async def login(self, system_id: str, password: str, ip: str):
        """An HTTP login: AccountBook.authenticate with the password's full check (when
        this password has not passed it before) on the KDF threads. HTTP carries no
        system_type: the account's own is taken."""
        book = self.book
        refusal, account = book.identify(system_id, ip, time.time())
        if refusal is not None:
            return refusal, None
        assert account is not None  # identified
        ok = book.password_known(account, password)
        if ok is None:
            ok = await self.check_password(account, password)
        return book.conclude(account, ok, account.settings.system_type, ip, time.time())

    async def check_password(self, account: Account, password: str) -> bool:
        return await self.loop.run_in_executor(self.kdf, self.book.verify_password, account, password)

    def add_account(self, account: Account) -> None:
        self.book.add(account)
        self.ensure_outbox(account)

    def ensure_outbox(self, account: Account) -> None:
        """The account's outbox, made or brought up to date with its settings."""
        rc = self.cfg["receipts"]
        box = self.outboxes.get(account.system_id)
        if box is None:
            box = self.outboxes[account.system_id] = Outbox(
                account.system_id, self._on_ack, self._call_later, self.cfg["smpp"]["window"],
                rc["data_coding"], rc["retry_min"], rc["retry_max"])
        box.transmitters = self.registry.transmitters.setdefault(account.system_id, set())
        s = account.settings
        box.data_coding = s.data_coding if s.data_coding is not None else rc["data_coding"]
        box.profile = s.receipt if s.receipt["profile"] != "standard" else None
        box.sms = s.service == "sms"

    async def persist(self) -> None:
        """Commit whatever changed now (dirty accounts, ledger) and wait for it."""
        done: asyncio.Future[bool] = self.loop.create_future()

        def committed(ok: bool) -> None:
            if not done.done():
                done.set_result(ok)
        self.journal.after_commit(committed)
        if not await done:
            raise RuntimeError("the store refused the commit")

    def _replay_receipts(self) -> int:
        n = 0
        now = time.time()
        for row in self.store.pending_receipts():
            box = self.outboxes.get(row["system_id"])
            if box is None:
                continue
            if row["channel"] == SMS_CHANNEL:
                self.sms.replay(row, now)
                n += 1
                continue
            box.size += 1
            box.add(Lookup.from_row(row), now)
            n += 1
        return n

    # ----------------------------------------------------------- receipts
    def deliver(self, system_id: str, lookups: list[Lookup]) -> None:
        """Durable lookups whose submit_sm_resp went out: their receipts may flow (to the
        account's outbox here, or through its shared stream to whichever process receives)."""
        self.deployment.deliver(system_id, lookups)

    def replace_faults(self, rules: list[dict]) -> None:
        """The test bench's rules, from the config or the admin API (validated first)."""
        self.faults.replace(rules, self.outboxes)

    # ---------------------------------------------------------- PDU trace
    def trace_session(self, proto: SmppProtocol, bind) -> None:
        """Start tracing a session being bound, if its account is traced."""
        account = proto.account
        if not account.settings.trace:
            return
        sink = self.trace_sinks.get(account.system_id)
        if sink is None:
            sink = self.trace_sinks[account.system_id] = (
                MemorySink() if account.settings.trace is True else FileSink(account.settings.trace))
        mode = BindMode.of(bind.command).label
        proto.tracer = PduTrace(f"{account.system_id}/{mode}/{proto.peer_ip}:{proto.peer_port}", sink)
        proto.tracer.record("<", bind)

    async def set_trace(self, system_id: str, trace: bool | str) -> None:
        """Trace an account from now on (its sessions bound later, and those bound now).
        A changed setting gets a new sink; the old one (and its file) is closed."""
        changed = self.admin.account(system_id).settings.trace != trace
        await self.admin.update(system_id, {"trace": trace})
        old = self.trace_sinks.pop(system_id, None) if changed or not trace else None
        for proto in list(self.protocols):
            if proto.account is not None and proto.account.system_id == system_id:
                proto.tracer = None
                if trace:
                    self.trace_session(proto, _trace_started_note(proto))
        if old is not None:
            old.close()

    def trace_lines(self, system_id: str, limit: int = 1000) -> list[str]:
        sink = self.trace_sinks.get(system_id)
        return list(sink.lines)[-limit:] if sink is not None else []

    def unbind_account(self, system_id: str) -> None:
        """Unbind every session of the account (it was disabled)."""
        for proto in list(self.protocols):
            if proto.account is not None and proto.account.system_id == system_id:
                proto.unbind()

    def attach_receiver(self, proto: SmppProtocol) -> None:
        self.deployment.attach_receiver(proto)

    def reset_outbox(self, system_id: str) -> Outbox:
        """Shared deployments: the receiver left this process; a fresh outbox (the old
        one's receipts stay pending in the account's stream for the next receiver)."""
        old = self.outboxes.pop(system_id)
        account = self.book.get(system_id)
        assert account is not None  # its receiver was bound here
        self.ensure_outbox(account)
        box = self.outboxes[system_id]
        box.size = old.size
        return box

    def _call_later(self, delay: float, fn, *args):
        return self.loop.call_later(delay, fn, *args)

    def _on_ack(self, lookups: list[Lookup], pending: int) -> None:
        """Receipts answered ESME_ROK (pending 0) or expired (EXPIRED), an outbox's batch."""
        self.journal.add_acks([lookup.id for lookup in lookups], pending)
        if pending == EXPIRED:
            metrics.STATS.receipts_expired[lookups[0].system_id] += len(lookups)
        else:
            metrics.STATS.observe_latencies(time.time(), lookups)

    def _restore_recharges(self) -> None:
        """This month's auto-recharges of each account, from its ledger: max_per_month holds
        across a restart."""
        month = self.book.month(time.time())
        for account in self.book:
            if account.settings.auto_recharge is not None:
                n = len(ledger_recharges(self.store, self.book, account.system_id, month))
                self.book.count_recharges(account, month, n)

    def _auto_recharged(self, account, package, at: float) -> None:
        """The book added an auto-recharge package: its ledger entry joins the commit of
        the charge that crossed (the account's record, with the package, is in it too);
        the notification once that is durable, or at the next start."""
        sid, ar = account.system_id, account.settings.auto_recharge
        month, n = self.book.recharges(account, at)
        self.journal.add_ledger(sid, at, "auto_recharge", package.credit,
                                f"credit below {from_micro(ar.below)}: {n} of {ar.max_per_month} in {month}")

        def noted(ok: bool) -> None:
            if ok and self.notifier is not None:
                self.notifier.auto_recharged(account, month, n, package.credit)

        # Not started now: the lookup that crossed is added after this, into the same commit.
        self.journal.after_commit(noted, early=False)
        log.info("auto_recharged", system_id=sid, credit=package.credit / 1_000_000, month=month, count=n)

    def recharged(self, system_id: str, month: str, count: int, add: int) -> None:
        """A shared store's commit made an auto-recharge (and wrote its notification)."""
        account = self.book.get(system_id)
        if account is not None:
            self.book.count_recharges(account, month, count)
        metrics.STATS.notifications["auto_recharge", "noted"] += 1
        if self.notifier is not None:
            self.notifier.wake()
        log.info("auto_recharged", system_id=system_id, credit=add / 1_000_000, month=month, count=count)

    def _low_credit(self, account) -> None:
        if self.notifier is not None:
            self.notifier.low_credit(account)
        log.warning("low_credit", system_id=account.system_id, credit=account.credit / 1_000_000,
                    threshold=account.settings.low_credit / 1_000_000)

    # --------------------------------------------------------- connections
    def admit_connection(self, proto: SmppProtocol) -> bool:
        # A banned IP may connect, to be told ESME_RBINDFAIL (the bind status of a ban)
        # before its credentials are even read; the session_init timer bounds what it holds.
        if not self.smpp_gate.admit(proto.peer_ip):
            return False
        self.protocols.add(proto)
        return True

    def _banned(self, ip: str) -> bool:
        return self.book.check_ip(ip, time.time()) is not None

    def forget(self, proto: SmppProtocol) -> None:
        if proto in self.protocols:
            self.protocols.discard(proto)
            self.smpp_gate.release(proto.peer_ip)
        self.release(proto)

    def release(self, proto: SmppProtocol) -> None:
        """The session ends (unbound or gone): free its slot at once, so the ESME
        can bind again before the TCP close has even completed."""
        if proto.account is not None:
            self.registry.release(proto.account.system_id, proto)
            if proto.outbox is not None:
                proto.outbox.detach(proto)

    def session_counts(self) -> dict[str, int]:
        return self.registry.counts()

    # --------------------------------------------------------------- timers
    async def _tick_loop(self) -> None:
        sc = self.cfg["smpp"]
        ttl = self.cfg["receipts"]["ttl"]
        while True:
            await asyncio.sleep(min(1.0, sc["response_timeout"] / 2))
            now = time.monotonic()
            for proto in list(self.protocols):
                if not proto.closed:
                    proto.tick(now, sc)
            deadline = now - sc["response_timeout"]
            before = time.time() - ttl
            for box in list(self.outboxes.values()):  # a dropped receiver may reset its outbox
                if box.inflight:
                    receiver = box.receiver
                    # A frozen receiver gives its slot back (and its receipts go again).
                    if (receiver is not None and receiver.last_rx < deadline
                            and box.oldest_sent() < deadline
                            and receiver.receipts_unanswered(now, sc["response_timeout"])):
                        continue
                    box.timed_out(deadline)
                if box.ready:
                    expired = box.expire(before)
                    if expired:
                        log.warning("receipts_expired", system_id=box.system_id, count=expired,
                                    ttl=ttl)
                    if box.receiver is None:
                        self.outbinder.maybe(box.system_id, now)
                    box.pump()

    # ------------------------------------------------------------- shutdown
    def reload(self) -> None:
        """SIGHUP: re-read HLR rules and data files, and the listeners' certificates,
        without dropping sessions. A bad file is logged and what is in force stays."""
        for certificates in (self.smpp_tls, self.http_tls):
            if certificates is not None:
                try:
                    certificates.reload()
                except ValueError as err:
                    log.error("reload_failed", error=str(err))
                    return
        try:
            self.resolver.reload()
        except Exception as err:
            log.error("reload_failed", error=str(err))
            return
        _freeze_long_lived()
        log.info("reloaded")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, unbind every session, let in-flight work finish, flush."""
        if self._stopping:
            return
        self._stopping = True
        self.outbinder.stopping = True
        self.smpp_gate.closed = self.http_gate.closed = True
        log.info("server_stopping", sessions=len(self.protocols))
        for listening in (self.smpp_server, self.smpp_tls_server):
            if listening is not None:
                listening.close()
        await self.journal.drain()
        for proto in list(self.protocols):
            if proto.session.state.name == "BOUND":
                proto.unbind()
        deadline = time.monotonic() + grace
        while self.protocols and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for proto in list(self.protocols):
            proto.abort()
        if self._ticker is not None:
            self._ticker.cancel()
        if self.http_runner is not None:
            await self.http_runner.cleanup()
        await self.journal.drain()
        if self.retention is not None:
            await self.retention.stop()
        if self.notifier is not None:
            await self.notifier.stop()
        await self.deployment.stop()  # shared: sessions' leases freed, unspent credit given back
        self.journal.close()
        self.store.close()
        self.kdf.shutdown(wait=False, cancel_futures=True)
        log.info("server_stopped")
        self.stopped.set()


async def serve(cfg: dict) -> int:
    """Run until SIGTERM/SIGINT; SIGHUP reloads the HLR rules. The exit code."""
    server = Server(cfg)
    loop = asyncio.get_running_loop()
    # Handlers first: a SIGTERM that lands while the server is still starting (its SMPP
    # port may already accept) is honoured as soon as it has started, never lost.
    asked = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, asked.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)  # nothing to reload before it has started
    await server.start()
    loop.add_signal_handler(signal.SIGHUP, server.reload)

    async def stop_when_asked() -> None:
        await asked.wait()
        await server.stop()

    loop.create_task(stop_when_asked())
    await server.stopped.wait()
    return server.exit_code


def _freeze_long_lived() -> None:
    """Keep what start-up (or a reload) built, the numbering tables above all, out of
    the garbage collector's full collections. Each would otherwise walk them all, some
    100-200 ms with every session waiting, every few seconds while a flood churns
    through lookups. (No collection first: it would cost as much, once; what is frozen
    is still freed when its last reference goes.)"""
    gc.freeze()


def _trace_started_note(proto: SmppProtocol) -> Pdu:
    """A note in the trace of a session already bound when tracing was turned on."""
    command = {"tx": Command.BIND_TRANSMITTER, "rx": Command.BIND_RECEIVER,
               "trx": Command.BIND_TRANSCEIVER}[proto.session.mode.label]
    return Pdu(command, 0, 0, {"system_id": proto.account.system_id, "note": "trace started"})
