"""Settings: declared once, read from the environment (and .env), typed, documented in --help and the README."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from roomserver.__main__ import parser
from roomserver.config import FIELDS, Settings, SettingsError, describe, markdown_table

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m roomserver ARGS` in a clean environment that imports this checkout."""
    return subprocess.run([sys.executable, "-m", "roomserver", *args], cwd=cwd,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=60)


def test_defaults_and_conversions() -> None:
    s = Settings.from_env({"PORT": "9001", "ALLOWED_ORIGINS": "http://a.test/, http://b.test",
                           "EMBEDDINGS_PRELOAD": "off", "PUBLIC_ORIGIN": "https://rooms.example.edu/",
                           "LOG_LEVEL": "DEBUG", "NFT_MINT_MODE": "sponsored", "DATA_DIR": "/srv/rs"})
    assert s.port == 9001 and s.embeddings_preload is False
    assert s.allowed_origins == ("http://a.test", "http://b.test")
    assert s.origin == "https://rooms.example.edu" and s.domain == "rooms.example.edu"
    assert s.log_level == "debug" and s.nft_mint_mode == "sponsored" and s.data_dir == Path("/srv/rs")
    assert Settings.from_env({}).cors_origins == ("http://127.0.0.1:8000",)
    assert Settings.from_env({"EMBEDDINGS_PRELOAD": ""}).embeddings_preload is False


@pytest.mark.parametrize("env", [{"PORT": "eighty"}, {"EMBEDDINGS_PRELOAD": "maybe"}, {"LOG_LEVEL": "verbose"},
                                 {"NFT_MINT_MODE": "free"}, {"PORT": "70000"}, {"TUTOR_MAX_TOKENS": "0"}])
def test_bad_values_name_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=next(iter(env))):
        Settings.from_env(env)


def test_every_bad_value_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PORT": "eighty", "LOG_LEVEL": "verbose", "NFT_MINT_MODE": "free", "HOST": "ok"})
    assert sorted(var for var, _ in caught.value.problems) == ["LOG_LEVEL", "NFT_MINT_MODE", "PORT"]
    assert "'free'" in dict(caught.value.problems)["NFT_MINT_MODE"]


def test_overrides_are_validated_and_must_be_settings() -> None:
    with pytest.raises(SettingsError, match="NFT_MINT_MODE"):
        Settings.from_env({}, nft_mint_mode="free")
    with pytest.raises(TypeError, match="no_such_setting"):
        Settings.from_env({}, no_such_setting=1)
    s = Settings.from_env({"PORT": "9001"}, port=9002, anthropic_api_key="sk-test")
    assert s.port == 9002 and s.anthropic_api_key.get_secret_value() == "sk-test"
    assert dataclasses.replace(s, port=9003).port == 9003
    with pytest.raises(ValidationError):
        dataclasses.replace(s, log_level="verbose")


def test_secrets_and_credentials_stay_out_of_reprs_and_listings() -> None:
    s = Settings.from_env({"ANTHROPIC_API_KEY": "sk-ant-secret", "DATABASE_URL": "postgresql://u:pw@db/x"})
    assert isinstance(s.anthropic_api_key, SecretStr)
    assert "sk-ant-secret" not in repr(s) and "pw@db" not in repr(s)
    listing = "\n".join(describe(s))
    assert "sk-ant-secret" not in listing and "pw@db" not in listing
    assert "ANTHROPIC_API_KEY=**********" in listing and "PORT=8000" in listing


def test_every_setting_has_help_text() -> None:
    fields = Settings.__pydantic_fields__
    assert [name for name, info in fields.items() if len(info.description or "") < 10] == []


def test_readme_table_is_the_generated_one() -> None:
    readme = README.read_text()
    assert markdown_table() in readme, "regenerate with: python -m roomserver settings --markdown"
    assert [var for var in FIELDS.values() if f"| `{var}` |" not in readme] == []


def test_help_lists_every_setting_with_its_default() -> None:
    text = parser().format_help()
    for name, var in FIELDS.items():
        line = next((row for row in text.splitlines() if row.split()[:1] == [var]), None)
        assert line is not None, var
        default = Settings.__pydantic_fields__[name].default
        if isinstance(default, bool):
            assert f"(default: {str(default).lower()})" in line, line
        elif isinstance(default, (int, float, str)) and default != "":
            assert f"(default: {default})" in line, line


@pytest.mark.parametrize(("var", "value"), [("LOG_LEVEL", "verbose"), ("NFT_MINT_MODE", "free"), ("PORT", "eighty")])
def test_serve_refuses_a_bad_setting_before_anything_starts(tmp_path: Path, var: str, value: str) -> None:
    data = tmp_path / "data"
    done = _run(["serve"], tmp_path, DATA_DIR=str(data), **{var: value})
    assert done.returncode == 2, done.stderr
    assert f"bad setting {var}" in done.stderr and "Traceback" not in done.stderr
    assert "listening" not in done.stdout and "database" not in done.stdout
    assert not data.exists(), "nothing (embedded PostgreSQL, ledger, blobs) may start on a bad setting"


def test_dotenv_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT=9100\nTUTOR_MODEL=from-dotenv\nANTHROPIC_API_KEY=sk-dotenv\n")
    done = _run(["settings"], tmp_path, TUTOR_MODEL="from-env")
    assert done.returncode == 0, done.stderr
    assert "PORT=9100" in done.stdout and "TUTOR_MODEL=from-env" in done.stdout
    assert "sk-dotenv" not in done.stdout and "ANTHROPIC_API_KEY=**********" in done.stdout
    (tmp_path / ".env").write_text("LOG_LEVEL=verbose\n")
    refused = _run(["settings"], tmp_path)
    assert refused.returncode == 2 and "bad setting LOG_LEVEL" in refused.stderr


def test_markdown_command_prints_the_table(tmp_path: Path) -> None:
    done = _run(["settings", "--markdown"], tmp_path)
    assert done.returncode == 0 and done.stdout == markdown_table()


def test_settings_from_environment() -> None:
    s = Settings.from_env({"TUTOR_MIN_SCORE": "0.5", "TUTOR_TIMEOUT_SECONDS": "7.5", "TUTOR_MAX_TOKENS": "99"})
    assert (s.tutor_min_score, s.tutor_timeout_seconds, s.tutor_max_tokens) == (0.5, 7.5, 99)


def test_the_uvicorn_factory_refuses_bad_settings_without_a_traceback(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "from roomserver.app import app_from_env; app_from_env()"],
                          cwd=tmp_path, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT),
                                             "LOG_LEVEL": "verbose", "DATA_DIR": str(tmp_path / "data")},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "bad setting LOG_LEVEL" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()
