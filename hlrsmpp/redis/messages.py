"""Text messages (SMS accounts) on Redis: what every process of a shared deployment must
see of a message not yet final, so that any of them answers query_sm, cancel_sm and
replace_sm, and the one holding the account's receiver sends the receipt of the state
the message has when it ends. Keys (``P`` the prefix, SEC the second its id was issued in):

  P sms:SEC        HASH id -> the message, "version|done|state|JSON [segments,
                   data_coding, registered_delivery, source_addr, text, service_type]",
                   EX history_ttl (its lookup record lives as long, in P lk:SEC)
  P smskey:KEY     "SEC:id" of the last message from one (system_id, source_addr,
                   destination_addr, service_type): replace_if_present_flag, EX history_ttl

A change (cancel_sm, replace_sm, a message replaced by a newer one) is a compare-and-set
on the version, by whichever process took the PDU, and an entry ``u`` (the id) in the
account's receipt stream: the receiver's process reads the message again, now.
"""
from __future__ import annotations

import json
from typing import NamedTuple

from ..sms import DELETED

#: ARGV: P, ttl, then per message SEC, id, record: the records of one group commit,
#: written before its COMMIT (a commit that fails leaves records nothing points to).
SAVE = r"""
local P, ttl = ARGV[1], tonumber(ARGV[2])
local seen = {}
for i = 3, #ARGV, 3 do
  local key = P .. 'sms:' .. ARGV[i]
  redis.call('HSET', key, ARGV[i + 1], ARGV[i + 2])
  if not seen[key] then
    seen[key] = true
    redis.call('EXPIRE', key, ttl)
  end
end
return 1
"""

#: ARGV: P, ttl, now, DELETED, then per message KEY, "SEC:id", replace (0/1), system_id:
#: each is the last message of its KEY now; with replace, the one before it, not final
#: yet, is DELETED (its receiver told). Returns the ids so deleted.
INDEX = r"""
local P, ttl, now, deleted = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local out = {}
for i = 5, #ARGV, 4 do
  local key = P .. 'smskey:' .. ARGV[i]
  local old = redis.call('GET', key)
  redis.call('SET', key, ARGV[i + 1], 'EX', ttl)
  if ARGV[i + 2] == '1' and old and old ~= ARGV[i + 1] then
    local sec, id = string.match(old, '^(%d+):(%d+)$')
    local h = P .. 'sms:' .. sec
    local rec = redis.call('HGET', h, id)
    if rec then
      local v, done, rest = string.match(rec, '^(%d+)|([^|]*)|%d+|(.*)$')
      if tonumber(done) > now then
        redis.call('HSET', h, id, (tonumber(v) + 1) .. '|' .. ARGV[3] .. '|' .. deleted .. '|' .. rest)
        redis.call('XADD', P .. 'rcpt:' .. ARGV[i + 3], '*', 'u', id)
        out[#out + 1] = id
      end
    end
  end
end
return out
"""

#: ARGV: P, SEC, id, system_id, version, now, record: the message becomes ``record`` if it
#: is still at ``version`` and not final at ``now``; 1 if so, else 0.
CHANGE = r"""
local P = ARGV[1]
local h = P .. 'sms:' .. ARGV[2]
local rec = redis.call('HGET', h, ARGV[3])
if not rec then return 0 end
local v, done = string.match(rec, '^(%d+)|([^|]*)|')
if v ~= ARGV[5] or tonumber(done) <= tonumber(ARGV[6]) then return 0 end
redis.call('HSET', h, ARGV[3], ARGV[7])
redis.call('XADD', P .. 'rcpt:' .. ARGV[4], '*', 'u', ARGV[3])
return 1
"""


class Message(NamedTuple):
    """A message as Redis keeps it (the sms table's columns, and its version)."""
    id: int
    segments: int
    data_coding: int
    registered_delivery: int
    source_addr: str
    text: str
    state: int
    done: float
    version: int
    service_type: str

    def __getitem__(self, key):  # type: ignore[override]
        """By position, or ``"sms"`` as the embedded store's row gives it to history views."""
        if key == "sms":
            return f"{self.segments},{self.data_coding},{self.state}"
        return tuple.__getitem__(self, key)


def second(message_id: int) -> int:
    return (message_id >> 22) // 1000


def encode(version: int, done: float, state: int, segments: int, data_coding: int, registered_delivery: int,
           source_addr: str, text: str, service_type: str) -> str:
    return f"{version}|{done!r}|{state}|" + json.dumps(
        [segments, data_coding, registered_delivery, source_addr, text, service_type])


def decode(message_id: int, rec: bytes | str) -> Message:
    if isinstance(rec, bytes):
        rec = rec.decode()
    version, done, state, rest = rec.split("|", 3)
    segments, dc, rd, source_addr, text, service_type = json.loads(rest)
    return Message(message_id, segments, dc, rd, source_addr, text, int(state), float(done), int(version),
                   service_type)


class RedisMessages:
    """The store's side of text messages (see the module docstring)."""

    def __init__(self, store):
        self.store = store
        self.P = store.P
        self._save = store._w.register_script(SAVE)
        self._index = store._w.register_script(INDEX)
        self._change = store._ops.register_script(CHANGE)

    # Rows the journal carries here (server/sms.py's ``SmsMessage.shared_row``): the sms
    # table's columns, then system_id, destination, service_type, replace_if_present_flag.

    def save(self, rows: list[tuple]) -> None:
        """(writer thread) New messages, before the commit that holds their lookups."""
        args: list = [self.P, self.store.ttl]
        for mid, segments, dc, rd, source, text, state, done, _, _, service_type, _ in rows:
            args += [second(mid), mid, encode(0, done, state, segments, dc, rd, source, text, service_type)]
        self._save(args=args)

    def index(self, rows: list[tuple], now: float) -> list[int]:
        """(writer thread) After their commit: each message is the last of its addresses;
        with replace_if_present_flag, the one it replaces is DELETED. The ids deleted."""
        args: list = [self.P, self.store.ttl, repr(now), DELETED]
        for mid, _, _, _, source, _, _, _, sid, msisdn, service_type, replace in rows:
            args += [key_of(sid, source, msisdn, service_type), f"{second(mid)}:{mid}", int(replace), sid]
        return [int(x) for x in self._index(args=args)]

    def get(self, ids: list[int]) -> dict[int, Message]:
        """The messages by id (those Redis has: gone past history_ttl, or never)."""
        if not ids:
            return {}
        by_second: dict[int, list[int]] = {}
        for mid in ids:
            by_second.setdefault(second(mid), []).append(mid)
        pipe = self.store._r.pipeline(transaction=False)
        order = list(by_second.items())
        for sec, mids in order:
            pipe.hmget(f"{self.P}sms:{sec}", mids)
        out = {}
        for (_, mids), recs in zip(order, pipe.execute()):
            for mid, rec in zip(mids, recs):
                if rec is not None:
                    out[mid] = decode(mid, rec)
        return out

    def change(self, m: Message, system_id: str, now: float) -> bool:
        """Compare-and-set: ``m`` (its version the next) replaces the version before it,
        if that message is not final at ``now``; its receiver's process is told."""
        rec = encode(m.version, m.done, m.state, m.segments, m.data_coding, m.registered_delivery, m.source_addr,
                     m.text, m.service_type)
        return self._change(args=[self.P, second(m.id), m.id, system_id, m.version - 1, repr(now), rec]) == 1


def key_of(system_id: str, source_addr: str, destination: str, service_type: str) -> str:
    return json.dumps([system_id, source_addr, destination, service_type], separators=(",", ":"))
