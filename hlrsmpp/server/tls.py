"""TLS for both listeners: the server's certificates, and a TLS layer of our own over a
TCP transport (``ssl.SSLObject`` over memory buffers).

asyncio's own TLS (``create_server(ssl=...)``) calls the protocol only once the handshake
is over, so the connection caps, the descriptor reserve and the timeouts could not see a
client during its handshake, a PROXY header could not come before it, and the server
could not pace handshakes. Here the front door (front.py) admits the TCP connection
first, reads the PROXY header, then runs the handshake with ``TlsChannel`` under its own
deadline, one handshake step per turn of the loop at most (``HandshakePacer``: a flood of
handshakes, each a millisecond or more of public-key work, cannot starve the bound
sessions), and only then hands the decrypted stream to the SMPP or HTTP protocol.

Certificates are reloaded on SIGHUP (``Certificates.reload``): a new context, used by the
handshakes from then on; the sessions already encrypted keep theirs.
"""
from __future__ import annotations

import asyncio
import collections
import ssl
from pathlib import Path
from typing import Callable

import structlog

from ..config import DEFAULTS

log = structlog.get_logger("hlrsmpp.tls")

_READ = 256 * 1024       # plaintext taken from the TLS layer per call


class Certificates:
    """A listener's certificate, key and (optional) client CA, as one ``ssl.SSLContext``:
    TLS 1.2 at least; with ``client_ca`` a client certificate signed by it is required."""

    def __init__(self, section: str, cert: str, key: str, client_ca: str | None = None,
                 base_dir: str = "."):
        self.section = section
        base = Path(base_dir)
        self.files = {name: str(base / path) for name, path in
                      (("cert", cert), ("key", key), ("client_ca", client_ca)) if path}
        self.context = self._load()

    @classmethod
    def from_config(cls, section: str, tls: dict | None, base_dir: str) -> "Certificates | None":
        """From ``<section>.tls`` ({cert, key, client_ca}); None when TLS is off."""
        if not isinstance(tls, dict):
            raise ValueError(f"{section}.tls: expected a mapping of cert, key ...")
        known = DEFAULTS[section]["tls"]
        for key in tls:
            if key not in known:
                raise ValueError(f"{section}.tls.{key}: unknown key; known keys: {', '.join(known)}")
        if not (tls.get("cert") or tls.get("key")):
            return None
        for key in ("cert", "key"):
            if not isinstance(tls.get(key), str) or not tls[key]:
                raise ValueError(f"{section}.tls.{key}: a file name is needed for TLS")
        ca = tls.get("client_ca")
        if ca is not None and not isinstance(ca, str):
            raise ValueError(f"{section}.tls.client_ca: expected a file name")
        return cls(section, tls["cert"], tls["key"], ca or None, base_dir)

    @property
    def client_certificates(self) -> bool:
        return "client_ca" in self.files

    def _load(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
        where = f"{self.section}.tls"
        try:
            ctx.load_cert_chain(self.files["cert"], self.files["key"])
        except (OSError, ssl.SSLError) as err:
            raise ValueError(f"{where}: cannot use cert {self.files['cert']} with key "
                             f"{self.files['key']}: {_reason(err)}") from None
        if "client_ca" in self.files:
            try:
                ctx.load_verify_locations(self.files["client_ca"])
            except (OSError, ssl.SSLError) as err:
                raise ValueError(f"{where}: cannot use client_ca {self.files['client_ca']}: "
                                 f"{_reason(err)}") from None
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def reload(self) -> None:
        """Read the files again; new handshakes use them. A bad file raises ValueError and
        the certificates in force stay. (A new context rather than loading into the old:
        a client CA taken out of the file must stop being trusted.)"""
        self.context = self._load()


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or getattr(err, "reason", None) or str(err)


class HandshakePacer:
    """Handshake steps of a listener, run one per turn of the loop: between two of them
    the loop serves every connection that has input, so handshakes take turns with the
    bound sessions instead of the whole core."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.waiting: collections.deque[TlsChannel] = collections.deque()
        self.scheduled = False

    def add(self, channel: "TlsChannel") -> None:
        self.waiting.append(channel)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._run)

    def _run(self) -> None:
        self.scheduled = False
        if not self.waiting:
            return
        channel = self.waiting.popleft()
        if self.waiting:   # the next turn is booked first: a step that fails stalls no one
            self.scheduled = True
            self.loop.call_soon(self._run)
        channel.step()


class TlsChannel(asyncio.Protocol, asyncio.Transport):
    """TLS over a TCP transport: the TCP transport's protocol, and the transport of the
    protocol (``inner``) that reads and writes the clear stream once the handshake is
    over. Everything read at once is decrypted and handed over at once, as TCP does."""

    def __init__(self, raw: asyncio.Transport, context: ssl.SSLContext, peer: tuple,
                 pacer: HandshakePacer, on_handshake: Callable[[], None],
                 on_failure: Callable[[str], None]):
        super().__init__()
        self.raw, self.context, self.peer, self.pacer = raw, context, peer, pacer
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.sslobj = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.on_handshake, self.on_failure = on_handshake, on_failure
        self.inner: asyncio.BaseProtocol | None = None
        self.queued = False
        self.done = False      # the handshake is over
        self.failed = False

    # ------------------------------------------------ the TCP side (asyncio.Protocol)
    def feed(self, data: bytes) -> None:
        if data:
            self.incoming.write(data)
        if self.done:
            self._decrypt()
        elif not self.queued and not self.failed:
            self.queued = True
            self.pacer.add(self)

    data_received = feed

    def step(self) -> None:
        """One step of the handshake, with what has arrived."""
        self.queued = False
        if self.failed or self.raw.is_closing():
            return
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self.flush()
            return
        except (ssl.SSLError, ssl.CertificateError, ValueError) as err:
            self.failed = True     # on_failure sends the alert that tells the client why
            self.on_failure(getattr(err, "reason", None) or type(err).__name__)
            return
        self.flush()
        self.done = True
        self.on_handshake()
        if self.inner is not None:   # what the client sent with its Finished
            self._decrypt()

    def _decrypt(self) -> None:
        chunks = []
        eof = False
        read = self.sslobj.read
        try:
            while True:
                chunk = read(_READ)
                if not chunk:
                    eof = True
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:     # close_notify
            eof = True
        except ssl.SSLError as err:
            log.debug("tls_record_refused", peer=self.peer[0], reason=err.reason)
            self.raw.abort()
            return
        if self.outgoing.pending:          # post-handshake messages (key updates, tickets)
            self.flush()
        inner = self.inner
        if chunks and inner is not None:
            inner.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))  # type: ignore[attr-defined]
        if eof and inner is not None and not self.raw.is_closing():
            if not inner.eof_received():   # type: ignore[attr-defined]
                self.close()

    def eof_received(self) -> bool | None:
        if self.inner is None:
            return False
        return self.inner.eof_received()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def flush(self) -> None:
        if self.outgoing.pending:
            self.raw.write(self.outgoing.read())

    # ------------------------------------------------ the clear side (asyncio.Transport)
    def write(self, data) -> None:
        if not data or self.raw.is_closing():
            return
        view = memoryview(data)
        sent = 0
        while sent < len(view):
            sent += self.sslobj.write(view[sent:])
        self.raw.write(self.outgoing.read())

    def writelines(self, list_of_data) -> None:
        self.write(b"".join(list_of_data))

    def close(self) -> None:
        if self.raw.is_closing():
            return
        try:
            self.sslobj.unwrap()           # close_notify; the peer's is not awaited
        except (ssl.SSLError, ValueError):
            pass
        self.flush()
        self.raw.close()

    def abort(self) -> None:
        self.raw.abort()

    def is_closing(self) -> bool:
        return self.raw.is_closing()

    def can_write_eof(self) -> bool:
        return False

    def get_extra_info(self, name, default=None):
        if name == "peername":
            return self.peer
        if name == "sslcontext":
            return self.context
        if name == "ssl_object":
            return self.sslobj
        if name == "peercert":
            return self.sslobj.getpeercert()
        if name == "cipher":
            return self.sslobj.cipher()
        return self.raw.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self.raw.pause_reading()

    def resume_reading(self) -> None:
        self.raw.resume_reading()

    def is_reading(self) -> bool:
        return self.raw.is_reading()

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        self.raw.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self.raw.get_write_buffer_size()

    def get_write_buffer_limits(self):
        return self.raw.get_write_buffer_limits()

    def set_protocol(self, protocol) -> None:
        self.inner = protocol

    def get_protocol(self):
        return self.inner


# ------------------------------------------------------------------ subject pins
# The attribute names of a certificate's subject as OpenSSL prints them (and an account's
# tls_subject is written: accounts.allowlist.parse_subject).
_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
          "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST",
          "emailAddress": "EMAILADDRESS", "domainComponent": "DC", "serialNumber": "SERIALNUMBER"}


def peer_subject(transport) -> frozenset[tuple[str, str]] | None:
    """The subject of the client certificate a connection presented; None without one."""
    get = getattr(transport, "get_extra_info", None)
    cert = get("peercert") if get is not None else None
    if not cert:
        return None
    return frozenset((_SHORT.get(k, k).upper(), v) for rdn in cert.get("subject", ()) for k, v in rdn)
