"""Sign-In-With-Solana: message text, strict parsing, transport decoding and verification."""

from __future__ import annotations

import base64
import string
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import base58
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import VerifyKey

from roomserver import errors
from roomserver.identity import siws
from roomserver.identity.siws import Expected, SignInInput, SiwsError
from tests.wallet import Wallet

NOW = datetime(2026, 11, 22, 1, 0, 0, tzinfo=UTC)
DOMAIN = "127.0.0.1:8000"
ORIGIN = "http://127.0.0.1:8000"
NONCE = "k3Jd9sPq2xYvB7nLm4Tz0a"
ALICE = Wallet.from_seed(b"a" * 32)
BOB = Wallet.from_seed(b"b" * 32)


def challenge_input(**overrides: Any) -> dict[str, Any]:
    """What the server's challenge hands a wallet (wallet-standard names)."""
    body: dict[str, Any] = {
        "domain": DOMAIN,
        "statement": "Sign in to roomserver",
        "uri": ORIGIN,
        "version": "1",
        "chainId": "localnet",
        "nonce": NONCE,
        "issuedAt": siws.format_timestamp(NOW),
        "expirationTime": siws.format_timestamp(NOW + timedelta(minutes=10)),
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def expected(**overrides: Any) -> Expected:
    values: dict[str, Any] = {
        "domain": DOMAIN,
        "uri_origin": ORIGIN,
        "chain_id": "localnet",
        "nonce": NONCE,
        "now": NOW,
    }
    values.update(overrides)
    return Expected(**values)


def refusal(message: bytes, signature: bytes, public_key: bytes, exp: Expected) -> str:
    with pytest.raises(SiwsError) as info:
        siws.verify(message, signature, public_key, exp)
    assert info.value.code == info.value.reason
    return info.value.reason


def signed_text(text: str, wallet: Wallet = ALICE) -> tuple[bytes, bytes, bytes]:
    message = text.encode("utf-8")
    return message, wallet.sign(message), wallet.public_key


def alice_text(**overrides: Any) -> str:
    return siws.build_message(
        SignInInput.from_json(challenge_input(address=ALICE.address, **overrides))
    )


# --- the happy path -----------------------------------------------------------------


def test_wallet_sign_in_over_the_wire_passes_verification() -> None:
    payload = ALICE.verify_payload({"nonce": NONCE, "input": challenge_input()})
    message = siws.decode_message(payload["message"])
    fields = siws.verify(
        message,
        siws.decode_signature(payload["signature"]),
        siws.decode_public_key(payload["public_key"]),
        expected(address=ALICE.address),
    )
    assert fields.address == ALICE.address
    assert fields.nonce == NONCE
    assert siws.extract_nonce(message) == NONCE


def test_message_text_is_the_wallet_standard_layout() -> None:
    message, _ = ALICE.sign_in(challenge_input())
    assert message.decode() == (
        "127.0.0.1:8000 wants you to sign in with your Solana account:\n"
        f"{ALICE.address}\n"
        "\n"
        "Sign in to roomserver\n"
        "\n"
        "URI: http://127.0.0.1:8000\n"
        "Version: 1\n"
        "Chain ID: localnet\n"
        f"Nonce: {NONCE}\n"
        "Issued At: 2026-11-22T01:00:00.000Z\n"
        "Expiration Time: 2026-11-22T01:10:00.000Z"
    )


# The test vectors of @solana/wallet-standard-util's createSignInMessageText and
# parseSignInMessageText (packages/core/util/src/__tests__/signIn.ts).
REFERENCE_VECTORS = [
    (
        {"domain": "solana.com", "address": "A"},
        "solana.com wants you to sign in with your Solana account:\nA",
    ),
    (
        {"domain": "solana.com", "address": "A", "statement": "S"},
        "solana.com wants you to sign in with your Solana account:\nA\n\nS",
    ),
    (
        {"domain": "solana.com", "address": "A", "uri": "https://solana.com"},
        "solana.com wants you to sign in with your Solana account:\nA\n\nURI: https://solana.com",
    ),
    (
        {"domain": "solana.com", "address": "A", "statement": "S", "uri": "https://solana.com"},
        "solana.com wants you to sign in with your Solana account:\nA\n\nS\n\nURI: https://solana.com",
    ),
]


@pytest.mark.parametrize(("fields", "text"), REFERENCE_VECTORS)
def test_reference_vectors_build_and_parse(fields: dict[str, str], text: str) -> None:
    assert siws.build_message(SignInInput.from_json(fields)) == text
    assert siws.parse_message(text).to_json() == fields


def test_multi_line_statement_of_the_reference_is_refused() -> None:
    # The JS parser accepts 'S\n\nS'; we refuse newlines inside any field.
    text = "solana.com wants you to sign in with your Solana account:\nA\n\nS\n\nS\n\nURI: https://solana.com"
    with pytest.raises(SiwsError, match="unexpected"):
        siws.parse_message(text)
    with pytest.raises(SiwsError) as info:
        siws.build_message(SignInInput(domain="solana.com", address="A", statement="S\n\nS"))
    assert info.value.reason == "malformed"


def test_every_field_in_order_with_resources() -> None:
    fields = SignInInput(
        domain="example.com",
        address=ALICE.address,
        statement="Hi",
        uri="https://example.com/login",
        version="1",
        chain_id="solana:devnet",
        nonce="abcdEFGH1234",
        issued_at="2026-11-22T01:00:00.000Z",
        expiration_time="2026-11-22T02:00:00+01:00",
        not_before="2026-11-22T00:59:00Z",
        request_id="req-1",
        resources=("https://a.example/1", "ipfs://bafy"),
    )
    text = siws.build_message(fields)
    assert text.endswith(
        "\n\nURI: https://example.com/login\nVersion: 1\nChain ID: solana:devnet\n"
        "Nonce: abcdEFGH1234\nIssued At: 2026-11-22T01:00:00.000Z\n"
        "Expiration Time: 2026-11-22T02:00:00+01:00\nNot Before: 2026-11-22T00:59:00Z\n"
        "Request ID: req-1\nResources:\n- https://a.example/1\n- ipfs://bafy"
    )
    assert siws.parse_message(text) == fields


def test_bare_resources_line_differs_from_no_resources() -> None:
    with_empty = SignInInput(domain="a.b", address="A", resources=())
    assert siws.build_message(with_empty).endswith("\n\nResources:")
    assert siws.parse_message(siws.build_message(with_empty)) == with_empty


# --- refusals, each with its reason ---------------------------------------------------


def test_wrong_domain() -> None:
    assert refusal(*signed_text(alice_text(domain="evil.example")), expected()) == "domain_mismatch"


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:8001",
        "https://127.0.0.1:8000",
        "http://localhost:8000",
        "http://127.0.0.1:8000@evil.example",
        "urn:example",
        "http://[::1",
    ],
)
def test_wrong_uri(uri: str) -> None:
    assert refusal(*signed_text(alice_text(uri=uri)), expected()) == "domain_mismatch"


def test_uri_with_a_path_on_the_same_origin_passes() -> None:
    siws.verify(*signed_text(alice_text(uri="HTTP://127.0.0.1:8000/login?x=1")), expected())


def test_wrong_chain() -> None:
    assert refusal(*signed_text(alice_text(chainId="devnet")), expected()) == "chain_mismatch"
    assert (
        refusal(*signed_text(alice_text(chainId="solana:mainnet")), expected()) == "chain_mismatch"
    )


@pytest.mark.parametrize(
    ("in_message", "configured"), [("solana:localnet", "localnet"), ("localnet", "solana:localnet")]
)
def test_chain_prefix_forms_are_equal(in_message: str, configured: str) -> None:
    siws.verify(*signed_text(alice_text(chainId=in_message)), expected(chain_id=configured))


def test_expired() -> None:
    text = alice_text(expirationTime="2026-11-22T00:59:59.999Z")
    assert refusal(*signed_text(text), expected()) == "expired"
    at_expiry = alice_text(expirationTime=siws.format_timestamp(NOW))
    assert refusal(*signed_text(at_expiry), expected()) == "expired"


def test_not_yet_valid() -> None:
    text = alice_text(notBefore="2026-11-22T01:00:01.000Z")
    assert refusal(*signed_text(text), expected()) == "not_yet_valid"
    siws.verify(*signed_text(alice_text(notBefore="2026-11-22T01:00:00.000Z")), expected())


def test_issued_at_11_minutes_old_is_expired_9_minutes_passes() -> None:
    old = alice_text(issuedAt=siws.format_timestamp(NOW - timedelta(minutes=11)))
    assert refusal(*signed_text(old), expected()) == "expired"
    recent = alice_text(issuedAt=siws.format_timestamp(NOW - timedelta(minutes=9)))
    siws.verify(*signed_text(recent), expected())


def test_issued_at_11_minutes_ahead_is_not_yet_valid() -> None:
    ahead = alice_text(issuedAt=siws.format_timestamp(NOW + timedelta(minutes=11)))
    assert refusal(*signed_text(ahead), expected()) == "not_yet_valid"


def test_issued_at_with_an_offset_is_the_same_instant() -> None:
    text = alice_text(issuedAt="2026-11-22T03:00:00.000+02:00")
    siws.verify(*signed_text(text), expected())


def test_message_naming_wallet_a_signed_by_key_b() -> None:
    message, signature, public_key = signed_text(alice_text(), wallet=BOB)
    VerifyKey(public_key).verify(message, signature)  # a genuine signature by B
    assert refusal(message, signature, public_key, expected()) == "address_mismatch"


def test_challenge_issued_to_another_wallet() -> None:
    assert refusal(*signed_text(alice_text()), expected(address=BOB.address)) == "address_mismatch"


def test_signature_checked_against_the_wrong_key() -> None:
    message, signature, _ = signed_text(alice_text(), wallet=ALICE)
    assert refusal(message, signature, BOB.public_key, expected()) == "signature_invalid"


def test_tampered_message_or_signature() -> None:
    message, signature, key = signed_text(alice_text())
    assert (
        refusal(message.replace(b"8000", b"8001"), signature, key, expected())
        == "signature_invalid"
    )
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert refusal(message, flipped, key, expected()) == "signature_invalid"


def test_signature_is_checked_before_anything_else() -> None:
    message, _, key = signed_text(alice_text(domain="evil.example"))
    assert refusal(message, b"\x00" * 64, key, expected()) == "signature_invalid"


def test_wrong_nonce() -> None:
    assert refusal(*signed_text(alice_text(nonce="OtherNonce123")), expected()) == "nonce_unknown"


@pytest.mark.parametrize("suffix", [b"\n", b"\n\n", b" ", b"\x00", b"\nEvil: yes"])
def test_extra_trailing_bytes(suffix: bytes) -> None:
    text = alice_text()
    assert refusal(*signed_text(text + suffix.decode()), expected()) == "malformed"


def test_newline_inside_a_field() -> None:
    injected = alice_text().replace("Sign in to", "Sign in\nURI: http://evil.example\nto")
    assert refusal(*signed_text(injected), expected()) == "malformed"
    injected = alice_text().replace("Version: 1", "Version: 1\nURI: http://evil.example")
    assert refusal(*signed_text(injected), expected()) == "malformed"
    with pytest.raises(SiwsError):
        ALICE.sign_in(challenge_input(requestId="a\nb"))


def test_crlf_line_endings() -> None:
    assert refusal(*signed_text(alice_text().replace("\n", "\r\n")), expected()) == "malformed"


def test_missing_address_line() -> None:
    text = alice_text().replace(f"{ALICE.address}\n", "", 1)
    assert refusal(*signed_text(text), expected()) == "malformed"
    header_only = f"{DOMAIN} wants you to sign in with your Solana account:"
    assert refusal(*signed_text(header_only), expected()) == "malformed"


def test_non_utf8_message() -> None:
    message = alice_text().encode() + b"\xff"
    assert refusal(message, ALICE.sign(message), ALICE.public_key, expected()) == "malformed"


@pytest.mark.parametrize("field", ["uri", "chainId", "nonce", "issuedAt"])
def test_required_fields_missing(field: str) -> None:
    text = alice_text(**{field: None})
    assert refusal(*signed_text(text), expected()) == "malformed"


def test_fields_out_of_order_or_repeated() -> None:
    swapped = alice_text().replace(
        "Version: 1\nChain ID: localnet", "Chain ID: localnet\nVersion: 1"
    )
    assert refusal(*signed_text(swapped), expected()) == "malformed"
    twice = alice_text().replace("Version: 1", "Version: 1\nVersion: 1")
    assert refusal(*signed_text(twice), expected()) == "malformed"


def test_oversized_message_is_refused_before_signature_work() -> None:
    message = b"x" * (siws.MAX_MESSAGE_BYTES + 1)
    assert refusal(message, ALICE.sign(message), ALICE.public_key, expected()) == "malformed"


def test_bad_lengths_of_key_and_signature() -> None:
    message, signature, key = signed_text(alice_text())
    assert refusal(message, signature[:63], key, expected()) == "malformed"
    assert refusal(message, signature, key + b"\x00", expected()) == "malformed"


def test_bounded_fields_and_hidden_characters() -> None:
    for bad in ["x" * (siws.MAX_STATEMENT + 1), "pay\u202eevil", "a\u2028b", "tab\there"]:
        with pytest.raises(SiwsError):
            siws.build_message(SignInInput(domain="a.b", address="A", statement=bad))


def test_siws_error_is_a_401_with_the_reason_as_code() -> None:
    err = SiwsError("nonce_used")
    assert isinstance(err, errors.Unauthorized)
    assert err.status == 401
    assert err.to_body()["error"]["code"] == "nonce_used"
    with pytest.raises(ValueError):
        SiwsError("not_a_reason")


# --- transport decoding, nonces, timestamps, wallet ------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, 5, "", "0OIl" * 11, " " + ALICE.address, ALICE.address[:-4], ALICE.address + "11"],
)
def test_decode_public_key_refuses_bad_input(value: object) -> None:
    with pytest.raises(SiwsError) as info:
        siws.decode_public_key(value)
    assert info.value.reason == "malformed"


def test_decoders_accept_what_the_wallet_sends() -> None:
    message, signature = ALICE.sign_in(challenge_input())
    payload = ALICE.payload(message, signature)
    assert siws.decode_public_key(payload["public_key"]) == ALICE.public_key
    assert siws.decode_signature(payload["signature"]) == signature
    assert siws.decode_message(payload["message"]) == message
    with pytest.raises(SiwsError):
        siws.decode_signature(payload["public_key"])


@pytest.mark.parametrize("value", [None, "", "not base64!", "YQ", "a" * 20000, {"0": 1}])
def test_decode_message_refuses_bad_input(value: object) -> None:
    with pytest.raises(SiwsError) as info:
        siws.decode_message(value)
    assert info.value.reason == "malformed"


def test_extract_nonce() -> None:
    assert siws.extract_nonce(alice_text().encode()) == NONCE
    for bad in [alice_text(nonce=None).encode(), b"\xff", b"hello"]:
        with pytest.raises(SiwsError):
            siws.extract_nonce(bad)


def test_new_nonces_are_alphanumeric_and_distinct() -> None:
    nonces = {siws.new_nonce() for _ in range(500)}
    assert len(nonces) == 500
    for nonce in nonces:
        assert len(nonce) >= 8 and set(nonce) <= set(string.ascii_letters + string.digits)


def test_timestamps() -> None:
    assert (
        siws.format_timestamp(datetime(2026, 1, 2, 3, 4, 5, 678999, tzinfo=UTC))
        == "2026-01-02T03:04:05.678Z"
    )
    eastern = datetime(2026, 1, 2, 3, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert siws.format_timestamp(eastern) == "2026-01-02T08:00:00.000Z"
    assert siws.parse_timestamp("2026-01-02T08:00:00-00:30") == datetime(
        2026, 1, 2, 8, 30, tzinfo=UTC
    )
    assert siws.parse_timestamp("2026-01-02T08:00:00.123456789Z").microsecond == 123456
    for bad in [
        "2026-01-02T08:00:00",
        "2026-01-02",
        "2026-13-02T08:00:00Z",
        "2026-01-02t08:00:00z",
        "٢٠٢٦-01-02T08:00:00Z",
    ]:
        with pytest.raises(SiwsError):
            siws.parse_timestamp(bad)


def test_wallet_fills_in_its_address_and_refuses_another() -> None:
    message, _ = BOB.sign_in(challenge_input())
    assert siws.parse_message(message.decode()).address == BOB.address
    with pytest.raises(SiwsError) as info:
        BOB.sign_in(challenge_input(address=ALICE.address))
    assert info.value.reason == "address_mismatch"


def test_sign_message_payload_of_the_challenge_text_verifies() -> None:
    text = alice_text()
    payload = ALICE.sign_message_payload(text)
    siws.verify(
        siws.decode_message(payload["message"]),
        siws.decode_signature(payload["signature"]),
        siws.decode_public_key(payload["public_key"]),
        expected(),
    )


def test_from_json_refuses_wrong_types() -> None:
    for bad in [
        [],
        {"domain": 1},
        {},
        {"domain": "a.b", "resources": "x"},
        {"domain": "a.b", "nonce": ["x"]},
    ]:
        with pytest.raises(SiwsError):
            SignInInput.from_json(bad)


# --- properties ---------------------------------------------------------------------

_LABELS = (
    "URI: ",
    "Version: ",
    "Chain ID: ",
    "Nonce: ",
    "Issued At: ",
    "Expiration Time: ",
    "Not Before: ",
    "Request ID: ",
    "Resources:",
)
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_line = st.text(
    st.characters(blacklist_categories=("Cc", "Cf", "Zl", "Zp", "Cs")), min_size=1, max_size=60
).filter(lambda s: not s.startswith(_LABELS))
_token = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)
_timestamps = st.builds(
    lambda moment, minutes, style: (
        siws.format_timestamp(moment)
        if style
        else moment.astimezone(timezone(timedelta(minutes=minutes))).isoformat()
    ),
    st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    st.integers(-23 * 60, 23 * 60),
    st.booleans(),
)
_inputs = st.builds(
    SignInInput,
    domain=st.from_regex(r"[a-z0-9\-]{1,20}(\.[a-z]{2,6})?(:[0-9]{1,5})?", fullmatch=True),
    address=st.text(st.sampled_from(_B58), min_size=32, max_size=44),
    statement=st.none() | _line,
    uri=st.none() | _token.map(lambda s: "https://" + s),
    version=st.sampled_from([None, "1"]),
    chain_id=st.sampled_from([None, "mainnet", "devnet", "testnet", "localnet", "solana:devnet"]),
    nonce=st.none()
    | st.text(st.sampled_from(string.ascii_letters + string.digits), min_size=8, max_size=40),
    issued_at=st.none() | _timestamps,
    expiration_time=st.none() | _timestamps,
    not_before=st.none() | _timestamps,
    request_id=st.none() | _line,
    resources=st.none() | st.lists(_line, max_size=4).map(tuple),
)


@given(_inputs)
def test_build_then_parse_is_lossless(fields: SignInInput) -> None:
    text = siws.build_message(fields)
    assert siws.parse_message(text) == fields
    assert SignInInput.from_json(fields.to_json()) == fields


@given(
    _inputs,
    st.integers(0, 10_000),
    st.sampled_from(["\n", "\r", "\n\n", " ", "x", "- a", "\u2028"]),
)
def test_an_insertion_either_parses_back_to_itself_or_is_malformed(
    fields: SignInInput, at: int, insert: str
) -> None:
    text = siws.build_message(fields)
    at %= len(text) + 1
    mutated = text[:at] + insert + text[at:]
    try:
        parsed = siws.parse_message(mutated)
    except SiwsError as err:
        assert err.reason == "malformed"
    else:
        assert siws.build_message(parsed) == mutated


@given(st.text(max_size=400))
def test_arbitrary_text_parses_losslessly_or_is_malformed(text: str) -> None:
    try:
        parsed = siws.parse_message(text)
    except SiwsError as err:
        assert err.reason == "malformed"
    else:
        assert siws.build_message(parsed) == text


@settings(max_examples=200)
@given(
    st.binary(max_size=600), st.binary(min_size=0, max_size=70), st.binary(min_size=0, max_size=40)
)
def test_arbitrary_bytes_only_ever_raise_siws_errors(
    message: bytes, signature: bytes, key: bytes
) -> None:
    for call in (
        lambda: siws.verify(message, signature, key, expected()),
        lambda: siws.verify(message, ALICE.sign(message), ALICE.public_key, expected()),
        lambda: siws.extract_nonce(message),
        lambda: siws.decode_message(message.decode("latin-1")),
        lambda: siws.decode_signature(message.decode("latin-1")),
        lambda: siws.decode_public_key(base58.b58encode(key).decode()),
    ):
        try:
            call()
        except SiwsError:
            pass


@given(st.binary(min_size=1, max_size=siws.MAX_MESSAGE_BYTES))
def test_base64_message_round_trip(message: bytes) -> None:
    assert siws.decode_message(base64.b64encode(message).decode()) == message


def test_a_valid_input_changed_in_one_field_keeps_its_signature_invalid() -> None:
    message, signature = ALICE.sign_in(challenge_input())
    other = siws.build_message(
        replace(siws.parse_message(message.decode()), nonce="ZZZZZZZZZZ")
    ).encode()
    assert refusal(other, signature, ALICE.public_key, expected()) == "signature_invalid"


@pytest.mark.parametrize(
    ("issued_at", "reason"),
    [
        ("0001-01-01T00:00:00+01:00", "expired"),
        ("9999-12-31T23:59:59.999999999-23:59", "not_yet_valid"),
    ],
)
def test_extreme_issued_at_is_refused_not_crashed(issued_at: str, reason: str) -> None:
    assert refusal(*signed_text(alice_text(issuedAt=issued_at)), expected()) == reason


def test_a_statement_that_looks_like_a_field_cannot_be_built() -> None:
    # Without this rule 'URI: x' as a statement and as a field would be the same text.
    with pytest.raises(SiwsError):
        siws.build_message(
            SignInInput(domain="a.b", address="A", statement="URI: http://evil.example")
        )
    assert (
        siws.parse_message("a.b wants you to sign in with your Solana account:\nA\n\nURI: x").uri
        == "x"
    )
