"""exporter.transport against raw sockets: keep-alive, stale connections, framing, encodings, limits, proxies."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from pydantic import SecretStr

from exporter.client import FelderaClient
from exporter.config import TargetSettings
from exporter.errors import ConnectionFailed, InvalidResponse, RequestTimeout
from exporter.transport import Http11Pool, HttpxTransport, base_path, make_transport, uses_proxy
from tests.conftest import ScriptedFeldera, json_response

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class RawServer:
    """Counts connections and requests; ``handler(reader, writer, connection_number)`` answers on each one."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self.connections)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def raw() -> AsyncIterator[Callable[[Handler], Awaitable[RawServer]]]:
    started: list[RawServer] = []

    async def start(handler: Handler) -> RawServer:
        server = RawServer(handler)
        server.server = await asyncio.start_server(server._serve, "127.0.0.1", 0)
        started.append(server)
        return server

    yield start
    for server in started:
        assert server.server is not None
        server.server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def answer(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", "Content-Type: application/json", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def client_for(url: str, **kwargs: object) -> FelderaClient:
    settings = TargetSettings(url=url, timeout=2.0, api_key=SecretStr("k"))

    async def no_sleep(seconds: float) -> None:
        return None

    return FelderaClient(settings, sleep=no_sleep, **kwargs)  # type: ignore[arg-type]


async def test_connections_are_kept_alive_and_reused(raw: Callable[[Handler], Awaitable[RawServer]]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            await read_request(reader)
            writer.write(answer(b'{"success": 1, "failure": null}'))
            await writer.drain()

    server = await raw(handler)
    async with client_for(server.url) as client:
        for _ in range(5):
            assert (await client.checkpoint_status("p")).success == 1
    assert server.connections == 1


@pytest.mark.parametrize("noticed", [True, False], ids=["close-noticed", "close-unnoticed"])
async def test_a_kept_alive_connection_closed_by_the_server_is_replaced_transparently(
    raw: Callable[[Handler], Awaitable[RawServer]], noticed: bool
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(answer(b'{"success": 2, "failure": null}'))
        await writer.drain()
        if not noticed:  # the next request arrives on the old connection before the close does
            await read_request(reader)
        # then close without saying so (keep-alive timeout on the server)

    server = await raw(handler)
    async with client_for(server.url, retries=0) as client:
        for _ in range(3):
            assert (await client.checkpoint_status("p")).success == 2
            await asyncio.sleep(0.05)
    assert server.connections == 3
    assert {(e, c) for e, c, _ in client.api_stats.requests()} == {("checkpoint_status", "200")}


async def test_chunked_gzip_and_connection_close_answers(raw: Callable[[Handler], Awaitable[RawServer]]) -> None:
    document = b'{"success": 3, "failure": null}'
    packed = gzip.compress(document)
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(packed), packed)
    replies = [
        answer(chunked, "Transfer-Encoding: chunked", "Content-Encoding: gzip"),
        answer(zlib.compress(document), "Content-Encoding: deflate"),
        answer(document, "Connection: close"),
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while replies:
            request = await read_request(reader)
            assert b"accept-encoding: gzip, deflate" in request.lower()
            writer.write(replies.pop(0))
            await writer.drain()

    server = await raw(handler)
    async with client_for(server.url) as client:
        for _ in range(3):
            assert (await client.checkpoint_status("p")).success == 3
    assert server.connections == 1


async def test_a_body_that_cannot_be_decoded_or_is_cut_is_an_invalid_response(
    raw: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    packed = gzip.compress(b'{"success": 3, "failure": null}')
    replies = [b"not gzip at all", packed[: len(packed) // 2]]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while replies:
            await read_request(reader)
            writer.write(answer(replies.pop(0), "Content-Encoding: gzip"))
            await writer.drain()

    server = await raw(handler)
    async with client_for(server.url) as client:
        for _ in range(2):
            with pytest.raises(InvalidResponse):
                await client.checkpoint_status("p")
    assert client.api_stats.requests() == (("checkpoint_status", "invalid_response", 2),)
    assert server.connections == 1  # the answers were complete: the connection stays usable


@pytest.mark.parametrize(
    "reply",
    [b"this is not HTTP\r\n\r\n", b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"success"'],
    ids=["garbage", "cut-short"],
)
async def test_garbage_or_a_cut_answer_is_a_connection_error(
    raw: Callable[[Handler], Awaitable[RawServer]], reply: bytes
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()

    server = await raw(handler)
    async with client_for(server.url, retries=0) as client:
        with pytest.raises(ConnectionFailed):
            await client.checkpoint_status("p")


async def test_a_slow_trickle_is_bounded_by_one_deadline(raw: Callable[[Handler], Awaitable[RawServer]]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(100):
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.05)

    server = await raw(handler)
    settings = TargetSettings(url=server.url, timeout=0.3)
    async with FelderaClient(settings, retries=0) as client:
        with pytest.raises(RequestTimeout):
            await client.checkpoint_status("p")


async def test_requests_in_flight_are_bounded_by_max_connections(feldera: ScriptedFeldera) -> None:
    in_flight, most = 0, 0

    async def slow(request: object) -> object:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return json_response({"success": 1, "failure": None})

    for i in range(20):
        feldera.routes[f"/v0/pipelines/p{i}/checkpoint_status"] = slow  # type: ignore[assignment]
    async with client_for(feldera.url, max_connections=3) as client:
        await asyncio.gather(*(client.checkpoint_status(f"p{i}") for i in range(20)))
    assert most == 3


def test_base_path_keeps_a_prefix_without_trailing_slash() -> None:
    assert base_path("http://h:1") == ""
    assert base_path("http://h:1/feldera/") == "/feldera"
    assert base_path("http://h/a b") == "/a%20b"


def test_proxy_environment_is_honoured_through_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert not uses_proxy("http://feldera:8080")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert not uses_proxy("http://feldera:8080")
    assert uses_proxy("https://feldera:8080")
    monkeypatch.setenv("NO_PROXY", "feldera")
    assert not uses_proxy("https://feldera:8080")
    monkeypatch.setenv("ALL_PROXY", "http://proxy:3128")
    assert uses_proxy("http://other:8080")
    transport = make_transport("http://other:8080", [], timeout=1.0, ssl_context=None, max_connections=2)
    assert isinstance(transport, HttpxTransport)
    monkeypatch.delenv("ALL_PROXY")
    assert isinstance(make_transport("http://o:1", [], timeout=1.0, ssl_context=None, max_connections=2), Http11Pool)


async def test_the_httpx_transport_answers_like_the_pool(
    feldera: ScriptedFeldera, monkeypatch: pytest.MonkeyPatch
) -> None:
    feldera.routes["/feldera/v0/pipelines/a%2Fb/checkpoint_status"] = json_response({"success": 9, "failure": None})
    client = client_for(feldera.url + "/feldera")
    await client.aclose()
    client._transport = HttpxTransport(  # the transport a proxy environment selects, without a proxy here
        feldera.url, [("Accept", "application/json")], timeout=2.0, ssl_context=None, max_connections=2
    )
    async with client:
        assert (await client.checkpoint_status("a/b")).success == 9
        with pytest.raises(Exception) as caught:
            await client.stats("missing")
    assert caught.value.status == 404  # type: ignore[attr-defined]
    assert feldera.requests[0].raw_path == "/feldera/v0/pipelines/a%2Fb/checkpoint_status"
