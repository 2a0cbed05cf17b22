"""Test-side ESMEs built on the asyncio client libraries (aiosmpplib, smpp34), and a wire tap.

Both libraries hide parts of the protocol (smpp34 never surfaces a bind_resp status,
unbind_resp or enquire_link_resp; aiosmpplib closes its socket before it can read the
unbind_resp of ``stop()``), so ``WireTap`` sits between a client and the server and records
every PDU in both directions: what the library cannot tell us, the wire can.
"""
from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass

import aiosmpplib
from aiosmpplib.broker import SimpleBroker
import smpp34

HOST = "127.0.0.1"

# command ids
BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER = 0x01, 0x02, 0x09
SUBMIT_SM, DELIVER_SM, UNBIND, ENQUIRE_LINK = 0x04, 0x05, 0x06, 0x15
RESP = 0x80000000


async def wait_until(pred, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``pred()`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# ------------------------------------------------------------------ wire tap
@dataclass(frozen=True)
class WirePdu:
    direction: str  # ">" client to server, "<" server to client
    command_id: int
    status: int
    sequence: int
    raw: bytes

    @property
    def body(self) -> bytes:
        return self.raw[16:]

    def c_string(self) -> str:
        """The first C-octet string of the body (message_id of a submit_sm_resp)."""
        return self.body.split(b"\0", 1)[0].decode("ascii")


class WireTap:
    """A transparent TCP proxy in front of the server that records every PDU.

    Half-closes are passed on (a FIN from one side becomes a FIN to the other), so a
    response written after the peer's FIN still gets through, as it would directly.
    ``drop(pdu)`` (optional) swallows chosen PDUs (they are still recorded, in ``dropped``);
    ``abort()`` resets every connection through the tap, as a network failure would.
    Bytes that do not frame as PDUs (a length under 16) are forwarded untouched from then on.
    """

    def __init__(self, port: int, drop=None):
        self.upstream = port
        self.drop = drop
        self.pdus: list[WirePdu] = []
        self.dropped: list[WirePdu] = []
        self.eofs: list[str] = []
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def __aenter__(self) -> "WireTap":
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def abort(self) -> None:
        """Reset both sides of every connection (no unbind, no FIN)."""
        for w in self._writers:
            w.transport.abort()

    async def _handle(self, creader, cwriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        writers = [cwriter]
        self._writers.append(cwriter)
        try:
            sreader, swriter = await asyncio.open_connection(HOST, self.upstream)
            writers.append(swriter)
            self._writers.append(swriter)
            await asyncio.gather(self._pump(creader, swriter, ">"), self._pump(sreader, cwriter, "<"),
                                 return_exceptions=True)
        except asyncio.CancelledError:
            pass  # the tap is closing: drop both sides below
        finally:
            for w in writers:
                w.close()
            self._tasks.discard(task)

    async def _pump(self, reader, writer, direction: str) -> None:
        buf = b""
        framing = True
        while True:
            data = await reader.read(65536)
            if not data:
                self.eofs.append(direction)
                try:
                    writer.write_eof()
                except OSError:
                    pass
                return
            if not framing:
                writer.write(data)
                await writer.drain()
                continue
            buf += data
            out = []
            while len(buf) >= 16:
                length, command_id, status, seq = struct.unpack("!IIII", buf[:16])
                if length < 16:
                    framing = False
                    break
                if len(buf) < length:
                    break
                pdu = WirePdu(direction, command_id, status, seq, buf[:length])
                buf = buf[length:]
                if self.drop is not None and self.drop(pdu):
                    self.dropped.append(pdu)
                    continue
                self.pdus.append(pdu)
                out.append(pdu.raw)
            if not framing:
                out.append(buf)
                buf = b""
            writer.write(b"".join(out))
            await writer.drain()

    def find(self, direction: str, command_id: int) -> list[WirePdu]:
        return [p for p in self.pdus if p.direction == direction and p.command_id == command_id]


def wire_tlvs(raw: bytes, pos: int) -> list[tuple[int, bytes]]:
    """The TLVs of a PDU on the wire from ``pos`` to its end, in order."""
    out = []
    while pos < len(raw):
        tag, length = struct.unpack_from(">HH", raw, pos)
        out.append((tag, raw[pos + 4:pos + 4 + length]))
        pos += 4 + length
    assert pos == len(raw), "TLVs overrun the PDU"
    return out


def bind_resp_tlvs(raw: bytes) -> list[tuple[int, bytes]]:
    """The TLVs of a bind_resp on the wire, in order (after system_id)."""
    return wire_tlvs(raw, raw.index(b"\0", 16) + 1)


def deliver_sm_tlv_start(raw: bytes) -> int:
    """Where the TLVs of a deliver_sm on the wire begin: past its mandatory fields."""
    return _deliver_sm_fields(raw)[2]


def deliver_sm_fields(raw: bytes) -> tuple[str, bytes, dict[int, bytes]]:
    """(destination_addr, short_message, TLVs) of a deliver_sm on the wire, read from the
    bytes here, independently of any client library."""
    destination, short_message, pos = _deliver_sm_fields(raw)
    return destination, short_message, dict(wire_tlvs(raw, pos))


def _deliver_sm_fields(raw: bytes) -> tuple[str, bytes, int]:
    pos = 16
    pos = raw.index(b"\0", pos) + 3                 # service_type; source TON, NPI
    pos = raw.index(b"\0", pos) + 3                 # source_addr; dest TON, NPI
    end = raw.index(b"\0", pos)
    destination = raw[pos:end].decode("ascii")
    pos = end + 4                                   # destination_addr; esm_class, protocol_id, priority
    pos = raw.index(b"\0", pos) + 1                 # schedule_delivery_time
    pos = raw.index(b"\0", pos) + 5                 # validity_period; four octets to sm_length
    return destination, raw[pos + 1:pos + 1 + raw[pos]], pos + 1 + raw[pos]


# ---------------------------------------------------------------- aiosmpplib
class RecordingHook(aiosmpplib.AbstractHook):
    """Keeps every message aiosmpplib sends and receives (raw PDU when it cannot parse one)."""

    def __init__(self) -> None:
        self.outgoing: list = []                # every message the library sent, in order
        self.incoming: list = []                # every message it received and parsed, in order
        self.raw_unparsed: list[bytes] = []     # PDUs it received but could not parse
        self.send_errors: list = []

    async def sending(self, smpp_message, pdu, client_id) -> None:
        self.outgoing.append(smpp_message)

    async def received(self, smpp_message, pdu, client_id) -> None:
        if smpp_message is None:
            self.raw_unparsed.append(pdu)
        else:
            self.incoming.append(smpp_message)

    async def send_error(self, smpp_message, error, client_id) -> None:
        self.send_errors.append((smpp_message, error))

    def of(self, cls, where: str = "incoming") -> list:
        return [m for m in getattr(self, where) if type(m) is cls]


class NoRetry(aiosmpplib.AbstractRetryTimer):
    """Never reconnect by itself: a dropped connection must show in the test, not be healed."""

    def __init__(self) -> None:
        self.released = asyncio.Event()

    async def wait(self) -> None:
        await self.released.wait()

    def reset(self) -> None:
        pass

    def next_delay(self) -> float:
        return 0.0


class AioEsme:
    """An aiosmpplib ESME running ``start()`` in a task, with a recording hook."""

    MODES = {"transceiver": aiosmpplib.BindMode.TRANSCEIVER, "transmitter": aiosmpplib.BindMode.TRANSMITTER,
             "receiver": aiosmpplib.BindMode.RECEIVER}

    def __init__(self, port: int, mode: str = "transceiver", system_id: str = "demo", password: str = "demo",
                 system_type: str = "HLR", enquire_link_interval: float = 55.0):
        self.hook = RecordingHook()
        self.retry = NoRetry()
        self.esme = aiosmpplib.ESME(
            smsc_host=HOST, smsc_port=port, system_id=system_id, password=password, system_type=system_type,
            bind_mode=self.MODES[mode], hook=self.hook, retry_timer=self.retry,
            enquire_link_interval=float(enquire_link_interval), socket_timeout=10.0, log_level="WARNING",
            broker=SimpleBroker(maxsize=10000))
        self._task: asyncio.Task | None = None

    async def start(self) -> "AioEsme":
        self._task = asyncio.create_task(self.esme.start())
        await wait_until(lambda: self.esme._bound.is_set() or self._task.done(), what="aiosmpplib bind")
        assert self.esme.session_state == self.esme.bind_mode.session_state, "aiosmpplib did not bind"
        return self

    async def submit(self, number: str, log_id: str = "", ton=aiosmpplib.TON.INTERNATIONAL,
                     npi=aiosmpplib.NPI.ISDN) -> None:
        await self.esme.broker.enqueue(aiosmpplib.SubmitSm(
            short_message="hlr", source=aiosmpplib.PhoneNumber("TEST"),
            destination=aiosmpplib.PhoneNumber(number, ton, npi), log_id=log_id))

    async def send(self, message) -> None:
        """Any request through the library's normal send path (sequence numbers, correlation)."""
        await self.esme.broker.enqueue(message)

    @property
    def resps(self) -> list:
        return self.hook.of(aiosmpplib.SubmitSmResp)

    @property
    def receipts(self) -> list:
        return [m for m in self.hook.of(aiosmpplib.DeliverSm) if m.is_receipt()]

    async def close(self) -> None:
        if self._task is None:
            return
        await self.esme.stop()
        self.retry.released.set()
        try:
            await asyncio.wait_for(self._task, 10)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            self._task.cancel()


def opt(message, tag: int):
    """The value of optional parameter ``tag`` of an aiosmpplib message (None if absent)."""
    for p in message.optional_params or ():
        if p.tag == tag:
            return p.value
    return None


# -------------------------------------------------------------------- smpp34
class Smpp34Esme:
    """A bound smpp34 session with a task draining ``next()`` into ``receipts``.

    Draining continuously matters: smpp34 NAKs a deliver_sm when its inbound queue is full.
    """

    def __init__(self, smsc: smpp34.Smsc, client: smpp34.Client):
        self.smsc = smsc
        self.client = client
        self.receipts: list[smpp34.DeliverSmEvent] = []
        self.disconnected = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def bind(cls, port: int, bind_type: str = "TRX", system_id: str = "demo", password: str = "demo",
                   system_type: str = "HLR", window_size: int = 10, connect_timeout_ms: int = 5000
                   ) -> "Smpp34Esme":
        client = make_smpp34_client(port, bind_type, system_id, password, system_type, window_size,
                                    connect_timeout_ms)
        return cls(await client.connect(), client)

    async def _read(self) -> None:
        while True:
            ev = await self.smsc.next()
            if isinstance(ev, smpp34.Disconnected):
                self.disconnected.set()
                return
            self.receipts.append(ev)

    async def submit(self, number: str, ton: int = 1, npi: int = 1) -> smpp34.SubmitSmResp:
        return await self.smsc.submit_sm(number, b"", source_addr="TEST", dest_addr_ton=ton, dest_addr_npi=npi)

    async def close(self) -> None:
        if not self.disconnected.is_set():
            try:
                await asyncio.wait_for(self.smsc.unbind(), 5)
            except Exception:
                pass
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        try:
            await self.client.stop()
        except Exception:
            pass


def make_smpp34_client(port: int, bind_type: str = "TRX", system_id: str = "demo", password: str = "demo",
                       system_type: str = "HLR", window_size: int = 10, connect_timeout_ms: int = 5000
                       ) -> smpp34.Client:
    return smpp34.Client(HOST, port, system_id, password, bind_type=bind_type, system_type=system_type,
                         window_size=window_size, inbound_capacity=4096, connect_timeout_ms=connect_timeout_ms)


def tlv(event, tag: int) -> smpp34.Tlv | None:
    for t in event.tlvs:
        if t.tag == tag:
            return t
    return None
