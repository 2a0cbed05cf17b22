"""Outbind (SMPP 3.4 §4.1.7): receipts wait and no session of the account receives them;
if the account names its ESME's address (its ``outbind`` setting), the server connects
out and sends outbind, at most once per ``smpp.outbind_interval``, so the ESME binds a
receiver on that connection."""
from __future__ import annotations

import asyncio
from typing import Callable

import structlog

from ..accounts import Account, AccountBook

log = structlog.get_logger("hlrsmpp.server")


class Outbinder:
    def __init__(self, book: AccountBook, session: Callable[[], asyncio.Protocol], system_id: str,
                 interval: float):
        self.book = book
        self._session = session      # a new SMPP session of the server (SmppProtocol)
        self.system_id = system_id   # the SMSC's system_id the outbind names (smpp.system_id)
        self.interval = interval
        self._next: dict[str, float] = {}
        self.stopping = False

    def maybe(self, system_id: str, now: float) -> None:
        """Outbind to the account's ESME unless it was tried less than `interval` ago."""
        account = self.book.get(system_id)
        if account is None or account.settings.outbind is None or self.stopping:
            return
        if now < self._next.get(system_id, 0.0):
            return
        self._next[system_id] = now + self.interval
        asyncio.get_running_loop().create_task(self._outbind(account))

    async def _outbind(self, account: Account) -> None:
        ob = account.settings.outbind
        assert ob is not None
        loop = asyncio.get_running_loop()
        try:
            _, proto = await loop.create_connection(self._session, ob["host"], ob["port"])
        except OSError as err:
            log.warning("outbind_failed", system_id=account.system_id, host=ob["host"], port=ob["port"],
                        error=str(err))
            return
        if proto.closed:  # type: ignore[attr-defined]
            return
        proto.outbind(ob.get("system_id", self.system_id),  # type: ignore[attr-defined]
                      ob.get("password", account.settings.password or ""))
        log.info("outbind_sent", system_id=account.system_id, host=ob["host"], port=ob["port"])
