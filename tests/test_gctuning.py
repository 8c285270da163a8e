"""Full garbage collections off the scrape path: none automatic while serving, one per period instead."""

from __future__ import annotations

import asyncio
import gc
import weakref

from exporter.gctuning import full_collections_every


class Node:
    """A container object that can be part of a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def _promote_many() -> list[list[int]]:
    """Enough surviving containers that CPython's own rules would start a full collection."""
    keep = [[i] for i in range(600_000)]
    gc.collect(1)
    return keep


def test_without_the_tuning_many_surviving_objects_start_a_full_collection() -> None:
    """The counterpart of the test below: CPython's default does collect generation 2 here."""
    full = gc.get_stats()[2]["collections"]
    keep = _promote_many() + _promote_many()
    assert gc.get_stats()[2]["collections"] > full
    del keep


async def test_no_automatic_full_collection_inside_and_thresholds_restored_after() -> None:
    before = gc.get_threshold()
    async with full_collections_every(3600):
        assert gc.get_threshold()[:2] == before[:2]
        full = gc.get_stats()[2]["collections"]
        keep = _promote_many() + _promote_many()
        assert gc.get_stats()[2]["collections"] == full
        del keep
    assert gc.get_threshold() == before


async def test_a_reference_cycle_in_the_old_generation_is_freed_by_the_periodic_collection() -> None:
    freed = asyncio.Event()
    async with full_collections_every(0.05):
        node = Node()
        node.other = node
        weakref.finalize(node, freed.set)
        gc.collect(1)  # it survives (still referenced): now in the old generation
        del node
        gc.collect(1)  # young collections do not look at the old generation
        assert not freed.is_set()
        await asyncio.wait_for(freed.wait(), 10)
