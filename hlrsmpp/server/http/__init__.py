"""The HTTP interface, on cfg["http"]: the AMS HLR API's lookup and report, the SMSPAY
prepaid service, the JSON API under /api/v1/ with its OpenAPI document, /metrics and
/healthz. Everything shares the SMPP server's engine, accounts, credit, limits and history.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
import logging
import sys

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry

from ... import metrics
from ...accounts.allowlist import parse_allowlist
from .openapi import document
from . import api, clean, me, prepaid, websmpp, testbench
from .. import console
from .common import SERVER, json_error, json_response
from .guard import GuardedSite, forwarded_middleware

log = structlog.get_logger("hlrsmpp.http")

__all__ = ["start_http", "build_app"]

UNMATCHED = "unmatched"


def _route(request: web.Request) -> str:
    """The route TEMPLATE (e.g. /api/v1/lookups/{id}): bounded label cardinality."""
    route = request.match_info.route
    resource = getattr(route, "resource", None)
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def _observe(request: web.Request, handler):
    """Count every answer in STATS.http[(route, code)]; turn anything unexpected into a
    clear error instead of a stack trace; JSON errors for the JSON API."""
    route = _route(request)
    code = 500
    try:
        resp = await handler(request)
        code = resp.status
        return resp
    except web.HTTPException as e:
        code = e.status
        if request.path.startswith("/api/") and e.status >= 400:
            headers = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None
            return json_error(e.status, "not_found" if e.status == 404 else
                              "method_not_allowed" if e.status == 405 else "bad_request",
                              e.reason or e.text or "request refused", headers=headers)
        raise
    except asyncio.CancelledError:
        code = 499  # the client went away
        raise
    except ConnectionError as e:   # the client went away mid-body: its problem, not ours
        code = 499
        log.debug("http_client_gone", route=route, method=request.method, error=str(e)[:200])
        return json_error(400, "bad_request", "the connection was lost before the request was read")
    except Exception:
        log.exception("http_handler_failed", route=route, method=request.method)
        code = 500
        return json_error(500, "internal_error", "the server failed on this request; it is logged")
    finally:
        metrics.STATS.http[route, code] += 1


async def metrics_handler(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    body = metrics.exposition(registry)
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
    return resp


async def healthz(request: web.Request) -> web.Response:
    """200 only while the SMPP listener serves, the store commits (a real write, now) and
    its data directory takes a file, and the HLR tables are loaded; else 503 with what is
    down."""
    checks = await health_checks(request.app[SERVER])
    ok = all(checks.values())
    return json_response({"status": "ok" if ok else "unavailable", "checks": checks},
                         200 if ok else 503)


async def health_checks(server) -> dict[str, bool]:
    """What /healthz (and the console's system page) checks: up or not, each."""
    return {"smpp": _smpp_up(server), "storage": await _storage_up(server), "hlr": _hlr_up(server)}


def _smpp_up(server) -> bool:
    s = server.smpp_server
    return s is not None and s.is_serving() and not server.stopping


#: How long the store's probe commit may take before the store counts as down.
STORAGE_PROBE_TIMEOUT = 2.0


async def _storage_up(server) -> bool:
    """A lookup is only answered once durable: the store is up when a commit succeeds
    (a disk full or read-only, a Redis out of memory fail it) and the data directory
    (cleaning jobs, traces) takes a small file, written through to the disk."""
    loop = asyncio.get_running_loop()
    try:
        committed = await asyncio.wait_for(asyncio.shield(server.journal.probe()), STORAGE_PROBE_TIMEOUT)
        return committed and await asyncio.wait_for(
            loop.run_in_executor(None, _writable, Path(server.cfg["storage"]["path"])), STORAGE_PROBE_TIMEOUT)
    except Exception:
        return False


def _writable(directory: Path) -> bool:
    if not directory.is_dir():
        return True  # not made yet (a deployment on Redis makes it on first use)
    probe = directory / f".healthz-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"hlrsmpp healthz\n" * 256)  # a few KB: a full disk refuses them
            os.fsync(fd)
        finally:
            os.close(fd)
        return True
    except OSError:
        return False
    finally:
        try:
            probe.unlink()
        except OSError:
            pass


def _hlr_up(server) -> bool:
    try:
        return server.resolver.healthy()
    except Exception:
        return False


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


class _ProtocolLog(logging.LoggerAdapter):
    """aiohttp's connection-level logger. A request the client got wrong (a malformed or
    over-long request line or header, a connection gone mid-request) is answered 400 or
    dropped by aiohttp, and is the client's problem: a debug line without a traceback.
    Anything else stays an error with its traceback."""

    def exception(self, msg, *args, exc_info=True, **kwargs) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(exc, (HttpProcessingError, ConnectionError)):
            log.debug("http_request_malformed", detail=(msg % args)[:200],
                      error=f"{type(exc).__name__}: {str(exc)[:200]}")
            return
        self.logger.exception(msg, *args, exc_info=exc_info, **kwargs)


_PROTOCOL_LOG = _ProtocolLog(logging.getLogger("aiohttp.server"), {})


REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)
OPENAPI = web.AppKey("openapi", dict)


def build_app(server) -> web.Application:
    trusted = parse_allowlist(server.cfg["http"]["trusted_proxies"], "http.trusted_proxies")
    middlewares = [forwarded_middleware(trusted), _observe] if trusted else [_observe]
    app = web.Application(middlewares=middlewares, client_max_size=1024 * 1024)
    app[SERVER] = server
    app[REGISTRY] = metrics.registry_for(server)
    app[OPENAPI] = document()
    app[prepaid.SERVICES] = prepaid.Services(server.cfg, server.book)
    app[api.WEBHOOKS] = api.Webhooks(server.cfg, server.resolver.network_names)
    app[api.HISTORY] = api.HistoryReaders(server.store, server.cfg["history"]["readers"],
                                              server.resolver.network_names)
    clean.setup(app, server)
    console.setup(app, server)
    r = app.router
    # The AMS HLR API (lookups have side effects: no implicit HEAD).
    r.add_route("GET", "/websmpp/hlr/lookup", websmpp.lookup)
    r.add_route("POST", "/websmpp/hlr/lookup", websmpp.lookup)
    r.add_get("/websmpp/hlr/report", websmpp.report)
    # The SMSPAY prepaid API
    r.add_route("GET", "/users/hlr_prepaid.php", prepaid.handle)
    # JSON API
    r.add_get("/api/v1/openapi.json", openapi_json)
    r.add_post("/api/v1/lookups", api.create_lookups)
    r.add_get("/api/v1/lookups/{id}", api.get_lookup)
    r.add_get("/api/v1/batches/{id}", api.get_batch)
    r.add_get("/api/v1/history", api.history)
    r.add_get("/api/v1/me", me.me)
    r.add_patch("/api/v1/me", me.update_me)
    r.add_get("/api/v1/me/stats", me.stats)
    r.add_get("/api/v1/me/notifications", me.notifications)
    r.add_get("/api/v1/sms/segments", api.sms_segments)
    r.add_get("/api/v1/accounts", api.list_accounts)
    r.add_post("/api/v1/accounts", api.create_account)
    r.add_get("/api/v1/accounts/{system_id}", api.get_account)
    r.add_patch("/api/v1/accounts/{system_id}", api.update_account)
    r.add_post("/api/v1/accounts/{system_id}/top-up", api.top_up)
    r.add_post("/api/v1/accounts/{system_id}/enable", api.enable_account)
    r.add_post("/api/v1/accounts/{system_id}/disable", api.disable_account)
    r.add_get("/api/v1/accounts/{system_id}/ledger", api.ledger)
    # Test bench (operator)
    r.add_get("/api/v1/faults", testbench.get_faults)
    r.add_put("/api/v1/faults", testbench.put_faults)
    r.add_get("/api/v1/accounts/{system_id}/trace", testbench.get_trace)
    r.add_put("/api/v1/accounts/{system_id}/trace", testbench.put_trace)
    # Contact-list cleaning: upload, poll, download
    r.add_post("/api/v1/clean", clean.create_job)
    r.add_get("/api/v1/clean/{id}", clean.get_job)
    r.add_delete("/api/v1/clean/{id}", clean.delete_job)
    r.add_get("/api/v1/clean/{id}/download", clean.download)
    # Operations
    r.add_get("/metrics", metrics_handler)
    r.add_get("/healthz", healthz)

    async def close_webhooks(app: web.Application) -> None:
        await app[api.WEBHOOKS].close()
        app[api.HISTORY].close()

    app.on_shutdown.append(close_webhooks)
    return app


async def start_http(server) -> tuple[web.AppRunner, int]:
    """Serve on cfg["http"]["host"/"port"] (port 0: a free one); return (runner, port)."""
    hc = server.cfg["http"]
    app = build_app(server)
    # keepalive_timeout: aiohttp closes a connection idle that long, from its start and
    # after each answer; GuardedSite adds the header and body timeouts and the caps.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0,
                           logger=_PROTOCOL_LOG, keepalive_timeout=float(hc["idle_timeout"]))
    await runner.setup()
    site = GuardedSite(runner, server.http_gate, hc["host"], hc["port"],
                       float(hc["header_timeout"]), float(hc["body_timeout"]),
                       certificates=server.http_tls,
                       trusted=parse_allowlist(hc["trusted_proxies"], "http.trusted_proxies"),
                       reuse_address=True,
                       backlog=1024, reuse_port=hc.get("reuse_port") or None)  # serve --workers: N processes, one port
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    port = runner.addresses[0][1] if runner.addresses else hc["port"]
    log.info("http_started", host=hc["host"], port=port, prepaid_services=len(app[prepaid.SERVICES]))
    return runner, port
