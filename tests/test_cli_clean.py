"""``hlrsmpp clean`` end to end: CSV (other columns kept) and text files, free and premium
(against a real server: charged per contact, in the history), the original kept, exact
report counts, friendly errors, and a 1,000,000-line file."""
from __future__ import annotations

import asyncio
import csv
import json
import random
import time
from pathlib import Path

import pytest
import yaml

from conftest import free_port
from contacts import FREE_COUNTS, FREE_CSV
from test_cli import assert_friendly, hlrsmpp
from hlrsmpp.cleaning import CleanJob, EngineChecker, IntSet

# HLR outcomes by prefix on the test servers (rules win over the numbering plan and mix).
RULES = {"rules": [{"prefix": "4479110", "err": 0}, {"prefix": "4479111", "err": "absent"},
                   {"prefix": "4479112", "err": "unknown"}]}
OK1, OK2, ABSENT, UNKNOWN = "447911000001", "447911000002", "447911100001", "447911200001"
BARRED, BUSY, TIMEOUT, PORTED = "447700900019", "447700900023", "447700900014", "447700900030"


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".orig-*"))


def reports(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".report-*.json"))


def read_csv(path: Path, delimiter=",") -> list[list[str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.reader(f, delimiter=delimiter))


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------ free

def test_a_second_clean_in_the_same_second_keeps_the_first_report(tmp_path):
    src = tmp_path / "contacts.csv"
    src.write_text(FREE_CSV)
    # Reports of earlier runs for every second this one may start in: none is overwritten.
    now = time.time()
    earlier = {src.with_name(f"contacts.csv.report-{time.strftime('%Y%m%d%H%M%S', time.localtime(now + d))}.json")
               for d in range(-1, 4)}
    for path in earlier:
        path.write_text("earlier")
    p = hlrsmpp("clean", src, "--json")
    assert p.returncode == 0, p.stderr
    assert all(path.read_text() == "earlier" for path in earlier)
    report = Path(json.loads(p.stdout)["report"])
    assert report not in earlier and report.name.endswith("-1.json") and json.loads(report.read_text())


def test_free_csv_keeps_other_columns(tmp_path):
    src = tmp_path / "contacts.csv"
    original = FREE_CSV
    src.write_text(original)
    p = hlrsmpp("clean", src, "--json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["counts"] == FREE_COUNTS
    assert report["status"] == "done" and report["mode"] == "free" and report["format"] == "csv"
    assert report["delimiter"] == ";"
    assert read_csv(src, ";") == [["id", "name", "numbers", "city"],
                                  ["1", "Alice", "447911000001", "London; UK"],
                                  ["3", 'Carol "C" Smith', "33612345678", "Paris"],
                                  ["6", "Frank", "12025550143", "Washington"]]
    # The original is kept beside it, byte for byte; the report is written beside it too.
    [orig] = backups(src)
    assert orig.read_text() == original and report["original"] == str(orig)
    [rep] = reports(src)
    assert json.loads(rep.read_text()) == report and report["report"] == str(rep)
    assert no_temp_files(tmp_path)


def test_free_text_file_styles_and_line_endings(tmp_path):
    src = tmp_path / "numbers.txt"
    src.write_bytes(b"+447911000001\r\n447911000002\r\n\r\n  0044 7911 000001 \r\nabc\r\n447911000003")
    p = hlrsmpp("clean", src, "--style", "plus")
    assert p.returncode == 0, p.stderr
    assert src.read_bytes() == b"+447911000001\r\n+447911000002\r\n+447911000003\r\n"
    assert "rows                     6" in p.stdout and "kept                     3" in p.stdout
    [orig] = backups(src)
    assert orig.read_bytes().startswith(b"+447911000001\r\n447911000002")
    # keep: the lines as written, only the removed ones gone
    src.write_text("+44 7911 000001\n447911000001\n0044-7911-000002\n")
    p = hlrsmpp("clean", src, "--style", "keep", "--json")
    assert p.returncode == 0, p.stderr
    assert src.read_text() == "+44 7911 000001\n0044-7911-000002\n"
    assert len(backups(src)) == 2   # every run keeps its own original


def test_free_tab_csv_with_bom_to_output(tmp_path):
    src = tmp_path / "export.tsv"
    original = "\ufeffNumbers\tnote\n447911000001\tfirst\n447911000001\tagain\n"
    src.write_text(original, encoding="utf-8")
    out = tmp_path / "clean.tsv"
    p = hlrsmpp("clean", src, "--output", out, "--json")
    assert p.returncode == 0, p.stderr
    assert src.read_text(encoding="utf-8") == original and not backups(src)   # left alone
    assert out.read_text(encoding="utf-8") == "\ufeffNumbers\tnote\n447911000001\tfirst\n"
    assert json.loads(p.stdout)["counts"]["duplicates"] == 1


def test_free_single_column_csv_and_given_delimiter(tmp_path):
    src = tmp_path / "list.csv"
    src.write_text("numbers\n447911000001\n447911000002\n447911000001\n")
    assert hlrsmpp("clean", src).returncode == 0
    assert src.read_text() == "numbers\n447911000001\n447911000002\n"
    src.write_text("a|numbers\nx|447911000001\ny|4479\n")
    p = hlrsmpp("clean", src, "--delimiter", "|", "--json")
    assert p.returncode == 0, p.stderr
    assert src.read_text() == "a|numbers\nx|447911000001\n"


def test_latin1_file(tmp_path):
    src = tmp_path / "c.csv"
    src.write_bytes("nom,numbers\nJos\xe9,447911000001\n".encode("latin-1"))
    assert_friendly(hlrsmpp("clean", src), "not utf-8 text", "--encoding", code=2)
    p = hlrsmpp("clean", src, "--encoding", "latin-1")
    assert p.returncode == 0, p.stderr
    assert src.read_bytes() == "nom,numbers\nJos\xe9,447911000001\n".encode("latin-1")


@pytest.mark.slow
def test_friendly_file_errors(tmp_path):
    assert_friendly(hlrsmpp("clean", tmp_path / "missing.csv"), "missing.csv: no such file", code=2)
    assert_friendly(hlrsmpp("clean", tmp_path), "is a directory", code=2)
    src = tmp_path / "contacts.csv"
    src.write_text("name,phone\nAlice,447911000001\n")
    line = assert_friendly(hlrsmpp("clean", src), "no 'numbers' column", "'phone'", code=2)
    assert "contacts.csv" in line
    assert src.read_text() == "name,phone\nAlice,447911000001\n" and not backups(src)
    notes = tmp_path / "notes.txt"
    notes.write_text("Dear customer,\nhello\n")
    assert_friendly(hlrsmpp("clean", notes), "neither a CSV with a 'numbers' column nor one number a line")
    blob = tmp_path / "blob.txt"
    blob.write_bytes(b"\x00\x01\x02binary")
    assert_friendly(hlrsmpp("clean", blob), "binary data")
    assert no_temp_files(tmp_path)


def test_intset_matches_set():
    rng = random.Random(7)
    s, ref = IntSet(capacity=8), set()
    for _ in range(50_000):
        x = rng.choice((rng.randrange(10**15), 447911000000 + rng.randrange(3000), rng.randrange(64) << 40))
        assert s.add(x) == (x not in ref)
        ref.add(x)
    assert len(s) == len(ref)


# ------------------------------------------------------------------ premium

PREMIUM_CSV = ("id,name,numbers,email\n"
               f"1,ok one,{OK1},a@x\n"
               f"2,absent,+{ABSENT},b@x\n"
               f"3,unknown,{UNKNOWN},c@x\n"
               f"4,dup of one,+44 7911 000001,d@x\n"
               "5,short,12345,e@x\n"
               "6,none,,f@x\n"
               f"7,barred,{BARRED},g@x\n"
               f"8,busy,{BUSY},h@x\n"
               f"9,hlr timeout,{TIMEOUT},i@x\n"
               f"10,ported,{PORTED},j@x\n"
               f"11,ok two,{OK2},k@x\n")
LOOKED_UP = [OK1, ABSENT, UNKNOWN, BARRED, BUSY, TIMEOUT, PORTED, OK2]


@pytest.fixture
def shop(make_server):
    return make_server([{"system_id": "shop", "password": "pw", "credit": 10, "price": 0.1}], hlr=RULES)


def test_premium_csv_charged_per_contact(shop, tmp_path):
    src = tmp_path / "contacts.csv"
    src.write_text(PREMIUM_CSV)
    p = hlrsmpp("clean", src, "--premium", "--account", "shop", "--password", "pw",
                "--port", shop.smpp_port, "--json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["counts"] == {"total": 11, "empty": 1, "invalid_syntax": 1, "duplicates": 1,
                                "looked_up": 8, "no_receipt": 0, "dropped_hlr": 2, "kept": 6, "removed": 5}
    assert {k: (v["count"], v["kept"]) for k, v in report["err"].items()} == {
        "000": (3, True), "011": (1, True), "012": (1, False), "014": (1, True), "019": (1, False),
        "023": (1, True)}
    assert report["account"] == "shop" and report["mode"] == "premium" and report["refused"] == {}
    rows = read_csv(src)
    assert rows[0] == ["id", "name", "numbers", "email"]
    assert [r[0] for r in rows[1:]] == ["1", "2", "8", "9", "10", "11"]   # input order kept
    assert rows[2] == ["2", "absent", ABSENT, "b@x"]
    [orig] = backups(src)
    assert orig.read_text() == PREMIUM_CSV
    # Charged exactly per contact looked up, like any lookup (the server refunds its own
    # HLR failure, err 014), and each lookup is in the account's history.
    shop.persist()
    history = shop.server.store.history("shop")
    assert sorted(r["msisdn"] for r in history) == sorted(LOOKED_UP)
    assert {r["msisdn"]: r["cost"] for r in history} == {n: 0 if n == TIMEOUT else 100_000 for n in LOOKED_UP}
    assert shop.server.book.get("shop").credit == 10_000_000 - 7 * 100_000


def test_premium_text_drop_absent_with_config(shop, tmp_path):
    conf = tmp_path / "hlrsmpp.yaml"
    conf.write_text(yaml.safe_dump({"smpp": {"host": "0.0.0.0", "port": shop.smpp_port},
                                    "accounts": [{"system_id": "shop", "password": "pw"}]}))
    src = tmp_path / "numbers.txt"
    src.write_text(f"{OK1}\n{ABSENT}\n{UNKNOWN}\n{OK1}\n")
    p = hlrsmpp("clean", src, "--premium", "--account", "shop", "--config", conf, "--drop-absent")
    assert p.returncode == 0, p.stderr
    assert src.read_text() == f"{OK1}\n"
    assert "looked up                3  (charged to shop)" in p.stdout
    assert "err 011 ABSENT_SUBSCRIBER" in p.stdout and "removed" in p.stdout
    shop.persist()
    assert shop.server.book.get("shop").credit == 10_000_000 - 3 * 100_000


def test_premium_insufficient_credit_leaves_file(make_server, tmp_path):
    srv = make_server([{"system_id": "poor", "password": "pw", "credit": 0.25, "price": 0.1}], hlr=RULES)
    src = tmp_path / "numbers.txt"
    text = "".join(f"4479110{i:05d}\n" for i in range(10))
    src.write_text(text)
    p = hlrsmpp("clean", src, "--premium", "--account", "poor", "--password", "pw", "--port", srv.smpp_port)
    assert_friendly(p, "ESME_RINSBAL", "insufficient credit", "file was not changed", code=1)
    assert src.read_text() == text and not backups(src) and no_temp_files(tmp_path)
    [rep] = reports(src)
    assert json.loads(rep.read_text())["status"] == "failed"
    srv.persist()
    assert len(srv.server.store.history("poor")) == 2   # what was charged is in the history


@pytest.mark.slow
def test_premium_friendly_errors(shop, tmp_path):
    src = tmp_path / "numbers.txt"
    src.write_text(f"{OK1}\n")
    p = hlrsmpp("clean", src, "--premium", "--account", "shop", "--password", "bad", "--port", shop.smpp_port)
    assert_friendly(p, "ESME_RINVPASWD", code=2)
    p = hlrsmpp("clean", src, "--premium", "--account", "shop", "--password", "pw", "--port", free_port())
    assert_friendly(p, "cannot connect to SMPP server", code=2)
    assert_friendly(hlrsmpp("clean", src, "--premium", "--password", "pw"), "needs --account")
    assert_friendly(hlrsmpp("clean", src, "--premium", "--account", "shop"), "password")
    assert src.read_text() == f"{OK1}\n" and not backups(src)
    bad = tmp_path / "bad.csv"
    bad.write_text("phone\n1\n")
    p = hlrsmpp("clean", bad, "--premium", "--account", "shop", "--password", "pw", "--port", shop.smpp_port)
    assert_friendly(p, "no 'numbers' column")
    assert shop.server.store.history("shop") == []   # nothing looked up for a bad file


def test_engine_checker_in_the_server(shop, tmp_path):
    """The HTTP job's path: CleanJob on the server's loop with its own engine."""
    src = tmp_path / "contacts.csv"
    src.write_text(PREMIUM_CSV)
    out = tmp_path / "cleaned.csv"

    async def job():
        checker = EngineChecker(shop.server, "shop")
        try:
            return await CleanJob(src, shop.server.resolver, checker=checker, output=out,
                                  info={"account": "shop"}).run()
        finally:
            await checker.close()

    report = asyncio.run_coroutine_threadsafe(job(), shop.loop).result(60)
    assert report["counts"]["looked_up"] == 8 and report["counts"]["kept"] == 6
    assert [r[0] for r in read_csv(out)[1:]] == ["1", "2", "8", "9", "10", "11"]
    assert src.read_text() == PREMIUM_CSV
    history = shop.server.store.history("shop")
    assert sorted(r["msisdn"] for r in history) == sorted(LOOKED_UP)
    assert {r["channel"] for r in history} == {"http"}
    assert shop.server.book.get("shop").credit == 10_000_000 - 7 * 100_000


# ------------------------------------------------------------------ a million lines

def million_line_file(path: Path) -> dict:
    """1,000,000 rows: 850,000 distinct numbers (in three spellings), 100,000 duplicates
    (10%) and 50,000 impossible numbers (5%), shuffled."""
    rng = random.Random(2026)
    spell = ("{}", "+{}", "00{}")
    rows = [spell[i % 3].format(f"4479{i:08d}") for i in range(850_000)]
    rows += [spell[(i + 1) % 3].format(f"4479{rng.randrange(850_000):08d}") for i in range(100_000)]
    rows += [f"4479{i % 1000:03d}" for i in range(50_000)]
    rng.shuffle(rows)
    with open(path, "w") as f:
        f.write("id,numbers,name\n")
        for i, n in enumerate(rows):
            f.write(f"{i},{n},contact {i}\n")
    return {"total": 1_000_000, "duplicates": 100_000, "invalid_syntax": 50_000, "kept": 850_000}


@pytest.mark.slow
def test_million_lines_exact_counts(tmp_path):
    src = tmp_path / "big.csv"
    want = million_line_file(src)
    t0 = time.monotonic()
    p = hlrsmpp("clean", src, "--json", timeout=600)
    elapsed = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert {k: report["counts"][k] for k in want} == want
    assert report["counts"]["removed"] == 150_000
    with open(src) as f:
        assert sum(1 for _ in f) == 850_001
    print(f"\n1,000,000 lines: {elapsed:.1f}s wall, job {report['duration_s']}s, "
          f"peak RSS {report['peak_rss_mb']} MB")
    assert report["peak_rss_mb"] < 120


def test_interrupted_premium_leaves_everything(shop, tmp_path):
    """Ctrl-C while lookups are in flight: the original stays, nothing half written."""
    import os
    import signal
    import subprocess
    import sys
    src = tmp_path / "numbers.txt"
    text = f"{OK1}\n447700900040\n{OK2}\n"     # 447700900040 answers after 5 s
    src.write_text(text)
    proc = subprocess.Popen([sys.executable, "-m", "hlrsmpp", "clean", str(src), "--premium", "--account",
                             "shop", "--password", "pw", "--port", str(shop.smpp_port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items() if k != "HLRSMPP_DEBUG"})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(shop.server.store.history("shop")) < 2:
        time.sleep(0.05)
        shop.persist()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert err.strip() == "hlrsmpp clean: interrupted"
    assert src.read_text() == text and not backups(src) and no_temp_files(tmp_path)


def test_progress_bar_only_on_a_terminal():
    import io
    from hlrsmpp.tools.clean import ProgressBar

    class Tty(io.StringIO):
        def isatty(self):
            return True

    snapshot = {"fraction": 0.5, "counts": {"total": 10}}
    pipe, tty = io.StringIO(), Tty()
    for stream in (pipe, tty):
        bar = ProgressBar(stream)
        bar(snapshot)
        bar.close()
    assert pipe.getvalue() == ""
    assert "50.0%" in tty.getvalue() and "10 rows" in tty.getvalue()


def test_premium_day_limit_stops_the_job(make_server, tmp_path):
    """A day limit answers ESME_RTHROTTLED like a rate limit; once nothing gets through for
    the stall limit, the job stops instead of retrying forever."""
    from hlrsmpp.tools import ToolError
    from hlrsmpp.cleaning import JobFailed
    from hlrsmpp.tools.lookup_client import HlrClient
    srv = make_server([{"system_id": "capped", "password": "pw", "limits": {"per_day": 2}}], hlr=RULES)
    src = tmp_path / "numbers.txt"
    text = "".join(f"4479110{i:05d}\n" for i in range(5))
    src.write_text(text)

    async def run():
        client = await HlrClient.open("127.0.0.1", srv.smpp_port, "capped", "pw", stall_limit=1.0)
        try:
            await CleanJob(src, srv.server.resolver, checker=client).run()
        finally:
            await client.close()

    t0 = time.monotonic()
    with pytest.raises(JobFailed) as info:
        asyncio.run(run())
    assert time.monotonic() - t0 < 10
    assert isinstance(info.value, ToolError) and "ESME_RTHROTTLED" in str(info.value)
    assert "after 2 charged lookup(s)" in str(info.value)
    assert src.read_text() == text and not backups(src)
