"""The running exporter: a background poll loop per target + HTTP endpoint serving each target's latest rendered
cycle (:mod:`exporter.served`).

Each target is polled on its own cadence (``poll.interval`` from the start of its last cycle), its cycle cut off at
``poll.cycle_deadline``, its part rendered and served as soon as the cycle ends: a slow target never delays another.
A reload waits for the cycles in progress and holds new ones back meanwhile (:class:`_Gate`); a loop is started for
each target it adds and stopped for each it removes (whose part goes with it).

Routes: ``/metrics`` (text 0.0.4 or OpenMetrics by ``Accept``, gzip by ``Accept-Encoding``), ``/`` (landing
page), ``/-/healthy`` (200 while running), ``/-/ready`` (503 until every target's first cycle), plus the
sidecar's reset-watch API (:mod:`exporter.sidecar.routes`), all on aiohttp's router behind the web-config
middleware; any other path is a plain-text 404. Scrapes never call Feldera.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload
from pydantic import BaseModel

from exporter import __version__
from exporter.config import ConfigError, Settings, TargetSettings
from exporter.landing import render_landing
from exporter.logsafe import clean
from exporter.metrics import emitted_specs, fields_read, selection_warnings
from exporter.plan import PollPlan, make_plan
from exporter.poller import ClientFactory, Poller, TargetRuntime
from exporter.render import Rendered
from exporter.served import Part, Served
from exporter.sidecar import Sidecar
from exporter.snapshot import Snapshot, TargetSnapshot
from exporter.webconfig import WebSecurity
from exporter.webserver import EVERY_PATH, ServerLimits, WebServer

log = logging.getLogger(__name__)

OPENMETRICS = "application/openmetrics-text"
WRITE_SLICE = 1 << 16


_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
"""RFC 9110 §12.4.2: ``q`` is 0 to 1 with at most three ASCII decimals (``float`` would also take ``nan``, ``1e3``
or ``٣``)."""
_OWS = " \t"


def _media_ranges(header: str) -> list[tuple[str, float]]:
    """``Accept``/``Accept-Encoding`` -> [(lower-case value without parameters, q)]; a ``q`` that is not a qvalue
    counts as 0 (not acceptable)."""
    ranges = []
    for part in header.split(","):
        value, *params = (p.strip(_OWS) for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, text = param.partition("=")
            if key.strip(_OWS).lower() == "q":
                text = text.strip(_OWS)
                q = float(text) if _QVALUE.fullmatch(text) else 0.0
        if value:
            ranges.append((value.lower(), q))
    return ranges


def wants_openmetrics(accept: str) -> bool:
    """OpenMetrics when the client accepts it at least as much as the classic text format."""
    ranges = _media_ranges(accept)
    om = max((q for v, q in ranges if v == OPENMETRICS), default=0.0)
    text = max((q for v, q in ranges if v in ("text/plain", "text/*", "*/*")), default=0.0)
    return om > 0 and om >= text


def wants_gzip(accept_encoding: str) -> bool:
    return any(v in ("gzip", "*") and q > 0 for v, q in _media_ranges(accept_encoding))


RESTART_KEYS = (
    "web.listen_address",
    "web.config_file",
    "web.max_connections",
    "web.max_connections_per_address",
    "reset_watches.state_file",
)
"""Keys a reload does not apply (the listening socket, its TLS and limits, the state file's owner): a restart does."""


def changed_keys(old: Settings, new: Settings) -> list[str]:
    """The config keys whose values differ, targets by name (``targets[prod].url``); never the values (an API key,
    a URL with credentials)."""
    changes: list[str] = []
    for section in Settings.model_fields:
        before, after = getattr(old, section), getattr(new, section)
        if section == "targets":
            changes += _target_changes(before, after)
        elif isinstance(before, BaseModel):
            changes += [
                f"{section}.{key}" for key in type(before).model_fields if getattr(before, key) != getattr(after, key)
            ]
        elif before != after:
            changes.append(section)
    return changes


def _target_changes(old: list[TargetSettings], new: list[TargetSettings]) -> list[str]:
    before, after = {t.name: t for t in old}, {t.name: t for t in new}
    changes = [f"targets[{name}] added" for name in after if name not in before]
    changes += [f"targets[{name}] removed" for name in before if name not in after]
    for name in before.keys() & after.keys():
        changes += [
            f"targets[{name}].{key}"
            for key in TargetSettings.model_fields
            if getattr(before[name], key) != getattr(after[name], key)
        ]
    if not changes and list(before) != list(after):
        changes.append("targets (order: the first is the reset watches' default)")
    return sorted(changes)


def poll_plan(settings: Settings) -> PollPlan:
    """What the poller asks for ``settings``: the requests whose answers the emitted metric families read."""
    return make_plan(settings, fields_read(settings))


class _Gate:
    """Targets' cycles run side by side; a reload waits for those running and holds new ones back meanwhile."""

    def __init__(self) -> None:
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._open = asyncio.Event()
        self._open.set()

    @contextlib.asynccontextmanager
    async def cycle(self) -> AsyncIterator[None]:
        await self._open.wait()
        self._running += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._running -= 1
            if not self._running:
                self._idle.set()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        self._open.clear()
        try:
            await self._idle.wait()
            yield
        finally:
            self._open.set()


class Exporter:
    """``await start()`` serves and polls in the background; ``await stop()`` ends both.

    ``poll_once()`` runs one cycle of every target now (tests call it directly instead of waiting for the loops);
    ``client_factory`` makes each target's client (tests: e.g. a shorter retry backoff).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        limits: ServerLimits | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self.sidecar = Sidecar(settings, clock)
        self.poller = Poller(
            settings, poll_plan(settings), sidecar=self.sidecar, client_factory=client_factory, clock=clock
        )
        self._polled = self.poller.plan.fields
        self._disabled = settings.collectors.disabled()
        for warning in selection_warnings(settings):
            log.warning("%s", warning)
        sharding = settings.sharding
        self._served = Served(emitted_specs(settings), sharding.shard, sharding.total_shards)
        self._gate = _Gate()
        self._ready = False
        self._reload_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._poll_loops = False
        web_settings = settings.web
        self._limits = limits or ServerLimits(
            max_connections=web_settings.max_connections,
            max_connections_per_address=web_settings.max_connections_per_address,
        )
        self._server: WebServer | None = None
        self._security: WebSecurity | None = None
        self._scheme = "http"

    # ---- lifecycle ------------------------------------------------------------------------------------------

    async def start(self, *, poll_loop: bool = True) -> None:
        """Start the HTTP server, then (unless ``poll_loop`` is False) the background poll loop.

        Without ``poll_loop`` the sidecar's sync timer does not run either (tests call ``sidecar.scheduler.tick``).
        """
        await self.sidecar.start(timers=poll_loop)
        settings = self.settings.web
        app = web.Application(client_max_size=self._limits.max_body_bytes)
        ssl_context = None
        if settings.config_file is not None:  # TLS and basic auth (exporter-toolkit format); raises WebConfigError
            security = self._security = WebSecurity(settings.config_file)
            app.middlewares.append(security.middleware)
            app.cleanup_ctx.append(security.running)  # checks the files for changes in the background
            ssl_context = security.ssl_context if security.tls else None
        self._add_routes(app.router)
        self._server = WebServer(app, settings.host, settings.port, ssl_context=ssl_context, limits=self._limits)
        self._scheme = "https" if ssl_context is not None else "http"
        await self._server.start()
        log.info(
            "listening on %s, polling %d target(s)",
            self._server.listening.describe(self._scheme),
            len(self.settings.targets),
        )
        if poll_loop:
            self._poll_loops = True
            self._start_loops()

    async def stop(self) -> None:
        self._stopping.set()
        await self._stop_loops(list(self._loops))
        await self.sidecar.stop()
        if self._server is not None:
            await self._server.close()
            self._server = None
        await self.poller.aclose()

    async def __aenter__(self) -> Exporter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("exporter not started")
        return self._server.port

    @property
    def open_connections(self) -> int:
        """Connections to the HTTP endpoint holding one of its slots (see ``ServerLimits.max_connections``)."""
        if self._server is None:
            raise RuntimeError("exporter not started")
        return self._server.open_connections

    @property
    def url(self) -> str:
        """Where a client on this machine reaches the endpoint (the loopback address when serving on all
        interfaces)."""
        if self._server is None:
            raise RuntimeError("exporter not started")
        return self._server.listening.url(self._scheme)

    @property
    def ready(self) -> bool:
        """Every configured target has been polled once (its part is served); stays so (a reload adding a target
        does not make a running exporter unready)."""
        return self._ready

    # ---- reloading (SIGHUP) ---------------------------------------------------------------------------------

    async def reload(self, load: Callable[[], Settings]) -> bool:
        """Read the configuration again (``load``, in a thread: it reads files) and apply it between two poll
        cycles; then check the web config for changes now. One log line says what changed, or why the new
        configuration was refused and the one in force kept (False).

        Rebuilt from the new settings: the poll plan and metric selection, the clients of changed targets (a target
        keeps its name's cross-cycle history), the sync schedules, the reset watches' targets, the poll interval
        and log level. Kept: the served exposition and landing page (until the next cycle replaces them), the
        reset watches, and :data:`RESTART_KEYS` (logged when they changed)."""
        async with self._reload_lock:  # one reload at a time, in the order the signals came
            return await self._reload(load)

    async def _reload(self, load: Callable[[], Settings]) -> bool:
        try:
            settings = await asyncio.to_thread(load)
        except ConfigError as exc:
            log.error("configuration not reloaded, keeping the one in force: %s", "; ".join(exc.problems))
            return False
        except Exception as exc:  # a bug or an unexpected I/O error: still only this reload
            log.error("configuration not reloaded, keeping the one in force: %s: %s", type(exc).__name__, clean(exc))
            return False
        changes = changed_keys(self.settings, settings)
        pinned = [key for key in changes if key in RESTART_KEYS]
        if pinned:
            kept = [key.removeprefix("web.") for key in RESTART_KEYS if key.startswith("web.")]
            web = settings.web.model_copy(update={key: getattr(self.settings.web, key) for key in kept})
            resets = settings.reset_watches.model_copy(update={"state_file": self.settings.reset_watches.state_file})
            settings = settings.model_copy(update={"web": web, "reset_watches": resets})
        async with self._gate.exclusive():  # between two cycles of every target
            plan = poll_plan(settings)
            retired = self.poller.reconfigure(settings, plan)
            await self.sidecar.reconfigure(settings, {target.name: target.client for target in self.poller.targets})
            self.settings, self._polled = settings, plan.fields
            self._disabled = settings.collectors.disabled()
            self._served.select(emitted_specs(settings))
            logging.getLogger().setLevel(settings.log_level.upper())
            removed = [name for name in self._served.published() | set(self._loops) if self.poller.target(name) is None]
        await self._stop_loops(removed)
        if removed:
            await self._publish(None)  # their parts go now
        if self._poll_loops:
            self._start_loops()
        await asyncio.gather(*(client.aclose() for client in retired), return_exceptions=True)
        applied = [key for key in changes if key not in pinned]
        log.info("configuration reloaded: %s", ", ".join(applied) or "no change")
        if pinned:
            log.warning("not applied until a restart: %s", ", ".join(pinned))
        if any(key.startswith(("metrics.", "collectors.")) for key in applied):
            for warning in selection_warnings(settings):
                log.warning("%s", warning)
        if self._security is not None:
            await self._security.check()
        return True

    # ---- polling --------------------------------------------------------------------------------------------

    async def poll_once(self) -> Snapshot:
        """One cycle of every target now, each published as it ends (as the loops do). Returns the snapshot of the
        cycles, which the exporter itself does not keep: it serves each target's rendered part and page view, so a
        target's next cycle is polled beside one cycle's data, not two (docs/performance.md)."""
        async with self._gate.cycle():
            targets = await asyncio.gather(*(self._cycle(target) for target in self.poller.targets))
        sharding = self.settings.sharding
        return Snapshot(
            targets=tuple(targets),
            taken_at=self._clock(),
            shard=sharding.shard,
            total_shards=sharding.total_shards,
            state_file_errors=tuple(self.sidecar.resets.state_file_errors.items()),
        )

    async def _cycle(self, target: TargetRuntime) -> TargetSnapshot:
        """Poll one target (cut off at ``poll.cycle_deadline``), make its part and serve it."""
        snapshot = await self.poller.poll_target(target)
        # up to ~2 s of CPU at 10,000 pipelines: in a worker thread, so scrapes and other targets go on meanwhile
        part = await asyncio.to_thread(self._served.target_part, snapshot, self._clock())
        await self._publish((target.name, part))
        return snapshot

    async def _publish(self, part: tuple[str, Part] | None) -> None:
        order = [target.name for target in self.settings.targets]
        await self._served.publish(order, self.sidecar.resets.state_file_errors.items(), part)
        self._ready = self._ready or self._served.published() >= set(order)

    def _start_loops(self) -> None:
        """A poll loop for each configured target that has none."""
        for target in self.settings.targets:
            if target.name not in self._loops:
                self._loops[target.name] = asyncio.create_task(self._poll_loop(target.name), name=f"poll {target.name}")

    async def _stop_loops(self, names: list[str]) -> None:
        tasks = [self._loops.pop(name) for name in names if name in self._loops]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _poll_loop(self, name: str) -> None:
        """One target's cycles, every ``poll.interval`` from the start of the last (at once when it took longer),
        whatever the other targets do."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self._stopping.is_set():
            try:
                async with self._gate.cycle():  # past a reload that was waiting: the target as it configured it
                    target = self.poller.target(name)
                    if target is None:  # removed by a reload
                        return
                    await self._cycle(target)
            except Exception:
                log.exception("%s: poll cycle failed", name)
            next_at = max(next_at + self.settings.poll.interval, loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), next_at - loop.time())

    # ---- HTTP -----------------------------------------------------------------------------------------------

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        """Every route through aiohttp's router: the exporter's pages (GET and HEAD; any other method 405), the
        sidecar's API, and a plain-text 404 for every other path. The web-config middleware is in front of all."""
        self.sidecar.add_routes(router)
        pages: tuple[tuple[str, Callable[[web.Request], Awaitable[web.StreamResponse]]], ...] = (
            ("/metrics", self._metrics),
            ("/-/healthy", self._healthy),
            ("/-/ready", self._readiness),
            ("/", self._landing_page),
        )
        for path, handler in pages:
            resource = router.add_resource(path)
            resource.add_route("GET", handler)
            resource.add_route("HEAD", handler)
            resource.add_route("*", _method_not_allowed)
        router.add_route("*", EVERY_PATH, _not_found)

    async def _healthy(self, request: web.Request) -> web.Response:
        return web.Response(text="OK\n")

    async def _readiness(self, request: web.Request) -> web.Response:
        if self.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: the first poll cycle has not completed\n")

    async def _landing_page(self, request: web.Request) -> web.Response:
        page = render_landing(
            self._served.landing,
            now=self._clock(),
            version=__version__,
            polled=self._polled,
            disabled=self._disabled,
        )
        return web.Response(text=page, content_type="text/html", charset="utf-8")

    async def _metrics(self, request: web.Request) -> web.Response:
        openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
        gzipped = wants_gzip(request.headers.get("Accept-Encoding", ""))
        response = web.Response(body=_Exposition(self._served.rendered, openmetrics=openmetrics, gzipped=gzipped))
        response.headers["Vary"] = "Accept, Accept-Encoding"
        if gzipped:
            response.headers["Content-Encoding"] = "gzip"
        return response


async def _method_not_allowed(request: web.Request) -> web.Response:
    return web.Response(status=405, text="method not allowed\n", headers={"Allow": "GET, HEAD"})


async def _not_found(request: web.Request) -> web.Response:
    return web.Response(status=404, text="not found\n")


class _Exposition(Payload):
    """A cycle's exposition written 64 KiB at a time, each slice once the socket has drained the previous one, so a
    client that reads slowly (or never) costs at most a slice of buffered output plus, for plain text, the chunk
    being written (inflated about 1 MB at a time in a worker thread: inflating costs CPU). Gzip slices are views of
    the stored bytes (no copy)."""

    def __init__(self, rendered: Rendered, *, openmetrics: bool, gzipped: bool) -> None:
        super().__init__(rendered, content_type=rendered.content_type(openmetrics=openmetrics))
        self._openmetrics = openmetrics
        self._gzipped = gzipped
        self._size = (
            rendered.gzip_size(openmetrics=openmetrics) if gzipped else rendered.plain_size(openmetrics=openmetrics)
        )

    async def write(self, writer: AbstractStreamWriter) -> None:
        rendered: Rendered = self._value
        if self._gzipped:
            for piece in rendered.gzip_chunks(openmetrics=self._openmetrics):
                await _write_slices(writer, piece)
            return
        chunks = rendered.plain_chunks(openmetrics=self._openmetrics)
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            await _write_slices(writer, chunk)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        """The exposition text (whatever the encoding on the wire)."""
        rendered: Rendered = self._value
        return b"".join(rendered.plain_chunks(openmetrics=self._openmetrics)).decode(encoding, errors)


async def _write_slices(writer: AbstractStreamWriter, data: bytes) -> None:
    view = memoryview(data)
    for start in range(0, len(view), WRITE_SLICE):
        await writer.write(view[start : start + WRITE_SLICE])  # drains once over 64 KiB are buffered
