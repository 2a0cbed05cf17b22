"""Configuration: one YAML file, defaults for everything, environment overrides.

Environment variables (for containers and secrets):
  HLRSMPP_SMPP_HOST, HLRSMPP_SMPP_PORT, HLRSMPP_HTTP_HOST, HLRSMPP_HTTP_PORT,
  HLRSMPP_STORAGE_PATH, HLRSMPP_REDIS_URL, HLRSMPP_ADMIN_TOKEN, HLRSMPP_LOG_FORMAT
"""
from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path

import yaml

DEFAULTS: dict = {
    "smpp": {
        "host": "0.0.0.0",
        "port": 2775,
        "system_id": "hlrsmpp",        # our id in bind_resp
        "max_pdu_size": 8192,          # submit_multi with 254 destinations fits
        "max_connections": 10000,
        "max_connections_per_ip": 500,
        "session_init_timeout": 10.0,  # seconds to bind after connecting
        "tarpit": 1.0,                 # seconds a misbehaving peer (framing error, error before binding, repeated failed binds) waits for its answer, unread (0: at once)
        "enquire_link_interval": 10.0,  # we probe an idle ESME this often
        "enquire_link_unanswered": 3,  # probes in a row with nothing received: close (0: never); a frozen ESME frees its slot within interval x (1 + this)
        "inactivity_timeout": 120.0,   # nothing received for this long: close
        "response_timeout": 10.0,      # deliver_sm not answered in time: retry
        "window": 64,                  # outstanding deliver_sm per receiving session, times 1 + the account's transmitters bound to the process (4 Tx + 1 Rx: 5 x 64)
        "outbind_interval": 30.0,      # at most one outbind attempt per account this often
        "submit_window": 0,            # accepted submit_sm not yet answered per session (0: no limit)
        "submit_window_status": "RTHROTTLED",  # or RMSGQFUL: what an ESME past its window gets
        "max_unanswered_writes": 4 * 1024 * 1024,  # bytes buffered to a slow peer before we pause it
        "reuse_port": False,           # SO_REUSEPORT: several processes on one port (serve --workers)
        "fd_reserve": 256,             # file descriptors kept for SMPP: new HTTP connections are refused when fewer are free, new SMPP connections when fewer than half (RLIMIT_NOFILE is raised to its hard limit at start)
        "proxy_protocol": [],          # addresses or networks of load balancers whose PROXY protocol header (v1 or v2) names the client; from them the header is required, from anyone else refused
        "tls": {
            "port": 3550,              # SMPP over TLS, beside the plain port (on when cert and key are set; 0: any free port)
            "cert": None,              # PEM certificate chain file (reloaded on SIGHUP)
            "key": None,               # PEM private key file
            "client_ca": None,         # PEM CA file: a client certificate signed by it is required (an account may pin its subject: tls_subject)
        },
    },
    "http": {
        "host": "0.0.0.0", "port": 8080, "enabled": True,
        "reuse_port": False,           # SO_REUSEPORT (serve --workers)
        "max_connections": 2000,       # open HTTP connections at most; more are closed at once (metric `hlrsmpp_connections_rejected_total{listener="http"}`)
        "max_connections_per_ip": 200,  # open HTTP connections from one IP at most
        "header_timeout": 10.0,        # seconds a request's line and headers may take to arrive, from its first byte (or the connection)
        "body_timeout": 30.0,          # seconds a request body may go without a byte arriving
        "idle_timeout": 30.0,          # seconds a connection may wait, idle, for its next request (keep-alive)
        "sync_timeout": 30.0,          # longest wait of a synchronous POST /api/v1/lookups
        "webhook_attempts": 6,         # callback POSTs per batch before giving up
        "webhook_backoff": 1.0,        # first retry delay, doubled each time ...
        "webhook_backoff_max": 300.0,  # ... up to this
        "webhook_timeout": 10.0,       # per callback POST
        "webhook_secret": "",          # HMAC-SHA256 key: callbacks carry X-Hlrsmpp-Signature ("": unsigned)
        "webhook_private": False,      # allow callbacks to loopback, private and link-local addresses
        "webhook_allow": [],           # networks callbacks may reach although not public (e.g. `[10.1.2.0/24]`: an internal receiver)
        "clean_max_bytes": 200 * 1024 * 1024,  # largest upload to POST /api/v1/clean (bytes)
        "clean_quota_bytes": 1024 * 1024 * 1024,  # per account: its cleaning jobs' files on disk, uploads and cleaned copies (bytes; 0: no quota)
        "trusted_proxies": [],         # addresses or networks of reverse proxies whose X-Forwarded-For / Forwarded name the client (the rightmost address not in this list)
        "tls": {
            "cert": None,              # HTTPS on the HTTP port: PEM certificate chain file (reloaded on SIGHUP)
            "key": None,               # PEM private key file
        },
    },
    # SMSPAY-style prepaid services (/users/hlr_prepaid.php): see docs/http.md.
    "prepaid": {"timeout": 5.0, "services": []},
    # Shared deployments (docs/scaling.md) add `redis: {url: redis://...}` (several processes,
    # one state) and `postgres: {dsn: postgresql://...}` (the history in PostgreSQL, partitioned
    # by day, Redis keeping only what is hot); without them, the embedded SQLite store in `path`.
    "storage": {"path": "./data", "synchronous": "NORMAL"},
    "history": {
        "retention_days": 0,           # lookups (and HTTP batches, text messages, per-day statistics) older than this many days are removed, in small steps in the background; lookups whose receipt is still queued stay until it is done; the ledger is never pruned (0: keep everything)
        "readers": 2,                  # processes that read and render history for the HTTP API (pages, CSV exports), at lower priority, so that a report of millions of rows never holds up a lookup (0: threads of the server's process; a shared store always uses threads)
    },
    "receipts": {
        "ttl": 7 * 86400.0,            # an unacknowledged receipt is dropped after this (metric)
        "max_queue": 100000,           # per account; past it submit_sm gets ESME_RMSGQFUL
        "retry_min": 1.0,              # backoff after a deliver_sm error or timeout
        "retry_max": 60.0,
        "data_coding": 3,              # Latin-1: 0x5F reads '_' everywhere (GSM 03.38 makes it '§')
        "timezone": "UTC",             # of submit date / done date
    },
    "sms": {                           # SMS accounts (service: sms, docs/sms.md)
        "validity": 172800.0,          # s a message is retried when it carries no validity_period
        "reassembly_ttl": 3600.0,      # s the parts of a split message are kept to rebuild its text
    },
    "smtp": {                          # the e-mail of account notifications (an account's notify.email)
        "host": None,                  # SMTP server (none: no e-mail is sent, notifications wait in the outbox)
        "port": 25,                    # its port (587 for starttls, 465 for ssl, as a rule)
        "tls": "none",                 # none, starttls or ssl
        "username": None,              # AUTH, when the server wants it
        "password": None,              # with username
        "from": "hlrsmpp@localhost",   # the From of every notification
        "timeout": 10.0,               # s one delivery may take
    },
    "notify": {
        "retry_min": 5.0,              # s before a failed notification is tried again, doubling
        "retry_max": 600.0,            # s at most between tries (a notification is never dropped)
    },
    "accounts_timezone": "UTC",        # calendar of per_day/per_week/per_month
    "bans": {"after": 5, "window": 60.0, "time": 300.0},
    "hlr": {"latency_ms": 0},
    "admin": {"token": None, "token_file": "admin_token", "users": []},
    "faults": [],                      # the ESME test bench (hlrsmpp/server/faults.py)
    "log": {"format": "auto", "level": "info"},
    "accounts": [],
}

_ENV = {
    "HLRSMPP_SMPP_HOST": ("smpp", "host", str),
    "HLRSMPP_SMPP_PORT": ("smpp", "port", int),
    "HLRSMPP_HTTP_HOST": ("http", "host", str),
    "HLRSMPP_HTTP_PORT": ("http", "port", int),
    "HLRSMPP_STORAGE_PATH": ("storage", "path", str),
    "HLRSMPP_ADMIN_TOKEN": ("admin", "token", str),
    "HLRSMPP_LOG_FORMAT": ("log", "format", str),
}


#: Keys a section accepts beyond those in DEFAULTS (unset by default).
_OPTIONAL_KEYS = {"storage": {"redis", "postgres"}}
#: Sections whose keys their own module checks, with their own message (hlr: the Resolver).
_CHECKED_ELSEWHERE = {"hlr"}


class ConfigError(ValueError):
    """A configuration a user wrote wrong: one clear line, never a traceback."""


def _check_keys(raw: dict) -> None:
    """A key a section does not know is a typo: refuse it by name, with the nearest
    known key, rather than run with its default."""
    for section, value in raw.items():
        default = DEFAULTS[section]
        if not isinstance(default, dict) or section in _CHECKED_ELSEWHERE:
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{section}: expected a mapping of keys, got {value!r}")
        known = set(default) | _OPTIONAL_KEYS.get(section, set())
        for key in value:
            if key not in known:
                near = difflib.get_close_matches(str(key), sorted(known), 1)
                hint = f" (did you mean {near[0]}?)" if near else ""
                raise ConfigError(f"{section}.{key}: unknown key{hint}; known keys: "
                                  f"{', '.join(sorted(known))}")


def _merge(base: dict, over: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = _merge(out[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def load(path: str | Path | None = None, overrides: dict | None = None,
         environ: dict | None = None) -> dict:
    """Load a config file (or none), apply defaults, environment and overrides."""
    raw: dict = {}
    base_dir = Path.cwd()
    if path is not None:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must be a mapping of sections")
        base_dir = path.resolve().parent
    unknown = set(raw) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown config section(s): {', '.join(sorted(unknown))}")
    # An empty section (every key commented out) is YAML's None: the defaults.
    raw = {k: v for k, v in raw.items() if not (v is None and isinstance(DEFAULTS[k], dict))}
    _check_keys(raw)
    cfg = _merge(DEFAULTS, raw)
    env = os.environ if environ is None else environ
    for var, (section, key, kind) in _ENV.items():
        if env.get(var):
            try:
                cfg[section][key] = kind(env[var])
            except ValueError:
                raise ConfigError(f"{var}={env[var]!r} is not a valid {kind.__name__}") from None
    if env.get("HLRSMPP_REDIS_URL"):
        cfg["storage"]["redis"] = {"url": env["HLRSMPP_REDIS_URL"]}
    cfg = _merge(cfg, overrides or {})
    cfg["base_dir"] = str(base_dir)
    storage = Path(cfg["storage"]["path"])
    if not storage.is_absolute() and path is not None:
        # A relative data dir is relative to where the server runs, like ./data in the demo.
        cfg["storage"]["path"] = str(Path.cwd() / storage)
    for section in ("smpp", "http"):
        port = cfg[section]["port"]
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"{section}.port: {port!r} is not a TCP port")
    hist = cfg["history"]
    days = hist["retention_days"]
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 <= days <= 100_000:
        raise ConfigError(f"history.retention_days: {days!r} is not a number of days (0: keep everything)")
    if isinstance(hist["readers"], bool) or not isinstance(hist["readers"], int) or not 0 <= hist["readers"] <= 64:
        raise ConfigError(f"history.readers: {hist['readers']!r} is not a count of processes (0..64)")
    for key in ("validity", "reassembly_ttl"):
        value = cfg["sms"][key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"sms.{key}: {value!r} is not a positive number of seconds")
    if not isinstance(cfg["accounts"], list):
        raise ConfigError("accounts: must be a list of accounts")
    seen = set()
    for i, acc in enumerate(cfg["accounts"]):
        if not isinstance(acc, dict) or not acc.get("system_id") or (acc.get("password") is None and acc.get("password_hash") is None):
            raise ConfigError(f"accounts[{i}]: needs at least system_id and password (or password_hash)")
        if acc["system_id"] in seen:
            raise ConfigError(f"accounts[{i}]: system_id {acc['system_id']!r} appears twice")
        seen.add(acc["system_id"])
    return cfg
