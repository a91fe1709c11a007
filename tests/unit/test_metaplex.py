"""Property tests for the Metaplex metadata reader."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from solders.pubkey import Pubkey

from roomserver.chain.metaplex import (
    PROGRAM_ID,
    Collection,
    Creator,
    Metadata,
    MetadataError,
    encode_metadata,
    metadata_address,
    parse_metadata,
)

keys = st.binary(min_size=32, max_size=32).map(lambda b: str(Pubkey.from_bytes(b)))
# on chain, strings are NUL-padded and the reader strips trailing NULs
text = st.text(max_size=40).map(lambda s: s.rstrip("\x00"))
opt_u8 = st.none() | st.integers(0, 255)

metadata = st.builds(
    Metadata, keys, keys, text, text, text, st.integers(0, 65535),
    st.none() | st.lists(st.builds(Creator, keys, st.booleans(), st.integers(0, 100)), max_size=5).map(tuple),
    st.booleans(), st.booleans(), opt_u8, opt_u8, st.none() | st.builds(Collection, st.booleans(), keys),
)


@given(metadata)
def test_round_trip(meta: Metadata) -> None:
    assert parse_metadata(encode_metadata(meta)) == meta


@given(metadata, st.data())
def test_truncated_data_is_rejected_cleanly(meta: Metadata, data: st.DataObject) -> None:
    raw = encode_metadata(meta)
    # cutting anywhere before the end of the collection field (the trailing 3 bytes are
    # the later optional fields) is a truncation, except exactly after `is_mutable`
    cut = data.draw(st.integers(0, len(raw) - 4))
    try:
        parsed = parse_metadata(raw[:cut])
    except MetadataError:
        return
    assert parsed.collection is None and parsed.edition_nonce is None  # an old-style account


@given(st.binary(max_size=700))
def test_arbitrary_bytes_raise_only_metadata_error(blob: bytes) -> None:
    try:
        parse_metadata(blob)
    except MetadataError:
        pass


def test_nul_padded_strings_are_trimmed() -> None:
    meta = Metadata(str(Pubkey.default()), str(PROGRAM_ID), "Pass\x00\x00\x00", "P\x00", "u\x00")
    assert parse_metadata(encode_metadata(meta)).name == "Pass"


def test_metadata_address_is_a_per_mint_pda() -> None:
    a = metadata_address(Pubkey.from_string("So11111111111111111111111111111111111111112"))
    b = metadata_address(Pubkey.default())
    assert a != b and not a.is_on_curve() and not b.is_on_curve()


def test_wrong_key_byte_is_refused() -> None:
    with pytest.raises(MetadataError):
        parse_metadata(b"\x05" + bytes(100))
