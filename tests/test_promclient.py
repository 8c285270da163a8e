"""What the exporter relies on in prometheus_client (exporter/promclient.py): a library release that changes any of
it fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.openmetrics.exposition import generate_latest

import exporter
from exporter.metrics import process
from exporter.promclient import OPENMETRICS_CONTENT_TYPE, PROCESS_FAMILIES, ProcessStats, go_float


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0.0"),
        (-3.0, "-3.0"),
        (0.25, "0.25"),
        (123456.0, "123456.0"),
        (1_000_000.0, "1e+06"),
        (1_234_567.0, "1.234567e+06"),
        (1.7e9, "1.7e+09"),
        (1e-7, "1e-07"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
    ],
)
def test_values_are_written_as_go_writes_them(value: float, text: str) -> None:
    assert go_float(value) == text


def test_the_openmetrics_media_type_is_the_librarys() -> None:
    assert OPENMETRICS_CONTENT_TYPE.startswith("application/openmetrics-text; version=1.0.0")
    assert generate_latest(CollectorRegistry()).endswith(b"# EOF\n")


def test_process_families_are_what_the_librarys_collectors_produce() -> None:
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    produced = {
        (sample.name, family.type, family.documentation, frozenset(sample.labels))
        for family in registry.collect()
        for sample in family.samples
    }
    declared = {(f.name, f.type, f.help, frozenset(f.labels)) for f in PROCESS_FAMILIES}
    assert produced == declared
    assert {spec.name for spec in process.SPECS} == {f.name for f in PROCESS_FAMILIES}
    assert all(spec.group == "process" and not spec.per_target for spec in process.SPECS)


def test_process_stats_read_every_declared_family_on_linux() -> None:
    samples = ProcessStats().read()
    assert {s.name for s in samples} == {f.name for f in PROCESS_FAMILIES}


def test_only_the_adapter_imports_prometheus_client() -> None:
    package = Path(exporter.__file__).parent
    importers = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(name.split(".")[0] == "prometheus_client" for name in names):
                importers.append(str(path.relative_to(package)))
    assert sorted(set(importers)) == ["promclient.py"]
