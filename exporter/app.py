"""The running exporter: background poll loop + HTTP endpoint serving the latest rendered cycle.

Routes: ``/metrics`` (text 0.0.4 or OpenMetrics by ``Accept``, gzip by ``Accept-Encoding``), ``/`` (landing
page), ``/-/healthy`` (200 while running), ``/-/ready`` (503 until the first cycle has completed), plus any
extra :class:`Routes` (the sidecar's reset-watch API). Scrapes never call Feldera.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from exporter import __version__
from exporter.config import Settings
from exporter.httpserver import HttpServer, Request, Response, Stream
from exporter.metrics import emitted_specs, families, selection_warnings
from exporter.poller import PollContributor, Poller
from exporter.render import Rendered, render
from exporter.sidecar import Sidecar
from exporter.snapshot import Snapshot
from exporter.webconfig import load_web_config

log = logging.getLogger(__name__)

OPENMETRICS = "application/openmetrics-text"


class Routes(Protocol):
    """Extra endpoints mounted on the exporter's server (e.g. ``exporter.sidecar.routes.ResetWatchRoutes``)."""

    def matches(self, path: str) -> bool: ...

    async def handle(self, request: Request) -> Response: ...


def _media_ranges(header: str) -> list[tuple[str, float]]:
    """``Accept``/``Accept-Encoding`` -> [(lower-case value without parameters, q)]."""
    ranges = []
    for part in header.split(","):
        value, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, text = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(text)
                except ValueError:
                    q = 0.0
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


class Exporter:
    """``await start()`` serves and polls in the background; ``await stop()`` ends both.

    ``poll_once()`` runs one cycle now (tests call it directly instead of waiting for the loop).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        contributors: Sequence[PollContributor] = (),
        routes: Sequence[Routes] = (),
        poller: Poller | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.poller = poller or Poller(settings, contributors=contributors, clock=clock)
        self.sidecar = Sidecar(settings, clock)
        for contributor in self.sidecar.contributors:
            self.poller.add_contributor(contributor)
        self._routes = (*routes, self.sidecar)
        self._specs = emitted_specs(settings)
        for warning in selection_warnings(settings):
            log.warning("%s", warning)
        self.latest = Snapshot(shard=settings.sharding.shard, total_shards=settings.sharding.total_shards)
        self._rendered: Rendered = self._render(self.latest)
        self._ready = False
        self._cycle_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._server: HttpServer | None = None
        self._scheme = "http"

    # ---- lifecycle ------------------------------------------------------------------------------------------

    async def start(self, *, poll_loop: bool = True) -> None:
        """Start the HTTP server, then (unless ``poll_loop`` is False) the background poll loop.

        Without ``poll_loop`` the sidecar's sync timer does not run either (tests call ``sidecar.scheduler.tick``).
        """
        await self.sidecar.start(timers=poll_loop)
        web = self.settings.web
        handler, ssl_context = self.handle, None
        if web.config_file is not None:  # TLS and basic auth (exporter-toolkit format); raises WebConfigError
            security = load_web_config(web.config_file)
            handler, ssl_context = security.protect(self.handle), security.ssl_context()
        self._server = HttpServer(handler, web.host, web.port, ssl_context=ssl_context)
        self._scheme = "https" if ssl_context is not None else "http"
        await self._server.start()
        log.info("listening on %s, polling %d target(s)", self.url, len(self.settings.targets))
        if poll_loop:
            self._loop_task = asyncio.create_task(self._poll_loop(), name="poll-loop")

    async def stop(self) -> None:
        self._stopping.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
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
    def url(self) -> str:
        host = self.settings.web.host or "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{self._scheme}://{host}:{self.port}"

    @property
    def ready(self) -> bool:
        return self._ready

    # ---- polling --------------------------------------------------------------------------------------------

    async def poll_once(self) -> Snapshot:
        """One cycle now: poll, translate, render, swap. Returns the new snapshot."""
        async with self._cycle_lock:
            snapshot = await self.poller.poll_once()
            # ~2 s of CPU at 10,000 pipelines: in a worker thread, so scrapes keep being answered meanwhile
            rendered = await asyncio.to_thread(self._render, snapshot)
            self.latest, self._rendered, self._ready = snapshot, rendered, True
            return snapshot

    def _render(self, snapshot: Snapshot) -> Rendered:
        return render(families(snapshot, specs=self._specs))

    async def _poll_loop(self) -> None:
        interval = self.settings.poll.interval
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self._stopping.is_set():
            try:
                await self.poll_once()
            except Exception:
                log.exception("poll cycle failed")
            next_at = max(next_at + interval, loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), next_at - loop.time())

    # ---- HTTP -----------------------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        path = request.raw_path
        for routes in self._routes:
            if routes.matches(path):
                return await routes.handle(request)
        if request.method not in ("GET", "HEAD"):
            return Response(status=405, body=b"method not allowed\n", headers=[("allow", "GET, HEAD")])
        if path == "/metrics":
            return self._metrics(request)
        if path == "/-/healthy":
            return Response(body=b"OK\n")
        if path == "/-/ready":
            if self._ready:
                return Response(body=b"ready\n")
            return Response(status=503, body=b"not ready: the first poll cycle has not completed\n")
        if path == "/":
            return Response(body=self._landing_page(), content_type="text/html; charset=utf-8")
        return Response(status=404, body=b"not found\n")

    def _metrics(self, request: Request) -> Response:
        rendered = self._rendered
        openmetrics = wants_openmetrics(request.headers.get("accept", ""))
        gzipped = wants_gzip(request.headers.get("accept-encoding", ""))
        headers = [("vary", "Accept, Accept-Encoding")]
        body: bytes | Stream
        if gzipped:
            headers.append(("content-encoding", "gzip"))
            body = rendered.gzipped(openmetrics=openmetrics)
        else:
            body = Stream(rendered.plain_chunks(openmetrics=openmetrics), rendered.plain_size(openmetrics=openmetrics))
        return Response(
            body=body,
            content_type=rendered.content_type(openmetrics=openmetrics),
            headers=headers,
        )

    def _landing_page(self) -> bytes:
        rows = "".join(f"<li>{html.escape(t.name)}: {html.escape(t.url)}</li>" for t in self.settings.targets)
        page = (
            "<!doctype html><html><head><title>Feldera Exporter</title></head><body>"
            f"<h1>Feldera Exporter {html.escape(__version__)}</h1>"
            '<p><a href="metrics">Metrics</a> · <a href="-/ready">Ready</a> · <a href="-/healthy">Healthy</a></p>'
            f"<h2>Targets</h2><ul>{rows}</ul></body></html>\n"
        )
        return page.encode()
