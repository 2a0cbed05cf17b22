"""Benchmarks, off the runtime path: load.py (``hlrsmpp bench``, the load generator),
misbehaving.py (its misbehaving clients), admission.py (AccountBook.admit), resolver.py
(parse + resolve a number) and redis.py (``make bench-redis``, a shared deployment).
No runtime module imports from this package."""
