"""The notifications' outbox closed while a sender's call still runs on a worker thread
(the server stopping mid-round): the call ends with an error, never a crash."""
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.unit

RACE = textwrap.dedent("""
    import sqlite3, sys, threading
    from hlrsmpp.accounts.store import Store

    for round in range(int(sys.argv[2])):
        store = Store(f"{sys.argv[1]}/{round}")
        outcome = []

        def sender():
            try:
                while True:
                    store.outbox.due(0.0)
            except sqlite3.ProgrammingError as e:
                outcome.append(str(e))

        t = threading.Thread(target=sender)
        t.start()
        store.close()
        t.join(10)
        assert not t.is_alive() and outcome, "the sender should end with an error once closed"
    print("ok")
""")


def test_closing_the_outbox_under_a_running_call_ends_it_cleanly(tmp_path):
    done = subprocess.run([sys.executable, "-c", RACE, str(tmp_path), "200"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr[-2000:])
