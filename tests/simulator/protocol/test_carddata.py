"""Card data sealed for the processor: AES-GCM under an AES DUKPT data key, bound to the
key serial number and the transaction."""

from __future__ import annotations

import base64
import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.protocol.carddata import (
    DATA_KEY_USAGE,
    NONCE_SIZE,
    SCHEME,
    CardDataError,
    SensitiveCardData,
    associated_data,
    ksn_of,
    mask_pan,
    open_sealed,
    seal,
)
from simulator.protocol.dukpt import Originator, derive_initial_key, host_working_key, make_ksn

BDK = bytes.fromhex("0F1E2D3C4B5A69788796A5B4C3D2E1F0")
BDK_ID = bytes.fromhex("5E1A0001")
IKID = BDK_ID + bytes.fromhex("00000007")
BDKS = {BDK_ID: BDK}
OTHER_BDKS = {BDK_ID: bytes.fromhex("00112233445566778899aabbccddeeff")}
PAN = "4242424242424242"
DATA = SensitiveCardData(pan=PAN, expiry="2912", pan_sequence="01")
AAD = associated_data("T-0001", 4250, "EUR")


def fixed_bytes(n: int) -> bytes:
    return bytes(range(0xA0, 0xA0 + n))


def terminal(counter: int = 0) -> Originator:
    return Originator(derive_initial_key(BDK, IKID), IKID, counter)


def sealed() -> dict[str, str]:
    return seal(terminal(), DATA, AAD, fixed_bytes)


def test_associated_data_binds_identifier_amount_and_currency() -> None:
    assert AAD == b"T-0001|4250|EUR"
    assert associated_data("T-0001", 4251, "EUR") != AAD


def test_seal_then_open_round_trip() -> None:
    blob = sealed()
    assert open_sealed(BDKS, blob, AAD) == DATA


def test_online_pin_round_trip() -> None:
    with_pin = SensitiveCardData(pan=PAN, expiry="2912", pin="2468")
    assert open_sealed(BDKS, seal(terminal(), with_pin, AAD), AAD).pin == "2468"


def test_wire_form() -> None:
    blob = sealed()
    assert set(blob) == {"scheme", "ksn", "nonce", "ciphertext"}
    assert blob["scheme"] == SCHEME == "AES-DUKPT-1"
    assert blob["ksn"] == IKID.hex().upper() + "00000001"
    assert ksn_of(blob) == make_ksn(IKID, 1)
    assert base64.b64decode(blob["nonce"]) == fixed_bytes(NONCE_SIZE)
    assert len(base64.b64decode(blob["nonce"])) == 12
    assert all(isinstance(value, str) for value in blob.values())


def test_the_key_is_the_dukpt_data_key_of_the_ksn_and_the_ksn_is_authenticated() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    blob = sealed()
    ksn = make_ksn(IKID, 1)
    key = host_working_key(BDK, ksn, DATA_KEY_USAGE)
    plaintext = AESGCM(key).decrypt(
        base64.b64decode(blob["nonce"]), base64.b64decode(blob["ciphertext"]), ksn + AAD
    )
    assert json.loads(plaintext) == {"pan": PAN, "expiry": "2912", "pan_sequence": "01"}


def test_every_seal_uses_the_next_counter() -> None:
    device = terminal()
    blobs = [seal(device, DATA, AAD) for _ in range(3)]
    assert [ksn_of(blob)[-4:] for blob in blobs] == [bytes((0, 0, 0, n)) for n in (1, 2, 3)]
    assert device.counter == 3
    assert all(open_sealed(BDKS, blob, AAD) == DATA for blob in blobs)
    assert len({blob["ciphertext"] for blob in blobs}) == 3


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


def next_ksn() -> str:
    """The KSN of the following transaction: a key that exists, but not the blob's."""
    return IKID.hex().upper() + "00000002"


DEFECTS: dict[str, tuple[dict[bytes, bytes], object, bytes, str]] = {
    "wrong BDK": (OTHER_BDKS, sealed(), AAD, "does not authenticate"),
    "unknown BDK ID": ({}, sealed(), AAD, "no base derivation key 5E1A0001"),
    "tampered ciphertext": (
        BDKS,
        with_(ciphertext=flip_byte(sealed()["ciphertext"])),
        AAD,
        "does not authenticate",
    ),
    "tampered tag": (
        BDKS,
        with_(ciphertext=flip_byte(sealed()["ciphertext"], -1)),
        AAD,
        "does not authenticate",
    ),
    "tampered nonce": (BDKS, with_(nonce=flip_byte(sealed()["nonce"])), AAD, "authenticate"),
    "another counter's KSN": (BDKS, with_(ksn=next_ksn()), AAD, "authenticate"),
    "a counter no terminal uses": (BDKS, with_(ksn=IKID.hex() + "0001FFFF"), AAD, "unusable"),
    "amount changed": (BDKS, sealed(), associated_data("T-0001", 4251, "EUR"), "authenticate"),
    "other transaction": (BDKS, sealed(), associated_data("T-0002", 4250, "EUR"), "authenticate"),
    "currency changed": (BDKS, sealed(), associated_data("T-0001", 4250, "USD"), "authenticate"),
    "truncated ciphertext": (BDKS, with_(ciphertext=""), AAD, "authenticate"),
    "bad base64": (BDKS, with_(ciphertext="not base64!"), AAD, "not base64"),
    "missing nonce": (BDKS, with_(nonce=None), AAD, "missing"),
    "short nonce": (BDKS, with_(nonce=base64.b64encode(b"123").decode()), AAD, "wrong size"),
    "missing ksn": (BDKS, with_(ksn=None), AAD, "no ksn"),
    "short ksn": (BDKS, with_(ksn="5E1A0001"), AAD, "24 hex digits"),
    "ksn not hex": (BDKS, with_(ksn="Z" * 24), AAD, "24 hex digits"),
    "interim scheme": (BDKS, with_(scheme="AESGCM-TK1"), AAD, "unsupported card_data scheme"),
    "no scheme": (BDKS, with_(scheme=None), AAD, "unsupported card_data scheme"),
    "not an object": (BDKS, ["AES-DUKPT-1"], AAD, "must be an object"),
}


@pytest.mark.parametrize(("bdks", "blob", "aad", "reason"), DEFECTS.values(), ids=DEFECTS.keys())
def test_defects_raise_card_data_error(
    bdks: dict[bytes, bytes], blob: object, aad: bytes, reason: str
) -> None:
    with pytest.raises(CardDataError, match=reason):
        open_sealed(bdks, blob, aad)


@pytest.mark.parametrize("blob", [{}, {"ksn": 7}, "5E1A000100000007", None])
def test_ksn_of_refuses_blobs_without_a_ksn(blob: object) -> None:
    with pytest.raises(CardDataError, match="no ksn"):
        ksn_of(blob)


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

    seal(terminal(), DATA, AAD, counting)
    assert calls == [NONCE_SIZE]
