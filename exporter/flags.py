"""The command-line flags of ``run`` and ``demo``.

``demo``'s flags are declared here, not beside the demo, so that ``run`` never loads the simulator.
"""

from __future__ import annotations

import argparse

from exporter.argtypes import duration, listen_address, port, positive_seconds

DEMO_INTERVAL = "5s"
"""The demo's poll interval unless ``--interval`` or its ``--config`` says otherwise."""


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of ``run`` (reusable by subcommands that start an exporter, e.g. ``demo``)."""
    parser.add_argument("--config", metavar="FILE", help="YAML config file (see config.example.yaml)")
    parser.add_argument(
        "--feldera-url", metavar="URL", help="URL of the Feldera API; env FELDERA_URL (sets the 'default' target)"
    )
    parser.add_argument(
        "--web.listen-address", dest="listen_address", metavar="[HOST]:PORT", help="where to serve (default :10027)"
    )
    parser.add_argument(
        "--web.config.file", dest="web_config_file", metavar="FILE", help="exporter-toolkit web config (TLS, auth)"
    )
    parser.add_argument(
        "--web.enable-reset-watch-api",
        dest="enable_reset_watch_api",
        action="store_true",
        default=None,
        help="allow registering and deleting reset watches over HTTP (POST/DELETE /api/v1/reset-watches)",
    )
    parser.add_argument("--shard", type=int, metavar="I", help="poll only pipelines of shard I (0-based)")
    parser.add_argument("--total-shards", type=int, metavar="N", help="number of shards")
    parser.add_argument(
        "--metric-allowlist",
        metavar="REGEXES",
        help="comma-separated regexes: emit only the metric families whose whole name matches one",
    )
    parser.add_argument(
        "--metric-denylist",
        metavar="REGEXES",
        help="comma-separated regexes: do not emit the metric families whose whole name matches one",
    )
    parser.add_argument(
        "--log-level", type=str.lower, choices=("debug", "info", "warning", "error"), help="default info"
    )


def add_demo_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """``demo`` and its flags (:mod:`exporter.simulator.demo` runs it, and is imported only then)."""
    parser = subparsers.add_parser(
        "demo",
        help="a simulated Feldera with a lively scenario, an exporter polling it, Prometheus and Alertmanager",
        description="Simulator, exporter and (when the binaries are on PATH) Prometheus with the shipped rules and "
        "Alertmanager with the shipped routing, all on 127.0.0.1; Ctrl-C or SIGTERM stops them together.",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="your exporter config instead of the demo's; every target polls the simulator, "
        "--web.listen-address still applies",
    )
    parser.add_argument("--scenario", metavar="FILE", help="YAML/JSON scenario instead of the built-in one")
    parser.add_argument(
        "--feldera-port", type=port, default=8080, metavar="PORT", help="simulator port (default 8080, 0 = any)"
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default="127.0.0.1:10027",
        type=listen_address,
        metavar="[HOST]:PORT",
        help="where the exporter serves (default 127.0.0.1:10027)",
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
    return parser
