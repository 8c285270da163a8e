"""Blocking file I/O that may hang (a hung NFS or secret mount) in a daemon thread of its own.

``asyncio.to_thread`` runs a call in the loop's default pool, which ``asyncio.run`` joins when it ends: a call stuck
on a hung mount would then hold up the exit on ``SIGTERM`` for ever, and meanwhile occupy a worker that rendering
and plain scrapes need. :func:`in_own_thread` starts a new daemon thread per call instead; the interpreter's exit
does not wait for it. For calls made at most about once a second (the web-config check, reset-watch state saves).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


async def in_own_thread(call: Callable[[], T], *, name: str) -> T:
    """``call()`` in a new daemon thread called ``name``; its result or exception, awaited without blocking."""
    done: Future[T] = Future()

    def run() -> None:
        if not done.set_running_or_notify_cancel():
            return
        try:
            done.set_result(call())
        except BaseException as exc:
            done.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await asyncio.wrap_future(done)
