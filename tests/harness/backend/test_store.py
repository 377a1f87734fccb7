from __future__ import annotations

import os
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest

from harness.backend import BackendError, BackendStore, Processor
from harness.backend.processor import AuthorisationRequest, CardState, IssuerCard
from harness.backend.store import (
    AUTHORISATION_HOLD,
    BillingSettings,
    Invoice,
    Merchant,
    Payment,
    Receipts,
    pan_like_spans,
    redact_pans,
)

if TYPE_CHECKING:
    from tests.harness.backend.conftest import MakeProcessor, SealCard

NOW = datetime(2026, 12, 3, 9, 30, tzinfo=timezone(timedelta(hours=1)))
DAY = NOW.date()
VISA = "4242424242424242"
REFUSED = "4000000000000002"


def new_store(seed: int = 1) -> BackendStore:
    store = BackendStore(
        Merchant("M-0001", "Plomberie Durand", "Lyon", "1234567"),
        BillingSettings(tpe_enabled=True),
        seed=seed,
    )
    store.associate_terminal("SIM0001", "TPE-BLE-1", "1.4.2", NOW)
    return store


def new_invoice(store: BackendStore, amount_cents: int = 4250, day: date = DAY) -> Invoice:
    customer = store.add_customer("Mme Lucie Bernard", city="Lyon")
    return store.add_invoice(
        customer.id, amount_cents, issue_date=day, due_date=day + timedelta(days=30)
    )


def without_atc(state: CardState) -> CardState:
    """The issuer's state but for the last ATC it saw (which every verified ARQC moves)."""
    return replace(state, last_atc=None)


def authorise(
    store: BackendStore, processor: Processor, seal_for: SealCard, payment: Payment, pan: str
) -> str:
    assert payment.transaction_id is not None
    request = AuthorisationRequest(
        transaction_id=payment.transaction_id,
        amount_cents=payment.amount_cents,
        currency="EUR",
        entry_mode="chip",
        brand="VISA",
        card_data=seal_for(pan, payment.transaction_id, payment.amount_cents),
        emv=seal_for.emv(pan, payment.amount_cents),
    )
    return store.authorise(payment.id, request, processor, NOW)[1].response_code


def test_ids_and_invoice_numbers_follow_each_other_per_year() -> None:
    store = new_store()
    first = new_invoice(store, day=date(2026, 12, 30))
    second = new_invoice(store, day=date(2026, 12, 31))
    next_year = new_invoice(store, day=date(2027, 1, 2))
    assert list(store.customers) == ["C-0001", "C-0002", "C-0003"]
    assert [first.number, second.number, next_year.number] == [
        "F-2026-0001",
        "F-2026-0002",
        "F-2027-0001",
    ]
    assert first.status == "unpaid"
    assert first.balance_due_cents == 4250


def test_invoice_needs_a_known_customer_and_a_positive_amount() -> None:
    store = new_store()
    with pytest.raises(BackendError, match="customer_not_found"):
        store.add_invoice("C-0404", 100, issue_date=DAY, due_date=DAY)
    customer = store.add_customer("SARL Martin")
    with pytest.raises(BackendError, match="invalid_amount"):
        store.add_invoice(customer.id, 0, issue_date=DAY, due_date=DAY)


def test_payment_defaults_to_the_balance_due_with_transaction_ids_unique_across_stores() -> None:
    def transaction_ids(seed: int) -> list[str | None]:
        store = new_store(seed)
        invoice = new_invoice(store)
        payments = [store.start_tpe_payment(invoice.number, None, "SIM0001", NOW) for _ in "ab"]
        assert all(p.amount_cents == 4250 for p in payments)
        # a new attempt replaces a pending one that was never authorised (nothing charged)
        assert [p.status for p in payments] == ["aborted", "pending"]
        return [p.transaction_id for p in payments]

    ids = transaction_ids(1)
    again = transaction_ids(1)  # a fresh backend, same seed: ids a terminal has not seen
    assert not set(ids) & set(again)
    assert len(set(ids)) == 2
    assert all(i is not None and len(i) == 13 and i.startswith("T") for i in ids)


def test_a_transaction_id_is_never_all_decimal(monkeypatch: pytest.MonkeyPatch) -> None:
    """48 random bits whose hex digits happen to be all decimal would print like a card
    number on the receipt: the first digit becomes a letter."""
    store = new_store()
    invoice = new_invoice(store)
    monkeypatch.setattr(os, "urandom", lambda n: bytes.fromhex("123456789012")[:n])
    payment = store.start_tpe_payment(invoice.number, None, "SIM0001", NOW)
    monkeypatch.undo()
    assert payment.transaction_id == "Ta23456789012"


@pytest.mark.parametrize("amount", [0, -100, 12.5, "12", True, 4251])
def test_payment_amount_must_be_whole_positive_cents_within_the_balance(amount: object) -> None:
    store = new_store()
    invoice = new_invoice(store)
    with pytest.raises(BackendError, match="invalid_amount"):
        store.start_tpe_payment(invoice.number, amount, "SIM0001", NOW)  # type: ignore[arg-type]


def test_payment_needs_tpe_enabled_an_associated_terminal_and_an_unpaid_invoice() -> None:
    store = new_store()
    invoice = new_invoice(store)
    with pytest.raises(BackendError, match="terminal_not_associated"):
        store.start_tpe_payment(invoice.number, None, "SIM9999", NOW)
    store.record_offline_payment(invoice.number, 4250, "transfer", NOW)
    with pytest.raises(BackendError, match="invoice_already_paid"):
        store.start_tpe_payment(invoice.number, None, "SIM0001", NOW)
    store.billing.tpe_enabled = False
    with pytest.raises(BackendError, match="tpe_disabled"):
        store.start_tpe_payment(invoice.number, None, "SIM0001", NOW)


def test_terminal_association_is_idempotent() -> None:
    store = new_store()
    terminal, created = store.associate_terminal("SIM0001", "TPE-BLE-1", "1.5.0", NOW)
    assert not created
    assert terminal.firmware == "1.5.0"
    assert list(store.terminals) == ["SIM0001"]


def test_partial_payments_then_the_rest(processor: Processor, seal_for: SealCard) -> None:
    store = new_store()
    invoice = new_invoice(store)
    first = store.start_tpe_payment(invoice.number, 1250, "SIM0001", NOW)
    assert authorise(store, processor, seal_for, first, VISA) == "00"
    store.record_result(first.id, str(first.transaction_id), "approved", NOW)
    assert (invoice.status, invoice.balance_due_cents) == ("partially_paid", 3000)
    rest = store.start_tpe_payment(invoice.number, None, "SIM0001", NOW)
    assert rest.amount_cents == 3000
    assert authorise(store, processor, seal_for, rest, VISA) == "00"
    store.record_result(rest.id, str(rest.transaction_id), "approved", NOW)
    assert (invoice.status, invoice.balance_due_cents) == ("paid", 0)
    assert [p.status for p in invoice.payments] == ["captured", "captured"]
    assert all(p.authorisation_code and len(p.authorisation_code) == 6 for p in invoice.payments)


def test_two_payments_cannot_both_pay_the_same_balance(
    processor: Processor, seal_for: SealCard
) -> None:
    store = new_store()
    invoice = new_invoice(store)
    first = store.start_tpe_payment(invoice.number, None, "SIM0001", NOW)
    authorise(store, processor, seal_for, first, VISA)
    with pytest.raises(BackendError, match="payment_in_progress"):
        store.start_tpe_payment(invoice.number, None, "SIM0001", NOW)
    store.record_result(first.id, str(first.transaction_id), "approved", NOW)
    with pytest.raises(BackendError, match="invoice_already_paid"):
        store.start_tpe_payment(invoice.number, None, "SIM0001", NOW)
    assert invoice.balance_due_cents == 0
    assert [p.status for p in invoice.payments] == ["captured"]


def test_a_stale_pending_payment_cannot_be_authorised_after_it_was_replaced(
    processor: Processor, seal_for: SealCard
) -> None:
    store = new_store()
    invoice = new_invoice(store)
    stale = store.start_tpe_payment(invoice.number, None, "SIM0001", NOW)
    fresh = store.start_tpe_payment(invoice.number, None, "SIM0001", NOW)
    with pytest.raises(BackendError, match="already_authorised"):
        authorise(store, processor, seal_for, stale, VISA)
    authorise(store, processor, seal_for, fresh, VISA)
    store.record_result(fresh.id, str(fresh.transaction_id), "approved", NOW)
    assert invoice.balance_due_cents == 0
    assert [p.status for p in invoice.payments] == ["aborted", "captured"]


@pytest.mark.parametrize(
    ("pan", "result", "payment_status", "response_code"),
    [
        (VISA, "declined", "reversed", "00"),
        (VISA, "aborted", "reversed", "00"),
        (REFUSED, "declined", "declined", "05"),
        (REFUSED, "aborted", "declined", "05"),
        (None, "declined", "declined", None),  # refused by the terminal or card, offline
        (None, "aborted", "aborted", None),  # cancelled before any authorisation
    ],
)
def test_anything_but_two_approvals_leaves_the_invoice_unpaid(
    processor: Processor,
    seal_for: SealCard,
    pan: str | None,
    result: str,
    payment_status: str,
    response_code: str | None,
) -> None:
    store = new_store()
    invoice = new_invoice(store)
    payment = store.start_tpe_payment(invoice.number, None, "SIM0001", NOW)
    if pan is not None:
        authorise(store, processor, seal_for, payment, pan)
    store.record_result(payment.id, str(payment.transaction_id), result, NOW)  # type: ignore[arg-type]
    assert payment.status == payment_status
    assert (invoice.status, invoice.balance_due_cents) == ("unpaid", 4250)
    assert [(a.payment_id, a.outcome, a.response_code) for a in invoice.attempts] == [
        (payment.id, payment_status, response_code)
    ]


def test_results_are_idempotent_and_contradictions_refused(
    processor: Processor, seal_for: SealCard
) -> None:
    store = new_store()
    invoice = new_invoice(store)
    payment = store.start_tpe_payment(invoice.number, None, "SIM0001", NOW)
    transaction = str(payment.transaction_id)
    with pytest.raises(BackendError, match="not_authorised"):
        store.record_result(payment.id, transaction, "approved", NOW)
    authorise(store, processor, seal_for, payment, VISA)
    with pytest.raises(BackendError, match="transaction_mismatch"):
        store.record_result(payment.id, "T000000000000", "approved", NOW)
    store.record_result(payment.id, transaction, "approved", NOW)
    store.record_result(payment.id, transaction, "approved", NOW)
    assert invoice.balance_due_cents == 0
    with pytest.raises(BackendError, match="result_conflict"):
        store.record_result(payment.id, transaction, "aborted", NOW)
    assert payment.status == "captured"


def test_store_keeps_no_pan(processor: Processor, seal_for: SealCard) -> None:
    store = new_store()
    for pan in (VISA, REFUSED, "5555555555554444", "4000000000000069"):
        invoice = new_invoice(store)
        payment = store.start_tpe_payment(invoice.number, None, "SIM0001", NOW)
        authorise(store, processor, seal_for, payment, pan)
        assert payment.masked_pan == "************" + pan[-4:]
        assert pan not in repr(store)
        assert pan not in repr(vars(store))


# -- the issuer's memory: PSD2 counters and the online PIN try counter --------------------------

CB_VISA = "4000002500001001"
ONLINE_PIN = "4001000360000005"


def pay(
    store: BackendStore,
    processor: Processor,
    seal_for: SealCard,
    pan: str,
    amount_cents: int,
    *,
    entry_mode: str = "contactless",
    cvm: str = "none",
    pin: str | None = None,
    terminal: str = "approved",
) -> Payment:
    """One payment of a fresh invoice as the terminal runs it: authorisation, then the
    terminal's result (``terminal`` if the issuer approved, ``declined`` otherwise)."""
    invoice = new_invoice(store, amount_cents)
    payment = store.start_tpe_payment(invoice.number, None, "SIM0001", NOW)
    transaction = str(payment.transaction_id)
    request = AuthorisationRequest(
        transaction_id=transaction,
        amount_cents=amount_cents,
        currency="EUR",
        entry_mode=entry_mode,
        brand="CB",
        card_data=seal_for(pan, transaction, amount_cents, pin=pin),
        emv=seal_for.emv(pan, amount_cents),
        cvm=cvm,
    )
    _, decision = store.authorise(payment.id, request, processor, NOW)
    result = terminal if decision.approved else "declined"
    store.record_result(payment.id, transaction, result, NOW)  # type: ignore[arg-type]
    return payment


def test_psd2_counters_move_on_capture_only(
    make_processor: MakeProcessor, seal_for: SealCard
) -> None:
    # A bank with a lower ceiling than the regulation's: 3 contactless payments without PIN.
    card = IssuerCard("cb", CB_VISA, "VISA", "2029-12", "00", psd2_max_consecutive=3)
    processor, store = make_processor(card), new_store()

    def tap(amount: int = 1000, **options: str) -> str:
        payment = pay(store, processor, seal_for, CB_VISA, amount, **options)
        return f"{payment.response_code} {payment.status}"

    assert [tap(), tap()] == ["00 captured", "00 captured"]
    assert without_atc(store.card_states["cb"]) == CardState(3, 2, 2000)
    assert tap(terminal="aborted") == "00 reversed"  # approved, then cancelled on the terminal
    assert without_atc(store.card_states["cb"]) == CardState(
        3, 2, 2000
    )  # a reversal does not count
    assert tap() == "00 captured"  # the third one without PIN
    assert tap() == "1A declined"  # the fourth asks for the PIN
    assert tap(cvm="cdcvm") == "00 captured"  # verified by a phone: outside the counters...
    assert tap() == "1A declined"  # ...which it does not reset either
    assert tap(entry_mode="chip", cvm="offline_pin", terminal="aborted") == "00 reversed"
    assert tap() == "1A declined"  # a PIN payment that was reversed resets nothing
    assert without_atc(store.card_states["cb"]) == CardState(3, 3, 3000)
    assert tap(4800, entry_mode="chip", cvm="offline_pin") == "00 captured"  # the SCA retry
    assert without_atc(store.card_states["cb"]) == CardState(3, 0, 0)
    assert tap() == "00 captured"
    assert without_atc(store.card_states["cb"]) == CardState(3, 1, 1000)
    assert store.check_invariants() == []


def test_psd2_cumulative_amount_since_the_last_pin(
    make_processor: MakeProcessor, seal_for: SealCard
) -> None:
    card = IssuerCard("cb", CB_VISA, "VISA", "2029-12", "00", psd2_max_cumulative_cents=10000)
    processor, store = make_processor(card), new_store()
    for amount in (4500, 4500):
        assert pay(store, processor, seal_for, CB_VISA, amount).status == "captured"
    assert pay(store, processor, seal_for, CB_VISA, 1001).response_code == "1A"
    assert pay(store, processor, seal_for, CB_VISA, 1000).response_code == "00"  # 100,00 €
    assert without_atc(store.card_states["cb"]) == CardState(3, 3, 10000)
    assert pay(store, processor, seal_for, CB_VISA, 1).response_code == "1A"


def test_online_pin_tries_are_kept_across_payments_until_blocked(
    make_processor: MakeProcessor, seal_for: SealCard
) -> None:
    card = IssuerCard("pin", ONLINE_PIN, "VISA", "2029-12", "00", pin="4242")
    processor, store = make_processor(card), new_store()

    def online(pin: str) -> tuple[str | None, int]:
        payment = pay(store, processor, seal_for, ONLINE_PIN, 8000, cvm="online_pin", pin=pin)
        return payment.response_code, store.card_states["pin"].pin_tries

    assert online("0000") == ("55", 2)
    assert online("4242") == ("00", 3)
    assert [online("1111"), online("2222"), online("3333")] == [("55", 2), ("55", 1), ("75", 0)]
    assert online("4242") == ("75", 0)
    offline = pay(
        store, processor, seal_for, ONLINE_PIN, 8000, entry_mode="chip", cvm="offline_pin"
    )
    assert offline.response_code == "75"
    assert card.pin_tries == 3  # the issuer's counter lives in the store, not in the card record
    invoices = [i for i in store.invoices.values() if i.attempts]
    assert [i.attempts[0].response_code for i in invoices] == ["55", "55", "55", "75", "75", "75"]


def test_a_refused_request_does_not_touch_the_pin_counter(
    make_processor: MakeProcessor, seal_for: SealCard
) -> None:
    card = IssuerCard("pin", ONLINE_PIN, "VISA", "2029-12", "00", pin="4242")
    processor, store = make_processor(card), new_store()
    payment = pay(store, processor, seal_for, ONLINE_PIN, 8000, cvm="online_pin", pin="0000")
    transaction = str(payment.transaction_id)
    replay = AuthorisationRequest(
        transaction, 8000, "EUR", "chip", "VISA", seal_for(ONLINE_PIN, transaction, 8000, pin="1")
    )
    with pytest.raises(BackendError, match="already_authorised"):
        store.authorise(payment.id, replay, processor, NOW)
    assert store.card_states["pin"].pin_tries == 2


# -- partial payments -----------------------------------------------------------------------------


def test_card_pays_exactly_what_the_cheque_left(processor: Processor, seal_for: SealCard) -> None:
    store = new_store()
    invoice = new_invoice(store, 18600)
    store.record_offline_payment(invoice.number, 10000, "cheque", NOW)
    assert (invoice.status, invoice.balance_due_cents) == ("partially_paid", 8600)
    payment = store.start_tpe_payment(invoice.number, None, "SIM0001", NOW)
    assert payment.amount_cents == 8600
    assert authorise(store, processor, seal_for, payment, VISA) == "00"
    store.record_result(payment.id, str(payment.transaction_id), "approved", NOW)
    assert (invoice.status, invoice.balance_due_cents) == ("paid", 0)
    assert [(p.method, p.amount_cents) for p in invoice.payments] == [
        ("cheque", 10000),
        ("tpe", 8600),
    ]
    assert store.check_invariants() == []


def test_no_cheque_while_card_money_is_held(processor: Processor, seal_for: SealCard) -> None:
    store = new_store()
    invoice = new_invoice(store)
    payment = store.start_tpe_payment(invoice.number, None, "SIM0001", NOW)
    authorise(store, processor, seal_for, payment, VISA)
    with pytest.raises(BackendError, match="payment_in_progress"):
        store.record_offline_payment(invoice.number, 4250, "cheque", NOW)
    assert store.check_invariants(settled=False) == []


# -- receipts -----------------------------------------------------------------------------------

TICKET = (
    "PLOMBERIE DURAND",
    "LYON",
    "LE 03/12/26 A 09:30:00",
    "CB",
    "A0000000421010",
    "CONTRAT 1234567",
    "************4242",
    "DEBIT",
    "SANS CONTACT",
    "MONTANT = 42,50 EUR",
    "AUTORISATION 123456",
)


def test_receipts_are_kept_with_the_result(processor: Processor, seal_for: SealCard) -> None:
    store = new_store()
    payment = store.start_tpe_payment(new_invoice(store).number, None, "SIM0001", NOW)
    authorise(store, processor, seal_for, payment, VISA)
    with pytest.raises(BackendError, match="receipt_not_found"):
        store.receipts(payment.id)
    receipts = Receipts(
        merchant=(*TICKET, "TICKET COMMERCANT"), customer=(*TICKET, "TICKET CLIENT")
    )
    store.record_result(payment.id, str(payment.transaction_id), "approved", NOW, receipts=receipts)
    kept = store.receipts(payment.id)
    assert kept.text("customer") == "\n".join((*TICKET, "TICKET CLIENT"))
    assert kept.text("merchant") == "\n".join((*TICKET, "TICKET COMMERCANT"))


def test_a_repeated_result_may_bring_missing_receipts_but_not_other_ones(
    processor: Processor, seal_for: SealCard
) -> None:
    store = new_store()
    payment = store.start_tpe_payment(new_invoice(store).number, None, "SIM0001", NOW)
    transaction = str(payment.transaction_id)
    authorise(store, processor, seal_for, payment, VISA)
    store.record_result(payment.id, transaction, "approved", NOW)
    first = Receipts(customer=TICKET)
    store.record_result(payment.id, transaction, "approved", NOW, receipts=first)
    store.record_result(payment.id, transaction, "approved", NOW, receipts=first)
    with pytest.raises(BackendError, match="result_conflict"):
        store.record_result(payment.id, transaction, "approved", NOW, receipts=Receipts(TICKET))
    assert store.receipts(payment.id) == first


@pytest.mark.parametrize(
    "line",
    [
        "4242424242424242",
        "CARTE 4242424242424242",
        "PAN:5555555555554444",
        "4242 4242 4242 4242",
        "3782-822463-10005",
        "N4000002500001001",
        "123456789012",  # 12 digits: as long as the shortest card numbers
    ],
)
def test_receipt_with_a_full_card_number_is_refused(line: str) -> None:
    with pytest.raises(BackendError, match="receipt_contains_pan") as error:
        Receipts(customer=(*TICKET, line))
    assert error.value.field == "receipts"
    assert "4242424242424242" not in error.value.message
    assert "ligne 12" in error.value.message


@pytest.mark.parametrize(
    "line",
    [
        "A0000000031010",  # the AID, printed on every CB receipt
        "AID A000000025010801",
        "CRYPTOGRAMME 1A2B3C4D5E6F7081",
        "************4242",
        "424242******4242",
        "12345678901",  # 11 digits
        "TEL +33 4 72 00 00 00",
        "0033 4 72 00 00 00",
        "LE 03/12/2026 A 09:30:15",
        "TRANSACTION T0a1b2c3d4e5f",
        "MONTANT = 1 234,56 EUR",
    ],
)
def test_receipt_lines_that_are_not_card_numbers_pass(line: str) -> None:
    assert pan_like_spans(line) == []
    Receipts(merchant=(line,))


@pytest.mark.parametrize(
    ("merchant", "customer"),
    [
        (("x" * 49,), None),  # wider than a receipt roll
        (("x",) * 41, None),
        (None, ("DEUX\nLIGNES",)),
        (None, (42,)),
    ],
)
def test_receipt_shape_is_checked(merchant: object, customer: object) -> None:
    with pytest.raises(BackendError, match="invalid_field"):
        Receipts(merchant=merchant, customer=customer)  # type: ignore[arg-type]


def test_widest_and_longest_receipts_are_accepted() -> None:
    Receipts(merchant=("x" * 48,) * 40)


def test_logs_mask_card_numbers_but_the_last_four_digits() -> None:
    text = '{"lines": ["4242 4242 4242 4242", "PAN 5555555555554444"], "aid": "A0000000031010"}'
    assert redact_pans(text) == (
        '{"lines": ["**** **** **** 4242", "PAN ************4444"], "aid": "A0000000031010"}'
    )


def test_logs_keep_zero_padded_emv_amounts() -> None:
    text = '"emv": {"9F02": "000000004250", "9F03": "000000000000"}'
    assert redact_pans(text) == text


# -- invariants ---------------------------------------------------------------------------------


@pytest.fixture
def busy_store(processor: Processor, seal_for: SealCard) -> BackendStore:
    """A store after a paid, a partly paid, a declined, a reversed and a held payment."""
    store = new_store()
    outcomes: list[tuple[str, str | None, int | None]] = [
        (VISA, "approved", None),
        (VISA, "approved", 2000),
        (REFUSED, "declined", None),
    ]
    outcomes += [(VISA, "aborted", None), (VISA, None, None)]
    for pan, result, amount in outcomes:
        invoice = new_invoice(store)
        payment = store.start_tpe_payment(invoice.number, amount, "SIM0001", NOW)
        authorise(store, processor, seal_for, payment, pan)
        if result is not None:
            store.record_result(payment.id, str(payment.transaction_id), result, NOW)  # type: ignore[arg-type]
    store.record_offline_payment(new_invoice(store).number, 1000, "cheque", NOW)
    return store


def test_once_settled_an_approval_never_confirmed_is_money_held(busy_store: BackendStore) -> None:
    (problem,) = busy_store.check_invariants()
    assert "authorised (money held) but never confirmed by the terminal" in problem


def test_a_consistent_store_has_no_violation(busy_store: BackendStore) -> None:
    assert busy_store.check_invariants(settled=False) == []
    assert {i.status for i in busy_store.invoices.values()} == {"paid", "partially_paid", "unpaid"}


def test_seeded_store_has_no_violation(store: BackendStore) -> None:
    assert {i.status for i in store.invoices.values()} == {"paid", "partially_paid", "unpaid"}
    assert store.check_invariants() == []


def test_invariants_catch_a_balance_that_does_not_add_up(busy_store: BackendStore) -> None:
    invoice = busy_store.invoice("F-2026-0002")  # 42,50 € less a 20 € card payment
    invoice.balance_due_cents -= 100
    assert busy_store.check_invariants(settled=False) == [
        "invoice F-2026-0002: balance due 2150 cents, but amount 4250 - captured 2000 = 2250"
    ]


def test_invariants_catch_a_negative_balance(busy_store: BackendStore) -> None:
    invoice = busy_store.invoice("F-2026-0001")
    invoice.payments[0].amount_cents = 4300
    invoice.balance_due_cents = -50
    assert busy_store.check_invariants(settled=False) == [
        "invoice F-2026-0001: balance due is negative (-50 cents)"
    ]


def test_invariants_catch_a_capture_without_approval(busy_store: BackendStore) -> None:
    captured = busy_store.invoice("F-2026-0001").payments[0]
    captured.authorisation_code = None
    captured.response_code = "05"
    assert busy_store.check_invariants(settled=False) == [
        f"payment {captured.id}: captured card payment without an authorisation code",
        f"payment {captured.id}: captured card payment with response code '05', not '00'",
    ]


def test_invariants_ignore_cheques_without_authorisation(busy_store: BackendStore) -> None:
    cheque = busy_store.invoice("F-2026-0006").payments[0]
    assert (cheque.method, cheque.status, cheque.authorisation_code) == ("cheque", "captured", None)
    assert busy_store.check_invariants(settled=False) == []


def test_invariants_catch_money_held_on_a_paid_invoice(busy_store: BackendStore) -> None:
    invoice = busy_store.invoice("F-2026-0005")
    [held] = invoice.payments
    assert held.status == "authorised"
    cheque = Payment(
        id="P-0099",
        invoice_number=invoice.number,
        method="cheque",
        amount_cents=invoice.amount_cents,
        currency="EUR",
        status="captured",
        created_at=NOW,
        updated_at=NOW,
    )
    invoice.payments.append(cheque)  # a cheque slipped past the store's own checks
    busy_store.payments[cheque.id] = cheque
    invoice.balance_due_cents = 0
    assert busy_store.check_invariants(settled=False) == [
        f"payment {held.id}: still authorised (money held) on invoice F-2026-0005, which is paid"
    ]


def test_invariants_catch_a_payment_missing_from_its_invoice(busy_store: BackendStore) -> None:
    declined = busy_store.invoice("F-2026-0003").payments.pop()
    assert busy_store.check_invariants(settled=False) == [
        f"payment {declined.id}: not listed on invoice F-2026-0003"
    ]


# -- the SCA retry: the same payment, card inserted and PIN typed -------------------------------


@pytest.fixture
def sca_card(make_processor: MakeProcessor) -> Processor:
    return make_processor(
        IssuerCard("cb", CB_VISA, "VISA", "2029-12", "00", psd2_max_consecutive=0)
    )


def request(
    payment: Payment, seal_for: SealCard, entry_mode: str, cvm: str
) -> AuthorisationRequest:
    transaction = str(payment.transaction_id)
    return AuthorisationRequest(
        transaction,
        payment.amount_cents,
        "EUR",
        entry_mode,
        "CB",
        seal_for(CB_VISA, transaction, payment.amount_cents),
        seal_for.emv(CB_VISA, payment.amount_cents),
        cvm=cvm,
    )


def test_after_a_soft_decline_the_same_payment_goes_on_with_the_pin(
    sca_card: Processor, seal_for: SealCard
) -> None:
    store = new_store()
    invoice = new_invoice(store, 2990)
    payment = store.start_tpe_payment(invoice.number, None, "SIM0001", NOW)
    tap = request(payment, seal_for, "contactless", "none")
    assert store.authorise(payment.id, tap, sca_card, NOW)[1].response_code == "1A"
    assert payment.status == "declined"
    inserted = request(payment, seal_for, "chip", "offline_pin")
    assert store.authorise(payment.id, inserted, sca_card, NOW)[1].response_code == "00"
    assert (payment.status, payment.entry_mode, payment.cvm) == (
        "authorised",
        "chip",
        "offline_pin",
    )
    with pytest.raises(BackendError, match="already_authorised"):
        store.authorise(payment.id, inserted, sca_card, NOW)
    store.record_result(payment.id, str(payment.transaction_id), "approved", NOW)
    assert (invoice.status, payment.status) == ("paid", "captured")
    assert [(a.payment_id, a.response_code) for a in invoice.attempts] == [(payment.id, "1A")]
    assert without_atc(store.card_states["cb"]) == CardState(3, 0, 0)
    assert store.check_invariants() == []


def test_no_second_authorisation_after_a_hard_decline(
    make_processor: MakeProcessor, seal_for: SealCard
) -> None:
    processor = make_processor(IssuerCard("cb", CB_VISA, "VISA", "2029-12", "05"))
    store = new_store()
    payment = store.start_tpe_payment(new_invoice(store).number, None, "SIM0001", NOW)
    store.authorise(payment.id, request(payment, seal_for, "contactless", "none"), processor, NOW)
    with pytest.raises(BackendError, match="already_authorised"):
        store.authorise(
            payment.id, request(payment, seal_for, "chip", "offline_pin"), processor, NOW
        )


def test_no_sca_retry_once_the_terminal_has_ended_the_payment(
    sca_card: Processor, seal_for: SealCard
) -> None:
    store = new_store()
    payment = store.start_tpe_payment(new_invoice(store).number, None, "SIM0001", NOW)
    store.authorise(payment.id, request(payment, seal_for, "contactless", "none"), sca_card, NOW)
    store.record_result(payment.id, str(payment.transaction_id), "declined", NOW)
    with pytest.raises(BackendError, match="already_authorised"):
        store.authorise(
            payment.id, request(payment, seal_for, "chip", "offline_pin"), sca_card, NOW
        )


def test_no_sca_retry_once_a_newer_payment_replaced_it(
    sca_card: Processor, seal_for: SealCard
) -> None:
    store = new_store()
    invoice = new_invoice(store)
    old = store.start_tpe_payment(invoice.number, None, "SIM0001", NOW)
    store.authorise(old.id, request(old, seal_for, "contactless", "none"), sca_card, NOW)
    new = store.start_tpe_payment(invoice.number, None, "SIM0001", NOW)
    store.authorise(new.id, request(new, seal_for, "chip", "offline_pin"), sca_card, NOW)
    with pytest.raises(BackendError, match="already_authorised"):
        store.authorise(old.id, request(old, seal_for, "chip", "offline_pin"), sca_card, NOW)
    store.record_result(new.id, str(new.transaction_id), "approved", NOW)
    assert [p.status for p in invoice.payments] == ["declined", "captured"]
    assert store.check_invariants() == []


def test_an_approval_never_confirmed_lapses_and_frees_the_invoice(
    processor: Processor, seal_for: SealCard
) -> None:
    store = new_store()
    invoice = new_invoice(store)
    held = store.start_tpe_payment(invoice.number, None, "SIM0001", NOW)
    assert authorise(store, processor, seal_for, held, VISA) == "00"
    # the terminal's word never comes (link lost after the approval)
    with pytest.raises(BackendError, match="payment_in_progress"):
        store.start_tpe_payment(invoice.number, None, "SIM0001", NOW + timedelta(minutes=9))
    later = NOW + AUTHORISATION_HOLD + timedelta(seconds=1)
    fresh = store.start_tpe_payment(invoice.number, None, "SIM0001", later)
    assert held.status == "reversed"
    assert [a.payment_id for a in invoice.attempts] == [held.id]
    assert fresh.status == "pending"
    with pytest.raises(BackendError, match="result_conflict"):  # too late to confirm it now
        store.record_result(held.id, str(held.transaction_id), "approved", later)
    assert invoice.balance_due_cents == invoice.amount_cents
    assert store.check_invariants() == []


# -- saved cards: invariants ---------------------------------------------------------------------


@pytest.fixture
def cards_store(processor: Processor, seal_for: SealCard) -> BackendStore:
    """A store where a customer saved a Visa and paid an invoice with it."""
    store = new_store()
    invoice = new_invoice(store)
    capture = store.start_card_capture(invoice.customer_id, "SIM0001", NOW)
    request = AuthorisationRequest(
        transaction_id=capture.transaction_id,
        amount_cents=0,
        currency="EUR",
        entry_mode="chip",
        brand="VISA",
        card_data=seal_for(VISA, capture.transaction_id, 0),
        emv=seal_for.emv(VISA, 0),
    )
    store.verify_card(capture.id, request, processor, NOW)
    store.record_capture_result(capture.id, capture.transaction_id, "approved", NOW)
    [method] = store.payment_methods.values()
    payment, _ = store.charge_saved_card(invoice.number, method.id, processor, NOW)
    assert (payment.status, invoice.status) == ("captured", "paid")
    return store


def test_a_store_with_saved_cards_has_no_violation(cards_store: BackendStore) -> None:
    assert cards_store.check_invariants() == []


def test_invariants_catch_a_saved_card_of_no_customer(cards_store: BackendStore) -> None:
    [method] = cards_store.payment_methods.values()
    cards_store.payment_methods[method.id] = replace(method, customer_id="C-0404")
    assert cards_store.check_invariants() == [
        f"payment P-0001: charges saved card {method.id} of customer C-0404, not of the "
        "invoice's customer C-0001",
        f"saved card {method.id}: customer C-0404 does not exist",
    ]


def test_invariants_catch_one_card_saved_twice_for_a_customer(cards_store: BackendStore) -> None:
    [method] = cards_store.payment_methods.values()
    twin = replace(method, id="pm_twin")
    cards_store.payment_methods[twin.id] = twin
    assert cards_store.check_invariants() == [
        f"saved card pm_twin: same card as {method.id} for customer {method.customer_id}"
    ]


def test_invariants_catch_a_saved_card_no_verification_backs(cards_store: BackendStore) -> None:
    [capture] = cards_store.captures.values()
    capture.response_code = "05"
    assert cards_store.check_invariants() == [
        f"saved card {capture.payment_method_id}: not saved by a card capture the issuer verified"
    ]


def test_invariants_catch_a_charge_of_a_card_on_no_record(cards_store: BackendStore) -> None:
    [method] = cards_store.payment_methods.values()
    del cards_store.payment_methods[method.id]
    assert cards_store.check_invariants() == [
        f"payment P-0001: charges unknown saved card {method.id!r}",
        f"card capture CAP-0001: saved, but its card {method.id!r} is on no customer record",
    ]


def test_invariants_catch_a_charge_captured_without_approval(cards_store: BackendStore) -> None:
    [payment] = cards_store.payments.values()
    payment.response_code = "51"
    assert cards_store.check_invariants() == [
        f"payment {payment.id}: captured card payment with response code '51', not '00'"
    ]


def test_capture_flow_in_the_store_keeps_no_pan(cards_store: BackendStore) -> None:
    assert VISA not in repr(cards_store)
    assert VISA not in repr(vars(cards_store))
    [method] = cards_store.payment_methods.values()
    assert (method.card_ref, method.last4) == ("visa", "4242")
