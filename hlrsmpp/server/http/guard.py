"""The HTTP listener's connections: admitted by the server's ``http_gate`` (caps and the
descriptor reserve, the rules of the SMPP listener too), and closed when a request is too
slow to arrive.

aiohttp has no header or body timeout of its own (only keep-alive, ``http.idle_timeout``,
which it applies from the connection's start and after each response), so every
connection's protocol is wrapped: ``GuardedProtocol`` passes everything through to
aiohttp's ``RequestHandler`` and watches the phase of the request it reads:

- header: from the connection, or the first byte of the next request, until aiohttp has
  parsed the request line and headers; at most ``http.header_timeout`` seconds in all (a
  client trickling a byte at a time gets no more);
- body: until the request's body is complete; at most ``http.body_timeout`` seconds
  without a byte (unless aiohttp stopped reading because the handler is not taking the
  body yet: then the wait is the server's, not the client's).

While the handler answers, nothing is timed (a synchronous lookup may wait for its HLR).
A connection closed for a timeout is a debug line and ``hlrsmpp_http_timeouts_total``.

HTTPS and reverse proxies: with ``http.tls`` the connection goes through the front door
first (front.py: the gate, the TLS handshake within ``http.header_timeout``); from a peer
of ``http.trusted_proxies`` the client is the address its ``Forwarded`` or
``X-Forwarded-For`` header names (``client_address``), and the proxy's connections count
towards the listener's total only, not towards one address's cap.
"""
from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiohttp import web

from ... import metrics
from ...accounts.allowlist import IpNetwork, ip_allowed, peer_address
from ..front import Listener, listen
from ..tls import Certificates

log = structlog.get_logger("hlrsmpp.http")

HEADER, BODY, ANSWERING = "header", "body", "answering"


class GuardedProtocol(asyncio.Protocol):
    """One HTTP connection: the gate's admission and the header and body timers around
    aiohttp's RequestHandler (``inner``)."""

    __slots__ = ("inner", "gate", "loop", "header_timeout", "body_timeout", "transport", "ip",
                 "admitted", "phase", "since", "last", "seen", "payload", "timer", "trusted", "slot")

    def __init__(self, inner, gate, loop: asyncio.AbstractEventLoop, header_timeout: float,
                 body_timeout: float, trusted: tuple[IpNetwork, ...] = ()):
        self.inner, self.gate, self.loop = inner, gate, loop
        self.trusted = trusted
        self.slot: str | None = None
        self.header_timeout, self.body_timeout = header_timeout, body_timeout
        self.transport: Any = None
        self.ip = ""
        self.admitted = False
        self.phase = HEADER
        self.since = self.last = 0.0
        self.seen = 0            # requests aiohttp had parsed at the last look
        self.payload = None      # the body of the request being read
        self.timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------ asyncio hooks
    def connection_made(self, transport) -> None:
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else ""
        # A trusted proxy carries many clients: its connections are capped in total only.
        self.slot = None if self.trusted and ip_allowed(self.ip, self.trusted) else self.ip
        if not self.gate.admit(self.slot):   # counted and logged by the gate
            transport.abort()
            return
        self.admitted = True
        self.transport = transport
        self.inner.connection_made(transport)
        self.since = self.last = self.loop.time()
        self._arm(self.header_timeout)

    def connection_lost(self, exc) -> None:
        if not self.admitted:
            return
        self.admitted = False
        self.gate.release(self.slot)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        inner = self.inner
        inner.data_received(data)
        now = self.last = self.loop.time()
        parsed = inner._request_count
        if parsed != self.seen:            # a request line and headers are complete
            self.seen = parsed
            messages = inner._messages
            self.payload = messages[-1][1] if messages else None
            self.phase = BODY
        elif self.phase == ANSWERING and data:   # the first bytes of the next request
            self.phase, self.since = HEADER, now
            self._arm(self.header_timeout)
            return
        if self.phase == BODY:
            if self.payload is None or self.payload.is_eof():
                self.phase = ANSWERING
            else:
                self._arm(self.body_timeout)

    def eof_received(self):
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # ------------------------------------------------------ timers
    def _arm(self, delay: float) -> None:
        if self.timer is None and delay > 0:
            self.timer = self.loop.call_at(self.loop.time() + delay, self._check)

    def _check(self) -> None:
        self.timer = None
        if not self.admitted:
            return
        now = self.loop.time()
        if self.phase == HEADER:
            deadline = self.since + self.header_timeout
        elif self.phase == BODY and not (self.payload is None or self.payload.is_eof()):
            deadline = self.last + self.body_timeout
            if self.inner._reading_paused:   # the handler is not reading yet: not the client's wait
                self.last, deadline = now, now + self.body_timeout
        else:
            self.phase = ANSWERING
            return
        if now < deadline:
            self.timer = self.loop.call_at(deadline, self._check)
            return
        metrics.STATS.http_timeouts[self.phase] += 1
        log.debug("http_request_too_slow", peer=self.ip, phase=self.phase)
        self.transport.abort()


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections go through ``GuardedProtocol`` (after the front door's
    TLS handshake when it has ``certificates``)."""

    def __init__(self, runner: web.AppRunner, gate, host: str, port: int, header_timeout: float,
                 body_timeout: float, certificates: Certificates | None = None,
                 trusted: tuple[IpNetwork, ...] = (), **kwargs):
        super().__init__(runner, host, port, **kwargs)
        self._gate = gate
        self._timeouts = (header_timeout, body_timeout)
        self._certificates, self._trusted = certificates, trusted

    async def start(self) -> None:
        await web.BaseSite.start(self)   # registers the site with its runner
        loop = asyncio.get_running_loop()
        handler_factory = self._runner.server
        assert handler_factory is not None  # the runner is set up before its sites start
        header_timeout, body_timeout = self._timeouts
        gate, trusted = self._gate, self._trusted

        def factory() -> GuardedProtocol:
            return GuardedProtocol(handler_factory(), gate, loop, header_timeout, body_timeout, trusted)

        front = Listener(loop, gate, factory, header_timeout, certificates=self._certificates,
                         uncapped=trusted)
        assert self._host is not None  # GuardedSite is always given its address
        self._server = await listen(loop, front if front.needed else factory, self._host,
                                    self._port, bool(self._reuse_port))
        self._bound_port = (self._server.sockets[0].getsockname()[1] if self._server.sockets
                            else self._port)


# ------------------------------------------------------------------ reverse proxies
def forwarded_middleware(trusted: tuple[IpNetwork, ...]):
    """Requests from a trusted proxy carry the client's address (``request.remote``), for
    the allowlists, bans and logs; from anyone else the headers are ignored."""

    @web.middleware
    async def forwarded(request: web.Request, handler):
        peer = request.remote or ""
        if ip_allowed(peer, trusted):
            client = client_address(peer, request.headers, trusted)
            if client != peer:
                request = request.clone(remote=client)
        return await handler(request)

    return forwarded


def client_address(peer: str, headers, trusted: tuple[IpNetwork, ...]) -> str:
    """The client of a request from trusted proxy ``peer``: from the right of the hops
    ``Forwarded`` (else ``X-Forwarded-For``) lists, the first that is not a trusted proxy
    (the hops left of it are the client's to write). A hop that is not an address
    (``unknown``, an obfuscated name) ends the search at the peer: no one trusted knew."""
    hops = _forwarded_for(headers) if "Forwarded" in headers else [
        h.strip() for line in headers.getall("X-Forwarded-For", ()) for h in line.split(",")]
    client = peer
    for hop in reversed(hops):
        address = peer_address(hop)
        if address is None:
            return peer
        client = str(address)
        if not ip_allowed(client, trusted):
            break
    return client


def _forwarded_for(headers) -> list[str]:
    """The ``for=`` of each element of RFC 7239 ``Forwarded`` headers, without quotes,
    brackets and ports (an element without one: an empty hop, which is no address)."""
    hops = []
    for line in headers.getall("Forwarded", ()):
        for element in line.split(","):
            hop = ""
            for pair in element.split(";"):
                name, _, value = pair.strip().partition("=")
                if name.lower() == "for":
                    hop = _strip_port(value.strip().strip('"'))
            hops.append(hop)
    return hops


def _strip_port(value: str) -> str:
    if value.startswith("["):                       # [2001:db8::1]:4711
        return value[1:value.find("]")] if "]" in value else ""
    if peer_address(value) is not None or ":" not in value:
        return value
    return value.rpartition(":")[0]                 # 192.0.2.1:4711
