"""The exporter's HTTP API for reset watches (served behind the same TLS/basic-auth as ``/metrics``).

* ``GET /api/v1/reset-watches`` -> 200 ``{"watches": [...]}`` (tokens are never echoed)
* ``POST /api/v1/reset-watches`` with JSON ``{"pipeline", "token", "name"?, "target"?}`` -> 201 the watch
* ``DELETE /api/v1/reset-watches/{name}`` -> 204, or 404 when there is no such watch

POST and DELETE (the write API) answer 403 unless the exporter runs with ``--web.enable-reset-watch-api`` (config
``web.enable_reset_watch_api: true``), like Prometheus' ``--web.enable-admin-api``: anyone who reaches the port
could otherwise make the exporter poll Feldera with its API key. A body that is not a small JSON object is a 400
(larger than the server's body limit: 413), never a 500.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from exporter.sidecar.resets import ResetWatches, WatchError, describe

PREFIX = "/api/v1/reset-watches"
DISABLED = (
    "the reset-watch write API is disabled; start the exporter with --web.enable-reset-watch-api "
    "(or set web.enable_reset_watch_api: true) to register or delete watches"
)


def _json(status: int, document: object) -> web.Response:
    return web.Response(status=status, body=json.dumps(document).encode() + b"\n", content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json(status, {"error": message})


class ResetWatchRoutes:
    def __init__(self, watches: ResetWatches, clock: Callable[[], float], *, writable: bool = False) -> None:
        self._watches = watches
        self._clock = clock
        self.writable = writable
        """Whether POST and DELETE are allowed (``web.enable_reset_watch_api``; a reload may change it)."""

    def add_to(self, router: web.UrlDispatcher) -> None:
        """The two resources on ``router``; any other method gets a JSON 405 naming the ones allowed. A trailing
        ``/`` is ignored, and a watch name may contain ``/``, encoded or not."""
        watches = router.add_resource(PREFIX + "{slash:/*}")
        watches.add_route("GET", self._list)
        watches.add_route("HEAD", self._list)
        watches.add_route("POST", self._post)
        watches.add_route("*", _method_not_allowed("GET, HEAD, POST"))
        watch = router.add_resource(PREFIX + "/{name:.*[^/]}{slash:/*}")
        watch.add_route("DELETE", self._delete)
        watch.add_route("*", _method_not_allowed("DELETE"))

    async def _list(self, request: web.Request) -> web.Response:
        return _json(200, {"watches": describe(self._watches.watches(), self._clock())})

    async def _post(self, request: web.Request) -> web.Response:
        if not self.writable:
            return _error(403, DISABLED)
        return await self._register(request)

    async def _delete(self, request: web.Request) -> web.Response:
        if not self.writable:
            return _error(403, DISABLED)
        if not await self._watches.remove(request.match_info["name"]):
            return _error(404, "no such watch")
        return web.Response(status=204)

    async def _register(self, request: web.Request) -> web.Response:
        if "json" not in request.headers.get("Content-Type", "application/json"):
            return _error(415, "send application/json")
        body = await request.read()  # beyond the server's body limit: 413
        try:
            document = json.loads(body or b"null")
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
            return _error(400, "body is not valid JSON")
        if not isinstance(document, dict):
            return _error(400, 'body must be a JSON object {"pipeline": ..., "token": ...}')
        unknown = sorted(set(document) - {"pipeline", "token", "name", "target"})
        if unknown:
            return _error(400, f"unknown field(s): {', '.join(unknown)}")
        try:
            watch = await self._watches.register(
                document.get("pipeline"),
                document.get("token"),
                name=document.get("name"),
                target=document.get("target"),
            )
        except WatchError as exc:
            return _error(exc.status, str(exc))
        return _json(201, describe([watch], self._clock())[0])


def _method_not_allowed(allow: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        response = _error(405, "method not allowed")
        response.headers["Allow"] = allow
        return response

    return handler
