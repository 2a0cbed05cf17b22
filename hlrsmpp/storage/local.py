"""The session rule of a process alone on its store: decided in memory, at once."""
from __future__ import annotations

import asyncio
from typing import Any

from ..smpp.session import BindMode
from ..smpp.status import Status


def refuses(mode: BindMode, receiving: bool, transmitters: int, max_tx: int) -> bool:
    """The session rule: per account at most one receiving session (Rx or TRx, together)
    and up to ``max_tx`` transmitters. ``receiving``: the account has its receiving
    session; ``transmitters``: how many it has. Written once more in Lua for a shared
    deployment (``RX_CLAIM`` and ``TX_CLAIM`` in redis/scripts.py)."""
    if mode & BindMode.RX:
        return receiving
    return transmitters >= max_tx


class LocalRegistry:
    """Who is bound, per account, in this process (a ``SessionRegistry``)."""

    def __init__(self) -> None:
        self.receivers: dict[str, Any] = {}
        self.transmitters: dict[str, set[Any]] = {}

    def claim(self, account: Any, mode: BindMode, proto: Any) -> asyncio.Future[Status]:
        """Take a session slot; the answer is known at once (a future already done)."""
        answer: asyncio.Future[Status] = asyncio.get_running_loop().create_future()
        answer.set_result(self._take(account, mode, proto))
        return answer

    def _take(self, account: Any, mode: BindMode, proto: Any) -> Status:
        sid = account.system_id
        txs = self.transmitters.setdefault(sid, set())
        if refuses(mode, sid in self.receivers, len(txs), account.settings.max_tx):
            return Status.RBINDFAIL
        if mode & BindMode.RX:
            self.receivers[sid] = proto
        else:
            txs.add(proto)
        return Status.ROK

    def release(self, system_id: str, proto: Any) -> None:
        if self.receivers.get(system_id) is proto:
            del self.receivers[system_id]
        txs = self.transmitters.get(system_id)
        if txs:
            txs.discard(proto)

    def counts(self) -> dict[str, int]:
        out = {"tx": 0, "rx": 0, "trx": 0}
        for proto in self.receivers.values():
            out[proto.session.mode.label] += 1
        out["tx"] = sum(len(s) for s in self.transmitters.values())
        return out
