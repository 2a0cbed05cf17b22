"""Group commit: everything the loop decided in one turn becomes durable in one
transaction on a writer thread, then the replies that depend on it go out.

While one commit runs, the next batch fills; so throughput grows with load and
a submit_sm_resp is never written before its lookup, charge and receipt are on
disk: an acknowledged lookup survives a crash.

Two writers. With the C committer (SQLite, ``_sqlite_batch.c``) each turn's batch
is handed over at once, values copied, and the committer's own thread, which needs
no GIL, runs every batch queued by then in one transaction and says so through a
pipe the loop reads: no wait for the GIL between commits. Otherwise (Redis, or
the Python build) a Python thread takes one batch at a time from the loop.
"""
from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from collections.abc import Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any, Callable

import structlog

from ..storage.protocols import Store

if TYPE_CHECKING:
    from ..accounts import AccountBook

log = structlog.get_logger("hlrsmpp.journal")

#: A row as the store writes it (a lookup, a ledger entry, a text message).
Row = tuple[Any, ...]
#: Called with whether the commit it waited for succeeded.
After = Callable[[bool], None]
#: An operator's change: what it writes (account records, ledger entries), and its callback.
#: (records None: the change is refused.)
Write = Callable[[], tuple[list[tuple[str, str]] | None, Sequence[Row]]]
Change = tuple[Write, After]
#: One group commit: lookups, acks, account records, ledger, bans, probe, text messages,
#: and the callbacks that wait for it.
Batch = tuple[list[Row], list[tuple[int, int]], list[tuple[str, str]], list[Row], list[tuple[str, float]],
              bool, list[Row], list[After]]


class Journal:
    def __init__(self, store: Store, book: AccountBook, loop: asyncio.AbstractEventLoop):
        self.store = store
        self.book = book
        self.loop = loop
        self._lookups: list[Row] = []
        self._acks: list[tuple[int, int]] = []
        self._ledger: list[Row] = []
        self._bans: list[tuple[str, float]] = []
        self._sms: list[Row] = []
        self._probe = False
        self._due = False   # the store has writes of its own waiting (Store.on_due)
        self._after: list[After] = []
        self._scheduled = False
        self._busy = False
        # An operator's change is in the one batch in flight: nothing else is handed over
        # until its outcome is known (and, if committed, applied).
        self._held = False
        self._quiet: list[asyncio.Future[None]] = []  # changes waiting for no batch in flight
        self._changing = asyncio.Lock()
        self._idle = asyncio.Event()
        self._idle.set()
        self.commits = 0
        self.failures = 0   # commits the store refused (metric)
        self._committer = store.committer
        self._writer: threading.Thread | None = None
        store.on_due(lambda: loop.call_soon_threadsafe(self._store_due))
        if self._committer is not None:
            # Batches handed to the C committer, oldest first: (job id, callbacks, refused).
            self._inflight: deque[tuple[int, list[After], bool]] = deque()
            loop.add_reader(self._committer.fileno(), self._completed)
            return
        # One writer thread fed by a SimpleQueue (C, no lock dance) and answering with
        # call_soon_threadsafe: a ThreadPoolExecutor's submit cost ~8 % of the loop's
        # time once commits started as soon as the writer was idle.
        self._jobs: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, name="hlrsmpp-commit", daemon=True)
        self._writer.start()

    # -------------------------------------------------------------- intake
    def add_lookup(self, row: Row) -> None:
        self._lookups.append(row)
        if not self._scheduled:
            self._schedule()

    def add_acks(self, lookup_ids: list[int], pending: int = 0) -> None:
        """Receipts done: ``pending`` is their lookups' new state (0 acknowledged, or EXPIRED)."""
        self._acks += zip(repeat(pending), lookup_ids)
        if not self._scheduled:
            self._schedule()

    def add_ledger(self, system_id: str, at: float, kind: str, amount: int, note: str = "") -> None:
        self._ledger.append((system_id, at, kind, amount, note, None, None, None))
        if not self._scheduled:
            self._schedule()

    def add_sms(self, row: Row) -> None:
        """A text message as it is now (new, cancelled or replaced): a row of the sms table."""
        self._sms.append(row)
        if not self._scheduled:
            self._schedule()

    def add_message(self, row: Row, sms_row: Row) -> None:
        """A new text message: its lookups row and its sms row."""
        self._lookups.append(row)
        self._sms.append(sms_row)
        if not self._scheduled:
            self._schedule()

    def add_ban(self, ip_key: str, until: float) -> None:
        """An IP ban, kept until it ends (a restart does not lift it)."""
        self._bans.append((ip_key, until))
        if not self._scheduled:
            self._schedule()

    def _store_due(self) -> None:
        self._due = True
        if not self._scheduled:
            self._schedule()

    async def probe(self) -> bool:
        """Whether the store commits now: a tiny write (with whatever else waits)."""
        done: asyncio.Future[bool] = self.loop.create_future()
        self._probe = True

        def answer(ok: bool) -> None:
            if not done.done():
                done.set_result(ok)

        self.after_commit(answer)
        return await done

    async def change(self, write: Write,
                     apply: Callable[[], None]) -> bool:
        """An operator's change (settings, credit, an account), durable BEFORE it takes
        effect. ``write()`` gives the account records (system_id, JSON) and ledger
        entries as they will be once the change is applied; they are committed, with
        whatever else waits, as the only batch in flight, and ``apply()`` runs only if
        that commit succeeded, before any later batch is snapshotted. So a refused change
        changes nothing (in memory or in the store), and no later commit can carry it.
        Returns whether it was committed."""
        async with self._changing:
            self._held = True
            try:
                while self._busy:
                    quiet = self.loop.create_future()
                    self._quiet.append(quiet)
                    await quiet
            except BaseException:
                self._release()
                raise
            done = self.loop.create_future()

            def committed(ok: bool) -> None:
                try:
                    if ok:
                        apply()
                finally:
                    self._release()
                    done.set_result(ok)

            if self._committer is not None:
                self._submit((write, committed))
            else:
                batch = self._take((write, committed))
                self._busy = True
                self._idle.clear()
                self._jobs.put(batch)
            return await asyncio.shield(done)

    def _release(self) -> None:
        self._held = False
        self.loop.call_soon(self._resume)

    def _resume(self) -> None:
        if self._scheduled or self._after:
            self._flush()

    def _not_busy(self) -> None:
        self._busy = False
        quiet, self._quiet = self._quiet, []
        for fut in quiet:
            if not fut.done():
                fut.set_result(None)

    def after_commit(self, callback: Callable[[bool], None], early: bool = True) -> None:
        """Run ``callback(ok)`` once what was added since the last commit started is
        durable (or failed): register it right after adding what it answers for. What
        is already in a commit in flight is not waited for (``drain`` waits for all).
        ``early=False``: the commit starts at the end of this turn as usual, not now (what
        is added later in this turn joins it)."""
        self._after.append(callback)
        if early and self._lookups and not self._busy:
            # The writer is idle: start now rather than at the end of this turn of
            # the loop, so the commit overlaps the rest of the turn's work.
            self._flush()
        elif not self._scheduled:
            self._schedule()

    def _schedule(self) -> None:
        self._scheduled = True
        self._idle.clear()
        # The C committer takes a batch while it commits the last: at the end of this turn.
        if not self._busy or self._committer is not None:
            self.loop.call_soon(self._flush)

    # -------------------------------------------------------------- commit
    def _flush(self) -> None:
        if self._held:
            return  # handed over once the operator's change is settled (_resume)
        if self._committer is not None:
            self._submit()
            return
        if self._busy:
            return
        batch = self._take()
        if batch is not None:
            self._busy = True
            self._jobs.put(batch)

    def _take(self, change: Change | None = None) -> Batch | None:
        """What was added since the last commit started, and the callbacks that wait for
        it (with an operator's ``change``: (write, callback), see ``change``); None, the
        callbacks answered, when there is nothing to write."""
        self._scheduled = False
        lookups, self._lookups = self._lookups, []
        acks, self._acks = self._acks, []
        ledger, self._ledger = self._ledger, []
        bans, self._bans = self._bans, []
        sms, self._sms = self._sms, []
        probe, self._probe = self._probe, False
        due, self._due = self._due, False
        after, self._after = self._after, []
        # Snapshot credit now, on the loop: it matches exactly the lookups above.
        accounts = [(a.system_id, a.record_text()) for a in self.book.take_dirty()]
        if change is not None:
            write, callback = change
            try:
                records, entries = write()
            except Exception:
                log.exception("change_failed")
                records, entries = None, ()
            if records is None:  # nothing valid to write: the change is refused
                self.loop.call_soon(callback, False)
            else:
                changed = {sid for sid, _ in records}
                accounts = [a for a in accounts if a[0] not in changed] + list(records)
                ledger = ledger + list(entries)
                after.insert(0, callback)  # applied before anything else hears of the commit
        if not (lookups or acks or ledger or accounts or bans or probe or sms or due):
            self._run(after, True)
            self._settle()
            return None
        return lookups, acks, accounts, ledger, bans, probe, sms, after

    def _submit(self, change: Change | None = None) -> None:
        """Hand this turn's batch to the C committer (its values copied now)."""
        if change is None and not self._scheduled and not self._after:
            return  # flushed already this turn
        batch = self._take(change)
        if batch is None:
            return
        lookups, acks, accounts, ledger, bans, probe, sms, after = batch
        committer = self._committer
        assert committer is not None
        try:
            # A store with a C committer (SQLite's) turns a batch into its steps.
            steps = self.store.steps(lookups, acks, accounts, ledger, bans, probe, sms)
            job, refused = committer.submit(steps), False
        except Exception as exc:  # a value SQLite cannot hold: this batch fails, nothing of it written
            self.failures += 1
            self.commits += 1
            log.error("commit_failed", error=repr(exc))
            if not self._inflight:
                self._run(after, False)
                self._settle()
                return
            # Answered, in order, with the batch handed over before it.
            job, refused = self._inflight[-1][0], True
        self._inflight.append((job, after, refused))
        self._busy = True
        self._idle.clear()

    def _completed(self) -> None:
        """The C committer ended transactions: answer the batches each held, in order."""
        inflight, committer = self._inflight, self._committer
        assert committer is not None
        for last, err in committer.completed():
            self.commits += 1
            if err is not None:
                self.failures += 1
                log.error("commit_failed", error=err)
            while inflight and inflight[0][0] <= last:
                _, after, refused = inflight.popleft()
                self._run(after, err is None and not refused)
        if not inflight:
            self._not_busy()
            self._settle()

    def _write(self) -> None:
        """The writer thread: one group commit at a time, its outcome back to the loop."""
        commit, done = self.store.commit, self._done
        while (job := self._jobs.get()) is not None:
            lookups, acks, accounts, ledger, bans, probe, sms, after = job
            try:
                commit(lookups, acks, accounts, ledger, bans, probe, sms)
                err = None
            except Exception as exc:  # the store refused: every reply of the batch says so
                err = exc
            try:
                self.loop.call_soon_threadsafe(done, err, after)
            except RuntimeError:  # the loop is closed: nobody waits any more
                return

    def _done(self, err: Exception | None, after: list[After]) -> None:
        self._not_busy()
        if err is not None:
            self.failures += 1
            log.error("commit_failed", error=repr(err))
        self.commits += 1
        self._run(after, err is None)
        if self._scheduled:
            self._flush()
        else:
            self._settle()

    @staticmethod
    def _run(after: list[After], ok: bool) -> None:
        for cb in after:
            try:
                cb(ok)
            except Exception:  # one broken peer must not stop the others' replies
                log.exception("after_commit_failed")

    def _settle(self) -> None:
        if not self._scheduled and not self._busy:
            self._idle.set()

    async def drain(self) -> None:
        """Wait until everything added so far is committed."""
        while self._scheduled or self._busy:
            await self._idle.wait()

    def close(self) -> None:
        if self._writer is None:
            assert self._committer is not None
            self.loop.remove_reader(self._committer.fileno())
            return  # the store closes its committer, which commits what is queued
        self._jobs.put(None)
        self._writer.join()
