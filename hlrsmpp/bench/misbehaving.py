"""Misbehaving SMPP clients, for the soak test and ``hlrsmpp bench --hostile N``.

Each one reconnects for as long as it runs and misbehaves in one of five ways:
garbage bytes, truncated PDUs, impossible command_length, one byte a second,
binds with a wrong password. The well-formed PDUs come from the ESME session; the
malformed bytes are made here on purpose. Traffic goes only to the address it is
given (the tests and the bench use loopback).
"""
from __future__ import annotations

import asyncio
import random
import struct

from ..smpp.esme import EsmeSession
from ..smpp.session import BindMode

KINDS = ("garbage", "truncated", "huge", "slow", "badbind")


async def misbehaving_client(host: str, port: int, kind: str, stop: asyncio.Event, rng: random.Random,
                         system_id: str = "a") -> None:
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        try:
            esme = EsmeSession()
            if kind == "garbage":
                writer.write(rng.randbytes(rng.randint(1, 4096)))
            elif kind == "truncated":
                esme.submit_sm("447912345678")
                pdu = esme.data_to_send()
                writer.write(pdu[:rng.randint(1, len(pdu) - 1)])
            elif kind == "huge":  # a submit_sm header whose command_length no PDU has
                writer.write(struct.pack(">IIII", rng.choice((17, 0xFFFFFFFF, 1 << 20)), 4, 0, 1) + b"x")
            elif kind == "slow":  # one byte a second
                esme.enquire_link()
                for byte in esme.data_to_send():
                    writer.write(bytes((byte,)))
                    await writer.drain()
                    try:
                        await asyncio.wait_for(stop.wait(), 1.0)
                        break
                    except asyncio.TimeoutError:
                        pass
            elif kind == "badbind":
                esme.bind(BindMode.TX, system_id, rng.choice(("x", "y")), "HLR")
                writer.write(esme.data_to_send())
            await writer.drain()
            try:
                await asyncio.wait_for(reader.read(4096), 0.5)
            except asyncio.TimeoutError:
                pass
        except OSError:
            pass
        finally:
            writer.close()


async def run_misbehaving(host: str, port: int, n: int, stop: asyncio.Event, seed: int = 0) -> None:
    """``n`` misbehaving clients, the five kinds in turn, until ``stop`` is set."""
    tasks = [asyncio.create_task(misbehaving_client(host, port, KINDS[i % len(KINDS)], stop,
                                                random.Random(seed + i))) for i in range(n)]
    await stop.wait()
    await asyncio.wait(tasks, timeout=10)


def misbehaving_process_main(host: str, port: int, n: int, stop_event) -> None:
    """Entry of a separate process (so the misbehaving load does not share the bench's
    CPU accounting); ``stop_event`` is a multiprocessing.Event."""
    async def main() -> None:
        stop = asyncio.Event()
        runner = asyncio.create_task(run_misbehaving(host, port, n, stop))
        while not stop_event.is_set():
            await asyncio.sleep(0.05)
        stop.set()
        await runner
    asyncio.run(main())
