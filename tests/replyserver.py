"""A real HTTP server for tests that answers from scripted replies and records requests (see ``conftest.py``).

A module of its own (not ``conftest.py``) so that ``Request``/``Response`` are one class whether a test imports
them from here or through ``tests.conftest``.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from aiohttp import web

from exporter.webserver import EVERY_PATH, ServerLimits, WebServer


@dataclass(frozen=True, slots=True)
class Request:
    """A request as a :class:`ReplyServer` received it (body read whole), for handlers and later assertions."""

    method: str
    target: str
    """The raw request target (path and query, still percent-encoded)."""
    headers: Mapping[str, str]
    """Lower-cased header names; repeated headers joined with ", "."""
    body: bytes = b""

    @property
    def raw_path(self) -> str:
        return urlsplit(self.target).path

    @property
    def path(self) -> str:
        return unquote(self.raw_path)

    @property
    def query(self) -> dict[str, str]:
        """First value of each query parameter."""
        return {k: v[0] for k, v in parse_qs(urlsplit(self.target).query, keep_blank_values=True).items()}


@dataclass(slots=True)
class Response:
    """A scripted reply: turned into a new aiohttp response each time it is served (so it can be served again)."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


# its client connects from one address, which may use every connection
REPLY_SERVER_LIMITS = ServerLimits(
    header_timeout=30.0, request_timeout=None, max_body_bytes=1 << 20, max_connections_per_address=128
)


class ReplyServer:
    """A real HTTP server (the exporter's :class:`WebServer`) answering every request with ``handler``."""

    def __init__(
        self,
        handler: Callable[[Request], Awaitable[Response]],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._handler = handler
        app = web.Application(client_max_size=REPLY_SERVER_LIMITS.max_body_bytes)
        app.router.add_route("*", EVERY_PATH, self._serve)
        context = None if ssl_context is None else (lambda: ssl_context)
        self._server = WebServer(app, host, port, ssl_context=context, limits=REPLY_SERVER_LIMITS)

    @property
    def port(self) -> int:
        return self._server.port

    async def start(self) -> None:
        await self._server.start()

    async def close(self) -> None:
        await self._server.close()

    async def __aenter__(self) -> ReplyServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _serve(self, request: web.Request) -> web.Response:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        recorded = Request(request.method, request.raw_path, headers, await request.read())
        reply = await self._handler(recorded)
        all_headers = list(reply.headers)
        if reply.content_type is not None:
            all_headers.append(("Content-Type", reply.content_type))
        return web.Response(status=reply.status, body=reply.body, headers=all_headers)
