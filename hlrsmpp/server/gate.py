"""Who may open a connection, on the SMPP and the HTTP listener alike: a cap on all the
listener's connections, a cap per source address, and a reserve of file descriptors.

A flood of connections (idle, slow, or just many) must not take the descriptors the
server needs for what it already serves: bound SMPP sessions, their commits, receipts
and outbinds. So the process's RLIMIT_NOFILE is raised to its hard limit at start, and
new connections are refused while few descriptors are free: HTTP ones when fewer than
``smpp.fd_reserve`` remain, SMPP ones when fewer than half of it remain (a new bind
still gets through while HTTP is refused; the last half is for the server's own files
and outgoing connections). A bound session is never closed for it.

Refusals are counted (``hlrsmpp_connections_rejected_total{listener, reason}``) and
logged at warning once per burst, not once per connection: the first refusal after a
quiet spell, then one line a minute with the count while it lasts.
"""
from __future__ import annotations

import os
import resource
import time
from collections import Counter

import structlog

from .. import metrics

log = structlog.get_logger("hlrsmpp.gate")

#: Seconds without a refusal that end a burst; while one lasts, a summary this often.
BURST_QUIET, BURST_SUMMARY = 10.0, 60.0
#: Seconds between two counts of /proc/self/fd (in between: the connections' own count).
RECOUNT = 1.0
_FD_DIR = "/proc/self/fd"


class Descriptors:
    """The process's file descriptors: the limit (soft raised to hard at start) and an
    estimate of the free ones, recounted at most every RECOUNT seconds and moved by the
    connections opened and closed in between (cheap enough for every accept)."""

    def __init__(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # An unlimited hard limit: as far as Linux goes by default (fs.nr_open).
        target = max(soft, 1 << 20) if hard == resource.RLIM_INFINITY else hard
        if soft != resource.RLIM_INFINITY and soft < target:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError) as e:   # a hard limit above the kernel's nr_open
                log.warning("nofile_not_raised", soft=soft, hard=hard, error=str(e))
        self.limit = soft if soft != resource.RLIM_INFINITY else target
        self.countable = os.path.isdir(_FD_DIR)
        self._used = 0
        self._at = float("-inf")
        self._moved = 0

    def _count(self) -> int:
        try:
            return len(os.listdir(_FD_DIR)) - 1   # less the listing's own descriptor
        except OSError:
            return self._used + self._moved

    def free(self) -> int:
        if not self.countable:
            return self.limit
        now = time.monotonic()
        if now - self._at >= RECOUNT:
            self._used, self._at, self._moved = self._count(), now, 0
        return self.limit - self._used - self._moved

    def opened(self) -> None:
        self._moved += 1

    def closed(self) -> None:
        self._moved -= 1


class ConnectionGate:
    """The admission of one listener's connections (``listener``: smpp or http)."""

    def __init__(self, listener: str, max_total: int, max_per_ip: int, descriptors: Descriptors,
                 reserve: int):
        if max_total < 1 or max_per_ip < 1 or reserve < 0:
            raise ValueError(f"{listener}.max_connections and max_connections_per_ip must be at "
                             "least 1, smpp.fd_reserve at least 0")
        self.listener = listener
        self.max_total, self.max_per_ip = max_total, max_per_ip
        self.fds, self.reserve = descriptors, reserve
        self.count = 0
        self.per_ip: Counter[str] = Counter()
        self.closed = False            # the server stops: no new connection
        self._bursts: dict[str, list[float]] = {}   # reason -> [last refusal, last line, refusals since]

    def admit(self, ip: str | None) -> bool:
        """Take a slot for a connection from ``ip``; False (counted, logged) if refused.
        ``ip`` None: a trusted balancer's connection whose client is not known yet, counted
        towards the total only."""
        reason = ("stopping" if self.closed
                  else "max_connections" if self.count >= self.max_total
                  else "max_connections_per_ip" if ip is not None and self.per_ip[ip] >= self.max_per_ip
                  else "descriptors" if self.fds.free() < self.reserve
                  else None)
        if reason is not None:
            self._refused(ip or "", reason)
            return False
        self.count += 1
        if ip is not None:
            self.per_ip[ip] += 1
        self.fds.opened()
        return True

    def release(self, ip: str | None) -> None:
        self.count -= 1
        self.fds.closed()
        if ip is None:
            return
        n = self.per_ip[ip] - 1
        if n > 0:
            self.per_ip[ip] = n
        else:
            del self.per_ip[ip]

    def _refused(self, ip: str, reason: str) -> None:
        metrics.STATS.connections_rejected[self.listener, reason] += 1
        if reason == "stopping":
            return
        now = time.monotonic()
        burst = self._bursts.get(reason)
        if burst is None or now - burst[0] > BURST_QUIET:
            self._bursts[reason] = [now, now, 0]
            log.warning("connections_refused", listener=self.listener, reason=reason, peer=ip,
                        open=self.count, descriptors_free=self.fds.free(),
                        descriptors_limit=self.fds.limit)
            return
        burst[0] = now
        burst[2] += 1
        if now - burst[1] >= BURST_SUMMARY:
            log.warning("connections_still_refused", listener=self.listener, reason=reason,
                        refused=burst[2], seconds=round(now - burst[1]), open=self.count,
                        descriptors_free=self.fds.free())
            burst[1], burst[2] = now, 0
