from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.backend.processor import (
    CENTS_RULE,
    CRYPTOGRAM_FAILED,
    AuthorisationRequest,
    CardState,
    Decision,
    IssuerCard,
    Processor,
    VerifiedCard,
    card_fingerprint,
)
from harness.keys import load_keys
from simulator.cards import CardCryptography
from simulator.protocol.carddata import CardDataError
from simulator.protocol.dukpt import Originator, derive_initial_key
from simulator.protocol.response_codes import RESPONSE_MESSAGES, response_message

if TYPE_CHECKING:
    from tests.harness.backend.conftest import SealCard

KEYS = load_keys(Path(__file__).resolve().parents[3] / "fixtures")
TODAY = date(2026, 12, 3)
#: An initial key ID under the fixtures' BDK, and the KSN of its first counter.
KSN_IKID = next(iter(KEYS.bdks)) + bytes.fromhex("0000ABCD")
KSN_1 = KSN_IKID.hex().upper() + "00000001"
CARDS = [
    IssuerCard("visa", "4242424242424242", "VISA", expiry="2029-12", response_code="00"),
    IssuerCard("funds", "4000000000009995", "VISA", expiry="2029-12", response_code="51"),
    IssuerCard("error", "4000000000000119", "VISA", expiry="2029-12", response_code="96"),
    IssuerCard("mc", "5555555555554444", "MASTERCARD", expiry="2026-12", response_code="00"),
    IssuerCard("cb_mc", "5555552500001001", "CB", expiry="2026-11", response_code="00"),
    IssuerCard("refused", "4000000000000002", "VISA", expiry="2026-11", response_code="05"),
    IssuerCard("lost", "4000000000009987", "VISA", "2029-12", "00", status="lost"),
    IssuerCard("stolen", "4000000000009979", "VISA", "2029-12", "00", status="stolen"),
    IssuerCard("lost_expired", "4000000760000002", "VISA", "2025-01", "00", status="lost"),
    IssuerCard("online_pin", "4001000360000005", "VISA", "2029-12", "00", pin="2468"),
    IssuerCard("pin_blocked", "4001007020000002", "VISA", "2029-12", "00", pin="1357", pin_tries=0),
    IssuerCard(
        "physical", "4000056655665556", "VISA", "2029-12", "00", pin="0000", cents_rule=True
    ),
    IssuerCard(
        "capped",
        "4000003800000008",
        "VISA",
        "2029-12",
        "00",
        limit_cents=30000,
        balance_cents=10000,
    ),
    IssuerCard("cb_visa", "4000002500001001", "VISA", "2029-12", "00"),
    IssuerCard("cb_mastercard", "2223003122003222", "MASTERCARD", "2029-12", "00"),
    IssuerCard("wallet", "4000002760000016", "VISA", "2029-12", "00", wallet=True),
]
VISA_PAN = "4242424242424242"
ONLINE_PIN = "4001000360000005"
PHYSICAL = "4000056655665556"  # follows the cents rule
CAPPED = "4000003800000008"  # 300 € per payment, 100 € available
CB_VISA = "4000002500001001"
CB_MASTERCARD = "2223003122003222"
MASTERCARD = "5555555555554444"
WALLET = "4000002760000016"


@pytest.fixture
def processor() -> Processor:
    return Processor(KEYS.bdks, CARDS, KEYS.issuer_master_keys)


def without_atc(state: CardState | None) -> CardState:
    """The issuer's state but for the last ATC it saw (which every verified ARQC moves)."""
    assert state is not None
    return replace(state, last_atc=None)


#: The issuer's brand of each card (its cryptogram version and master keys).
ISSUER_BRANDS = {card.pan: card.brand for card in CARDS}


def request_for(
    seal_for: SealCard,
    pan: str,
    *,
    amount: int = 4250,
    entry_mode: str = "contactless",
    brand: str = "VISA",
    cvm: str = "none",
    emv: dict[str, str] | None = None,
    **seal_options: object,
) -> AuthorisationRequest:
    """The request as the terminal sends it: card data sealed, EMV data with a valid ARQC
    (its ATC above any before)."""
    return AuthorisationRequest(
        transaction_id="T00000000002a",
        amount_cents=amount,
        currency="EUR",
        entry_mode=entry_mode,
        brand=brand,
        card_data=seal_for(pan, "T00000000002a", amount, **seal_options),
        emv=emv
        if emv is not None
        else seal_for.emv(pan, amount, issuer_brand=ISSUER_BRANDS.get(pan)),
        cvm=cvm,
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
        {"scheme": "AES-DUKPT-1", "nonce": "AAAA", "ciphertext": "AAAA"},  # no ksn
        {"scheme": "AES-DUKPT-1", "ksn": "00" * 12, "nonce": "AAAA", "ciphertext": "AAAA"},
        {"scheme": "AES-DUKPT-1", "ksn": KSN_1, "nonce": "%%%", "ciphertext": "AAAA"},
        {"scheme": "AESGCM-TK1", "key_id": "SIM0001", "nonce": "AAAA", "ciphertext": "AAAA"},
    ],
)
def test_malformed_blob_unknown_bdk_or_the_interim_scheme_is_refused(
    processor: Processor, card_data: object
) -> None:
    request = AuthorisationRequest("T1", 4250, "EUR", "chip", "VISA", card_data)
    with pytest.raises(CardDataError):
        processor.authorise(request, today=TODAY)


def test_blob_from_a_key_of_another_bdk_is_refused(
    processor: Processor, seal_for: SealCard
) -> None:
    """A terminal loaded with a key that claims the fixtures' BDK ID but comes from another
    BDK: the processor derives another key and the blob does not authenticate."""
    impostor = Originator(derive_initial_key(bytes(16), KSN_IKID), KSN_IKID)
    foreign = seal_for("4242424242424242", "T00000000002a", 4250, terminal=impostor)
    with pytest.raises(CardDataError, match="authenticate"):
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


# -- lost and stolen cards, rule order --------------------------------------------------------


@pytest.mark.parametrize(
    ("pan", "code"),
    [
        ("4000000000009987", "41"),  # lost
        ("4000000000009979", "43"),  # stolen
        ("4000000760000002", "41"),  # lost and expired: the report outranks the expiry
    ],
)
def test_lost_and_stolen_cards_are_refused_with_a_neutral_message(
    processor: Processor, seal_for: SealCard, pan: str, code: str
) -> None:
    decision = processor.authorise(request_for(seal_for, pan), today=TODAY)
    assert decision.response_code == code
    assert decision.message == "Carte refusée : contactez votre banque"
    assert "vol" not in decision.message
    assert "perdu" not in decision.message


def test_an_unknown_cvm_is_not_a_request() -> None:
    with pytest.raises(ValueError, match="cvm"):
        AuthorisationRequest("T1", 100, "EUR", "chip", "VISA", {}, cvm="signature")


def test_a_card_status_outside_the_catalogue_words_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'odd'.*status"):
        IssuerCard("odd", "4242424242424242", "VISA", "2029-12", "00", status="blocked")


def test_two_catalogue_cards_with_one_pan_are_refused_without_showing_it() -> None:
    twin = IssuerCard("visa_twin", "4242424242424242", "VISA", "2029-12", "05")
    with pytest.raises(ValueError, match="'visa' and 'visa_twin'") as error:
        Processor({}, [CARDS[0], twin], KEYS.issuer_master_keys)
    assert "4242424242424242" not in str(error.value)


# -- online PIN ---------------------------------------------------------------------------------


def pin_request(seal_for: SealCard, pin: str, pan: str = ONLINE_PIN) -> AuthorisationRequest:
    return request_for(seal_for, pan, amount=8900, entry_mode="chip", cvm="online_pin", pin=pin)


def test_online_pin_tries_go_down_to_a_blocked_pin(
    processor: Processor, seal_for: SealCard
) -> None:
    states: dict[str, CardState] = {}
    answers = []
    for pin in ("1111", "2222", "2468", "1111", "2222", "3333", "2468"):
        decision = processor.authorise(pin_request(seal_for, pin), today=TODAY, card_states=states)
        assert decision.card_ref == "online_pin"
        assert decision.card_state is not None
        states[decision.card_ref] = decision.card_state
        answers.append((decision.response_code, decision.pin_tries_left))
    assert answers == [
        ("55", 2),
        ("55", 1),
        ("00", 3),  # a right PIN resets the counter
        ("55", 2),
        ("55", 1),
        ("75", 0),  # third wrong PIN in a row: blocked
        ("75", 0),  # even the right PIN no longer works
    ]
    assert response_message("55") == "Code confidentiel erroné"
    assert response_message("75") == "Nombre d'essais du code confidentiel dépassé"


def test_the_issuer_does_not_change_the_callers_state_in_place(
    processor: Processor, seal_for: SealCard
) -> None:
    states = {"online_pin": CardState(pin_tries=3)}
    decision = processor.authorise(pin_request(seal_for, "0000"), today=TODAY, card_states=states)
    assert without_atc(decision.card_state) == CardState(pin_tries=2)
    assert states == {"online_pin": CardState(pin_tries=3)}


def test_a_pin_blocked_card_is_refused_online_and_offline(
    processor: Processor, seal_for: SealCard
) -> None:
    blocked = "4001007020000002"
    online = processor.authorise(pin_request(seal_for, "1357", blocked), today=TODAY)
    assert (online.response_code, online.pin_tries_left) == ("75", 0)
    offline = request_for(seal_for, blocked, entry_mode="chip", cvm="offline_pin")
    assert processor.authorise(offline, today=TODAY).response_code == "75"
    no_cvm = request_for(seal_for, blocked, amount=1200)
    assert processor.authorise(no_cvm, today=TODAY).response_code == "00"


def test_offline_pin_is_the_cards_business(processor: Processor, seal_for: SealCard) -> None:
    request = request_for(seal_for, ONLINE_PIN, entry_mode="chip", cvm="offline_pin")
    decision = processor.authorise(request, today=TODAY)
    assert (decision.response_code, without_atc(decision.card_state)) == ("00", CardState(3))
    assert decision.pin_tries_left is None


def test_online_pin_without_a_pin_in_the_card_data_is_refused(
    processor: Processor, seal_for: SealCard
) -> None:
    request = request_for(seal_for, ONLINE_PIN, entry_mode="chip", cvm="online_pin")
    with pytest.raises(CardDataError, match="no PIN"):
        processor.authorise(request, today=TODAY)


def test_expiry_is_checked_before_the_pin_and_spares_the_counter(
    processor: Processor, seal_for: SealCard
) -> None:
    decision = processor.authorise(pin_request(seal_for, "0000"), today=date(2030, 1, 1))
    assert decision.response_code == "54"
    assert without_atc(decision.card_state) == CardState(pin_tries=3)


# -- the cents rule and the card's limits ---------------------------------------------------------


@pytest.mark.parametrize(("cents", "code"), sorted(CENTS_RULE.items()))
def test_cents_rule_table(processor: Processor, seal_for: SealCard, cents: int, code: str) -> None:
    request = request_for(seal_for, PHYSICAL, amount=2300 + cents, entry_mode="chip")
    assert processor.authorise(request, today=TODAY).response_code == code


@pytest.mark.parametrize("cents", [0, 42, 99])
def test_other_cents_follow_the_normal_rules(
    processor: Processor, seal_for: SealCard, cents: int
) -> None:
    request = request_for(seal_for, PHYSICAL, amount=2300 + cents, entry_mode="chip")
    assert processor.authorise(request, today=TODAY).response_code == "00"


def test_cents_rule_covers_the_stripe_physical_card_rows() -> None:
    assert {c: CENTS_RULE[c] for c in (1, 5, 55, 65, 75)} == {
        1: "05",
        5: "05",
        55: "55",
        65: "65",
        75: "75",
    }
    assert 0 not in CENTS_RULE


def test_cards_without_the_cents_rule_ignore_cents(
    processor: Processor, seal_for: SealCard
) -> None:
    request = request_for(seal_for, "4242424242424242", amount=2305, entry_mode="chip")
    assert processor.authorise(request, today=TODAY).response_code == "00"


def test_a_wrong_online_pin_outranks_the_cents_rule(
    processor: Processor, seal_for: SealCard
) -> None:
    request = request_for(
        seal_for, PHYSICAL, amount=2351, entry_mode="chip", cvm="online_pin", pin="9999"
    )
    assert processor.authorise(request, today=TODAY).response_code == "55"


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        (10000, "00"),  # exactly the funds available
        (10001, "51"),  # a cent more than the funds
        (30000, "51"),  # within the limit, above the funds
        (30001, "61"),  # above the per-payment limit: the limit is checked first
    ],
)
def test_per_payment_limit_and_available_funds(
    processor: Processor, seal_for: SealCard, amount: int, code: str
) -> None:
    request = request_for(seal_for, CAPPED, amount=amount, entry_mode="chip", cvm="offline_pin")
    decision = processor.authorise(request, today=TODAY)
    assert (decision.response_code, decision.message) == (code, response_message(code))


# -- PSD2 strong customer authentication --------------------------------------------------------


def after(count: int, cents: int) -> dict[str, CardState]:
    keys = ("cb_visa", "cb_mastercard", "mc", "wallet", "visa")
    return {key: CardState(3, count, cents) for key in keys}


@pytest.mark.parametrize(
    ("pan", "brand", "code"),
    [
        (CB_VISA, "CB", "1A"),  # co-badged, routed to CB (the French default)
        (CB_VISA, "VISA", "1A"),  # the cardholder chose Visa
        (MASTERCARD, "MASTERCARD", "65"),
        (CB_MASTERCARD, "CB", "1A"),  # a Mastercard routed to CB answers as CB does
        (CB_MASTERCARD, "MASTERCARD", "65"),
    ],
)
def test_sixth_contactless_payment_without_pin_is_soft_declined(
    processor: Processor, seal_for: SealCard, pan: str, brand: str, code: str
) -> None:
    sixth = request_for(seal_for, pan, amount=1500, brand=brand)
    assert processor.authorise(sixth, today=TODAY, card_states=after(4, 6000)).approved
    decision = processor.authorise(sixth, today=TODAY, card_states=after(5, 6000))
    assert decision.response_code == code
    assert decision.message == ("Authentification forte requise : saisissez le code")


def test_missing_funds_are_answered_before_sca_is_asked(
    processor: Processor, seal_for: SealCard
) -> None:
    request = request_for(seal_for, CAPPED, amount=12000)
    states = {"capped": CardState(3, 5, 6000)}
    assert processor.authorise(request, today=TODAY, card_states=states).response_code == "51"


@pytest.mark.parametrize(("amount", "code"), [(5000, "00"), (5001, "1A")])
def test_cumulative_contactless_amount_above_150_euros_needs_sca(
    processor: Processor, seal_for: SealCard, amount: int, code: str
) -> None:
    request = request_for(seal_for, CB_VISA, amount=amount, brand="CB")
    decision = processor.authorise(request, today=TODAY, card_states=after(2, 10000))
    assert decision.response_code == code


@pytest.mark.parametrize(
    ("pan", "entry_mode", "cvm", "effect"),
    [
        (CB_VISA, "chip", "offline_pin", "reset"),
        (ONLINE_PIN, "contactless", "online_pin", "reset"),  # above 50 €: tap, then the PIN
        (CB_VISA, "contactless", "cdcvm", "none"),
        (WALLET, "contactless", "none", "none"),  # a phone wallet is outside the counters
        (CB_VISA, "chip", "none", "none"),
    ],
)
def test_verified_or_inserted_payments_are_not_soft_declined(
    processor: Processor, seal_for: SealCard, pan: str, entry_mode: str, cvm: str, effect: str
) -> None:
    pin = "2468" if cvm == "online_pin" else None
    request = request_for(seal_for, pan, entry_mode=entry_mode, cvm=cvm, pin=pin)
    states = {**after(5, 14900), "online_pin": CardState(3, 5, 14900)}
    decision = processor.authorise(request, today=TODAY, card_states=states)
    assert decision.response_code == "00"
    assert decision.on_capture == effect


def test_a_contactless_payment_without_cvm_counts_when_captured(
    processor: Processor, seal_for: SealCard
) -> None:
    decision = processor.authorise(request_for(seal_for, CB_VISA, amount=1990), today=TODAY)
    assert (decision.on_capture, without_atc(decision.card_state)) == ("count", CardState(3))
    assert decision.card_state is not None
    after_capture = decision.card_state.after_capture("count", 1990)
    assert without_atc(after_capture) == CardState(3, 1, 1990)
    assert CardState(3, 4, 9000).after_capture("reset", 8000) == CardState(3, 0, 0)
    assert CardState(3, 4, 9000).after_capture("none", 8000) == CardState(3, 4, 9000)


def test_every_answer_the_issuer_gives_has_its_own_french_text() -> None:
    codes = {"00", "05", "41", "43", "51", "54", "55", "61", "65", "75", "85", "1A"}
    codes |= set(CENTS_RULE.values())
    codes |= {card.response_code for card in CARDS}
    assert codes <= set(RESPONSE_MESSAGES)


def test_an_unknown_card_carries_no_issuer_state(processor: Processor, seal_for: SealCard) -> None:
    decision = processor.authorise(request_for(seal_for, "4000000000000069"), today=TODAY)
    assert decision == Decision("05", "************0069")


# -- zero-amount account verification (card capture) ---------------------------------------------

FINGERPRINT_KEY = b"test fingerprint key"


def verification_for(
    seal_for: SealCard, pan: str, *, cvm: str = "none", brand: str = "VISA", pin: str | None = None
) -> AuthorisationRequest:
    return request_for(seal_for, pan, amount=0, cvm=cvm, brand=brand, pin=pin)


@pytest.mark.parametrize(
    ("pan", "code"),
    [
        ("4242424242424242", "85"),
        ("4000000000009987", "41"),  # lost
        ("4000000000009979", "43"),  # stolen
        ("4000000760000002", "41"),  # lost and expired: lost first, as for a payment
        ("5555552500001001", "54"),  # expired last month
        ("5555555555554444", "85"),  # expires this month: still valid
        ("4001007020000002", "75"),  # PIN blocked at the issuer, even without a PIN now
        ("4000000000009995", "51"),  # the issuer's own answer
        ("4000000000000119", "96"),
        ("4000003800000008", "85"),  # limits and funds: nothing is charged
        ("4000056655665556", "85"),  # cents rule: no amount to read cents from
        ("4000002760000016", "85"),  # a phone wallet
        ("4000000000000069", "05"),  # unknown to the issuer
    ],
)
def test_a_verification_answers_85_or_the_cards_refusal(
    processor: Processor, seal_for: SealCard, pan: str, code: str
) -> None:
    decision = processor.verify(
        verification_for(seal_for, pan), today=TODAY, fingerprint_key=FINGERPRINT_KEY
    )
    assert decision.response_code == code
    assert decision.approved is False  # 85 is no payment approval
    assert decision.masked_pan == "*" * 12 + pan[-4:]
    assert decision.on_capture == "none"
    assert (decision.verified_card is not None) is (code == "85")


def test_a_verified_card_comes_back_without_its_pan(
    processor: Processor, seal_for: SealCard
) -> None:
    decision = processor.verify(
        verification_for(seal_for, CB_VISA, brand="CB"),
        today=TODAY,
        fingerprint_key=FINGERPRINT_KEY,
    )
    assert decision.card_ref == "cb_visa"
    assert decision.verified_card == VerifiedCard(
        brand="CB",  # the brand the terminal routed to, as for a payment
        last4="1001",
        exp_month=12,
        exp_year=2029,
        fingerprint=card_fingerprint(FINGERPRINT_KEY, CB_VISA),
    )
    assert CB_VISA not in repr(decision)
    assert decision.message == "Carte vérifiée"


def test_a_verification_is_for_zero_only(processor: Processor, seal_for: SealCard) -> None:
    with pytest.raises(ValueError, match="zero amount"):
        processor.verify(
            request_for(seal_for, "4242424242424242"), today=TODAY, fingerprint_key=b"k"
        )


def test_a_verification_never_counts_towards_psd2(processor: Processor, seal_for: SealCard) -> None:
    due = {"visa": CardState(3, contactless_count=5, contactless_cents=14000)}
    decision = processor.verify(
        verification_for(seal_for, "4242424242424242"),
        today=TODAY,
        fingerprint_key=FINGERPRINT_KEY,
        card_states=due,
    )
    assert (decision.response_code, without_atc(decision.card_state)) == ("85", due["visa"])


def test_a_verification_checks_the_online_pin_as_a_payment_does(
    processor: Processor, seal_for: SealCard
) -> None:
    def verify(pin: str, states: dict[str, CardState]) -> Decision:
        request = verification_for(seal_for, ONLINE_PIN, cvm="online_pin", pin=pin)
        return processor.verify(
            request, today=TODAY, fingerprint_key=FINGERPRINT_KEY, card_states=states
        )

    wrong = verify("1111", {})
    assert (wrong.response_code, wrong.pin_tries_left, wrong.verified_card) == ("55", 2, None)
    assert verify("1111", {"online_pin": CardState(1)}).response_code == "75"
    right = verify("2468", {"online_pin": CardState(1)})
    assert (right.response_code, right.pin_tries_left) == ("85", 3)
    with pytest.raises(CardDataError):
        processor.verify(
            verification_for(seal_for, ONLINE_PIN, cvm="online_pin"),
            today=TODAY,
            fingerprint_key=FINGERPRINT_KEY,
        )


def test_the_card_fingerprint_is_an_hmac_of_the_pan() -> None:
    fingerprint = card_fingerprint(b"key one", "4242424242424242")
    assert fingerprint == card_fingerprint(b"key one", "4242424242424242")
    assert fingerprint != card_fingerprint(b"key two", "4242424242424242")
    assert fingerprint != card_fingerprint(b"key one", "4000056655664242")  # same last 4
    assert fingerprint == hmac.new(b"key one", b"4242424242424242", hashlib.sha256).hexdigest()
    assert fingerprint != hashlib.sha256(b"4242424242424242").hexdigest()
    with pytest.raises(ValueError, match="key"):
        card_fingerprint(b"", "4242424242424242")


# -- merchant-initiated payments with a saved card -----------------------------------------------


def charge(
    processor: Processor, card_ref: str, amount: int = 4250, **states: CardState
) -> Decision:
    return processor.charge_on_file(
        card_ref,
        transaction_id="T00000000002b",
        amount_cents=amount,
        currency="EUR",
        brand="VISA",
        today=TODAY,
        card_states=states,
    )


@pytest.mark.parametrize(
    ("card_ref", "amount", "code"),
    [
        ("visa", 4250, "00"),
        ("lost", 4250, "41"),
        ("stolen", 4250, "43"),
        ("cb_mc", 4250, "54"),  # expired last month
        ("refused", 4250, "54"),  # expired outranks the issuer's refusal
        ("error", 4250, "96"),
        ("capped", 10000, "00"),
        ("capped", 10001, "51"),
        ("capped", 30001, "61"),
        ("physical", 4205, "05"),  # the cents rule
        ("physical", 4275, "75"),
        ("physical", 4200, "00"),
        ("pin_blocked", 4250, "00"),  # no PIN in a merchant-initiated payment
        ("gone", 4250, "05"),  # a card the issuer no longer knows
    ],
)
def test_a_charge_on_file_follows_the_payment_rules_without_pin(
    processor: Processor, card_ref: str, amount: int, code: str
) -> None:
    decision = charge(processor, card_ref, amount)
    assert decision.response_code == code
    assert decision.approved is (code == "00")
    assert decision.on_capture == "none"
    assert decision.pin_tries_left is None


def test_a_charge_on_file_knows_the_card_by_its_key_only(processor: Processor) -> None:
    decision = charge(processor, "visa")
    assert (decision.card_ref, decision.masked_pan) == ("visa", "************4242")
    unknown = charge(processor, "4242424242424242")  # a PAN is no card reference
    assert (unknown.response_code, unknown.card_ref, unknown.masked_pan) == ("05", None, "")


def test_a_charge_on_file_is_never_soft_declined_and_moves_no_counter(
    processor: Processor,
) -> None:
    due = CardState(3, contactless_count=5, contactless_cents=14900)
    for card_ref in ("visa", "cb_mastercard"):
        decision = charge(processor, card_ref, 4250, **{card_ref: due})
        assert (decision.response_code, decision.card_state) == ("00", due)


# -- card authentication: ARQC, altered EMV data, replayed ATC, ARPC -------------------------


def test_a_verified_arqc_gets_an_arpc_the_card_accepts(
    processor: Processor, seal_for: SealCard
) -> None:
    request = request_for(seal_for, "4242424242424242", entry_mode="chip")
    decision = processor.authorise(request, today=TODAY)
    assert (decision.response_code, decision.reason) == ("00", None)
    assert decision.card_state is not None
    assert decision.card_state.last_atc == int(request.emv["9F36"], 16)
    card = CardCryptography("VISA", KEYS.issuer_keys("VISA"), "4242424242424242")
    assert decision.arpc is not None
    assert card.issuer_approves(decision.arpc, request.emv["9F26"], request.emv["9F36"])


def test_a_mastercard_arpc_carries_the_response_code(
    processor: Processor, seal_for: SealCard
) -> None:
    request = request_for(seal_for, MASTERCARD, brand="MASTERCARD")
    decision = processor.authorise(request, today=TODAY)
    assert decision.response_code == "00"
    assert decision.arpc is not None
    assert len(decision.arpc) == 20  # ARPC (8 bytes) ‖ ARC "00" in ASCII
    assert decision.arpc.endswith("3030")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"9F26": "0123456789ABCDEF"}, "does not verify"),
        ({"9F26": ""}, "no application cryptogram"),
        ({"9F37": "00000000"}, "does not verify"),  # another unpredictable number
        ({"9A": "261204"}, "does not verify"),  # another date
        ({"9F10": "06011203A0B800"}, "does not verify"),  # other issuer application data
        ({"9F02": "000000000001"}, "amount (9F02) differs"),  # the amount, alone
        ({"5F2A": "0840"}, "currency (5F2A) differs"),
    ],
)
def test_altered_emv_data_is_declined_without_arpc(
    processor: Processor, seal_for: SealCard, change: dict[str, str], reason: str
) -> None:
    emv = seal_for.emv("4242424242424242", 4250, **change)
    decision = processor.authorise(request_for(seal_for, VISA_PAN, emv=emv), today=TODAY)
    assert decision.response_code == CRYPTOGRAM_FAILED == "05"
    assert decision.reason is not None
    assert reason in decision.reason
    assert (decision.arpc, decision.card_ref) == (None, "visa")
    assert decision.card_state == CardState(pin_tries=3)  # nothing learnt from a forgery


def test_an_amount_changed_in_request_and_emv_together_breaks_the_cryptogram(
    processor: Processor, seal_for: SealCard
) -> None:
    """The phone rewrites both amounts (and reseals nothing): the ARQC still covers 42,50."""
    signed = seal_for.emv(VISA_PAN, 4250)
    emv = {**signed, "9F02": "000000000100"}
    request = request_for(seal_for, VISA_PAN, amount=100, emv=emv)
    decision = processor.authorise(request, today=TODAY)
    assert decision.response_code == "05"
    assert decision.reason == "the application cryptogram (9F26) does not verify"


@pytest.mark.parametrize("offset", [0, -1])
def test_an_atc_not_above_the_last_one_is_a_replay(
    processor: Processor, seal_for: SealCard, offset: int
) -> None:
    first = request_for(seal_for, VISA_PAN)
    decision = processor.authorise(first, today=TODAY)
    assert decision.response_code == "00"
    assert decision.card_state is not None
    states = {"visa": decision.card_state}
    atc = int(first.emv["9F36"], 16) + offset
    again = request_for(seal_for, VISA_PAN, emv=seal_for.emv(VISA_PAN, 4250, atc=atc))
    replayed = processor.authorise(again, today=TODAY, card_states=states)
    assert replayed.response_code == "05"
    assert replayed.reason is not None
    assert "replay" in replayed.reason
    assert replayed.card_state == states["visa"]
    later = request_for(seal_for, VISA_PAN)  # the card's next transaction
    assert processor.authorise(later, today=TODAY, card_states=states).response_code == "00"


def test_a_verification_carries_an_arqc_too(processor: Processor, seal_for: SealCard) -> None:
    good = processor.verify(
        verification_for(seal_for, VISA_PAN), today=TODAY, fingerprint_key=FINGERPRINT_KEY
    )
    assert (good.response_code, good.arpc is not None) == ("85", True)
    forged = request_for(
        seal_for, VISA_PAN, amount=0, emv=seal_for.emv(VISA_PAN, 0, **{"9F26": "00" * 8})
    )
    refused = processor.verify(forged, today=TODAY, fingerprint_key=FINGERPRINT_KEY)
    assert (refused.response_code, refused.verified_card, refused.arpc) == ("05", None, None)


def test_card_authentication_comes_after_the_card_is_known(
    processor: Processor, seal_for: SealCard
) -> None:
    unknown = request_for(seal_for, "4000000000000069", emv={})
    assert processor.authorise(unknown, today=TODAY).response_code == "05"
    lost = request_for(seal_for, "4000000000009987")
    assert processor.authorise(lost, today=TODAY).response_code == "41"  # authenticated first
    lost_forged = request_for(seal_for, "4000000000009987", emv={})
    assert processor.authorise(lost_forged, today=TODAY).response_code == "05"


def test_every_issuer_card_needs_its_brands_master_keys() -> None:
    with pytest.raises(ValueError, match="no issuer master keys for VISA"):
        Processor(KEYS.bdks, CARDS, {"MASTERCARD": KEYS.issuer_keys("MASTERCARD")})


@pytest.mark.parametrize("atc", ["", "2A", "00 2A", "XYZW", "00002A"])
def test_a_malformed_atc_is_declined_not_crashed(
    processor: Processor, seal_for: SealCard, atc: str
) -> None:
    emv = {**seal_for.emv(VISA_PAN, 4250), "9F36": atc}
    decision = processor.authorise(request_for(seal_for, VISA_PAN, emv=emv), today=TODAY)
    assert (decision.response_code, decision.arpc) == ("05", None)
