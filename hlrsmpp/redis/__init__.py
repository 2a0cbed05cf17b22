"""Shared deployments on Redis: several hlrsmpp processes, one state (docs/scaling.md)."""
try:
    import redis as _client  # noqa: F401  (the redis-py package)
except ImportError:  # pragma: no cover - depends on the installation
    from ..config import ConfigError
    raise ConfigError("storage.redis needs the redis client: pip install 'hlrsmpp[redis]'") from None

from .cluster import Cluster
from .store import RedisStore

__all__ = ["Cluster", "RedisStore"]
