"""Message ids: decimal, unique across restarts and processes, at most 64 characters.

A Snowflake-style 63-bit integer: milliseconds since 2020-01-01 (41 bits), the
node number (10 bits: one per process of a deployment), a sequence (12 bits).
It never goes backwards, not even if the clock does or the store already holds
larger ids, so an id is never reused. At most 19 decimal digits.

Message ids are time-ordered on purpose (a time range of the history is an id range),
so they are guessable: nothing is ever read by a message id alone. Batch ids are: the
report of the AMS HLR API is read by its batch id without credentials, so a batch id is
``random_id()``, 63 random bits.
"""
from __future__ import annotations

import secrets
import time

EPOCH_MS = 1577836800000  # 2020-01-01T00:00:00Z
MAX_ID = (1 << 63) - 1
NODE_BITS, SEQ_BITS = 10, 12
MAX_NODE = (1 << NODE_BITS) - 1
MAX_SEQ = (1 << SEQ_BITS) - 1


class IdGenerator:
    __slots__ = ("_node", "_ms", "_seq")

    def __init__(self, node: int = 0, floor: int = 0):
        if not 0 <= node <= MAX_NODE:
            raise ValueError(f"node id {node} is outside 0..{MAX_NODE}")
        self._node = node << SEQ_BITS
        # Resume above anything issued before (a restart after a clock step back).
        self._ms = floor >> (NODE_BITS + SEQ_BITS)
        self._seq = MAX_SEQ

    def next(self, now: float | None = None) -> int:
        """The next id; ``now`` is the caller's time.time(), when it has one at hand."""
        ms = int((time.time() if now is None else now) * 1000) - EPOCH_MS
        if ms > self._ms:
            self._ms, self._seq = ms, 0
        else:
            # Same millisecond, or the clock went back: next sequence number; past
            # 4096 in one millisecond, borrow the next millisecond.
            self._seq += 1
            if self._seq > MAX_SEQ:
                self._ms += 1
                self._seq = 0
        return self._ms << (NODE_BITS + SEQ_BITS) | self._node | self._seq

    def reserve(self, n: int) -> int:
        """``n`` consecutive ids (n <= 4096); returns the first (submit_multi)."""
        first = self.next()
        if (first & MAX_SEQ) + n - 1 > MAX_SEQ:
            self._ms += 1
            self._seq = 0
            first = self._ms << (NODE_BITS + SEQ_BITS) | self._node
        self._seq += n - 1
        return first


def first_id_at(t: float) -> int:
    """The smallest id issued at or after epoch time ``t``: time ranges of the
    history are id ranges, with no index on time."""
    return max(int(t * 1000) - EPOCH_MS, 0) << (NODE_BITS + SEQ_BITS)


def time_of_id(lookup_id: int) -> float:
    """When the id was issued (epoch seconds, to the millisecond)."""
    return ((lookup_id >> (NODE_BITS + SEQ_BITS)) + EPOCH_MS) / 1000


def random_id() -> int:
    """An unguessable id, 1 .. 2**63-1 (decimal like every id): a secret by itself."""
    return secrets.randbelow(MAX_ID) + 1
