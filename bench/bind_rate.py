"""Binds per second a server sustains: ``--connections`` ESMEs, each in a loop: connect,
bind_transceiver (or bind_transmitter), unbind, close. Every bind must succeed (a refused
one is counted and reported).

    python bench/bind_rate.py --port 2775 --system-id demo --password demo --seconds 10

Start the server with a large ``bans.after`` or the right password only (wrong ones ban the
loader's address), and with ``smpp.max_connections_per_ip`` above ``--connections``.
"""
from __future__ import annotations

import argparse
import asyncio
import struct
import time

BIND = {"trx": 0x00000009, "tx": 0x00000002}


def _bind_pdu(command: int, seq: int, system_id: str, password: str, system_type: str) -> bytes:
    body = b"".join(v.encode() + b"\0" for v in (system_id, password, system_type)) + b"\x34\x00\x00\x00"
    return struct.pack(">IIII", 16 + len(body), command, 0, seq) + body


async def _read_pdu(reader: asyncio.StreamReader) -> tuple[int, int]:
    head = await reader.readexactly(16)
    length, command, status, _ = struct.unpack(">IIII", head)
    if length > 16:
        await reader.readexactly(length - 16)
    return command, status


async def _esme(args, stop: float, counts: dict) -> None:
    command = BIND[args.mode]
    while time.monotonic() < stop:
        reader, writer = await asyncio.open_connection(args.host, args.port)
        try:
            writer.write(_bind_pdu(command, 1, args.system_id, args.password, args.system_type))
            _, status = await _read_pdu(reader)
            counts["ok" if status == 0 else f"status 0x{status:02X}"] = counts.get(
                "ok" if status == 0 else f"status 0x{status:02X}", 0) + 1
            if status == 0:
                writer.write(struct.pack(">IIII", 16, 0x00000006, 0, 2))  # unbind
                while (await _read_pdu(reader))[0] != 0x80000006:
                    pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2775)
    p.add_argument("--system-id", default="demo")
    p.add_argument("--password", default="demo")
    p.add_argument("--system-type", default="HLR")
    p.add_argument("--mode", choices=sorted(BIND), default="tx")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args()
    counts: dict = {}
    start = time.monotonic()
    await asyncio.gather(*(_esme(args, start + args.seconds, counts) for _ in range(args.connections)))
    took = time.monotonic() - start
    print(f"{counts.get('ok', 0) / took:.0f} binds/s ({counts} in {took:.1f} s, "
          f"{args.connections} connections, bind_{'transceiver' if args.mode == 'trx' else 'transmitter'} + unbind)")


if __name__ == "__main__":
    asyncio.run(main())
