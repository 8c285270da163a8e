"""A small asyncio HTTP/1.1 server on top of h11 (the parser httpx already depends on).

Used by the exporter's own endpoint and by the Feldera simulator. One handler coroutine receives a parsed
:class:`Request` and returns a :class:`Response`; the server owns keep-alive, limits and error pages, and a
handler exception becomes a 500 without taking the server down.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import h11

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
IDLE_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str
    """The raw request target (path and query, still percent-encoded)."""
    headers: Mapping[str, str]
    """Lower-cased header names; repeated headers joined with ", "."""
    body: bytes = b""
    peer: object = None
    tls_peer_cert: Mapping[str, object] | None = None

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


@dataclass(frozen=True, slots=True)
class Stream:
    """A response body written a chunk at a time, waiting for the socket to drain in between, so a large body
    neither sits in memory whole nor holds up other connections; ``length`` is its exact total size. Chunks are
    produced in a worker thread (they may be costly, e.g. inflated on the fly)."""

    chunks: Iterable[bytes]
    length: int


@dataclass(slots=True)
class Response:
    status: int = 200
    body: bytes | Stream = b""
    content_type: str | None = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], Awaitable[Response]]


def _error_page(status: int, text: str) -> Response:
    return Response(status=status, body=f"{text}\n".encode())


class HttpServer:
    """Serve ``handler`` on ``host:port`` (port 0 picks a free one; read it from :attr:`port` after start)."""

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
        server_header: str = "feldera-exporter",
    ) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._max_body = max_body_bytes
        self._idle_timeout = idle_timeout
        self._server_header = server_header.encode()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def host(self) -> str:
        return self._host

    async def start(self) -> None:
        host: str | None = self._host or None
        self._server = await asyncio.start_server(self._accept, host, self._port, ssl=self._ssl, limit=1 << 16)

    async def close(self) -> None:
        """Stop accepting, give open connections a moment to finish, then cancel them."""
        if self._server is None:
            return
        self._server.close()
        if self._connections:
            _, pending = await asyncio.wait(set(self._connections), timeout=2.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> HttpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve_connection(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError):
            pass
        except asyncio.CancelledError:
            # close() cancels connections still open after its grace period (idle keep-alive ones); ending the task
            # normally keeps asyncio's stream callback from logging the cancelled handler as an error
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        peer = writer.get_extra_info("peername")
        peer_cert = writer.get_extra_info("peercert")
        while True:
            try:
                request = await self._read_request(conn, reader, peer, peer_cert)
            except h11.RemoteProtocolError as exc:
                if conn.their_state is not h11.ERROR or conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    status = exc.error_status_hint
                    await self._send(conn, writer, _error_page(status, "bad request"), keep_alive=False)
                return
            except _BodyTooLarge:
                await self._send(conn, writer, _error_page(413, "request body too large"), keep_alive=False)
                return
            if request is None:
                return
            try:
                response = await self._handler(request)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handler failed for %s %s", request.method, request.raw_path)
                response = _error_page(500, "internal server error")
            await self._send(conn, writer, response, keep_alive=True, head=request.method == "HEAD")
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _read_request(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        peer: object,
        peer_cert: Mapping[str, object] | None,
    ) -> Request | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                async with asyncio.timeout(self._idle_timeout):
                    data = await reader.read(1 << 16)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self._max_body:
                    raise _BodyTooLarge
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                headers: dict[str, str] = {}
                for name, value in head.headers:
                    key = name.decode("latin-1").lower()
                    text = value.decode("latin-1")
                    headers[key] = f"{headers[key]}, {text}" if key in headers else text
                return Request(
                    method=head.method.decode("ascii"),
                    target=head.target.decode("latin-1"),
                    headers=headers,
                    body=bytes(body),
                    peer=peer,
                    tls_peer_cert=peer_cert,
                )

    async def _send(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        response: Response,
        *,
        keep_alive: bool,
        head: bool = False,
    ) -> None:
        body = response.body
        length = body.length if isinstance(body, Stream) else len(body)
        headers = [(b"server", self._server_header), (b"content-length", str(length).encode())]
        if response.content_type is not None:
            headers.append((b"content-type", response.content_type.encode("latin-1")))
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        if not keep_alive:
            headers.append((b"connection", b"close"))
        try:
            head_bytes = conn.send(
                h11.Response(status_code=response.status, headers=headers, reason=_reason(response.status))
            )
            if isinstance(body, Stream):
                writer.write(head_bytes)
                if not head:
                    chunks = iter(body.chunks)
                    # chunks may be costly to make (inflating): in a worker thread, so the loop keeps serving
                    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                        writer.write(conn.send(h11.Data(data=chunk)))
                        await writer.drain()
                writer.write(conn.send(h11.EndOfMessage()))
            else:  # one write, so head and body leave in one segment
                payload = conn.send(h11.Data(data=body)) if body and not head else b""
                writer.write(b"".join((head_bytes, payload, conn.send(h11.EndOfMessage()))))
        except h11.LocalProtocolError:
            return
        await writer.drain()


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class _BodyTooLarge(Exception):
    pass
