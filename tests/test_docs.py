"""Every example in README.md and docs/*.md runs against a real server, and shows what it prints.

How to write an example (fenced blocks; the language after the fence says what it is):

- ``console``: a terminal session. Each ``$ command`` line is run (a trailing ``\\`` continues
  the command on the next line); the lines after it, up to the next ``$``, are what it prints
  (stdout and stderr). A command shown without output prints nothing. A command that fails
  shows its exit status as its last output line: ``[exit 2]``.
- ``sh`` or ``bash``: a script (commands without prompts); its output is compared only when an
  ``output`` block follows it.
- ``http``: a request (``GET /path?query``, header lines, a blank line, a body), then
  optionally the response from its status line on (``HTTP/1.1 200 OK``, header lines, a blank
  line, the body): the status, each header shown and the body are compared. Without a
  response the status must be 2xx.
- ``python``: a script; its output is compared only when an ``output`` block follows it.
  ``pycon``: an interactive session (``>>>`` prompts), checked as doctest checks it.
- In shown output, ``...`` (or ``…``) stands for any text within a line, or, alone on its
  line, for any number of lines: ids, dates, figures. Runs of spaces compare as one (tables).
- ``<!-- doc-test: skip (reason) -->`` just before a block leaves it out (a server that runs
  until stopped, a container build); ``<!-- doc-test: xfail (reason) -->`` runs it and expects
  it to fail (a known bug, named in the reason).
- Other blocks (yaml, json, ini, unlabelled ones) are not run; an unlabelled block that looks
  like a session or a request fails test_examples_are_labelled.

How they run: one server per file, started as ``make run`` starts it (``hlrsmpp serve --config
conf/hlrsmpp.yaml`` from a directory laid out like the repository: .venv, conf/, data/), on
free ports: 2775 and 8080 anywhere in an example are the test's ports, and
``HLRSMPP_SMPP_PORT``/``HLRSMPP_URL`` point the command-line tools at them; the commands'
output is not a terminal (curl is made as quiet as on one). The demo's HLR
latency is kept (0.2 to 2 s a number, as users get it). The blocks of a file run in order in
one shell, so what one exports or writes, the next ones see; running one example alone
first replays the ones before it in its file.
"""
from __future__ import annotations

import http.client
import os
import re
import select
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT, ServerProcess, free_port

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"console", "sh", "bash"}
RUNNABLE = SHELL | {"http", "python", "pycon"}
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
DIRECTIVE = re.compile(r"^\s*<!--\s*doc-test:\s*(?P<what>skip|xfail)\s*\((?P<why>.+)\)\s*-->\s*$")
STATUS_LINE = re.compile(r"^HTTP/\d(?:\.\d)? (\d{3})\b")
EXIT_LINE = re.compile(r"^\[exit (\d+)\]$")
ELLIPSIS = re.compile(r"\.\.\.|…")
COMMAND_TIMEOUT = 120


@dataclass
class Block:
    file: Path
    line: int            # of the opening fence, 1-based
    lang: str
    text: str
    skip: str | None = None
    xfail: str | None = None
    output: str | None = None   # the ``output`` block that follows it
    end: int = 0                # the line after its closing fence, 0-based

    @property
    def id(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def parse(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with their directives and output blocks."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    directive = None
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            d = DIRECTIVE.match(lines[i])
            if d:
                directive = (d["what"], d["why"])
            elif lines[i].strip():
                directive = None
            i += 1
            continue
        indent, fence, start = len(m["indent"]), m["fence"], i
        body = []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence)
                                      and set(lines[i].strip()) == {fence[0]}):
            line = lines[i]
            body.append(line[indent:] if not line[:indent].strip() else line.lstrip())
            i += 1
        i += 1
        block = Block(path, start + 1, m["lang"].lower(), "\n".join(body))
        if directive:
            setattr(block, directive[0], directive[1])
            directive = None
        block.end = i
        previous = blocks[-1] if blocks else None
        if (block.lang == "output" and previous is not None and previous.lang in ("sh", "bash", "python")
                and not any(x.strip() for x in lines[previous.end:start])):
            previous.output = block.text
        blocks.append(block)
    return blocks


ALL = [b for path in DOCS for b in parse(path)]
EXAMPLES = [b for b in ALL if b.lang in RUNNABLE]


# ------------------------------------------------------------------ comparing output

def _line_pattern(line: str) -> str:
    parts = ELLIPSIS.split(line)
    return "[^\n]*?".join(r"[ \t]+".join(re.escape(w) for w in re.split(r"[ \t]+", p)) for p in parts)


def _normal(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def matches(expected: str, actual: str) -> bool:
    """``actual`` is ``expected`` but for ellipses (any text) and the width of blank runs."""
    pattern = "".join("(?:[^\n]*\n)*?" if ELLIPSIS.fullmatch(line.strip()) else _line_pattern(line) + "\n"
                      for line in _normal(expected).split("\n")) if _normal(expected) else ""
    return re.fullmatch(pattern, _normal(actual) + "\n" if _normal(actual) else "") is not None


def test_matching_rules():
    assert matches("NUMBER  ID\n447400123456  9134...  DELIVRD", "NUMBER ID\n447400123456 913437 DELIVRD\n")
    assert matches("a\n...\nz", "a\nb\nc\nz") and matches("a\n...\nz", "a\nz")
    assert matches("", "\n") and not matches("", "x")
    assert not matches("DELIVRD", "UNDELIV") and not matches("a\nb", "a")
    assert not matches("a ... c", "a b\nc")      # within a line only
    assert matches('{"job":"5f0c…e1"}', '{"job":"5f0c11e1"}')


# ------------------------------------------------------------------ one file's run

class Shell:
    """One bash for a file's examples, as a reader's terminal: exports and cd carry over."""

    def __init__(self, cwd: Path, env: dict):
        self.proc = subprocess.Popen(["bash", "--noprofile", "--norc"], cwd=cwd, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.count = 0

    def run(self, command: str, timeout: float = COMMAND_TIMEOUT) -> tuple[str, int]:
        """(what ``command`` printed, its exit status); stdin is /dev/null."""
        self.count += 1
        mark = f"__doc_test_{os.getpid()}_{self.count}__"
        self.proc.stdin.write(f"{{ {command}\n}} </dev/null 2>&1\nprintf '\\n{mark} %d\\n' $?\n".encode())
        self.proc.stdin.flush()
        out = b""
        deadline = time.monotonic() + timeout
        done = re.compile(rb"\n" + mark.encode() + rb" (\d+)\n$")
        while not done.search(out):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.close()
                raise AssertionError(f"{command!r} did not finish (timeout or shell gone):\n"
                                     + out.decode(errors="replace"))
            if select.select([self.proc.stdout], [], [], left)[0]:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                out += chunk
        m = done.search(out)
        return out[:m.start()].decode(errors="replace"), int(m[1])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


class DocRun:
    """The server and the shell one Markdown file's examples run against."""

    def __init__(self, path: Path, home: Path):
        self.path = path
        self.home = home
        self.smpp_port, self.http_port = free_port(), free_port()
        (home / ".venv").symlink_to(Path(sys.prefix))
        shutil.copytree(ROOT / "conf", home / "conf")
        config = home / "conf" / "hlrsmpp.yaml"
        config.write_text(self.ports(config.read_text()))
        # curl prints its progress meter only when its output is not a terminal: as on one.
        (home / ".doc-test").mkdir()
        (home / ".doc-test" / ".curlrc").write_text("--silent\n--show-error\n")
        # A user's environment: none of ours, and Python's output buffered as it is by default.
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("HLRSMPP_") and k != "PYTHONUNBUFFERED"}
        self.env.update(CURL_HOME=str(home / ".doc-test"),PATH=f"{home / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                        HLRSMPP_SMPP_PORT=str(self.smpp_port),
                        HLRSMPP_URL=f"http://127.0.0.1:{self.http_port}")
        if os.environ.get("HLRSMPP_PURE_PYTHON"):
            self.env["HLRSMPP_PURE_PYTHON"] = os.environ["HLRSMPP_PURE_PYTHON"]
        self.server = ServerProcess(config, self.smpp_port, self.http_port, env=self.env,
                                    cwd=home).start()
        self.shell = Shell(home, self.env)
        self.done = 0        # examples of this file run so far

    def ports(self, text: str) -> str:
        return re.sub(r"\b8080\b", str(self.http_port), re.sub(r"\b2775\b", str(self.smpp_port), text))

    def close(self) -> None:
        self.shell.close()
        if self.server.proc.poll() is None:
            self.server.terminate()

    # -- the kinds of example; each returns None when the example holds, else why not
    def check(self, block: Block) -> str | None:
        kind = "script" if block.lang in ("sh", "bash") else block.lang
        return getattr(self, "_" + kind)(block)

    def _console(self, block: Block) -> str | None:
        for command, expected in transcript(block.text):
            out, status = self.shell.run(self.ports(command))
            expected = self.ports(expected)
            lines = expected.rstrip().split("\n")
            m = EXIT_LINE.match(lines[-1].strip())
            want_status = int(m[1]) if m else 0
            if m:
                expected = "\n".join(lines[:-1])
            if status != want_status or not matches(expected, out):
                return (f"$ {command}\n--- expected (exit {want_status}):\n{expected}\n"
                        f"--- got (exit {status}):\n{out}")
        return None

    def _script(self, block: Block) -> str | None:
        out, status = self.shell.run(self.ports(block.text))
        return self._compare(block, out, status)

    def _python(self, block: Block) -> str | None:
        script = self.home / ".doc-test" / f"{block.line}.py"
        script.write_text(self.ports(block.text) + "\n")
        out, status = self.shell.run(f"python {script}")
        return self._compare(block, out, status)

    def _pycon(self, block: Block) -> str | None:
        session = self.home / ".doc-test" / f"{block.line}.txt"
        session.write_text(self.ports(block.text) + "\n")
        out, status = self.shell.run(f"python -m doctest -o ELLIPSIS -o NORMALIZE_WHITESPACE {session}")
        return None if status == 0 else out

    def _compare(self, block: Block, out: str, status: int) -> str | None:
        if status != 0:
            return f"exit {status}:\n{out}"
        if block.output is not None and not matches(self.ports(block.output), out):
            return f"--- expected:\n{block.output}\n--- got:\n{out}"
        return None

    def _http(self, block: Block) -> str | None:
        request, response = http_parts(self.ports(block.text))
        method, _, target = request["start"].partition(" ")
        target = target.rsplit(" HTTP/", 1)[0].strip()
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=COMMAND_TIMEOUT)
        try:
            conn.request(method, target, body=request["body"].encode() or None, headers=request["headers"])
            r = conn.getresponse()
            body = r.read().decode(errors="replace")
        finally:
            conn.close()
        got = f"HTTP/1.1 {r.status} {r.reason}\n" + "".join(f"{k}: {v}\n" for k, v in r.getheaders()) \
            + "\n" + body
        if response is None:
            return None if 200 <= r.status < 300 else got
        status = int(STATUS_LINE.match(response["start"])[1])
        bad = r.status != status or not matches(response["body"], body) or any(
            not matches(v, r.getheader(k) or "") for k, v in response["headers"].items())
        return f"--- expected:\n{block.text}\n--- got:\n{got}" if bad else None


def transcript(text: str) -> list[tuple[str, str]]:
    """A console block as (command, expected output) pairs."""
    pairs: list[tuple[str, list[str]]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ ") or line == "$":
            command = [line[2:]]
            while command[-1].endswith("\\") and i + 1 < len(lines):
                i += 1
                command.append(lines[i])
            pairs.append(("\n".join(command), []))
        elif pairs:
            pairs[-1][1].append(line)
        elif line.strip():
            raise AssertionError(f"output before any command: {line!r}")
        i += 1
    return [(c, "\n".join(out)) for c, out in pairs]


def http_parts(text: str) -> tuple[dict, dict | None]:
    """An http block as its request and, when shown, its response: start line, headers, body."""
    lines = text.strip("\n").split("\n")
    cut = next((i for i, x in enumerate(lines) if i and STATUS_LINE.match(x)), len(lines))

    def message(part: list[str]) -> dict:
        headers, i = {}, 1
        while i < len(part) and part[i].strip():
            name, _, value = part[i].partition(":")
            headers[name.strip()] = value.strip()
            i += 1
        return {"start": part[0].strip(), "headers": headers, "body": "\n".join(part[i + 1:]).strip("\n")}

    return message(lines[:cut]), message(lines[cut:]) if cut < len(lines) else None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One DocRun per file, started when its first example runs, closed with the next file's."""
    current: dict[Path, DocRun] = {}

    def get(path: Path) -> DocRun:
        if path not in current:
            for old in current.values():
                old.close()
            current.clear()
            current[path] = DocRun(path, tmp_path_factory.mktemp(path.stem))
        return current[path]

    yield get
    for run in current.values():
        run.close()


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("block", EXAMPLES, ids=[b.id for b in EXAMPLES])
def test_example(block: Block, runs):
    if block.skip:
        pytest.skip(block.skip)
    run = runs(block.file)
    mine = [b for b in EXAMPLES if b.file == block.file and not b.skip]
    for earlier in mine[run.done:mine.index(block)]:   # run alone: replay what comes before it
        run.check(earlier)
    run.done = mine.index(block) + 1
    failure = run.check(block)
    if block.xfail:
        if failure is None:
            pytest.fail(f"marked xfail ({block.xfail}) but it holds now: remove the mark")
        pytest.xfail(f"{block.xfail}\n{failure}")
    assert failure is None, f"{block.id}:\n{failure}"


def test_examples_are_labelled():
    """A session or a request in an unlabelled block would silently escape the test above."""
    wrong = []
    for b in ALL:
        first = next((x for x in b.text.split("\n") if x.strip()), "")
        looks = first.startswith(("$ ", ">>> ")) or re.match(r"(GET|POST|PUT|PATCH|DELETE) /", first)
        if not b.lang and looks:
            wrong.append(f"{b.id}: label it console, http or pycon (or mark it skip)")
        if b.lang in ("sh", "bash") and any(x.startswith("$ ") for x in b.text.split("\n")):
            wrong.append(f"{b.id}: a session with $ prompts is a console block")
        if b.lang == "output" and not any(e.output is b.text and e.end <= b.line for e in EXAMPLES):
            wrong.append(f"{b.id}: an output block follows a sh, bash, python or http block")
    assert not wrong, "\n".join(wrong)
    assert len(EXAMPLES) >= 10, "the examples are not found any more"
