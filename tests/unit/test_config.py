"""Settings: read from the environment, typed, documented in --help and in the README."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from roomserver.config import SETTINGS, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_and_conversions() -> None:
    s = Settings.from_env({"PORT": "9001", "ALLOWED_ORIGINS": "http://a.test/, http://b.test",
                           "EMBEDDINGS_PRELOAD": "off", "PUBLIC_ORIGIN": "https://rooms.example.edu/"})
    assert s.port == 9001 and s.embeddings_preload is False
    assert s.allowed_origins == ("http://a.test", "http://b.test")
    assert s.origin == "https://rooms.example.edu" and s.domain == "rooms.example.edu"
    assert Settings.from_env({}).cors_origins == ("http://127.0.0.1:8000",)


@pytest.mark.parametrize("env", [{"PORT": "eighty"}, {"EMBEDDINGS_PRELOAD": "maybe"}])
def test_bad_values_name_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=next(iter(env))):
        Settings.from_env(env)


def test_serve_refuses_a_bad_setting_without_a_traceback(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "roomserver", "serve"], cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "PORT": "eighty"}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "PORT" in done.stderr and "Traceback" not in done.stderr


def test_every_setting_is_documented() -> None:
    readme = README.read_text()
    assert [s.env for s in SETTINGS.values() if f"`{s.env}`" not in readme] == []
    assert set(SETTINGS) == set(Settings.__dataclass_fields__)
