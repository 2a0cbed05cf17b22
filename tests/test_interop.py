"""The interop matrix: SMPP clients nobody on this project wrote, each through one scenario
against a real server on a free port: bind, one lookup per number, an id for every
submission, every receipt matched to its submission and handed to the application byte for
byte as the server sent it. A WireTap between client and server records what the server
really sent; each client's view is compared with it.

Clients:
- Kannel 1.4.5 (Debian package ``kannel``): bearerbox + smsbox, an smsc group of type smpp,
  lookups through smsbox's sendsms HTTP interface with ``dlr-mask``/``dlr-url``, delivery
  reports to an HTTP callback served here (``%A`` the receipt text, ``%d`` the DLR type,
  ``%F`` the SMSC's message id); as Tx+Rx (two smsc groups, one smsc-id) and as TRx.
- The npm ``smpp`` package 0.5.1 (tests/interop/node): its defaults announce
  interface_version 0x50.
- smpplib, aiosmpplib, smpp34 (Python).

``make test`` installs Kannel (apt-get, as root) and the node package (``npm ci``).
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import smpp34
from aiohttp import web

from conftest import free_port
from esme import RECEIPT_RE, SmpplibEsme
from esme_async import (AioEsme, Smpp34Esme, WireTap, bind_resp_tlvs, deliver_sm_fields, opt, tlv, wait_until,
                        BIND_RECEIVER, BIND_TRANSCEIVER, BIND_TRANSMITTER, DELIVER_SM, RESP, SUBMIT_SM)

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "interop" / "node"

#: Sandbox numbers (never allocated) with a fixed answer: stat and err of each receipt.
NUMBERS = {
    "447700900000": ("DELIVRD", "000"),   # reachable
    "447700900011": ("UNDELIV", "011"),   # absent
    "447700900019": ("UNDELIV", "019"),   # barred
    "447700900030": ("DELIVRD", "000"),   # ported
    "447700900031": ("DELIVRD", "000"),   # roaming
}
STAT_OF_STATE = {2: "DELIVRD", 5: "UNDELIV"}   # message_state TLV
STAT_OF_KANNEL_DLR = {1: "DELIVRD", 2: "UNDELIV"}  # Kannel's %d: 1 delivered, 2 failed
#: Real HLRs answer in 0.2 s to 3 s. Gateways that store their id mapping only once they
#: have processed the submit_sm_resp (Kannel over Tx+Rx) need the receipt to come later.
HLR_LATENCY_MS = 500


@dataclass
class Outcome:
    """What the client handed its application."""
    ids: dict[str, str] = field(default_factory=dict)       # number -> message_id
    #: number (the submission the client matched the receipt to) -> [(id it matched by, text, stat)]
    receipts: dict[str, list[tuple[str, bytes, str]]] = field(default_factory=dict)

    def receipt(self, number: str, message_id: str, text: bytes, stat: str) -> None:
        self.receipts.setdefault(number, []).append((message_id, text, stat))


def check(outcome: Outcome, tap: WireTap) -> None:
    """The client's view against the wire: ids, matching, text byte for byte, state."""
    numbers = sorted(NUMBERS)
    # An id for every submission: the one the server sent in the submit_sm_resp.
    submits = {p.sequence: submit_destination(p.raw) for p in tap.find(">", SUBMIT_SM)}
    wire_ids = {submits[p.sequence]: p.c_string() for p in tap.find("<", SUBMIT_SM | RESP) if p.status == 0}
    assert sorted(wire_ids) == numbers
    assert outcome.ids == wire_ids
    assert len(set(wire_ids.values())) == len(numbers)
    assert all(mid.isdigit() and len(mid) <= 64 for mid in wire_ids.values())
    # Every receipt the server sent, by its receipted_message_id.
    wire_receipts = {}
    for p in tap.find("<", DELIVER_SM):
        destination, text, tlvs = deliver_sm_fields(p.raw)
        wire_receipts[tlvs[0x001E].rstrip(b"\0").decode()] = (destination, text, tlvs[0x0427][0])
    assert sorted(wire_receipts) == sorted(wire_ids.values())
    # Every receipt matched to its submission, handed over byte for byte, its state read.
    assert sorted(outcome.receipts) == numbers
    for number, (stat, err) in NUMBERS.items():
        message_id = wire_ids[number]
        destination, text, state = wire_receipts[message_id]
        assert destination == number
        assert outcome.receipts[number] == [(message_id, text, STAT_OF_STATE[state])], number
        m = RECEIPT_RE.match(text.decode("ascii"))
        assert m and (m["id"], m["stat"], m["err"]) == (message_id, stat, err), text


def submit_destination(raw: bytes) -> str:
    pos = raw.index(b"\0", 16) + 3                  # service_type; source TON, NPI
    pos = raw.index(b"\0", pos) + 3                 # source_addr; dest TON, NPI
    return raw[pos:raw.index(b"\0", pos)].decode("ascii")


@pytest.fixture
def hlr_server(make_server):
    return make_server(hlr={"latency_ms": HLR_LATENCY_MS})


# ------------------------------------------------------------------------ Kannel
KANNEL_CORE = """\
group = core
admin-port = {admin}
admin-interface = 127.0.0.1
admin-password = interop
status-password = interop
smsbox-port = {box}
smsbox-interface = 127.0.0.1
box-allow-ip = 127.0.0.1
log-file = {dir}/bearerbox.log
log-level = 0
dlr-storage = internal

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {box}
sendsms-port = {sendsms}
sendsms-interface = 127.0.0.1
log-file = {dir}/smsbox.log
log-level = 0

group = sendsms-user
username = interop
password = interop
"""
# What matters against hlrsmpp: system-type HLR (Kannel's default is VMA); destination
# TON 1 / NPI 1 (Kannel sends digits without "+" as TON 2, national); the ids are decimal
# C strings (msg-id-type unset: compared as strings; 0: both parsed as decimal; 1 to 3
# would parse them as hex and every id would overflow to the same number).
KANNEL_SMSC = """
group = smsc
smsc = smpp
smsc-id = hlr
host = 127.0.0.1
port = {port}
{extra}smsc-username = demo
smsc-password = demo
system-type = HLR
dest-addr-ton = 1
dest-addr-npi = 1
"""
KANNEL_MODES = {
    # Kannel 1.4.5 refuses port and receive-port in one group: Tx and Rx are two groups of
    # one smsc-id (DLRs are matched per smsc-id).
    "tx+rx": [dict(port="{smpp}", extra="msg-id-type = 0\n"),
              dict(port="0", extra="receive-port = {smpp}\nmsg-id-type = 0\n")],
    "trx": [dict(port="{smpp}", extra="transceiver-mode = true\n")],
}


class Kannel:
    """bearerbox + smsbox on free loopback ports, configured in ``tmp_path``."""

    def __init__(self, smpp_port: int, tmp_path: Path, mode: str):
        self.exe = {exe: shutil.which(exe) or shutil.which(exe, path="/usr/sbin") for exe in ("bearerbox", "smsbox")}
        if None in self.exe.values():
            pytest.fail("Kannel is not installed: run `make test` (it installs the Debian package kannel "
                        "with apt-get as root) or install kannel", pytrace=False)
        version = subprocess.run([self.exe["bearerbox"], "--version"], capture_output=True, text=True).stdout
        assert "version `1.4.5'" in version, version  # the version docs/smpp.md names
        self.dir = tmp_path
        self.sendsms = free_port()
        self.admin = free_port()
        self.groups = len(KANNEL_MODES[mode])
        conf = KANNEL_CORE.format(admin=self.admin, box=free_port(), sendsms=self.sendsms, dir=tmp_path)
        for group in KANNEL_MODES[mode]:
            conf += KANNEL_SMSC.format(port=group["port"].format(smpp=smpp_port),
                                       extra=group["extra"].format(smpp=smpp_port))
        self.conf = tmp_path / "kannel.conf"
        self.conf.write_text(conf)
        self.procs: list[subprocess.Popen] = []

    def _spawn(self, exe: str) -> None:
        out = open(self.dir / f"{exe}.out", "wb")
        self.procs.append(subprocess.Popen([self.exe[exe], str(self.conf)], cwd=self.dir, stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True))
        out.close()

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def log_tail(self) -> str:
        tails = []
        for name in ("bearerbox.log", "smsbox.log", "bearerbox.out", "smsbox.out"):
            path = self.dir / name
            if path.exists():
                tails.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-40:]))
        return "\n".join(tails)

    async def start(self, http: aiohttp.ClientSession, timeout: float = 30) -> None:
        """bearerbox with every smsc group bound, then smsbox (which gives up when bearerbox
        is not listening yet) with its sendsms port open."""
        self._spawn("bearerbox")
        status = f"http://127.0.0.1:{self.admin}/status.txt?password=interop"
        await self._until(http, status, lambda text: text.count("(online") == self.groups, timeout)
        self._spawn("smsbox")
        await self._until(http, f"http://127.0.0.1:{self.sendsms}/", lambda text: True, timeout)

    async def _until(self, http: aiohttp.ClientSession, url: str, ok, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                async with http.get(url) as r:
                    if ok(await r.text()):
                        return
            except aiohttp.ClientError:
                pass
            if any(p.poll() is not None for p in self.procs) or asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"Kannel did not come up ({url})\n" + self.log_tail())
            await asyncio.sleep(0.1)


async def dlr_hook() -> tuple[list[dict[str, str]], web.AppRunner, int]:
    """Where Kannel sends its delivery reports (its dlr-url, path /dlr), on a free loopback
    port: the reports as they come (their query), the runner to clean up, and the port."""
    reports: list[dict[str, str]] = []

    async def on_dlr(request: web.Request) -> web.Response:
        # Kannel URL-encodes the bytes of %A: decoded as Latin-1, each character is one byte.
        reports.append({k: v[0] for k, v in urllib.parse.parse_qs(
            request.query_string, keep_blank_values=True, encoding="latin-1").items()})
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/dlr", on_dlr)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return reports, runner, site._server.sockets[0].getsockname()[1]


async def run_kannel(tap: WireTap, tmp_path: Path, mode: str) -> Outcome:
    reports, runner, hook_port = await dlr_hook()
    kannel = Kannel(tap.port, tmp_path, mode)
    outcome = Outcome()
    try:
        async with aiohttp.ClientSession() as http:
            await kannel.start(http)
            for number in NUMBERS:
                # dlr-mask 3: delivered (1) and failed (2), the final states.
                dlr_url = f"http://127.0.0.1:{hook_port}/dlr?ref={number}&type=%d&text=%A&smsc_id=%F"
                query = urllib.parse.urlencode({"username": "interop", "password": "interop", "to": number,
                                                "from": "INTEROP", "text": "hlr", "dlr-mask": "3",
                                                "dlr-url": dlr_url})
                async with http.get(f"http://127.0.0.1:{kannel.sendsms}/cgi-bin/sendsms?{query}") as r:
                    body = await r.text()
                assert r.status == 202 and body.startswith("0: Accepted"), body
            try:
                await wait_until(lambda: len(reports) >= len(NUMBERS), timeout=30,
                                 what="a delivery report for every lookup")
            except AssertionError as err:
                raise AssertionError(f"{err}: got {reports}\n{kannel.log_tail()}") from None
            await asyncio.sleep(0.5)  # a report too many would come now
    finally:
        kannel.stop()
        await runner.cleanup()
    # Kannel's binds on the wire: Tx and Rx, or one TRx, each ESME_ROK.
    binds = {BIND_TRANSMITTER: "tx", BIND_RECEIVER: "rx", BIND_TRANSCEIVER: "trx"}
    bound = sorted(binds[p.command_id & ~RESP] for p in tap.pdus
                   if p.direction == "<" and p.command_id & ~RESP in binds and p.command_id & RESP
                   and p.status == 0)
    assert bound == (["rx", "tx"] if mode == "tx+rx" else ["trx"])
    for report in reports:
        number = report["ref"]
        outcome.ids[number] = report["smsc_id"]
        outcome.receipt(number, report["smsc_id"], report["text"].encode("latin-1"),
                        STAT_OF_KANNEL_DLR[int(report["type"])])
    return outcome


# ------------------------------------------------------------------ npm smpp (node)
async def run_node(tap: WireTap, tmp_path: Path) -> Outcome:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "smpp").is_dir():
        pytest.fail("node or the npm smpp package is missing: run `make test` (it runs npm ci in "
                    "tests/interop/node)", pytrace=False)
    installed = json.loads((NODE_DIR / "node_modules" / "smpp" / "package.json").read_text())["version"]
    assert installed == "0.5.1", installed  # the version package-lock.json and docs/smpp.md name
    proc = await asyncio.create_subprocess_exec(
        node, str(NODE_DIR / "lookup.js"), str(tap.port), "demo", "demo", *NUMBERS,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    result = json.loads(out.decode().splitlines()[0]) if out.strip() else {"error": err.decode()}
    assert result["error"] is None, (result, err.decode()[-2000:])
    # The library's default bind: it announces SMPP 5.0 and is told 3.4.
    [bind] = tap.find(">", BIND_TRANSCEIVER)
    assert bind.raw[16:].split(b"\0", 3)[3][0] == 0x50
    [resp] = tap.find("<", BIND_TRANSCEIVER | RESP)
    assert resp.status == 0 and bind_resp_tlvs(resp.raw) == [(0x0210, b"\x34")]
    assert result["bind"] == {"command_status": 0, "system_id": "hlrsmpp", "sc_interface_version": 0x34}
    assert result["unmatched"] == []
    outcome = Outcome()
    for submit in result["submits"]:
        assert submit["command_status"] == 0, submit
        outcome.ids[submit["number"]] = submit["message_id"]
    for receipt in result["receipts"]:
        assert (receipt["data_coding"], receipt["esm_class"]) == (3, 4)
        outcome.receipt(receipt["number"], receipt["receipted_message_id"], receipt["text"].encode("latin-1"),
                        STAT_OF_STATE[receipt["message_state"]])
    return outcome


# ------------------------------------------------------------------------ Python
async def run_smpplib(tap: WireTap, tmp_path: Path) -> Outcome:
    def run() -> Outcome:
        esme = SmpplibEsme(tap.port)
        try:
            assert esme.bind("transceiver").status == 0
            sequences = {esme.submit(number): number for number in NUMBERS}
            esme.pump(lambda: all(s in esme.resps for s in sequences) and len(esme.receipts) >= len(NUMBERS),
                      timeout=20)
            outcome = Outcome()
            for seq, number in sequences.items():
                assert esme.resps[seq].status == 0
                outcome.ids[number] = esme.resps[seq].message_id.decode()
            by_id = {mid: number for number, mid in outcome.ids.items()}
            for pdu in esme.receipts:
                mid = pdu.receipted_message_id.decode()
                outcome.receipt(by_id[mid], mid, pdu.short_message, STAT_OF_STATE[pdu.message_state])
            return outcome
        finally:
            esme.close()

    return await asyncio.to_thread(run)


async def run_aiosmpplib(tap: WireTap, tmp_path: Path) -> Outcome:
    esme = await AioEsme(tap.port).start()
    try:
        for number in NUMBERS:
            await esme.submit(number, log_id=number)
        await wait_until(lambda: len(esme.resps) == len(NUMBERS) and len(esme.receipts) >= len(NUMBERS),
                         timeout=20, what="every submit_sm_resp and receipt")
        outcome = Outcome()
        for resp in esme.resps:
            assert resp.command_status == 0
            outcome.ids[resp.log_id] = resp.message_id
        by_id = {mid: number for number, mid in outcome.ids.items()}
        for dlr in esme.receipts:
            mid = opt(dlr, 0x001E)
            # aiosmpplib decodes the text per data_coding (3, Latin-1): one character per byte.
            outcome.receipt(by_id[mid], mid, dlr.short_message.encode("latin-1"), STAT_OF_STATE[opt(dlr, 0x0427)])
        return outcome
    finally:
        await esme.close()


async def run_smpp34(tap: WireTap, tmp_path: Path) -> Outcome:
    esme = await Smpp34Esme.bind(tap.port, "TRX")
    try:
        outcome = Outcome()
        for number in NUMBERS:
            resp = await esme.submit(number)
            assert resp.command_status == 0
            outcome.ids[number] = resp.message_id
        await wait_until(lambda: len(esme.receipts) >= len(NUMBERS), timeout=20, what="every receipt")
        by_id = {mid: number for number, mid in outcome.ids.items()}
        for ev in esme.receipts:
            mid = tlv(ev, smpp34.TLV_RECEIPTED_MESSAGE_ID).as_string()
            outcome.receipt(by_id[mid], mid, ev.short_message, STAT_OF_STATE[tlv(ev, smpp34.TLV_MESSAGE_STATE).as_int()])
        return outcome
    finally:
        await esme.close()


CLIENTS = {
    "kannel-tx+rx": lambda tap, tmp_path: run_kannel(tap, tmp_path, "tx+rx"),
    "kannel-trx": lambda tap, tmp_path: run_kannel(tap, tmp_path, "trx"),
    "npm-smpp": run_node,
    "smpplib": run_smpplib,
    "aiosmpplib": run_aiosmpplib,
    "smpp34": run_smpp34,
}


@pytest.mark.parametrize("client", list(CLIENTS))
async def test_client_reads_every_receipt(hlr_server, tmp_path, client):
    async with WireTap(hlr_server.smpp_port) as tap:
        outcome = await CLIENTS[client](tap, tmp_path)
    check(outcome, tap)
