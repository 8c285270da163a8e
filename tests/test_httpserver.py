"""The shared asyncio/h11 server: real sockets, keep-alive, limits, and handler failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import httpx
import pytest

from exporter.httpserver import HttpServer, Request, Response, Stream


async def _echo(request: Request) -> Response:
    if request.path == "/boom":
        raise RuntimeError("handler bug")
    text = f"{request.method} {request.path} {sorted(request.query.items())} {len(request.body)}"
    return Response(body=text.encode(), headers=[("x-test", "1")])


@pytest.fixture
async def server():
    async with HttpServer(_echo, max_body_bytes=1024) as srv:
        yield srv


async def _raw(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


async def test_request_path_and_query_are_decoded(server: HttpServer) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        response = await client.get("/v0/pipelines/%22Quoted%20Name%22", params={"token": "a b", "x": ""})
    assert response.status_code == 200
    assert response.text == "GET /v0/pipelines/\"Quoted Name\" [('token', 'a b'), ('x', '')] 0"
    assert response.headers["x-test"] == "1"


async def test_keep_alive_serves_several_requests_on_one_connection(server: HttpServer) -> None:
    request = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    for _ in range(3):
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
        body = await reader.readexactly(length)
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert body.startswith(b"GET /a")
    writer.close()


async def test_head_gets_headers_and_length_but_no_body(server: HttpServer) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        response = await client.head("/abc")
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(b"HEAD /abc [] 0")
    assert response.content == b""


async def test_handler_exception_becomes_500_and_server_keeps_serving(server: HttpServer) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        failed = await client.get("/boom")
        after = await client.get("/fine")
    assert failed.status_code == 500
    assert after.status_code == 200


async def test_garbage_request_gets_400_and_connection_closed(server: HttpServer) -> None:
    data = await _raw(server.port, b"NOT HTTP AT ALL\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 Bad Request")
    assert b"connection: close" in data.lower()


async def test_oversized_body_is_refused_with_413(server: HttpServer) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        response = await client.post("/upload", content=b"x" * 4096)
        small = await client.post("/upload", content=b"x" * 10)
    assert response.status_code == 413
    assert small.text.endswith(" 10")


async def test_client_disconnect_mid_request_does_not_disturb_server(server: HttpServer) -> None:
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /partial HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    await writer.drain()
    writer.close()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        assert (await client.get("/next")).status_code == 200


async def test_close_cancels_idle_connections_and_frees_the_port() -> None:
    srv = HttpServer(_echo)
    await srv.start()
    port = srv.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await srv.close()
    assert await reader.read() == b""
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_streamed_body_arrives_whole_with_its_length_and_head_skips_it() -> None:
    pieces = [bytes([65 + i]) * 70_000 for i in range(5)]
    consumed: list[int] = []

    def chunks() -> Iterator[bytes]:
        for i, piece in enumerate(pieces):
            consumed.append(i)
            yield piece

    async def handler(request: Request) -> Response:
        return Response(body=Stream(chunks(), sum(map(len, pieces))))

    async with HttpServer(handler) as srv, httpx.AsyncClient(base_url=f"http://127.0.0.1:{srv.port}") as client:
        head = await client.head("/")
        assert head.headers["content-length"] == str(350_000)
        assert (head.content, consumed) == (b"", [])
        response = await client.get("/")
    assert response.headers["content-length"] == str(350_000)
    assert response.content == b"".join(pieces)
    assert consumed == [0, 1, 2, 3, 4]


async def test_closing_with_an_idle_keep_alive_connection_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    srv = HttpServer(_echo)
    await srv.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    with caplog.at_level(logging.ERROR):
        await srv.close()  # the connection stays open and idle: cancelled after the grace period
        await asyncio.sleep(0)
    writer.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
