"""The backend's SQLite file: a whole store saved and loaded back, bad files refused."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from harness.backend import BackendServer, BackendStore, load_processor, seed_store
from harness.backend.persistence import (
    COLLECTIONS,
    NOT_PERSISTED,
    SINGLETONS,
    BackendDatabase,
    PersistenceError,
)
from harness.fixtures import fixtures_dir
from harness.rig import World

VISA_PAN = "4242424242424242"


def paid_world_store(world: World) -> BackendStore:
    """A store that has seen a terminal association, a contactless payment (with receipts
    and the issuer's card state) and a card capture (a saved card)."""
    world.associate()
    number = world.unpaid_invoice(at_most_cents=5000)
    assert number is not None
    world.start_payment(number)
    world.tap("visa")
    assert world.finish_payment().invoice["status"] == "paid"
    customer = next(iter(world.store.customers))
    world.start_capture(customer)
    world.tap("mastercard")
    assert world.finish_capture().saved
    return world.store


def test_a_store_after_a_payment_and_a_capture_comes_back_whole(
    world: World, tmp_path: Path
) -> None:
    store = paid_world_store(world)
    database = BackendDatabase(tmp_path / "backend.sqlite")
    database.save(store, seed=world.seed)

    loaded = database.load()

    assert loaded is not None
    assert repr(loaded) == repr(store)  # every customer, invoice, payment, receipt, card…
    assert loaded.payments
    assert loaded.payment_methods
    assert loaded.terminals
    assert loaded.card_states == store.card_states
    paid = next(i for i in loaded.invoices.values() if i.status == "paid" and i.payments)
    for payment in paid.payments:  # one object, reachable from the invoice and the store
        assert loaded.payments[payment.id] is payment
    assert any(p.receipts is not None for p in loaded.payments.values())
    assert loaded.check_invariants() == []


def test_the_loaded_store_goes_on_with_the_same_generator_and_fingerprint_key(
    world: World, tmp_path: Path
) -> None:
    store = paid_world_store(world)
    database = BackendDatabase(tmp_path / "backend.sqlite")
    database.save(store, seed=world.seed)
    loaded = database.load()
    assert loaded is not None
    # the seeded draws (authorisation codes, saved-card ids) go on where they were
    assert loaded._random.getrandbits(64) == store._random.getrandbits(64)
    assert loaded._fingerprint_key.value == store._fingerprint_key.value
    # transaction ids come from no seed: never one the store already handed out
    used = {p.transaction_id for p in store.payments.values()}
    fresh = {loaded._new_transaction_id() for _ in range(100)}
    assert len(fresh) == 100
    assert not fresh & used


def test_the_file_holds_no_card_number(world: World, tmp_path: Path) -> None:
    store = paid_world_store(world)
    path = tmp_path / "backend.sqlite"
    BackendDatabase(path).save(store, seed=world.seed)
    raw = path.read_bytes()
    for card in world.catalogue.values():
        assert card.pan.encode() not in raw, card.key
    assert b"************4242" in raw  # the masked PAN of the payment is there


def test_every_attribute_of_the_store_is_saved_or_deliberately_left_out() -> None:
    store = seed_store(fixtures_dir())
    saved = {attribute for attribute, _ in (*COLLECTIONS.values(), *SINGLETONS.values())}
    assert set(vars(store)) == saved | NOT_PERSISTED


def test_a_new_or_empty_file_holds_no_store_yet(tmp_path: Path) -> None:
    assert BackendDatabase(tmp_path / "missing.sqlite").load() is None
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    assert BackendDatabase(empty).load() is None
    store = seed_store(fixtures_dir(), seed=5)
    BackendDatabase(empty).save(store, seed=5)
    assert BackendDatabase(empty).saved_seed() == 5


def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "backend.sqlite"
    path.write_bytes(b"these are not the droids you are looking for" * 100)
    before = path.read_bytes()
    with pytest.raises(PersistenceError, match="not a usable tpe-sim backend database") as info:
        BackendDatabase(path).load()
    assert str(path) in str(info.value)
    with pytest.raises(PersistenceError):
        BackendDatabase(path).save(seed_store(fixtures_dir(), seed=1), seed=1)
    assert path.read_bytes() == before


def test_another_programs_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        db.execute("INSERT INTO invoices (total) VALUES (12.5)")
    db.close()
    before = path.read_bytes()
    with pytest.raises(PersistenceError, match="belongs to another program"):
        BackendDatabase(path).load()
    with pytest.raises(PersistenceError, match="belongs to another program"):
        BackendDatabase(path).save(seed_store(fixtures_dir(), seed=1), seed=1)
    assert path.read_bytes() == before


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "backend.sqlite"
    BackendDatabase(path).save(seed_store(fixtures_dir(), seed=1), seed=1)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(PersistenceError, match="schema version 99"):
        BackendDatabase(path).load()


def test_a_damaged_record_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "backend.sqlite"
    BackendDatabase(path).save(seed_store(fixtures_dir(), seed=1), seed=1)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE records SET data = '{\"number\": 3}' WHERE kind = 'invoice'")
    db.close()
    with pytest.raises(PersistenceError, match="unreadable record"):
        BackendDatabase(path).load()


def test_a_store_with_a_key_of_its_own_is_not_saved_without_it(tmp_path: Path) -> None:
    store = seed_store(fixtures_dir(), seed=1)
    other = BackendStore(store.merchant, store.billing, seed=1, fingerprint_key=b"k" * 32)
    with pytest.raises(PersistenceError, match="fingerprint key"):
        BackendDatabase(tmp_path / "backend.sqlite").save(other, seed=1)


def test_the_server_calls_its_change_hooks_after_mutating_requests_only() -> None:
    calls: list[str] = []

    async def scenario() -> None:
        store = seed_store(fixtures_dir())
        server = BackendServer(store, load_processor(fixtures_dir()))
        server.after_change.append(lambda: calls.append(str(store.billing.tpe_enabled)))
        await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{server.url}/api/invoices") as response:
                    assert response.status == 200
                assert calls == []
                body = {"tpe_enabled": False}
                async with session.put(f"{server.url}/api/billing/settings", json=body) as r:
                    assert r.status == 200
                # called once the request is done: the hook sees the change
                assert calls == ["False"]
                async with session.put(f"{server.url}/api/billing/settings", json={}) as r:
                    assert r.status == 422  # refused: still a mutating request, still saved
                assert calls == ["False", "False"]
        finally:
            await server.stop()

    asyncio.run(scenario())


def _rowids(path: Path) -> dict[tuple[str, str], int]:
    """Each record's SQLite rowid, read through a connection of its own: a record written
    again (INSERT OR REPLACE) gets a new one."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT kind, key, rowid FROM records").fetchall()
    db.close()
    return {(kind, key): rowid for kind, key, rowid in rows}


def _saved_at(path: Path) -> str:
    with sqlite3.connect(path) as db:
        (value,) = db.execute("SELECT value FROM meta WHERE key = 'saved_at'").fetchone()
    db.close()
    return str(value)


def test_a_save_without_change_writes_nothing_and_a_change_only_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "backend.sqlite"
    store = seed_store(fixtures_dir(), seed=1)
    database = BackendDatabase(path)
    database.save(store, seed=1)
    before, saved_at, content = _rowids(path), _saved_at(path), path.read_bytes()

    database.save(store, seed=1)  # nothing changed: the file is left as it was
    assert path.read_bytes() == content
    assert _saved_at(path) == saved_at

    store.billing.tpe_enabled = not store.billing.tpe_enabled
    last_invoice = list(store.invoices)[-1]
    del store.invoices[last_invoice]
    database.save(store, seed=1)

    after = _rowids(path)
    rewritten = {kind_key for kind_key, rowid in after.items() if before.get(kind_key) != rowid}
    assert rewritten == {("billing", "billing")}
    assert set(before) - set(after) == {("invoice", last_invoice)}
    assert _saved_at(path) != saved_at
    database.close()
    reloaded = BackendDatabase(path).load()
    assert repr(reloaded) == repr(store)


def test_a_loaded_store_saved_again_unchanged_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "backend.sqlite"
    BackendDatabase(path).save(seed_store(fixtures_dir(), seed=3), seed=3)
    content = path.read_bytes()
    database = BackendDatabase(path)
    loaded = database.load_with_seed()
    assert loaded is not None
    store, seed = loaded
    assert seed == 3
    database.save(store, seed=seed)
    assert path.read_bytes() == content


def test_after_a_failed_save_the_next_one_writes_everything(tmp_path: Path) -> None:
    path = tmp_path / "backend.sqlite"
    store = seed_store(fixtures_dir(), seed=1)
    database = BackendDatabase(path)
    database.save(store, seed=1)
    with sqlite3.connect(path) as other:  # behind its back (the lock forbids this in use)
        other.execute("DELETE FROM records WHERE kind = 'customer'")
    other.close()
    store.billing.tpe_enabled = not store.billing.tpe_enabled
    with sqlite3.connect(path, isolation_level=None) as blocker:
        blocker.execute("BEGIN EXCLUSIVE")  # the file is busy: this save fails
        database._connection().execute("PRAGMA busy_timeout = 0")
        with pytest.raises(PersistenceError, match="locked"):
            database.save(store, seed=1)
        blocker.execute("ROLLBACK")
    blocker.close()

    database.save(store, seed=1)  # the in-memory copy was forgotten: everything again

    database.close()
    assert repr(BackendDatabase(path).load()) == repr(store)
