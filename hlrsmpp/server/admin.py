"""The operator's changes to accounts (the admin API, and `hlrsmpp accounts` through it):
create, change settings, top up, enable and disable.

Each change takes effect only once it is durable (Journal.change): a change the store
refuses raises StoreRefused and changes nothing, in memory or on disk. One change at a
time: checked, then made.
"""
from __future__ import annotations

import asyncio
import json
import time
from datetime import date
from typing import Any, Awaitable, Callable

import structlog

from ..accounts import Account, AccountBook, to_micro
from ..accounts.book import merge_settings
from ..storage.protocols import Store
from .journal import Journal

log = structlog.get_logger("hlrsmpp.server")


class StoreRefused(RuntimeError):
    """An operator's change the store could not make durable: it was not applied."""


class IdempotencyConflict(ValueError):
    """An Idempotency-Key used again with a different request."""


def _record(account: Account) -> tuple[str, str]:
    """An account's durable record, as a commit writes it."""
    return account.system_id, json.dumps(account.to_record(), default=str)


class AccountAdmin:
    def __init__(self, book: AccountBook, journal: Journal, store: Store,
                 hash_passwords: Callable[[list[Account], dict[str, dict[str, Any]]], Awaitable[None]],
                 add: Callable[[Account], None], settings_changed: Callable[[Account], None],
                 unbind: Callable[[str], None]):
        self.book, self.journal, self.store = book, journal, store
        self._hash_passwords = hash_passwords
        self._add = add                  # a new account joins the server (the book, an outbox)
        self._settings_changed = settings_changed  # its outbox follows new settings
        self._unbind = unbind            # its sessions are unbound (disabled)
        self._lock = asyncio.Lock()

    def account(self, system_id: str) -> Account:
        account = self.book.get(system_id)
        if account is None:
            raise KeyError(f"no account {system_id!r}")
        return account

    async def create(self, d: dict[str, Any]) -> Account:
        async with self._lock:
            if self.book.get(str(d.get("system_id"))) is not None:
                raise ValueError(f"account {d.get('system_id')!r} already exists")
            account = Account.from_config(d)
            await self._hash_passwords([account], {})
            sid, now = account.system_id, time.time()
            opening = [(sid, now, "top_up", account.credit, "created")] if account.credit else []
            await self._change(lambda: ([_record(account)], opening), lambda: self._add(account))
        log.info("account_created", system_id=sid)
        return account

    async def update(self, system_id: str, changes: dict[str, Any]) -> Account:
        """Change settings (not credit: that is top_up) of a live account."""
        async with self._lock:
            account = self.account(system_id)
            record = merge_settings(account.to_record(), changes)
            record["system_id"] = account.system_id
            new = Account.from_config(record)
            if "password" in changes:
                await self._hash_passwords([new], {})
            elif "password_hash" not in changes:
                # the same password: kept in clear if it was
                new.settings = new.settings.evolve(password=account.settings.password)

            def write() -> tuple[list[tuple[str, str]], list[Any]]:
                new.packages = account.packages  # the credit as it is at the commit
                return [_record(new)], []

            await self._change(write, lambda: self._settings_changed(self.book.replace(new)))
        # The names of what changed (a password change too), never the values.
        log.info("account_updated", system_id=system_id, keys=sorted(changes))
        return self.account(system_id)

    async def top_up(self, system_id: str, credit: Any, bought: date | None = None, note: str = "",
                     idempotency: tuple[str, str] | None = None) -> tuple[dict[str, Any], bool]:
        """Add a package; (the package as recorded, whether this is the answer of an
        earlier top-up made with the same Idempotency-Key). ``idempotency`` is (key,
        digest of the request): the key is kept with the ledger entry, so a retry (after
        a timeout, a 503, a lost answer) is answered, never credited twice; the same key
        with another request raises IdempotencyConflict."""
        async with self._lock:
            account = self.account(system_id)
            amount = to_micro(credit)
            if amount <= 0:
                raise ValueError("a top-up must be a positive amount of credit")
            key, digest = idempotency or (None, None)
            if key is not None and digest is not None and (earlier := await self._idempotent(system_id, key, digest)):
                return earlier, True
            package = self.book.new_package(account, amount, bought, note)
            answer = json.dumps(package.to_record())
            entry = (system_id, time.time(), "top_up", amount, note, key, digest, answer)

            def write() -> tuple[list[tuple[str, str]], list[Any]]:
                record = account.to_record()
                record["packages"] = [p.to_record() for p in self.book.with_package(account, package)]
                return [(system_id, json.dumps(record, default=str))], [entry]

            def apply() -> None:
                if (system_id, key) not in self.store.duplicates:
                    self.book.add_package(account, package)

            await self._change(write, apply)
            if key is not None and digest is not None and (system_id, key) in self.store.duplicates:
                self.store.duplicates.discard((system_id, key))  # another process took the key first
                again = await self._idempotent(system_id, key, digest)
                assert again is not None
                return again, True
        log.info("credit_topped_up", system_id=system_id, credit=amount / 1_000_000)
        return package.to_record(), False

    async def _idempotent(self, system_id: str, key: str, digest: str) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        earlier = await loop.run_in_executor(None, self.store.idempotent, system_id, key)
        if earlier is None:
            return None
        if earlier[0] != digest:
            raise IdempotencyConflict(f"Idempotency-Key {key!r} was used for another top-up")
        answer: dict[str, Any] = json.loads(earlier[1])
        return answer

    async def set_enabled(self, system_id: str, enabled: bool) -> Account:
        async with self._lock:
            account = self.account(system_id)

            def write() -> tuple[list[tuple[str, str]], list[Any]]:
                record = account.to_record()
                record["enabled"] = enabled
                return [(system_id, json.dumps(record, default=str))], []

            def apply() -> None:
                self.book.disable(system_id, enabled)
                if not enabled:
                    self._unbind(system_id)

            await self._change(write, apply)
        log.info("account_enabled" if enabled else "account_disabled", system_id=system_id)
        return account

    async def _change(self, write: Callable[[], tuple[list[tuple[str, str]], list[Any]]],
                      apply: Callable[[], None]) -> None:
        if not await self.journal.change(write, apply):
            raise StoreRefused("the store refused the commit; nothing was changed")
