"""Documented commands answer bad input with a message and exit status 2 (runtime failures: 1), never a traceback."""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence

import pytest

from exporter.cli import main
from exporter.simulator.__main__ import main as simulator_main


def outcome(
    entry: Callable[[Sequence[str]], int], argv: Sequence[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    try:
        status = entry(list(argv))
    except SystemExit as exit_:  # argparse's usage errors
        status = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--interval", "soon"], "argument --interval: invalid duration 'soon'"),
        (["demo", "--interval", "0s"], "argument --interval: duration must be greater than 0"),
        (["demo", "--feldera-port", "99999"], "argument --feldera-port: a port is 0..65535, got 99999"),
        (["demo", "--feldera-port", "http"], "argument --feldera-port: expected a port number, got 'http'"),
        (["demo", "--tick", "0"], "argument --tick: must be more than 0 seconds"),
        (["demo", "--tick", "nan"], "argument --tick: must be a finite number of seconds >= 0, got nan"),
        (["demo", "--web.listen-address", "10027"], "web.listen_address (from --web.listen-address): invalid listen"),
        (["watch-reset", "--list", "--exporter", "localhost:10027"], "argument --exporter: invalid URL"),
        (["watch-reset", "--list", "--exporter", "http://h:99999"], "argument --exporter: invalid URL"),
        (["watch-reset", "--list", "--timeout", "-1"], "argument --timeout: must be a finite number of seconds"),
        (["watch-reset", "--list", "--timeout", "0"], "argument --timeout: must be more than 0 seconds"),
        (["watch-reset", "orders"], "PIPELINE and TOKEN are required"),
    ],
)
def test_exporter_commands_reject_bad_flags_with_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, err = outcome(main, argv, capsys)
    assert status == 2
    assert message in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "99999"], "argument --port: a port is 0..65535, got 99999"),
        (["--port", "-1"], "argument --port: a port is 0..65535, got -1"),
        (["--generate", "-3"], "argument --generate: must be 0 or more, got -3"),
        (["--generate", "many"], "argument --generate: expected a whole number, got 'many'"),
        (["--latency", "inf"], "argument --latency: must be a finite number of seconds >= 0"),
    ],
)
def test_simulator_rejects_bad_flags_with_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, err = outcome(simulator_main, argv, capsys)
    assert status == 2
    assert message in err


def test_simulator_on_a_port_in_use_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        status, err = outcome(simulator_main, ["--generate", "1", "--port", str(busy)], capsys)
    assert status == 1
    assert f"error: cannot listen on 127.0.0.1:{busy}: " in err


def test_docs_to_a_missing_directory_is_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    status, err = outcome(main, ["docs", "--output", "/nonexistent/dir/metrics.md"], capsys)
    assert status == 1
    assert "error: cannot write /nonexistent/dir/metrics.md: No such file or directory" in err


def test_run_does_not_load_the_simulator() -> None:
    """``run`` needs the CLI, the app and the parser of every subcommand, never the test double behind ``demo``."""
    probe = (
        "import sys\n"
        "import exporter.app, exporter.cli\n"
        "args = exporter.cli.build_parser().parse_args(['run'])\n"
        "assert args.func.__name__ == '_run', args.func\n"
        "print(sorted(m for m in sys.modules if m.startswith('exporter.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    loaded = ast.literal_eval(result.stdout)
    assert {"exporter.app", "exporter.cli", "exporter.poller"} <= set(loaded)
    assert [name for name in loaded if name.startswith("exporter.simulator")] == []
