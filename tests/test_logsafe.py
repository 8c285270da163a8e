"""Log hygiene: Feldera's words reach the log escaped, and no key or reset token reaches it at all."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.config import build_settings
from exporter.console import setup_logging
from exporter.errors import ApiError, ConnectionFailed
from exporter.logsafe import SafeFormatter, add_secret, clean
from tests.conftest import ScriptedFeldera, feldera_error, new_poller


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain words", "plain words"),
        ("a\r\n2026-11-29 INFO forged", "a\\r\\n2026-11-29 INFO forged"),
        ("\x1b[2J\x1b[31mred\x00", "\\x1b[2J\\x1b[31mred\\x00"),
        ("tab\there\x7f\x85", "tab\\there\\x7f\\x85"),
        ("line\u2028sep and \ud800 lone", "line\\u2028sep and \\ud800 lone"),
        ("unicode stays: Grüße, 注文", "unicode stays: Grüße, 注文"),
        ("Invalid reset token '3f2a9d01c9'", "Invalid reset token '[REDACTED]'"),
        ("header Bearer apikey:abc123== rejected", "header Bearer [REDACTED] rejected"),
        ("key apikey:0123abcd, done", "key apikey:[REDACTED], done"),
        ("GET /v0/pipelines/p/reset_status?token=s3cr3t&x=1", "GET /v0/pipelines/p/reset_status?token=[REDACTED]&x=1"),
        ("connect postgres://app:pa55:w0rd@db/x failed", "connect postgres://app:[REDACTED]@db/x failed"),
        ("no password in http://db:5432/x or user@host", "no password in http://db:5432/x or user@host"),
    ],
)
def test_clean_escapes_control_characters_and_redacts_secret_shapes(text: str, expected: str) -> None:
    assert clean(text) == expected


def test_clean_redacts_the_secrets_it_is_given_and_the_result_encodes() -> None:
    assert clean("token was opaque-77 again opaque-77", ("opaque-77",)) == "token was [REDACTED] again [REDACTED]"
    clean("\udfff\ud800").encode("utf-8")  # a lone surrogate would break the log handler's encoder


def test_feldera_error_text_is_cleaned_but_kept_raw_on_the_attributes() -> None:
    error = ApiError("stats", 500, error_code="Boom\r\n", message="ok\x1b[0m\nWARNING forged")
    assert str(error) == "stats: HTTP 500 Boom\\r\\n: ok\\x1b[0m\\nWARNING forged"
    assert error.message == "ok\x1b[0m\nWARNING forged"


async def test_hostile_error_text_from_feldera_is_one_escaped_log_line(
    feldera: ScriptedFeldera, caplog: pytest.LogCaptureFixture
) -> None:
    feldera.routes["/v0/pipelines"] = feldera_error(
        500, "Internal\x1b[31m", "boom\r\n2026-11-29 12:00:00 INFO exporter: all good"
    )
    settings = build_settings({"targets": [{"url": feldera.url}], "collectors": {"cluster": False}}, env={})
    poller = new_poller(settings)
    caplog.set_level(logging.WARNING)
    try:
        snapshot = await poller.poll_once()
    finally:
        await poller.aclose()
    assert not snapshot.targets[0].up
    (record,) = [r for r in caplog.records if "listing pipelines failed" in r.getMessage()]
    message = record.getMessage()
    assert "\r" not in message and "\n" not in message and "\x1b" not in message
    assert "boom\\r\\n2026-11-29 12:00:00 INFO" in message


@pytest.fixture
def root_logging() -> Iterator[None]:
    """The root logger as it was after the test (which may set up logging as the CLI does)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        for handler in root.handlers:
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def test_debug_tracebacks_are_cleaned_like_every_other_log_text(
    root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The poller logs unexpected failures' tracebacks at DEBUG (``exc_info=exc``): their messages, the causes'
    too, are escaped and redacted by the formatter the CLI installs, while the frames stay readable."""
    setup_logging("debug")  # on the stderr capsys captures
    add_secret("key-in-a-traceback-4711")

    def parse() -> None:
        raise ValueError("bad answer for key-in-a-traceback-4711\r\n2026-11-29 12:00:00 INFO exporter: forged\x1b[2J")

    try:
        try:
            parse()
        except ValueError as cause:
            raise RuntimeError("token=s3cr3t in the retry") from cause
    except RuntimeError as exc:
        exc.add_note("note\nwith a line break")
        logging.getLogger("exporter.poller").debug("default: poll failure details", exc_info=exc)
    text = capsys.readouterr().err
    assert "key-in-a-traceback-4711" not in text and "s3cr3t" not in text
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert "ValueError: bad answer for [REDACTED]\\r\\n2026-11-29 12:00:00 INFO exporter: forged\\x1b[2J" in lines
    assert "RuntimeError: token=[REDACTED] in the retry\\nnote\\nwith a line break" in lines
    assert not [line for line in lines if line.startswith("2026-11-29 12:00:00")]  # no forged record
    assert "The above exception was the direct cause of the following exception:" in lines
    assert any(line.strip() == "parse()" for line in lines)  # the frames' source lines as Python prints them


def test_a_traceback_another_formatter_cached_raw_is_cleaned_again() -> None:
    """logging caches a record's traceback text on the record: the first handler's formatter would decide."""
    try:
        raise ExceptionGroup("several", [ValueError("one\nforged"), KeyError("two")])
    except ExceptionGroup as exc:
        record = logging.LogRecord("exporter", logging.ERROR, __file__, 1, "failed", (), (type(exc), exc, None))
    raw = logging.Formatter().format(record)
    assert any(line.endswith("| forged") for line in raw.splitlines())  # Python's own: a line of its own
    text = SafeFormatter().format(record)
    assert not any(line.endswith("| forged") for line in text.splitlines())
    assert "| ValueError: one\\nforged" in text.splitlines()
    assert "| KeyError: 'two'" in text.splitlines()


def test_a_librarys_own_message_is_cleaned_too() -> None:
    """asyncio and aiohttp log exception texts and reprs of their own, not through clean()."""
    add_secret("key-in-a-library-message-0815")
    record = logging.LogRecord(
        "asyncio",
        logging.ERROR,
        __file__,
        1,
        "Task exception was never retrieved: %s",
        (ValueError("bad key-in-a-library-message-0815\n2026-11-29 12:00:00 INFO exporter: forged"),),
        None,
    )
    text = SafeFormatter("%(name)s %(message)s").format(record)
    assert text == (
        "asyncio Task exception was never retrieved: bad [REDACTED]\\n2026-11-29 12:00:00 INFO exporter: forged"
    )
    assert clean(text) == text  # cleaning twice changes nothing: a value the caller cleaned stays as it was


def test_run_registers_the_configured_keys_at_start_and_check_config_does_not(
    root_logging: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The process that runs registers the keys when it sets up logging; validating a file registers nothing."""
    (tmp_path / "key").write_text("xk-7d1e0c2b9a\n")  # not shaped like apikey:..., only the registered value hides it
    (tmp_path / "checked").write_text("xk-checked-only-3e9f\n")
    checked = tmp_path / "checked.yaml"
    checked.write_text(f"targets: [{{url: 'http://127.0.0.1:9', api_key_file: '{tmp_path / 'checked'}'}}]\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"targets: [{{url: 'http://127.0.0.1:9', api_key_file: '{tmp_path / 'key'}'}}]\n")
    assert main(["check-config", str(checked)]) == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        assert main(["run", "--config", str(config), "--web.listen-address", busy]) == 1  # stops after the set-up
    capsys.readouterr()
    error = ConnectionFailed("stats", "Illegal header value b'Bearer xk-7d1e0c2b9a'; also xk-7d1e0c2b9a")
    assert str(error).count("[REDACTED]") == 2 and "7d1e0c2b9a" not in str(error)
    assert clean("xk-checked-only-3e9f") == "xk-checked-only-3e9f"
