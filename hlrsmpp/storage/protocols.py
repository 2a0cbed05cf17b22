"""What the server needs of its storage, whichever it is: the embedded SQLite store (one
process) or Redis (several processes sharing accounts, sessions and receipts). The
implementation is chosen once, when the server starts (``server.app.open_store``); no
code above this seam asks which one it got.

- ``Store``: the group commit and the reads (history, ledger, receipts still owed), the
  account notifications' outbox and, on a shared store, the text messages every process
  sees. A capability one implementation lacks is declared all the same, as None.
- ``SessionRegistry``: the session rule, per account one receiving session (Rx or TRx)
  and up to ``max_tx`` transmitters.
- ``Deployment``: how this process takes part: its node number (part of every message
  id), its registry, and where the receipts of its durable lookups go (straight to the
  account's outbox, or through the account's shared stream to whichever process holds its
  receiver).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..domain import Lookup
from ..smpp.session import BindMode
from ..smpp.status import Status

#: A lookup row as a read gives it: by position (LOOKUP_COLUMNS order) and by column name.
Row = Any
#: One statement of a group commit and its parameters, as the C committer runs it.
Step = tuple[str, list[Any]]
#: A notification the outbox is to keep: (system_id, kind, its unique key, data JSON, channels).
Notification = tuple[str, str, str, str, list[str]]


class Committer(Protocol):
    """A group commit that runs on a thread of its own (SQLite's, in C): the journal hands
    it each batch as the store's ``steps`` and learns through ``fileno`` when it is done."""

    def submit(self, steps: list[Step]) -> int: ...
    def completed(self) -> list[tuple[int, str | None]]: ...
    def fileno(self) -> int: ...


class NotificationOutbox(Protocol):
    """The account notifications not sent yet, and the last ones sent (server/notify.py):
    kept in the store, so a notification survives a restart and is sent once across
    processes."""

    def add(self, events: list[Notification]) -> list[str]:
        """Keep these events; the keys of those not kept before (a key already there is
        the same event noted by another round or process)."""
        ...
    def due(self, now: float, limit: int = 100) -> list[dict[str, Any]]: ...
    def settle(self, nid: int, results: dict[str, str | None], next_at: float) -> None: ...
    def list(self, system_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The account's notifications, newest first."""
        ...


class SharedMessages(Protocol):
    """Text messages where every process sharing the store reads and changes them."""

    def get(self, ids: list[int]) -> dict[int, Any]: ...
    def change(self, message: Any, system_id: str, now: float) -> bool:
        """Write ``message`` if nobody changed it since it was read (its version): False
        if someone did."""
        ...


class HistoryScan(Protocol):
    """A filtered history page read by the store itself over a bounded range: (rows, the
    id to go on after, or None at the end)."""

    def __call__(self, system_id: str | None, since: float | None, until: float | None, limit: int,
                 after_id: int, newest_first: bool, match: tuple[str, list[Any]],
                 scan: int) -> tuple[list[Row], int | None]: ...


class Store(Protocol):
    # Read-only members (properties here): an implementation may compute them.
    @property
    def file(self) -> str | Path:
        """Where the data lives, for logs (a file, or a URL without its password)."""
        ...

    @property
    def committer(self) -> Committer | None:
        """The C group commit, or None: then the journal's writer thread calls ``commit``."""
        ...

    @property
    def duplicates(self) -> set[tuple[str, str]]:
        """(system_id, Idempotency-Key) of top-ups a commit left out because another
        process used the key first (always empty for a store with one process)."""
        ...

    @property
    def outbox(self) -> NotificationOutbox:
        """The account notifications' outbox."""
        ...

    @property
    def messages(self) -> SharedMessages | None:
        """Text messages shared by every process on the store; None where this process is
        alone with them (they are written by its group commit, read back with ``sms``)."""
        ...

    @property
    def history_scan(self) -> HistoryScan | None:
        """A filtered history page read in the store's own query language; None where the
        reader filters ``history`` pages itself."""
        ...

    def commit(self, lookups: list[tuple[Any, ...]], acks: list[tuple[int, int]],
               accounts: list[tuple[str, str]], ledger: Sequence[tuple[Any, ...]] = (),
               bans: Sequence[tuple[str, float]] = (), probe: bool = False,
               sms: Sequence[tuple[Any, ...]] = ()) -> None: ...
    def steps(self, lookups: list[tuple[Any, ...]], acks: list[tuple[int, int]],
              accounts: list[tuple[str, str]], ledger: Sequence[tuple[Any, ...]] = (),
              bans: Sequence[tuple[str, float]] = (), probe: bool = False,
              sms: Sequence[tuple[Any, ...]] = ()) -> list[Step]:
        """``commit``'s batch as the statements ``committer`` runs; asked only of a store
        that has a committer."""
        ...
    def close(self) -> None: ...
    def on_due(self, wake: Callable[[], object]) -> None:
        """Have ``wake`` called (from any thread) when the store has writes of its own for
        the next group commit (SQLite: the per-day rollups' sums): the journal then
        commits even if nothing else waits. A store with none never calls it."""
        ...
    def account_records(self) -> dict[str, dict[str, Any]]: ...
    def period_counts(self, starts: tuple[float, float, float]) -> dict[str, tuple[int, int, int]]:
        """The lookups this process's accounts made since each of ``starts`` (day, week,
        month), as far as the store knows them at start-up."""
        ...
    def pending_receipts(self) -> Iterator[Row]: ...
    def lookup(self, message_id: int) -> Row | None: ...
    def sms(self, message_id: int) -> Row | None:
        """A text message (a lookup of channel sms, same id): its row, with ``sms`` as
        history pages give it (segments, data coding, state), or None."""
        ...
    def batch(self, batch_id: int) -> list[Row]: ...
    def history(self, system_id: str | None = None, since: float | None = None,
                until: float | None = None, limit: int = 1000, after_id: int = 0,
                newest_first: bool = False) -> list[Row]: ...
    def ledger(self, system_id: str) -> list[Row]: ...
    def idempotent(self, system_id: str, key: str) -> tuple[str, str] | None: ...
    def ledger_totals(self) -> dict[str, int]: ...
    def totals(self) -> dict[str, tuple[int, int]]: ...
    def max_id(self) -> int: ...
    def rollups(self, system_id: str, since: str, until: str, by: str) -> list[tuple[Any, int, int]]:
        """(day, cc, network or err; lookups; cost) per value of ``by`` over the per-day
        rollups of days since <= day < until (YYYY-MM-DD), in order of the value."""
    def bans(self, now: float) -> list[tuple[str, float]]: ...


class SessionRegistry(Protocol):
    """Who is bound, per account. ``receivers`` and ``transmitters`` hold this process's
    sessions (a shared registry also holds leases elsewhere)."""

    receivers: dict[str, Any]
    transmitters: dict[str, set[Any]]

    def claim(self, account: Any, mode: BindMode, proto: Any) -> asyncio.Future[Status]:
        """Take a session slot: ESME_ROK, or ESME_RBINDFAIL when the rule refuses. A registry
        that decides in this process answers with a future already done, so the caller can
        go on at once (a submit_sm pipelined behind the bind finds the session bound)."""
        ...

    def release(self, system_id: str, proto: Any) -> None: ...
    def counts(self) -> dict[str, int]: ...


class Deployment(Protocol):
    """This process's part in its storage: alone, or one of several processes."""

    #: This process's node number, in every message id it gives (unique across processes).
    node: int

    @property
    def registry(self) -> SessionRegistry: ...

    async def start(self) -> None:
        """Once the accounts are loaded, before the listeners open."""
        ...

    async def stop(self) -> None:
        """After the journal drained: what this process holds goes back."""
        ...

    def deliver(self, system_id: str, lookups: list[Lookup]) -> None:
        """Durable lookups whose submit_sm_resp went out: their receipts may flow."""
        ...

    def attach_receiver(self, proto: Any) -> None:
        """A receiving session of the account bound here: its receipts go to it."""
        ...
