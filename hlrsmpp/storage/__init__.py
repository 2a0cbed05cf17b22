"""The deployment seam: what the server asks of its store (``protocols``), and the
session rule of a process alone on its store (``local``). The implementations: SQLite in
``hlrsmpp.accounts.store``, Redis in ``hlrsmpp.redis``; the server picks one at start-up
and never asks which one it got."""
