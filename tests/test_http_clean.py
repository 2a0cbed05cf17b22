"""Contact-list cleaning over HTTP: upload, poll, download. Free and premium jobs
(charged per contact looked up), who may see a job, the upload cap, bad input, bounds.
Real server, real aiohttp client."""
from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import time
from pathlib import Path

import aiohttp
import pytest

from contacts import FREE_COUNTS, FREE_CSV
from http_client import ApiClient, basic, clients, error_code

from hlrsmpp.server.http import clean as clean_http

TOKEN = "T"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
# HLR outcomes by prefix (rules win over the numbering plan).
RULES = {"rules": [{"prefix": "4479110", "err": 0}, {"prefix": "4479111", "err": "absent"},
                   {"prefix": "4479112", "err": "unknown"}]}
OK1, OK2, ABSENT, UNKNOWN = "447911000001", "447911000002", "447911100001", "447911200001"

PREMIUM_CSV = ("id,numbers,email\n"
               f"1,{OK1},a@x\n"
               f"2,+{ABSENT},b@x\n"
               f"3,{UNKNOWN},c@x\n"
               f"4,{OK1},d@x\n"          # duplicate: never looked up, never charged
               "5,999,e@x\n"             # impossible: never looked up
               f"6,{OK2},f@x\n")




SHOP = basic("shop", "pw")
OTHER = basic("other", "pw")
ACCOUNTS = [{"system_id": "shop", "password": "pw", "credit": 10},
            {"system_id": "other", "password": "pw", "credit": 10}]


class Api(ApiClient):
    async def upload(self, auth, data, ctype="text/csv", **params):
        headers = dict(auth or {})
        if ctype is not None:
            headers["Content-Type"] = ctype
        params = {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}
        return await self.call("POST", "/clean", headers, data=data, params=params)

    async def wait(self, auth, job: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status, body, _ = await self.call("GET", f"/clean/{job}", auth)
            assert status == 200, body
            if body["status"] != "running":
                return body
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.05)

    async def run(self, auth, data, **kw) -> dict:
        status, body, headers = await self.upload(auth, data, **kw)
        assert status == 202, body
        assert headers["Location"] == body["status_url"] == f"/api/v1/clean/{body['job']}"
        assert body["download_url"] == f"/api/v1/clean/{body['job']}/download"
        return await self.wait(auth, body["job"])

    async def download(self, auth, job: str, file: str | None = None):
        return await self.call("GET", f"/clean/{job}/download", auth,
                               params={"file": file} if file else None)


@pytest.fixture
async def api():
    async with clients(Api) as factory:
        yield factory




def rows(text: str, delimiter=",") -> list[list[str]]:
    return list(csv.reader(io.StringIO(text), delimiter=delimiter))


def jobs(st) -> clean_http.CleanJobs:
    return st.server.http_runner.app[clean_http.JOBS]


def clean_dir(st) -> Path:
    return Path(st.cfg["storage"]["path"]) / "clean"


def credit(st, sid: str) -> int:
    return st.call(lambda: st.server.book.get(sid).credit)


# ------------------------------------------------------------------ free

async def test_free_csv_job(make_server, api, tmp_path):
    st = make_server(ACCOUNTS, admin={"token": TOKEN})
    a = await api(st)
    job = await a.run(SHOP, FREE_CSV.encode(), filename="contacts.csv")
    assert job["status"] == "done" and job["error"] is None and job["mode"] == "free"
    assert job["account"] == "shop" and job["file"] == "contacts.csv"
    assert job["progress"]["state"] == "done" and job["progress"]["fraction"] == 1.0
    report = job["report"]
    assert report["counts"] == FREE_COUNTS
    assert report["status"] == "done" and report["format"] == "csv" and report["delimiter"] == ";"
    assert report["file"] == "contacts.csv" and report["account"] == "shop"
    # The server's own paths never leave it.
    assert str(tmp_path) not in json.dumps(job)
    status, text, headers = await a.download(SHOP, job["job"])
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert 'filename="cleaned-contacts.csv"' in headers["Content-Disposition"]
    assert rows(text, ";") == [["id", "name", "numbers", "city"],
                               ["1", "Alice", "447911000001", "London; UK"],
                               ["3", 'Carol "C" Smith', "33612345678", "Paris"],
                               ["6", "Frank", "12025550143", "Washington"]]
    status, text, _ = await a.download(SHOP, job["job"], "original")
    assert (status, text) == (200, FREE_CSV)
    status, body, _ = await a.download(SHOP, job["job"], "report")
    assert status == 200 and body == report
    status, body, _ = await a.download(SHOP, job["job"], "everything")
    assert error_code(status, body, 400) == "bad_request"
    # Free: nothing looked up, nothing charged.
    st.persist()
    assert "shop" not in st.server.store.totals()
    assert credit(st, "shop") == 10_000_000


async def test_free_multipart_text_job(make_server, api):
    st = make_server(ACCOUNTS, admin={"token": TOKEN})
    a = await api(st)
    form = aiohttp.FormData()
    form.add_field("note", "ignored")
    form.add_field("file", b"+447911000001\r\n447911000002\r\n\r\n  0044 7911 000001 \r\nabc\r\n12025550143",
                   filename="my list.txt", content_type="text/plain")
    status, body, _ = await a.call("POST", "/clean", SHOP, data=form, params={"style": "plus"})
    assert status == 202, body
    job = await a.wait(SHOP, body["job"])
    assert job["status"] == "done" and job["file"] == "my_list.txt"
    assert job["report"]["format"] == "text"
    assert job["report"]["counts"] == {"total": 6, "empty": 1, "invalid_syntax": 1, "duplicates": 1,
                                       "looked_up": 0, "no_receipt": 0, "dropped_hlr": 0, "kept": 3,
                                       "removed": 3}
    status, text, headers = await a.download(SHOP, job["job"])
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert text == "+447911000001\r\n+447911000002\r\n+12025550143\r\n"
    # The operator runs a free job for nobody in particular: only the operator sees it.
    job = await a.run(ADMIN, b"447911000001\n447911000001\n", ctype="text/plain")
    assert job["status"] == "done" and job["account"] is None
    assert job["report"]["counts"]["duplicates"] == 1
    status, body, _ = await a.call("GET", f"/clean/{job['job']}", SHOP)
    assert error_code(status, body, 404) == "not_found"


# ------------------------------------------------------------------ premium

async def test_premium_job_charged_to_the_account(make_server, api):
    st = make_server(ACCOUNTS, admin={"token": TOKEN}, hlr=RULES)
    a = await api(st)
    job = await a.run(SHOP, PREMIUM_CSV.encode(), premium=True)
    assert job["status"] == "done" and job["mode"] == "premium", job
    report = job["report"]
    assert report["counts"] == {"total": 6, "empty": 0, "invalid_syntax": 1, "duplicates": 1,
                                "looked_up": 4, "no_receipt": 0, "dropped_hlr": 1, "kept": 3, "removed": 3}
    assert {k: (v["count"], v["kept"]) for k, v in report["err"].items()} == {
        "000": (2, True), "011": (1, True), "012": (1, False)}
    assert report["account"] == "shop" and report["drop_absent"] is False
    status, text, _ = await a.download(SHOP, job["job"])
    assert rows(text) == [["id", "numbers", "email"], ["1", OK1, "a@x"], ["2", ABSENT, "b@x"],
                          ["6", OK2, "f@x"]]
    # 0.1 credit per contact looked up, durable once the job reads as done; in the history.
    assert st.server.store.totals()["shop"] == (4, 4 * 100_000)
    assert credit(st, "shop") == 10_000_000 - 4 * 100_000
    history = st.server.store.history("shop")
    assert sorted(r["msisdn"] for r in history) == sorted([OK1, ABSENT, UNKNOWN, OK2])
    assert {r["channel"] for r in history} == {"http"}
    assert "other" not in st.server.store.totals()

    # The operator runs one for an account: charged to it, and the account sees it.
    job = await a.run(ADMIN, f"{OK1}\n{ABSENT}\n{UNKNOWN}\n".encode(), ctype="text/plain",
                      premium=True, account="other", drop_absent=True)
    assert job["status"] == "done" and job["account"] == "other"
    assert job["report"]["counts"]["looked_up"] == 3 and job["report"]["counts"]["kept"] == 1
    status, text, _ = await a.download(OTHER, job["job"])
    assert (status, text) == (200, f"{OK1}\n")
    assert st.server.store.totals()["other"] == (3, 3 * 100_000)
    assert credit(st, "other") == 10_000_000 - 3 * 100_000
    assert st.server.store.totals()["shop"] == (4, 4 * 100_000)   # untouched

    # Premium needs an account to charge; an account charges only itself.
    status, body, _ = await a.upload(ADMIN, b"447911000001\n", premium=True)
    assert error_code(status, body, 400) == "bad_request"
    status, body, _ = await a.upload(ADMIN, b"447911000001\n", premium=True, account="nobody")
    assert error_code(status, body, 404) == "not_found"
    status, body, _ = await a.upload(SHOP, b"447911000001\n", premium=True, account="other")
    assert error_code(status, body, 403) == "forbidden"


async def test_premium_job_stops_when_credit_runs_out(make_server, api):
    st = make_server([{"system_id": "poor", "password": "pw", "credit": 0.25},
                      {"system_id": "broke", "password": "pw", "credit": 0.05}],
                     admin={"token": TOKEN}, hlr=RULES)
    a = await api(st)
    poor = basic("poor", "pw")
    text = "".join(f"4479110{i:05d}\n" for i in range(10))
    job = await a.run(poor, text.encode(), ctype="text/plain", premium=True)
    assert job["status"] == "failed", job
    assert "ESME_RINSBAL" in job["error"] and "insufficient credit" in job["error"]
    assert job["report"]["status"] == "failed"
    status, body, _ = await a.download(poor, job["job"])
    assert error_code(status, body, 409) == "job_failed"
    status, body, _ = await a.download(poor, job["job"], "report")
    assert status == 200 and body["status"] == "failed"
    status, original, _ = await a.download(poor, job["job"], "original")
    assert (status, original) == (200, text)
    assert st.server.store.totals()["poor"] == (2, 200_000)   # what was charged stays charged
    # Less credit than one lookup: refused before the upload.
    status, body, _ = await a.upload(basic("broke", "pw"), text.encode(), premium=True)
    assert error_code(status, body, 402) == "no_credit"
    assert body["error"]["smpp_status"] == "ESME_RINSBAL"


async def test_running_job_cannot_be_downloaded_yet(make_server, api):
    st = make_server([{"system_id": "slow", "password": "pw", "credit": 10, "limits": {"tps": 4}}],
                     admin={"token": TOKEN}, hlr=RULES)
    a = await api(st)
    slow = basic("slow", "pw")
    text = "".join(f"4479110{i:05d}\n" for i in range(12))    # ~2 s at 4 lookups a second
    status, body, _ = await a.upload(slow, text.encode(), ctype="text/plain", premium=True)
    assert status == 202
    job_id = body["job"]
    status, body, _ = await a.call("GET", f"/clean/{job_id}", slow)
    assert status == 200 and body["status"] == "running" and body["report"] is None
    assert body["progress"]["state"] in ("pending", "running")
    status, body, _ = await a.download(slow, job_id)
    assert error_code(status, body, 409) == "job_running"
    status, original, _ = await a.download(slow, job_id, "original")
    assert (status, original) == (200, text)
    job = await a.wait(slow, job_id)
    assert job["status"] == "done" and job["report"]["counts"]["looked_up"] == 12
    status, cleaned, _ = await a.download(slow, job_id)
    assert (status, cleaned) == (200, text)


# ------------------------------------------------------------------ who sees a job

async def test_jobs_are_private(make_server, api):
    st = make_server(ACCOUNTS, admin={"token": TOKEN})
    a = await api(st)
    job = await a.run(SHOP, FREE_CSV.encode())
    jid = job["job"]
    assert re.fullmatch(r"[0-9a-f]{32}", jid)
    for path in (f"/clean/{jid}", f"/clean/{jid}/download"):
        status, body, _ = await a.call("GET", path, OTHER)
        assert error_code(status, body, 404) == "not_found", path
        status, body, _ = await a.call("GET", path, None)
        assert error_code(status, body, 401) == "unauthorized", path
        status, body, _ = await a.call("GET", path, basic("shop", "wrong"))
        assert status == 401, path
        assert (await a.call("GET", path, ADMIN))[0] == 200, path
        assert (await a.call("GET", path, SHOP))[0] == 200, path
    for bad in ("0" * 32, jid[:-1], jid.upper(), "..", "x" * 300):
        status, body, _ = await a.call("GET", f"/clean/{bad}", ADMIN)
        assert error_code(status, body, 404) == "not_found", bad
    # Ids are random: two jobs never share one.
    other = await a.run(SHOP, FREE_CSV.encode())
    assert other["job"] != jid
    status, body, _ = await a.upload(None, FREE_CSV.encode())
    assert error_code(status, body, 401) == "unauthorized"


# ------------------------------------------------------------------ limits and bad input

async def test_upload_size_cap(make_server, api):
    st = make_server(ACCOUNTS, admin={"token": TOKEN}, http={"clean_max_bytes": 1000})
    a = await api(st)
    line = b"447911000001\n"                      # 13 bytes
    big = line * 100                              # 1300 bytes
    status, body, _ = await a.upload(SHOP, big, ctype="text/plain")
    assert error_code(status, body, 413) == "too_large"
    assert body["error"]["limit"] == 1000

    async def chunked():                          # no Content-Length: the stream is counted
        for _ in range(100):
            yield line

    status, body, _ = await a.upload(SHOP, chunked(), ctype="text/plain")
    assert error_code(status, body, 413) == "too_large"
    form = aiohttp.FormData()
    form.add_field("file", big, filename="big.txt", content_type="text/plain")
    status, body, _ = await a.call("POST", "/clean", SHOP, data=form)
    assert error_code(status, body, 413) == "too_large"
    # Nothing is left of a refused upload, and the slots are free again.
    assert not [d for d in clean_dir(st).iterdir()] if clean_dir(st).exists() else True
    assert st.call(lambda: jobs(st).busy) == 0
    exact = line * 76 + b"44791100000\n"          # 1000 bytes: accepted
    assert len(exact) == 1000
    job = await a.run(SHOP, exact, ctype="text/plain")
    assert job["status"] == "done" and job["report"]["counts"]["total"] == 77


async def test_bad_input_is_refused_clearly(make_server, api, tmp_path):
    st = make_server(ACCOUNTS, admin={"token": TOKEN})
    a = await api(st)
    cases = [
        ({"data": b"phone,name\n447911000001,a\n"}, 422, "invalid_file", "no 'numbers' column"),
        ({"data": b"\x00\x01\x02binary\x00"}, 422, "invalid_file", "binary"),
        ({"data": b"hello world\nfoo\n", "ctype": "text/plain"}, 422, "invalid_file", "neither"),
        ({"data": b"numbers\n\xff\xfe\xfa\xfb\xfc\xfd\n447911000001\n"}, 422, "invalid_file", "encoding"),
        ({"data": b""}, 400, "bad_request", "empty"),
        ({"data": b'{"numbers": 1}', "ctype": "application/json"}, 415, "unsupported_media_type", ""),
        ({"data": b"numbers\n1\n", "style": "fancy"}, 400, "bad_request", "style"),
        ({"data": b"numbers\n1\n", "premium": "maybe"}, 400, "bad_request", "premium"),
        ({"data": b"numbers\n1\n", "delimiter": "x"}, 400, "bad_request", "delimiter"),
        ({"data": b"numbers\n1\n", "format": "xlsx"}, 400, "bad_request", "format"),
        ({"data": b"numbers\n1\n", "encoding": "klingon"}, 400, "bad_request", "encoding"),
        ({"data": b"numbers\n1\n", "encoding": "base64"}, 400, "bad_request", "encoding"),
        ({"data": b"numbers\n1\n", "colour": "red"}, 400, "bad_request", "colour"),
        ({"data": b"number;\n" + b"x" * 200_000 + b"\n"}, 422, "invalid_file", ""),
    ]
    for kw, want_status, want_code, words in cases:
        data = kw.pop("data")
        status, body, _ = await a.upload(SHOP, data, **kw)
        assert error_code(status, body, want_status) == want_code, (data[:40], kw, body)
        assert words in body["error"]["message"], body
        assert str(tmp_path) not in body["error"]["message"], body
    form = aiohttp.FormData()
    form.add_field("upload", b"447911000001\n", filename="x.txt")
    status, body, _ = await a.call("POST", "/clean", SHOP, data=form)
    assert error_code(status, body, 400) == "bad_request"
    status, body, _ = await a.call("POST", "/clean", {**SHOP, "Content-Type": "multipart/form-data; boundary=zz"},
                                   data=b"--zz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n447")
    assert error_code(status, body, 400) == "bad_request"
    # A text file with a .csv name is a CSV: it needs the column (like the CLI's .csv).
    form = aiohttp.FormData()
    form.add_field("file", b"447911000001\n", filename="list.csv", content_type="text/csv")
    status, body, _ = await a.call("POST", "/clean", SHOP, data=form)
    assert error_code(status, body, 422) == "invalid_file"
    assert "list.csv" in body["error"]["message"]
    # With format=text it is one number a line.
    form = aiohttp.FormData()
    form.add_field("file", b"447911000001\n", filename="list.csv", content_type="text/csv")
    status, body, _ = await a.call("POST", "/clean", SHOP, data=form, params={"format": "text"})
    assert status == 202, body
    assert (await a.wait(SHOP, body["job"]))["status"] == "done"
    # Latin-1 with the encoding given; tab-delimited with the delimiter given.
    job = await a.run(SHOP, "numbers,name\n447911000001,Jos\u00e9\n".encode("latin-1"), encoding="latin-1")
    assert job["status"] == "done" and job["report"]["counts"]["kept"] == 1
    status, text, headers = await a.download(SHOP, job["job"])
    assert headers["Content-Type"] == "text/csv; charset=iso-8859-1"
    assert rows(text) == [["numbers", "name"], ["447911000001", "Jos\u00e9"]]
    job = await a.run(SHOP, b"name\tnumbers\nA\t447911000001\n", delimiter="tab")
    assert job["status"] == "done" and job["report"]["delimiter"] == "\t"
    # Nothing above crashed anything: the refused uploads left no files, no slot is held.
    assert st.call(lambda: jobs(st).busy) == 0
    assert len(list(clean_dir(st).iterdir())) == 3


async def test_concurrency_bound_and_finished_jobs_kept(make_server, api):
    st = make_server(ACCOUNTS, admin={"token": TOKEN})
    a = await api(st)
    st.call(lambda: setattr(jobs(st), "max_running", 0))
    status, body, headers = await a.upload(SHOP, FREE_CSV.encode())
    assert error_code(status, body, 429) == "too_many_jobs" and headers["Retry-After"]
    st.call(lambda: setattr(jobs(st), "max_running", 4))
    st.call(lambda: setattr(jobs(st), "keep_finished", 2))
    done = [(await a.run(SHOP, FREE_CSV.encode()))["job"] for _ in range(3)]
    # The oldest finished job is forgotten, its files deleted.
    status, body, _ = await a.call("GET", f"/clean/{done[0]}", SHOP)
    assert error_code(status, body, 404) == "not_found"
    assert not (clean_dir(st) / done[0]).exists()
    for jid in done[1:]:
        assert (await a.call("GET", f"/clean/{jid}", SHOP))[0] == 200


async def test_finished_jobs_survive_a_restart(make_server, api):
    st = make_server(ACCOUNTS, admin={"token": TOKEN})
    a = await api(st)
    job = await a.run(SHOP, FREE_CSV.encode())
    # A job the restart interrupts reads as failed afterwards.
    interrupted = clean_dir(st) / ("ab" * 16)
    interrupted.mkdir()
    (interrupted / "job.json").write_text(json.dumps({
        "id": "ab" * 16, "account": "shop", "premium": False, "filename": "x.csv",
        "created": time.time(), "pid": 999_999_999}))
    st.stop()
    st2 = make_server(ACCOUNTS, admin={"token": TOKEN})
    b = await api(st2)
    status, body, _ = await b.call("GET", f"/clean/{job['job']}", SHOP)
    assert status == 200 and body["status"] == "done"
    assert body["report"]["counts"] == FREE_COUNTS
    assert body["progress"]["counts"]["kept"] == 3
    status, text, _ = await b.download(SHOP, job["job"])
    assert status == 200 and rows(text, ";")[1] == ["1", "Alice", "447911000001", "London; UK"]
    status, body, _ = await b.call("GET", f"/clean/{'ab' * 16}", SHOP)
    assert status == 200 and body["status"] == "failed" and "interrupted" in body["error"]
    status, body, _ = await b.call("GET", f"/clean/{job['job']}", OTHER)
    assert status == 404


async def test_per_account_disk_quota(make_server, api):
    """One account cannot fill the disk with cleaning jobs: past http.clean_quota_bytes
    (each upload counted twice: the file and its cleaned copy) an upload is refused with
    413 over_quota before anything is written, and what is already there stays."""
    st = make_server(ACCOUNTS, admin={"token": TOKEN}, http={"clean_quota_bytes": 3000})
    a = await api(st)
    line = b"447911000001\n"                      # 13 bytes
    first = await a.run(SHOP, line * 60, ctype="text/plain")   # 780 bytes, ~1560 with its copy
    assert first["status"] == "done"
    before = sorted(p.relative_to(clean_dir(st)) for p in clean_dir(st).rglob("*"))
    status, body, _ = await a.upload(SHOP, line * 60, ctype="text/plain")
    assert error_code(status, body, 413) == "over_quota", body
    assert "clean_quota_bytes" in body["error"]["message"] and body["error"]["quota"] == 3000

    async def chunked():                          # no Content-Length: stopped where it would not fit
        for _ in range(60):
            yield line

    status, body, _ = await a.upload(SHOP, chunked(), ctype="text/plain")
    assert error_code(status, body, 413) == "over_quota", body
    # Nothing written by the refused uploads, nothing lost of the first job.
    assert sorted(p.relative_to(clean_dir(st)) for p in clean_dir(st).rglob("*")) == before
    status, text, _ = await a.download(SHOP, first["job"], "original")
    assert (status, text) == (200, (line * 60).decode())
    assert st.call(lambda: jobs(st).busy) == 0
    # Another account has its own quota.
    assert (await a.run(OTHER, line * 60, ctype="text/plain"))["status"] == "done"
    # Deleting a finished job makes room (only its owner or the operator may).
    status, _, _ = await a.call("DELETE", f"/clean/{first['job']}", OTHER)
    assert status == 404
    status, _, _ = await a.call("DELETE", f"/clean/{first['job']}", SHOP)
    assert status == 204
    assert (await a.call("GET", f"/clean/{first['job']}", SHOP))[0] == 404
    assert (await a.run(SHOP, line * 60, ctype="text/plain"))["status"] == "done"
