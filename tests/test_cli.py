"""``hlrsmpp lookup`` end to end against a real server, the tolerant receipt parser, and
the friendly errors every tool command gives (one line on stderr, no traceback)."""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port
from esme import SmpplibEsme
from hlrsmpp.tools.esme import Receipt, id_keys, parse_receipt_text

ROOT = Path(__file__).resolve().parent.parent
SANDBOX = "4477009000"          # hlr sandbox numbers: 4477009000<err> answer that err
REACHABLE, ABSENT, UNKNOWN, PORTED_ROAMING = (SANDBOX + "00", SANDBOX + "11", SANDBOX + "12",
                                              SANDBOX + "32")


def hlrsmpp(*argv, cwd=None, env=None, timeout=120, input=None) -> subprocess.CompletedProcess:
    """``python -m hlrsmpp ARGV`` as a user runs it."""
    full_env = dict(os.environ, **(env or {}))
    full_env.pop("HLRSMPP_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "hlrsmpp", *map(str, argv)], cwd=cwd or ROOT,
                          env=full_env, capture_output=True, text=True, timeout=timeout, input=input)


def assert_friendly(proc: subprocess.CompletedProcess, *words: str, code: int | None = None) -> str:
    """Failed with ONE line on stderr naming ``words``, and no traceback."""
    assert proc.returncode != 0, proc.stdout
    if code is not None:
        assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------ lookup

def json_lines(text: str) -> list[dict]:
    lines = text.splitlines()
    assert lines and all(line.startswith("{") and line.endswith("}") for line in lines), text
    return [json.loads(line) for line in lines]


def test_lookup_table(server):
    p = hlrsmpp("lookup", REACHABLE, "+" + ABSENT, PORTED_ROAMING, "--port", server.smpp_port)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["NUMBER", "ID", "STAT", "ERR", "CC", "NNC", "PORTED", "ROAMING"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {REACHABLE, "+" + ABSENT, PORTED_ROAMING}
    assert rows[REACHABLE].split()[2:] == ["DELIVRD", "000", "44", "23410", "no", "no"]
    assert rows["+" + ABSENT].split()[2:] == ["UNDELIV", "011", "ABSENT_SUBSCRIBER", "44", "23410",
                                              "no", "no"]
    assert rows[PORTED_ROAMING].split()[2:] == ["DELIVRD", "000", "44", "23410", "yes", "23415",
                                                "yes", "33/20801"]
    # The ids printed are the server's: the history has each lookup under its id.
    for number, line in rows.items():
        row = server.server.store.lookup(int(line.split()[1]))
        assert row["msisdn"] == number.lstrip("+") and row["system_id"] == "demo"


def test_lookup_json_matches_history(server):
    p = hlrsmpp("lookup", REACHABLE, UNKNOWN, PORTED_ROAMING, "--json", "--port", server.smpp_port)
    assert p.returncode == 0, p.stderr
    out = json_lines(p.stdout)   # one object a line, for pipes (jq, grep)
    assert [r["number"] for r in out] == [REACHABLE, UNKNOWN, PORTED_ROAMING]
    for r in out:
        assert r["status"] == "ESME_ROK" and r["message_id"] == r["id"]
        row = server.server.store.lookup(int(r["id"]))
        assert (r["err"], r["cc"], r["nnc"], r["ported"], r["p_nnc"], r["roaming"], r["r_cc"], r["r_nnc"]) == (
            row["err"], row["cc"], row["nnc"], bool(row["ported"]), row["p_nnc"], bool(row["roaming"]),
            row["r_cc"], row["r_nnc"])
        assert r["text"].startswith(f"id:{r['id']} sub:001 dlvrd:001 submit date:")
    assert out[1]["err"] == 12 and out[1]["err_name"] == "UNKNOWN_SUBSCRIBER" and out[1]["stat"] == "UNDELIV"
    assert out[2]["ported"] is True and out[2]["p_nnc"] == "23415" and out[2]["r_nnc"] == "20801"


def test_lookup_refused_number_named(server):
    p = hlrsmpp("lookup", "12", REACHABLE, "--port", server.smpp_port)
    assert p.returncode == 1   # one number refused: the others still printed
    lines = p.stdout.splitlines()
    assert lines[1].split() == ["12", "ESME_RINVDSTADR"]
    assert lines[2].split()[0] == REACHABLE and "DELIVRD" in lines[2]


def test_lookup_of_a_national_number_says_to_give_the_country_code(server):
    p = hlrsmpp("lookup", "0612345678", "0033612345678", "--port", server.smpp_port)
    assert p.returncode == 1
    assert [line.split()[1] for line in p.stdout.splitlines()[1:]] == ["ESME_RINVDSTADR"] * 2
    assert p.stderr.splitlines() == [
        "hint: 0612345678: not an international number: give the country code instead of the "
        "leading 0, e.g. 33612345678 for France",
        "hint: 0033612345678: drop the international prefix 00: 33612345678"]


def test_lookup_numbers_from_stdin(server):
    p = hlrsmpp("lookup", "-", "--json", "--port", server.smpp_port, input=f"{REACHABLE}\n\n{ABSENT}\n")
    assert p.returncode == 0, p.stderr
    assert [r["err"] for r in json_lines(p.stdout)] == [0, 11]


def test_lookup_other_account_and_credit(make_server):
    srv = make_server([{"system_id": "acme", "password": "s3cret", "credit": 1, "price": 0.25}])
    p = hlrsmpp("lookup", REACHABLE, "--system-id", "acme", "--password", "s3cret", "--port", srv.smpp_port)
    assert p.returncode == 0, p.stderr
    assert srv.server.book.get("acme").credit == 750_000


def test_lookup_bad_credentials(make_server):
    srv = make_server([{"system_id": "acme", "password": "s3cret"}])
    p = hlrsmpp("lookup", REACHABLE, "--system-id", "acme", "--password", "wrong", "--port", srv.smpp_port)
    assert_friendly(p, "ESME_RINVPASWD", "wrong password", code=2)
    p = hlrsmpp("lookup", REACHABLE, "--system-id", "nobody", "--password", "x", "--port", srv.smpp_port)
    assert_friendly(p, "ESME_RINVSYSID", code=2)
    p = hlrsmpp("lookup", REACHABLE, "--system-id", "acme", "--password", "s3cret",
                "--system-type", "OTHER", "--port", srv.smpp_port)
    assert_friendly(p, "ESME_RINVSYSTYP", code=2)
    p = hlrsmpp("lookup", REACHABLE, "--password", "much-too-long", "--port", srv.smpp_port)
    assert_friendly(p, "password longer than 8", code=2)


def test_lookup_receiver_already_bound(server):
    esme = SmpplibEsme(server.smpp_port)
    esme.bind("receiver")
    try:
        p = hlrsmpp("lookup", REACHABLE, "--port", server.smpp_port)
        assert_friendly(p, "ESME_RBINDFAIL", "receiving session", code=2)
    finally:
        esme.close()


@pytest.mark.e2e
def test_lookup_unreachable_server():
    p = hlrsmpp("lookup", REACHABLE, "--port", free_port(), "--connect-timeout", "3")
    assert_friendly(p, "cannot connect to SMPP server 127.0.0.1:", code=2)


def test_lookup_leaves_other_receipts_queued(server):
    """Receipts of lookups the command did not submit (a Tx-only ESME's) are answered
    ESME_RX_T_APPN: the server keeps them for the account's own receiver."""
    tx = SmpplibEsme(server.smpp_port)
    tx.bind("transmitter")
    seq = tx.submit(UNKNOWN)
    tx.pump(lambda: seq in tx.resps)
    theirs = int(tx.resps[seq].message_id)
    tx.close()
    p = hlrsmpp("lookup", REACHABLE, "--json", "--port", server.smpp_port)
    assert p.returncode == 0, p.stderr
    server.persist()
    assert server.server.store.lookup(theirs)["pending"] == 1            # still owed
    ours = int(json_lines(p.stdout)[0]["id"])
    assert server.server.store.lookup(ours)["pending"] == 0              # acknowledged


# ------------------------------------------------------------------ receipts, tolerantly

AMS_SAMPLE = ("id:6002 sub:001 dlvrd:001 submit date:1507140141 done date:1507140142 stat:DELIVRD "
              "err:000 cc:91 nnc:40493 isPorted:false p_nnc: isRoaming:false r_cc: r_nnc: text:dlr")


def test_parse_the_ams_hlr_sample_receipt():
    f = parse_receipt_text(AMS_SAMPLE)
    assert f == {"id": "6002", "sub": "001", "dlvrd": "001", "submit date": "1507140141",
                 "done date": "1507140142", "stat": "DELIVRD", "err": "000", "cc": "91",
                 "nnc": "40493", "isPorted": "false", "p_nnc": "", "isRoaming": "false", "r_cc": "",
                 "r_nnc": "", "text": "dlr"}
    d = Receipt("919589123456", AMS_SAMPLE, f).as_dict()
    assert (d["id"], d["stat"], d["err"], d["cc"], d["nnc"], d["ported"], d["roaming"]) == (
        "6002", "DELIVRD", 0, "91", "40493", False, False)


def test_parse_other_providers_receipts():
    # Extra keys kept, keys in another case, yes/no flags, a text with colons and spaces.
    text = ("id:0A1B sub:001 dlvrd:000 submit date:2401011200 done date:2401011201 stat:UNDELIV "
            "err:011 mccmnc:20801 imsi:208011234567890 msc:33609000000 IsPorted:Yes p_nnc:20810 "
            "isRoaming:no Text:HLR: absent subscriber")
    f = parse_receipt_text(text)
    d = Receipt("33612345678", text, f).as_dict()
    assert d["err"] == 11 and d["err_name"] == "ABSENT_SUBSCRIBER" and d["stat"] == "UNDELIV"
    assert d["ported"] is True and d["p_nnc"] == "20810" and d["roaming"] is False
    assert d["extra"] == {"mccmnc": "20801", "imsi": "208011234567890", "msc": "33609000000"}
    assert f["Text"] == "HLR: absent subscriber"
    # No err key: the network_error_code TLV, else the stat, says what happened.
    assert Receipt("1", "id:5 stat:UNDELIV", parse_receipt_text("id:5 stat:UNDELIV"),
                   network_error=12).err == 12
    assert Receipt("1", "id:5 stat:DELIVRD", parse_receipt_text("id:5 stat:DELIVRD")).err == 0
    assert Receipt("1", "", {}, tlv_id="77", message_state=5).as_dict()["stat"] == "UNDELIV"
    assert parse_receipt_text("garbage without keys") == {}


def test_id_spellings():
    assert "ff" in id_keys("255") and "255" in id_keys("FF") and "7" in id_keys("007")


# ------------------------------------------------------------------ another provider

class OtherHlr:
    """A different SMPP HLR provider, in the ways real providers differ: hex message ids in
    submit_sm_resp and the same id in decimal in a receipt sent BEFORE the response,
    extra keys, data_coding 0, and some numbers (ending in 9) that never get a receipt."""

    def __init__(self):
        import asyncio
        import threading
        self.loop = asyncio.new_event_loop()
        self.port = free_port()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _run(self, ready):
        import asyncio
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(asyncio.start_server(self._session, "127.0.0.1", self.port))
        ready.set()
        self.loop.run_forever()

    async def _session(self, reader, writer):
        from hlrsmpp.smpp.codec import Command, Pdu, decode, encode
        n = 0xA0
        try:
            while True:
                head = await reader.readexactly(4)
                pdu = decode(head + await reader.readexactly(int.from_bytes(head, "big") - 4))
                cmd, seq = pdu.command, pdu.sequence
                if cmd == Command.BIND_TRANSCEIVER:
                    writer.write(encode(Pdu(Command.BIND_TRANSCEIVER_RESP, seq, 0, {"system_id": "OTHER"})))
                elif cmd == Command.SUBMIT_SM:
                    n += 1
                    dest = pdu["destination_addr"]
                    if not dest.endswith("9"):
                        text = (f"id:{n} sub:001 dlvrd:001 submit date:2401011200 done date:2401011200 "
                                f"stat:DELIVRD err:000 mccmnc:20801 imsi:208011234567890 Text:ok").encode()
                        writer.write(encode(Pdu(Command.DELIVER_SM, 1000 + n, 0, {
                            "source_addr": "HLR", "destination_addr": dest, "esm_class": 4,
                            "short_message": text})))
                    writer.write(encode(Pdu(Command.SUBMIT_SM_RESP, seq, 0, {"message_id": format(n, "X")})))
                elif cmd == Command.UNBIND:
                    writer.write(encode(Pdu(Command.UNBIND_RESP, seq)))
                    await writer.drain()
                    break
                elif cmd == Command.ENQUIRE_LINK:
                    writer.write(encode(Pdu(Command.ENQUIRE_LINK_RESP, seq)))
                await writer.drain()
        except Exception:
            pass
        writer.close()

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.mark.e2e
def test_lookup_against_another_provider():
    other = OtherHlr()
    try:
        p = hlrsmpp("lookup", "33612345670", "33612345679", "--port", other.port, "--system-id", "x",
                    "--password", "y", "--timeout", "1", "--json")
    finally:
        other.stop()
    assert p.returncode == 1, p.stderr   # one number got no receipt
    first, second = json_lines(p.stdout)
    assert first["message_id"] == "A1" and first["id"] == "161" and first["stat"] == "DELIVRD"
    assert first["err"] == 0 and first["extra"] == {"mccmnc": "20801", "imsi": "208011234567890"}
    assert second["message_id"] == "A2" and second["stat"] == "NO_RECEIPT"


# ------------------------------------------------------------------ serve

@pytest.mark.e2e   # hlrsmpp serve processes
@pytest.mark.parametrize("busy", ["smpp", "http"])
def test_serve_on_a_busy_port_is_one_line_and_exit_2(tmp_path, busy):
    conf = tmp_path / "hlrsmpp.yaml"
    conf.write_text(f"smpp: {{host: 127.0.0.1}}\nhttp: {{host: 127.0.0.1}}\nstorage: {{path: {tmp_path / 'data'}}}\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"smpp": port if busy == "smpp" else 0, "http": port if busy == "http" else 0}
        p = hlrsmpp("serve", "--config", conf, "--smpp-port", ports["smpp"], "--http-port", ports["http"],
                    cwd=tmp_path, env={"HLRSMPP_LOG_FORMAT": "json"}, timeout=60)
    assert p.returncode == 2, p.stderr
    failed = [json.loads(line) for line in p.stderr.splitlines() if '"start_failed"' in line]
    assert [e["error"] for e in failed] == [f"{busy}: cannot listen on 127.0.0.1:{port}: address "
                                            f"already in use (set {busy}.port or --{busy}-port)"]
    assert "Traceback" not in p.stderr


def _parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_every_help_page_shows_the_defaults():
    from hlrsmpp.cli import build_parser
    shown = 0
    for parser in _parsers(build_parser()):
        for action in parser._actions:
            if (not action.option_strings or action.help == argparse.SUPPRESS
                    or action.default in (None, False, argparse.SUPPRESS)):
                continue
            text = parser._get_formatter()._format_action(action)
            assert "default" in text and str(action.default) in " ".join(text.split()), (
                parser.prog, action.option_strings, text)
            shown += 1
    assert shown > 25
    p = hlrsmpp("lookup", "--help")
    assert p.returncode == 0 and "default: demo" in p.stdout and "default: 10.0" in p.stdout
