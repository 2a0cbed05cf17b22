"""Schemathesis against the served OpenAPI document: every documented operation, valid and
invalid inputs, as the operator (admin token) and as an account; never a 5xx, and the
answers conform to the document (status codes, content types, response schemas)."""
from __future__ import annotations

import base64
import os
from collections import Counter

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (content_type_conformance,  # noqa: E402
                                               response_schema_conformance,
                                               status_code_conformance)

pytestmark = pytest.mark.slow  # hundreds of generated requests

TOKEN = "fuzz-admin-token"
# Per operation and mode: 31 operations x 2 modes in well under 60 s. Set
# HLRSMPP_FUZZ_EXAMPLES=200 (and a longer --timeout) for a deeper run.
EXAMPLES = int(os.environ.get("HLRSMPP_FUZZ_EXAMPLES", "12"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


class Nonconforming(Exception):
    """An answer the checks refused: collected in ``failures`` and reported together."""


def _operations(port: int):
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/api/v1/openapi.json")
    ops = [r.ok() for r in schema.get_all_operations()]
    assert len(ops) == 31  # every route (test_openapi_document_lists_every_route)
    return ops


@pytest.mark.timeout(120 + EXAMPLES * 5)
@pytest.mark.parametrize("who", ["admin", "account"])
def test_no_server_errors(make_server, who):
    st = make_server([{"system_id": "demo", "password": "demo", "credit": 1000},
                      {"system_id": "acme", "password": "pw"}],
                     admin={"token": TOKEN},
                     bans={"after": 0},   # random logins must not ban the test's own address
                     http={"sync_timeout": 1.0, "webhook_attempts": 1, "webhook_timeout": 1.0},
                     prepaid={"services": [{"service_id": 1, "user_id": 1, "account": "demo"}]})
    base = f"http://127.0.0.1:{st.http_port}"
    auth = (f"Bearer {TOKEN}" if who == "admin"
            else "Basic " + base64.b64encode(b"demo:demo").decode())
    headers = {"Authorization": auth}
    failures = []
    seen: Counter = Counter()
    no_invalid: list[str] = []
    for op in _operations(st.http_port):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case):
                # Our credentials, not generated ones (the 401s have their own tests).
                case.headers = {**(case.headers or {}), **headers}
                response = case.call(base_url=base, timeout=10)
                seen[op.method.upper() + " " + op.path, response.status_code // 100] += 1
                try:
                    case.validate_response(response, checks=CHECKS if mode == GenerationMode.POSITIVE
                                           else [not_a_server_error])
                except Exception as e:  # collect, so one run reports every failing operation
                    failures.append(f"{mode.name} {op.method.upper()} {op.path}: "
                                    f"{type(e).__name__}: {str(e)[:600]}")
                    raise Nonconforming from e

            try:
                run()
            except* Nonconforming:
                pass  # in failures; anything else (no answer, a broken strategy) fails here
            except* Unsatisfiable:
                if mode == GenerationMode.POSITIVE:
                    raise
                no_invalid.append(op.method.upper() + " " + op.path)  # nothing in it to get wrong
    assert not failures, "\n\n".join(failures)
    # Only the operations that take no input at all have no invalid input to send.
    assert sorted(no_invalid) == ["GET /healthz", "GET /metrics"], no_invalid
    # It did exercise the API: every operation was called, and answered 2xx at least once.
    ok = {label for (label, kind), n in seen.items() if kind == 2}
    called = {label for label, _ in seen}
    assert len(called) == 31, called
    # (the explicit examples of the document make these deterministic)
    assert len(ok) >= (10 if who == "admin" else 6), sorted(called - ok)
