"""The release: what ``python -m build`` makes (sdist and wheel), their metadata and contents, the sdist's own tests,
the installed wheel's generators, and one version everywhere.

The build runs once per module, as a release runs it (``python -m build``: isolated build environments, the wheel
built from the sdist); it takes a few seconds with pip's cache warm.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from exporter import __version__
from tests.golden.snapshots import load_snapshot, parsed_families
from tests.test_deploy import _dockerfile_instructions

ROOT = Path(__file__).resolve().parent.parent
NAME = f"feldera_exporter-{__version__}"
MIXIN_FILES = ("__init__.py", "alertmanager.yml", "config.yaml", "dashboards.py", "rules.py", "runbooks.md")
SDIST_TESTS = ("tests/test_config.py", "tests/test_dashboards.py", "tests/test_metrics_golden.py")
"""The part of the suite run from the unpacked sdist: config validation (the example configs), the dashboards (their
generator, the committed JSON, the runbooks they link), the golden expositions (the test data)."""


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path
    output: str


def run(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300, check=False
    )


def build_env() -> dict[str, str]:
    """The environment without ``PYTHONDONTWRITEBYTECODE``: with it setuptools warns that it cannot byte-compile,
    a warning about the caller's environment, not about the package."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def build(source: Path, out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "build", *options, "--outdir", out, source, env=build_env())


def repository_files() -> list[str]:
    """The files a commit of this checkout would hold (tracked or new, not ignored, not deleted)."""
    listed = run("git", "ls-files", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    assert listed.returncode == 0, listed.stderr
    return sorted(name for name in set(listed.stdout.splitlines()) if os.path.lexists(ROOT / name))


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """Built from a copy of the repository's files, as from a fresh clone: the checkout's build leftovers (an old
    ``*.egg-info`` lists files that are gone or ignored now) cannot leak into the sdist."""
    source = tmp_path_factory.mktemp("source")
    for name in repository_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name, follow_symlinks=False)
    out = tmp_path_factory.mktemp("dist")
    result = build(source, out)
    assert result.returncode == 0, result.stdout + result.stderr
    return Dist(out / f"{NAME}.tar.gz", out / f"{NAME}-py3-none-any.whl", result.stdout + result.stderr)


Test = TypeVar("Test", bound=Callable[..., Any])


def on_the_build(test: Test) -> Test:
    """A test of the one build (``dist``, module-scoped): slow, and on one xdist worker, so that it is built once."""
    marked: Test = pytest.mark.xdist_group("release")(pytest.mark.slow(test))
    return marked


def wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        return email.message_from_bytes(archive.read(f"{NAME}.dist-info/METADATA"))


# ---- build and checks -------------------------------------------------------------------------------------------


@on_the_build
def test_build_makes_an_sdist_and_a_wheel_without_a_warning(dist: Dist) -> None:
    assert dist.sdist.is_file() and dist.wheel.is_file()
    warnings = [line for line in dist.output.splitlines() if re.search(r"warn|deprecat", line, re.IGNORECASE)]
    assert warnings == []


@on_the_build
def test_twine_check_passes(dist: Dist) -> None:
    result = run(sys.executable, "-m", "twine", "check", "--strict", dist.sdist, dist.wheel)
    assert result.returncode == 0, result.stdout + result.stderr


@on_the_build
def test_check_wheel_contents_passes(dist: Dist) -> None:
    result = run(Path(sys.executable).with_name("check-wheel-contents"), dist.wheel)
    assert result.returncode == 0, result.stdout + result.stderr


@on_the_build
def test_metadata_has_the_licence_classifiers_urls_and_the_one_version(dist: Dist) -> None:
    metadata = wheel_metadata(dist.wheel)
    assert metadata["Version"] == __version__
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["License"] is None  # PEP 639: the expression replaces the free-text field
    classifiers = metadata.get_all("Classifier") or []
    assert "Programming Language :: Python :: 3.11" in classifiers and "Topic :: System :: Monitoring" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # PEP 639 forbids both
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL") or [])
    assert set(urls) == {"Homepage", "Documentation", "Changelog", "Issues"}
    with zipfile.ZipFile(dist.wheel) as archive:
        licence = archive.read(f"{NAME}.dist-info/licenses/LICENSE")
    assert licence == (ROOT / "LICENSE").read_bytes() and licence.startswith(b"MIT License")


# ---- what the wheel carries -------------------------------------------------------------------------------------


@on_the_build
def test_wheel_carries_the_rules_dashboards_alertmanager_example_and_runbooks(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as archive:
        names = set(archive.namelist())
        assert {f"exporter/mixin/{name}" for name in MIXIN_FILES} <= names
        runbooks = archive.read("exporter/mixin/runbooks.md")
        config = yaml.safe_load(archive.read("exporter/mixin/config.yaml"))
    assert runbooks == (ROOT / "docs" / "runbooks.md").read_bytes()  # a copy, not the link of the checkout
    assert config == yaml.safe_load((ROOT / "exporter" / "mixin" / "config.yaml").read_text(encoding="utf-8"))
    assert not [name for name in names if name.startswith(("tests/", "docs/", "prometheus/", "grafana/"))]


@on_the_build
def test_the_installed_wheel_writes_what_the_repository_commits(dist: Dist, tmp_path: Path) -> None:
    """Installed alone (not the checkout), ``feldera-exporter rules``, ``dashboards`` and ``mixin`` write the
    repository's files byte for byte: the generated rules and dashboards, the Alertmanager example, the runbooks and
    the rule config."""
    site = tmp_path / "site"
    result = run(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", site, dist.wheel)
    assert result.returncode == 0, result.stdout + result.stderr
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = run(sys.executable, "-c", "import exporter; print(exporter.__file__)", cwd=tmp_path, env=env)
    assert where.stdout.strip() == str(site / "exporter" / "__init__.py")
    rules = run(sys.executable, "-m", "exporter", "rules", cwd=tmp_path, env=env)
    assert rules.returncode == 0, rules.stderr
    assert rules.stdout == (ROOT / "prometheus" / "alerts.yaml").read_text(encoding="utf-8")
    boards = run(
        sys.executable, "-m", "exporter", "dashboards", "--out", tmp_path / "dashboards", cwd=tmp_path, env=env
    )
    assert boards.returncode == 0, boards.stderr
    mixin = run(sys.executable, "-m", "exporter", "mixin", "--out", tmp_path / "mixin", cwd=tmp_path, env=env)
    assert mixin.returncode == 0, mixin.stderr
    committed = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
    expected = {
        Path("alerts.yaml"): ROOT / "prometheus" / "alerts.yaml",
        Path("alertmanager.yml"): ROOT / "exporter" / "mixin" / "alertmanager.yml",
        Path("runbooks.md"): ROOT / "docs" / "runbooks.md",
        Path("config.yaml"): ROOT / "exporter" / "mixin" / "config.yaml",
        **{Path("dashboards", path.name): path for path in committed},
    }
    written = {path.relative_to(tmp_path / "mixin") for path in (tmp_path / "mixin").rglob("*") if path.is_file()}
    assert written == set(expected)
    for name, source in expected.items():
        assert (tmp_path / "mixin" / name).read_bytes() == source.read_bytes(), name
    assert sorted(path.name for path in (tmp_path / "dashboards").iterdir()) == [path.name for path in committed]
    for path in committed:
        assert (tmp_path / "dashboards" / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.mark.slow
def test_the_image_build_context_is_enough_for_the_wheel(tmp_path: Path) -> None:
    """What the Dockerfile copies (and .dockerignore lets through) builds a wheel with the runbooks in it."""
    context = tmp_path / "context"
    context.mkdir()
    for op, args in _dockerfile_instructions():
        if op == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                copied = run("cp", "-a", "--parents", source, context, cwd=ROOT)
                assert copied.returncode == 0, copied.stderr
    result = build(context, tmp_path / "out", "--wheel")
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "out").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("exporter/mixin/runbooks.md") == (ROOT / "docs" / "runbooks.md").read_bytes()


# ---- the sdist --------------------------------------------------------------------------------------------------


@on_the_build
def test_the_sdist_holds_every_repository_file_but_ci_and_git_settings(dist: Dist) -> None:
    wanted = {name for name in repository_files() if not name.startswith((".ci/", ".git"))}
    with tarfile.open(dist.sdist) as archive:
        members = {member.name.split("/", 1)[1] for member in archive.getmembers() if member.isfile()}
    assert wanted - members == set(), "add them to MANIFEST.in"
    assert [name for name in members if "__pycache__" in name or name.endswith(".pyc")] == []


@on_the_build
def test_the_sdist_runs_its_own_tests(dist: Dist, tmp_path: Path) -> None:
    with tarfile.open(dist.sdist) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(tmp_path, filter="data")
        else:  # Python 3.11 before 3.11.4 (Debian 12 ships 3.11.2): no extraction filters; our own build
            archive.extractall(tmp_path)
    unpacked = tmp_path / NAME
    for needed in ("LICENSE", "CHANGELOG.md", "tests/conftest.py", "tests/rules", "tests/golden", "docs/runbooks.md"):
        assert (unpacked / needed).exists(), needed
    assert not (unpacked / "exporter" / "mixin" / "runbooks.md").is_symlink()
    # `python -m` puts the working directory first on sys.path: the unpacked sources, not this checkout
    where = run(sys.executable, "-c", "import exporter; print(exporter.__file__)", cwd=unpacked)
    assert where.stdout.strip() == str(unpacked / "exporter" / "__init__.py")
    result = run(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *SDIST_TESTS,
        cwd=unpacked,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"^\d+ passed", result.stdout.splitlines()[-1]), result.stdout[-500:]


# ---- one version --------------------------------------------------------------------------------------------


def test_version_flag_build_info_and_image_tags_show_the_package_version() -> None:
    result = run(sys.executable, "-m", "exporter", "--version")
    assert result.stdout.strip() == f"feldera-exporter {__version__}"
    (build_info,) = [f for f in parsed_families(load_snapshot("running")) if f.name == "feldera_exporter_build_info"]
    assert [s.labels["version"] for s in build_info.samples] == [__version__]
    tags = {
        str(path.relative_to(ROOT)): image["newTag"]
        for path in sorted((ROOT / "deploy" / "kubernetes").glob("*/kustomization.yaml"))
        for image in yaml.safe_load(path.read_text(encoding="utf-8")).get("images", [])
        if image["name"] == "feldera-exporter"
    }
    assert tags and set(tags.values()) == {__version__}, tags


def test_no_doc_installs_the_package_from_an_index() -> None:
    """feldera-exporter is not on PyPI: the docs install it from a checkout (or a wheel built there)."""
    from_index = re.compile(r"pip install\s+['\"]?feldera-exporter\b")
    docs = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("*/README.md"), ROOT / "exporter" / "webconfig.py"]
    assert [str(path.relative_to(ROOT)) for path in docs if from_index.search(path.read_text(encoding="utf-8"))] == []
