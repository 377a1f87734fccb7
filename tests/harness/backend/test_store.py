from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest

from harness.backend import BackendError, BackendStore, Processor
from harness.backend.processor import AuthorisationRequest
from harness.backend.store import BillingSettings, Invoice, Merchant, Payment

if TYPE_CHECKING:
    from tests.harness.backend.conftest import SealCard

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


def test_payment_defaults_to_the_balance_due_with_deterministic_transaction_ids() -> None:
    def transaction_ids(seed: int) -> list[str | None]:
        store = new_store(seed)
        invoice = new_invoice(store)
        payments = [store.start_tpe_payment(invoice.number, None, "SIM0001", NOW) for _ in "ab"]
        assert all(p.amount_cents == 4250 for p in payments)
        # a new attempt replaces a pending one that was never authorised (nothing charged)
        assert [p.status for p in payments] == ["aborted", "pending"]
        return [p.transaction_id for p in payments]

    ids = transaction_ids(1)
    assert ids == transaction_ids(1)
    assert ids != transaction_ids(2)
    assert len(set(ids)) == 2
    assert all(i is not None and len(i) == 13 and i.startswith("T") for i in ids)


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
