"""Shared deployments on Redis: several hlrsmpp processes, one state (docs/scaling.md)."""
from .store import RedisStore

__all__ = ["RedisStore"]
