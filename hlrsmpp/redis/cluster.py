"""The loop side of a shared deployment: what one process does with the others.

- **Session rule** (``RedisRegistry``): a receiving session is a lease ``rx:SID`` taken
  with ``SET NX PX`` and a fencing token (compare-and-delete on release, renewed every
  third of the lease with the node's heartbeat); transmitters are members of a ZSET whose
  scores are their lease ends. A process that dies frees both within the lease time; a
  process that lost a lease (paused too long) unbinds its receiver.
- **Receipts**: every SMPP lookup's receipt is an entry of the account's stream
  (``rcpt:SID``, written by the group commit of the process that accepted it). The process
  holding the account's receiver consumes the stream (consumer group ``rx``, one consumer
  per node): first ``XAUTOCLAIM`` of everything delivered before and not acknowledged
  (a dead or departed receiver's), then new entries. Acknowledgements are ``XACK`` +
  ``XDEL`` in the group commit. At-least-once, as with the embedded store.
- **Credit**: a process spends credit leased to it (``reserve``: never more than the free
  pool holds) in its own ``AccountBook``, so admission stays local and synchronous; what
  it spends is committed with the lookups, what it does not spend goes back when idle, at
  exit, or (dead process) when any other process reaps its node.
- **Counters**: day/week/month counts are committed per group commit; each process adds
  what the others counted to its own windows (tolerance: what the others admitted since
  their last commit). ``tps`` and ``min_delay_ms`` hold per process.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date

import redis
import structlog

from ..accounts import Account, Package, from_micro
from ..accounts.calendar import Calendar
from ..domain import Lookup
from ..smpp.session import BindMode
from ..smpp.status import Status
from ..storage.local import LocalRegistry, refuses
from .store import GROUP, Fenced, RedisStore, decode_batch

log = structlog.get_logger("hlrsmpp.redis")


@dataclass
class _Lease:
    inflight: bool = False
    last_use: float = 0.0     # time of the last commit that spent this account's credit
    rate: float = 0.0         # micro-credits per second, smoothed
    rate_at: float = 0.0
    short: float = 0.0        # when the free pool last could not give what was asked
    free: int | None = None   # the free pool as last seen
    spent: int = 0            # since rate_at


class RedisRegistry(LocalRegistry):
    """The session rule across processes (see the module docstring); the dicts of
    ``LocalRegistry`` keep this process's sessions (counts, lookups)."""

    def __init__(self, cluster: "Cluster"):
        super().__init__()
        self.cluster = cluster
        self.store: RedisStore = cluster.store
        self.fences: dict[str, int] = {}
        self.tx_members: dict[object, tuple[str, str]] = {}
        self._claiming: set[str] = set()
        self._tx_claiming: dict[str, int] = {}
        self._n = 0

    def claim(self, account, mode: BindMode, proto) -> asyncio.Future[Status]:
        """Take a session slot: the answer comes once Redis has given it."""
        return asyncio.ensure_future(self._claim(account, mode, proto))

    async def _claim(self, account, mode: BindMode, proto) -> Status:
        sid = account.system_id
        txs = self.transmitters.setdefault(sid, set())
        # What this process holds or is claiming already refuses without asking Redis (and
        # keeps a second local receiver from replacing the first); Redis decides the rest.
        if refuses(mode, sid in self.receivers or sid in self._claiming,
                   len(txs) + self._tx_claiming.get(sid, 0), account.settings.max_tx):
            return Status.RBINDFAIL
        if mode & BindMode.RX:
            self._claiming.add(sid)
            try:
                fence = await self.cluster.run(self.store.rx_claim, sid)
            finally:
                self._claiming.discard(sid)
            if fence <= 0:
                return Status.RBINDFAIL
            self.receivers[sid] = proto
            self.fences[sid] = fence
            return Status.ROK
        self._n += 1
        member = f"{self.store.node}:{self._n}"
        self._tx_claiming[sid] = self._tx_claiming.get(sid, 0) + 1
        try:
            ok = await self.cluster.run(self.store.tx_claim, sid, member, account.settings.max_tx)
        finally:
            self._tx_claiming[sid] -= 1
        if not ok:
            return Status.RBINDFAIL
        txs.add(proto)
        self.tx_members[proto] = (sid, member)
        return Status.ROK

    def release(self, system_id: str, proto) -> None:
        if self.receivers.get(system_id) is proto:
            del self.receivers[system_id]
            fence = self.fences.pop(system_id)
            self.cluster.spawn(self.store.rx_release, system_id, self.store.rx_value(fence))
            self.cluster.receiver_gone(system_id)
        txs = self.transmitters.get(system_id)
        if txs:
            txs.discard(proto)
        member = self.tx_members.pop(proto, None)
        if member is not None:
            self.cluster.spawn(self.store.tx_release, *member)

    def lost(self, system_id: str):
        """Another process holds the receiver lease now: forget ours (no remote release)."""
        proto = self.receivers.pop(system_id, None)
        self.fences.pop(system_id, None)
        return proto

    def leases(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        return ([(sid, self.store.rx_value(f)) for sid, f in self.fences.items()],
                list(self.tx_members.values()))


class Cluster:
    """One process's membership of a shared deployment (a ``Deployment``); built by the
    server when ``storage.redis`` is set."""

    def __init__(self, server, store: RedisStore):
        self.server = server
        self.store = store
        self.opts = store.opts
        self.node = store.node
        store.periods = Calendar(server.cfg.get("accounts_timezone", "UTC"))
        self._io = ThreadPoolExecutor(4, thread_name_prefix="hlrsmpp-redis")
        self.registry = RedisRegistry(self)
        self.consuming: dict[str, int] = {}    # system_id -> generation of its local receiver
        self._attaching: dict[str, int] = {}
        self._gen = 0
        self._leases: dict[str, _Lease] = {}
        self._seen: dict[str, tuple[tuple, tuple]] = {}  # counters of other processes, as added
        self._tasks: list[asyncio.Task] = []
        self._spawned: set = set()
        self._stopping = False
        self._reader: threading.Thread | None = None
        self._acctlog = "0-0"
        self.loop: asyncio.AbstractEventLoop | None = None
        # The config file's accounts: Redis learns the ones it does not know (their credit
        # becomes the shared free pool); known ones keep their shared state.
        store.seed(a.to_record() for a in server.config_accounts)

    # ----------------------------------------------------------- helpers
    async def run(self, fn, *args):
        if self._stopping and self._io._shutdown:
            raise Fenced("leaving the deployment")
        return await self.loop.run_in_executor(self._io, fn, *args)

    def spawn(self, fn, *args) -> None:
        """Fire and forget a store call (errors are logged)."""
        try:
            fut = self.loop.run_in_executor(self._io, fn, *args)
        except RuntimeError:  # after stop(): leases end with the node anyway
            return
        self._spawned.add(fut)
        fut.add_done_callback(self._spawn_done)

    def _spawn_done(self, fut) -> None:
        self._spawned.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            err = fut.exception()
            if not isinstance(err, Fenced):
                log.error("redis_call_failed", error=repr(err))

    # ------------------------------------------------------------ start-up
    async def start(self) -> None:
        server, store = self.server, self.store
        self.loop = server.loop
        book = server.book
        book.on_no_credit = self._on_no_credit
        # Auto-recharge is decided by the commit script, with every process's charges.
        book.set_auto_recharge(None)
        store.recharge = self._recharge
        store.on_recharged = lambda made: self.loop.call_soon_threadsafe(self._recharged, made)
        store.limited = self._limited
        store.reading = self.consuming.__contains__
        store.on_commit = lambda results: self.loop.call_soon_threadsafe(self._after_commit, results)
        store.on_fenced = lambda: self.loop.call_soon_threadsafe(self._fenced)
        await self.run(store.heartbeat, [], [])  # from the start-up lease to the normal one
        now = time.time()
        for account in book:
            self._leases[account.system_id] = _Lease(last_use=now)
        self._acctlog = await self.run(store.last_settings_change)
        for warning in await self.run(store.durability_warnings):
            log.warning("redis_not_durable", problem=warning)
        for account in book:
            await self.run(store.ensure_group, account.system_id)
        await self._refresh_once()
        # A first lease for every credit-limited account: the first burst is admitted here.
        await asyncio.gather(*(self._refill(a, self._target(a)) for a in book
                               if a.packages is not None and a.settings.price))
        wake = store.wake_key()
        try:
            await self.run(lambda: store._ops.xgroup_create(wake, GROUP, id="$", mkstream=True))
        except redis.ResponseError:
            pass
        self._reader = threading.Thread(target=self._read_loop, name="hlrsmpp-receipts", daemon=True)
        self._reader.start()
        if self._stopping:
            return
        for coro in (self._heartbeat_loop(), self._refresh_loop(), self._janitor_loop()):
            self._tasks.append(self.loop.create_task(coro))
        log.info("cluster_joined", node=self.node, storage=store.file)

    def _limited(self, sid: str) -> bool:
        acc = self.server.book.get(sid)
        return acc is not None and acc.packages is not None

    def _recharge(self, sid: str) -> tuple | None:
        """The account's auto-recharge as the commit script takes it (on the writer thread:
        settings are immutable, swapped whole)."""
        acc = self.server.book.get(sid)
        ar = acc.settings.auto_recharge if acc is not None and acc.packages is not None else None
        if ar is None:
            return None
        return (ar.below, ar.add, ar.max_per_month, from_micro(ar.add), from_micro(ar.below),
                json.dumps(acc.settings.notify_channels()))

    def _recharged(self, made: list) -> None:
        """Auto-recharges our commit made: the free pool holds their packages now."""
        book = self.server.book
        for sid, month, count, add in made:
            acc = book.get(sid)
            if acc is not None and acc.packages is not None:
                book.set_elsewhere(acc, acc.usage.elsewhere + add)
            self.server.recharged(sid, month, count, add)

    # ------------------------------------------------------------ receipts
    def deliver(self, system_id: str, lookups: list[Lookup]) -> None:
        """Nothing to do: the commit put their receipts in the account's stream, which
        carries them to whichever process holds the account's receiver."""

    def attach_receiver(self, proto) -> None:
        """A receiving session bound here: consume the account's receipt stream."""
        sid = proto.account.system_id
        self.server.outboxes[sid].receiver = proto
        self._gen += 1
        self._attaching[sid] = self._gen
        self.loop.create_task(self._consume(sid, self._gen))

    async def _consume(self, sid: str, gen: int) -> None:
        for attempt in range(10):
            try:
                entries = await self.run(self._claim, sid)
                break
            except redis.RedisError as err:
                log.error("receipts_claim_failed", system_id=sid, error=repr(err))
                await asyncio.sleep(0.5 * (attempt + 1))
        else:
            # The receiver would wait for nothing: let the ESME bind again (anywhere).
            proto = self.registry.receivers.get(sid)
            if proto is not None and self._attaching.get(sid) == gen:
                proto.unbind()
            return
        if self._attaching.get(sid) != gen:
            return  # the receiver went away meanwhile: the entries stay pending for the next
        del self._attaching[sid]
        self.consuming[sid] = gen
        self._feed(sid, entries)
        self.spawn(self.store.wake)

    def _claim(self, sid: str) -> list[tuple]:
        """(worker thread) The account's receipts delivered before and never answered, minus
        those answered meanwhile; entries with nothing left leave the stream."""
        store = self.store
        out, empty = [], []
        for entry in store.claim_all(sid):
            if b"r" not in entry[1]:
                empty.append(entry[0])  # a text message changed: its receipt's reader reads it anyway
                continue
            eid, rows, origin, cseq = _decode(entry)
            rows = store.unanswered(rows, sid, entry)
            if rows:
                out.append((eid, rows, origin, cseq))
            else:
                empty.append(eid)
        if empty:
            key = store.P + "rcpt:" + sid
            store._ops.xack(key, GROUP, *empty)
            store._ops.xdel(key, *empty)
        return out

    def receiver_gone(self, sid: str) -> None:
        """The local receiver unbound or lost its lease: stop consuming; receipts not yet
        acknowledged stay pending in the stream for whichever process binds one next."""
        gen = self.consuming.pop(sid, None)
        self._attaching.pop(sid, None)
        if sid in self.server.outboxes:
            self.server.reset_outbox(sid)
        if gen is not None:
            # Acknowledgements already received still need their stream ids: forget the
            # mapping only after the next commit.
            self.server.journal.after_commit(lambda ok: self._forget_entries(sid, gen))
            self.spawn(self.store.wake)

    def _forget_entries(self, sid: str, gen: int) -> None:
        entries = self.store.entries
        for lid, e in list(entries.items()):
            if e[0] == sid and e[2] == gen:
                entries.pop(lid, None)
                self.store.batches.pop((e[1], gen), None)

    def _read_loop(self) -> None:
        """The reader thread: blocking XREADGROUP over the streams of the accounts whose
        receiver is here (woken through ``wake:n`` when that set changes)."""
        store = self.store
        r = store.reader()
        wake = store.wake_key()
        prefix = store.P + "rcpt:"
        while not self._stopping:
            streams = {prefix + sid: ">" for sid in list(self.consuming)}
            streams[wake] = ">"
            try:
                res = r.xreadgroup(GROUP, store.consumer, streams, count=1000, block=1000)
            except redis.ResponseError as err:
                if "NOGROUP" in str(err):
                    for sid in list(self.consuming):
                        try:
                            store.ensure_group(sid)
                        except redis.RedisError:
                            pass
                    try:
                        r.xgroup_create(wake, GROUP, id="$", mkstream=True)
                    except redis.ResponseError:
                        pass
                else:
                    log.error("receipts_read_failed", error=repr(err))
                    time.sleep(0.5)
                continue
            except Exception as err:  # connection trouble: try again shortly
                if not self._stopping:
                    log.error("receipts_read_failed", error=repr(err))
                    time.sleep(0.5)
                continue
            batch = []
            for key, entries in res or []:
                key = key.decode()
                if key == wake:
                    ids = [e[0] for e in entries]
                    try:
                        r.xack(wake, GROUP, *ids)
                        r.xdel(wake, *ids)
                    except redis.RedisError:
                        pass
                    continue
                # A text message another process changed (u: its id): read again now.
                changes = [e for e in entries if b"u" in e[1]]
                if changes:
                    try:
                        r.xack(key, GROUP, *[e[0] for e in changes])
                        r.xdel(key, *[e[0] for e in changes])
                    except redis.RedisError:
                        pass
                    changed = [int(e[1][b"u"]) for e in changes]
                    try:
                        self.loop.call_soon_threadsafe(self.server.sms.changed, changed)
                    except RuntimeError:
                        return
                sid = key[len(prefix):]
                batch.append((sid, [(eid, store.taken(sid, f, eid), f[b"n"].decode(), int(f[b"k"]))
                                    for eid, f in entries if f.get(b"r")]))
            if batch and not self._stopping:
                try:
                    self.loop.call_soon_threadsafe(self._on_read, batch)
                except RuntimeError:
                    return  # the loop is closed
        r.close()

    def _on_read(self, batch) -> None:
        for sid, items in batch:
            self._feed(sid, items)

    def _feed(self, sid: str, items: list) -> None:
        """Entries of the account's stream into its outbox. A receipt of a lookup this
        process accepted waits until that commit's submit_sm_resp went out (the journal's
        commit count); one from another process waits the cross-node guard."""
        gen = self.consuming.get(sid)
        if gen is None or not items:
            return  # not ours any more: the entries stay pending for the next receiver
        server = self.server
        box = server.outboxes[sid]
        entries, batches = self.store.entries, self.store.batches
        tag = self.store.tag
        commits = server.journal.commits
        guard = self.opts.cross_node_guard_ms / 1000.0
        now = time.time()
        held, later, ready = [], [], []
        for eid, rows, origin, cseq in items:
            if (eid, gen) in batches:
                continue  # claimed and read both: once is enough
            batches[eid, gen] = {row[0] for row in rows}
            mine = origin == tag and cseq > commits
            for row in rows:
                entries[row[0]] = (sid, eid, gen)
                lookup = Lookup.from_row(row)
                if mine:
                    held.append(lookup)
                elif origin != tag and now - lookup.submitted < guard and lookup.done < lookup.submitted + guard:
                    later.append(lookup)
                else:
                    ready.append(lookup)
        self._into(sid, gen, box, ready, now)
        if held:
            server.journal.after_commit(lambda ok: self._add(sid, gen, held))
        if later:
            self.loop.call_later(guard, self._add, sid, gen, later)

    def _add(self, sid: str, gen: int, lookups: list[Lookup]) -> None:
        if self.consuming.get(sid) != gen:
            return
        entries = self.store.entries
        self._into(sid, gen, self.server.outboxes[sid], [lk for lk in lookups if lk.id in entries], time.time())

    def _into(self, sid: str, gen: int, box, lookups: list[Lookup], now: float) -> None:
        """Receipts into the outbox: a lookup's at its done time; a text message's once
        its final state is known (server/sms_shared.py: it may have changed since)."""
        texts = []
        for lookup in lookups:
            if lookup.channel == "sms":
                texts.append(lookup)
            else:
                box.add(lookup, now)
        box.pump()
        if texts:
            self.server.sms.receive(sid, gen, texts)

    def receiving(self, sid: str, gen: int) -> bool:
        """Is the account's receiver still the one of generation ``gen`` here?"""
        return self.consuming.get(sid) == gen

    # ------------------------------------------------------------- credit
    def _target(self, acc) -> int:
        st = self._leases.get(acc.system_id)
        rate = st.rate if st else 0.0
        return max(self.opts.lease_lookups * _unit_price(acc), int(rate * self.opts.lease_seconds))

    def _on_no_credit(self, acc) -> None:
        """AccountBook refused for want of credit here: lease more (not more than once per
        50 ms while the free pool is dry)."""
        st = self._leases.setdefault(acc.system_id, _Lease())
        if st.inflight or (st.free == 0 and time.time() - st.short < 0.05):
            return
        self._maybe_refill(acc, force=True)

    def _maybe_refill(self, acc, force: bool = False) -> None:
        if acc.packages is None or not acc.settings.price or self._stopping:
            return
        st = self._leases.setdefault(acc.system_id, _Lease())
        if st.inflight:
            return
        target = self._target(acc)
        book = self.server.book
        if book.held(acc) >= target // 2 and not force:
            return
        want = max(target - book.held(acc), _unit_price(acc))
        st.inflight = True
        self.loop.create_task(self._refill(acc, want))

    async def _refill(self, acc, want: int) -> None:
        sid = acc.system_id
        st = self._leases.setdefault(sid, _Lease())
        st.inflight = True
        try:
            granted, slices, free = await self.run(self.store.reserve, sid, want)
        except Exception as err:
            if not isinstance(err, Fenced):
                log.error("credit_lease_failed", system_id=sid, error=repr(err))
            return
        finally:
            st.inflight = False
        st.free = free
        if granted:
            book = self.server.book
            if book.get(sid) is acc and acc.packages is not None:
                book.grant(acc, [Package(c, date.fromisoformat(b) if b else None, label)
                                 for c, b, label in slices])
                book.set_elsewhere(acc, acc.usage.elsewhere - granted)
            else:  # the account went away meanwhile: straight back
                self.spawn(self.store.give_back, sid, granted)
        if granted < want:
            st.short = time.time()
            self.spawn(self.store.want_credit, sid)

    async def _give_back(self, acc, amount: int) -> None:
        book = self.server.book
        taken = book.withdraw(acc, amount)
        if taken:
            book.set_elsewhere(acc, acc.usage.elsewhere + taken)
            try:
                await self.run(self.store.give_back, acc.system_id, taken)
            except Exception as err:
                # Unknown whether it landed: the credit stays counted in our lease, which is
                # safe (never an overdraft); it returns when this process leaves.
                log.error("credit_return_failed", system_id=acc.system_id, error=repr(err))

    # ------------------------------------------------------ after a commit
    def _after_commit(self, results: list) -> None:
        """Counters and queue lengths as of our commit; credit spent; leases topped up."""
        book = self.server.book
        now = time.time()
        for sid, keys, totals, mine, queued, _count, cost in results:
            self._sync_counts(sid, keys, totals, mine, now)
            box = self.server.outboxes.get(sid)
            if box is not None:
                box.size = queued
            acc = book.get(sid)
            if acc is not None and acc.packages is not None and acc.settings.price:
                st = self._leases.setdefault(sid, _Lease())
                st.spent += cost
                dt = now - st.rate_at
                if dt >= 0.1:  # the recent spending rate sizes the next lease
                    inst = st.spent / dt
                    st.rate = inst if st.rate_at == 0 else 0.5 * st.rate + 0.5 * inst
                    st.rate_at, st.spent = now, 0
                st.last_use = now
                self._maybe_refill(acc)

    def _sync_counts(self, sid: str, keys: tuple, totals: tuple, mine: tuple, now: float) -> None:
        if keys != self.store.periods.keys(now):
            return  # a commit across midnight: the next refresh brings the new windows
        acc = self.server.book.get(sid)
        if acc is None:
            return
        others = tuple(t - m for t, m in zip(totals, mine))
        prev_keys, prev = self._seen.get(sid, ((None, None, None), (0, 0, 0)))
        deltas = [o - (p if pk == k else 0) for o, p, pk, k in zip(others, prev, prev_keys, keys)]
        if any(deltas):
            self.server.book.count_elsewhere(acc, *deltas, now)
        self._seen[sid] = (keys, others)

    # ---------------------------------------------------------- refreshing
    async def _refresh_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.opts.refresh)
            try:
                await self._refresh_once()
                await self._leases_tick()
            except asyncio.CancelledError:
                raise
            except Fenced:
                return
            except Exception as err:
                log.error("cluster_refresh_failed", error=repr(err))

    async def _refresh_once(self) -> None:
        store, server = self.store, self.server
        self._acctlog, changes = await self.run(store.settings_changes, self._acctlog)
        for sid in dict.fromkeys(s for s, origin in changes if origin != store.tag):
            rec = await self.run(store.account_record, sid)
            if rec is not None:
                self._apply_settings(sid, rec)
        accounts = list(server.book)
        if not accounts:
            return
        now = time.time()
        keys = store.periods.keys(now)
        sids = [a.system_id for a in accounts]
        views = await self.run(store.refresh, sids, keys)
        mine = store.mine
        for k in [k for k in list(mine) if k[1] not in keys]:
            mine.pop(k, None)  # windows gone by
        for acc, (credit, counts, queued, recharges) in zip(accounts, views):
            sid = acc.system_id
            if acc.settings.auto_recharge is not None:
                server.book.count_recharges(acc, keys[2][1:], recharges)
            if credit is not None and acc.packages is not None:
                mine_lease = credit["leased"].get(self.node, 0)
                server.book.set_elsewhere(acc, credit["total"] - mine_lease)
                self._leases.setdefault(sid, _Lease()).free = credit["free"]
            self._sync_counts(sid, keys, counts, tuple(mine.get((sid, k), 0) for k in keys), now)
            box = server.outboxes.get(sid)
            if box is not None:
                box.size = queued

    async def _leases_tick(self) -> None:
        """Idle credit goes back (all of it when another process asks for it); accounts
        that ran short try again."""
        wanted = set(await self.run(self.store.wanted))
        now = time.time()
        book = self.server.book
        for acc in book:
            if acc.packages is None or not acc.settings.price:
                continue
            st = self._leases.setdefault(acc.system_id, _Lease())
            idle = now - st.last_use
            if book.held(acc) > 0 and not st.inflight:
                keep = None
                if acc.system_id in wanted and idle > 0.5:
                    keep = 0
                elif idle > self.opts.lease_idle:
                    keep = self.opts.lease_lookups * acc.settings.price // 4  # for the next burst
                if keep is not None and book.held(acc) > keep:
                    await self._give_back(acc, book.held(acc) - keep)
                    continue
            if now - st.short < 10 and st.free and book.held(acc) < self._target(acc) // 2:
                self._maybe_refill(acc, force=True)

    def _apply_settings(self, sid: str, rec: dict) -> None:
        """Another process created or changed an account: take the settings, keep the credit."""
        server = self.server
        live = server.book.get(sid)
        account = Account.from_record(rec)
        if live is None:
            server.add_account(account)
            self.spawn(self.store.ensure_group, sid)
        else:
            was_enabled = live.settings.enabled
            account.packages = live.packages if (live.packages is None) == (account.packages is None) \
                else account.packages
            server.book.replace(account, with_packages=True)
            server.ensure_outbox(live)
            if was_enabled and not live.settings.enabled:
                for proto in list(server.protocols):
                    if proto.account is live:
                        proto.unbind()
        self.store.settings_seen(sid, server.book.get(sid).to_record())
        log.info("account_changed_elsewhere", system_id=sid)

    # ----------------------------------------------------- heartbeat, janitor
    async def _heartbeat_loop(self) -> None:
        every = self.opts.lease / 3
        while True:
            await asyncio.sleep(every)
            receivers, transmitters = self.registry.leases()
            try:
                lost = await self.run(self.store.heartbeat, receivers, transmitters)
            except Fenced:
                return
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.error("heartbeat_failed", error=repr(err))
                continue
            for sid in lost:
                proto = self.registry.lost(sid)
                log.warning("receiver_lease_lost", system_id=sid)
                self.receiver_gone(sid)
                if proto is not None:
                    proto.unbind()

    async def _janitor_loop(self) -> None:
        every = max(0.5, self.opts.lease / 2)
        last_trim = 0.0
        while True:
            await asyncio.sleep(every)
            try:
                for n in await self.run(self.store.reap):
                    log.warning("node_reaped", node=n)
                now = time.time()
                if now - last_trim >= 60:
                    last_trim = now
                    if await self.run(self.store.janitor_lock, 55):
                        await self.run(self._housekeeping, now)
            except asyncio.CancelledError:
                raise
            except Fenced:
                return
            except Exception as err:
                log.error("janitor_failed", error=repr(err))

    def _housekeeping(self, now: float) -> None:
        store = self.store
        ttl = self.server.cfg["receipts"]["ttl"]
        expired = 0
        for acc in list(self.server.book):
            expired += store.expire_receipts(acc.system_id, now - ttl)
        trimmed = store.trim_history(now - store.ttl)
        if expired or trimmed:
            log.info("housekeeping", receipts_expired=expired, history_trimmed=trimmed)

    def _fenced(self) -> None:
        if self._stopping:
            return
        log.critical("node_lease_lost", node=self.node,
                     action="stopping: another process may own this node number now")
        self.server.exit_code = 3
        self.loop.create_task(self.server.stop())

    # ------------------------------------------------------------ shutdown
    async def stop(self) -> None:
        """After the journal drained: sessions' leases freed, unspent credit back, node freed."""
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        if self._spawned:
            await asyncio.wait(list(self._spawned), timeout=5)
        for sid, value in self.registry.leases()[0]:
            await self.run(self.store.rx_release, sid, value)
        try:
            back = await self.run(self.store.leave)
            log.info("cluster_left", node=self.node, credit_returned=back / 1_000_000)
        except Exception as err:
            log.error("cluster_leave_failed", error=repr(err))
        try:
            await self.run(self.store.wake)
        except Exception:
            pass
        if self._reader is not None:
            await self.loop.run_in_executor(None, self._reader.join, 5)
        self._io.shutdown(wait=True)


def _unit_price(acc) -> int:
    """What one lookup, or one SMS of an SMS account, costs."""
    s = acc.settings
    return s.sms_price if s.service == "sms" else s.price


def _decode(entry) -> tuple:
    """A stream entry: (entry id, its rows, the node tag that committed it, commit number)."""
    eid, fields = entry
    return eid, decode_batch(fields[b"r"]), fields[b"n"].decode(), int(fields[b"k"])
