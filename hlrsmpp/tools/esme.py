"""An asyncio SMPP 3.4 ESME for HLR lookups, on the project's ESME session.

It binds to any SMPP HLR server (ours or another provider's), submits numbers
(windowed: many submit_sm in flight), answers every deliver_sm and matches the
receipts to the submissions by message id. Receipt texts are parsed tolerantly:
the AMS HLR API's keys are read where present, any other key is kept.
"""
from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Callable

from ..smpp.codec import U16, Command, Pdu, Tag
from ..smpp.esme import EsmeSession
from ..smpp.session import BindMode, State
from ..hlr import ERR_NAMES
from ..smpp.status import Status
from . import ToolError
from ..smpp.status import status_name

MAX_PDU = 1 << 20   # a response longer than this is not SMPP: drop the connection


class SmppError(ToolError):
    """A request the server answered with an error status."""

    def __init__(self, what: str, status: int, hint: str = ""):
        self.status = status
        super().__init__(f"{what}: {status_name(status)} (0x{status:02X}){hint}", 2)


class ConnectionLost(ToolError):
    def __init__(self, message: str = "the SMPP server closed the connection"):
        super().__init__(message, 2)


# ------------------------------------------------------------------ receipts

# A key is a word (letters first) at the start or after a space, before ':';
# "submit date" and "done date" are the two-word keys receipts use.
_KEY = re.compile(r"(?:^|\s)([A-Za-z][\w-]*(?: date)?):")
_TRUE = frozenset({"true", "yes", "y", "1"})
_FALSE = frozenset({"false", "no", "n", "0"})


def parse_receipt_text(text: str) -> dict[str, str]:
    """``key:value`` pairs of a receipt text, keys as written, in order. ``text:`` takes
    the rest of the line (its value may hold anything). Never raises."""
    out: dict[str, str] = {}
    matches = list(_KEY.finditer(text))
    for i, m in enumerate(matches):
        key = m.group(1)
        if key.lower() == "text":
            out[key] = text[m.end():].strip()
            break
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        out[key] = text[m.end():end].strip()
    return out


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    v = value.strip().lower()
    return True if v in _TRUE else False if v in _FALSE else None


@dataclass
class Receipt:
    """One deliver_sm receipt, read tolerantly."""
    destination: str
    text: str
    fields: dict[str, str]                      # every key of the text, as written
    tlv_id: str | None = None                   # receipted_message_id
    message_state: int | None = None
    network_error: int | None = None            # network_error_code's code
    low: dict[str, str] = field(init=False, repr=False, compare=False)   # fields by lowercase key

    def __post_init__(self) -> None:
        self.low = {k.lower(): v for k, v in self.fields.items()}

    def get(self, key: str, default: str = "") -> str:
        return self.low.get(key.lower(), default)

    @property
    def id(self) -> str:
        return self.get("id") or self.tlv_id or ""

    @property
    def stat(self) -> str:
        stat = self.get("stat")
        if not stat and self.message_state is not None:
            stat = {2: "DELIVRD", 5: "UNDELIV", 1: "ENROUTE"}.get(self.message_state, str(self.message_state))
        return stat

    @property
    def err(self) -> int | None:
        raw = self.get("err").strip()
        if raw.isdigit():
            return int(raw)
        if self.network_error is not None:
            return self.network_error
        if self.stat.upper() == "DELIVRD":
            return 0
        return None

    def as_dict(self) -> dict:
        low = self.low
        known = {"id", "sub", "dlvrd", "submit date", "done date", "stat", "err", "cc", "nnc",
                 "isported", "p_nnc", "isroaming", "r_cc", "r_nnc", "text"}
        err = self.err
        return {
            "id": self.id, "stat": self.stat, "err": err,
            "err_name": ERR_NAMES.get(err, "") if err is not None else "",
            "cc": low.get("cc", ""), "nnc": low.get("nnc", ""),
            "ported": _flag(low.get("isported")), "p_nnc": low.get("p_nnc", ""),
            "roaming": _flag(low.get("isroaming")), "r_cc": low.get("r_cc", ""),
            "r_nnc": low.get("r_nnc", ""),
            "submit_date": low.get("submit date", ""), "done_date": low.get("done date", ""),
            "extra": {k: v for k, v in self.fields.items() if k.lower() not in known},
            "text": self.text,
        }

    @classmethod
    def from_pdu(cls, pdu: Pdu) -> "Receipt":
        raw = pdu.params.get("short_message") or pdu.tlvs.get(Tag.MESSAGE_PAYLOAD, b"")
        dc = pdu.params.get("data_coding", 0)
        # Latin-1 reads ASCII receipts unchanged whatever the data_coding says (0x5F
        # stays '_'); UCS-2 (8) is the one coding that needs decoding.
        text = raw.decode("utf-16-be", "replace") if dc == 8 else bytes(raw).decode("latin-1")
        tlv_id = pdu.tlvs.get(Tag.RECEIPTED_MESSAGE_ID)
        state = pdu.tlvs.get(Tag.MESSAGE_STATE)
        nec = pdu.tlvs.get(Tag.NETWORK_ERROR_CODE)
        return cls(
            destination=pdu.params.get("destination_addr", ""), text=text.strip("\0 \r\n"),
            fields=parse_receipt_text(text.strip("\0 \r\n")),
            tlv_id=tlv_id.rstrip(b"\0").decode("latin-1") if tlv_id else None,
            message_state=state[0] if state else None,
            network_error=U16.unpack_from(nec, 1)[0] if nec and len(nec) == 3 else None)


def id_keys(message_id: str) -> set[str]:
    """Spellings of one message id a receipt may use: as given, without leading zeros,
    and the other base (some SMSCs answer hex in submit_sm_resp, decimal in receipts)."""
    s = message_id.strip().lower()
    keys = {s, s.lstrip("0") or "0"}
    try:
        if s.isdigit():
            keys.add(format(int(s), "x"))
        keys.add(str(int(s, 16)))
    except ValueError:
        pass
    return keys


# ---------------------------------------------------------------------- client

_MODES = {"transceiver": BindMode.TRX, "transmitter": BindMode.TX, "receiver": BindMode.RX}


class EsmeClient(asyncio.Protocol):
    """One SMPP connection, ESME side: the asyncio adapter of an ``EsmeSession``
    (smpp/esme.py), which produces and reads every byte. ``on_receipt(receipt) ->
    status`` decides how each deliver_sm is answered (ESME_ROK unless it says otherwise)."""

    def __init__(self, on_receipt: Callable[[Receipt], int] | None = None):
        self.on_receipt = on_receipt
        self.transport: asyncio.Transport | None = None
        self.session = EsmeSession(MAX_PDU, auto_ack=False)
        # sequence -> the Future of the response, or a callback(pdu, exc) run at once
        self._pending: dict[int, asyncio.Future | Callable] = {}
        self._can_write = asyncio.Event()
        self._can_write.set()
        self.lost: asyncio.Future = asyncio.get_running_loop().create_future()
        self.last_write = time.monotonic()
        self._keepalive: asyncio.Task | None = None

    @property
    def bound(self) -> bool:
        return self.session.bound and not self.lost.done()

    # ---------------------------------------------------------- set-up
    @classmethod
    async def connect(cls, host: str, port: int, timeout: float = 10.0,
                      on_receipt: Callable[[Receipt], int] | None = None) -> "EsmeClient":
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: cls(on_receipt), host, port), timeout)
        except asyncio.TimeoutError:
            raise ToolError(f"cannot connect to SMPP server {host}:{port}: timed out") from None
        except OSError as err:
            reason = err.strerror or str(err)
            raise ToolError(f"cannot connect to SMPP server {host}:{port}: {reason}") from None
        return proto

    async def bind(self, system_id: str, password: str, system_type: str = "HLR",
                   mode: str = "transceiver", timeout: float = 10.0, keepalive: float = 30.0) -> str:
        """Bind; returns the server's system_id. Raises SmppError with the ESME_R* name."""
        for name, value, limit in (("system_id", system_id, 15), ("password", password, 8),
                                   ("system_type", system_type, 12)):
            if len(value.encode("latin-1", "replace")) > limit:
                raise ToolError(f"{name.replace('_', ' ')} longer than {limit} characters (SMPP 3.4 limit)")
        self._check_open()
        sequence = self.session.bind(_MODES[mode], system_id, password, system_type)
        resp = await self._answer(self._sent(sequence), sequence, timeout, f"bind_{mode}")
        if resp.status:
            hint = {Status.RINVPASWD: " — wrong password", Status.RINVSYSID: " — unknown system_id",
                    Status.RINVSYSTYP: " — wrong system_type (try --system-type)",
                    Status.RBINDFAIL: " — bind refused (account already has a receiving session, "
                                      "IP not allowed or banned, or too many sessions)",
                    Status.RACCEXPIRY: " — account expired"}.get(resp.status, "")
            raise SmppError(f"bind as {system_id!r} refused", resp.status, hint)
        if keepalive:
            self._keepalive = asyncio.get_running_loop().create_task(self._ping(keepalive))
        return resp.params.get("system_id", "")

    async def _ping(self, interval: float) -> None:
        while not self.lost.done():
            await asyncio.sleep(interval / 3)
            if time.monotonic() - self.last_write >= interval and not self.lost.done():
                sequence = self.session.enquire_link()
                try:
                    await self._answer(self._sent(sequence), sequence, interval, "enquire_link")
                except (ToolError, asyncio.TimeoutError):
                    pass

    # ------------------------------------------------------------ requests
    def _check_open(self) -> None:
        if self.lost.done():
            raise ConnectionLost()

    def _sent(self, sequence: int, on_resp: Callable | None = None) -> asyncio.Future | None:
        """The request numbered ``sequence`` is in the session's output: write it, and
        keep where its response goes."""
        fut = on_resp or asyncio.get_running_loop().create_future()
        self._pending[sequence] = fut
        self._flush()
        return None if on_resp else fut

    def _flush(self) -> None:
        data = self.session.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.last_write = time.monotonic()

    def send(self, pdu: Pdu, on_resp: Callable | None = None) -> asyncio.Future | None:
        """Write a request now. Its response PDU goes to the returned future, or, with
        ``on_resp``, to ``on_resp(pdu, None)`` as soon as it is read (before any PDU read
        after it: a receipt right behind its submit_sm_resp finds the id known);
        ``on_resp(None, exc)`` if the connection is lost first."""
        self._check_open()
        return self._sent(self.session.send(pdu), on_resp)

    async def _answer(self, fut, sequence: int, timeout: float, what: str) -> Pdu:
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            self._pending.pop(sequence, None)
            raise ToolError(f"{what}: no answer from the SMPP server within {timeout:g}s", 2) from None

    async def request(self, pdu: Pdu, timeout: float, what: str) -> Pdu:
        fut = self.send(pdu)
        return await self._answer(fut, pdu.sequence, timeout, what)

    def submit(self, number: str, ton: int = 1, npi: int = 1, source: str = "",
               registered_delivery: int = 1, on_resp: Callable | None = None) -> asyncio.Future | None:
        """submit_sm for one number; its submit_sm_resp goes as in ``send``."""
        self._check_open()
        numeric = 1 if source.isdigit() else 0
        sequence = self.session.submit_sm(number, ton, npi, source, numeric, numeric, registered_delivery)
        return self._sent(sequence, on_resp)

    async def drain(self) -> None:
        """Wait while the transport's write buffer is over its high-water mark."""
        if not self._can_write.is_set():
            await self._can_write.wait()
        self._check_open()

    async def unbind(self, timeout: float = 5.0) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        if self.bound:
            sequence = self.session.unbind()
            try:
                await self._answer(self._sent(sequence), sequence, timeout, "unbind")
            except ToolError:
                pass
        self.close()

    def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        if self.transport is not None:
            self.transport.close()

    # ----------------------------------------------------------- asyncio
    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self._can_write.set()
        if not self.lost.done():
            self.lost.set_result(exc)
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            if isinstance(waiter, asyncio.Future):
                if not waiter.done():
                    waiter.set_exception(ConnectionLost())
            else:
                waiter(None, ConnectionLost())

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def data_received(self, data: bytes) -> None:
        session = self.session
        for pdu in session.receive_data(data):
            self._handle(pdu)
        self._flush()
        if session.state is State.CLOSED and session.close_reason not in ("unbind", "unbound"):
            self.transport.abort()   # not SMPP: connection_lost fails what waits

    def _handle(self, pdu: Pdu) -> None:
        cmd = pdu.command
        if cmd & 0x80000000:   # a response (generic_nack included) to one of ours
            waiter = self._pending.pop(pdu.sequence, None)
            if isinstance(waiter, asyncio.Future):
                if not waiter.done():
                    waiter.set_result(pdu)
            elif waiter is not None:
                waiter(pdu, None)
        elif cmd == Command.DELIVER_SM or cmd == Command.DATA_SM:
            status = Status.ROK
            if self.on_receipt is not None:
                status = self.on_receipt(Receipt.from_pdu(pdu))
            self.session.acknowledge(pdu, status)
        elif cmd == Command.UNBIND:   # the session answered it
            asyncio.get_running_loop().call_soon(self.close)


__all__ = ["ERR_NAMES", "ConnectionLost", "EsmeClient", "Receipt", "SmppError", "id_keys",
           "parse_receipt_text", "status_name"]
