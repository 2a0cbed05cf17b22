"""structlog set-up: JSON lines when not on a terminal, readable on one.

Events carry key/value context: a session binds ``peer``, then ``system_id``
and ``mode`` once bound, so every line about it says whose it is. What is
logged, and at which level:

- info: one event per session change (``session_bound``, ``bind_refused``,
  ``unbind_received``, ``session_closed``), per operator action
  (``account_created``, ``account_updated``, ``credit_topped_up``,
  ``account_enabled``/``account_disabled``, ``reloaded``) and per server
  life-cycle step. Never one per PDU or per lookup: those are metrics.
- warning: things an operator should look at (``low_credit``,
  ``receipts_expired``, ``webhook_failed``).
- error: failures (``commit_failed``, ``registry_failed``, ``reload_failed``,
  unhandled exceptions, with their traceback).
- debug: connections that never bind, refused connections.

No password or token is ever logged: the code never passes one, and as a
second line of defence any key named like a secret is masked here.

Everything goes through the standard library's ``logging`` so the lines of
asyncio, aiohttp and other libraries come out in the same format.
"""
from __future__ import annotations

import logging
import re
import sys
import threading

import structlog

#: Keys whose values are never written, whoever logs them.
SECRET_KEYS = frozenset({"password", "passwd", "pwd", "secret", "token", "admin_token",
                         "authorization", "api_key"})
MASK = "***"


# Credentials inside values: user:password@ in URLs (a Redis URL, a webhook), and
# secret-named query parameters (the AMS HLR API puts the password in the query string).
_URL_USERINFO = re.compile(r"(//)[^/@\s]*:[^/@\s]*@")
_SECRET_PARAM = re.compile(r"(?i)([?&](?:password|passwd|pwd|token|secret|api_key|apikey|access_token)=)"
                           r"[^&#\s'\"]*")


def scrub(text: str) -> str:
    """``text`` with URL credentials and secret query parameters masked."""
    if "@" in text:
        text = _URL_USERINFO.sub(r"\1" + MASK + "@", text)
    if "=" in text:
        text = _SECRET_PARAM.sub(r"\1" + MASK, text)
    return text


def _clean(value):
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: MASK if str(k).lower() in SECRET_KEYS else _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_clean(v) for v in value)
    return value


def redact(_logger, _method, event_dict: dict) -> dict:
    """Mask values of keys that name a secret, and credentials inside values."""
    for key, value in event_dict.items():
        if key.lower() in SECRET_KEYS:
            event_dict[key] = MASK
        elif key != "exc_info" and key[:1] != "_" and isinstance(value, (str, dict, list, tuple)):
            event_dict[key] = _clean(value)
    return event_dict


def configure(fmt: str = "auto", level: str = "info", stream=None) -> None:
    """``fmt``: ``json``, ``console`` or ``auto`` (console on a terminal, else JSON)."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if _isatty(stream) else "json"
    if fmt not in ("json", "console"):
        raise ValueError(f"log.format: expected auto, json or console, got {fmt!r}")
    levelno = logging.getLevelName(str(level).upper())
    if not isinstance(levelno, int):
        raise ValueError(f"log.level: expected debug, info, warning or error, got {level!r}")
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    if fmt == "console":
        final = [structlog.dev.ConsoleRenderer(colors=_isatty(stream))]
    else:
        final = [structlog.processors.format_exc_info, redact, structlog.processors.JSONRenderer()]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(levelno)
    # Libraries chatty at info (aiohttp's access log is off anyway) stay at warning.
    for name in ("aiohttp.access", "asyncio"):
        logging.getLogger(name).setLevel(max(levelno, logging.WARNING))
    # What nothing catches (a port already taken at start-up, a bug in a thread) is
    # logged in the same format too, not printed as a bare traceback.
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


def _excepthook(exc_type, exc, tb) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    logging.getLogger("hlrsmpp").critical("unhandled_exception", exc_info=(exc_type, exc, tb),
                                          extra={"error": f"{exc_type.__name__}: {exc}"})


def _thread_excepthook(args) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("hlrsmpp").error(
        "thread_exception", exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        extra={"thread_name": name, "error": f"{args.exc_type.__name__}: {args.exc_value}"})


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
