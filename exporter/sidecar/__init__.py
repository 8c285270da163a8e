"""Sidecar features of the exporter: scheduled checkpoint sync and output-connector reset watches.

:class:`Sidecar` wires both from :class:`~exporter.config.Settings`; the poller is given it at construction and
calls :meth:`~Sidecar.report` once per target and cycle, which returns the target's snapshot with the typed
sidecar fields filled (``TargetSnapshot.sync``, ``TargetSnapshot.resets``). :meth:`~Sidecar.add_routes` puts the
reset-watch HTTP routes on the exporter's router, :meth:`~Sidecar.start` restores watches from the state file and
starts the sync scheduler's timer (only when schedules are configured), and :meth:`~Sidecar.stop` stops it and lets
a pending state-file write end (for a few seconds at most).

Adding a third feature: its module here (state and work; its frozen report type in :mod:`exporter.snapshot`), one
field on ``TargetSnapshot``, one line in :meth:`Sidecar.report`, its metrics in ``exporter/metrics/sidecar.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import TypeVar

from aiohttp import web

from exporter.client import FelderaClient
from exporter.config import Settings
from exporter.sidecar.resets import ResetWatches
from exporter.sidecar.routes import ResetWatchRoutes
from exporter.sidecar.sync import CheckpointSyncScheduler
from exporter.sidecar.target import Target
from exporter.snapshot import SyncReport, TargetSnapshot

log = logging.getLogger(__name__)

__all__ = ["Sidecar"]

T = TypeVar("T")


class Sidecar:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self._resolution = settings.poll.interval
        schedules = settings.checkpoint_sync.schedules
        self.scheduler = CheckpointSyncScheduler(schedules, clock) if schedules else None
        self.resets = ResetWatches(
            [target.name for target in settings.targets],
            settings.reset_watches.state_file,
            settings.reset_watches.keep_completed,
            clock,
        )
        self._routes = ResetWatchRoutes(self.resets, clock, writable=settings.web.enable_reset_watch_api)
        self._clock = clock
        self._timers = False
        """Whether the sync timer runs (``start(timers=...)``), so a reload with schedules starts it."""
        self._task: asyncio.Task[None] | None = None

    async def report(self, target: Target, snapshot: TargetSnapshot, now: float) -> TargetSnapshot:
        """``snapshot`` (of a target that is up) with this cycle's sidecar results. A feature that fails (a bug) is
        logged and leaves its field None; the other feature and the rest of the snapshot stand."""
        return replace(
            snapshot,
            sync=await _isolated(target.name, "checkpoint sync schedule", self._sync(target, snapshot, now)),
            resets=await _isolated(target.name, "reset watches", self.resets.check(target, now)),
        )

    def target_down(self, name: str) -> None:
        """The target's pipeline list failed this cycle: no scheduled sync of its pipelines until one succeeds."""
        if self.scheduler is not None:
            self.scheduler.unseen(name)

    async def _sync(self, target: Target, snapshot: TargetSnapshot, now: float) -> SyncReport | None:
        if self.scheduler is None:
            return None
        return self.scheduler.observe(target.name, target.client, snapshot.pipelines, now)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """The sidecar's HTTP routes (the reset-watch API) on the exporter's ``router``."""
        self._routes.add_to(router)

    async def start(self, *, timers: bool = True) -> None:
        """Restore watches; start the sync scheduler's timer unless ``timers`` is False (tests drive ``tick``)."""
        self.resets.load()
        self._timers = timers
        if self.scheduler is not None and timers:
            log.info("checkpoint sync scheduling on: the exporter will POST checkpoint/sync (needs a write API key)")
            self._start_timer()

    async def reconfigure(self, settings: Settings, clients: Mapping[str, FelderaClient]) -> None:
        """Apply a reloaded configuration: the sync schedules (timetables kept where a schedule still matches; the
        timer started or stopped as the first schedule appears or the last goes), the targets and
        ``keep_completed`` of the reset watches (the watches themselves and their state file stay), whether the
        reset-watch write API is on. ``clients``: the poller's, by target name, for the scheduler's syncs."""
        schedules = settings.checkpoint_sync.schedules
        if not schedules:
            await self._stop_timer()
            self.scheduler = None
        elif self.scheduler is None:
            self._resolution = settings.poll.interval
            self.scheduler = CheckpointSyncScheduler(schedules, self._clock)
            if self._timers:
                self._start_timer()
        else:  # the timer goes on (a sync in flight is not cut off), at the interval it started with
            self.scheduler.reschedule(schedules, clients)
        self.resets.retarget([target.name for target in settings.targets], settings.reset_watches.keep_completed)
        self._routes.writable = settings.web.enable_reset_watch_api

    async def stop(self) -> None:
        """Stop the sync timer; give the reset watches' pending state-file write a few seconds to end."""
        await self._stop_timer()
        await self.resets.close()

    def _start_timer(self) -> None:
        if self.scheduler is not None:
            self._task = asyncio.create_task(self.scheduler.run(self._resolution), name="checkpoint-sync-scheduler")

    async def _stop_timer(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


async def _isolated(target: str, feature: str, work: Awaitable[T]) -> T | None:
    try:
        return await work
    except Exception:
        log.exception("%s: %s failed this cycle", target, feature)
        return None
