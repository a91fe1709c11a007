"""The ledger's state: a LiteSVM plus a log that rebuilds it after a restart.

Every state change (a transaction that executed, an airdrop, a raw account write) is
appended as one JSON line to `<data_dir>/ledger.log` before its result is returned, and
replayed into a fresh VM at start: LiteSVM is deterministic, so replay reproduces every
account and blockhash. Each change opens a new slot and a new blockhash; the last
`BLOCKHASH_WINDOW` blockhashes stay valid. Not thread-safe: the server serialises calls.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from solders.account import Account
from solders.clock import Clock
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata
from solders.transaction_status import TransactionConfirmationStatus, TransactionStatus

BLOCKHASH_WINDOW = 150
LOG_NAME = "ledger.log"


@dataclass(frozen=True)
class TxStatus:
    slot: int
    err: Any  # the wire JSON of a TransactionError, or None


@dataclass(frozen=True)
class TxOutcome:
    signature: str
    err: Any
    logs: list[str]
    units: int


def error_json(err: Any) -> Any:
    """Wire JSON of a solders TransactionError (e.g. {"InstructionError": [0, {"Custom": 1}]})."""
    status = TransactionStatus(0, None, None, err, TransactionConfirmationStatus.Finalized)
    return json.loads(status.to_json())["err"]


class Ledger:
    """A LiteSVM whose changes are logged in `data_dir` (None: memory only)."""

    def __init__(self, data_dir: Path | None = None):
        self.vm = LiteSVM().with_blockhash_check(False)
        self.slot = 1
        self.blockhashes: deque[str] = deque(maxlen=BLOCKHASH_WINDOW)
        self.statuses: dict[str, TxStatus] = {}
        self._log: TextIO | None = None
        self._advance(int(time.time()))
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
            path = data_dir / LOG_NAME
            if path.exists():
                self._replay(path)
            self._log = path.open("a", encoding="utf-8")

    @property
    def latest_blockhash(self) -> str:
        return self.blockhashes[-1]

    def close(self) -> None:
        if self._log is not None:
            self._log.flush()
            os.fsync(self._log.fileno())
            self._log.close()
            self._log = None

    # -- changes --------------------------------------------------------------------------

    def airdrop(self, pubkey: Pubkey, lamports: int) -> TxOutcome:
        entry = {"op": "airdrop", "pubkey": str(pubkey), "lamports": lamports}
        return self._commit(entry)

    def send(self, tx: VersionedTransaction) -> TxOutcome:
        """Execute a transaction whose blockhash is recent; a failed one still pays its fee."""
        entry = {"op": "tx", "tx": base64.b64encode(bytes(tx)).decode()}
        return self._commit(entry)

    def simulate(self, tx: VersionedTransaction) -> TxOutcome:
        result = self.vm.simulate_transaction(tx)
        if isinstance(result, FailedTransactionMetadata):
            meta = result.meta()
            return TxOutcome(str(tx.signatures[0]), error_json(result.err()), meta.logs(), meta.compute_units_consumed())
        meta = result.meta()
        return TxOutcome(str(tx.signatures[0]), None, meta.logs(), meta.compute_units_consumed())

    def set_account(self, pubkey: Pubkey, account: Account) -> None:
        entry = {
            "op": "set", "pubkey": str(pubkey), "lamports": account.lamports,
            "data": base64.b64encode(account.data).decode(), "owner": str(account.owner),
            "executable": account.executable,
        }
        self._commit(entry)

    # -- internals ------------------------------------------------------------------------

    def _commit(self, entry: dict[str, Any]) -> TxOutcome:
        entry = {**entry, "slot": self.slot + 1, "ts": int(time.time())}
        outcome = self._apply(entry)
        if self._log is not None:
            self._log.write(json.dumps(entry, separators=(",", ":")) + "\n")
            self._log.flush()
        return outcome

    def _advance(self, unix_ts: int) -> None:
        self.vm.warp_to_slot(self.slot)
        self.vm.set_clock(Clock(self.slot, 0, 0, 0, unix_ts))
        self.vm.expire_blockhash()
        self.blockhashes.append(str(self.vm.latest_blockhash()))

    def _apply(self, entry: dict[str, Any]) -> TxOutcome:
        self.slot = int(entry["slot"])
        self._advance(int(entry["ts"]))
        op = entry["op"]
        if op == "set":
            account = Account(
                entry["lamports"], base64.b64decode(entry["data"]),
                Pubkey.from_string(entry["owner"]), entry["executable"],
            )
            self.vm.set_account(Pubkey.from_string(entry["pubkey"]), account)
            return TxOutcome("", None, [], 0)
        if op == "airdrop":
            result = self.vm.airdrop(Pubkey.from_string(entry["pubkey"]), int(entry["lamports"]))
        else:
            result = self.vm.send_transaction(VersionedTransaction.from_bytes(base64.b64decode(entry["tx"])))
        return self._record(result)

    def _record(self, result: TransactionMetadata | FailedTransactionMetadata) -> TxOutcome:
        if isinstance(result, FailedTransactionMetadata):
            meta, err = result.meta(), error_json(result.err())
        else:
            meta, err = result, None
        signature = str(meta.signature())
        self.statuses[signature] = TxStatus(self.slot, err)
        return TxOutcome(signature, err, meta.logs(), meta.compute_units_consumed())

    def _replay(self, path: Path) -> None:
        """Apply every logged change; a torn last line (a crash mid-write) is cut off."""
        raw = path.read_bytes()
        lines = raw.split(b"\n")
        good = 0
        for number, line in enumerate(lines):
            if not line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                if number == len(lines) - 1:
                    with path.open("r+b") as log:
                        log.truncate(good)
                    return
                raise
            self._apply(entry)
            good += len(line) + 1
