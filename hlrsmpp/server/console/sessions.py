"""The SMPP sessions bound to this process, as the console lists them."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ...smpp.session import State

if TYPE_CHECKING:
    from ..app import Server
    from ..smpp import SmppProtocol


def _key(proto: SmppProtocol) -> str:
    """A session's name in a URL: its place in this process (nothing an ESME chose)."""
    return f"{id(proto):x}"


def bound_sessions(server: Server) -> list[dict[str, Any]]:
    """Every bound session of this process: account, address, mode, since, receipts
    queued for its account, oldest first."""
    now, mono = time.time(), time.monotonic()
    out = []
    for proto in list(server.protocols):
        session, acc = proto.session, proto.account
        if acc is None or proto.closed or session.state is not State.BOUND or session.mode is None:
            continue
        box = server.outboxes.get(acc.system_id)
        out.append({"key": _key(proto), "account": acc.system_id,
                    "address": f"{proto.peer_ip}:{proto.peer_port}", "mode": session.mode.label,
                    "since": now - (mono - proto.connected_at),
                    "receipts_queued": box.size if box is not None else 0})
    out.sort(key=lambda s: s["since"])
    return out


def account_sessions(server: Server, system_id: str) -> list[dict[str, Any]]:
    return [s for s in bound_sessions(server) if s["account"] == system_id]


def disconnect(server: Server, key: str) -> str | None:
    """Close the bound session named ``key`` at once (its receipts stay queued for the
    account's next receiver); the account it was, or None when there is none."""
    for proto in list(server.protocols):
        if _key(proto) == key and proto.account is not None and not proto.closed:
            proto.drop("disconnected by the operator")
            system_id: str = proto.account.system_id
            return system_id
    return None
