"""The private API we subclass works at the lowest version pyproject.toml allows: uvicorn's
websockets-sansio protocol (under `roomserver.api.ws.FrameCachingProtocol`) at uvicorn's floor.

The floor release is installed from the package index into a directory put first on the path
of a child pytest that runs the protocol's own tests (tests/test_ws_frames.py); the upper
bound keeps untested newer releases out, the lockfile pins the tested one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def floor(package: str) -> str:
    """The `>=` bound of `package` in pyproject.toml's core dependencies."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        match = re.match(rf"{re.escape(package)}(\[[^\]]*\])?\s*>=\s*([\w.]+)", dep)
        if match:
            return match[2]
    raise LookupError(f"{package} has no >= floor in pyproject.toml")


def test_the_socket_protocol_runs_on_the_lowest_allowed_uvicorn(tmp_path: Path) -> None:
    lowest = floor("uvicorn")
    target = tmp_path / "lowest"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         f"uvicorn=={lowest}"], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(target), str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    probe = subprocess.run([sys.executable, "-c", "import uvicorn; print(uvicorn.__version__)"],
                           capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert probe.stdout.strip() == lowest, probe.stderr
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         f"--basetemp={tmp_path / 'inner'}", "tests/test_ws_frames.py"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert re.search(r"\b[1-9]\d* passed\b", run.stdout), run.stdout[-2000:]
