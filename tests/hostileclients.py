"""Hostile HTTP clients in a process of their own (so that their event loop is not the server's): ``python -m
tests.hostileclients KIND COUNT PORT [--source ADDRESS ...]`` keeps COUNT connections of one KIND open against
127.0.0.1:PORT, from the source addresses given in turn (any of 127/8 on Linux), each reopened at once when the
server closes it, until killed. It prints ``ready`` once COUNT connections have been opened (and, for ``idle``,
have had their first answer).

Kinds:

* ``idle``: one authenticated request (``--auth``), then kept alive and silent;
* ``slow``: a request head trickled one byte every second, never finished;
* ``unauthenticated``: requests without credentials, one after the other on the connection;
* ``bcrypt``: requests with a wrong password (each needs a bcrypt check), one after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import sys

REQUEST = "GET /metrics HTTP/1.1\r\nHost: exporter\r\nAccept-Encoding: gzip\r\n{auth}\r\n"


def _auth(user_password: str | None) -> str:
    if user_password is None:
        return ""
    return f"Authorization: Basic {base64.b64encode(user_password.encode()).decode()}\r\n"


async def _answer(reader: asyncio.StreamReader) -> bool:
    """Read one answer (head and a Content-Length body); False when the server closed the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return b"connection: close" not in head.lower()


async def _client(kind: str, port: int, source: str, auth: str | None, opened: asyncio.Queue[None]) -> None:
    wrong = itertools.count()
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        except OSError:
            await asyncio.sleep(0.05)  # the backlog is full: try again
            continue
        try:
            if kind == "idle":
                writer.write(REQUEST.format(auth=_auth(auth)).encode())
                await _answer(reader)
                opened.put_nowait(None)
                await reader.read()  # silent until the server closes it
            elif kind == "slow":
                opened.put_nowait(None)
                for byte in REQUEST.format(auth="").encode():
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(1.0)
                await reader.read()
            else:
                opened.put_nowait(None)
                while True:
                    credentials = None if kind == "unauthenticated" else f"prometheus:wrong-{next(wrong)}"
                    writer.write(REQUEST.format(auth=_auth(credentials)).encode())
                    if not await _answer(reader):
                        break
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("idle", "slow", "unauthenticated", "bcrypt"))
    parser.add_argument("count", type=int)
    parser.add_argument("port", type=int)
    parser.add_argument("--source", action="append", default=[], help="source address (repeatable)")
    parser.add_argument("--auth", help="user:password for the idle kind")
    args = parser.parse_args()
    sources = args.source or ["127.0.0.1"]
    opened: asyncio.Queue[None] = asyncio.Queue()
    clients = [
        asyncio.create_task(_client(args.kind, args.port, sources[i % len(sources)], args.auth, opened))
        for i in range(args.count)
    ]
    for _ in range(args.count):
        await opened.get()
    print("ready", flush=True)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*clients)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    sys.exit(0)
