"""HTTP/1.1 for :class:`exporter.client.FelderaClient`: a lean keep-alive connection pool on asyncio streams and h11.

One poll cycle over a large fleet makes tens of thousands of small GET requests to one host. Through httpx and
httpcore each cost 0.7-1.1 ms of CPU with one request in flight and 1.0-2.9 ms with 32 (URL merging, cookie
extraction, and a pool whose bookkeeping re-checks every connection whenever a request is queued or released) on
the 2-core dev box; through this pool 0.15-0.25 ms, much of it h11's parsing. It does only
what the client needs: GET/POST without a request body to one origin, HTTP/1.1 keep-alive, TLS, one deadline per
request, ``gzip``/``deflate`` bodies. Responses are parsed by h11, so framing (Content-Length, chunked, read to
close) and malformed answers are handled as strictly as before.

When a proxy environment variable (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, minus ``NO_PROXY``) applies to
the target, :func:`make_transport` returns :class:`HttpxTransport` instead, which goes through httpx as before and
so honours the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, urlsplit

import h11
import httpx

READ_SIZE = 256 * 1024
STREAM_LIMIT = 1024 * 1024
"""Bytes asyncio buffers before it pauses reading (the pipeline list can be many MiB)."""


class TransportTimeout(Exception):
    """No complete answer within the deadline."""


class TransportError(Exception):
    """No usable answer: the connection could not be made, broke, or carried something that is not HTTP/1.1."""


class BodyDecodingError(ValueError):
    """The body's ``Content-Encoding`` could not be decoded."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status_code: int
    headers: Sequence[tuple[bytes, bytes]]
    """As received; names lower-case."""
    content: bytes

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for key, value in self.headers:
            if key == wanted:
                return value.decode("latin-1")
        return None


class Transport(Protocol):
    """``request(method, target)`` with ``target`` the path (with query) relative to the base URL's origin."""

    async def request(self, method: str, target: str) -> HttpResponse: ...

    async def aclose(self) -> None: ...


def base_path(url: str) -> str:
    """The base URL's path prefix, percent-encoded, without a trailing slash (``""`` for none)."""
    return quote(urlsplit(url).path.rstrip("/"), safe="/%:@!$&'()*+,;=-._~")


def uses_proxy(url: str) -> bool:
    """Whether the proxy environment variables send requests to ``url`` through a proxy (as httpx would)."""
    proxies = urllib.request.getproxies_environment()
    parts = urlsplit(url)
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass_environment(parts.netloc, proxies)


def make_transport(
    url: str,
    headers: Sequence[tuple[str, str]],
    *,
    timeout: float,
    ssl_context: ssl.SSLContext | None,
    max_connections: int,
) -> Transport:
    if uses_proxy(url):
        return HttpxTransport(url, headers, timeout=timeout, ssl_context=ssl_context, max_connections=max_connections)
    return Http11Pool(url, headers, timeout=timeout, ssl_context=ssl_context)


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    state: h11.Connection

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing() and self.state.our_state is h11.IDLE

    def close(self) -> None:
        self.writer.close()


class Http11Pool:
    """Keep-alive HTTP/1.1 connections to one origin. Concurrency is bounded by the caller (one connection per
    request in flight; idle ones are kept for the next request)."""

    def __init__(
        self, url: str, headers: Sequence[tuple[str, str]], *, timeout: float, ssl_context: ssl.SSLContext | None
    ) -> None:
        parts = urlsplit(url)
        https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if https else 80)
        self._ssl = (ssl_context or ssl.create_default_context()) if https else None
        if self._ssl is not None:
            self._ssl.set_alpn_protocols(["http/1.1"])
        authority = parts.netloc.rpartition("@")[2]
        self._headers = [("Host", authority), *headers, ("Accept-Encoding", "gzip, deflate")]
        self._post_headers = [*self._headers, ("Content-Length", "0")]
        self._timeout = timeout
        self._idle: list[_Connection] = []
        self._closed = False

    async def request(self, method: str, target: str) -> HttpResponse:
        try:
            async with asyncio.timeout(self._timeout):
                while True:
                    conn, reused = await self._connection()
                    try:
                        response = await self._exchange(conn, method, target)
                    except _StaleConnection as stale:
                        conn.close()
                        if reused:
                            continue  # a kept-alive connection the server had closed: once more on a new one
                        raise TransportError(str(stale)) from stale.__cause__
                    except BaseException:
                        conn.close()
                        raise
                    self._release(conn)
                    return _decoded(response)
        except TimeoutError as exc:
            raise TransportTimeout(f"no answer within {self._timeout:g}s") from exc
        except h11.ProtocolError as exc:
            raise TransportError(f"RemoteProtocolError: {exc}") from exc
        except (OSError, EOFError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc

    async def _connection(self) -> tuple[_Connection, bool]:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                return conn, True
            conn.close()
        reader, writer = await asyncio.open_connection(
            self._host,
            self._port,
            ssl=self._ssl,
            server_hostname=self._host if self._ssl is not None else None,
            limit=STREAM_LIMIT,
        )
        return _Connection(reader, writer, h11.Connection(h11.CLIENT)), False

    def _release(self, conn: _Connection) -> None:
        state = conn.state
        if not self._closed and state.our_state is h11.DONE and state.their_state is h11.DONE:
            state.start_next_cycle()
            self._idle.append(conn)
        else:
            conn.close()

    async def _exchange(self, conn: _Connection, method: str, target: str) -> HttpResponse:
        state = conn.state
        headers = self._post_headers if method == "POST" else self._headers
        data = state.send(h11.Request(method=method, target=target, headers=headers))
        conn.writer.write(data + state.send(h11.EndOfMessage()))  # type: ignore[operator]
        received = False
        response: h11.Response | None = None
        chunks: list[bytes] = []
        while True:
            event = state.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await conn.reader.read(READ_SIZE)
                except OSError as exc:
                    if received:
                        raise
                    raise _StaleConnection(f"{type(exc).__name__}: {exc}") from exc
                if not data and not received:
                    raise _StaleConnection("RemoteProtocolError: server closed the connection without an answer")
                received = True
                state.receive_data(data)
            elif type(event) is h11.Data:
                chunks.append(event.data)  # type: ignore[union-attr]
            elif type(event) is h11.Response:
                response = event  # type: ignore[assignment]
            elif type(event) is h11.EndOfMessage:
                break
            elif type(event) is h11.ConnectionClosed:
                raise TransportError("RemoteProtocolError: server closed the connection without an answer")
            # InformationalResponse (1xx): wait for the final one
        assert response is not None
        return HttpResponse(response.status_code, response.headers, b"".join(chunks))

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.writer.wait_closed(), 1.0)


class _StaleConnection(Exception):
    """EOF or reset before any byte of an answer: on a kept-alive connection, the server had closed it."""


def _decoded(response: HttpResponse) -> HttpResponse:
    encoding = response.header("content-encoding")
    if not encoding or not response.content:
        return response
    content = response.content
    try:
        for coding in reversed([c.strip().lower() for c in encoding.split(",")]):
            if coding in ("gzip", "x-gzip"):
                content = _inflate(content, zlib.MAX_WBITS | 16)
            elif coding == "deflate":
                try:
                    content = _inflate(content, zlib.MAX_WBITS)
                except zlib.error:  # raw deflate without the zlib header, as some servers send it
                    content = _inflate(content, -zlib.MAX_WBITS)
            elif coding not in ("identity", ""):
                return response  # unknown: passed through as httpx does
    except zlib.error as exc:
        raise BodyDecodingError(f"body could not be decoded ({encoding}): {exc}") from exc
    return HttpResponse(response.status_code, response.headers, content)


def _inflate(data: bytes, wbits: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    content = inflater.decompress(data)
    if not inflater.eof:
        raise zlib.error("truncated stream")
    return content


class HttpxTransport:
    """Through httpx (``trust_env``: proxies from the environment); used when a proxy applies to the target."""

    def __init__(
        self,
        url: str,
        headers: Sequence[tuple[str, str]],
        *,
        timeout: float,
        ssl_context: ssl.SSLContext | None,
        max_connections: int,
    ) -> None:
        parts = urlsplit(url)
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=f"{parts.scheme}://{parts.netloc}",
            headers=list(headers),
            timeout=httpx.Timeout(timeout),
            verify=ssl_context if ssl_context is not None else True,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def request(self, method: str, target: str) -> HttpResponse:
        try:
            response = await self._http.request(method, target)
        except httpx.TimeoutException as exc:
            raise TransportTimeout(f"no answer within {self._timeout:g}s") from exc
        except (httpx.TransportError, OSError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        except httpx.DecodingError as exc:
            raise BodyDecodingError(str(exc)) from exc
        headers = [(k.lower(), v) for k, v in response.headers.raw]
        return HttpResponse(response.status_code, headers, response.content)

    async def aclose(self) -> None:
        await self._http.aclose()
