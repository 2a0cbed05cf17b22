"""Loading the YAML configuration: what a user wrote wrong is one line naming it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hlrsmpp import config

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = sorted(s for s, v in config.DEFAULTS.items() if isinstance(v, dict) and s != "hlr")


def load_yaml(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "hlrsmpp.yaml"
    path.write_text(text)
    return config.load(path, environ={})


@pytest.mark.parametrize("section", SECTIONS)
def test_an_unknown_key_is_refused_in_every_section(tmp_path, section):
    with pytest.raises(config.ConfigError) as err:
        load_yaml(tmp_path, f"{section}: {{bogus: 1}}\n")
    assert str(err.value).startswith(f"{section}.bogus: unknown key")
    assert "\n" not in str(err.value)


def test_a_typo_gets_the_nearest_key(tmp_path):
    with pytest.raises(config.ConfigError, match=r"^smpp\.prot: unknown key \(did you mean port\?\)"):
        load_yaml(tmp_path, "smpp: {prot: 2775}\n")


def test_known_keys_optional_keys_and_empty_sections_load(tmp_path):
    cfg = load_yaml(tmp_path, "smpp:\nhttp: {port: 8081}\nstorage: {redis: {url: redis://127.0.0.1:1/0}}\n")
    assert cfg["smpp"] == config.DEFAULTS["smpp"] and cfg["http"]["port"] == 8081
    assert cfg["storage"]["redis"] == {"url": "redis://127.0.0.1:1/0"}
    with pytest.raises(config.ConfigError, match=r"^bans: expected a mapping"):
        load_yaml(tmp_path, "bans: 5\n")


def test_the_demo_config_loads():
    config.load(ROOT / "conf" / "hlrsmpp.yaml", environ={})


@pytest.mark.e2e   # an hlrsmpp serve process
def test_serve_refuses_an_unknown_key_in_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("smpp: {bogus: 1}\n")
    out = subprocess.run([sys.executable, "-m", "hlrsmpp", "serve", "--config", str(path)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("hlrsmpp: smpp.bogus: unknown key") and out.stderr.count("\n") == 1


@pytest.mark.e2e   # hlrsmpp serve processes
@pytest.mark.parametrize("section,words", [
    ("hlr: {bogus: 1}", ["hlr: unknown keys", "bogus"]),
    ("accounts: [{system_id: a, password: b, bogus: 1}]", ["account 'a'", "bogus"]),
    ("faults: [{action: close, bogus: 1}]", ["bogus"]),
    ("accounts: [{system_id: a, password: b}]\nprepaid: {services: [{service_id: 1, user_id: 2, "
     "account: a, bogus: 1}]}", ["bogus"]),
])
def test_serve_refuses_a_bad_key_checked_at_start_up_in_one_line(tmp_path, section, words):
    """hlr, accounts, faults and prepaid services are checked as the server builds them:
    the same one line and exit 2, not a traceback."""
    path = tmp_path / "bad.yaml"
    path.write_text(f"smpp: {{host: 127.0.0.1, port: 0}}\nhttp: {{host: 127.0.0.1, port: 0}}\n{section}\n")
    out = subprocess.run([sys.executable, "-m", "hlrsmpp", "serve", "--config", str(path)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env=dict(os.environ, HLRSMPP_LOG_FORMAT="json"))
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    failed = [json.loads(line) for line in out.stderr.splitlines() if '"start_failed"' in line]
    assert len(failed) == 1 and all(w in failed[0]["error"] for w in words), out.stderr[-2000:]
