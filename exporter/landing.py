"""The exporter's landing page (``/``): what the latest poll cycle saw, per target, as plain HTML.

The page shows, per target, up/down, the last successful poll and its age, pipelines by status, pipelines whose
newest checkpoint failed, connectors with a fatal error, the scheduled checkpoint syncs (when configured), the reset
watches, and links to ``/metrics`` and the documentation. No JavaScript; every value is escaped. Long lists are cut
at :data:`MAX_ROWS` rows (the page stays small for large fleets; ``/metrics`` has everything).

:func:`target_view` condenses a target's cycle into a :class:`TargetView` once, when the cycle is rendered
(:mod:`exporter.served` keeps each target's latest in a :class:`LandingView`) instead of the snapshot, so a cycle's
per-pipeline data is freed once its exposition is rendered and the next cycle is polled beside one cycle's data, not
two (docs/performance.md). Requests then run
:func:`render_landing`, a pure function of the view and the time, without walking the pipelines (the scheduled
syncs and reset watches, whose ages change with the time, are formatted per request).
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import NamedTuple

from exporter.metrics import checkpoints, connectors
from exporter.metrics.checkpoints import checkpoint_failed
from exporter.models import InputEndpointStatus, OutputEndpointStatus
from exporter.snapshot import PipelineSnapshot, SyncReport, TargetSnapshot

DOCS_URL = "https://github.com/feldera/feldera-exporter/blob/main"
MAX_ROWS = 50
MAX_MESSAGE = 300
NEEDS_REISSUE = frozenset({"expired", "invalid"})

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 70em; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .4em 0 1em; }
th, td { text-align: left; padding: .25em .8em .25em 0; vertical-align: top; }
th { font-weight: 600; border-bottom: 1px solid #ccc; }
.up { color: #fff; background: #2e7d32; padding: .1em .5em; border-radius: .3em; }
.down { color: #fff; background: #c62828; padding: .1em .5em; border-radius: .3em; }
.bad { color: #c62828; }
.none { color: #777; }
code { font-size: 90%; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "…"


def _when(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return '<span class="bad">never</span>'
    stamp = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{_e(stamp)} ({_age(now - timestamp)} ago)"


def _age(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True, slots=True)
class Rows:
    """A section's first :data:`MAX_ROWS` rows of already escaped cells, and how many rows there are in all."""

    shown: tuple[tuple[str, ...], ...] = ()
    count: int = 0


def _rows(rows: Iterable[Sequence[str]]) -> Rows:
    shown: list[tuple[str, ...]] = []
    count = 0
    for row in rows:
        if count < MAX_ROWS:
            shown.append(tuple(row))
        count += 1
    return Rows(tuple(shown), count)


def _table(caption: str, header: Sequence[str], rows: Rows, empty: str, total: int | None = None) -> str:
    """A section: ``<h3>caption (total)</h3>`` (default total: the rows) then a table of the shown rows, or
    ``empty`` when there are none."""
    if not rows.count:
        return f'<h3>{_e(caption)}</h3><p class="none">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows.shown)
    hidden = rows.count - len(rows.shown)
    more = f"<p>… and {hidden} more (see /metrics).</p>" if hidden else ""
    heading = f"{_e(caption)} ({rows.count if total is None else total})"
    return f"<h3>{heading}</h3><table><tr>{head}</tr>{body}</table>{more}"


def _not_collected(problem: Problem, disabled: frozenset[str]) -> str:
    if problem.collector in disabled:
        why = f"collectors.{problem.collector} is false"
    else:
        why = f"no metric family read from {problem.reads} is emitted"
    return f'<h3>{_e(problem.caption)}</h3><p class="none">Not collected ({_e(why)}).</p>'


def _failed_checkpoints(pipelines: Sequence[PipelineSnapshot]) -> Iterable[Sequence[str]]:
    for snap in pipelines:
        status = snap.checkpoint_status
        if status is not None and status.failure is not None and checkpoint_failed(status):
            yield (_e(snap.name), _e(status.failure.sequence_number), _e(_short(status.failure.error)))


def _fatal_connectors(pipelines: Sequence[PipelineSnapshot]) -> Iterable[Sequence[str]]:
    for snap in pipelines:
        if snap.stats is None:
            continue
        connectors: list[InputEndpointStatus | OutputEndpointStatus] = [*snap.stats.inputs, *snap.stats.outputs]
        for connector in connectors:
            if connector.fatal_error is not None:
                yield (_e(snap.name), _e(connector.endpoint_name), _e(_short(connector.fatal_error)))


class Problem(NamedTuple):
    """A section of problems the page lists per target, drawn from the cycle's pipelines."""

    caption: str
    reads: str
    """The snapshot field the rows come from: while the poll plan does not fill it, the section says so."""
    collector: str
    """The collector of the families read from that field, named when it is switched off."""
    header: tuple[str, ...]
    rows: Callable[[Sequence[PipelineSnapshot]], Iterable[Sequence[str]]]
    """The section's escaped rows for a target's pipelines."""
    empty: str
    """What the section says when there are no rows."""


PROBLEMS: tuple[Problem, ...] = (
    Problem(
        caption="Failed checkpoints",
        reads="checkpoint_status",
        collector=checkpoints.GROUP,
        header=("pipeline", "sequence number", "error"),
        rows=_failed_checkpoints,
        empty="No pipeline's newest checkpoint failed.",
    ),
    Problem(
        caption="Connectors with a fatal error",
        reads="stats",
        collector=connectors.STATE,
        header=("pipeline", "endpoint", "error"),
        rows=_fatal_connectors,
        empty="No connector has a fatal error.",
    ),
)


EVERY_SECTION = frozenset(problem.reads for problem in PROBLEMS)
"""What :func:`render_landing` takes as polled unless told otherwise: every section's field."""


@dataclass(frozen=True, slots=True)
class TargetView:
    """What the page shows of one target: the target without its pipelines, and what it shows of those."""

    target: TargetSnapshot
    statuses: tuple[tuple[str, int], ...]
    """(status, pipelines), by status."""
    problems: tuple[Rows, ...]
    """One per :data:`PROBLEMS` entry."""


@dataclass(frozen=True, slots=True)
class LandingView:
    """What the page shows: each target's latest cycle (:func:`target_view`), at most :data:`MAX_ROWS` rows per section
    and target; ``taken_at``: when the latest of them was published."""

    targets: tuple[TargetView, ...] = ()
    taken_at: float = 0.0
    shard: int = 0
    total_shards: int = 1


def target_view(target: TargetSnapshot) -> TargetView:
    """The page's view of one target's cycle; it keeps no pipeline's data (see the module's docs)."""
    statuses = Counter(snap.pipeline.deployment_status or "unknown" for snap in target.pipelines)
    return TargetView(
        target=replace(target, pipelines=()),
        statuses=tuple(sorted(statuses.items())),
        problems=tuple(_rows(problem.rows(target.pipelines)) for problem in PROBLEMS),
    )


def _reset_watches(target: TargetSnapshot, now: float) -> Iterable[Sequence[str]]:
    report = target.resets
    if report is None:
        return ()
    return (
        (
            _e(w.name),
            _e(w.pipeline),
            f'<span class="bad">{_e(w.status)}</span>' if w.status in NEEDS_REISSUE else _e(w.status),
            _e(_age(now - w.registered_at)),
        )
        for w in report.watches
    )


def _ago(timestamp: float | None, now: float) -> str:
    return "never" if timestamp is None else f"{_age(now - timestamp)} ago"


def _scheduled_syncs(report: SyncReport, now: float) -> str:
    rows = (
        (
            _e(p.pipeline),
            _e(_age(p.every)),
            _e(_ago(p.last_request, now)),
            _e(_ago(p.last_confirmed, now)),
            "yes" if p.awaiting_confirmation else "no",
            _e(sum(count for _, count in p.failures)),
        )
        for p in report.pipelines
    )
    paused = (
        '<p class="bad">Paused: the target answered 501 (enterprise feature) to a checkpoint sync.</p>'
        if report.enterprise_only
        else ""
    )
    header = ("pipeline", "every", "last request", "last confirmed", "awaiting confirmation", "failures")
    return _table("Scheduled checkpoint syncs", header, _rows(rows), "No pipeline synced yet.") + paused


def _target(view: TargetView, now: float, disabled: frozenset[str], polled: frozenset[str]) -> str:
    target = view.target
    badge = '<span class="up">up</span>' if target.up else '<span class="down">down</span>'
    labels = "".join(f" <code>{_e(k)}={_e(v)}</code>" for k, v in target.labels)
    parts = [
        f"<h2>Target {_e(target.name)} {badge}{labels}</h2>",
        f"<p>Last successful poll: {_when(target.exporter.last_success_timestamp_seconds, now)}</p>",
    ]
    if not target.up:
        parts.append(
            '<p class="bad">The pipeline list call failed in the latest cycle: no pipeline data is shown for this '
            "target until it answers again.</p>"
        )
    else:
        parts.append(
            _table(
                "Pipelines by status",
                ("status", "pipelines"),
                _rows((_e(status), _e(count)) for status, count in view.statuses),
                "No pipelines.",
                total=sum(count for _, count in view.statuses),
            )
        )
        for problem, rows in zip(PROBLEMS, view.problems, strict=True):
            if problem.collector in disabled or problem.reads not in polled:
                parts.append(_not_collected(problem, disabled))
            else:
                parts.append(_table(problem.caption, problem.header, rows, problem.empty))
    if target.sync is not None:  # only when schedules are configured
        parts.append(_scheduled_syncs(target.sync, now))
    parts.append(
        _table(
            "Reset watches",
            ("watch", "pipeline", "status", "age"),
            _rows(_reset_watches(target, now)),
            "No reset watches.",
        )
    )
    return "".join(parts)


def render_landing(
    view: LandingView,
    *,
    now: float,
    version: str,
    polled: frozenset[str] = EVERY_SECTION,
    disabled: frozenset[str] = frozenset(),
) -> str:
    """The landing page for the latest cycle's ``view`` at time ``now`` (seconds since the epoch). A section whose
    collector is among ``disabled`` (``CollectorSettings.disabled()``), or whose field is not ``polled``
    (``PollPlan.fields``), says "not collected" and why, instead of "none"."""
    if view.targets:
        taken = datetime.fromtimestamp(view.taken_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        cycle = f"<p>Latest poll cycle: {_e(taken)} ({_age(now - view.taken_at)} ago).</p>"
        body = "".join(_target(target, now, disabled, polled) for target in view.targets)
    else:
        cycle, body = "<p>Waiting for the first poll cycle to complete.</p>", ""
    shard = f"<p>Shard {view.shard} of {view.total_shards} (0-based).</p>" if view.total_shards > 1 else ""
    links = " · ".join(
        (
            '<a href="metrics">/metrics</a>',
            '<a href="-/ready">/-/ready</a>',
            '<a href="-/healthy">/-/healthy</a>',
            f'<a href="{DOCS_URL}/docs/metrics.md">metrics reference</a>',
            f'<a href="{DOCS_URL}/docs/runbooks.md">runbooks</a>',
            f'<a href="{DOCS_URL}/docs/sidecar.md">sidecar</a>',
            f'<a href="{DOCS_URL}/README.md">README</a>',
        )
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Feldera Exporter</title><style>{STYLE}</style></head><body>"
        f"<h1>Feldera Exporter {_e(version)}</h1><p>{links}</p>{cycle}{shard}{body}</body></html>\n"
    )
