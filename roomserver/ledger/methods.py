"""JSON-RPC methods of the local ledger, in the standard Solana wire formats.

`Methods.call(name, params)` returns the `result` value or raises `RpcError` carrying the
standard code and message. Every shape here is the one agave answers, so the unmodified
`solana` AsyncClient and solders' strict parsers accept it.

Non-standard, only when the ledger runs with `dev=True`:
    ledger_setAccount [pubkey, {"lamports", "data": [b64, "base64"], "owner", "executable"}]
writes a raw account (e.g. a Metaplex metadata account for tests) and answers null.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import base58
from solders.account import Account
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from roomserver.chain.spl_token import (
    MINT_SIZE,
    TOKEN_2022_PROGRAM,
    TOKEN_PROGRAMS,
    LayoutError,
    decode_account,
    decode_mint,
)
from roomserver.ledger.jsonparsed import parse_token_data, token_amount
from roomserver.ledger.state import Ledger, TxOutcome

VERSION = {"solana-core": "2.1.21", "feature-set": 1416569292}
RENT_EPOCH = 18446744073709551615
MAX_ACCOUNTS = 100
MAX_AIRDROP = 1_000 * 10**9


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            body["data"] = self.data
        return body


def invalid_params(message: str) -> RpcError:
    return RpcError(-32602, f"Invalid params: {message}")


def _pubkey(value: Any) -> Pubkey:
    if not isinstance(value, str) or not 32 <= len(value) <= 44:
        raise invalid_params("expected a base58 public key")
    try:
        return Pubkey.from_string(value)
    except ValueError as exc:
        raise RpcError(-32602, f"Invalid param: {value!r} is not a valid public key") from exc


def _param(params: list[Any], index: int, kind: type, default: Any = None) -> Any:
    if index >= len(params) or params[index] is None:
        if default is None and kind is not dict:
            raise invalid_params(f"missing parameter {index}")
        return default if default is not None else {}
    value = params[index]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise invalid_params(f"parameter {index} must be {kind.__name__}")
    return value


def _encoding(config: dict[str, Any]) -> str:
    encoding = config.get("encoding") or "base64"
    if encoding not in ("base64", "jsonParsed", "base58"):
        raise invalid_params(f"unsupported encoding {encoding!r}")
    return str(encoding)


class Methods:
    """The method table over one `Ledger`. `dev` enables the non-standard methods."""

    def __init__(self, ledger: Ledger, *, dev: bool = False):
        self.ledger, self.dev = ledger, dev
        self.table: dict[str, Callable[[list[Any]], Any]] = {
            "getHealth": lambda p: "ok",
            "getVersion": lambda p: VERSION,
            "getGenesisHash": lambda p: self.ledger.blockhashes[0],
            "getSlot": lambda p: self.ledger.slot,
            "getBlockHeight": lambda p: self.ledger.slot,
            "getLatestBlockhash": self.get_latest_blockhash,
            "isBlockhashValid": self.is_blockhash_valid,
            "getBalance": self.get_balance,
            "requestAirdrop": self.request_airdrop,
            "getMinimumBalanceForRentExemption": self.get_minimum_balance,
            "getAccountInfo": self.get_account_info,
            "getMultipleAccounts": self.get_multiple_accounts,
            "getProgramAccounts": self.get_program_accounts,
            "getTokenAccountsByOwner": self.get_token_accounts_by_owner,
            "getTokenAccountBalance": self.get_token_account_balance,
            "sendTransaction": self.send_transaction,
            "simulateTransaction": self.simulate_transaction,
            "getSignatureStatuses": self.get_signature_statuses,
        }
        if dev:
            self.table["ledger_setAccount"] = self.set_account

    def call(self, name: str, params: list[Any]) -> Any:
        handler = self.table.get(name)
        if handler is None:
            raise RpcError(-32601, "Method not found")
        return handler(params)

    def _context(self, value: Any) -> dict[str, Any]:
        return {"context": {"apiVersion": VERSION["solana-core"], "slot": self.ledger.slot}, "value": value}

    # -- chain ----------------------------------------------------------------------------

    def get_latest_blockhash(self, params: list[Any]) -> Any:
        value = {"blockhash": self.ledger.latest_blockhash, "lastValidBlockHeight": self.ledger.slot + 150}
        return self._context(value)

    def is_blockhash_valid(self, params: list[Any]) -> Any:
        return self._context(_param(params, 0, str) in self.ledger.blockhashes)

    def get_balance(self, params: list[Any]) -> Any:
        return self._context(self.ledger.vm.get_balance(_pubkey(_param(params, 0, str))) or 0)

    def get_minimum_balance(self, params: list[Any]) -> Any:
        size = _param(params, 0, int)
        if not 0 <= size <= 10 * 1024 * 1024:
            raise invalid_params("data length out of range")
        return self.ledger.vm.minimum_balance_for_rent_exemption(size)

    def request_airdrop(self, params: list[Any]) -> Any:
        pubkey, lamports = _pubkey(_param(params, 0, str)), _param(params, 1, int)
        if not 0 < lamports <= MAX_AIRDROP:
            raise invalid_params(f"airdrop amount must be 1..{MAX_AIRDROP} lamports")
        outcome = self.ledger.airdrop(pubkey, lamports)
        if outcome.err is not None:
            raise RpcError(-32603, f"airdrop failed: {outcome.err}")
        return outcome.signature

    # -- accounts -------------------------------------------------------------------------

    def _mint_decimals(self, mint: str) -> int | None:
        account = self.ledger.vm.get_account(Pubkey.from_string(mint))
        if account is None or str(account.owner) not in TOKEN_PROGRAMS:
            return None
        try:
            return decode_mint(account.data).decimals
        except LayoutError:
            return None

    def _account_json(self, account: Account | None, encoding: str, data_slice: Any = None) -> Any:
        if account is None or (account.lamports == 0 and not account.data):
            return None
        data = account.data
        owner = str(account.owner)
        encoded: Any = None
        if encoding == "jsonParsed":
            encoded = parse_token_data(owner, data, self._mint_decimals)
        if encoded is None:
            if isinstance(data_slice, dict):
                offset, length = int(data_slice.get("offset", 0)), int(data_slice.get("length", len(data)))
                data = data[offset : offset + length]
            if encoding == "base58":
                encoded = [base58.b58encode(data).decode(), "base58"]
            else:
                encoded = [base64.b64encode(data).decode(), "base64"]
        return {
            "data": encoded, "executable": account.executable, "lamports": account.lamports,
            "owner": owner, "rentEpoch": RENT_EPOCH, "space": len(account.data),
        }

    def get_account_info(self, params: list[Any]) -> Any:
        pubkey, config = _pubkey(_param(params, 0, str)), _param(params, 1, dict)
        account = self.ledger.vm.get_account(pubkey)
        return self._context(self._account_json(account, _encoding(config), config.get("dataSlice")))

    def get_multiple_accounts(self, params: list[Any]) -> Any:
        keys, config = _param(params, 0, list), _param(params, 1, dict)
        if len(keys) > MAX_ACCOUNTS:
            raise invalid_params(f"at most {MAX_ACCOUNTS} accounts per request")
        encoding = _encoding(config)
        accounts = [self.ledger.vm.get_account(_pubkey(k)) for k in keys]
        return self._context([self._account_json(a, encoding, config.get("dataSlice")) for a in accounts])

    def _keyed(self, items: list[tuple[Pubkey, Account]], encoding: str, data_slice: Any = None) -> list[Any]:
        return [{"pubkey": str(k), "account": self._account_json(a, encoding, data_slice)} for k, a in items]

    def get_program_accounts(self, params: list[Any]) -> Any:
        program, config = _pubkey(_param(params, 0, str)), _param(params, 1, dict)
        filters = config.get("filters") or []
        if not isinstance(filters, list) or len(filters) > 4:
            raise invalid_params("filters must be a list of at most 4 filters")
        items = [(k, a) for k, a in self.ledger.vm.get_program_accounts(program) if _matches(a.data, filters)]
        result = self._keyed(items, _encoding(config), config.get("dataSlice"))
        return self._context(result) if config.get("withContext") else result

    def get_token_accounts_by_owner(self, params: list[Any]) -> Any:
        owner, selector = _pubkey(_param(params, 0, str)), _param(params, 1, dict)
        config = _param(params, 2, dict)
        if "mint" in selector:
            mint = _pubkey(selector["mint"])
            mint_account = self.ledger.vm.get_account(mint)
            if mint_account is None or str(mint_account.owner) not in TOKEN_PROGRAMS:
                raise RpcError(-32602, "Invalid param: could not find mint")
            program, mint_filter = mint_account.owner, bytes(mint)
        elif "programId" in selector:
            program, mint_filter = _pubkey(selector["programId"]), None
            if str(program) not in TOKEN_PROGRAMS:
                raise RpcError(-32602, "Invalid param: unrecognized Token program id")
        else:
            raise invalid_params("expected a mint or programId filter")
        items = []
        for key, account in self.ledger.vm.get_program_accounts(program):
            data = account.data
            if len(data) < 165 or len(data) == MINT_SIZE or data[32:64] != bytes(owner):
                continue
            if len(data) > 165 and data[165] != 2:
                continue
            if mint_filter is None or data[:32] == mint_filter:
                items.append((key, account))
        return self._context(self._keyed(items, _encoding(config)))

    def get_token_account_balance(self, params: list[Any]) -> Any:
        account = self.ledger.vm.get_account(_pubkey(_param(params, 0, str)))
        if account is None or str(account.owner) not in TOKEN_PROGRAMS:
            raise RpcError(-32602, "Invalid param: could not find account")
        try:
            token = decode_account(account.data)
        except LayoutError as exc:
            raise RpcError(-32602, "Invalid param: not a Token account") from exc
        decimals = self._mint_decimals(token.mint)
        if decimals is None:
            raise RpcError(-32602, "Invalid param: could not find mint")
        return self._context(token_amount(token.amount, decimals))

    def set_account(self, params: list[Any]) -> Any:
        pubkey, spec = _pubkey(_param(params, 0, str)), _param(params, 1, dict)
        try:
            raw, encoding = spec["data"]
            if encoding != "base64":
                raise ValueError(encoding)
            account = Account(int(spec["lamports"]), base64.b64decode(raw, validate=True),
                              _pubkey(spec["owner"]), bool(spec.get("executable", False)))
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise invalid_params("expected {lamports, data: [base64, 'base64'], owner}") from exc
        self.ledger.set_account(pubkey, account)
        return None

    # -- transactions ---------------------------------------------------------------------

    def _decode_tx(self, params: list[Any]) -> tuple[VersionedTransaction, dict[str, Any]]:
        raw, config = _param(params, 0, str), _param(params, 1, dict)
        try:
            wire = base64.b64decode(raw, validate=True) if config.get("encoding") == "base64" else base58.b58decode(raw)
            return VersionedTransaction.from_bytes(wire), config
        except (ValueError, binascii.Error) as exc:
            raise invalid_params("failed to deserialize transaction") from exc

    def _preflight_error(self, outcome: TxOutcome) -> RpcError:
        data = {
            "accounts": None, "err": outcome.err, "innerInstructions": None, "logs": outcome.logs,
            "replacementBlockhash": None, "returnData": None, "unitsConsumed": outcome.units,
        }
        return RpcError(-32002, f"Transaction simulation failed: {outcome.err}", data)

    def send_transaction(self, params: list[Any]) -> Any:
        tx, config = self._decode_tx(params)
        signature = str(tx.signatures[0])
        preflight = not config.get("skipPreflight", False)
        failure: TxOutcome | None
        if str(tx.message.recent_blockhash) not in self.ledger.blockhashes:
            failure = TxOutcome(signature, "BlockhashNotFound", [], 0)
        elif signature in self.ledger.statuses:
            failure = TxOutcome(signature, "AlreadyProcessed", [], 0)
        else:
            failure = self.ledger.simulate(tx) if preflight else None
            if failure is None or failure.err is None:
                return self.ledger.send(tx).signature
        if preflight and failure is not None:
            raise self._preflight_error(failure)
        return signature  # without preflight a refused transaction is dropped, as a node does

    def simulate_transaction(self, params: list[Any]) -> Any:
        tx, _ = self._decode_tx(params)
        outcome = self.ledger.simulate(tx)
        return self._context({
            "accounts": None, "err": outcome.err, "innerInstructions": None, "logs": outcome.logs,
            "replacementBlockhash": None, "returnData": None, "unitsConsumed": outcome.units,
        })

    def get_signature_statuses(self, params: list[Any]) -> Any:
        signatures = _param(params, 0, list)
        if len(signatures) > 256:
            raise invalid_params("at most 256 signatures per request")
        values: list[dict[str, Any] | None] = []
        for sig in signatures:
            status = self.ledger.statuses.get(sig) if isinstance(sig, str) else None
            if status is None:
                values.append(None)
                continue
            values.append({
                "slot": status.slot, "confirmations": None, "err": status.err,
                "status": {"Ok": None} if status.err is None else {"Err": status.err},
                "confirmationStatus": "finalized",
            })
        return self._context(values)


def _matches(data: bytes, filters: list[Any]) -> bool:
    for f in filters:
        if not isinstance(f, dict):
            raise invalid_params("a filter must be an object")
        if "dataSize" in f:
            if len(data) != f["dataSize"]:
                return False
        elif "memcmp" in f:
            spec = f["memcmp"]
            try:
                offset = int(spec["offset"])
                raw = spec["bytes"]
                wanted = base64.b64decode(raw) if spec.get("encoding") == "base64" else base58.b58decode(raw)
            except (KeyError, TypeError, ValueError, binascii.Error) as exc:
                raise invalid_params("bad memcmp filter") from exc
            if data[offset : offset + len(wanted)] != wanted:
                return False
        elif "tokenAccountState" in f:
            if len(data) < 165:
                return False
        else:
            raise invalid_params(f"unknown filter {sorted(f)}")
    return True


__all__ = ["TOKEN_2022_PROGRAM", "Methods", "RpcError"]
