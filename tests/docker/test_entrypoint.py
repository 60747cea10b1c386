"""docker/entrypoint.sh: what it refuses before it migrates or serves.

It serving (migrate, then `par-server serve` on PAR_PORT) and stopping within compose's grace period
are tested in tests/faults/test_shutdown.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ENTRYPOINT = Path(__file__).resolve().parents[2] / "docker" / "entrypoint.sh"


@pytest.mark.parametrize("arguments", [["--port", "9000"], ["--workers", "2", "--port=9000"]])
def test_a_port_argument_is_refused_for_par_port(arguments: list[str], tmp_path: Path) -> None:
    """The HEALTHCHECK probes PAR_PORT; a --port it cannot see would mark a healthy container unhealthy."""
    completed = subprocess.run(
        ["sh", str(ENTRYPOINT), *arguments],
        env={"PATH": "/usr/bin:/bin"},  # no par-server on it: nothing may be run
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert completed.returncode == 2
    assert "set PAR_PORT instead of --port" in completed.stderr
