"""The exporter's own metrics: is each target up, how polls and API requests went, build and shard facts.

Sample output::

    feldera_up{target="default"} 1.0
    feldera_exporter_build_info{version="0.1.0",python_version="3.11.2"} 1.0
    feldera_exporter_poll_duration_seconds{target="default"} 0.031
    feldera_exporter_last_poll_success_timestamp_seconds{target="default"} 1.7145648e+09
    feldera_exporter_polls_total{target="default",result="success"} 12.0
    feldera_exporter_api_requests_total{target="default",endpoint="list_pipelines",code="200"} 12.0
    feldera_exporter_api_request_duration_seconds_bucket{target="default",endpoint="stats",le="0.005"} 30.0
    feldera_exporter_dropped_pipelines{target="default"} 0.0
    feldera_exporter_polls_cut_off_total{target="default"} 0.0
    feldera_exporter_target_over_limit{target="default",limit="pipelines"} 0.0
    feldera_exporter_shard_info{shard="0",total_shards="1"} 1.0

These series are emitted whether or not the target is up (they are how one sees that it is down).
"""

from __future__ import annotations

import platform

from exporter import __version__
from exporter.metrics.spec import FamilyBuilder, MetricSpec, target_identity
from exporter.snapshot import LIMITS, Snapshot

GROUP = "exporter"

UP = MetricSpec(
    "feldera_up",
    "gauge",
    "1 when the last pipeline list call to the target succeeded, else 0 (then no pipeline series are served).",
    group=GROUP,
    per_pipeline=False,
)
BUILD_INFO = MetricSpec(
    "feldera_exporter_build_info",
    "gauge",
    "Always 1; the exporter's version and Python version as labels.",
    labels=("version", "python_version"),
    group=GROUP,
    per_pipeline=False,
    per_target=False,
)
POLL_DURATION = MetricSpec(
    "feldera_exporter_poll_duration_seconds",
    "gauge",
    "Wall time of the target's last poll cycle (list call and all sub-requests).",
    group=GROUP,
    per_pipeline=False,
    unit="seconds",
)
LAST_SUCCESS = MetricSpec(
    "feldera_exporter_last_poll_success_timestamp_seconds",
    "gauge",
    "When the pipeline list call to the target last succeeded (absent until it has).",
    group=GROUP,
    per_pipeline=False,
    unit="seconds",
)
POLLS = MetricSpec(
    "feldera_exporter_polls_total",
    "counter",
    "Poll cycles per target by result: success (list call answered) or failure.",
    labels=("result",),
    group=GROUP,
    per_pipeline=False,
)
REQUESTS = MetricSpec(
    "feldera_exporter_api_requests_total",
    "counter",
    "HTTP requests to the Feldera API by operation and outcome: the HTTP status, or timeout, connection_error, "
    "invalid_response. Every attempt counts, retries included.",
    labels=("endpoint", "code"),
    group=GROUP,
    per_pipeline=False,
)
REQUEST_DURATION = MetricSpec(
    "feldera_exporter_api_request_duration_seconds",
    "histogram",
    "Duration of HTTP requests (attempts) to the Feldera API by operation: sent to answered, parsing excluded.",
    labels=("endpoint",),
    group=GROUP,
    per_pipeline=False,
    unit="seconds",
)
DROPPED_PIPELINES = MetricSpec(
    "feldera_exporter_dropped_pipelines",
    "gauge",
    "Pipelines of the target whose series this cycle leaves out because translating them into metrics failed "
    "(logged with the error); 0 normally.",
    group=GROUP,
    per_pipeline=False,
)
CUT_OFF = MetricSpec(
    "feldera_exporter_polls_cut_off_total",
    "counter",
    "Poll cycles of the target cut off at poll.cycle_deadline: what was not answered by then is left out of the "
    "cycle (the target is down if the pipeline list was not answered).",
    group=GROUP,
    per_pipeline=False,
)
OVER_LIMIT = MetricSpec(
    "feldera_exporter_target_over_limit",
    "gauge",
    "1 when the target's answers of this cycle went past a limit: pipelines (more than targets[].max_pipelines "
    "listed: the list is refused, the target down) or connectors (more than targets[].max_connectors: the stats "
    "of the remaining pipelines are not asked); else 0.",
    labels=("limit",),
    group=GROUP,
    per_pipeline=False,
)
SHARD_INFO = MetricSpec(
    "feldera_exporter_shard_info",
    "gauge",
    "Always 1; which shard of the pipelines (by stable hash of the name) this exporter polls.",
    labels=("shard", "total_shards"),
    group=GROUP,
    per_pipeline=False,
    per_target=False,
)

SPECS: tuple[MetricSpec, ...] = (
    UP,
    BUILD_INFO,
    POLL_DURATION,
    LAST_SUCCESS,
    POLLS,
    REQUESTS,
    REQUEST_DURATION,
    DROPPED_PIPELINES,
    CUT_OFF,
    OVER_LIMIT,
    SHARD_INFO,
)

POLL_RESULTS = ("success", "failure")


def add_samples(snapshot: Snapshot, out: FamilyBuilder[object]) -> None:
    out.add(BUILD_INFO, (), 1.0, version=__version__, python_version=platform.python_version())
    out.add(SHARD_INFO, (), 1.0, shard=str(snapshot.shard), total_shards=str(snapshot.total_shards))
    for target in snapshot.targets:
        identity = target_identity(target.name, target.labels)
        stats = target.exporter
        out.add(UP, identity, 1.0 if target.up else 0.0)
        out.add(DROPPED_PIPELINES, identity, len(target.dropped_pipelines))
        out.add(CUT_OFF, identity, stats.cut_off)
        for limit in LIMITS:
            out.add(OVER_LIMIT, identity, 1.0 if limit in target.over_limit else 0.0, limit=limit)
        out.add_optional(POLL_DURATION, identity, stats.poll_duration_seconds)
        out.add_optional(LAST_SUCCESS, identity, stats.last_success_timestamp_seconds)
        polls = dict(stats.polls)
        for result in POLL_RESULTS:
            out.add(POLLS, identity, polls.get(result, 0), result=result)
        for request in stats.requests:
            out.add(REQUESTS, identity, request.count, endpoint=request.endpoint, code=request.code)
        for timing in stats.timings:
            out.add_histogram(
                REQUEST_DURATION,
                identity,
                timing.bounds,
                timing.counts,
                timing.count,
                timing.total_seconds,
                endpoint=timing.endpoint,
            )
