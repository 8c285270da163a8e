"""The walk every per-pipeline metric module shares: each pipeline of each target that is up, in its guard.

A module hands :func:`each_pipeline` a function of ``(pid, snap)`` (``pid``: the pipeline's identity labels) that
emits the pipeline's samples; an exception there is the pipeline's alone (see
:class:`~exporter.metrics.spec.PipelineGuard`). A callback rather than a generator, because an exception raised
in a ``for`` body never reaches a ``with`` inside the generator that feeds the loop.
"""

from __future__ import annotations

from collections.abc import Callable

from exporter.metrics.spec import FamilyBuilder, Labels, pipeline_identity, target_identity
from exporter.snapshot import PipelineSnapshot, Snapshot

PipelineSamples = Callable[[Labels, PipelineSnapshot], None]


def each_pipeline(snapshot: Snapshot, out: FamilyBuilder[object], emit: PipelineSamples) -> None:
    """``emit(pid, snap)`` for every pipeline of every target that is up (a down target has no pipelines)."""
    for target in snapshot.targets:
        if not target.up:
            continue
        tid = target_identity(target.name, target.labels)
        for snap in target.pipelines:
            with out.pipeline(target.name, snap.pipeline.name):
                emit(pipeline_identity(tid, snap.pipeline.name), snap)
