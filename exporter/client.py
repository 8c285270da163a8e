"""Async client of Feldera's pipeline-manager REST API: one method per operation the exporter uses.

- HTTP through one aiohttp ``ClientSession`` per target: keep-alive connections (closed after
  ``keepalive_timeout`` idle, so a connection a NAT or load balancer dropped silently is not reused), at most
  ``max_connections`` requests in flight (a retry's back-off does not hold a slot), one deadline per request
  (``timeout``: connecting, sending and reading the whole answer), TLS verification with an optional CA file,
  bearer auth from the target's API key (never logged). ``HTTP_PROXY``/``HTTPS_PROXY`` and ``NO_PROXY`` are
  read once, when the session opens.
- Bodies are read into one growing buffer (no list of chunks joined into a second copy), after decoding
  (``gzip``/``deflate``, inflated as they stream by aiohttp, never past what was read). ``max_response_size`` bounds
  what the target's requests in flight hold together (one answer may use all of it): a larger body, a larger
  ``Content-Length``, a body past what the others leave, or a ``Content-Encoding`` other than one ``gzip``/
  ``deflate`` is an ``invalid_response`` and is not retried.
- Before an answer is parsed its JSON values are counted (:func:`json_values`, commas and brackets): parsing costs
  about 100 bytes per value however small the body, so an answer with more than :data:`MAX_JSON_VALUES` (the
  pipeline list: :data:`LIST_VALUES_PER_PIPELINE` per pipeline of ``max_pipelines``) is refused unparsed. The
  ``selector=all`` answer is scanned for its top-level ``version`` and ``runtime_config`` alone
  (:func:`top_level_members`; the program's schema after them passes that bound in a large program). The
  list is counted before its entries are validated, one by one: more than ``max_pipelines`` is :class:`OverLimit`;
  malformed entries and repeated names are skipped and summed up in :class:`Skipped` (one line per list, never one
  per entry). Texts kept from answers are cut at ``models.MAX_TEXT_CHARS``, Feldera's error messages at
  ``errors.MAX_MESSAGE_CHARS``.
- Retries with exponential backoff only for transient failures: no response (connection failure or timeout)
  and HTTP 408/502/503/504. ``Retry-After`` is honoured when it is at most ``max_retry_delay``; a longer one
  ends the attempts (the next poll cycle asks again). POST requests are never sent twice: never retried, and
  each goes on a new connection (aiohttp re-sends an idempotent request once when a kept-alive connection turns
  out closed by the server, never a POST; on a new connection a POST does not meet that race).
  A 503 whose Feldera error code describes the pipeline's state (:data:`PIPELINE_STATE_ERRORS`: not deployed,
  unavailable, unreachable, initializing, suspended) is an answer about the pipeline, not a passing failure of
  the API: it is not retried (a retry within the same poll cycle would only delay the cycle).
- Failures are raised as the typed errors of :mod:`exporter.errors`; every attempt is recorded in
  :class:`ApiStats` (count by endpoint and code, duration histogram by endpoint) for the self-metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
from multidict import CIMultiDictProxy
from pydantic import ValidationError
from pydantic_core import from_json
from yarl import URL

from exporter import __version__, validation
from exporter.config import TargetSettings
from exporter.errors import ApiError, ConnectionFailed, FelderaError, InvalidResponse, OverLimit, RequestTimeout
from exporter.logsafe import clean
from exporter.models import (
    NO_CLUSTER_EVENTS,
    CheckpointStatus,
    CheckpointSyncResponse,
    CheckpointSyncStatus,
    ClusterHealth,
    Configuration,
    ControllerStatus,
    InputEndpointStatus,
    Lenient,
    OutputEndpointStatus,
    Pipeline,
    PipelineRuntimeConfig,
)
from exporter.snapshot import ExporterStats, RequestCount, RequestTimings

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 502, 503, 504})
PIPELINE_STATE_ERRORS = frozenset(
    {
        "PipelineInteractionNotDeployed",
        "PipelineUnavailable",
        "PipelineInteractionUnreachable",
        "Initializing",
        "Suspended",
    }
)
"""Error codes of 503 answers from pipeline-interaction endpoints that describe the pipeline (docs/feldera-api.md)."""
DURATION_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BODY_EXCERPT_CHARS = 200
READ_BUFFER = 256 * 1024
"""aiohttp's read buffer per connection (also the most it inflates ahead of the reader)."""
_DELAY_SECONDS = re.compile(r"[0-9]+")
DECODED_ENCODINGS = frozenset({"", "identity", "gzip", "deflate"})
"""``Content-Encoding`` values read: aiohttp inflates ``gzip``/``deflate`` (one coding, as advertised)."""

MAX_JSON_VALUES = 65_536
"""Most JSON values an answer other than the pipeline list may hold, counted before it is parsed (see
:func:`json_values`): parsing costs about 100 bytes per value, whatever the body's size (``[{},{},...]`` is 3 bytes
per value), so ``max_response_size`` alone does not bound it. A ``stats`` answer holds about 30 per connector."""
LIST_VALUES_PER_PIPELINE = 80
"""JSON values the pipeline list may hold per pipeline of ``targets[].max_pipelines``: Feldera's entries with
``selector=status_with_connectors`` hold about 41, plus 7 per stored checkpoint (it keeps at least 2) and 3 for a
deployment error. At the defaults the bound is 800,000 values: about 130 MiB to parse at worst (one object of as
many distinct keys), measured by ``bench/hostile.py``."""
SKIPPED_EXAMPLES = 3
"""Malformed or repeated list entries named in the one line that reports them."""
SHOWN_CHARS = 60
"""Characters of a name shown in such an example."""

M = TypeVar("M", bound=Lenient)
T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


class ApiStats:
    """Mutable per-target request counters and duration histograms; :meth:`freeze` copies them for a snapshot."""

    def __init__(self, bounds: tuple[float, ...] = DURATION_BUCKETS) -> None:
        self._bounds = bounds
        self._requests: dict[tuple[str, str], int] = {}
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    def record(self, endpoint: str, code: str, seconds: float) -> None:
        self._requests[endpoint, code] = self._requests.get((endpoint, code), 0) + 1
        buckets = self._buckets.setdefault(endpoint, [0] * len(self._bounds))
        index = bisect_left(self._bounds, seconds)
        if index < len(buckets):
            buckets[index] += 1
        self._sums[endpoint] = self._sums.get(endpoint, 0.0) + seconds
        self._counts[endpoint] = self._counts.get(endpoint, 0) + 1

    def requests(self) -> tuple[RequestCount, ...]:
        return tuple(sorted(RequestCount(endpoint, code, n) for (endpoint, code), n in self._requests.items()))

    def timings(self) -> tuple[RequestTimings, ...]:
        result = []
        for endpoint in sorted(self._buckets):
            cumulative, running = [], 0
            for n in self._buckets[endpoint]:
                running += n
                cumulative.append(running)
            result.append(
                RequestTimings(
                    endpoint=endpoint,
                    bounds=self._bounds,
                    counts=tuple(cumulative),
                    count=self._counts[endpoint],
                    total_seconds=self._sums[endpoint],
                )
            )
        return tuple(result)

    def freeze(self, **fields: Any) -> ExporterStats:
        return ExporterStats(requests=self.requests(), timings=self.timings(), **fields)


def segment(value: str) -> str:
    """URL-encode one path segment (``/``, ``"``, spaces and everything else non-unreserved); ``.`` and ``..``
    as ``%2E`` and ``%2E%2E``, so no name can be a dot-segment that leaves ``/v0/pipelines/{name}/`` on the way
    (servers and proxies resolve ``..`` before routing). A lone surrogate (a name the standard-library JSON parser
    let through) is sent as its UTF-8-style bytes instead of raising: the server answers 404 for it."""
    if value in (".", ".."):
        return value.replace(".", "%2E")
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds; ``None`` when absent or not what RFC 9110 §10.2.3 allows: ``delay-seconds``
    (ASCII digits only: ``str.isdigit`` also takes ``²`` or ``٣``, which ``float`` then refuses) or an HTTP date
    (ASCII text; a date without a zone is read as UTC, as the RFC's dates are GMT)."""
    if value is None:
        return None
    text = value.strip(" \t")
    if _DELAY_SECONDS.fullmatch(text):
        return float(text)
    if not text.isascii():
        return None
    try:
        moment = parsedate_to_datetime(text)
        stamp = (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()
    except (TypeError, ValueError, OverflowError):
        return None
    return max(0.0, stamp - (time.time() if now is None else now))


def base_path(url: str) -> str:
    """The base URL's path prefix, percent-encoded, without a trailing slash (``""`` for none)."""
    return quote(urlsplit(url).path.rstrip("/"), safe="/%:@!$&'()*+,;=-._~")


def _ssl(settings: TargetSettings) -> ssl.SSLContext | bool:
    """For aiohttp's connector: ``False`` skips verification, ``True`` verifies with the system's CA store
    (``SSL_CERT_FILE``/``SSL_CERT_DIR`` apply), a context verifies with ``ca_file``."""
    if not settings.tls_verify:
        return False
    if settings.ca_file is not None:
        return ssl.create_default_context(cafile=str(settings.ca_file))
    return True


def _env_proxy(url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy the environment names for ``url`` (``None`` when none applies or ``NO_PROXY`` exempts it), as
    aiohttp's ``trust_env`` finds it; looked up once here rather than in a thread for every request. An unusable
    proxy URL is a ``ClientError`` (every request fails as a connection error) that does not repeat the URL,
    which may hold credentials."""
    try:
        proxy, auth = aiohttp.helpers.get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None
    except ValueError as exc:
        raise aiohttp.ClientError(f"the proxy environment variable for {url} cannot be parsed: {exc}") from None
    if proxy.scheme != "http" or not proxy.host:
        raise aiohttp.ClientError(f"the proxy environment variable for {url} is not an http:// URL")
    return proxy, auth


def json_values(content: bytes | bytearray) -> int:
    """An upper bound on the values of a JSON document, counted without parsing it: one more than its commas and
    opening brackets (those inside strings included, so never too few). Three passes of ``bytes.count``: about a
    millisecond per megabyte."""
    return content.count(b",") + content.count(b"{") + content.count(b"[") + 1


class _TooLarge(Exception):
    """The body is (or announces to be) larger than ``max_response_size``."""


class _Undecodable(Exception):
    """The body's ``Content-Encoding`` is not one the client reads, or its data does not inflate."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status_code: int
    headers: CIMultiDictProxy[str]
    content: bytearray


@dataclass(slots=True)
class Skipped:
    """List entries left out of a :class:`Listing`: how many of each kind and the first few, for one log line."""

    malformed: int = 0
    duplicates: int = 0
    examples: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.malformed or self.duplicates)

    def add_malformed(self, index: int, entry: object, exc: ValidationError) -> None:
        self.malformed += 1
        if len(self.examples) < SKIPPED_EXAMPLES:
            name = entry.get("name") if isinstance(entry, dict) else None
            first = validation.problems(exc)[0]
            self.examples.append(f"entry {index} (name {_shown(name)}) malformed: {first}")

    def add_duplicate(self, index: int, name: str) -> None:
        self.duplicates += 1
        if len(self.examples) < SKIPPED_EXAMPLES:
            self.examples.append(f"entry {index} repeats the name {_shown(name)}")

    def describe(self) -> str:
        """``N malformed and M repeated entries skipped, e.g. ...`` (one line, cleaned)."""
        return clean(
            f"{self.malformed} malformed and {self.duplicates} repeated entries skipped, "
            f"e.g. {'; '.join(self.examples)}"
        )


def _shown(name: object) -> str:
    """A name from an answer as a short ``repr`` for a log line (names may be megabytes long: cut before ``repr``)."""
    if isinstance(name, str) and len(name) > SHOWN_CHARS:
        return f"{name[:SHOWN_CHARS]!r}... ({len(name)} characters)"
    return repr(name) if isinstance(name, str | None) else f"<{type(name).__name__}>"


@dataclass(frozen=True, slots=True)
class Listing:
    """The pipeline list: the entries kept, how many it listed, and what was skipped."""

    pipelines: list[Pipeline]
    listed: int
    skipped: Skipped


class FelderaClient:
    """One Feldera instance. Use as ``async with FelderaClient(target) as client:`` or call :meth:`aclose`."""

    def __init__(
        self,
        settings: TargetSettings,
        *,
        stats: ApiStats | None = None,
        retries: int = 2,
        backoff: float = 0.25,
        max_retry_delay: float = 2.0,
        sleep: Sleep = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        max_connections: int = 32,
    ) -> None:
        self.settings = settings
        self.api_stats = stats if stats is not None else ApiStats()
        self._retries = retries
        self._backoff = backoff
        self._max_retry_delay = max_retry_delay
        self._sleep = sleep
        self._monotonic = monotonic
        headers = {
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": f"feldera-exporter/{__version__}",
        }
        if settings.api_key is not None:
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        self._headers = headers
        parts = urlsplit(settings.url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._prefix = base_path(settings.url)
        self._max_connections = max_connections
        self._slots = asyncio.Semaphore(max_connections)
        self._buffered = 0
        """Bytes of answers read and not yet parsed, over every request in flight (``max_response_size`` bounds it)."""
        self._sessions: dict[bool, aiohttp.ClientSession] = {}

    def __repr__(self) -> str:
        return f"FelderaClient(name={self.settings.name!r}, url={self.settings.url!r})"

    async def __aenter__(self) -> FelderaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            await session.close()

    def _session(self, keep_alive: bool) -> aiohttp.ClientSession:
        """The kept-alive session (GETs), or one that opens a new connection per request (POSTs); each opened on
        first use (aiohttp needs the running loop)."""
        session = self._sessions.get(keep_alive)
        if session is None:
            settings = self.settings
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                ssl=_ssl(settings),
                keepalive_timeout=settings.keepalive_timeout if keep_alive else None,
                force_close=not keep_alive,
            )
            proxy, proxy_auth = _env_proxy(settings.url)
            session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=settings.timeout),
                cookie_jar=aiohttp.DummyCookieJar(),
                proxy=proxy,
                proxy_auth=proxy_auth,
                read_bufsize=READ_BUFFER,
            )
            self._sessions[keep_alive] = session
        return session

    # ---- operations -----------------------------------------------------------------------------------------

    async def list_pipelines(
        self, selector: str = "status_with_connectors", keep: Callable[[str], bool] | None = None
    ) -> Listing:
        """All pipelines, or those whose name ``keep`` accepts; malformed entries and repeats of a name already listed
        are skipped (and counted in :attr:`Listing.skipped`). A list of more than ``max_pipelines`` entries, or too
        large to hold at most that many (:data:`LIST_VALUES_PER_PIPELINE`), raises :class:`OverLimit` before any
        entry is kept."""
        limit = self.settings.max_pipelines
        return await self._request(
            "list_pipelines",
            "GET",
            "v0/pipelines",
            params={"selector": selector},
            parse=lambda content: _listing(content, limit, keep),
            max_values=limit * LIST_VALUES_PER_PIPELINE,
            over_limit=f"max_pipelines {limit}",
        )

    async def checkpoint_status(self, pipeline: str) -> CheckpointStatus:
        path = f"v0/pipelines/{segment(pipeline)}/checkpoint_status"
        return await self._model("checkpoint_status", CheckpointStatus, "GET", path)

    async def stats(self, pipeline: str, *, connector_errors: bool = False) -> ControllerStatus:
        """``connector_errors``: ask for every connector's error lists in the same answer
        (``include_connector_errors=true``, from Feldera 0.292.0; older servers ignore it and answer without)."""
        params = {"include_connector_errors": "true"} if connector_errors else None
        path = f"v0/pipelines/{segment(pipeline)}/stats"
        return await self._model("stats", ControllerStatus, "GET", path, params=params)

    async def runtime_config(self, pipeline: str) -> PipelineRuntimeConfig:
        """``GET /v0/pipelines/{name}?selector=all``: the only selector with ``runtime_config`` (docs/feldera-api.md);
        of its answer only ``version`` and ``runtime_config`` are parsed (:func:`top_level_members`), so a large
        program's code and ``program_info`` (its schema: thousands of columns pass :data:`MAX_JSON_VALUES`) are
        read past, never parsed."""
        path = f"v0/pipelines/{segment(pipeline)}"
        return await self._request(
            "runtime_config", "GET", path, params={"selector": "all"}, parse=_parse_runtime_config, max_values=None
        )

    async def sync_status(self, pipeline: str, incarnation_uuid: str | None = None) -> CheckpointSyncStatus:
        """With ``incarnation_uuid`` (from a sync's 202), a restarted pipeline answers 400 instead of a status."""
        path = f"v0/pipelines/{segment(pipeline)}/checkpoint/sync_status"
        params = {"incarnation_uuid": incarnation_uuid} if incarnation_uuid else None
        return await self._model("sync_status", CheckpointSyncStatus, "GET", path, params=params)

    async def input_connector_stats(self, pipeline: str, table: str, connector: str) -> InputEndpointStatus:
        """``table`` as a SQL identifier: quote case-sensitive names (``'"Orders"'``), see docs/feldera-api.md."""
        path = f"v0/pipelines/{segment(pipeline)}/tables/{segment(table)}/connectors/{segment(connector)}/stats"
        return await self._model("input_connector_stats", InputEndpointStatus, "GET", path)

    async def output_connector_stats(self, pipeline: str, view: str, connector: str) -> OutputEndpointStatus:
        path = f"v0/pipelines/{segment(pipeline)}/views/{segment(view)}/connectors/{segment(connector)}/stats"
        return await self._model("output_connector_stats", OutputEndpointStatus, "GET", path)

    async def cluster_health(self) -> ClusterHealth:
        """``/v0/cluster_healthz``: 200 when all services are healthy, 503 with the same body otherwise; 404
        ``NoClusterMonitorEventsAvailable`` (the monitor has stored nothing yet) is :data:`NO_CLUSTER_EVENTS`."""
        try:
            return await self._request(
                "cluster_healthz",
                "GET",
                "v0/cluster_healthz",
                accept=frozenset({200, 503}),
                parse=_parser(ClusterHealth),
            )
        except ApiError as exc:
            if exc.status == 404 and exc.error_code == "NoClusterMonitorEventsAvailable":
                return NO_CLUSTER_EVENTS
            raise

    async def server_config(self) -> Configuration:
        """``/v0/config``: platform version, edition, licence and update check."""
        return await self._model("config", Configuration, "GET", "v0/config")

    async def checkpoint_sync(self, pipeline: str) -> CheckpointSyncResponse:
        """POST .../checkpoint/sync; 200 (seed) and 202 (current server) are both success."""
        path = f"v0/pipelines/{segment(pipeline)}/checkpoint/sync"
        return await self._request(
            "checkpoint_sync", "POST", path, accept=frozenset({200, 202}), parse=_parser(CheckpointSyncResponse)
        )

    async def reset_status(self, pipeline: str, token: str) -> Any:
        """GET .../reset_status?token=T; the 200 body is not specified, so it is returned as parsed JSON."""
        path = f"v0/pipelines/{segment(pipeline)}/reset_status"
        return await self._request("reset_status", "GET", path, params={"token": token}, parse=_any)

    # ---- HTTP -----------------------------------------------------------------------------------------------

    async def _model(
        self, endpoint: str, model: type[M], method: str, path: str, params: dict[str, str] | None = None
    ) -> M:
        return await self._request(endpoint, method, path, params=params, parse=_parser(model))

    async def _request(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        parse: Callable[[bytearray], T],
        params: dict[str, str] | None = None,
        accept: frozenset[int] = frozenset({200}),
        max_values: int | None = MAX_JSON_VALUES,
        over_limit: str = "",
    ) -> T:
        """``max_values``: the most JSON values (:func:`json_values`) a body is parsed with; more is an
        :class:`InvalidResponse`, or with ``over_limit`` (the setting that decides it) an :class:`OverLimit`. None:
        ``parse`` bounds what it parses itself."""
        attempt = 0
        while True:
            try:
                return await self._attempt(endpoint, method, path, params, accept, parse, max_values, over_limit)
            except FelderaError as exc:
                delay = self._retry_delay(exc, method, attempt)
                if delay is None:
                    raise
                attempt += 1
                log.debug("%s: %s failed (%s); retry %d in %.2fs", self.settings.name, endpoint, exc, attempt, delay)
                await self._sleep(delay)

    def _retry_delay(self, exc: FelderaError, method: str, attempt: int) -> float | None:
        if attempt >= self._retries or method != "GET":
            return None
        backoff = self._backoff * 2.0**attempt
        if isinstance(exc, ConnectionFailed | RequestTimeout):
            return backoff
        if isinstance(exc, ApiError) and exc.status in RETRY_STATUSES:
            if exc.error_code in PIPELINE_STATE_ERRORS:
                return None
            if exc.retry_after is None:
                return backoff
            return exc.retry_after if exc.retry_after <= self._max_retry_delay else None
        return None

    async def _attempt(
        self,
        endpoint: str,
        method: str,
        path: str,
        params: dict[str, str] | None,
        accept: frozenset[int],
        parse: Callable[[bytearray], T],
        max_values: int | None,
        over_limit: str,
    ) -> T:
        target = f"{self._prefix}/{path}"
        if params:
            target += "?" + urlencode(params, quote_via=quote)
        async with self._slots:
            started = self._monotonic()
            try:
                response = await self._exchange(method, target)
            except TimeoutError:  # not chained: aiohttp's connect timeout names the URL (with its query)
                self._record(endpoint, "timeout", started)
                raise RequestTimeout(endpoint, f"no answer within {self.settings.timeout:g}s") from None
            except (aiohttp.ClientError, OSError) as exc:
                self._record(endpoint, "connection_error", started)
                raise ConnectionFailed(endpoint, _describe(exc)) from None
            except (_TooLarge, _Undecodable) as exc:
                self._record(endpoint, "invalid_response", started)
                raise InvalidResponse(endpoint, str(exc)) from exc
            seconds = self._monotonic() - started
        code = str(response.status_code)
        try:  # the body is given back to the budget once parsed (or refused), whatever happens
            if response.status_code not in accept:
                raise _api_error(endpoint, response)
            values = json_values(response.content) if max_values is not None else 0
            if max_values is not None and values > max_values:
                code = "invalid_response"
                what = f"the answer holds up to {values} JSON values, more than {max_values}"
                if over_limit:
                    raise OverLimit(endpoint, f"{what} ({over_limit})")
                raise InvalidResponse(endpoint, what)
            try:
                return parse(response.content)
            except _TooMany as exc:
                code = "invalid_response"
                raise OverLimit(endpoint, f"{exc} ({over_limit})") from None
            except NotJson:
                code = "invalid_response"
                raise InvalidResponse(endpoint, f"body is not JSON: {_excerpt(response.content)!r}") from None
            except ValueError as exc:
                code = "invalid_response"
                raise InvalidResponse(endpoint, str(exc)) from exc
            except Exception as exc:  # RecursionError (deep nesting), MemoryError: a body this exporter cannot take
                code = "invalid_response"
                raise InvalidResponse(endpoint, f"cannot parse the body: {type(exc).__name__}") from None
        finally:
            self._buffered -= len(response.content)
            self.api_stats.record(endpoint, code, max(0.0, seconds))

    async def _exchange(self, method: str, target: str) -> HttpResponse:
        """One request and its whole body, or aiohttp's error, ``TimeoutError``, :class:`_TooLarge`,
        :class:`_Undecodable`."""
        session = self._session(keep_alive=method != "POST")
        url = URL(self._origin + target, encoded=True)
        async with session.request(method, url, allow_redirects=False) as response:
            return HttpResponse(response.status, response.headers, await self._body(response))

    async def _body(self, response: aiohttp.ClientResponse) -> bytearray:
        limit = self.settings.max_response_size
        encoding = response.headers.get("Content-Encoding", "").strip(" \t").lower()
        if encoding not in DECODED_ENCODINGS:
            response.close()
            raise _Undecodable(f"unsupported Content-Encoding {encoding!r} (expected one gzip or deflate)")
        if response.content_length is not None and response.content_length > limit:
            response.close()
            raise _TooLarge(f"Content-Length {response.content_length} exceeds max_response_size {limit}")
        body = bytearray()  # grown in place (glibc moves large blocks with mremap): no list of chunks joined at the end
        try:
            async for chunk in response.content.iter_any():
                if len(body) + len(chunk) > limit:
                    response.close()
                    raise _TooLarge(f"body exceeds max_response_size {limit} (decoded)")
                if self._buffered + len(chunk) > limit:
                    response.close()
                    raise _TooLarge(
                        f"answers being read at once exceed max_response_size {limit} (decoded; this one "
                        f"{len(body) + len(chunk)} bytes so far)"
                    )
                body += chunk
                self._buffered += len(chunk)
        except BaseException as exc:
            self._buffered -= len(body)
            if isinstance(exc, aiohttp.ClientPayloadError) and isinstance(
                exc.__cause__, aiohttp.http_exceptions.ContentEncodingError
            ):
                raise _Undecodable(f"body could not be decoded as {encoding}") from exc
            raise
        return body

    def _record(self, endpoint: str, code: str, started: float) -> None:
        self.api_stats.record(endpoint, code, max(0.0, self._monotonic() - started))


def _describe(exc: BaseException) -> str:
    """The failure on one line, without the request URL (its query may hold a reset token) and headers that
    aiohttp's response errors carry (so the error is raised without them as its cause)."""
    text = exc.message if isinstance(exc, aiohttp.ClientResponseError) else str(exc)
    return f"{type(exc).__name__}: {' '.join(text.split())}"


def _excerpt(content: bytes | bytearray) -> str:
    return content[:BODY_EXCERPT_CHARS].decode("utf-8", errors="replace")


def _api_error(endpoint: str, response: HttpResponse) -> ApiError:
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    body = None
    if json_values(response.content) <= MAX_JSON_VALUES:
        try:
            body = json.loads(response.content)
        except (ValueError, UnicodeDecodeError, RecursionError):
            body = None
    if isinstance(body, dict) and isinstance(body.get("error_code"), str):
        message = body.get("message")
        return ApiError(
            endpoint,
            response.status_code,
            error_code=body["error_code"],
            message=message if isinstance(message, str) else "",
            retry_after=retry_after,
        )
    return ApiError(endpoint, response.status_code, body_excerpt=_excerpt(response.content), retry_after=retry_after)


class NotJson(ValueError):
    """The body is not JSON (to the standard library's parser either)."""


class _TooMany(ValueError):
    """The pipeline list has more entries than ``max_pipelines``."""


def _loads(content: bytes | bytearray) -> Any:
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotJson(str(exc)) from exc


def _tree(content: bytes | bytearray) -> Any:
    """Parsed JSON: pydantic's parser (from the bytes, strings shared), else the standard library's (which also
    takes a UTF-8 byte order mark, UTF-16/32 and lone surrogates)."""
    try:
        return from_json(content)
    except ValueError:
        return _loads(content)


def _listing(content: bytes | bytearray, limit: int, keep: Callable[[str], bool] | None) -> Listing:
    """The pipeline list, counted before any entry is validated, each entry validated on its own (and dropped from
    the parsed tree once it is), so a malformed entry costs only itself and the tree shrinks as models are made."""
    entries = _tree(content)
    if not isinstance(entries, list):
        raise ValueError(f"expected a JSON list, got {type(entries).__name__}")
    if len(entries) > limit:
        raise _TooMany(f"the list holds {len(entries)} pipelines, more than {limit}")
    pipelines: list[Pipeline] = []
    names: set[str] = set()
    skipped = Skipped()
    for index in range(len(entries)):
        entry, entries[index] = entries[index], None
        try:
            pipeline = Pipeline.model_validate(entry)
        except ValidationError as exc:
            skipped.add_malformed(index, entry, exc)
            continue
        if pipeline.name in names:
            skipped.add_duplicate(index, pipeline.name)
            continue
        names.add(pipeline.name)
        if keep is None or keep(pipeline.name):
            pipelines.append(pipeline)
    return Listing(pipelines, len(entries), skipped)


_PARSERS: dict[type[Lenient], Callable[[bytearray], Any]] = {}


def _parser(model: type[M]) -> Callable[[bytearray], M]:
    """:func:`_make_parser` of ``model``, made once per model."""
    parse = _PARSERS.get(model)
    if parse is None:
        parse = _PARSERS[model] = _make_parser(model)
    return parse


def _make_parser(model: type[M]) -> Callable[[bytearray], M]:
    """Parse and validate in one pass (pydantic's JSON parser, no intermediate dicts); when that parser refuses
    the text, the standard library's decides (it also takes a UTF-8 BOM, UTF-16/32), so what was accepted
    before still is. Errors: :class:`NotJson` or a ``ValueError`` naming the model and what did not fit."""

    def parse(content: bytearray) -> M:
        try:
            return model.model_validate_json(content)
        except ValidationError as exc:
            if validation.problems(exc)[0].kind != "json_invalid":
                raise _shape_error(model, exc) from None
        try:
            return model.model_validate(_loads(content))
        except ValidationError as exc:
            raise _shape_error(model, exc) from None

    return parse


RUNTIME_CONFIG_MEMBERS = frozenset({"version", "runtime_config"})
"""What the exporter reads of a ``selector=all`` answer (Feldera writes both before ``program_code``)."""
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]]')
"""A JSON string (escapes included) or a bracket: what :func:`top_level_members` steps over."""
_MEMBER_COLON = re.compile(rb"[ \t\r\n]*:[ \t\r\n]*")
_SCALAR = re.compile(rb"[^,}\] \t\r\n]*")
_OBJECT_START = re.compile(rb"[ \t\r\n]*\{")


def top_level_members(
    content: bytes | bytearray, keys: frozenset[str], max_values: int = MAX_JSON_VALUES
) -> dict[str, Any] | None:
    """The members ``keys`` of the JSON object ``content``, each parsed alone; the scan steps over strings and
    brackets (a regular expression per token, a long string in one step) and stops once every key is found, so
    the members after them, however large, are never parsed. A key that is not there is left out. None when
    ``content`` does not start with an object (then only a full parse can tell). Past ``max_values`` tokens
    stepped over, or values in one member: ``ValueError``; a member that is not JSON: :class:`NotJson`."""
    start = _OBJECT_START.match(content)
    if start is None:
        return None
    found: dict[str, Any] = {}
    depth, pos, tokens = 1, start.end(), 0
    while depth > 0 and len(found) < len(keys):
        token = _JSON_TOKEN.search(content, pos)
        if token is None:
            break
        tokens += 1
        if tokens > max_values:
            raise ValueError(f"more than {max_values} JSON values before {', '.join(sorted(keys - found.keys()))}")
        pos = token.end()
        first = content[token.start()]
        if first == 0x22:  # a string: a member's key when it is followed by a colon
            colon = _MEMBER_COLON.match(content, pos) if depth == 1 else None
            if colon is None:
                continue
            key = _loads(token.group())
            if key not in keys or key in found:
                continue
            end = _value_end(content, colon.end(), max_values)
            value = content[colon.end() : end]
            if json_values(value) > max_values:
                raise ValueError(f"member {key!r} holds more than {max_values} JSON values")
            found[key] = _loads(value)
            pos = end
        elif first in (0x7B, 0x5B):  # { [
            depth += 1
        else:
            depth -= 1
    return found


def _value_end(content: bytes | bytearray, start: int, max_values: int) -> int:
    """Where the JSON value at ``start`` ends (its text is checked only when it is parsed)."""
    if start >= len(content):
        return start
    first = content[start]
    if first == 0x22:
        token = _JSON_TOKEN.match(content, start)
        return token.end() if token is not None else len(content)
    if first not in (0x7B, 0x5B):
        scalar = _SCALAR.match(content, start)
        return scalar.end() if scalar is not None else start
    depth, pos = 0, start
    for count, token in enumerate(_JSON_TOKEN.finditer(content, start)):
        if count > 2 * max_values:
            raise ValueError(f"a member holds more than {max_values} JSON values")
        pos = token.end()
        if content[token.start()] in (0x7B, 0x5B):
            depth += 1
        elif content[token.start()] in (0x7D, 0x5D):
            depth -= 1
            if depth == 0:
                return pos
    return len(content)


def _parse_runtime_config(content: bytearray) -> PipelineRuntimeConfig:
    members = top_level_members(content, RUNTIME_CONFIG_MEMBERS)
    if members is None:  # not as Feldera writes JSON (a byte order mark, UTF-16): the whole body, within the bound
        if (values := json_values(content)) > MAX_JSON_VALUES:
            raise ValueError(f"the answer holds up to {values} JSON values, more than {MAX_JSON_VALUES}")
        return _parser(PipelineRuntimeConfig)(content)
    try:
        return PipelineRuntimeConfig.model_validate(members)
    except ValidationError as exc:
        raise _shape_error(PipelineRuntimeConfig, exc) from None


def _shape_error(model: type, exc: ValidationError) -> ValueError:
    """What did not fit, for one log line: the first few problems and how many more there were."""
    return ValueError(f"unexpected JSON shape for {model.__name__}: {validation.describe(exc, SKIPPED_EXAMPLES)}")


_any = _loads
