"""Sidecar features of the exporter: scheduled checkpoint sync and output-connector reset watches.

:class:`Sidecar` wires both from :class:`~exporter.config.Settings`: its :attr:`~Sidecar.contributors` are
registered with the poller, :meth:`~Sidecar.handle` serves the reset-watch HTTP routes, and :meth:`~Sidecar.start`
restores watches from the state file and starts the sync scheduler's timer (only when schedules are configured).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aiohttp import web

from exporter.config import Settings
from exporter.sidecar.resets import ResetWatches
from exporter.sidecar.routes import ResetWatchRoutes
from exporter.sidecar.sync import CheckpointSyncScheduler

log = logging.getLogger(__name__)

__all__ = ["Sidecar"]


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
        self._task: asyncio.Task[None] | None = None

    @property
    def contributors(self) -> tuple[CheckpointSyncScheduler | ResetWatches, ...]:
        return (self.resets,) if self.scheduler is None else (self.scheduler, self.resets)

    @staticmethod
    def matches(path: str) -> bool:
        """Whether ``path`` is one of the sidecar's HTTP routes."""
        return ResetWatchRoutes.matches(path)

    async def handle(self, request: web.Request) -> web.Response:
        return await self._routes.handle(request)

    async def start(self, *, timers: bool = True) -> None:
        """Restore watches; start the sync scheduler's timer unless ``timers`` is False (tests drive ``tick``)."""
        self.resets.load()
        if self.scheduler is not None and timers:
            log.info("checkpoint sync scheduling on: the exporter will POST checkpoint/sync (needs a write API key)")
            self._task = asyncio.create_task(self.scheduler.run(self._resolution), name="checkpoint-sync-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
