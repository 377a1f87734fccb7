"""Card data security end to end: what the phone sees of a payment, DUKPT keys across a
terminal restart, cryptograms checked both ways, replayed commands on the air."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.backend.processor import AuthorisationRequest as ProcessorRequest
from harness.keys import load_keys
from harness.rig import World
from simulator.protocol.carddata import associated_data, ksn_of, open_sealed
from simulator.protocol.dukpt import split_ksn
from simulator.protocol.framing import fragment
from simulator.protocol.messages import (
    AuthorisationRequest,
    AuthorisationResponse,
    DiagnosisRequest,
    DiagnosisResponse,
    Error,
    encode,
)


def pay(world: World, card: str, *, insert: bool = False, pin: str | None = None) -> str:
    number = world.unpaid_invoice(at_most_cents=None if insert else 5000)
    assert number is not None
    world.start_payment(number)
    if insert:
        world.insert(card)
        world.enter_pin(pin or world.catalogue[card].pin)
    else:
        world.tap(card)
    outcome = world.finish_payment()
    assert outcome.result == "approved", outcome
    return number


def phone_side_requests(world: World) -> list[AuthorisationRequest]:
    assert world.app.link is not None
    return [e for e in world.app.link.received if isinstance(e, AuthorisationRequest)]


def test_the_phone_sees_no_pan_and_the_processor_opens_the_blob() -> None:
    with World() as world:
        world.associate()
        pay(world, "visa")
        [request] = phone_side_requests(world)
        pan = world.catalogue["visa"].pan
        wire = encode(request).decode()
        assert pan not in wire
        assert pan[:6] + pan[-4:] not in wire.replace("*", "")
        assert request.masked_pan == "************4242"
        assert request.brand == "VISA"
        assert set(request.card_data) == {"scheme", "ksn", "nonce", "ciphertext"}
        assert request.card_data["scheme"] == "AES-DUKPT-1"
        keys = load_keys(world.config.fixtures)
        initial_key_id, counter = split_ksn(ksn_of(request.card_data))
        assert initial_key_id == keys.initial_key_id(world.profile.serial)
        assert counter >= 1
        # the processor's side: the BDK opens what the phone relayed
        aad = associated_data(request.transaction_id, request.amount, request.currency)
        assert open_sealed(keys.bdks, request.card_data, aad).pan == pan
        # what the backend was sent holds no PAN either
        assert all(pan not in record.request_body for record in world.backend.request_log)


def test_the_captured_request_replayed_at_the_processor_is_declined() -> None:
    """The phone (or whoever captured the request) cannot have it authorised again: the
    card's ATC in it is not above the last one its issuer saw."""
    with World() as world:
        world.associate()
        pay(world, "visa")
        [request] = phone_side_requests(world)
        replay = ProcessorRequest(
            transaction_id=request.transaction_id,
            amount_cents=request.amount,
            currency=request.currency,
            entry_mode=request.entry_mode,
            brand=request.brand,
            card_data=request.card_data,
            emv=request.emv,
            cvm=request.cvm,
        )
        decision = world.backend.processor.authorise(
            replay, today=world.calendar().date(), card_states=world.store.card_states
        )
        assert decision.response_code == "05"
        assert decision.reason is not None
        assert "replay" in decision.reason


def test_a_chip_payment_completes_with_the_issuers_arpc() -> None:
    with World() as world:
        world.associate()
        number = pay(world, "offline_pin", insert=True)
        assert world.store.invoice(number).status == "paid"
        assert world.app.link is not None
        [answer] = [c for c in world.app.link.sent if isinstance(c, AuthorisationResponse)]
        assert answer.response_code == "00"
        assert answer.arpc is not None
        assert answer.arpc.endswith("00800000")  # Visa CVN 18: the CSU says "approved"


def test_the_dukpt_counter_survives_a_terminal_restart() -> None:
    with World() as world:
        world.associate()
        pay(world, "visa")
        before = split_ksn(ksn_of(phone_side_requests(world)[-1].card_data))[1]
        world.restart_terminal()
        world.associate()  # the app reconnects (the bond is kept)
        pay(world, "mastercard")
        after = split_ksn(ksn_of(phone_side_requests(world)[-1].card_data))[1]
        assert after > before


def test_a_replayed_write_is_refused_on_the_air_and_the_terminal_stays_usable() -> None:
    with World() as world:
        world.associate()
        pay(world, "visa")
        link = world.app.link
        assert link is not None
        [answer] = [c for c in link.sent if isinstance(c, AuthorisationResponse)]
        frames = list(fragment(encode(answer), answer.id, link.endpoint.att_mtu))

        async def replay_then_diagnose() -> list[object]:
            await link.write_frames(frames)  # the captured writes, sent again
            refusal = await link.next_event(5.0)
            await link.send(DiagnosisRequest())
            return [refusal, await link.next_event(5.0)]

        refusal, diagnosis = world.run(replay_then_diagnose())
        assert isinstance(refusal, Error)
        assert (refusal.code, refusal.in_reply_to) == ("replayed_command", None)
        assert isinstance(diagnosis, DiagnosisResponse)
        assert world.store.invoice(pay(world, "mastercard")).status == "paid"


@pytest.mark.parametrize("card", ["visa", "mastercard", "amex", "cb_visa"])
def test_every_brand_authenticates_with_its_issuers_keys(card: str) -> None:
    with World() as world:
        world.associate()
        pay(world, card)
        [request] = phone_side_requests(world)
        assert len(request.emv["9F26"]) == 16
        logged = [r for r in world.backend.request_log if r.path.endswith("/authorisation")]
        assert json.loads(logged[-1].response_body)["arpc"]


@pytest.mark.parametrize(
    ("field", "forged"),
    [("cvm", "offline_pin"), ("entry_mode", "chip"), ("entry_mode", "telepathy"), ("brand", "CB")],
)
def test_a_relay_cannot_rewrite_how_the_card_was_read_or_verified(field: str, forged: str) -> None:
    """The phone relays the terminal's request: what the terminal sealed with the card data
    (entry mode, cardholder verification, brand) wins over what the relay claims."""
    with World() as world:
        world.associate()
        number = world.unpaid_invoice(at_most_cents=5000)
        assert number is not None
        genuine = world.app.backend.authorise

        async def forging(payment_id: str, body: dict[str, Any]) -> dict[str, Any]:
            return await genuine(payment_id, {**body, field: forged})

        world.app.backend.authorise = forging  # type: ignore[method-assign,assignment]
        world.start_payment(number)
        world.tap("visa")
        outcome = world.finish_payment()
        assert outcome.result == "declined"
        assert world.store.invoice(number).status == "unpaid"
