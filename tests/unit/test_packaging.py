"""Packaging invariants that need no service: the migrations are package data and their
absence is loud, and the server never imports its load tester."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import roomserver
from roomserver.__main__ import main
from roomserver.store import migrations
from roomserver.store.migrations import MigrationError, NoMigrations, load

PACKAGE = Path(roomserver.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_module_outside_the_load_tester_imports_it() -> None:
    tester = PACKAGE / "loadtests"
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if tester not in path.parents
        and any(name == "roomserver.loadtests" or name.startswith("roomserver.loadtests.")
                for name in _imported_modules(path))
    ]
    assert offenders == []
    # the check sees imports at all: the load tester's own entry point imports itself
    assert "roomserver.loadtests.report" in _imported_modules(tester / "__main__.py")


def test_only_the_load_tester_imports_the_client() -> None:
    client, tester = PACKAGE / "client", PACKAGE / "loadtests"
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if client not in path.parents and tester not in path.parents
        and any(name == "roomserver.client" or name.startswith("roomserver.client.")
                for name in _imported_modules(path))
    ]
    assert offenders == []
    assert "roomserver.client" in _imported_modules(tester / "replay.py")


def test_the_migrations_are_package_data_read_through_importlib_resources() -> None:
    found = load()
    assert [m.version for m in found] == sorted(m.version for m in found)
    assert found[0].version == 1 and "CREATE TABLE" in found[0].sql
    assert str(migrations.SCHEMA_DIR).startswith(str(PACKAGE))


def test_no_migrations_is_an_error_not_an_up_to_date_schema(tmp_path: Path) -> None:
    with pytest.raises(NoMigrations, match="no migration files"):
        load(tmp_path)
    (tmp_path / "0001_x.sql").write_text("SELECT 1")
    (tmp_path / "1_bad.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match=r"0001_name\.sql"):
        load(tmp_path)


def test_migrate_command_fails_loudly_without_migrations(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(migrations, "SCHEMA_DIR", tmp_path)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    assert main(["migrate"]) == 1
    err = capsys.readouterr().err
    assert "cannot migrate" in err and "no migration files" in err
    assert not (tmp_path / "data").exists()  # refused before any database was started
