from __future__ import annotations

import base64
from datetime import date
from typing import TYPE_CHECKING

import pytest

from harness.backend.processor import AuthorisationRequest, IssuerCard, Processor
from simulator.protocol.carddata import CardDataError
from simulator.protocol.response_codes import response_message

if TYPE_CHECKING:
    from tests.harness.backend.conftest import SealCard

KEY = bytes(range(16))
TODAY = date(2026, 12, 3)
CARDS = [
    IssuerCard(pan="4242424242424242", brand="VISA", expiry="2029-12", response_code="00"),
    IssuerCard(pan="4000000000009995", brand="VISA", expiry="2029-12", response_code="51"),
    IssuerCard(pan="4000000000000119", brand="VISA", expiry="2029-12", response_code="96"),
    IssuerCard(pan="5555555555554444", brand="MASTERCARD", expiry="2026-12", response_code="00"),
    IssuerCard(pan="5555552500001001", brand="CB", expiry="2026-11", response_code="00"),
    IssuerCard(pan="4000000000000002", brand="VISA", expiry="2026-11", response_code="05"),
]


@pytest.fixture
def processor() -> Processor:
    return Processor({"SIM0042": KEY}, CARDS)


def request_for(
    seal_for: SealCard, pan: str, *, amount: int = 4250, **seal_options: object
) -> AuthorisationRequest:
    return AuthorisationRequest(
        transaction_id="T00000000002a",
        amount_cents=amount,
        currency="EUR",
        entry_mode="contactless",
        brand="VISA",
        card_data=seal_for(pan, "T00000000002a", amount, key=KEY, key_id="SIM0042", **seal_options),
    )


@pytest.mark.parametrize(
    ("pan", "code"),
    [
        ("4242424242424242", "00"),
        ("4000000000009995", "51"),
        ("4000000000000119", "96"),
        ("5555555555554444", "00"),  # expires this month: still valid
        ("5555552500001001", "54"),  # expired last month
        ("4000000000000002", "54"),  # expired outranks the issuer's own refusal
        ("4000000000000069", "05"),  # unknown to the issuer
    ],
)
def test_decides_as_the_issuer(
    processor: Processor, seal_for: SealCard, pan: str, code: str
) -> None:
    decision = processor.authorise(request_for(seal_for, pan), today=TODAY)
    assert decision.response_code == code
    assert decision.approved is (code == "00")
    assert decision.masked_pan == "*" * 12 + pan[-4:]


def test_expiry_is_judged_against_the_date_given(processor: Processor, seal_for: SealCard) -> None:
    request = request_for(seal_for, "5555555555554444")
    assert processor.authorise(request, today=date(2027, 1, 1)).response_code == "54"


def test_blob_bound_to_another_amount_does_not_open(
    processor: Processor, seal_for: SealCard
) -> None:
    good = request_for(seal_for, "4242424242424242", amount=4250)
    replayed = AuthorisationRequest(
        transaction_id=good.transaction_id,
        amount_cents=425,
        currency="EUR",
        entry_mode="contactless",
        brand="VISA",
        card_data=good.card_data,
    )
    with pytest.raises(CardDataError):
        processor.authorise(replayed, today=TODAY)


def test_tampered_blob_does_not_open(processor: Processor, seal_for: SealCard) -> None:
    request = request_for(seal_for, "4242424242424242")
    assert isinstance(request.card_data, dict)
    ciphertext = bytearray(base64.b64decode(request.card_data["ciphertext"]))
    ciphertext[0] ^= 1
    tampered = {**request.card_data, "ciphertext": base64.b64encode(ciphertext).decode()}
    with pytest.raises(CardDataError):
        processor.authorise(
            AuthorisationRequest(
                request.transaction_id, 4250, "EUR", "contactless", "VISA", tampered
            ),
            today=TODAY,
        )


@pytest.mark.parametrize(
    "card_data",
    [
        "not a blob",
        {"scheme": "AESGCM-TK1", "nonce": "AAAA", "ciphertext": "AAAA"},  # no key_id
        {"scheme": "AESGCM-TK1", "key_id": "SIM9999", "nonce": "AAAA", "ciphertext": "AAAA"},
        {"scheme": "AESGCM-TK1", "key_id": "SIM0042", "nonce": "%%%", "ciphertext": "AAAA"},
    ],
)
def test_malformed_blob_or_unknown_terminal_is_refused(
    processor: Processor, card_data: object
) -> None:
    request = AuthorisationRequest("T1", 4250, "EUR", "chip", "VISA", card_data)
    with pytest.raises(CardDataError):
        processor.authorise(request, today=TODAY)


def test_blob_from_another_terminal_key_is_refused(
    processor: Processor, seal_for: SealCard
) -> None:
    request = request_for(seal_for, "4242424242424242")
    assert isinstance(request.card_data, dict)
    foreign = seal_for("4242424242424242", "T00000000002a", 4250, key=bytes(16), key_id="SIM0042")
    with pytest.raises(CardDataError):
        processor.authorise(
            AuthorisationRequest("T00000000002a", 4250, "EUR", "chip", "VISA", foreign),
            today=TODAY,
        )


def test_repr_never_shows_a_pan(processor: Processor) -> None:
    text = repr(processor) + repr(CARDS)
    assert all(card.pan not in text for card in CARDS)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("00", "Paiement accepté"),
        ("05", "Paiement refusé par la banque"),
        ("51", "Provision insuffisante"),
        ("54", "Carte expirée"),
        ("91", "Banque indisponible, réessayez"),
        ("96", "Erreur système"),
        ("Z3", "Paiement refusé (code Z3)"),
    ],
)
def test_messages_are_french(code: str, message: str) -> None:
    assert response_message(code) == message
