"""FelderaClient against real HTTP servers (the scripted Feldera, raw sockets, a real forward proxy): auth, typed
errors, retries, timeouts, keep-alive, framing, encodings, size limits, proxies, TLS, self-stats."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from exporter.client import (
    LIST_VALUES_PER_PIPELINE,
    MAX_JSON_VALUES,
    FelderaClient,
    HttpResponse,
    base_path,
    json_values,
    parse_retry_after,
    top_level_members,
)
from exporter.config import ConfigError, TargetSettings, build_settings
from exporter.errors import ApiError, ConnectionFailed, InvalidResponse, OverLimit, RequestTimeout
from exporter.models import MAX_TEXT_CHARS
from tests.conftest import (
    InFlight,
    ReplyServer,
    Response,
    ScriptedFeldera,
    eventually,
    feldera_error,
    hang,
    json_response,
    pipeline_json,
)


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_client(
    url: str, *, api_key: str | None = None, timeout: float = 5.0, settings: dict | None = None, **kwargs: object
) -> FelderaClient:
    target = TargetSettings(
        url=url, timeout=timeout, api_key=SecretStr(api_key) if api_key else None, **(settings or {})
    )
    kwargs.setdefault("sleep", FakeSleep())
    return FelderaClient(target, **kwargs)  # type: ignore[arg-type]


def requests_of(client: FelderaClient) -> dict[tuple[str, str], int]:
    return {(r.endpoint, r.code): r.count for r in client.api_stats.requests()}


async def test_api_key_is_sent_as_bearer_token(feldera: ScriptedFeldera) -> None:
    feldera.list_pipelines(pipeline_json("p1"))
    async with make_client(feldera.url, api_key="apikey:secret") as client:
        pipelines = (await client.list_pipelines()).pipelines
    assert [p.name for p in pipelines] == ["p1"]
    assert feldera.requests[0].headers["authorization"] == "Bearer apikey:secret"
    assert feldera.requests[0].query == {"selector": "status_with_connectors"}
    assert "secret" not in repr(client)


async def test_no_authorization_header_without_key(feldera: ScriptedFeldera) -> None:
    feldera.list_pipelines()
    async with make_client(feldera.url) as client:
        assert (await client.list_pipelines()).pipelines == []
    assert "authorization" not in feldera.requests[0].headers


async def test_404_raises_api_error_with_error_code_and_is_not_retried(feldera: ScriptedFeldera) -> None:
    async with make_client(feldera.url) as client:
        with pytest.raises(ApiError) as caught:
            await client.checkpoint_status("gone")
    assert caught.value.status == 404
    assert caught.value.error_code == "UnknownPipelineName"
    assert caught.value.code == "404"
    assert len(feldera.requests) == 1
    assert requests_of(client) == {("checkpoint_status", "404"): 1}


async def test_500_is_not_retried(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines/p/stats"] = feldera_error(500, "InitializationError", "boom")
    async with make_client(feldera.url) as client:
        with pytest.raises(ApiError) as caught:
            await client.stats("p")
    assert caught.value.error_code == "InitializationError"
    assert len(feldera.requests) == 1


async def test_401_is_an_api_error_and_not_retried(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines"] = feldera_error(401, "Unauthorized", "bad key")
    async with make_client(feldera.url, api_key="wrong") as client:
        with pytest.raises(ApiError) as caught:
            await client.list_pipelines()
    assert caught.value.status == 401
    assert len(feldera.requests) == 1
    assert "wrong" not in str(caught.value)


async def test_503_with_retry_after_is_retried_after_that_delay(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines/p/checkpoint_status"] = [
        Response(status=503, body=b"Service Unavailable", content_type="text/plain", headers=[("retry-after", "1")]),
        json_response({"success": 7, "failure": None}),
    ]
    sleep = FakeSleep()
    async with make_client(feldera.url, sleep=sleep) as client:
        status = await client.checkpoint_status("p")
    assert status.success == 7
    assert sleep.delays == [1.0]
    assert requests_of(client) == {("checkpoint_status", "503"): 1, ("checkpoint_status", "200"): 1}


@pytest.mark.parametrize(
    "error_code",
    [
        "PipelineInteractionNotDeployed",
        "PipelineUnavailable",
        "PipelineInteractionUnreachable",
        "Initializing",
        "Suspended",
    ],
)
async def test_503_about_the_pipelines_state_is_not_retried(feldera: ScriptedFeldera, error_code: str) -> None:
    """The answer describes the pipeline; retrying within the cycle only delays it (the next cycle asks again)."""
    feldera.routes["/v0/pipelines/p/checkpoint/sync_status"] = feldera_error(503, error_code, retry_after="0")
    sleep = FakeSleep()
    async with make_client(feldera.url, sleep=sleep) as client:
        with pytest.raises(ApiError) as caught:
            await client.sync_status("p")
    assert caught.value.error_code == error_code
    assert sleep.delays == []
    assert requests_of(client) == {("sync_status", "503"): 1}


async def test_503_with_another_error_code_is_retried(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines"] = [feldera_error(503, "ServiceUnavailable"), json_response([])]
    sleep = FakeSleep()
    async with make_client(feldera.url, sleep=sleep, backoff=0.25) as client:
        assert (await client.list_pipelines()).pipelines == []
    assert sleep.delays == [0.25]


async def test_retry_after_longer_than_the_bound_ends_the_attempts(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines/p/checkpoint_status"] = feldera_error(
        503, "PipelineInteractionNotDeployed", retry_after="60"
    )
    sleep = FakeSleep()
    async with make_client(feldera.url, sleep=sleep, max_retry_delay=2.0) as client:
        with pytest.raises(ApiError) as caught:
            await client.checkpoint_status("p")
    assert caught.value.retry_after == 60.0
    assert sleep.delays == []
    assert len(feldera.requests) == 1


async def test_502_html_body_is_reported_without_error_code_and_retried_with_backoff(
    feldera: ScriptedFeldera,
) -> None:
    feldera.routes["/v0/pipelines"] = Response(
        status=502, body=b"<html><body>Bad Gateway</body></html>", content_type="text/html"
    )
    sleep = FakeSleep()
    async with make_client(feldera.url, sleep=sleep, retries=2, backoff=0.5) as client:
        with pytest.raises(ApiError) as caught:
            await client.list_pipelines()
    assert caught.value.status == 502
    assert caught.value.error_code is None
    assert "Bad Gateway" in caught.value.body_excerpt
    assert sleep.delays == [0.5, 1.0]
    assert requests_of(client) == {("list_pipelines", "502"): 3}


async def test_hanging_server_times_out_and_get_is_retried(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines/p/stats"] = hang
    async with make_client(feldera.url, timeout=0.2, retries=1) as client:
        with pytest.raises(RequestTimeout):
            await client.stats("p")
    assert requests_of(client) == {("stats", "timeout"): 2}


async def test_post_is_not_retried_after_a_timeout(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines/p/checkpoint/sync"] = hang
    async with make_client(feldera.url, timeout=0.2) as client:
        with pytest.raises(RequestTimeout):
            await client.checkpoint_sync("p")
    assert requests_of(client) == {("checkpoint_sync", "timeout"): 1}


async def test_refused_connection_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with make_client(f"http://127.0.0.1:{port}", retries=1) as client:
        with pytest.raises(ConnectionFailed):
            await client.list_pipelines()
    assert requests_of(client) == {("list_pipelines", "connection_error"): 2}


async def test_truncated_json_is_an_invalid_response(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines/p/stats"] = Response(body=b'{"inputs": [{"endpoint_name": "t.c"')
    async with make_client(feldera.url) as client:
        with pytest.raises(InvalidResponse):
            await client.stats("p")
    assert requests_of(client) == {("stats", "invalid_response"): 1}
    assert len(feldera.requests) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>Bad Gateway</html>", "body is not JSON: '<html>Bad Gateway</html>'"),
        (b'{"success": 1', "body is not JSON"),
        (b'{"success": "\xff"}', "body is not JSON"),
        (b"[1, 2]", "unexpected JSON shape for CheckpointStatus"),
        (b'{"failure": {"error": "x", "sequence_number": 1}, "success": 1} trailing', "body is not JSON"),
    ],
)
async def test_not_json_and_wrong_shape_are_told_apart(feldera: ScriptedFeldera, body: bytes, message: str) -> None:
    feldera.routes["/v0/pipelines/p/checkpoint_status"] = Response(body=body)
    async with make_client(feldera.url) as client:
        with pytest.raises(InvalidResponse) as caught:
            await client.checkpoint_status("p")
    assert message in str(caught.value)
    assert requests_of(client) == {("checkpoint_status", "invalid_response"): 1}


async def test_json_the_standard_library_accepts_is_still_accepted(feldera: ScriptedFeldera) -> None:
    """pydantic's JSON parser refuses a UTF-8 byte order mark and UTF-16; json.loads takes them."""
    feldera.routes["/v0/pipelines/p/checkpoint_status"] = Response(body=b'\xef\xbb\xbf{"success": 4, "failure": null}')
    feldera.routes["/v0/pipelines/p/stats"] = Response(body='{"inputs": [], "outputs": []}'.encode("utf-16"))
    feldera.routes["/v0/pipelines"] = Response(body=b"\xef\xbb\xbf" + json.dumps([pipeline_json("a")]).encode())
    async with make_client(feldera.url) as client:
        assert (await client.checkpoint_status("p")).success == 4
        assert (await client.stats("p")).inputs == []
        assert [p.name for p in (await client.list_pipelines()).pipelines] == ["a"]


async def test_list_that_is_not_a_json_list_is_an_invalid_response(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines"] = json_response({"pipelines": []})
    async with make_client(feldera.url) as client:
        with pytest.raises(InvalidResponse):
            await client.list_pipelines()


async def test_malformed_list_entries_are_skipped(feldera: ScriptedFeldera) -> None:
    feldera.list_pipelines(pipeline_json("good"), {"no_name": True}, "text", pipeline_json("also-good"))
    async with make_client(feldera.url) as client:
        pipelines = (await client.list_pipelines()).pipelines
    assert [p.name for p in pipelines] == ["good", "also-good"]


async def test_malformed_and_repeated_entries_are_counted_with_a_few_examples(feldera: ScriptedFeldera) -> None:
    """However many entries are bad, the listing carries two counts and three short examples (one log line), never
    one line per entry: 200,000 malformed entries wrote 200,000 WARNING lines (68 MB) on the event loop."""
    feldera.list_pipelines(
        pipeline_json("good"),
        *({"name": i} for i in range(5_000)),  # 5,000 malformed: a number is no name
        {"name": "x" * 100_000, "version": "nope", "deployment_error": 1},  # a long name in no example
        pipeline_json("good"),
    )
    async with make_client(feldera.url) as client:
        listing = await client.list_pipelines()
    assert [p.name for p in listing.pipelines] == ["good"]
    assert (listing.listed, listing.skipped.malformed, listing.skipped.duplicates) == (5_003, 5_001, 1)
    line = listing.skipped.describe()
    assert line.startswith("5001 malformed and 1 repeated entries skipped, e.g. entry 1 (name <int>) malformed: name: ")
    assert line.count("; ") == 2 and len(line) < 500


async def test_keep_leaves_out_entries_it_refuses_but_still_sees_their_names(feldera: ScriptedFeldera) -> None:
    feldera.list_pipelines(pipeline_json("a"), pipeline_json("b"), pipeline_json("a"))
    async with make_client(feldera.url) as client:
        listing = await client.list_pipelines(keep=lambda name: name != "a")
    assert [p.name for p in listing.pipelines] == ["b"]
    assert listing.skipped.duplicates == 1


async def test_a_list_longer_than_max_pipelines_is_over_limit_and_nothing_is_kept(feldera: ScriptedFeldera) -> None:
    feldera.list_pipelines(*(pipeline_json(f"p{i}") for i in range(11)))
    async with make_client(feldera.url, settings={"max_pipelines": 11}) as client:
        assert len((await client.list_pipelines()).pipelines) == 11
    async with make_client(feldera.url, settings={"max_pipelines": 10}) as client:
        with pytest.raises(OverLimit) as caught:
            await client.list_pipelines()
    assert str(caught.value) == "list_pipelines: the list holds 11 pipelines, more than 10 (max_pipelines 10)"
    assert requests_of(client) == {("list_pipelines", "invalid_response"): 1}


async def test_a_list_with_more_json_values_than_max_pipelines_allows_is_refused_before_parsing(
    feldera: ScriptedFeldera,
) -> None:
    """``[{},{},...]`` costs about 72 bytes per 3-byte entry once parsed: the values are counted before."""
    values = 1_000 * LIST_VALUES_PER_PIPELINE
    feldera.routes["/v0/pipelines"] = Response(body=b"[" + b",".join([b"{}"] * values) + b"]")  # 375 KiB
    async with make_client(feldera.url, settings={"max_pipelines": 1_000}) as client:
        outcome, peak = await peak_allocated_while(client.list_pipelines())
    assert isinstance(outcome, OverLimit), outcome
    assert f"holds up to {2 * values + 1} JSON values, more than {values} (max_pipelines 1000)" in str(outcome)
    assert peak < 2 * MiB  # the body and the read buffers; a tree of 128,000 dictionaries is 9 MiB


async def test_an_answer_with_more_json_values_than_the_bound_is_an_invalid_response(feldera: ScriptedFeldera) -> None:
    inputs = b",".join([b"{}"] * MAX_JSON_VALUES)
    feldera.routes["/v0/pipelines/p/stats"] = Response(body=b'{"inputs": [' + inputs + b"]}")
    async with make_client(feldera.url) as client:
        with pytest.raises(InvalidResponse) as caught:
            await client.stats("p")
    assert f"more than {MAX_JSON_VALUES}" in str(caught.value) and not isinstance(caught.value, OverLimit)


async def test_long_texts_are_cut_where_kept_and_where_logged(feldera: ScriptedFeldera) -> None:
    """A message of megabytes is kept (and logged) as its first characters: a snapshot holds one answer per
    connector, and a log line's length is not the server's to choose."""
    huge = "m" * 1_000_000
    feldera.routes["/v0/pipelines/p/stats"] = json_response(
        {
            "inputs": [
                {"endpoint_name": "t.c", "fatal_error": huge, "health": {"status": "Unhealthy", "description": huge}}
            ]
        }
    )
    feldera.routes["/v0/pipelines/p/checkpoint_status"] = feldera_error(500, "E" * 1_000, huge)
    feldera.routes["/v0/pipelines/p/checkpoint/sync_status"] = json_response({"success": [1] * 200_000})
    async with make_client(feldera.url) as client:
        (connector,) = (await client.stats("p")).inputs
        with pytest.raises(ApiError) as failed:
            await client.checkpoint_status("p")
        with pytest.raises(InvalidResponse) as misshaped:
            await client.sync_status("p")
    assert connector.fatal_error == "m" * MAX_TEXT_CHARS
    assert connector.health is not None and connector.health.description == "m" * MAX_TEXT_CHARS
    assert len(str(failed.value)) < 1_000 and str(failed.value).endswith("... (1000000 characters)")
    assert failed.value.error_code == "E" * 1_000  # compared with known codes, whole
    assert len(str(misshaped.value)) < 1_000


async def test_repeated_pipeline_names_keep_the_first_entry(feldera: ScriptedFeldera) -> None:
    """Found by the robustness fuzzer: a repeated name would otherwise give duplicate series."""
    feldera.list_pipelines(
        pipeline_json("orders", version=1), pipeline_json("other", version=2), pipeline_json("orders", version=3)
    )
    async with make_client(feldera.url) as client:
        pipelines = (await client.list_pipelines()).pipelines
    assert [(p.name, p.version) for p in pipelines] == [("orders", 1), ("other", 2)]


async def test_path_segments_are_url_encoded(feldera: ScriptedFeldera) -> None:
    async with make_client(feldera.url) as client:
        with pytest.raises(ApiError):
            await client.input_connector_stats("a/b c", '"Orders"', "kafka.in")
    assert feldera.requests[0].raw_path == "/v0/pipelines/a%2Fb%20c/tables/%22Orders%22/connectors/kafka.in/stats"


async def test_dot_segments_are_encoded_so_no_request_leaves_the_pipeline(feldera: ScriptedFeldera) -> None:
    async with make_client(feldera.url) as client:
        for name in ("..", ".", "..."):
            with pytest.raises(ApiError):
                await client.reset_status(name, "t")
    assert feldera.paths() == [
        "/v0/pipelines/%2E%2E/reset_status",
        "/v0/pipelines/%2E/reset_status",
        "/v0/pipelines/.../reset_status",
    ]


async def test_a_lone_surrogate_in_a_name_is_sent_as_bytes_and_answered_not_raised(feldera: ScriptedFeldera) -> None:
    async with make_client(feldera.url) as client:
        with pytest.raises(ApiError):
            await client.checkpoint_status("bad\ud800name")
    assert feldera.requests[0].raw_path == "/v0/pipelines/bad%ED%A0%80name/checkpoint_status"


async def test_base_url_path_prefix_is_kept(feldera: ScriptedFeldera) -> None:
    feldera.routes["/feldera/v0/pipelines"] = json_response([])
    async with make_client(feldera.url + "/feldera") as client:
        assert (await client.list_pipelines()).pipelines == []


async def test_cluster_health_503_body_is_parsed(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/cluster_healthz"] = json_response(
        {"all_healthy": False, "api": {"healthy": True}, "runner": {"healthy": False}}, status=503
    )
    async with make_client(feldera.url) as client:
        health = await client.cluster_health()
    assert health.all_healthy is False
    assert health.runner is not None and health.runner.healthy is False
    assert requests_of(client) == {("cluster_healthz", "503"): 1}


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, {"checkpoint_sequence_number": 4}), (202, {"checkpoint_uuid": "u", "incarnation_uuid": "i"})],
)
async def test_checkpoint_sync_accepts_200_and_202(feldera: ScriptedFeldera, status: int, body: dict) -> None:
    feldera.routes["/v0/pipelines/p/checkpoint/sync"] = json_response(body, status)
    async with make_client(feldera.url) as client:
        answer = await client.checkpoint_sync("p")
    assert feldera.requests[0].method == "POST"
    assert answer.checkpoint_sequence_number == body.get("checkpoint_sequence_number")
    assert answer.checkpoint_uuid == body.get("checkpoint_uuid")


async def test_checkpoint_sync_on_community_edition_raises_501(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines/p/checkpoint/sync"] = feldera_error(501, "EnterpriseFeature")
    async with make_client(feldera.url) as client:
        with pytest.raises(ApiError) as caught:
            await client.checkpoint_sync("p")
    assert caught.value.status == 501
    assert len(feldera.requests) == 1


async def test_reset_status_sends_the_token_and_returns_the_json_body(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines/p/reset_status"] = json_response({"status": "completed"})
    async with make_client(feldera.url) as client:
        body = await client.reset_status("p", "tok/1")
    assert body == {"status": "completed"}
    assert feldera.requests[0].query == {"token": "tok/1"}


async def test_sync_status_and_output_connector_stats(feldera: ScriptedFeldera) -> None:
    feldera.routes["/v0/pipelines/p/checkpoint/sync_status"] = json_response(
        {"success": "u1", "failure": None, "periodic": None}
    )
    feldera.routes["/v0/pipelines/p/views/v/connectors/out/stats"] = json_response(
        {"endpoint_name": "v.out", "metrics": {"transmitted_records": 3}}
    )
    async with make_client(feldera.url) as client:
        assert (await client.sync_status("p")).success == "u1"
        assert (await client.output_connector_stats("p", "v", "out")).metrics.transmitted_records == 3
    assert feldera.paths() == [
        "/v0/pipelines/p/checkpoint/sync_status",
        "/v0/pipelines/p/views/v/connectors/out/stats",
    ]


async def test_request_durations_are_recorded_per_endpoint(feldera: ScriptedFeldera) -> None:
    feldera.list_pipelines()
    ticks = iter([10.0, 10.3, 20.0, 20.01])
    async with make_client(feldera.url, monotonic=lambda: next(ticks)) as client:
        await client.list_pipelines()
        await client.list_pipelines()
    (timing,) = client.api_stats.timings()
    assert timing.endpoint == "list_pipelines"
    assert timing.count == 2
    assert timing.total_seconds == pytest.approx(0.31)
    assert dict(zip(timing.bounds, timing.counts, strict=True))[0.025] == 1
    assert dict(zip(timing.bounds, timing.counts, strict=True))[0.5] == 2


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 5\t") == 5.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 -0000", now=1445412480.0) == 10.0  # no zone: GMT
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    "value",
    [
        "\u00b2",
        "\u0663",
        "1\u00b9",
        "\uff15",
        "5.0",
        "-1",
        "+5",
        "1e3",
        "0x10",
        "\u00a05",
        "Wed, \u0662\u0661 Oct 2015 07:28:10 GMT",
    ],
)
def test_retry_after_takes_ascii_digits_only_as_rfc_9110_says(value: str) -> None:
    """``str.isdigit`` is true for ``²`` and ``٣`` and ``float`` refuses the first: that raised ValueError, and the
    target went down with an "unexpected" error. Anything but ASCII delay-seconds or an ASCII date is no hint."""
    assert parse_retry_after(value) is None


@given(st.text(max_size=40))
def test_retry_after_never_raises(value: str) -> None:
    delay = parse_retry_after(value, now=0.0)
    assert delay is None or delay >= 0.0


async def test_a_unicode_digit_in_retry_after_is_no_hint_and_the_request_is_retried_with_backoff(
    feldera: ScriptedFeldera,
) -> None:
    feldera.routes["/v0/pipelines"] = [
        feldera_error(503, "ServiceUnavailable", retry_after="\u00b2"),
        json_response([]),
    ]
    sleep = FakeSleep()
    async with make_client(feldera.url, sleep=sleep, backoff=0.25) as client:
        assert (await client.list_pipelines()).pipelines == []
    assert sleep.delays == [0.25]
    assert requests_of(client) == {("list_pipelines", "503"): 1, ("list_pipelines", "200"): 1}


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", *subject, *files],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
async def tls_feldera(tls_files: tuple[Path, Path]) -> AsyncIterator[ScriptedFeldera]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    scripted = ScriptedFeldera()
    scripted.server = ReplyServer(scripted.handle, ssl_context=context)
    await scripted.server.start()
    scripted.list_pipelines(pipeline_json("p"))
    try:
        yield scripted
    finally:
        await scripted.server.close()


def https_client(feldera: ScriptedFeldera, **fields: object) -> FelderaClient:
    url = feldera.url.replace("http://", "https://")
    return FelderaClient(TargetSettings(url=url, **fields), sleep=FakeSleep(), retries=0)  # type: ignore[arg-type]


async def test_tls_server_is_verified_with_the_configured_ca_file(
    tls_feldera: ScriptedFeldera, tls_files: tuple[Path, Path]
) -> None:
    async with https_client(tls_feldera, ca_file=tls_files[0]) as client:
        assert [p.name for p in (await client.list_pipelines()).pipelines] == ["p"]


async def test_tls_server_with_an_unknown_ca_is_refused(tls_feldera: ScriptedFeldera) -> None:
    async with https_client(tls_feldera) as client:
        with pytest.raises(ConnectionFailed):
            await client.list_pipelines()


async def test_tls_verification_can_be_switched_off(tls_feldera: ScriptedFeldera) -> None:
    async with https_client(tls_feldera, tls_verify=False) as client:
        assert [p.name for p in (await client.list_pipelines()).pipelines] == ["p"]


# ---- raw sockets: keep-alive, framing, encodings, deadlines, limits ------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class RawServer:
    """Counts connections, requests and closes seen from the client; ``handler(reader, writer,
    connection_number)`` answers on each connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        request = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(request)
        return request

    def methods(self) -> list[str]:
        return [r.split(b" ", 1)[0].decode() for r in self.requests]

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


Raw = Callable[[Handler], Awaitable[RawServer]]


def answer(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", "Content-Type: application/json", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


CHECKPOINT = b'{"success": 1, "failure": null}'


async def test_connections_are_kept_alive_and_reused(raw: Raw) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            await server.read_request(reader)
            writer.write(answer(CHECKPOINT))
            await writer.drain()

    server = await raw(handler)
    async with make_client(server.url) as client:
        for _ in range(5):
            assert (await client.checkpoint_status("p")).success == 1
    assert server.connections == 1


@pytest.mark.parametrize("noticed", [True, False], ids=["close-noticed", "close-unnoticed"])
async def test_a_kept_alive_connection_closed_by_the_server_is_replaced_for_a_get(raw: Raw, noticed: bool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await server.read_request(reader)
        writer.write(answer(CHECKPOINT))
        await writer.drain()
        if not noticed:  # the next request arrives on the old connection before the close does
            await server.read_request(reader)
        # then close without saying so (keep-alive timeout on the server)

    server = await raw(handler)
    async with make_client(server.url, retries=0) as client:
        for _ in range(3):
            assert (await client.checkpoint_status("p")).success == 1
            await asyncio.sleep(0.05)
    assert server.connections == 3
    assert requests_of(client) == {("checkpoint_status", "200"): 3}


async def test_idle_kept_alive_connections_are_closed_after_keepalive_timeout(raw: Raw) -> None:
    """A connection a NAT or load balancer dropped silently would cost a whole timeout if it were reused."""
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        try:
            while True:
                await server.read_request(reader)
                writer.write(answer(CHECKPOINT))
                await writer.drain()
        except asyncio.IncompleteReadError:  # the client closed the connection
            closed.set()

    server = await raw(handler)
    async with make_client(server.url, settings={"keepalive_timeout": 0.3}) as client:
        assert (await client.checkpoint_status("p")).success == 1
        await asyncio.wait_for(closed.wait(), 10)  # closed by the client while idle, long before 10 s
        assert (await client.checkpoint_status("p")).success == 1
    assert server.connections == 2


@pytest.mark.parametrize("answered", [True, False], ids=["fresh-connection", "dropped"])
async def test_a_post_is_never_sent_twice(raw: Raw, answered: bool) -> None:
    """Each connection answers one request, then reads the next and closes without answering (a server's
    keep-alive timeout racing the request). A POST must not be re-sent: it goes on a new connection, and when that
    one is dropped too the failure is reported."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        request = await server.read_request(reader)
        if request.startswith(b"POST") and not answered:
            return
        body = b'{"checkpoint_uuid": "u", "incarnation_uuid": "i"}' if request.startswith(b"POST") else CHECKPOINT
        writer.write(answer(body, status="202 Accepted" if request.startswith(b"POST") else "200 OK"))
        await writer.drain()
        await server.read_request(reader)

    server = await raw(handler)
    async with make_client(server.url) as client:
        assert (await client.checkpoint_status("p")).success == 1
        if answered:
            assert (await client.checkpoint_sync("p")).checkpoint_uuid == "u"
        else:
            with pytest.raises(ConnectionFailed):
                await client.checkpoint_sync("p")
    assert server.methods().count("POST") == 1
    code = "202" if answered else "connection_error"
    assert requests_of(client) == {("checkpoint_status", "200"): 1, ("checkpoint_sync", code): 1}


async def test_chunked_gzip_deflate_and_connection_close_answers(raw: Raw) -> None:
    document = b'{"success": 3, "failure": null}'
    packed = gzip.compress(document)
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(packed), packed)
    replies = [
        answer(chunked, "Transfer-Encoding: chunked", "Content-Encoding: gzip"),
        answer(zlib.compress(document), "Content-Encoding: deflate"),
        answer(zlib.compress(document)[2:-4], "Content-Encoding: deflate"),  # raw deflate, as some servers send
        answer(document, "Connection: close"),
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while replies:
            request = await server.read_request(reader)
            assert b"accept-encoding: gzip, deflate" in request.lower()
            writer.write(replies.pop(0))
            await writer.drain()

    server = await raw(handler)
    async with make_client(server.url) as client:
        for _ in range(4):
            assert (await client.checkpoint_status("p")).success == 3
    assert server.connections == 1


async def test_a_body_that_cannot_be_decoded_or_is_cut_is_an_invalid_response(raw: Raw) -> None:
    packed = gzip.compress(b'{"success": 3, "failure": null}')
    replies = [b"not gzip at all", packed[: len(packed) // 2]]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while replies:
            await server.read_request(reader)
            writer.write(answer(replies.pop(0), "Content-Encoding: gzip"))
            await writer.drain()

    server = await raw(handler)
    async with make_client(server.url) as client:
        for _ in range(2):
            with pytest.raises(InvalidResponse):
                await client.checkpoint_status("p")
    assert requests_of(client) == {("checkpoint_status", "invalid_response"): 2}
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    "reply",
    [b"this is not HTTP\r\n\r\n", b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"success"'],
    ids=["garbage", "cut-short"],
)
async def test_garbage_or_a_cut_answer_is_a_connection_error(raw: Raw, reply: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await server.read_request(reader)
        writer.write(reply)
        await writer.drain()

    server = await raw(handler)
    async with make_client(server.url, retries=0) as client:
        with pytest.raises(ConnectionFailed) as caught:
            await client.reset_status("p", "secret-token")
    assert "\n" not in str(caught.value)
    assert "secret-token" not in str(caught.value)
    assert caught.value.__cause__ is None  # aiohttp's error carries the URL (with the token) and the headers


async def test_a_slow_trickle_is_bounded_by_one_deadline(raw: Raw) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(100):
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.05)

    server = await raw(handler)
    async with make_client(server.url, timeout=0.3, retries=0) as client:
        with pytest.raises(RequestTimeout):
            await client.checkpoint_status("p")


async def test_requests_in_flight_are_bounded_by_max_connections(feldera: ScriptedFeldera) -> None:
    in_flight = InFlight(limit=3)

    async def slow(request: object) -> object:
        async with in_flight.held():
            return json_response({"success": 1, "failure": None})

    for i in range(20):
        feldera.routes[f"/v0/pipelines/p{i}/checkpoint_status"] = slow  # type: ignore[assignment]
    async with make_client(feldera.url, max_connections=3) as client:
        await asyncio.gather(*(client.checkpoint_status(f"p{i}") for i in range(20)))
    assert in_flight.most == 3


def test_base_path_keeps_a_prefix_without_trailing_slash() -> None:
    assert base_path("http://h:1") == ""
    assert base_path("http://h:1/feldera/") == "/feldera"
    assert base_path("http://h/a b") == "/a%20b"


# ---- response size: a cap on the decoded body, never retried ---------------------------------------------------


def test_limits_are_target_settings_with_units() -> None:
    target = build_settings({"targets": [{"max_response_size": "64MiB", "keepalive_timeout": "2m"}]}, env={}).targets[0]
    assert (target.max_response_size, target.keepalive_timeout) == (64 * 1024 * 1024, 120.0)
    assert build_settings({}, env={}).targets[0].max_response_size == 24 * 1024 * 1024
    for raw, problem in [
        ({"max_response_size": "lots"}, "targets[0].max_response_size: could not parse value and unit"),
        ({"max_response_size": 0}, "targets[0].max_response_size: Input should be greater than 0"),
        ({"keepalive_timeout": "0s"}, "targets[0].keepalive_timeout: duration must be greater than 0"),
    ]:
        with pytest.raises(ConfigError) as caught:
            build_settings({"targets": [raw]}, env={})
        assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


MiB = 1024 * 1024


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """1 GiB of zeros, gzip-compressed to about 1 MiB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(MiB)
    return b"".join([*(packer.compress(block) for _ in range(1024)), packer.flush()])


async def peak_allocated_while(work: Awaitable[object]) -> tuple[object, int]:
    """``work``'s outcome (its exception, if it raised) and the peak of Python allocations meanwhile."""
    tracemalloc.start()
    try:
        try:
            outcome: object = await work
        except Exception as exc:
            outcome = exc
        return outcome, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def send_until_closed(writer: asyncio.StreamWriter, head: bytes, chunks: Iterator[bytes]) -> None:
    writer.write(head)
    for chunk in chunks:
        if writer.is_closing():
            return
        writer.write(chunk)
        await writer.drain()


@pytest.mark.xdist_group("gzip-bomb")  # one worker makes the bomb (module-scoped, seconds) for both
@pytest.mark.parametrize("encoding", ["gzip", "gzip, gzip"])
async def test_a_gzip_bomb_is_not_inflated_past_the_cap(raw: Raw, gzip_bomb: bytes, encoding: str) -> None:
    body = gzip.compress(gzip_bomb) if encoding == "gzip, gzip" else gzip_bomb  # the double one: about 3 KiB

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await server.read_request(reader)
        writer.write(answer(body, f"Content-Encoding: {encoding}"))
        await writer.drain()

    server = await raw(handler)
    async with make_client(server.url, settings={"max_response_size": MiB}) as client:
        outcome, peak = await peak_allocated_while(client.stats("p"))
    assert isinstance(outcome, InvalidResponse), outcome
    expected = "exceeds max_response_size 1048576" if encoding == "gzip" else "unsupported Content-Encoding"
    assert expected in str(outcome)
    assert peak < 16 * MiB  # the bomb inflates to 1 GiB
    assert len(server.requests) == 1  # not retried
    assert requests_of(client) == {("stats", "invalid_response"): 1}


async def test_an_endless_chunked_body_is_cut_at_the_cap_and_not_retried(raw: Raw) -> None:
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * 64 * 1024)
        while sent < 1024 * MiB:  # bounded: the test fails (not hangs) if the client reads on
            sent += 64 * 1024
            yield chunk

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await server.read_request(reader)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        await send_until_closed(writer, head, endless())

    server = await raw(handler)
    async with make_client(server.url, timeout=60, settings={"max_response_size": 2 * MiB}) as client:
        outcome, peak = await peak_allocated_while(client.list_pipelines())
    assert isinstance(outcome, InvalidResponse), outcome
    assert "exceeds max_response_size 2097152" in str(outcome)
    assert peak < 16 * MiB
    assert sent < 64 * MiB
    assert len(server.requests) == 1
    assert requests_of(client) == {("list_pipelines", "invalid_response"): 1}


async def test_a_huge_content_length_is_refused_before_reading(raw: Raw) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000000000\r\n\r\n[")
        await writer.drain()
        await reader.read()  # nothing more is sent: a client that waited for the body would time out

    server = await raw(handler)
    async with make_client(server.url, timeout=30) as client:
        with pytest.raises(InvalidResponse) as caught:
            await client.list_pipelines()
    assert "Content-Length 100000000000 exceeds max_response_size 25165824" in str(caught.value)
    assert len(server.requests) == 1
    assert requests_of(client) == {("list_pipelines", "invalid_response"): 1}


async def test_a_body_within_the_cap_is_read_whole(raw: Raw) -> None:
    document = json.dumps([pipeline_json(f"p{i}") for i in range(2000)]).encode()  # ~1.2 MiB, 0.1 MiB gzipped

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            await server.read_request(reader)
            writer.write(answer(gzip.compress(document), "Content-Encoding: gzip"))
            await writer.drain()

    server = await raw(handler)
    async with make_client(server.url, settings={"max_response_size": len(document)}) as client:
        assert len((await client.list_pipelines()).pipelines) == 2000
    async with make_client(server.url, settings={"max_response_size": len(document) - 1}) as client:
        with pytest.raises(InvalidResponse):
            await client.list_pipelines()


async def test_a_body_is_held_once_while_read_not_as_chunks_and_a_joined_copy(raw: Raw) -> None:
    """Chunks plus their joined copy held twice the body: the 256 MiB cap could cost about 570 MiB. A bytearray
    grown in place peaks at the body and one chunk."""
    body = b'"' + b"x" * (16 * MiB) + b'"'
    sent = memoryview(answer(body))  # made before tracing; written in slices, so the server buffers none of it

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await server.read_request(reader)
        for start in range(0, len(sent), 1 << 16):
            writer.write(sent[start : start + (1 << 16)])
            await writer.drain()

    server = await raw(handler)
    async with make_client(server.url, settings={"max_response_size": 17 * MiB}) as client:
        outcome, peak = await peak_allocated_while(client._exchange("GET", "/v0/pipelines/p/reset_status"))
    assert isinstance(outcome, HttpResponse) and len(outcome.content) == len(body)
    assert peak < 24 * MiB  # the body, its growth room (an eighth) and a chunk; two copies were over 32 MiB


async def test_answers_read_at_once_share_max_response_size(raw: Raw) -> None:
    """Each answer under the cap, but ``poll.concurrency`` of them at once would hold that many caps: 32 x 256 MiB
    before. The cap bounds what a target's answers hold together; those past it fail, the rest are read whole."""
    release = asyncio.Event()
    body = b'{"inputs": [], "outputs": []' + b" " * (3 * MiB) + b"}"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await server.read_request(reader)
        writer.write(answer(body)[:-MiB])  # most of it, then wait until every request has that much
        await writer.drain()
        await release.wait()
        writer.write(body[-MiB:])
        await writer.drain()

    server = await raw(handler)
    async with make_client(server.url, settings={"max_response_size": 10 * MiB}, max_connections=8) as client:
        calls = [asyncio.create_task(client.stats(f"p{i}")) for i in range(8)]
        # 8 x 2 MiB arrive before any body ends: at least 3 fail, as the rest hold up to 10 MiB
        await eventually(lambda: sum(call.done() for call in calls) >= 3, "the first answers refused")
        release.set()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        again = await client.stats("alone")
    refused = [o for o in outcomes if isinstance(o, InvalidResponse)]
    assert len(refused) >= 5, outcomes  # at most three bodies of 3 MiB fit in 10 MiB
    assert all("answers being read at once exceed max_response_size 10485760" in str(o) for o in refused)
    assert all(o.inputs == [] for o in outcomes if not isinstance(o, BaseException))
    assert again.inputs == []  # all given back to the budget
    assert client._buffered == 0


# ---- proxies from the environment, through a real forward proxy (proxy.py) ---------------------------------

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


class ForwardProxy:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def requests(self) -> list[str]:
        """The access-log lines (``... - GET host:port/path - 200 OK ...``, ``CONNECT host:port``)."""
        text = self.log.read_text() if self.log.exists() else ""
        return [line.split(" - ", 1)[1] for line in text.splitlines() if "access_log" in line]


@pytest.fixture(scope="module")
def forward_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForwardProxy]:
    directory = tmp_path_factory.mktemp("proxy")
    port_file, log = directory / "port", directory / "proxy.log"
    command = [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0", "--port-file", str(port_file)]
    command += ["--num-workers", "1", "--num-acceptors", "1", "--log-file", str(log)]
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARIABLES}
    process = subprocess.Popen(command, env=env, cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            if process.poll() is not None:
                raise AssertionError(f"proxy.py exited with {process.returncode}: {log.read_text()}")
            time.sleep(0.1)
        else:
            raise AssertionError("proxy.py did not start within 30 s")
        yield ForwardProxy(f"http://127.0.0.1:{port_file.read_text().strip()}", log)
    finally:
        process.terminate()
        process.wait(10)


def access_lines(proxy: ForwardProxy, fragment: str) -> list[str]:
    return [line for line in proxy.requests() if fragment in line]


@pytest.mark.xdist_group("forward-proxy")  # one proxy.py process (module-scoped) for both
async def test_http_proxy_from_the_environment_is_used(
    feldera: ScriptedFeldera, forward_proxy: ForwardProxy, proxy_env: pytest.MonkeyPatch
) -> None:
    feldera.routes["/feldera/v0/pipelines/a%2Fb/checkpoint_status"] = json_response({"success": 9, "failure": None})
    proxy_env.setenv("HTTP_PROXY", forward_proxy.url)
    async with make_client(feldera.url + "/feldera", api_key="k") as client:
        assert (await client.checkpoint_status("a/b")).success == 9
        with pytest.raises(ApiError) as caught:
            await client.stats("missing")
    assert caught.value.status == 404
    assert feldera.paths() == ["/feldera/v0/pipelines/a%2Fb/checkpoint_status", "/feldera/v0/pipelines/missing/stats"]
    assert feldera.requests[0].headers["authorization"] == "Bearer k"
    port = feldera.url.rsplit(":", 1)[1]
    line = f"GET 127.0.0.1:{port}/feldera/v0/pipelines/a%2Fb/checkpoint_status - 200"  # proxy.py logs a
    await eventually(lambda: access_lines(forward_proxy, line), "the request in the access log")  # connection's first


@pytest.mark.xdist_group("forward-proxy")  # one proxy.py process (module-scoped) for both
async def test_https_proxy_tunnels_to_a_tls_target(
    tls_feldera: ScriptedFeldera,
    tls_files: tuple[Path, Path],
    forward_proxy: ForwardProxy,
    proxy_env: pytest.MonkeyPatch,
) -> None:
    proxy_env.setenv("HTTPS_PROXY", forward_proxy.url)
    async with https_client(tls_feldera, ca_file=tls_files[0]) as client:
        assert [p.name for p in (await client.list_pipelines()).pipelines] == ["p"]
    port = tls_feldera.url.rsplit(":", 1)[1]
    await eventually(lambda: access_lines(forward_proxy, f"CONNECT 127.0.0.1:{port}"), "CONNECT in the access log")


async def test_no_proxy_exempts_a_target(feldera: ScriptedFeldera, proxy_env: pytest.MonkeyPatch) -> None:
    feldera.list_pipelines(pipeline_json("direct"))
    with socket.socket() as sock:  # a proxy address nothing listens on: used, it refuses the connection
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    proxy_env.setenv("HTTP_PROXY", dead)
    async with make_client(feldera.url, retries=0) as client:
        with pytest.raises(ConnectionFailed):
            await client.list_pipelines()
    assert feldera.requests == []
    proxy_env.setenv("NO_PROXY", "localhost,127.0.0.1")
    async with make_client(feldera.url) as client:
        assert [p.name for p in (await client.list_pipelines()).pipelines] == ["direct"]


def test_the_exporter_runtime_does_not_import_httpx() -> None:
    """One HTTP client stack (aiohttp): httpx, httpcore and sniffio are test-only dependencies."""
    modules = "exporter.cli, exporter.app, exporter.client, exporter.poller, exporter.sidecar.cli"
    code = f"import sys, {modules}; print(sorted({{m.split('.')[0] for m in sys.modules}}))"
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert "aiohttp" in loaded
    assert not {"httpx", "httpcore", "sniffio"} & set(json.loads(loaded.replace("'", '"')))


@pytest.mark.parametrize("proxy", ["http://user:pw@[::1", "user:pw@proxy:3128 here"])
async def test_an_unusable_proxy_variable_is_a_connection_error_without_the_credentials(
    proxy_env: pytest.MonkeyPatch, proxy: str
) -> None:
    proxy_env.setenv("HTTP_PROXY", proxy)
    async with make_client("http://127.0.0.1:9", retries=0) as client:
        with pytest.raises(ConnectionFailed) as caught:
            await client.list_pipelines()
    assert "proxy environment variable" in str(caught.value)
    assert "pw" not in str(caught.value)


def selector_all(program_info: object, *, runtime_config: object, version: int = 7, first: str = "") -> bytes:
    """A ``selector=all`` answer as Feldera writes it: ``version`` and ``runtime_config`` before the program."""
    head = f'{{"id": "i", "name": "p", "description": "{first}", "tags": ["a\\"]"], "version": {version}, '
    rest = {"runtime_config": runtime_config, "program_code": "x" * 100_000, "program_info": program_info}
    return head.encode() + json.dumps(rest)[1:].encode()


async def test_runtime_config_of_a_program_with_thousands_of_columns_is_read_without_parsing_the_program(
    feldera: ScriptedFeldera,
) -> None:
    """A selector=all answer holds the program's schema (``program_info.schema``, each column as Feldera's
    ``Field``): 300 tables of 40 columns pass the bound on JSON values twice, yet only ``version`` and
    ``runtime_config`` are parsed, not the schema after them."""
    columntype = {"type": "BIGINT", "nullable": True, "precision": None, "scale": None, "component": None}
    column = {"name": "c", "case_sensitive": False, "columntype": columntype, "lateness": None, "watermark": None}
    schema = {"inputs": [{"name": f"t{i}", "fields": [column] * 40} for i in range(300)], "outputs": []}
    ft = {"fault_tolerance": {"model": "at_least_once", "checkpoint_interval_secs": 30}}
    body = selector_all({"schema": schema}, runtime_config=ft)
    assert json_values(body) > 2 * MAX_JSON_VALUES
    feldera.routes["/v0/pipelines/p"] = Response(body=body)
    async with make_client(feldera.url) as client:
        outcome, peak = await peak_allocated_while(client.runtime_config("p"))
    assert not isinstance(outcome, BaseException), outcome
    assert (outcome.version, outcome.fault_tolerance.model, outcome.fault_tolerance.checkpoint_interval_seconds) == (
        7,
        "at_least_once",
        30.0,
    )
    assert peak < 4 * len(body)  # the body and read buffers, not a tree of 100,000 dictionaries (about 50 MiB)
    assert requests_of(client) == {("runtime_config", "200"): 1}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"version": 3, "runtime_config": {"fault_tolerance": {"model": "exactly_once"}}}', ("exactly_once", 3)),
        (b' \n{ "runtime_config" : {"workers": 4} , "version" : 2 }', ("none", 2)),
        (b'{"description": "\\"version\\": 9, {[", "version": 5, "runtime_config": {}}', ("none", 5)),
        (b'{"nested": {"version": 8, "runtime_config": {"fault_tolerance": {}}}, "version": 1}', ("none", 1)),
        (b'{"version": 4}', ("none", 4)),
        ('\ufeff{"version": 6, "runtime_config": {"fault_tolerance": {}}}'.encode(), ("exactly_once", 6)),
    ],
)
async def test_runtime_config_members_are_found_at_the_top_level_only(
    feldera: ScriptedFeldera, body: bytes, expected: tuple[str, int]
) -> None:
    feldera.routes["/v0/pipelines/p"] = Response(body=body)
    async with make_client(feldera.url) as client:
        answer = await client.runtime_config("p")
    assert (answer.fault_tolerance.model, answer.version) == expected


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"version": 3, "runtime_config": {"fault_tolerance": [1,}', "body is not JSON"),
        (b'{"version": 3, "runtime_config": "unterminated', "body is not JSON"),
        (b'{"version": , "runtime_config": {}}', "body is not JSON"),
        (b'{"tags": [' + b",".join([b"[]"] * MAX_JSON_VALUES) + b'], "version": 1}', "JSON values before"),
        (b'{"version": 1, "runtime_config": [' + b",".join([b"{}"] * MAX_JSON_VALUES) + b"]}", "JSON values"),
        (b'[{"version": 1}]', "unexpected JSON shape"),
    ],
)
async def test_a_runtime_config_answer_that_cannot_be_read_is_an_invalid_response(
    feldera: ScriptedFeldera, body: bytes, why: str
) -> None:
    feldera.routes["/v0/pipelines/p"] = Response(body=body)
    async with make_client(feldera.url) as client:
        with pytest.raises(InvalidResponse) as caught:
            await client.runtime_config("p")
    assert why in str(caught.value)
    assert requests_of(client) == {("runtime_config", "invalid_response"): 1}


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(
    members=st.dictionaries(st.sampled_from(["version", "runtime_config", "name", '"version"', "a{", ""]), _JSON),
    indent=st.sampled_from([None, 0, 2]),
    ascii_only=st.booleans(),
)
def test_top_level_members_are_what_a_full_parse_finds(members: dict, indent: int | None, ascii_only: bool) -> None:
    text = json.dumps(members, indent=indent, ensure_ascii=ascii_only).encode()
    keys = frozenset({"version", "runtime_config"})
    assert top_level_members(text, keys) == {k: v for k, v in json.loads(text).items() if k in keys}
