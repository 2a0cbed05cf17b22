"""SIGHUP reloads the HLR rules and data files without dropping sessions."""
from __future__ import annotations

import signal
import time

import yaml

from conftest import ServerProcess, free_port
from esme import RECEIPT_RE, SmpplibEsme

NUMBER = "447912345678"


def _receipt(esme: SmpplibEsme, number: str):
    before = len(esme.receipts)
    seq = esme.submit(number)
    esme.pump(lambda: seq in esme.resps and len(esme.receipts) > before)
    m = RECEIPT_RE.match(esme.receipts[-1].short_message.decode())
    assert m and m["id"] == esme.resps[seq].message_id.decode()
    return m


def test_sighup_reloads_portability_keeping_sessions(tmp_path):
    ported = tmp_path / "ported.txt"
    ported.write_text("# prefix;mccmnc\n")
    cfg = {"smpp": {"host": "127.0.0.1"}, "http": {"host": "127.0.0.1"},
           "storage": {"path": str(tmp_path / "data")}, "log": {"format": "json", "level": "info"},
           "hlr": {"portability": "ported.txt", "mix": {"reachable": 100, "ported": 0, "roaming": 0}},
           "accounts": [{"system_id": "a", "password": "p"}]}
    (tmp_path / "hlrsmpp.yaml").write_text(yaml.safe_dump(cfg))
    proc = ServerProcess(tmp_path / "hlrsmpp.yaml", free_port(), free_port()).start()
    try:
        esme = SmpplibEsme(proc.smpp_port)
        esme.bind(system_id="a", password="p")
        first = _receipt(esme, NUMBER)
        assert first["ported"] == "false" and first["p_nnc"] == ""
        target = "23415" if first["nnc"] != "23415" else "23420"
        ported.write_text(f"{NUMBER};{target}\n")
        proc.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while '"reloaded"' not in proc.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert '"reloaded"' in proc.output()
        again = _receipt(esme, NUMBER)  # the same session, still bound
        assert again["ported"] == "true" and again["p_nnc"] == target and again["nnc"] == first["nnc"]
        esme.close()
    finally:
        assert proc.terminate() == 0
