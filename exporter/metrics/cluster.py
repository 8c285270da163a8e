"""Cluster health from ``GET /v0/cluster_healthz`` (answered 200 when all services are healthy, 503 otherwise).

Sample output::

    feldera_cluster_service_healthy{target="default",service="api"} 1.0
    feldera_cluster_service_healthy{target="default",service="compiler"} 1.0
    feldera_cluster_service_healthy{target="default",service="runner"} 0.0
    feldera_cluster_service_unchanged_since_timestamp_seconds{target="default",service="runner"} 1.7145648e+09
    feldera_cluster_service_checked_timestamp_seconds{target="default",service="runner"} 1.7145651e+09

Services the answer leaves out are not emitted; older Feldera versions without the endpoint emit nothing. The
answer is the cluster monitor's newest stored check: it stores a healthy result only every 10 minutes (an unhealthy
one at once), so ``checked_timestamp_seconds`` moves every 10 minutes while all is well, and a monitor that stopped
shows as an old one (``FelderaClusterHealthStale``). Before the monitor stored its first check Feldera answers 404
``NoClusterMonitorEventsAvailable``: no series, and the target stays up.
"""

from __future__ import annotations

from exporter.metrics.spec import FamilyBuilder, MetricSpec, target_identity
from exporter.snapshot import Snapshot

GROUP = "cluster"
SERVICES = ("api", "compiler", "runner")

HEALTHY = MetricSpec(
    "feldera_cluster_service_healthy",
    "gauge",
    "1 when the Feldera service passed its most recent health check, else 0.",
    labels=("service",),
    group=GROUP,
    per_pipeline=False,
    reads=("cluster",),
)
UNCHANGED_SINCE = MetricSpec(
    "feldera_cluster_service_unchanged_since_timestamp_seconds",
    "gauge",
    "Approximately when the service last switched between healthy and unhealthy (bounded by event retention).",
    labels=("service",),
    group=GROUP,
    per_pipeline=False,
    reads=("cluster",),
    unit="seconds",
)

CHECKED = MetricSpec(
    "feldera_cluster_service_checked_timestamp_seconds",
    "gauge",
    "When Feldera's cluster monitor stored the check shown (checked_at): every 10 minutes while healthy, at once "
    "when unhealthy.",
    labels=("service",),
    group=GROUP,
    per_pipeline=False,
    reads=("cluster",),
    unit="seconds",
)

SPECS: tuple[MetricSpec, ...] = (HEALTHY, UNCHANGED_SINCE, CHECKED)


def add_samples(snapshot: Snapshot, out: FamilyBuilder[object]) -> None:
    if not out.wants(GROUP):
        return
    for target in snapshot.targets:
        health = target.cluster
        if not target.up or health is None:
            continue
        tid = target_identity(target.name, target.labels)
        for service in SERVICES:
            status = getattr(health, service)
            if status is None:
                continue
            out.add(HEALTHY, tid, 1 if status.healthy else 0, service=service)
            out.add_optional(UNCHANGED_SINCE, tid, status.unchanged_since, service=service)
            out.add_optional(CHECKED, tid, status.checked_at, service=service)
