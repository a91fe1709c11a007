"""Server keys (generated once, never printed, refused when malformed) and the highlight card
(escaped SVG, deterministic metadata)."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest
from solders.keypair import Keypair

from roomserver.chain.keys import KeyFileError, load_key, load_server_keys
from roomserver.nft import card as nft_card


def test_server_keys_are_generated_once_for_the_local_ledger_and_never_printed(tmp_path: Path) -> None:
    first = load_server_keys("", "", tmp_path, local_ledger=True)
    again = load_server_keys("", "", tmp_path, local_ledger=True)
    assert first is not None and again is not None
    assert first.fee_payer.pubkey == again.fee_payer.pubkey != first.collection_authority.pubkey
    secret_file = tmp_path / "keys" / "fee-payer.json"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert Keypair.from_bytes(bytes(json.loads(secret_file.read_text()))).pubkey() == first.fee_payer.pubkey
    shown = f"{first!r} {first.fee_payer} {first.collection_authority!r}"
    assert str(first.fee_payer.pubkey) in shown and str(first.collection_authority.pubkey) in shown
    for key in (first.fee_payer, first.collection_authority):
        assert str(key.keypair()) not in shown  # base58 of the 64-byte secret
    assert load_server_keys("", "", tmp_path / "elsewhere", local_ledger=False) is None


def test_a_configured_keypair_file_must_be_a_keypair(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"secret": "sk-not-a-keypair"}')
    with pytest.raises(KeyFileError) as raised:
        load_key("fee payer", str(bad), tmp_path / "unused.json", may_generate=True)
    assert "sk-not-a-keypair" not in str(raised.value)
    with pytest.raises(KeyFileError):
        load_key("fee payer", str(tmp_path / "missing.json"), tmp_path / "unused.json", may_generate=True)


def test_the_card_escapes_user_text_and_metadata_is_deterministic() -> None:
    facts = nft_card.HighlightFacts(
        highlight_id="h1", text='</text><script>alert("x")</script> & \x00\x07 "quoted"', context_before="",
        context_after="", page=None, document_id="d1", document_title="<b>Title</b>", room_id="r1",
        room_name="Room & co", author_wallet="W")
    svg = nft_card.highlight_svg(facts)
    card = ElementTree.fromstring(svg)  # well-formed XML: nothing escaped the text nodes
    assert not [e for e in card.iter() if e.tag.endswith("script")]
    texts = " ".join("".join(e.itertext()) for e in card)
    assert '<script>alert("x")</script> &' in texts and "<b>Title</b>" in texts
    image = "http://rooms.test/ipfs/img"
    assert nft_card.highlight_metadata(facts, image) == nft_card.highlight_metadata(facts, image)
    meta = json.loads(nft_card.highlight_metadata(facts, image))
    assert "Page" not in {a["trait_type"] for a in meta["attributes"]}
    assert len(meta["name"]) <= nft_card.MAX_NAME_CHARS
