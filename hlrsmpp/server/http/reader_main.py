"""``python -m hlrsmpp.server.http.reader_main FD``: a history reader process (see
reader_process.py), serving the server on the socket FD until it closes."""
from __future__ import annotations

import pickle
import signal
import socket
import sys
from typing import Any

from .reader_process import LENGTH, frame


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            return None
        got += k
    return bytes(buf)


def _recv(sock: socket.socket) -> Any:
    head = _recv_exactly(sock, LENGTH.size)
    if head is None:
        return None
    body = _recv_exactly(sock, LENGTH.unpack(head)[0])
    return None if body is None else pickle.loads(body)


def main(fd: int) -> None:
    from . import history

    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the server stops its readers
    sock = socket.socket(fileno=fd)
    first = _recv(sock)
    if first is None:
        return
    history.open_reader_process(*first)
    while (request := _recv(sock)) is not None:
        name, args = request
        try:
            answer: tuple[bool, Any] = (True, history.render_in_reader_process(name, *args))
        except Exception as exc:  # the server raises it for the request
            answer = (False, exc)
        try:
            reply = frame(answer)
        except Exception as exc:  # an exception that does not pickle
            reply = frame((False, RuntimeError(repr(exc))))
        sock.sendall(reply)


if __name__ == "__main__":
    main(int(sys.argv[1]))
