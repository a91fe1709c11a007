"""The ledger's refusals that start nothing: `--dev` off loopback, from the command line and the API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from roomserver.ledger.process import LedgerStartError, start_ledger
from roomserver.ledger.server import serve


def test_dev_mode_is_refused_off_loopback(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "roomserver.ledger", "--host", "0.0.0.0", "--port", "0", "--dev"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--dev is refused off loopback" in done.stderr
    with pytest.raises(ValueError, match="refused off loopback"):
        serve("0.0.0.0", 0, tmp_path, dev=True)
    with pytest.raises(LedgerStartError):
        start_ledger(tmp_path, host="0.0.0.0", dev=True, timeout=30)
