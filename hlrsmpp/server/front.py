"""The front door of a listener: what happens to a connection before the SMPP or HTTP
protocol sees it, when it goes through a load balancer (the PROXY protocol) or TLS.

In order, each under the same rules as the connection that follows:

1. admission by the listener's gate (caps, descriptor reserve) as soon as TCP is up. A
   peer of ``smpp.proxy_protocol`` is counted towards the listener's total only until
   its header names the client (a balancer carries many clients: its own address is no
   one's per-address cap);
2. from such a peer, and from it only, the PROXY protocol header (proxy_header.py). A
   missing, malformed or oversized header closes the connection. The client's address it
   names is, from then on, the connection's address: allowlists, bans, per-address caps,
   logs and metrics all see it. From any other peer a PROXY header is just bad input,
   refused like any (the SMPP framer closes it, a TLS handshake fails);
3. TLS, when the listener has certificates: the handshake (tls.py), paced one step per
   turn of the loop, a banned client's held back ``smpp.tarpit`` seconds first;
4. the hand-over: the gate's slot goes to the protocol, which admits the connection by
   the client's address as it would a direct one.

Steps 1 to 3 must be over within the listener's deadline (``smpp.session_init_timeout``,
``http.header_timeout``), from the TCP connection: a client that connects and sends
nothing, or never finishes its handshake, is closed on time. Every connection closed
here is counted in ``hlrsmpp_connections_rejected_total{listener, reason}``, reason
``proxy_header``, ``tls_handshake`` or ``too_slow``, and is a debug line.
"""
from __future__ import annotations

import asyncio
import socket
from typing import Callable

import structlog

from .. import metrics
from ..accounts.allowlist import IpNetwork, ip_allowed
from .gate import ConnectionGate
from .proxy_header import ProxyHeaderError, parse
from .tls import Certificates, HandshakePacer, TlsChannel

log = structlog.get_logger("hlrsmpp.front")

PROXY, HANDSHAKE, HELD, OPEN = "proxy", "handshake", "held", "open"


class Listener:
    """What the front door of one listening socket needs: its gate, the peers whose PROXY
    header it reads, its certificates (None: clear), its deadline, the protocol it hands
    connections to (``inner``), whether a client address is banned (held back ``tarpit``
    seconds before its handshake), and the peers not capped per address (``uncapped``;
    by default the balancers)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, gate: ConnectionGate,
                 inner: Callable[[], asyncio.BaseProtocol], deadline: float,
                 proxies: tuple[IpNetwork, ...] = (), certificates: Certificates | None = None,
                 tarpit: float = 0.0, banned: Callable[[str], bool] | None = None,
                 uncapped: tuple[IpNetwork, ...] = ()):
        self.loop, self.gate, self.inner = loop, gate, inner
        # Peers counted towards the listener's total only: the balancers, the trusted proxies.
        self.uncapped = uncapped or proxies
        self.deadline, self.proxies, self.certificates = deadline, proxies, certificates
        self.tarpit, self.banned = tarpit, banned
        self.pacer = HandshakePacer(loop)

    @property
    def needed(self) -> bool:
        """Whether connections need the front door (else the protocol takes TCP as is)."""
        return bool(self.proxies) or self.certificates is not None

    def __call__(self) -> asyncio.Protocol:
        return Front(self)


async def listen(loop: asyncio.AbstractEventLoop, factory, host: str, port: int,
                 reuse_port: bool = False) -> asyncio.Server:
    """A listening socket for ``factory``'s connections. ``::`` is dual-stack: one IPv6
    socket that takes IPv4 too (asyncio would make it IPv6 only), whose IPv4 peers read
    ``::ffff:a.b.c.d`` (allowlists, bans and PROXY peers compare them as a.b.c.d)."""
    if host != "::" or not socket.has_dualstack_ipv6():
        return await loop.create_server(factory, host, port, reuse_address=True, backlog=1024,
                                        reuse_port=reuse_port or None)
    sock = socket.create_server(("::", port), family=socket.AF_INET6, backlog=1024,
                                reuse_port=reuse_port, dualstack_ipv6=True)
    try:
        return await loop.create_server(factory, sock=sock, backlog=1024)
    except BaseException:
        sock.close()
        raise


class ClientTransport:
    """A TCP transport whose peer is the client a PROXY header named: the protocol's own
    calls go straight to the TCP transport (bound once, no extra frame per write)."""

    def __init__(self, raw: asyncio.Transport, peer: tuple):
        self._raw, self._peer = raw, peer
        for name in ("write", "writelines", "close", "abort", "is_closing", "pause_reading",
                     "resume_reading", "is_reading", "set_write_buffer_limits",
                     "get_write_buffer_size", "get_write_buffer_limits", "can_write_eof",
                     "write_eof", "set_protocol", "get_protocol"):
            setattr(self, name, getattr(raw, name))

    def get_extra_info(self, name, default=None):
        if name == "peername":
            return self._peer
        return self._raw.get_extra_info(name, default)


class Front(asyncio.Protocol):
    """One connection at the front door, until it is handed over."""

    def __init__(self, listener: Listener):
        self.listener = listener
        self.raw: asyncio.Transport | None = None
        self.peer: tuple = ("", 0)
        self.forwarded = False           # the peer is the client a PROXY header named
        self.slot: str | None = None     # the gate's key for this connection (None: uncapped)
        self.admitted = False
        self.state = PROXY
        self.buffer = b""
        self.channel: TlsChannel | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        listener = self.listener
        self.raw = transport
        self.peer = transport.get_extra_info("peername") or ("", 0)
        ip = self.peer[0]
        from_proxy = bool(listener.proxies) and ip_allowed(ip, listener.proxies)
        self.slot = None if from_proxy or ip_allowed(ip, listener.uncapped) else ip
        if not listener.gate.admit(self.slot):   # counted and logged by the gate
            transport.abort()
            return
        self.admitted = True
        self.timer = listener.loop.call_later(listener.deadline, self._too_slow)
        if from_proxy:
            self.state = PROXY
        else:
            self._secure(b"")

    def data_received(self, data: bytes) -> None:
        if self.state == PROXY:
            self.buffer += data
            try:
                header = parse(self.buffer)
            except ProxyHeaderError as err:
                self._refuse("proxy_header", str(err))
                return
            if header is None:
                return
            rest, self.buffer = self.buffer[header.consumed:], b""
            if header.source is not None:
                self.peer, self.forwarded = header.source, True
            self._secure(rest)
        elif self.state == HANDSHAKE:
            self.channel.feed(data)   # type: ignore[union-attr]
        elif self.state == HELD:
            self.buffer += data

    def _secure(self, rest: bytes) -> None:
        """After the PROXY header (or without one): TLS, else the hand-over."""
        listener = self.listener
        raw = self.raw
        assert raw is not None
        if listener.certificates is None:
            self._hand_over(ClientTransport(raw, self.peer) if self.forwarded else raw, rest)
            return
        self.channel = TlsChannel(raw, listener.certificates.context, self.peer, listener.pacer,
                                  self._handshaken, lambda reason: self._refuse("tls_handshake", reason))
        if listener.tarpit and listener.banned is not None and listener.banned(self.peer[0]):
            # A banned client's handshake (the server's public-key work) waits, unread.
            self.state, self.buffer = HELD, rest
            raw.pause_reading()
            metrics.STATS.tarpitted += 1
            listener.loop.call_later(listener.tarpit, self._release_held)
            return
        self.state = HANDSHAKE
        self.channel.feed(rest)

    def _release_held(self) -> None:
        if self.state != HELD or self.raw is None or self.raw.is_closing():
            return
        self.state, rest, self.buffer = HANDSHAKE, self.buffer, b""
        self.raw.resume_reading()
        self.channel.feed(rest)   # type: ignore[union-attr]

    def _handshaken(self) -> None:
        raw, channel = self.raw, self.channel
        assert raw is not None and channel is not None
        raw.set_protocol(channel)
        self._hand_over(channel, b"")

    def _hand_over(self, transport, rest: bytes) -> None:
        """The protocol takes the connection (and admits it by the client's address)."""
        self._close_slot()
        self.state = OPEN
        inner = self.listener.inner()
        if self.channel is not None:
            self.channel.inner = inner
        else:
            self.raw.set_protocol(inner)   # type: ignore[union-attr]
        inner.connection_made(transport)
        if rest and not transport.is_closing():
            inner.data_received(rest)   # type: ignore[attr-defined]

    def _too_slow(self) -> None:
        self.timer = None
        self._refuse("too_slow", f"{self.state} not done within {self.listener.deadline:g} s")

    def _refuse(self, reason: str, detail: str) -> None:
        if self.state == OPEN or self.raw is None:
            return
        metrics.STATS.connections_rejected[self.listener.gate.listener, reason] += 1
        log.debug("connection_closed", listener=self.listener.gate.listener, peer=self.peer[0],
                  reason=reason, detail=detail)
        self.state = OPEN
        if reason != "tls_handshake":
            self._close_slot()
            self.raw.abort()
        elif self.listener.tarpit:
            # A failed handshake is a misbehaving peer: held unread (its slot too), then
            # told why, as the SMPP session does; each costs one connection per interval.
            self.raw.pause_reading()
            metrics.STATS.tarpitted += 1
            self.listener.loop.call_later(self.listener.tarpit, self._alert_and_close)
        else:
            self._alert_and_close()

    def _alert_and_close(self) -> None:
        self._close_slot()
        if not self.raw.is_closing():   # type: ignore[union-attr]
            self.channel.flush()        # type: ignore[union-attr]  # the alert that says why
            self.raw.close()            # type: ignore[union-attr]

    def _close_slot(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.admitted:
            self.admitted = False
            self.listener.gate.release(self.slot)

    def connection_lost(self, exc) -> None:
        self._close_slot()
        self.state = OPEN

    def eof_received(self):
        return False
