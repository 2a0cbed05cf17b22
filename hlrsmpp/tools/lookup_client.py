"""``hlrsmpp lookup``: HLR lookups over SMPP against any HLR server, and ``HlrClient``,
the windowed lookup session ``hlrsmpp clean --premium`` uses too.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from ..smpp.status import Status
from ..cleaning import RETRY_STATUSES, Result
from . import ToolError, command
from .esme import ConnectionLost, EsmeClient, Receipt, id_keys, status_name

class _Lookup:
    __slots__ = ("number", "future", "keys", "deadline", "attempts", "message_id")

    def __init__(self, number: str, future: asyncio.Future):
        self.number = number
        self.future = future
        self.keys: set[str] = set()
        self.deadline = 0.0
        self.attempts = 0
        self.message_id = ""


class HlrClient:
    """A bound transceiver that turns numbers into results: ``await lookup(n)`` waits
    for a window slot, submits, and returns a future of the ``Result`` (resolved by the
    receipt, an error status, or the receipt timeout). Throttling answers
    (ESME_RTHROTTLED, ESME_RMSGQFUL) are retried with a backoff while lookups still get
    through; after ``stall_limit`` seconds without any accepted lookup (a day/week/month
    limit says RTHROTTLED too, and waiting will not lift it) the status is the result.
    Receipts nobody here
    asked for (the account's earlier lookups) are answered ESME_RX_T_APPN so the server
    keeps them for the account's own receiver, unless ``ack_foreign``."""

    def __init__(self, esme: EsmeClient, window: int = 256, timeout: float = 60.0,
                 ton: int = 1, npi: int = 1, source: str = "", ack_foreign: bool = False,
                 stall_limit: float = 60.0):
        self.esme = esme
        esme.on_receipt = self._on_receipt
        self.window = asyncio.Semaphore(window)
        self.window_size = window
        self.timeout = timeout
        self.ton, self.npi, self.source = ton, npi, source
        self.ack_foreign = ack_foreign
        self._by_key: dict[str, _Lookup] = {}
        self._waiting: dict[_Lookup, None] = {}          # accepted, receipt due; deadline order
        self._unanswered: dict[str, int] = {}            # destination -> submits without a resp
        self._early: dict[str, Receipt] = {}             # receipts that beat their submit_sm_resp
        self.foreign = 0                                 # receipts for lookups not ours
        self.retries = 0
        self.stall_limit = stall_limit
        self.last_accept = time.monotonic()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    @classmethod
    async def open(cls, host: str, port: int, system_id: str, password: str,
                   system_type: str = "HLR", connect_timeout: float = 10.0, **kw) -> "HlrClient":
        esme = await EsmeClient.connect(host, port, connect_timeout)
        client = cls(esme, **kw)   # receipts may follow bind_resp in the same read: handle them
        try:
            await esme.bind(system_id, password, system_type, "transceiver", connect_timeout)
        except BaseException:
            client._sweeper.cancel()
            esme.close()
            raise
        return client

    async def lookup(self, number: str) -> asyncio.Future:
        await self.window.acquire()
        try:
            await self.esme.drain()
        except BaseException:
            self.window.release()
            raise
        lk = _Lookup(number, asyncio.get_running_loop().create_future())
        self._submit(lk)
        return lk.future

    async def lookup_all(self, numbers: list[str]) -> list[Result]:
        futures = [await self.lookup(n) for n in numbers]
        return list(await asyncio.gather(*futures))

    async def close(self) -> None:
        self._sweeper.cancel()
        await self.esme.unbind()

    # ------------------------------------------------------------ internals
    def _dest(self, number: str) -> str:
        return number.lstrip("+")

    def _submit(self, lk: _Lookup) -> None:
        if lk.future.done():
            return
        try:
            self.esme.submit(lk.number, self.ton, self.npi, self.source,
                             on_resp=lambda pdu, exc: self._on_resp(lk, pdu, exc))
        except ToolError as err:
            self._finish(lk, exc=err)
            return
        dest = self._dest(lk.number)
        self._unanswered[dest] = self._unanswered.get(dest, 0) + 1

    def _on_resp(self, lk: _Lookup, pdu, exc: BaseException | None) -> None:
        dest = self._dest(lk.number)
        n = self._unanswered.get(dest, 1) - 1
        if n:
            self._unanswered[dest] = n
        else:
            self._unanswered.pop(dest, None)
        if exc is not None:
            self._finish(lk, exc=exc)
            return
        if pdu.status in RETRY_STATUSES and time.monotonic() - self.last_accept < self.stall_limit:
            lk.attempts += 1
            self.retries += 1
            delay = min(0.05 * 2 ** min(lk.attempts, 6), 2.0)
            asyncio.get_running_loop().call_later(delay, self._submit, lk)
            return
        if pdu.status:
            self._finish(lk, Result(lk.number, pdu.status))
            return
        self.last_accept = time.monotonic()
        lk.message_id = pdu.params.get("message_id", "")
        lk.keys = id_keys(lk.message_id)
        for key in lk.keys:
            early = self._early.pop(key, None)
            if early is not None:
                for k in self._receipt_keys(early):
                    self._early.pop(k, None)
                self._finish(lk, Result(lk.number, 0, lk.message_id, early))
                return
        for key in lk.keys:
            self._by_key[key] = lk
        lk.deadline = time.monotonic() + self.timeout
        self._waiting[lk] = None

    @staticmethod
    def _receipt_keys(receipt: Receipt) -> set[str]:
        keys = id_keys(receipt.id) if receipt.id else set()
        if receipt.tlv_id:
            keys |= id_keys(receipt.tlv_id)
        return keys

    def _on_receipt(self, receipt: Receipt) -> int:
        keys = self._receipt_keys(receipt)
        for key in keys:
            lk = self._by_key.get(key)
            if lk is not None:
                self._finish(lk, Result(lk.number, 0, lk.message_id, receipt))
                return Status.ROK
        if self._unanswered.get(receipt.destination.lstrip("+")):
            # Ours, early (a server that sends it before the submit_sm_resp): kept until
            # the response names its id; bounded, the oldest forgotten first.
            while len(self._early) > 16 * self.window_size:
                del self._early[next(iter(self._early))]
            for key in keys:
                self._early[key] = receipt
            return Status.ROK
        self.foreign += 1
        return Status.ROK if self.ack_foreign else Status.RX_T_APPN

    def _finish(self, lk: _Lookup, result: Result | None = None, exc: BaseException | None = None) -> None:
        for key in lk.keys:
            if self._by_key.get(key) is lk:
                del self._by_key[key]
        self._waiting.pop(lk, None)
        if not lk.future.done():
            self.window.release()
            if exc is not None:
                lk.future.set_exception(exc)
            else:
                lk.future.set_result(result)

    async def _sweep(self) -> None:
        lost = self.esme.lost
        while True:
            await asyncio.wait([lost], timeout=min(0.5, self.timeout / 4))
            if lost.done():
                for lk in list(self._waiting):
                    self._finish(lk, exc=ConnectionLost())
                return
            now = time.monotonic()
            while self._waiting:
                lk = next(iter(self._waiting))
                if lk.deadline > now:
                    break
                self._finish(lk, Result(lk.number, 0, lk.message_id, timed_out=True))


# ------------------------------------------------------------------ the command

def smpp_port(port: int | None) -> int:
    """--port, else $HLRSMPP_SMPP_PORT (the server's own setting), else 2775."""
    if port is not None:
        return port
    env = os.environ.get("HLRSMPP_SMPP_PORT")
    if not env:
        return 2775
    if not env.isdigit() or not 0 < int(env) < 65536:
        raise ToolError(f"HLRSMPP_SMPP_PORT={env!r} is not a TCP port")
    return int(env)


def _yes(flag: bool | None, detail: str) -> str:
    if flag is None:
        return ""
    return f"yes {detail}".strip() if flag else "no"


def result_row(r: Result) -> list[str]:
    if r.status:
        return [r.number, "", status_name(r.status), "", "", "", "", ""]
    if r.receipt is None:
        return [r.number, r.message_id, "NO_RECEIPT", "", "", "", "", ""]
    d = r.receipt.as_dict()
    err = "" if d["err"] is None else f"{d['err']:03d} {d['err_name']}".strip()
    roam = "/".join(x for x in (d["r_cc"], d["r_nnc"]) if x)
    return [r.number, d["id"], d["stat"], err, d["cc"], d["nnc"], _yes(d["ported"], d["p_nnc"]),
            _yes(d["roaming"], roam)]


def format_table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header] + rows]
    return "\n".join(lines)


HEADER = ["NUMBER", "ID", "STAT", "ERR", "CC", "NNC", "PORTED", "ROAMING"]


def address_hint(number: str) -> str:
    """Why a server finds a number impossible (ESME_RINVDSTADR), and what to give instead."""
    digits = number.strip().lstrip("+")
    if digits.startswith("00"):
        return f"{number}: drop the international prefix 00: {digits[2:]}"
    if digits.startswith("0"):
        return (f"{number}: not an international number: give the country code instead of "
                f"the leading 0, e.g. 33{digits[1:]} for France")
    return (f"{number}: not a possible international number: the country code, then the "
            "national number, digits only (e.g. 447700900123)")


async def run_lookup(args) -> int:
    numbers = [n.strip() for n in args.numbers if n.strip()]
    if numbers == ["-"]:
        numbers = [line.strip() for line in sys.stdin if line.strip()]
    if not numbers:
        raise ToolError("no number to look up")
    client = await HlrClient.open(args.host, smpp_port(args.port), args.system_id, args.password, args.system_type,
                                  args.connect_timeout, window=args.window, timeout=args.timeout,
                                  ton=args.ton, npi=args.npi, source=args.source,
                                  ack_foreign=args.ack_foreign)
    try:
        results = await client.lookup_all(numbers)
    finally:
        await client.close()
    if args.json:
        for r in results:   # JSON Lines: one object a line, in the order given
            print(json.dumps(r.as_dict()))
    else:
        print(format_table([result_row(r) for r in results], HEADER))
    sys.stdout.flush()   # the hints follow the table on a shared terminal or file
    for r in results:
        if r.status == Status.RINVDSTADR:
            print(f"hint: {address_hint(r.number)}", file=sys.stderr)
    return 0 if all(r.receipt is not None for r in results) else 1


def add_parser(sub) -> None:
    p = sub.add_parser("lookup", help="look numbers up on an SMPP HLR server (ours or another)",
                       description="Bind as a transceiver, submit each number, wait for its "
                                   "submit_sm_resp and its receipt, print the results.")
    p.add_argument("numbers", nargs="+", metavar="NUMBER",
                   help="MSISDNs in international format ('-' reads them from stdin)")
    p.add_argument("--host", default="127.0.0.1", help="SMPP server (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="SMPP port (default $HLRSMPP_SMPP_PORT, else 2775)")
    p.add_argument("--system-id", default="demo")
    p.add_argument("--password", default="demo")
    p.add_argument("--system-type", default="HLR")
    p.add_argument("--ton", type=int, default=1, help="destination TON (default 1, international)")
    p.add_argument("--npi", type=int, default=1, help="destination NPI (default 1, E.164)")
    p.add_argument("--source", default="", help="source_addr of the submit_sm (default empty)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each receipt")
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument("--window", type=int, default=64, help="lookups in flight at once")
    p.add_argument("--ack-foreign", action="store_true",
                   help="acknowledge receipts of lookups this command did not submit "
                        "(default: answer ESME_RX_T_APPN so the server redelivers them)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object a line (JSON Lines) instead of a table")
    p.set_defaults(func=command("lookup", run_lookup))
