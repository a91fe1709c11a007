"""Property tests: SPL layouts round-trip, and the jsonParsed encoding states what the bytes hold."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from solders.pubkey import Pubkey

from roomserver.chain.spl_token import (
    TOKEN_2022_PROGRAM,
    TOKEN_PROGRAM,
    Extension,
    LayoutError,
    Mint,
    TokenAccount,
    decode_account,
    decode_mint,
    encode_account,
    encode_mint,
    ui_amount_string,
)
from roomserver.ledger.jsonparsed import parse_token_data

keys = st.binary(min_size=32, max_size=32).map(lambda b: str(Pubkey.from_bytes(b)))
nonzero_keys = keys.filter(lambda k: k != str(Pubkey.default()))
maybe_key = st.none() | nonzero_keys
u64 = st.integers(0, 2**64 - 1)
text = st.text(max_size=40)

mint_extensions = st.lists(st.one_of(
    st.builds(lambda a, m: Extension(18, {"authority": a, "metadataAddress": m}), maybe_key, maybe_key),
    st.builds(lambda a, g: Extension(20, {"authority": a, "groupAddress": g}), maybe_key, maybe_key),
    st.builds(lambda a, m: Extension(22, {"authority": a, "memberAddress": m}), maybe_key, maybe_key),
    st.builds(lambda u, m, n, s, r, extra: Extension(19, {
        "updateAuthority": u, "mint": m, "name": n, "symbol": s, "uri": r, "additionalMetadata": extra}),
        maybe_key, keys, text, text, text, st.lists(st.lists(text, min_size=2, max_size=2), max_size=3)),
    st.builds(lambda u, m, size, mx: Extension(21, {"updateAuthority": u, "mint": m, "size": size, "maxSize": mx}),
              maybe_key, keys, u64, u64),
    st.builds(lambda m, g, n: Extension(23, {"mint": m, "group": g, "memberNumber": n}), keys, keys, u64),
    st.builds(lambda c: Extension(3, {"closeAuthority": c}), maybe_key),
    st.just(Extension(9)),
), max_size=5).map(tuple)

mints = st.builds(Mint, maybe_key, u64, st.integers(0, 18), st.booleans(), maybe_key, mint_extensions)
accounts = st.builds(
    TokenAccount, keys, keys, u64, maybe_key, st.integers(1, 2), st.none() | u64, u64, maybe_key,
    st.sampled_from([(), (Extension(7),)]),
)


@given(mints)
def test_mint_round_trips(mint: Mint) -> None:
    assert decode_mint(encode_mint(mint)) == mint


@given(accounts)
def test_account_round_trips(account: TokenAccount) -> None:
    assert decode_account(encode_account(account)) == account


@given(mints)
def test_json_parsed_mint_states_the_fields(mint: Mint) -> None:
    program = TOKEN_2022_PROGRAM if mint.extensions else TOKEN_PROGRAM
    parsed = parse_token_data(program, encode_mint(mint), lambda m: None)
    assert parsed is not None and parsed["parsed"]["type"] == "mint"
    info = parsed["parsed"]["info"]
    assert info["supply"] == str(mint.supply) and info["decimals"] == mint.decimals
    assert (info["mintAuthority"], info["freezeAuthority"]) == (mint.mint_authority, mint.freeze_authority)
    if mint.extensions:
        assert [e["extension"] for e in info["extensions"]] == [e.name for e in mint.extensions]
        assert [e.get("state") for e in info["extensions"]] == [e.state for e in mint.extensions]


@given(accounts, st.integers(0, 18))
def test_json_parsed_account_amount_uses_the_mint_decimals(account: TokenAccount, decimals: int) -> None:
    parsed = parse_token_data(TOKEN_2022_PROGRAM, encode_account(account), lambda m: decimals)
    assert parsed is not None
    info = parsed["parsed"]["info"]
    assert (info["mint"], info["owner"]) == (account.mint, account.owner)
    amount = info["tokenAmount"]
    assert amount["amount"] == str(account.amount) and amount["decimals"] == decimals
    assert Decimal(amount["uiAmountString"]) == Decimal(account.amount).scaleb(-decimals)
    assert info["state"] == ("initialized", "frozen")[account.state - 1]
    assert info.get("delegate") == account.delegate


@given(u64, st.integers(0, 18))
def test_ui_amount_string_is_exact_and_trimmed(amount: int, decimals: int) -> None:
    text = ui_amount_string(amount, decimals)
    assert Decimal(text) == Decimal(amount).scaleb(-decimals)
    assert not text.endswith(".") and ("." not in text or not text.endswith("0"))


@settings(max_examples=200)
@given(mints, st.data())
def test_truncated_or_garbled_data_is_rejected_cleanly(mint: Mint, data: st.DataObject) -> None:
    raw = encode_mint(mint)
    cut = raw[: data.draw(st.integers(0, len(raw) - 1))]
    for blob in (cut, data.draw(st.binary(max_size=400))):
        for decode in (decode_mint, decode_account):
            try:
                decode(blob)
            except LayoutError:
                pass
        parsed = parse_token_data(TOKEN_2022_PROGRAM, blob, lambda m: 0)  # never raises
        assert parsed is None or parsed["space"] == len(blob)
