"""``storage: {redis: {...}}``: the options of a shared deployment, with defaults."""
from __future__ import annotations

from dataclasses import dataclass, fields

from ..config import ConfigError


@dataclass(frozen=True)
class RedisOptions:
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "hlrsmpp:"
    #: seconds: a process's node number, a receiving session and a transmitter are leased
    #: this long and renewed every third of it; a process that dies frees them after it.
    lease: float = 10.0
    #: seconds the lookup history is kept (then it expires; totals and the ledger stay).
    history_ttl: float = 90 * 86400.0
    #: credit lent to a process at a time: enough for this many lookups at least ...
    lease_lookups: int = 1000
    #: ... or for this many seconds at the account's recent rate, whichever is more.
    lease_seconds: float = 2.0
    #: seconds without a lookup after which a process gives an account's credit back.
    lease_idle: float = 5.0
    #: a receipt of a lookup accepted by another process waits at least this long after its
    #: submission, so its submit_sm_resp (written by that process) goes out first.
    cross_node_guard_ms: float = 10.0
    #: seconds between reads of what other processes changed (settings, counters, credit).
    refresh: float = 0.5

    @classmethod
    def from_config(cls, d) -> "RedisOptions":
        if isinstance(d, str):
            d = {"url": d}
        if not isinstance(d, dict):
            raise ConfigError(f"storage.redis: expected a mapping with url, got {d!r}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"storage.redis: unknown key(s) {', '.join(sorted(unknown))}; "
                              f"expected some of {', '.join(sorted(known))}")
        kw = {}
        for f in fields(cls):
            if f.name not in d or d[f.name] is None:
                continue
            v = d[f.name]
            want = type(f.default)
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if not isinstance(v, want) or isinstance(v, bool):
                raise ConfigError(f"storage.redis.{f.name}: expected {want.__name__}, got {v!r}")
            if want in (int, float) and v <= 0 and f.name != "cross_node_guard_ms":
                raise ConfigError(f"storage.redis.{f.name}: must be positive, got {v!r}")
            kw[f.name] = v
        opts = cls(**kw)
        if not opts.url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"storage.redis.url: expected redis://, rediss:// or unix://, got {opts.url!r}")
        if opts.lease < 1.0:
            raise ConfigError("storage.redis.lease: at least 1 second")
        return opts
