"""The compiled modules (setup.py builds them, each optional): hlrsmpp.smpp._speedups,
hlrsmpp.accounts._sqlite_batch and hlrsmpp.hlr._resolve. Their Python twins are the reference and the
fallback; ``HLRSMPP_PURE_PYTHON=1`` runs the server on the fallback."""
from __future__ import annotations

import importlib
import os
from types import ModuleType

#: The operator asked for the Python code only (benchmarks, debugging, comparison).
PURE_PYTHON = os.environ.get("HLRSMPP_PURE_PYTHON", "") not in ("", "0")


def load(name: str) -> ModuleType | None:
    """The compiled module ``name``, or None: not built here, or PURE_PYTHON."""
    if PURE_PYTHON:
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
