"""The built wheel, installed non-editable into a fresh venv, as a user outside the repository
gets it: `roomserver migrate` creates the schema from the migrations the wheel carries, and
`roomserver-loadtest replay` without the `[loadtest]` extra prints its summary and exits 0.
Of that extra, only matplotlib is missing from a core install (httpx and websockets are core
dependencies, uvloop comes with uvicorn[standard]), so matplotlib is what the venv lacks.

To stay fast the wheel is installed with `--no-deps` into a venv whose extra path holds the
test venv's installed packages (symlinked, minus roomserver itself and matplotlib); the
repository is never on that venv's path (every command runs from a temporary directory
with a clean environment).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import asyncpg
import pytest

from roomserver.config import Settings
from roomserver.store.pgembed import EmbeddedPostgres

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
COPY_IGNORE = shutil.ignore_patterns(".venv", ".git", "data", "build", "dist", "*.egg-info",
                                     "__pycache__", ".*_cache", ".hypothesis", "tests")
HIDDEN = ("roomserver", "__editable__", "matplotlib", "mpl_toolkits", "pylab")


def _run(args: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run to completion with a clean environment (no PYTHONPATH: the repository stays off the
    path, and pip does not take the checkout's egg-info for an installed roomserver)."""
    kwargs.setdefault("env", _env())
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300,
                          **kwargs)  # type: ignore[call-overload]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(REPO, source, ignore=COPY_IGNORE)  # the build writes into its tree
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", work / "dist", source])
    [built] = (work / "dist").glob("roomserver-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; its directory."""
    root = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", root])
    site = Path(_run([root / "bin" / "python", "-I", "-c",
                      "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    deps = root / "deps"
    deps.mkdir()
    ours = Path(sysconfig.get_path("purelib"))
    for entry in ours.iterdir():
        if not entry.name.startswith(HIDDEN) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    (site / "test-deps.pth").write_text(f"{deps}\n")
    _run([sys.executable, "-m", "pip", "--python", root / "bin" / "python", "install", "-q",
          "--no-deps", "--no-index", wheel])
    return root


def _env(**extra: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, **extra}


def test_the_wheel_carries_the_migrations_and_the_load_tester(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    sql = sorted(n for n in names if n.endswith(".sql"))
    assert sql and all(n.startswith("roomserver/store/schema/") for n in sql)
    assert sql == sorted(f"roomserver/store/schema/{p.name}"
                         for p in (REPO / "roomserver/store/schema").glob("*.sql"))
    assert "roomserver/loadtests/__main__.py" in names
    assert not [n for n in names if n.startswith(("loadtests/", "tests/", "schema/"))]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "roomserver = roomserver.__main__:main" in scripts
    assert "roomserver-loadtest = roomserver.loadtests.__main__:main" in scripts


def test_the_venv_imports_the_installed_wheel_not_the_repository(venv: Path, tmp_path: Path) -> None:
    probe = ("import importlib.util, roomserver; print(roomserver.__file__); "
             "print(importlib.util.find_spec('matplotlib'))")
    out = _run([venv / "bin" / "python", "-I", "-c", probe], cwd=tmp_path, env=_env()).stdout.split()
    assert Path(out[0]).is_relative_to(venv) and not Path(out[0]).is_relative_to(REPO)
    assert out[1] == "None"  # matplotlib (the [loadtest] extra) is not importable here


async def test_migrate_creates_the_schema_in_an_empty_database(
        venv: Path, pg: EmbeddedPostgres, tmp_path: Path) -> None:
    pg.psql('DROP DATABASE IF EXISTS "wheel_empty"')
    pg.psql('CREATE DATABASE "wheel_empty"')
    url = pg.url("wheel_empty")
    proc = await asyncio.create_subprocess_exec(
        venv / "bin" / "roomserver", "migrate", cwd=tmp_path, env=_env(DATABASE_URL=url),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out = (await asyncio.wait_for(proc.communicate(), 120))[0].decode()
    assert proc.returncode == 0, out
    versions = sorted(int(p.name[:4]) for p in (REPO / "roomserver/store/schema").glob("*.sql"))
    assert f"applied {len(versions)} migration(s)" in out
    conn = await asyncpg.connect(url)
    try:
        tables = {r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        applied = [r["version"] for r in await conn.fetch(
            "SELECT version FROM schema_migrations ORDER BY version")]
    finally:
        await conn.close()
    assert {"users", "study_rooms", "chat_messages", "documents", "document_chunks", "schema_migrations"} <= tables
    assert applied == versions


async def test_loadtest_replay_without_matplotlib_prints_the_summary_and_exits_0(
        venv: Path, settings: Settings, tmp_path: Path) -> None:
    from tests.servers import run_app

    tool = venv / "bin" / "roomserver-loadtest"
    trace, out = tmp_path / "trace.jsonl", tmp_path / "report"
    _run([tool, "generate", trace, "--rooms", "1", "--members", "3", "--duration", "2",
          "--message-rate", "1", "--churn", "0", "--seed", "3"], cwd=tmp_path, env=_env())
    async with run_app(settings) as url:
        proc = await asyncio.create_subprocess_exec(
            tool, "replay", trace, "--url", url, "--drain", "3", "--quiet", "--out", out,
            cwd=tmp_path, env=_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        stdout, stderr = (s.decode() for s in await asyncio.wait_for(proc.communicate(), 120))
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert "PASS" in stdout and "lost" in stdout
    assert "plot skipped: matplotlib is not installed" in stdout
    assert (out / "result.json").is_file() and (out / "summary.txt").is_file()
    assert not (out / "latency.png").exists()
