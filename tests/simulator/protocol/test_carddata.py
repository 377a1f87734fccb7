"""Card data sealed for the processor: AES-GCM, bound to the transaction."""

from __future__ import annotations

import base64
import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.protocol.carddata import (
    NONCE_SIZE,
    SCHEME,
    CardDataError,
    SensitiveCardData,
    associated_data,
    key_id_of,
    mask_pan,
    open_sealed,
    seal,
)

KEY = bytes.fromhex("6ac292faa1315b4d858ab3a3d7d5933a")
OTHER_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
PAN = "4242424242424242"
DATA = SensitiveCardData(pan=PAN, expiry="2912", pan_sequence="01")
AAD = associated_data("T-0001", 4250, "EUR")


def fixed_bytes(n: int) -> bytes:
    return bytes(range(0xA0, 0xA0 + n))


def sealed() -> dict[str, str]:
    return seal(KEY, "SIM0001", DATA, AAD, fixed_bytes)


def test_associated_data_binds_identifier_amount_and_currency() -> None:
    assert AAD == b"T-0001|4250|EUR"
    assert associated_data("T-0001", 4251, "EUR") != AAD


def test_seal_then_open_round_trip() -> None:
    blob = sealed()
    assert open_sealed(KEY, blob, AAD) == DATA


def test_wire_form() -> None:
    blob = sealed()
    assert set(blob) == {"scheme", "key_id", "nonce", "ciphertext"}
    assert blob["scheme"] == SCHEME == "AESGCM-TK1"
    assert blob["key_id"] == key_id_of(blob) == "SIM0001"
    assert base64.b64decode(blob["nonce"]) == fixed_bytes(NONCE_SIZE)
    assert len(base64.b64decode(blob["nonce"])) == 12
    assert all(isinstance(value, str) for value in blob.values())


def test_fresh_nonce_per_seal_with_the_default_random_source() -> None:
    first = seal(KEY, "SIM0001", DATA, AAD)
    second = seal(KEY, "SIM0001", DATA, AAD)
    assert first["nonce"] != second["nonce"]
    assert first["ciphertext"] != second["ciphertext"]
    assert open_sealed(KEY, first, AAD) == open_sealed(KEY, second, AAD) == DATA


def test_pan_and_expiry_do_not_appear_in_the_sealed_blob() -> None:
    text = json.dumps(sealed())
    assert PAN not in text
    assert PAN[:6] not in text
    assert "2912" not in text


def test_repr_masks_the_pan_and_hides_the_expiry() -> None:
    text = repr(DATA)
    assert PAN not in text
    assert "2912" not in text
    assert text.count("4242") == 1  # the last four only
    assert str(DATA) == text


def flip_byte(b64: str, index: int = 0) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def with_(**changes: object) -> dict[str, object]:
    blob: dict[str, object] = dict(sealed())
    blob.update(changes)
    return {k: v for k, v in blob.items() if v is not None}


DEFECTS: dict[str, tuple[bytes, object, bytes, str]] = {
    "wrong key": (OTHER_KEY, sealed(), AAD, "does not authenticate"),
    "tampered ciphertext": (
        KEY,
        with_(ciphertext=flip_byte(sealed()["ciphertext"])),
        AAD,
        "does not authenticate",
    ),
    "tampered tag": (
        KEY,
        with_(ciphertext=flip_byte(sealed()["ciphertext"], -1)),
        AAD,
        "does not authenticate",
    ),
    "tampered nonce": (KEY, with_(nonce=flip_byte(sealed()["nonce"])), AAD, "authenticate"),
    "amount changed": (KEY, sealed(), associated_data("T-0001", 4251, "EUR"), "authenticate"),
    "other transaction": (KEY, sealed(), associated_data("T-0002", 4250, "EUR"), "authenticate"),
    "currency changed": (KEY, sealed(), associated_data("T-0001", 4250, "USD"), "authenticate"),
    "truncated ciphertext": (KEY, with_(ciphertext=""), AAD, "authenticate"),
    "bad base64": (KEY, with_(ciphertext="not base64!"), AAD, "not base64"),
    "missing nonce": (KEY, with_(nonce=None), AAD, "missing"),
    "short nonce": (KEY, with_(nonce=base64.b64encode(b"123").decode()), AAD, "wrong size"),
    "wrong scheme": (KEY, with_(scheme="DUKPT-AES"), AAD, "unsupported card_data scheme"),
    "no scheme": (KEY, with_(scheme=None), AAD, "unsupported card_data scheme"),
    "not an object": (KEY, ["AESGCM-TK1"], AAD, "must be an object"),
}


@pytest.mark.parametrize(("key", "blob", "aad", "reason"), DEFECTS.values(), ids=DEFECTS.keys())
def test_defects_raise_card_data_error(key: bytes, blob: object, aad: bytes, reason: str) -> None:
    with pytest.raises(CardDataError, match=reason):
        open_sealed(key, blob, aad)


@pytest.mark.parametrize("blob", [{}, {"key_id": 7}, "SIM0001", None])
def test_key_id_of_refuses_blobs_without_a_key_id(blob: object) -> None:
    with pytest.raises(CardDataError, match="no key_id"):
        key_id_of(blob)


@pytest.mark.parametrize(
    "pan", ["4242424242424242", "5555555555554444", "378282246310005", "4000000000000002"]
)
def test_mask_pan_keeps_only_the_last_four_digits(pan: str) -> None:
    masked = mask_pan(pan)
    assert len(masked) == len(pan)
    assert masked.endswith(pan[-4:])
    assert set(masked[:-4]) == {"*"}


@given(st.text(alphabet="0123456789", min_size=10, max_size=19))
def test_mask_pan_property(pan: str) -> None:
    masked = mask_pan(pan)
    assert masked == "*" * (len(pan) - 4) + pan[-4:]


@given(st.text(alphabet="0123456789", max_size=9))
def test_mask_pan_hides_everything_of_short_numbers(number: str) -> None:
    assert mask_pan(number) == "*" * len(number)


def test_seal_uses_the_random_source_for_the_nonce_only() -> None:
    calls: list[int] = []

    def counting(n: int) -> bytes:
        calls.append(n)
        return os.urandom(n)

    seal(KEY, "SIM0001", DATA, AAD, counting)
    assert calls == [NONCE_SIZE]
