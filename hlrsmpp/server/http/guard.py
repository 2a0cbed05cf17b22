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
"""
from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from ... import metrics

log = structlog.get_logger("hlrsmpp.http")

HEADER, BODY, ANSWERING = "header", "body", "answering"


class GuardedProtocol(asyncio.Protocol):
    """One HTTP connection: the gate's admission and the header and body timers around
    aiohttp's RequestHandler (``inner``)."""

    __slots__ = ("inner", "gate", "loop", "header_timeout", "body_timeout", "transport", "ip",
                 "admitted", "phase", "since", "last", "seen", "payload", "timer")

    def __init__(self, inner, gate, loop: asyncio.AbstractEventLoop, header_timeout: float,
                 body_timeout: float):
        self.inner, self.gate, self.loop = inner, gate, loop
        self.header_timeout, self.body_timeout = header_timeout, body_timeout
        self.transport = None
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
        if not self.gate.admit(self.ip):   # counted and logged by the gate
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
        self.gate.release(self.ip)
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
    """A TCPSite whose connections go through ``GuardedProtocol``."""

    def __init__(self, runner: web.AppRunner, gate, host: str, port: int, header_timeout: float,
                 body_timeout: float, **kwargs):
        super().__init__(runner, host, port, **kwargs)
        self._gate = gate
        self._timeouts = (header_timeout, body_timeout)

    async def start(self) -> None:
        await web.BaseSite.start(self)   # registers the site with its runner
        loop = asyncio.get_running_loop()
        handler_factory = self._runner.server
        header_timeout, body_timeout = self._timeouts
        gate = self._gate

        def factory() -> GuardedProtocol:
            return GuardedProtocol(handler_factory(), gate, loop, header_timeout, body_timeout)

        self._server = await loop.create_server(
            factory, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port)
        self._bound_port = (self._server.sockets[0].getsockname()[1] if self._server.sockets
                            else self._port)
