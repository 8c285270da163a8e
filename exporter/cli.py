"""Command line: ``feldera-exporter [run]`` (default), ``check-config FILE``, and subcommands owners register.

``run`` reloads its configuration on SIGHUP (:meth:`exporter.app.Exporter.reload`) and stops on SIGTERM/SIGINT.

Subcommands other than ``run``, ``check-config`` and ``demo`` live in their owner's module as
``add_subcommand(subparsers)``; each sets ``func`` (``argparse.Namespace -> int`` exit status) on its parser.
``run``'s flags are declared once in :mod:`exporter.flags` (with their config keys and environment variables).
``demo``'s flags are declared here and its module (:mod:`exporter.simulator.demo`) imported only when it runs, so
``run`` never loads the simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from exporter import __version__, logsafe
from exporter import docs as docs_cli
from exporter.arenas import limit_malloc_arenas
from exporter.argtypes import duration, port, positive_seconds
from exporter.config import ConfigError, Settings, load_settings
from exporter.console import print_config_error, print_web_config_error, setup_logging
from exporter.errors import FelderaError
from exporter.flags import CONFIG, DEMO_INTERVAL, ENABLE_RESET_WATCH_API, LISTEN_ADDRESS, add_options, overrides_from
from exporter.gctuning import full_collections_every
from exporter.metrics import selection_warnings
from exporter.mixin import cli as mixin_cli
from exporter.sidecar import cli as sidecar_cli
from exporter.webconfig import WebConfigError

log = logging.getLogger("exporter")


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from ``--config``, env and flags, with the files ``run`` uses checked; raises :class:`ConfigError`."""
    return load_settings(args.config, overrides=overrides_from(args), deep=True)


async def serve(settings: Settings, reload: Callable[[], Settings]) -> None:
    """Run an exporter until SIGTERM/SIGINT, then stop it gracefully; on SIGHUP, apply what ``reload`` reads
    (:meth:`exporter.app.Exporter.reload`: the configuration and the web config, as Prometheus does)."""
    from exporter.app import Exporter

    limit_malloc_arenas()  # before the exporter's threads exist

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    exporter = Exporter(settings)
    reloads: set[asyncio.Task[bool]] = set()  # referenced until done (the loop keeps weak ones)

    def reload_now() -> None:
        log.info("SIGHUP: reloading the configuration")
        task = asyncio.create_task(exporter.reload(reload), name="reload")
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    await exporter.start()
    loop.add_signal_handler(signal.SIGHUP, reload_now)
    try:
        async with full_collections_every():  # no 0.4 s collector pauses in the middle of scrapes
            await stop.wait()
        log.info("shutting down")
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        for task in reloads:
            task.cancel()
        await exporter.stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _reloaded(args: argparse.Namespace) -> Settings:
    """What ``run`` loads, again (a SIGHUP): the new API keys are redacted from the log from now on, like the first
    ones; raises :class:`ConfigError`."""
    settings = settings_from(args)
    for key in settings.api_keys():
        logsafe.add_secret(key)
    for note in settings.notes:
        log.warning("%s", note)
    return settings


def _run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print_config_error(exc)
        return 2
    setup_logging(settings.log_level, settings.api_keys())
    for note in settings.notes:
        log.warning("%s", note)
    try:
        asyncio.run(serve(settings, lambda: _reloaded(args)))
    except WebConfigError as exc:
        print_web_config_error(settings, exc)
        return 2
    except OSError as exc:
        print(f"error: cannot serve on {settings.web.listen_address}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _check_config(args: argparse.Namespace) -> int:
    """What ``run`` would check, all problems at once: the file, the environment, the web config, the state file."""
    try:
        settings = load_settings(args.file, deep=True)
    except ConfigError as exc:
        print_config_error(exc)
        return 1
    names = ", ".join(t.name for t in settings.targets)
    print(f"{args.file}: OK ({len(settings.targets)} target(s): {names})")
    for warning in (*settings.notes, *selection_warnings(settings)):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _add_demo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``demo`` (:mod:`exporter.simulator.demo`): its flags here, the simulator imported only when it runs."""
    parser = subparsers.add_parser(
        "demo",
        help="a simulated Feldera with a lively scenario, an exporter polling it, Prometheus and Alertmanager",
        description="Simulator, exporter and (when the binaries are on PATH) Prometheus with the shipped rules and "
        "Alertmanager with the shipped routing, all on 127.0.0.1; Ctrl-C or SIGTERM stops them together.",
    )
    add_options(
        parser,
        (CONFIG, LISTEN_ADDRESS, ENABLE_RESET_WATCH_API),
        helps={
            CONFIG: "your exporter config instead of the demo's; every target polls the simulator, "
            "--web.listen-address still applies",
            LISTEN_ADDRESS: "where the exporter serves (default 127.0.0.1:10027)",
        },
        defaults={LISTEN_ADDRESS: "127.0.0.1:10027"},
    )
    parser.add_argument("--scenario", metavar="FILE", help="YAML/JSON scenario instead of the built-in one")
    parser.add_argument(
        "--feldera-port", type=port, default=8080, metavar="PORT", help="simulator port (default 8080, 0 = any)"
    )
    parser.add_argument("--tick", type=positive_seconds, default=5.0, help="seconds between scenario steps (default 5)")
    parser.add_argument(
        "--interval",
        type=duration,
        help=f"exporter poll interval (default {DEMO_INTERVAL}, or poll.interval of --config)",
    )
    parser.add_argument(
        "--prometheus-port", type=port, default=9090, metavar="PORT", help="default 9090, 0 = any free port"
    )
    parser.add_argument(
        "--alertmanager-port", type=port, default=9093, metavar="PORT", help="default 9093, 0 = any free port"
    )
    parser.add_argument("--no-prometheus", action="store_true", help="do not run Prometheus")
    parser.add_argument("--no-alertmanager", action="store_true", help="do not run Alertmanager")
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from exporter.simulator import demo  # the test double is loaded by the demo only, never by run

    return demo.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feldera-exporter", description="Prometheus exporter for Feldera's pipeline-manager API."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = subparsers.add_parser("run", help="poll Feldera and serve /metrics (default)")
    add_options(run)
    run.set_defaults(func=_run)
    check = subparsers.add_parser("check-config", help="validate a config file and exit (non-zero on error)")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(func=_check_config)
    sidecar_cli.add_subcommand(subparsers)
    docs_cli.add_subcommand(subparsers)
    mixin_cli.add_subcommand(subparsers)
    _add_demo(subparsers)
    parser.set_defaults(subcommands=tuple(subparsers.choices))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    commands = set(parser.get_default("subcommands"))
    if not args_list or (args_list[0] not in commands and args_list[0] not in ("-h", "--help", "--version")):
        args_list.insert(0, "run")
    args = parser.parse_args(args_list)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            return int(args.func(args))
        except FelderaError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 130
