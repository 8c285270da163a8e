"""The manager's cluster monitor and ``GET /v0/cluster_healthz``, as upstream
(``crates/pipeline-manager/src/cluster_monitor.rs`` and ``api/endpoints/cluster.rs``, ``get_cluster_health``).

The monitor checks the api, compiler and runner every :data:`MONITOR_INTERVAL` (10 s) and stores an event only
when it must: its first check, any change of the overall health, every :data:`STORE_EVERY` checks (10 minutes)
while healthy, and while unhealthy after 1, 2, 4, ... up to 60 checks (exponential backoff). The endpoint answers
the newest stored event: ``checked_at`` is when it was recorded (the same for every service), ``unchanged_since``
where the service's current run of one status began. Before the first event is stored it answers 404
``NoClusterMonitorEventsAvailable``; a monitor that stopped (:meth:`ClusterMonitor.stall`, as in Feldera issue
#6914) keeps answering its last event, which then grows old.

A service's status is ``InitialUnhealthy`` until its first successful check, then ``Healthy``/``Unhealthy``
(``poll_success_to_status``); only ``Healthy`` reads as ``healthy: true``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from exporter.simulator.clock import rfc3339

if TYPE_CHECKING:
    from exporter.simulator.scenario import ClusterSpec

MONITOR_INTERVAL = 10.0
STORE_EVERY = 60
SERVICES = ("api", "compiler", "runner")


def health_message(healthy: bool) -> str:
    return "healthy" if healthy else "health check failed: connection refused"


@dataclass
class StoredStatus:
    status: str
    message: str
    since: float


class ClusterMonitor:
    """What the monitor would see if it checked now (``truth``), and what it stored (``latest``)."""

    def __init__(self, spec: ClusterSpec, now: float) -> None:
        self.truth: dict[str, tuple[bool, str]] = {
            service: (healthy, health_message(healthy))
            for service, healthy in ((s, bool(getattr(spec, s))) for s in SERVICES)
        }
        self.next_check = now + spec.first_event_after
        self.stalled = False
        self.latest: dict[str, StoredStatus] | None = None
        self.recorded_at: float | None = None
        self.events = 0
        self._first = True
        self._without_insert = 0
        self._backoff = 1

    def set_health(self, service: str, healthy: bool, message: str | None, now: float) -> None:
        """From ``now`` on the monitor's checks see ``service`` so (stored at its next check, by the rules)."""
        if service not in self.truth:
            raise KeyError(f"unknown service {service!r}")
        self.advance(now)
        self.truth[service] = (healthy, message or health_message(healthy))

    def stall(self, stalled: bool, now: float) -> None:
        """Stop (or resume) the monitor's loop; resumed, it checks at once."""
        self.advance(now)
        self.stalled = stalled
        if not stalled:
            self.next_check = max(self.next_check, now)

    def advance(self, now: float) -> None:
        """Run every check due by ``now``."""
        if self.stalled:
            self.next_check = max(self.next_check, now + MONITOR_INTERVAL)
            return
        while self.next_check <= now:
            self._check(self.next_check)
            self.next_check += MONITOR_INTERVAL

    def _check(self, at: float) -> None:
        new_healthy = all(healthy for healthy, _ in self.truth.values())
        if self.latest is None:
            insert = True
        elif self._first:
            self._first = False
            insert = True
        else:
            latest_healthy = all(s.status == "Healthy" for s in self.latest.values())
            if latest_healthy and new_healthy:
                self._backoff = 1
                insert = self._without_insert >= STORE_EVERY - 1
            elif not latest_healthy and not new_healthy:
                insert = self._without_insert >= self._backoff - 1
                if insert:
                    self._backoff = min(self._backoff * 2, STORE_EVERY)
            else:
                self._backoff = 1
                insert = True
        if not insert:
            self._without_insert += 1
            return
        self._without_insert = 0
        self._store(at)

    def _store(self, at: float) -> None:
        stored: dict[str, StoredStatus] = {}
        for service, (healthy, message) in self.truth.items():
            previous = self.latest[service] if self.latest is not None else None
            if previous is not None and previous.status == "InitialUnhealthy" and not healthy:
                status = "InitialUnhealthy"
            else:
                status = "Healthy" if healthy else ("Unhealthy" if previous is not None else "InitialUnhealthy")
            since = previous.since if previous is not None and previous.status == status else at
            stored[service] = StoredStatus(status, message, since)
        self.latest = stored
        self.recorded_at = at
        self.events += 1

    def body(self, now: float) -> dict[str, Any] | None:
        """The answer of ``GET /v0/cluster_healthz`` (None: no event stored yet)."""
        self.advance(now)
        if self.latest is None or self.recorded_at is None:
            return None
        checked_at = rfc3339(self.recorded_at)
        body: dict[str, Any] = {"all_healthy": all(s.status == "Healthy" for s in self.latest.values())}
        for service, stored in self.latest.items():
            body[service] = {
                "healthy": stored.status == "Healthy",
                "message": stored.message,
                "unchanged_since": rfc3339(stored.since),
                "checked_at": checked_at,
            }
        return body
