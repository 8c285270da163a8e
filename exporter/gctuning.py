"""Keep the garbage collector's full collections off the scrape path.

A poll cycle at 10,000 pipelines creates about a million container objects (the snapshot: parsed models, tuples,
dicts) that live for one cycle. CPython starts a full, generation-2 collection whenever the objects promoted
since the last one exceed a quarter of the long-lived ones: two or three times per cycle at that size, each
walking every tracked object with the interpreter lock held. Measured with ``bench/run.py`` at 10,000 x 4: full
collections of 0.35 to 0.6 s, finding almost nothing to free (the snapshot has no reference cycles; reference
counting frees it when the next one replaces it), and every scrape in flight waited for them.

:func:`full_collections_every` switches automatic full collections off for the process (the young generations
are still collected automatically: cheap, and where almost all cyclic garbage dies) and runs one explicit full
collection per ``period`` instead, so reference cycles that reach the old generation are still freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

FULL_COLLECTION_PERIOD = 300.0
"""Seconds between two full collections: one pause (~0.4 s at 10,000 pipelines) per 5 minutes instead of two or
three per poll cycle; cyclic garbage that reaches the old generation lives at most this long."""
_NEVER = 1 << 30
"""A generation-2 threshold no process reaches: counts generation-1 collections between full ones."""


@contextlib.asynccontextmanager
async def full_collections_every(period: float = FULL_COLLECTION_PERIOD) -> AsyncIterator[None]:
    """While inside: no automatic full collections, one ``gc.collect()`` every ``period`` seconds (on the event
    loop, between callbacks). The previous thresholds are restored on exit."""
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], _NEVER)

    async def collect() -> None:
        while True:
            await asyncio.sleep(period)
            gc.collect()

    task = asyncio.create_task(collect(), name="full-gc")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        gc.set_threshold(*thresholds)
