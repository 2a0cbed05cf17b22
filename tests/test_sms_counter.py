"""The live SMS counter: GET /api/v1/sms/segments and ``hlrsmpp segments``, the same count
as the server charges (hlrsmpp/sms/)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from http_client import ApiClient, basic, clients

from conftest import ROOT

DEMO = basic("demo", "demo")


@pytest.fixture
async def api():
    async with clients(ApiClient) as factory:
        yield factory


async def test_segments_api(server, api):
    a = await api(server)
    status, body, _ = await a.call("GET", "/sms/segments", DEMO, params={"text": "a" * 152 + "€" + "a" * 10})
    assert status == 200, body
    assert body == {"encoding": "GSM", "data_coding": 0, "characters": 163, "units": 164, "unit": "septets",
                    "segments": 2, "per_segment": 153, "left": 141}
    status, body, _ = await a.call("GET", "/sms/segments", DEMO, params={"text": "Ж" * 69 + "😀"})
    assert (status, body["encoding"], body["units"], body["segments"], body["left"]) == (200, "UCS2", 71, 2, 63)
    status, body, _ = await a.call("GET", "/sms/segments", DEMO, params={"text": "héllo", "data_coding": "3"})
    assert (body["encoding"], body["segments"], body["left"]) == ("LATIN1", 1, 135)
    status, body, _ = await a.call("GET", "/sms/segments", DEMO, params={"text": "00ff" * 70, "data_coding": "4"})
    assert (body["encoding"], body["units"], body["segments"]) == ("BINARY", 140, 1)


@pytest.mark.parametrize("params, words", [
    ({}, "text is required"),
    ({"text": "Жук", "data_coding": "0"}, "GSM 03.38"),
    ({"text": "abc", "data_coding": "x"}, "data_coding"),
    ({"text": "zz", "data_coding": "4"}, "hex"),
])
async def test_segments_api_refuses_clearly(server, api, params, words):
    a = await api(server)
    status, body, _ = await a.call("GET", "/sms/segments", DEMO, params=params)
    assert status == 400 and words in body["error"]["message"], body


async def test_segments_api_needs_credentials(server, api):
    a = await api(server)
    status, _, headers = await a.call("GET", "/sms/segments", params={"text": "hi"})
    assert status == 401


def _cli(*argv):
    return subprocess.run([sys.executable, "-m", "hlrsmpp", "segments", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_segments_cli():
    proc = _cli("a" * 161)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "encoding:   GSM (data_coding 0)",
        "characters: 161 (161 septets)",
        "segments:   2 (153 septets each)",
        "left:       145 septets in the last segment",
    ]
    proc = _cli("--json", "😀" * 36)
    assert json.loads(proc.stdout)["segments"] == 2
    proc = _cli("--data-coding", "0", "Жук")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("hlrsmpp segments: ") and "GSM 03.38" in proc.stderr
    proc = _cli("a" * (153 * 255 + 1))
    assert proc.returncode == 2 and "at most 255 parts" in proc.stderr
