"""The built wheel, installed as a user would install it: outside the checkout, from the lock.

A fresh virtual environment in an empty directory gets the runtime dependencies uv.lock pins
(hash-checked, as the image installs them) and the wheel; there it migrates a new SQLite database,
serves, and answers the README's curl push with 201.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.faults.support import REPO_ROOT, Deployment, ServerProcess, free_port

UV = os.environ.get("PAR_TEST_UV") or shutil.which("uv")
INSTALL_TIMEOUT_SECONDS = 300
pytestmark = pytest.mark.skipif(UV is None, reason="needs uv (scripts/test provides it as PAR_TEST_UV)")


def uv(*args: str, cwd: Path) -> str:
    assert UV is not None
    completed = subprocess.run(
        [UV, *args], cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_SECONDS, check=False
    )
    assert completed.returncode == 0, f"uv {' '.join(args)}: {completed.stderr}"
    return completed.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    uv("build", "--wheel", "--quiet", "--out-dir", str(out), str(REPO_ROOT), cwd=out)
    (built,) = out.glob("par_server-*.whl")
    return built


@dataclass(frozen=True)
class Installed:
    directory: Path  # empty but for what the installed commands write there
    bin: Path


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A new venv outside the checkout: the lock's runtime pins (with hashes), then the wheel alone."""
    root = tmp_path_factory.mktemp("installed")
    requirements = root / "requirements.txt"
    uv(
        *("export", "--frozen", "--no-default-groups", "--no-emit-project", "--no-header"),
        *("--format", "requirements-txt", "--output-file", str(requirements)),
        cwd=REPO_ROOT,
    )
    venv = root / "venv"
    uv("venv", "--quiet", str(venv), cwd=root)
    python = str(venv / "bin" / "python")
    uv("pip", "install", "--quiet", "--python", python, "--require-hashes", "-r", str(requirements), cwd=root)
    uv("pip", "install", "--quiet", "--python", python, "--no-deps", str(wheel), cwd=root)
    directory = root / "work"
    directory.mkdir()
    return Installed(directory, venv / "bin")


def test_wheel_holds_every_module_and_the_same_migrations(wheel: Path) -> None:
    """The package list in pyproject.toml is explicit: a new subpackage must not be left out of the wheel."""
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name: archive.read(name) for name in archive.namelist() if name.startswith("app/")}
    sources = {f"app/{path.relative_to(REPO_ROOT / 'app')}" for path in (REPO_ROOT / "app").rglob("*.py")}
    assert sources <= set(shipped)
    migrations = {
        f"app/migrations/{path.relative_to(REPO_ROOT / 'migrations')}": path.read_bytes()
        for path in (REPO_ROOT / "migrations").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert {name: shipped.get(name) for name in migrations} == migrations


def test_installed_wheel_reports_its_version(installed: Installed) -> None:
    completed = subprocess.run(
        [str(installed.bin / "par-server"), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert completed.returncode == 0 and re.fullmatch(r"par-server \d+\.\d+\.\d+\S*\n", completed.stdout)


def test_installed_wheel_migrates_and_serves(installed: Installed, tmp_path: Path) -> None:
    """`par-server migrate` finds the packaged scripts, and `/readyz` then sees the database at their head."""
    deployment = Deployment(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'par.db'}",
        log_dir=tmp_path,
        executable=installed.bin / "par-server",
        cwd=installed.directory,
    )
    deployment.cli("migrate")
    with deployment.server("wheel") as server:  # entered only once /readyz answers 200
        assert httpx.get(f"{server.base_url}/readyz", trust_env=False).json()["migrations"] == "current"


@pytest.fixture
def demo(installed: Installed, tmp_path: Path) -> Iterator[ServerProcess]:
    """`par-server demo` in the empty directory, with nothing set, as the README's quick start runs it."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("PAR_")}
    log_path = tmp_path / "demo.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(installed.bin / "par-server"), "demo", "--port", str(port)],
            cwd=installed.directory,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", port, log_path)
    try:
        server.wait_ready()
        yield server
    finally:
        server.kill()
        shutil.rmtree(installed.directory / "data", ignore_errors=True)


def readme_push_command() -> str:
    """The README's quick-start push: the shell block after "From another terminal, push a request"."""
    readme = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"From another terminal, push a request:\s*```sh\n(.*?)```", readme, re.DOTALL)
    assert match, "the README's quick start no longer has its push example"
    return match.group(1)


def test_installed_wheel_answers_the_readme_push(installed: Installed, demo: ServerProcess) -> None:
    # The block ends in a comment showing the answer; the command's last line gets curl's status output.
    lines = [line for line in readme_push_command().splitlines() if not line.lstrip().startswith("#")]
    script = "\n".join(lines) + " -o response.json -w '%{http_code}'\n"
    completed = subprocess.run(
        ["bash", "-c", script],
        cwd=installed.directory,
        env={**os.environ, "NO_PROXY": "*"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.stdout == "201", f"{completed.stdout}\n{completed.stderr}\n{demo.log()}"
    body = json.loads((installed.directory / "response.json").read_text())
    assert body["request_uri"].startswith("urn:ietf:params:oauth:request_uri:") and body["expires_in"] > 0
