"""CIDv1 of raw blocks: reference vectors, agreement with `multiformats`, strict parsing."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multiformats import CID, multihash

from roomserver.errors import BadRequest
from roomserver.store.cid import CidHasher, cid_for_bytes, is_cid, parse_cid

# Well-known CIDs of raw blocks, as `ipfs add --cid-version=1 --raw-leaves` reports them.
EMPTY = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
HELLO_WORLD = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"


def reference(data: bytes) -> str:
    return str(CID("base32", 1, "raw", multihash.digest(data, "sha2-256")))


def test_fixed_vectors() -> None:
    assert cid_for_bytes(b"") == EMPTY
    assert cid_for_bytes(b"hello world") == HELLO_WORLD


@given(st.binary(max_size=2048))
def test_matches_multiformats_reference(data: bytes) -> None:
    assert cid_for_bytes(data) == reference(data)


@given(st.lists(st.binary(max_size=300), max_size=8))
def test_incremental_hasher_equals_one_shot(pieces: list[bytes]) -> None:
    hasher = CidHasher()
    for piece in pieces:
        hasher.update(piece)
    assert hasher.cid() == cid_for_bytes(b"".join(pieces))
    assert hasher.size == sum(map(len, pieces))


@given(st.binary(max_size=512))
def test_parse_round_trip(data: bytes) -> None:
    cid = cid_for_bytes(data)
    assert parse_cid(cid) == hashlib.sha256(data).digest()
    assert is_cid(cid)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        HELLO_WORLD.upper(),
        HELLO_WORLD[:-1],
        HELLO_WORLD + "a",
        "z" + HELLO_WORLD[1:],
        "QmWATWQ7fVPP2EFGu71UkfnqhYXDYH566qy47CnJDgvs8u",  # CIDv0 (dag-pb)
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",  # dag-pb CIDv1
        "../../etc/passwd",
        HELLO_WORLD[:-2] + "/x",
        HELLO_WORLD[:-1] + "f",  # non-zero trailing bits
    ],
)
def test_rejects_malformed(text: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_cid(text)
    assert info.value.code == "invalid_cid"
    assert not is_cid(text)


@given(st.text(max_size=80))
def test_arbitrary_text_is_rejected_or_canonical(text: str) -> None:
    if is_cid(text):
        assert reference_from_digest(parse_cid(text)) == text
    else:
        with pytest.raises(BadRequest):
            parse_cid(text)


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=58), st.sampled_from("a2z7=0"))
def test_single_character_mutations_never_parse_to_the_same_digest(
    data: bytes, position: int, char: str
) -> None:
    cid = cid_for_bytes(data)
    mutated = cid[:position] + char + cid[position + 1 :]
    if mutated == cid:
        return
    try:
        digest = parse_cid(mutated)
    except BadRequest:
        return
    assert digest != hashlib.sha256(data).digest()


def reference_from_digest(digest: bytes) -> str:
    return str(CID("base32", 1, "raw", multihash.wrap(digest, "sha2-256")))
