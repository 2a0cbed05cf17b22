"""Shared deployments with their history in PostgreSQL: Redis keeps what is hot (leases,
counters, credit, receipts until answered), PostgreSQL the lookups (docs/scaling.md)."""
try:
    import asyncpg as _driver  # noqa: F401  (the asyncpg package)
except ImportError:  # pragma: no cover - depends on the installation
    from ..config import ConfigError
    raise ConfigError("storage.postgres needs the asyncpg driver: pip install 'hlrsmpp[postgres]'") from None

from .cluster import ArchivedCluster
from .store import ArchivedStore

__all__ = ["ArchivedCluster", "ArchivedStore"]
