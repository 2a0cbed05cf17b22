"""The loop side of a deployment with its history in PostgreSQL: the Redis deployment's
membership (``Cluster``), plus the drain that moves settled lookups to PostgreSQL and the
retention that drops old days' partitions (both on the cluster's worker threads, under a
lease in Redis: one process at a time does them; another takes over when it dies)."""
from __future__ import annotations

import asyncio
import time

import structlog

from ..redis import Cluster
from ..redis.store import Fenced
from .store import ArchivedStore

log = structlog.get_logger("hlrsmpp.postgres")

#: Seconds between drain rounds when the last round found nothing (or failed).
IDLE = 0.2
#: Seconds between retention rounds (partitions made ahead, old ones dropped).
RETENTION_EVERY = 3600.0


class ArchivedCluster(Cluster):
    store: ArchivedStore

    async def start(self) -> None:
        await super().start()
        if not self._stopping:
            self._tasks.append(self.loop.create_task(self._drain_loop()))

    async def _drain_loop(self) -> None:
        store = self.store
        days = self.server.cfg["history"]["retention_days"]
        lease = max(2.0, self.opts.lease)
        last_retention = 0.0
        failing = False
        while True:
            try:
                moved = 0
                if await self.run(store.drain_lock, lease):
                    moved = await self.run(store.drain)
                    if failing:
                        log.info("postgres_drain_resumed")
                        failing = False
                    now = time.time()
                    if now - last_retention >= RETENTION_EVERY:
                        last_retention = now
                        dropped = await self.run(store.retention, days)
                        if dropped:
                            log.info("history_partitions_dropped", partitions=dropped)
                if moved == 0:
                    await asyncio.sleep(IDLE)
            except asyncio.CancelledError:
                raise
            except Fenced:
                return
            except Exception as err:
                # PostgreSQL (or Redis) away: nothing was removed from Redis; try again.
                if not failing:
                    log.error("postgres_drain_failed", error=repr(err))
                    failing = True
                await asyncio.sleep(1.0)
