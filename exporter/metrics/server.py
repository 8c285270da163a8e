"""The Feldera platform itself from ``GET /v0/config``: version, edition, licence, update check, runtime drift.

Sample output (``target`` label left out)::

    feldera_server_info{version="0.340.0",edition="Enterprise",revision="9f2c…",runtime_revision="9f2c…"} 1.0
    feldera_server_license_valid 1.0
    feldera_server_license_trial 0.0
    feldera_server_license_expiry_timestamp_seconds 1.7986176e+09
    feldera_server_license_reminder_timestamp_seconds 1.7960256e+09
    feldera_server_update_available{latest_version="0.341.0"} 1.0
    feldera_pipeline_runtime_outdated{pipeline_name="orders"} 1.0
    feldera_pipeline_runtime_outdated{pipeline_name="totals"} 0.0

The licence series exist only when the server reports a licence state (the Enterprise edition; the open-source
edition reports none): ``valid`` is 1 for ``Exists`` and 0 for ``DoesNotExistOrNotConfirmed``, which the server
also answers while it cannot reach the licence check. Expiry, reminder and trial come with ``Exists`` only.
``update_available`` exists only when the server ran its update check.

``runtime_outdated`` compares each pipeline's ``platform_version`` (the runtime its program was compiled for)
with the server's ``version`` as Feldera's web console does: everything from ``+`` on is dropped (Enterprise
pipelines report ``0.340.0+enterprise`` or ``0.340.0+enterprise.SUFFIX`` where ``/v0/config`` says ``0.340.0``),
and a leading ``v`` too. After an upgrade, pipelines keep the old runtime until
``POST /v0/pipelines/{name}/update_runtime`` recompiles them (the pipeline must be stopped), so
``feldera_pipeline_runtime_outdated == 1`` lists the pipelines an upgrade has not reached yet. A pipeline whose
``program_config.runtime_version`` pins its runtime on purpose is 0. It is omitted when either version is unknown
(docs/feldera-api.md, "Versions").
"""

from __future__ import annotations

from exporter.metrics.spec import FamilyBuilder, MetricSpec, pipeline_identity, target_identity
from exporter.snapshot import Snapshot

GROUP = "server"


def _gauge(
    name: str, help: str, *, unit: str = "", labels: tuple[str, ...] = (), per_pipeline: bool = False
) -> MetricSpec:
    return MetricSpec(
        name, "gauge", help, labels=labels, group=GROUP, per_pipeline=per_pipeline, unit=unit, reads=("server",)
    )


INFO = _gauge(
    "feldera_server_info",
    "The Feldera platform's version, edition and build revisions (GET /v0/config); always 1.",
    labels=("version", "edition", "revision", "runtime_revision"),
)
LICENSE_VALID = _gauge(
    "feldera_server_license_valid",
    "1 when the server confirmed its licence (Exists), 0 when it reports none or could not confirm it; "
    "absent when the edition has no licence.",
)
LICENSE_TRIAL = _gauge("feldera_server_license_trial", "1 when the confirmed licence is a trial, else 0.")
LICENSE_EXPIRY = _gauge(
    "feldera_server_license_expiry_timestamp_seconds",
    "When the confirmed licence expires (valid_until); absent when it does not expire.",
    unit="seconds",
)
LICENSE_REMINDER = _gauge(
    "feldera_server_license_reminder_timestamp_seconds",
    "From when Feldera reminds users that the licence expires soon (remind_starting_at).",
    unit="seconds",
)
UPDATE_AVAILABLE = _gauge(
    "feldera_server_update_available",
    "1 when the server's update check found a newer version of its edition (latest_version), else 0.",
    labels=("latest_version",),
)
RUNTIME_OUTDATED = _gauge(
    "feldera_pipeline_runtime_outdated",
    "1 when the pipeline's platform_version differs from the server's version, compared without any +suffix (not "
    "yet recompiled with update_runtime after an upgrade), else 0; 0 when program_config.runtime_version pins "
    "its runtime.",
    per_pipeline=True,
)

SPECS: tuple[MetricSpec, ...] = (
    INFO,
    LICENSE_VALID,
    LICENSE_TRIAL,
    LICENSE_EXPIRY,
    LICENSE_REMINDER,
    UPDATE_AVAILABLE,
    RUNTIME_OUTDATED,
)


def normalized_version(version: str) -> str:
    """The release a version names, as Feldera's web console compares them (``normalizeRuntimeVersion``):
    ``v0.337.0``, ``0.337.0`` and ``0.337.0+enterprise.1a2b3c`` are the same release."""
    text = version.strip().split("+", 1)[0].strip()
    return text[1:] if text[:1] in ("v", "V") else text


def add_samples(snapshot: Snapshot, out: FamilyBuilder[object]) -> None:
    if not out.wants(GROUP):
        return
    for target in snapshot.targets:
        config = target.server
        if not target.up or config is None:
            continue
        tid = target_identity(target.name, target.labels)
        out.add(
            INFO,
            tid,
            1,
            version=config.version,
            edition=config.edition,
            revision=config.revision,
            runtime_revision=config.runtime_revision,
        )
        validity = config.license_validity
        if validity is not None and validity.valid is not None:
            out.add(LICENSE_VALID, tid, 1 if validity.valid else 0)
            licence = validity.exists
            if licence is not None:
                if licence.is_trial is not None:
                    out.add(LICENSE_TRIAL, tid, 1 if licence.is_trial else 0)
                out.add_optional(LICENSE_EXPIRY, tid, licence.valid_until)
                out.add_optional(LICENSE_REMINDER, tid, licence.remind_starting_at)
        update = config.update_info
        if update is not None and update.is_latest_version is not None:
            out.add(UPDATE_AVAILABLE, tid, 0 if update.is_latest_version else 1, latest_version=update.latest_version)
        current = normalized_version(config.version)
        if not current:
            continue
        for snap in target.pipelines:
            running = normalized_version(snap.pipeline.platform_version)
            if running:
                program = snap.pipeline.program_config
                pinned = program is not None and bool(program.runtime_version)
                outdated = 0 if pinned or running == current else 1
                out.add(RUNTIME_OUTDATED, pipeline_identity(tid, snap.name), outdated)
