"""History reader processes, spoken to over a socket by the event loop itself.

A ProcessPoolExecutor hands each call to a thread of the server's process (its queue
manager), which wakes as the call is queued and pickles it: that thread takes the GIL
from the event loop at every page, and a lookup waits for it. Here the loop writes the
request to the reader's socket and reads the answer as it reads any connection; no
other thread of the server takes part.

A frame is 8 bytes of length (little-endian) and a pickle: the first to a reader is
(the store's file, the network names), then (function name, arguments) each; the reader
answers each with (True, result) or (False, the exception). A reader serves one request
at a time; a request that finds every reader busy waits for one.
"""
from __future__ import annotations

import asyncio
import os
import pickle
import socket
import struct
import subprocess
import sys
from typing import Any, Mapping

LENGTH = struct.Struct("<Q")


def frame(obj: Any) -> bytes:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return LENGTH.pack(len(body)) + body


class ReaderGone(RuntimeError):
    """A reader process ended in the middle of a request (another takes its place)."""


class _Reader:
    __slots__ = ("proc", "reader", "writer")

    def __init__(self, proc: subprocess.Popen[bytes], reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter):
        self.proc, self.reader, self.writer = proc, reader, writer

    def end(self) -> None:
        self.writer.close()
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ReaderProcesses:
    """``processes`` readers of the store in ``file`` (started at the first call)."""

    def __init__(self, processes: int, file: str, names: Mapping[str, str]):
        self.processes = processes
        self.file = file
        self.names = dict(names)
        self._idle: asyncio.Queue[_Reader] | None = None
        self._all: set[_Reader] = set()
        self._closed = False

    async def _start(self) -> _Reader:
        parent, child = socket.socketpair()
        try:
            # The server's own import path, as the reader imports hlrsmpp from it.
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
            proc = subprocess.Popen([sys.executable, "-m", f"{__package__}.reader_main", str(child.fileno())],
                                    pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, env=env)
        finally:
            child.close()
        reader, writer = await asyncio.open_connection(sock=parent, limit=1 << 20)
        writer.write(frame((self.file, self.names)))
        one = _Reader(proc, reader, writer)
        self._all.add(one)
        return one

    async def call(self, name: str, *args: Any) -> Any:
        """``name``(*args) in a reader process: its result, or its exception raised here."""
        if self._closed:
            raise ReaderGone("the history readers are closed")
        if self._idle is None:
            self._idle = asyncio.Queue()
            for _ in range(self.processes):
                self._idle.put_nowait(await self._start())
        request = frame((name, args))
        ok, value = await self._ask(request)
        if not ok and isinstance(value, ReaderGone) and not self._closed:
            ok, value = await self._ask(request)   # a read is asked again of another reader
        if not ok:
            raise value
        return value

    async def _ask(self, request: bytes) -> tuple[bool, Any]:
        assert self._idle is not None
        one = await self._idle.get()
        # A caller that goes away (a client gone) leaves the exchange to finish, so that
        # the reader's answer is read before the reader serves anyone else.
        return await asyncio.shield(self._exchange(one, request))

    async def _exchange(self, one: _Reader, request: bytes) -> tuple[bool, Any]:
        assert self._idle is not None
        try:
            one.writer.write(request)
            n = LENGTH.unpack(await one.reader.readexactly(LENGTH.size))[0]
            answer = pickle.loads(await one.reader.readexactly(n))
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            self._all.discard(one)
            one.end()
            if not self._closed:
                self._idle.put_nowait(await self._start())
            return False, ReaderGone(f"a history reader ended: {exc!r}")
        self._idle.put_nowait(one)
        return answer

    def close(self) -> None:
        self._closed = True
        for one in list(self._all):
            one.end()
        self._all.clear()
