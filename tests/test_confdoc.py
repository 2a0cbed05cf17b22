"""docs/configuration.md is generated from the configuration model and up to date."""
from __future__ import annotations

from pathlib import Path

from hlrsmpp import config
from hlrsmpp.accounts import policy
from hlrsmpp.hlr import resolver
from hlrsmpp.tools import confdoc

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_doc_is_up_to_date():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert doc == confdoc.generate(), \
        "docs/configuration.md is stale: run  python -m hlrsmpp.tools.confdoc --write"


def test_every_key_is_described():
    text = confdoc.generate()
    assert "## Undocumented" not in text, text[text.find("## Undocumented"):]
    assert "## `accounts`" in text
    for name, _ in confdoc.flatten(config.DEFAULTS):
        if name != "accounts":
            assert f"| `{name}` |" in text, name
    for key in policy.ACCOUNT_KEYS | policy.LIMIT_KEYS | policy.PACKAGE_KEYS:
        assert f"| `{key}` |" in text, key
    for key in resolver._CONFIG_KEYS:
        assert f"| `hlr.{key}` |" in text, key
    for var in config._ENV:
        assert f"`{var}`" in text, var


def test_defaults_shown_are_the_code_defaults():
    text = confdoc.generate()
    assert "| `smpp.port` | `2775` |" in text
    assert "| `http.port` | `8080` |" in text
    assert f"| `receipts.data_coding` | `{config.DEFAULTS['receipts']['data_coding']}` |" in text
    assert "| `price` | `0.1` |" in text and "| `max_tx` | `10` |" in text


def test_check_mode(capsys):
    assert confdoc.main(["--check"]) == 0
