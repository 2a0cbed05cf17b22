"""The notifications' outbox on Redis (server/notify.py; the SQLite twin is
accounts/store.py's Outbox). Keys (``P`` the prefix):

  P notif:SID      HASH event key -> notification id: once per key, across every process
  P notifs         HASH id -> the notification (JSON)
  P notifq         ZSET id -> when it is due (a process sending it moves it on, a lease)
  P notiflist:SID  ZSET id -> id: the account's notifications
  P notifseq       INCR: notification ids
"""
from __future__ import annotations

import json
import time

#: Lua: notification JSON ``row`` of account ``sid`` under ``key``, once per key (due at
#: ``now`` when it has channels to send, ``queued``): its id, or 0 when the key is known.
#: The ADD script's, and the group commit's for an auto-recharge (scripts.COMMIT).
NOTIFY_ADD = r"""
local function notify_add(P, sid, key, row, now, queued)
  if redis.call('HEXISTS', P .. 'notif:' .. sid, key) == 1 then return 0 end
  local id = redis.call('INCR', P .. 'notifseq')
  redis.call('HSET', P .. 'notif:' .. sid, key, id)
  redis.call('HSET', P .. 'notifs', id, row)
  redis.call('ZADD', P .. 'notiflist:' .. sid, id, id)
  if queued then redis.call('ZADD', P .. 'notifq', now, id) end
  return id
end
"""

#: ARGV: P, sid, key, notification JSON, now, channels: the new id, or 0 when the key is known.
ADD = NOTIFY_ADD + r"""
return notify_add(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6] ~= '')
"""

#: ARGV: P, now, lease, limit: the ids due, each leased (due again only after the lease) so
#: that one process sends it at a time.
CLAIM = r"""
local due = redis.call('ZRANGEBYSCORE', ARGV[1] .. 'notifq', '-inf', ARGV[2], 'LIMIT', 0, ARGV[4])
for _, id in ipairs(due) do redis.call('ZADD', ARGV[1] .. 'notifq', ARGV[2] + ARGV[3], id) end
return due
"""

#: Seconds a process holds a notification it sends before another may.
LEASE = 120


class RedisOutbox:
    def __init__(self, store):
        self.store = store
        self.P = store.P
        self._add = store._ops.register_script(ADD)
        self._claim = store._ops.register_script(CLAIM)

    def add(self, events: list[tuple[str, str, str, str, list[str]]]) -> list[str]:
        now = time.time()
        added = []
        for sid, kind, key, data, channels in events:
            if kind == "low_credit":
                given = self.store.credit_additions(sid)
                key = f"{key}:{given}"
            row = {"system_id": sid, "kind": kind, "key": key, "at": now, "data": json.loads(data),
                   "pending": channels, "sent": [], "attempts": 0, "next_at": now, "error": ""}
            if self._add(args=[self.P, sid, key, json.dumps(row), now, " ".join(channels)]):
                added.append(kind)
        return added

    def _rows(self, ids) -> list[dict]:
        if not ids:
            return []
        out = []
        for nid, raw in zip(ids, self.store._r.hmget(f"{self.P}notifs", ids)):
            if raw is not None:
                out.append(dict(json.loads(raw), id=int(nid)))
        return out

    def due(self, now: float, limit: int = 100) -> list[dict]:
        return self._rows(self._claim(args=[self.P, now, LEASE, limit]))

    def settle(self, nid: int, results: dict[str, str | None], next_at: float) -> None:
        rows = self._rows([nid])
        if not rows:
            return
        row = rows[0]
        row["sent"] = row["sent"] + [c for c, err in results.items() if err is None]
        row["pending"] = [c for c in row["pending"] if c not in row["sent"]]
        row["error"] = "; ".join(f"{c}: {err}" for c, err in results.items() if err is not None)
        row["attempts"] += 1
        row["next_at"] = next_at
        pipe = self.store._ops.pipeline(transaction=True)
        pipe.hset(f"{self.P}notifs", nid, json.dumps({k: v for k, v in row.items() if k != "id"}))
        if row["pending"]:
            pipe.zadd(f"{self.P}notifq", {nid: next_at})
        else:
            pipe.zrem(f"{self.P}notifq", nid)
        pipe.execute()

    def list(self, system_id: str, limit: int = 100) -> list[dict]:
        ids = [int(i) for i in self.store._r.zrevrange(f"{self.P}notiflist:{system_id}", 0, limit - 1)]
        return self._rows(ids)
