"""The standard `jsonParsed` encoding of SPL Token / Token-2022 mints and token accounts.

Matches the agave account decoder: `{"program": "spl-token" | "spl-token-2022",
"parsed": {"type": "mint" | "account", "info": {...}}, "space": n}`, Token-2022 extensions
as `{"extension": name, "state": {...}}`. `parse_token_data` returns None for data that is
not a token mint/account, so the caller falls back to base64 as a real node does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from roomserver.chain.spl_token import (
    ACCOUNT_SIZE,
    ACCOUNT_STATES,
    MINT_SIZE,
    TOKEN_2022_PROGRAM,
    TOKEN_PROGRAM,
    Extension,
    LayoutError,
    Mint,
    TokenAccount,
    decode_account,
    decode_mint,
    ui_amount_string,
)

PROGRAM_NAMES = {TOKEN_PROGRAM: "spl-token", TOKEN_2022_PROGRAM: "spl-token-2022"}


def token_amount(amount: int, decimals: int) -> dict[str, Any]:
    """The `tokenAmount` / getTokenAccountBalance value."""
    return {
        "amount": str(amount),
        "decimals": decimals,
        "uiAmount": amount / 10**decimals,
        "uiAmountString": ui_amount_string(amount, decimals),
    }


def extension_json(ext: Extension) -> dict[str, Any]:
    if ext.kind not in _KNOWN:
        return {"extension": "unparseableExtension"}
    if ext.state is None:
        return {"extension": ext.name}
    return {"extension": ext.name, "state": dict(ext.state)}


# Extensions whose state this module renders; others are reported as unparseable.
_KNOWN = {3, 6, 7, 9, 12, 13, 18, 19, 20, 21, 22, 23}


def mint_json(mint: Mint, token_2022: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "decimals": mint.decimals,
        "freezeAuthority": mint.freeze_authority,
        "isInitialized": mint.is_initialized,
        "mintAuthority": mint.mint_authority,
        "supply": str(mint.supply),
    }
    if token_2022:
        info["extensions"] = [extension_json(e) for e in mint.extensions]
    return {"type": "mint", "info": info}


def account_json(acc: TokenAccount, decimals: int, token_2022: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "isNative": acc.is_native is not None,
        "mint": acc.mint,
        "owner": acc.owner,
        "state": ACCOUNT_STATES[acc.state],
        "tokenAmount": token_amount(acc.amount, decimals),
    }
    if acc.delegate is not None:
        info["delegate"] = acc.delegate
        info["delegatedAmount"] = token_amount(acc.delegated_amount, decimals)
    if acc.is_native is not None:
        info["rentExemptReserve"] = token_amount(acc.is_native, decimals)
    if acc.close_authority is not None:
        info["closeAuthority"] = acc.close_authority
    if token_2022:
        info["extensions"] = [extension_json(e) for e in acc.extensions]
    return {"type": "account", "info": info}


def parse_token_data(
    owner: str, data: bytes, mint_decimals: Callable[[str], int | None]
) -> dict[str, Any] | None:
    """jsonParsed `data` for an account owned by a token program, or None.

    `mint_decimals(mint)` looks up a mint's decimals (None when the mint is missing: the
    account is then not parseable, as on a real node).
    """
    if owner not in PROGRAM_NAMES:
        return None
    is_2022 = owner == TOKEN_2022_PROGRAM
    try:
        if len(data) == MINT_SIZE or (is_2022 and len(data) > ACCOUNT_SIZE and data[ACCOUNT_SIZE] == 1):
            parsed = mint_json(decode_mint(data), is_2022)
        elif len(data) == ACCOUNT_SIZE or (is_2022 and len(data) > ACCOUNT_SIZE):
            acc = decode_account(data)
            decimals = mint_decimals(acc.mint)
            if decimals is None:
                return None
            parsed = account_json(acc, decimals, is_2022)
        else:
            return None
    except LayoutError:
        return None
    return {"program": PROGRAM_NAMES[owner], "parsed": parsed, "space": len(data)}
