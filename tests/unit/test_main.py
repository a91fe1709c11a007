"""The command line: `--help` names the subcommands and the settings."""

from __future__ import annotations

import subprocess
import sys


def test_help_lists_subcommands_and_settings() -> None:
    out = subprocess.run([sys.executable, "-m", "roomserver", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for word in ("serve", "migrate", "DATABASE_URL", "REDIS_URL", "SOLANA_RPC_URL",
                 "ANTHROPIC_API_KEY", "PUBLIC_ORIGIN", "ALLOWED_ORIGINS"):
        assert word in out
