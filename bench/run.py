#!/usr/bin/env python3
"""Benchmark the exporter against the simulator: requests and wall time per poll cycle, CPU, RSS, /metrics scrapes.

Requests are counted twice: by the exporter (``feldera_exporter_api_requests_total``, per endpoint and code) and by
the simulator (``GET /_sim/requests``, per endpoint), with the database writes they caused in Feldera's manager
(``GET /_sim/database_writes``: each ``checkpoint_status`` GET); both per cycle and per pipeline per cycle.

The simulator (``python -m exporter.simulator --generate P --connectors C --latency L``) and the exporter
(``python -m exporter run --config ...``) run as separate processes, so the exporter's CPU time and RSS are its
own. After one warm-up cycle, ``--cycles`` poll cycles are measured while ``--scrapers`` clients scrape /metrics
continuously with gzip (as Prometheus does) and ``--plain-scrapers`` clients without. See bench/README.md and
docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.argtypes import at_least_one, count, seconds

ROOT = Path(__file__).resolve().parents[1]
SELF_METRICS = (
    "feldera_exporter_api_requests_total",
    "feldera_exporter_last_poll_success_timestamp_seconds",
    "feldera_exporter_poll_duration_seconds",
    "feldera_exporter_polls_total",
)
SELF_LINE = re.compile(rb"^(?:" + b"|".join(re.escape(n.encode()) for n in SELF_METRICS) + rb")[{ ].*$", re.M)
WATCH_PAUSE = 0.25
"""Seconds between two scrapes of the cycle watcher."""


class BenchError(Exception):
    """A failure that ends the benchmark with a message (and no traceback)."""


# ---- options ---------------------------------------------------------------------------------------------------


PARAMETERS = ("pipelines", "connectors", "latency", "concurrency", "interval", "cycles", "scrapers", "plain_scrapers")
"""The options that decide a result: repeated in the reproduce command and the JSON report."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pipelines", type=at_least_one, default=10_000, help="generated pipelines (10000)")
    parser.add_argument("--connectors", type=at_least_one, default=4, help="connectors per pipeline (4)")
    parser.add_argument("--latency", type=seconds, default=0.02, help="seconds every API answer waits (0.02)")
    parser.add_argument(
        "--concurrency", type=at_least_one, help="poll.concurrency of the exporter (default: the config default)"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=1.0,
        help="poll.interval of the exporter in seconds (1: a cycle slower than that starts the next at once)",
    )
    parser.add_argument("--cycles", type=at_least_one, default=3, help="measured poll cycles after 1 warm-up (3)")
    parser.add_argument("--scrapers", type=count, default=4, help="concurrent gzip /metrics clients (4; 0: none)")
    parser.add_argument(
        "--plain-scrapers",
        type=count,
        default=1,
        help="concurrent /metrics clients without gzip (1; 0: none)",
    )
    parser.add_argument(
        "--metrics-config",
        type=Path,
        metavar="FILE",
        help="YAML whose metrics: and collectors: sections the exporter gets, e.g. config.lean.yaml (default: none)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a report")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds to wait for any one cycle or start-up (1800)"
    )
    parser.add_argument("--log-dir", type=Path, help="keep the simulator and exporter logs here (default: discard)")
    args = parser.parse_args(argv)
    if not args.interval > 0:
        parser.error("--interval must be greater than 0")
    if args.concurrency is None:
        args.concurrency = default_concurrency()
    return args


def default_concurrency() -> int:
    """``poll.concurrency`` when the config leaves it out, from the exporter source under test."""
    code = "from exporter.config import PollSettings; print(PollSettings().concurrency)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return int(out.stdout)


def reproduce_command(args: argparse.Namespace) -> str:
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(ROOT)
    words = [str(python), "bench/run.py"]
    for name in PARAMETERS:
        words += [f"--{name.replace('_', '-')}", f"{getattr(args, name):g}"]
    if args.metrics_config is not None:
        words += ["--metrics-config", str(args.metrics_config)]
    if args.json:
        words.append("--json")
    return shlex.join(words)


# ---- machine facts -----------------------------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return ""


def _git(*argv: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def machine_facts() -> dict[str, Any]:
    model = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.M)
    memory = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    changed = [line for line in _git("status", "--porcelain", "--untracked-files=no").splitlines() if line]
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model.group(1).strip() if model else "unknown",
        "memory_bytes": int(memory.group(1)) * 1024 if memory else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "source": str(ROOT),
        "git_rev": _git("rev-parse", "--short=12", "HEAD") or "unknown",
        "uncommitted_files": len(changed),
        "loadavg_start": _read("/proc/loadavg").split()[:3],
    }


# ---- child processes ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    """A subprocess in its own process group, its output in a log file."""

    name: str
    argv: list[str]
    log_path: Path
    fatal: re.Pattern[bytes] | None = None
    """A log line matching this ends the bench (the measurement would be meaningless)."""
    process: subprocess.Popen[bytes] = field(init=False)
    _log: IO[bytes] = field(init=False)
    _scanned: int = field(init=False, default=0)

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.process.pid

    def check(self) -> None:
        """Raise :class:`BenchError` with the tail of its output if it has exited or logged a fatal line."""
        code = self.process.poll()
        if code is not None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            raise BenchError(f"the {self.name} {how}; last lines of its output:\n{self.tail()}")
        if self.fatal is None:
            return
        with self.log_path.open("rb") as log:
            log.seek(self._scanned)
            new = log.read()
        complete = new[: new.rfind(b"\n") + 1]
        self._scanned += len(complete)
        found = self.fatal.search(complete)
        if found:
            line = found.group(0).decode(errors="replace")
            raise BenchError(f"the {self.name} logged {line!r}; last lines of its output:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after 10 s."""
        if not hasattr(self, "process"):
            return
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            if self.process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(wait)
        self._log.close()


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of a process from /proc/<pid>/stat: all its threads and its children
    that have ended and been waited for (none in a running exporter, unless it renders in a child process)."""
    fields = _read(f"/proc/{pid}/stat").rpartition(")")[2].split()
    if len(fields) < 15:
        raise BenchError(f"cannot read /proc/{pid}/stat")
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def memory_bytes(pid: int) -> dict[str, int]:
    """Peak (VmHWM) and current (VmRSS) resident set size from /proc/<pid>/status."""
    status = _read(f"/proc/{pid}/status")
    sizes: dict[str, int] = {}
    for name, key in (("peak", "VmHWM"), ("current", "VmRSS")):
        found = re.search(rf"^{key}:\s*(\d+) kB", status, re.M)
        if found is None:
            raise BenchError(f"cannot read {key} from /proc/{pid}/status")
        sizes[name] = int(found.group(1)) * 1024
    return sizes


# ---- observing cycles --------------------------------------------------------------------------------------------


@dataclass
class Observation:
    """The exporter's self-metrics as one scrape showed them, with the CPU time of all three processes then."""

    polls: int
    last_success: float
    poll_duration: float
    requests: dict[str, dict[str, float]]
    exporter_cpu: float
    simulator_cpu: float
    bench_cpu: float
    seen_at: float
    """Wall time when the watcher's scrape ended: the cycle's rendering ran between ``last_success`` and this."""
    served: dict[str, float] = field(default_factory=dict)
    """The simulator's count of the requests it served, by endpoint (read right after the scrape)."""
    database_writes: float = 0.0
    """The simulator's count of the manager-database writes those requests caused."""


async def simulator_counts(client: aiohttp.ClientSession) -> tuple[dict[str, float], float]:
    """``GET /_sim/requests`` and ``/_sim/database_writes`` of the simulator."""
    async with client.get("/_sim/requests") as response:
        response.raise_for_status()
        served = json.loads(await response.read())
    async with client.get("/_sim/database_writes") as response:
        response.raise_for_status()
        writes = json.loads(await response.read())
    return {str(k): float(v) for k, v in served.items()}, float(writes["total"])


async def observe(
    client: aiohttp.ClientSession, sim_client: aiohttp.ClientSession, exporter: Child, simulator: Child
) -> Observation | None:
    """Scrape /metrics (gzip) and read the self-metrics (stops reading once they are all seen), then the
    simulator's counters."""
    lines: list[bytes] = []
    seen: set[bytes] = set()
    decompress = zlib.decompressobj(16 + zlib.MAX_WBITS)
    rest = b""
    async with client.get("/metrics", headers={"accept-encoding": "gzip"}) as response:
        if response.status != 200:
            return None
        async for chunk in response.content.iter_any():
            data = rest + decompress.decompress(chunk)
            cut = data.rfind(b"\n") + 1
            block, rest = data[:cut], data[cut:]
            for match in SELF_LINE.finditer(block):
                lines.append(match.group(0))
                seen.add(match.group(0).split(b"{")[0].split(b" ")[0])
            if block and len(seen) == len(SELF_METRICS) and not SELF_LINE.match(block.rsplit(b"\n", 2)[-2]):
                break  # every self-metric family seen and the last line is past them: skip the rest
    exporter_cpu, simulator_cpu = cpu_seconds(exporter.pid), cpu_seconds(simulator.pid)
    values: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in SELF_METRICS}
    for family in text_string_to_metric_families(b"\n".join(lines).decode() + "\n"):
        for sample in family.samples:
            if sample.name in values:
                values[sample.name].append((sample.labels, sample.value))
    if not (
        values["feldera_exporter_last_poll_success_timestamp_seconds"]
        and values["feldera_exporter_poll_duration_seconds"]
    ):
        return None  # before the first successful cycle
    requests: dict[str, dict[str, float]] = {}
    for labels, value in values["feldera_exporter_api_requests_total"]:
        requests.setdefault(labels["endpoint"], {})[labels["code"]] = value
    served, writes = await simulator_counts(sim_client)
    return Observation(
        polls=int(sum(value for _, value in values["feldera_exporter_polls_total"])),
        last_success=values["feldera_exporter_last_poll_success_timestamp_seconds"][0][1],
        poll_duration=values["feldera_exporter_poll_duration_seconds"][0][1],
        requests=requests,
        exporter_cpu=exporter_cpu,
        simulator_cpu=simulator_cpu,
        bench_cpu=time.process_time(),
        seen_at=time.time(),
        served=served,
        database_writes=writes,
    )


async def count_series(client: aiohttp.ClientSession) -> int:
    """Sample lines (not comments, not blank) of one full gzip scrape."""
    decompress = zlib.decompressobj(16 + zlib.MAX_WBITS)
    series, rest = 0, b""
    async with client.get("/metrics", headers={"accept-encoding": "gzip"}) as response:
        response.raise_for_status()
        async for chunk in response.content.iter_any():
            data = rest + decompress.decompress(chunk)
            cut = data.rfind(b"\n") + 1
            block, rest = data[:cut], data[cut:]
            series += block.count(b"\n") - block.count(b"\n#") - block.count(b"\n\n") - block.startswith((b"#", b"\n"))
    return series + (1 if rest.strip() and not rest.startswith(b"#") else 0)


def http_client(base_url: str, *, connections: int = 100, timeout: float = 120) -> aiohttp.ClientSession:
    """Bodies as sent (gzip stays compressed: the bench inflates or counts them itself), no proxy from the env."""
    return aiohttp.ClientSession(
        base_url=base_url,
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=timeout),
        auto_decompress=False,
    )


# ---- scraping ----------------------------------------------------------------------------------------------------


@dataclass
class Scrape:
    mode: str
    seconds: float
    size: int
    started_at: float
    """Wall time the request was sent (to place it against the cycles' rendering windows)."""
    error: str | None = None


async def scraper(url: str, mode: str, stop: asyncio.Event, out: list[Scrape]) -> None:
    """Scrape /metrics until ``stop`` (``mode`` "gzip" or "plain"), back to back on one keep-alive connection."""
    encodings = {"plain": "identity", "gzip": "gzip"}
    async with http_client(url, connections=1) as client:
        while not stop.is_set():
            size, error = 0, None
            started_at, started = time.time(), time.perf_counter()
            try:
                headers = {"accept-encoding": encodings[mode]}
                async with client.get("/metrics", headers=headers) as response:
                    async for chunk in response.content.iter_any():
                        size += len(chunk)
                    if response.status != 200:
                        error = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            out.append(Scrape(mode, time.perf_counter() - started, size, started_at, error))
            if error:
                await asyncio.sleep(0.1)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, int(-(-fraction * len(sorted_values) // 1)))
    return sorted_values[rank - 1]


def _latencies(scrapes: list[Scrape]) -> dict[str, Any]:
    seconds = sorted(s.seconds for s in scrapes)
    if not seconds:
        return {"count": 0}
    return {
        "count": len(seconds),
        "p50_seconds": percentile(seconds, 0.50),
        "p99_seconds": percentile(seconds, 0.99),
        "max_seconds": seconds[-1],
    }


def scrape_summary(scrapes: list[Scrape], mode: str, rendering: list[tuple[float, float]]) -> dict[str, Any]:
    """Latency and size of the scrapes of ``mode``; also split by whether a scrape overlapped a rendering window
    (from a cycle's success timestamp to when the watcher saw that cycle: an over-estimate by up to one watch)."""
    done = [s for s in scrapes if s.mode == mode and s.error is None]
    errors = [s.error for s in scrapes if s.mode == mode and s.error is not None]
    summary: dict[str, Any] = {"count": len(done), "errors": len(errors), "first_error": errors[0] if errors else None}
    if done:
        sizes = sorted(s.size for s in done)
        summary.update(_latencies(done), bytes_per_scrape=sizes[len(sizes) // 2])
        during = [
            s for s in done if any(s.started_at < end and s.started_at + s.seconds > start for start, end in rendering)
        ]
        overlapped = {id(s) for s in during}
        others = [s for s in done if id(s) not in overlapped]  # by identity: `in` a list compared each pair
        summary.update(during_rendering=_latencies(during), outside_rendering=_latencies(others))
    return summary


# ---- the run -----------------------------------------------------------------------------------------------------


async def wait_until_ready(url: str, path: str, children: list[Child], limit: float) -> None:
    """Until GET ``path`` answers 200; checks that the children still run."""
    try:
        async with asyncio.timeout(limit), http_client(url, timeout=10) as client:
            while True:
                for child in children:
                    child.check()
                with contextlib.suppress(aiohttp.ClientError):
                    async with client.get(path) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise BenchError(f"{url}{path} not ready after {limit:g} s") from None


async def next_observation(
    client: aiohttp.ClientSession,
    sim_client: aiohttp.ClientSession,
    exporter: Child,
    simulator: Child,
    after: int,
    limit: float,
) -> Observation:
    """The first observation with more than ``after`` completed poll cycles."""
    try:
        async with asyncio.timeout(limit):
            while True:
                for child in (simulator, exporter):
                    child.check()
                with contextlib.suppress(aiohttp.ClientError):
                    seen = await observe(client, sim_client, exporter, simulator)
                    if seen is not None and seen.polls > after:
                        return seen
                await asyncio.sleep(WATCH_PAUSE)
    except TimeoutError:
        raise BenchError(f"no poll cycle completed within {limit:g} s") from None


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_config(path: Path, port: int, simulator_url: str, args: argparse.Namespace) -> None:
    config: dict[str, Any] = {
        "web": {"listen_address": f"127.0.0.1:{port}"},
        "poll": {"interval": args.interval, "concurrency": args.concurrency},
        "targets": [{"name": "default", "url": simulator_url}],
    }
    if args.metrics_config is not None:
        chosen = yaml.safe_load(args.metrics_config.read_text(encoding="utf-8")) or {}
        config.update({key: chosen[key] for key in ("metrics", "collectors") if key in chosen})
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")  # JSON is YAML


async def run(args: argparse.Namespace, log_dir: Path, children: list[Child]) -> dict[str, Any]:
    facts = machine_facts()
    sim_port, exp_port = free_port(), free_port()
    simulator_url, exporter_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{exp_port}"
    simulator = Child(
        "simulator",
        [sys.executable, "-m", "exporter.simulator", "--generate", str(args.pipelines), "--connectors",
         str(args.connectors), "--latency", f"{args.latency:g}", "--port", str(sim_port)],
        log_dir / "simulator.log",
    )  # fmt: skip
    children.append(simulator)
    progress(f"starting the simulator: {shlex.join(simulator.argv[1:])}")
    simulator.start()
    await wait_until_ready(simulator_url, "/_sim/state", [simulator], args.timeout)

    config = log_dir / "exporter.yaml"
    write_config(config, exp_port, simulator_url, args)
    exporter = Child(
        "exporter",
        [sys.executable, "-m", "exporter", "run", "--config", str(config)],
        log_dir / "exporter.log",
        fatal=re.compile(rb"^.* (?:ERROR|CRITICAL) .*$", re.M),
    )
    children.append(exporter)
    progress(f"starting the exporter on {exporter_url}; waiting for the warm-up cycle")
    exporter.start()
    await wait_until_ready(exporter_url, "/-/ready", [simulator, exporter], args.timeout)

    scrapes: list[Scrape] = []
    async with http_client(exporter_url) as watch, http_client(simulator_url, connections=1) as sim_watch:
        observations = [await next_observation(watch, sim_watch, exporter, simulator, 0, args.timeout)]
        progress(f"warm-up done ({observations[0].polls} cycle(s)); measuring {args.cycles} cycle(s)")
        stop = asyncio.Event()
        modes = ["gzip"] * args.scrapers + ["plain"] * args.plain_scrapers
        tasks = [asyncio.create_task(scraper(exporter_url, mode, stop, scrapes)) for mode in modes]
        try:
            target = observations[0].polls + args.cycles
            while observations[-1].polls < target:
                observations.append(
                    await next_observation(watch, sim_watch, exporter, simulator, observations[-1].polls, args.timeout)
                )
                progress(f"cycle {observations[-1].polls - observations[0].polls}/{args.cycles} done")
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        memory = memory_bytes(exporter.pid)
        progress("counting series")
        series = await count_series(watch)
    facts["loadavg_end"] = _read("/proc/loadavg").split()[:3]
    return summarise(args, facts, observations, scrapes, memory, series, exporter)


def request_delta(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, dict[str, int]]:
    delta: dict[str, dict[str, int]] = {}
    for endpoint, codes in after.items():
        for code, value in codes.items():
            count = int(value - before.get(endpoint, {}).get(code, 0))
            if count:
                delta.setdefault(endpoint, {})[code] = count
    return delta


def log_problems(child: Child) -> list[str]:
    text = child.log_path.read_text(encoding="utf-8", errors="replace")
    return [line for line in text.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback", line)]


def summarise(
    args: argparse.Namespace,
    facts: dict[str, Any],
    observations: list[Observation],
    scrapes: list[Scrape],
    memory: dict[str, int],
    series: int,
    exporter: Child,
) -> dict[str, Any]:
    rendering = [(o.last_success, o.seen_at) for o in observations[1:]]
    cycles = []
    for before, after in itertools.pairwise(observations):
        polls = after.polls - before.polls
        requests = request_delta(before.requests, after.requests)
        total = sum(sum(codes.values()) for codes in requests.values())
        lower_bound = total / polls * args.latency / args.concurrency
        cycles.append(
            {
                "polls": polls,
                "requests": requests,
                "requests_total": total / polls,
                "poll_duration_seconds": after.poll_duration,
                "lower_bound_seconds": lower_bound,
                "ratio": after.poll_duration / lower_bound if lower_bound else None,
                "period_seconds": (after.last_success - before.last_success) / polls,
                "exporter_cpu_seconds": (after.exporter_cpu - before.exporter_cpu) / polls,
                "simulator_cpu_seconds": (after.simulator_cpu - before.simulator_cpu) / polls,
            }
        )
    first, last = observations[0], observations[-1]
    measured = last.polls - first.polls
    by_endpoint = {
        endpoint: {code: count / measured for code, count in codes.items()}
        for endpoint, codes in sorted(request_delta(first.requests, last.requests).items())
    }
    requests_total = sum(sum(codes.values()) for codes in by_endpoint.values())
    served = {
        endpoint: (count - first.served.get(endpoint, 0.0)) / measured
        for endpoint, count in sorted(last.served.items())
        if count > first.served.get(endpoint, 0.0)
    }
    writes = (last.database_writes - first.database_writes) / measured
    mean_duration = sum(c["poll_duration_seconds"] for c in cycles) / len(cycles)
    lower_bound = requests_total * args.latency / args.concurrency
    problems = log_problems(exporter)
    return {
        "command": reproduce_command(args),
        "machine": facts,
        "parameters": {name: getattr(args, name) for name in PARAMETERS},
        "metrics_config": None if args.metrics_config is None else str(args.metrics_config),
        "cycles": cycles,
        "missed_cycles": sum(c["polls"] - 1 for c in cycles),
        "requests_per_cycle": {"total": requests_total, "by_endpoint": by_endpoint},
        "requests_per_pipeline_per_cycle": {
            "total": requests_total / args.pipelines,
            "by_endpoint": {e: sum(codes.values()) / args.pipelines for e, codes in by_endpoint.items()},
        },
        "simulator": {
            "requests_per_cycle": {"total": sum(served.values()), "by_endpoint": served},
            "requests_per_pipeline_per_cycle": sum(served.values()) / args.pipelines,
            "database_writes_per_cycle": writes,
            "database_writes_per_pipeline_per_cycle": writes / args.pipelines,
        },
        "poll_duration_seconds": {"mean": mean_duration, "per_cycle": [c["poll_duration_seconds"] for c in cycles]},
        "lower_bound_seconds": lower_bound,
        "ratio": mean_duration / lower_bound if lower_bound else None,
        "warmup_ratio": first.poll_duration / lower_bound if lower_bound else None,
        "exporter_cpu_seconds_per_cycle": (last.exporter_cpu - first.exporter_cpu) / measured,
        "simulator_cpu_seconds_per_cycle": (last.simulator_cpu - first.simulator_cpu) / measured,
        "bench_cpu_seconds_per_cycle": (last.bench_cpu - first.bench_cpu) / measured,
        "warmup_poll_duration_seconds": first.poll_duration,
        "exporter_rss_bytes": memory,
        "series": series,
        "series_per_pipeline": series / args.pipelines,
        "scrapes": {mode: scrape_summary(scrapes, mode, rendering) for mode in ("plain", "gzip")},
        "scrapes_per_cycle": len(scrapes) / measured,
        "exporter_log_problems": {"count": len(problems), "first": problems[:10]},
    }


# ---- report ------------------------------------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _mib(size: float) -> str:
    return f"{size / 2**20:.1f} MiB"


def report(result: dict[str, Any]) -> Iterator[str]:
    m, p, cycles = result["machine"], result["parameters"], result["cycles"]
    dirty = f", {m['uncommitted_files']} file(s) with uncommitted changes" if m["uncommitted_files"] else ""
    memory = f", {m['memory_bytes'] / 2**30:.1f} GiB RAM" if m["memory_bytes"] else ""
    yield "feldera-exporter benchmark"
    yield f"  reproduce:  {result['command']}"
    yield f"  machine:    {m['cpus']} CPU(s) {m['cpu_model']}{memory}, Linux {m['kernel']}, Python {m['python']}"
    yield f"  load avg:   {' '.join(m['loadavg_start'])} at start, {' '.join(m['loadavg_end'])} at end"
    yield f"  source:     {m['source']} @ {m['git_rev']}{dirty}"
    yield (
        f"  fleet:      {p['pipelines']} pipelines x {p['connectors']} connectors, API latency {_ms(p['latency'])};"
        f" poll.concurrency {p['concurrency']}, poll.interval {p['interval']:g} s"
    )
    scrapers = f"{p['scrapers']} gzip + {p['plain_scrapers']} plain scrapers"
    if result["metrics_config"]:
        yield f"  metrics:    metrics/collectors sections of {result['metrics_config']}"
    yield f"  measured:   {len(cycles)} observed cycle(s) after 1 warm-up, {scrapers}"
    if result["missed_cycles"]:
        yield f"  note:       {result['missed_cycles']} cycle(s) completed unobserved; their numbers are averaged in"
    heads = "".join(f"{f'cycle {i + 1}':>12}" for i in range(len(cycles)))
    yield ""
    yield f"requests per poll cycle{'':17}{heads}{'mean':>12}"
    yield (
        f"  {'total':38}"
        + "".join(f"{c['requests_total']:>12.0f}" for c in cycles)
        + (f"{result['requests_per_cycle']['total']:>12.1f}")
    )
    for endpoint, codes in result["requests_per_cycle"]["by_endpoint"].items():
        for code, mean in sorted(codes.items()):
            per_cycle = "".join(f"{c['requests'].get(endpoint, {}).get(code, 0) / c['polls']:>12.0f}" for c in cycles)
            yield f"  {f'{endpoint} ({code})':38}{per_cycle}{mean:>12.1f}"
    per_pipeline = result["requests_per_pipeline_per_cycle"]
    sim = result["simulator"]
    yield ""
    yield f"requests per pipeline per cycle (mean over the measured cycles){'':2}{per_pipeline['total']:>12.3f}"
    for endpoint, mean in per_pipeline["by_endpoint"].items():
        yield f"  {endpoint:62}{mean:>12.3f}"
    yield "as the simulator served them (read when each cycle was seen; counts the list, retries included)"
    yield f"  {'total per cycle / per pipeline per cycle':62}{sim['requests_per_cycle']['total']:>12.1f}" + (
        f"{sim['requests_per_pipeline_per_cycle']:>12.3f}"
    )
    for endpoint, mean in sim["requests_per_cycle"]["by_endpoint"].items():
        yield f"  {endpoint:62}{mean:>12.1f}{mean / p['pipelines']:>12.3f}"
    yield (
        f"  {'database writes in the manager (checkpoint_status GETs)':62}{sim['database_writes_per_cycle']:>12.1f}"
        f"{sim['database_writes_per_pipeline_per_cycle']:>12.3f}"
    )
    yield ""
    yield f"poll cycle wall time (seconds){'':10}{heads}{'mean':>12}"
    rows = (
        ("poll_duration_seconds", "poll_duration_seconds", result["poll_duration_seconds"]["mean"]),
        ("lower bound = requests x latency / conc.", "lower_bound_seconds", result["lower_bound_seconds"]),
        ("ratio poll duration / lower bound", "ratio", result["ratio"]),
        ("period (success timestamp to next)", "period_seconds", None),
    )
    for title, key, mean in rows:
        per_cycle = "".join(f"{c[key]:>12.3f}" if c[key] is not None else f"{'-':>12}" for c in cycles)
        yield f"  {title:38}{per_cycle}" + (f"{mean:>12.3f}" if mean is not None else "")
    warmup = f"{result['warmup_poll_duration_seconds']:.3f} s"
    if result["warmup_ratio"] is not None:
        warmup += f" = {result['warmup_ratio']:.3f} x the lower bound"
    yield f"  warm-up cycle (no scrapes running): poll_duration_seconds {warmup}"
    yield ""
    rss = result["exporter_rss_bytes"]
    yield "exporter process"
    yield f"  {'CPU seconds per cycle':38}{result['exporter_cpu_seconds_per_cycle']:>12.2f}" + (
        f"   (polling, rendering and serving {result['scrapes_per_cycle']:.0f} scrapes)"
    )
    yield f"  {'RSS peak (VmHWM)':38}{_mib(rss['peak']):>12}"
    yield f"  {'RSS now (VmRSS)':38}{_mib(rss['current']):>12}"
    yield f"  {'(simulator CPU seconds per cycle)':38}{result['simulator_cpu_seconds_per_cycle']:>12.2f}"
    yield f"  {'(bench client CPU seconds per cycle)':38}{result['bench_cpu_seconds_per_cycle']:>12.2f}"
    yield ""
    yield f"/metrics: {result['series']} series (sample lines), {result['series_per_pipeline']:.1f} per pipeline"
    columns = f"{'count':>7}{'errors':>7}{'p50':>11}{'p99':>11}{'max':>11}{'bytes':>13}"
    yield f"  {'scrapes during the measured cycles':38}{columns}"
    for mode, s in result["scrapes"].items():
        size = f"{s['bytes_per_scrape']:>13,}" if "bytes_per_scrape" in s else f"{'-':>13}"
        yield (
            f"  {mode:38}{s['count']:>7}{s['errors']:>7}{_ms(s.get('p50_seconds')):>11}"
            f"{_ms(s.get('p99_seconds')):>11}{_ms(s.get('max_seconds')):>11}{size}"
        )
        for part in ("during_rendering", "outside_rendering"):
            d = s.get(part, {})
            if d.get("count"):
                yield (
                    f"    {part.replace('_', ' '):36}{d['count']:>7}{'':7}{_ms(d.get('p50_seconds')):>11}"
                    f"{_ms(d.get('p99_seconds')):>11}{_ms(d.get('max_seconds')):>11}"
                )
        if s["first_error"]:
            yield f"    first error: {s['first_error']}"
    yield ""
    problems = result["exporter_log_problems"]
    if problems["count"]:
        yield f"exporter log: {problems['count']} warning/error line(s); the first:"
        yield from (f"  {line}" for line in problems["first"])
    else:
        yield "exporter log: no warnings or errors"


# ---- main --------------------------------------------------------------------------------------------------------


def _terminate(signum: int, frame: FrameType | None) -> None:
    print("bench: terminated", file=sys.stderr)
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    children: list[Child] = []
    with contextlib.ExitStack() as stack:
        if args.log_dir is not None:
            args.log_dir.mkdir(parents=True, exist_ok=True)
            log_dir = args.log_dir
        else:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="feldera-bench-")))
        try:
            result = asyncio.run(run(args, log_dir, children))
        except BenchError as exc:
            print(f"bench: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("bench: interrupted", file=sys.stderr)
            return 130
        finally:
            for child in reversed(children):
                child.stop()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("\n".join(report(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
