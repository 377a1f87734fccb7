"""The app's backend client under backend faults: idempotency keys, retries with backoff,
the offline phone. Everything runs on a virtual-time loop (looptime), as in a World: backoff
waits, slow answers and timeouts cost loop time, not wall time."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import looptime
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from harness.app.backend_client import (
    NO_RETRY,
    OFFLINE_MESSAGE,
    BackendClient,
    BackendError,
    BackendUnreachable,
    RetryPolicy,
)
from harness.backend import BackendServer, load_processor, seed_store
from harness.backend.store import BackendStore

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
SCENARIO_NOW = datetime(2026, 12, 3, 9, 30, tzinfo=timezone(timedelta(hours=1)))
SERIAL = "SIM0001"
T = TypeVar("T")


class Rig:
    """A backend on a virtual-time loop, a client of it, and what the server saw."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.store: BackendStore = seed_store(FIXTURES)
        self.store.associate_terminal(SERIAL, "TPE-BLE-1", "1.4.2", SCENARIO_NOW)
        self.server = BackendServer(
            self.store,
            load_processor(FIXTURES),
            now=lambda: SCENARIO_NOW + timedelta(seconds=loop.time()),
        )
        self.clients: list[BackendClient] = []
        #: every request that reached the server: (method, path, Idempotency-Key)
        self.seen: list[tuple[str, str, str | None]] = []
        self.server.app.middlewares.insert(0, self._spy)
        self.run(self.server.start())
        self.number = next(i.number for i in self.store.invoices.values() if i.status == "unpaid")

    @web.middleware
    async def _spy(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.seen.append((request.method, request.path, request.headers.get("Idempotency-Key")))
        return await handler(request)

    def run(self, coroutine: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await coroutine

        return self.loop.run_until_complete(wrapped())

    def client(self, policy: RetryPolicy | None = None, seed: int = 7) -> BackendClient:
        client = BackendClient(self.server.url, policy, rng=random.Random(seed))
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            self.run(client.close())
        self.run(self.server.stop())
        self.loop.close()

    def call(
        self, client: BackendClient, operation: Callable[[BackendClient], Awaitable[T]]
    ) -> tuple[T, float]:
        """Run ``operation`` and return its result and the loop time it took."""
        started = self.loop.time()
        result = self.run(operation(client))
        return result, self.loop.time() - started

    def payments(self) -> list[Any]:
        return self.store.invoice(self.number).payments

    def statuses(self) -> list[tuple[int, str]]:
        return [(r.status, r.note) for r in self.server.request_log]


@pytest.fixture
def rig() -> Iterator[Rig]:
    rig = Rig(looptime.new_event_loop(start=0.0))
    try:
        yield rig
    finally:
        rig.close()


def waits(policy: RetryPolicy, seed: int, retries: int) -> float:
    """The backoff a client seeded with ``seed`` waits over ``retries`` retries."""
    rng = random.Random(seed)
    return sum(policy.backoff(n, rng) for n in range(1, retries + 1))


def create(number: str) -> Callable[[BackendClient], Awaitable[dict[str, Any]]]:
    return lambda client: client.create_payment(number, SERIAL)


# -- the retry policy ---------------------------------------------------------------------------


def test_backoff_doubles_up_to_its_cap_with_jitter_within_bounds() -> None:
    policy = RetryPolicy()
    assert (policy.attempts, policy.base_delay, policy.max_delay) == (4, 0.5, 8.0)
    assert (policy.request_timeout, policy.deadline) == (10.0, 25.0)
    rng = random.Random(1)
    for retry, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 8.0)):
        for _ in range(50):
            assert ceiling / 2 <= policy.backoff(retry, rng) <= ceiling
    steady = RetryPolicy(jitter=0.0)
    assert [steady.backoff(n, rng) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    # one seed, one history; another seed, other waits
    assert waits(policy, 3, 3) == waits(policy, 3, 3) != waits(policy, 4, 3)


@pytest.mark.parametrize(
    "bad",
    [
        {"attempts": 0},
        {"base_delay": -1.0},
        {"request_timeout": 0.0},
        {"jitter": 1.5},
        {"deadline": 0.0},
    ],
)
def test_a_nonsensical_policy_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**bad)


# -- idempotency keys -------------------------------------------------------------------------


def test_every_write_carries_a_fresh_uuid4_key_and_reads_none(rig: Rig) -> None:
    client = rig.client()
    rig.run(client.create_payment(rig.number, SERIAL))
    rig.run(client.create_payment(rig.number, SERIAL))  # the app restarted: a new operation
    rig.run(client.invoice(rig.number))
    rig.run(client.register_terminal(SERIAL, "TPE-BLE-1", "1.4.2"))
    (_, _, first), (_, _, second), read, terminal = rig.seen
    assert first is not None
    assert second is not None
    assert first != second
    assert uuid.UUID(first).version == uuid.UUID(second).version == 4
    assert read == ("GET", f"/api/invoices/{rig.number}", None)
    assert terminal[2] is not None  # honoured where not required
    # two operations, two payments: the second replaced the first (same terminal)
    assert [p.status for p in rig.payments()] == ["aborted", "pending"]


def test_a_caller_may_give_its_own_key_and_repeat_the_operation_later(rig: Rig) -> None:
    key = str(uuid.uuid4())
    first = rig.run(rig.client().create_payment(rig.number, SERIAL, idempotency_key=key))
    again = rig.run(rig.client().create_payment(rig.number, SERIAL, idempotency_key=key))
    assert again == first
    assert len(rig.payments()) == 1
    assert rig.statuses() == [(201, ""), (201, "replayed")]


# -- retries ------------------------------------------------------------------------------------


def test_a_503_is_retried_with_the_same_key_and_makes_one_payment(rig: Rig) -> None:
    rig.server.faults.fail("create_payment", status=503, times=2)
    client = rig.client(seed=11)
    payment, took = rig.call(client, create(rig.number))
    assert payment["status"] == "pending"
    assert len(rig.payments()) == 1
    assert client.attempts == 3
    assert [status for status, _ in rig.statuses()] == [503, 503, 201]
    keys = {key for _, _, key in rig.seen}
    assert len(keys) == 1
    assert None not in keys
    # the waits were the policy's backoff, in loop time
    assert took == pytest.approx(waits(client.policy, 11, 2), abs=1e-3)
    assert len(client.received) == 3  # the 503 bodies too (the leak scan reads them)


@pytest.mark.parametrize("status", [503, None], ids=["503", "connection cut"])
def test_an_answer_lost_after_the_store_applied_it_is_replayed_not_paid_twice(
    rig: Rig, status: int | None
) -> None:
    rig.server.faults.fail_after("POST /api/invoices/*/payments", status=status)
    client = rig.client()
    payment = rig.run(client.create_payment(rig.number, SERIAL))
    assert [p.id for p in rig.payments()] == [payment["payment_id"]]
    assert client.attempts == 2
    lost = 0 if status is None else 503
    assert [status for status, _ in rig.statuses()] == [lost, 201]
    assert rig.statuses()[1][1] == "replayed"
    assert rig.store.check_invariants(settled=False) == []


def test_a_slow_answer_is_retried_and_the_late_one_changes_nothing(rig: Rig) -> None:
    policy = RetryPolicy(request_timeout=5.0)
    rig.server.faults.delay("create_payment", seconds=30, times=1)
    client = rig.client(policy)
    payment, took = rig.call(client, create(rig.number))
    assert took < 10  # one timeout and one backoff, not the 30 s of the slow answer
    assert client.attempts == 2
    rig.run(asyncio.sleep(40))  # the slow request wakes up and reaches the backend
    assert [p.id for p in rig.payments()] == [payment["payment_id"]]
    late = rig.server.request_log[-1]
    assert "replayed" in late.note
    assert "delay" in late.note


def test_a_slow_backend_answers_late_each_time_not_never(rig: Rig) -> None:
    """``times: None`` (always) slows every request once, by its delay; ``times: 3`` slows
    three requests, not one request three times."""
    rig.server.faults.delay("get_invoice", seconds=2, times=None)
    client = rig.client(RetryPolicy(request_timeout=5.0))
    for _ in range(3):
        _, took = rig.call(client, lambda c: c.invoice(rig.number))
        assert took == pytest.approx(2.0, abs=1e-3)
    assert client.attempts == 3  # one attempt each: nothing timed out
    rig.server.faults.clear()
    counted = rig.server.faults.delay("get_invoice", seconds=1, times=3)
    _, took = rig.call(client, lambda c: c.invoice(rig.number))
    assert took == pytest.approx(1.0, abs=1e-3)
    assert counted.hits == 1


def test_a_backend_slower_than_every_timeout_is_reported_with_the_attempts_made(
    rig: Rig,
) -> None:
    policy = RetryPolicy(attempts=3, request_timeout=5.0, deadline=None)
    rig.server.faults.delay("get_invoice", seconds=60, times=None)
    client = rig.client(policy, seed=5)
    started = rig.loop.time()
    with pytest.raises(BackendUnreachable) as failure:
        rig.run(client.invoice(rig.number))
    took = rig.loop.time() - started
    assert failure.value.attempts == client.attempts == 3
    assert failure.value.message == (
        "Serveur injoignable (pas de réponse en 5 s, 3 tentatives) : vérifiez la connexion "
        "du téléphone, puis réessayez."
    )
    assert took == pytest.approx(3 * 5.0 + waits(policy, 5, 2), abs=0.01)


def test_the_deadline_keeps_an_authorisation_within_the_terminals_wait(rig: Rig) -> None:
    rig.server.faults.delay("*", seconds=60, times=None)
    client = rig.client()  # default policy: 25 s in all
    started = rig.loop.time()
    with pytest.raises(BackendUnreachable) as failure:
        rig.run(client.invoice(rig.number))
    assert rig.loop.time() - started <= 25.0 + 1e-6
    assert 1 < failure.value.attempts < 4


@pytest.mark.parametrize(
    ("operation", "status", "code"),
    [
        (lambda client: client.invoice("F-1999-9999"), 404, "invoice_not_found"),
        (lambda client: client.create_payment("F-1999-9999", SERIAL), 404, "invoice_not_found"),
        (lambda client: client.create_payment("F-2026-0001", "SIM9999"), 409, None),
        (lambda client: client.pay_with_token("F-2026-0001", "pm_unknown"), 404, None),
    ],
    ids=["GET 404", "POST 404", "POST 409", "token 404"],
)
def test_a_refusal_is_never_retried(
    rig: Rig,
    operation: Callable[[BackendClient], Awaitable[Any]],
    status: int,
    code: str | None,
) -> None:
    client = rig.client()
    with pytest.raises(BackendError) as refusal:
        rig.run(operation(client))
    assert not isinstance(refusal.value, BackendUnreachable)
    assert refusal.value.status == status
    assert code is None or refusal.value.code == code
    assert len(rig.seen) == client.attempts == 1


def test_a_server_error_that_is_not_a_gateways_is_not_retried(rig: Rig) -> None:
    rig.server.faults.fail("create_payment", status=500, times=None)
    client = rig.client()
    with pytest.raises(BackendError) as error:
        rig.run(client.create_payment(rig.number, SERIAL))
    assert (error.value.status, error.value.code) == (500, "internal_error")
    assert len(rig.seen) == 1


def test_refused_connections_are_retried_until_the_backend_is_back_on_its_port(
    rig: Rig,
) -> None:
    client = rig.client(seed=2)
    rig.run(client.invoice(rig.number))  # a kept-alive connection exists
    url = rig.server.url
    rig.server.faults.refuse_connections()
    rig.loop.call_later(1.2, rig.server.faults.accept_connections)
    payment = rig.run(client.create_payment(rig.number, SERIAL))
    assert rig.server.url == url
    assert client.attempts > 2  # refused at least once
    assert [p.id for p in rig.payments()] == [payment["payment_id"]]


def test_a_backend_that_stays_down_is_reported_as_refusing(rig: Rig) -> None:
    rig.server.faults.refuse_connections()
    client = rig.client()
    with pytest.raises(BackendUnreachable) as failure:
        rig.run(client.create_payment(rig.number, SERIAL))
    assert failure.value.attempts == 4
    assert "connexion refusée, 4 tentatives" in failure.value.message
    assert rig.seen == []
    rig.server.faults.clear()
    assert rig.run(client.invoice(rig.number))["number"] == rig.number


def test_an_offline_phone_fails_at_once_and_the_backend_sees_nothing(rig: Rig) -> None:
    client = rig.client()
    client.offline = True
    started = rig.loop.time()
    for operation in (create(rig.number), lambda c: c.invoice(rig.number)):
        with pytest.raises(BackendUnreachable) as failure:
            rig.run(operation(client))
        assert failure.value.message == OFFLINE_MESSAGE
        assert (failure.value.code, failure.value.attempts) == ("no_network", 0)
    assert rig.loop.time() == started
    assert rig.seen == []
    assert client.attempts == 0
    assert client.received == []
    client.offline = False
    assert rig.run(client.invoice(rig.number))["number"] == rig.number


def test_going_offline_during_the_backoff_stops_the_retries(rig: Rig) -> None:
    rig.server.faults.fail("get_invoice", status=503, times=None)
    client = rig.client()

    def cut() -> None:
        client.offline = True

    rig.loop.call_later(0.1, cut)  # during the first wait (at least 0.25 s)
    with pytest.raises(BackendUnreachable) as failure:
        rig.run(client.invoice(rig.number))
    assert failure.value.code == "no_network"
    assert len(rig.seen) == 1


def test_no_retry_policy_makes_one_attempt(rig: Rig) -> None:
    rig.server.faults.fail("get_invoice", status=503)
    client = rig.client(NO_RETRY)
    with pytest.raises(BackendUnreachable) as failure:
        rig.run(client.invoice(rig.number))
    assert failure.value.attempts == 1
    assert "erreur 503 du serveur, 1 tentative)" in failure.value.message
