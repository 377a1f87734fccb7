"""The mock backend's data in an SQLite file, so that a standalone backend survives restarts.

:class:`BackendDatabase` saves a whole :class:`~harness.backend.store.BackendStore` (merchant,
billing settings, customers, invoices, payments and their receipts, terminals, the issuer's
card states, card captures, saved cards, and the state of the store's seeded generator) in
one transaction, and loads it back. The standalone backend (``tpe-sim backend --db FILE``)
saves after every mutating request (:attr:`BackendServer.after_change`): only the records
that changed are written, and nothing when none did.

The file is marked as ours (``PRAGMA application_id``) and carries its schema version
(``PRAGMA user_version`` and the ``meta`` table): a file that is not SQLite, another
program's database or a newer schema is refused with :class:`PersistenceError`, whose
message says which file and why; nothing is overwritten then.

Records are typed JSON, one row per object, decoded against the dataclasses' own type hints:
no pickle, nothing executed on load. Like the store, the file never holds a card number
(payments keep the masked PAN; saved cards a keyed fingerprint) nor the fingerprint key
(derived from the seed again on load).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.backend.processor import CardState
from harness.backend.store import (
    BackendStore,
    BillingSettings,
    CardCapture,
    Customer,
    Invoice,
    Merchant,
    Payment,
    SavedCard,
    Terminal,
    default_fingerprint_key,
)

#: "TPES" in ASCII: SQLite's application id for tpe-sim backend databases.
APPLICATION_ID = 0x54504553
SCHEMA_VERSION = 1
APPLICATION = "tpe-sim backend"

#: Store attributes kept in the file (kind of record → attribute, record class). An
#: attribute of the store missing here and from :data:`NOT_PERSISTED` fails a test.
COLLECTIONS: Mapping[str, tuple[str, Any]] = {
    "customer": ("customers", Customer),
    "payment": ("payments", Payment),  # before invoices, which refer to them
    "invoice": ("invoices", Invoice),
    "terminal": ("terminals", Terminal),
    "terminal_elsewhere": ("terminals_elsewhere", str),
    "card_state": ("card_states", CardState),
    "capture": ("captures", CardCapture),
    "payment_method": ("payment_methods", SavedCard),
}
SINGLETONS: Mapping[str, tuple[str, Any]] = {
    "merchant": ("merchant", Merchant),
    "billing": ("billing", BillingSettings),
}
#: Store attributes deliberately not written: the generator's state is saved separately
#: and the fingerprint key is derived from the seed again. (Transaction ids come from
#: ``os.urandom``: unique, never replayed, nothing to save.)
NOT_PERSISTED = frozenset({"_random", "_fingerprint_key"})

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    position INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
"""


class PersistenceError(Exception):
    """The database file cannot be used; the message names it and says why."""


class BackendDatabase:
    """One SQLite file holding one backend store.

    The connection is opened and the file checked once, then kept until :meth:`close`; the
    rows last written (or read) are kept in memory, so that :meth:`save` writes only what
    changed. Nobody else may write the file meanwhile: the standalone backend holds a lock
    on it (:func:`harness.standalone.backend.lock_path`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        #: (kind, key) → (position, data) and meta key → value, as the file holds them;
        #: None when unknown (nothing read or written yet, or a failed transaction).
        self._rows: dict[tuple[str, str], tuple[int, str]] | None = None
        self._meta: dict[str, str] | None = None

    # ------------------------------------------------------------------ public
    def load(self) -> BackendStore | None:
        """The store saved in the file; None when the file is new or holds no store yet."""
        loaded = self.load_with_seed()
        return None if loaded is None else loaded[0]

    def load_with_seed(self) -> tuple[BackendStore, int] | None:
        """The store saved in the file and the seed it was built with; None when the file
        is new or holds no store yet."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        with self._connected() as db:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if "seed" not in meta:
                return None
            rows = db.execute(
                "SELECT kind, key, position, data FROM records ORDER BY kind, position"
            ).fetchall()
        try:
            store = self._decode_store(meta, [(kind, key, data) for kind, key, _p, data in rows])
            seed = int(meta["seed"])
        except (ValueError, TypeError, KeyError) as exc:
            raise PersistenceError(f"{self.path}: unreadable record: {exc}") from exc
        self._rows = {(kind, key): (position, data) for kind, key, position, data in rows}
        self._meta = meta
        return store, seed

    def save(self, store: BackendStore, *, seed: int) -> None:
        """Make the file hold ``store`` (one transaction: all or nothing). Writes only the
        records that changed since the last save or load, and nothing at all when none did.

        ``seed``: the seed the store was built with (its fingerprint key derives from it)."""
        if store._fingerprint_key.value != default_fingerprint_key(seed):
            raise PersistenceError(
                "this store's card-fingerprint key is not the one of its seed: it cannot be "
                "saved without its key, and tpe-sim never writes keys to disk"
            )
        rows: dict[tuple[str, str], tuple[int, str]] = {}
        for kind, (attribute, _cls) in SINGLETONS.items():
            rows[kind, kind] = (0, _dumps(getattr(store, attribute)))
        for kind, (attribute, _cls) in COLLECTIONS.items():
            for position, (key, value) in enumerate(getattr(store, attribute).items()):
                encoded = _encode(value)
                if kind == "invoice":  # payments are shared with store.payments: by id
                    encoded["payments"] = [payment.id for payment in value.payments]
                rows[kind, key] = (position, json.dumps(encoded, ensure_ascii=False))
        meta = {
            "application": APPLICATION,
            "schema_version": str(SCHEMA_VERSION),
            "seed": str(seed),
            "random_state": json.dumps(store._random.getstate()),
        }
        with self._connected() as db:
            old_rows, old_meta = self._rows, self._meta
            if old_rows is not None and old_meta is not None:
                unchanged_meta = {k: v for k, v in old_meta.items() if k != "saved_at"}
                if rows == old_rows and meta == unchanged_meta:
                    return
            meta["saved_at"] = dt.datetime.now(dt.UTC).isoformat()
            self._rows = self._meta = None  # until the transaction is committed
            db.execute("BEGIN IMMEDIATE")
            if old_rows is None or old_meta is None:  # unknown contents: write everything
                db.execute("DELETE FROM records")
                db.execute("DELETE FROM meta")
                old_rows, old_meta = {}, {}
            db.executemany(
                "DELETE FROM meta WHERE key = ?", [(k,) for k in old_meta if k not in meta]
            )
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(k, v) for k, v in meta.items() if old_meta.get(k) != v],
            )
            db.executemany(
                "DELETE FROM records WHERE kind = ? AND key = ?",
                [kind_key for kind_key in old_rows if kind_key not in rows],
            )
            db.executemany(
                "INSERT OR REPLACE INTO records (kind, key, position, data) VALUES (?, ?, ?, ?)",
                [
                    (kind, key, position, data)
                    for (kind, key), (position, data) in rows.items()
                    if old_rows.get((kind, key)) != (position, data)
                ],
            )
            db.execute("COMMIT")
            self._rows, self._meta = rows, meta

    def saved_seed(self) -> int | None:
        """The seed of the store in the file, if it holds one."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        with self._connected() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'seed'").fetchone()
        return None if row is None else int(row[0])

    def close(self) -> None:
        """Close the connection (idempotent); a later call opens and checks the file again."""
        if self._db is not None:
            db, self._db = self._db, None
            self._rows = self._meta = None
            db.close()

    # ------------------------------------------------------------------ file
    def _connection(self) -> sqlite3.Connection:
        """The open, checked connection (schema created in a new file)."""
        if self._db is None:
            try:
                db = sqlite3.connect(self.path, isolation_level=None)
            except sqlite3.Error as exc:
                raise PersistenceError(f"{self.path}: cannot open the database: {exc}") from exc
            try:
                self._check(db)
            except sqlite3.DatabaseError as exc:
                db.close()
                raise self._unusable(exc) from exc
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    @contextmanager
    def _connected(self) -> Iterator[sqlite3.Connection]:
        """The connection; a failure rolls back and forgets what the file holds (the next
        save writes everything)."""
        db = self._connection()
        try:
            yield db
        except BaseException as exc:
            self._rows = self._meta = None
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError):
                raise self._unusable(exc) from exc
            raise

    def _unusable(self, exc: sqlite3.DatabaseError) -> PersistenceError:
        return PersistenceError(f"{self.path}: not a usable tpe-sim backend database ({exc})")

    def _check(self, db: sqlite3.Connection) -> None:
        application_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if application_id == 0 and not tables:  # a new, empty file: make it ours
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        if application_id != APPLICATION_ID:
            raise PersistenceError(
                f"{self.path}: this SQLite database belongs to another program (application "
                f"id {application_id:#x}, tables {', '.join(sorted(tables)) or 'none'}); "
                "choose another --db file"
            )
        if version != SCHEMA_VERSION:
            raise PersistenceError(
                f"{self.path}: schema version {version}, this tpe-sim reads version "
                f"{SCHEMA_VERSION} only; use a tpe-sim of that version or a new --db file"
            )

    # ------------------------------------------------------------------ decoding
    def _decode_store(
        self, meta: Mapping[str, str], rows: list[tuple[str, str, str]]
    ) -> BackendStore:
        seed = int(meta["seed"])
        by_kind: dict[str, list[tuple[str, Any]]] = {}
        for kind, key, data in rows:
            by_kind.setdefault(kind, []).append((key, json.loads(data)))
        singletons = {
            kind: _decode(cls, by_kind[kind][0][1]) for kind, (_a, cls) in SINGLETONS.items()
        }
        store = BackendStore(singletons["merchant"], singletons["billing"], seed=seed)
        state = json.loads(meta["random_state"])
        store._random.setstate(_random_state(state))
        for kind, (attribute, cls) in COLLECTIONS.items():
            target: dict[str, Any] = getattr(store, attribute)
            for key, data in by_kind.get(kind, []):
                if kind == "invoice":
                    payment_ids = data.pop("payments")
                    invoice = _decode(cls, {**data, "payments": []})
                    invoice.payments = [store.payments[pid] for pid in payment_ids]
                    target[key] = invoice
                else:
                    target[key] = _decode(cls, data)
        return store


def _random_state(state: Any) -> tuple[Any, ...]:
    """JSON's lists back into :meth:`random.Random.getstate`'s tuples."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


# ---------------------------------------------------------------------- typed JSON
def _dumps(value: Any) -> str:
    return json.dumps(_encode(value), ensure_ascii=False)


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot store a {type(value).__name__}")


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _decode(tp: Any, data: Any) -> Any:
    """``data`` (from JSON) as a value of type ``tp``; ValueError/TypeError if it is not."""
    if tp is Any:
        return data
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        candidates = [arg for arg in args if arg is not type(None)]
        if len(candidates) != 1:
            raise TypeError(f"cannot decode a value of type {tp}")
        return _decode(candidates[0], data)
    if origin is typing.Literal:
        if data not in args:
            raise ValueError(f"{data!r} is not one of {args}")
        return data
    if origin in (list, tuple):
        if not isinstance(data, list):
            raise TypeError(f"expected a list, got {data!r}")
        item = args[0] if args else Any
        items = [_decode(item, v) for v in data]
        return items if origin is list else tuple(items)
    if origin in (dict, Mapping):
        if not isinstance(data, dict):
            raise TypeError(f"expected an object, got {data!r}")
        return {k: _decode(args[1] if args else Any, v) for k, v in data.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise TypeError(f"expected an object for {tp.__name__}, got {data!r}")
        hints = _hints(tp)
        values = {
            f.name: _decode(hints[f.name], data[f.name])
            for f in dataclasses.fields(tp)
            if f.init and f.name in data
        }
        return tp(**values)
    return _decode_scalar(tp, data)


_SCALARS: Mapping[type, Callable[[Any], Any]] = {
    dt.datetime: dt.datetime.fromisoformat,
    dt.date: dt.date.fromisoformat,
    bytes: bytes.fromhex,
}


def _decode_scalar(tp: Any, data: Any) -> Any:
    if tp in _SCALARS:
        if not isinstance(data, str):
            raise TypeError(f"expected a string for {tp.__name__}, got {data!r}")
        return _SCALARS[tp](data)
    if tp is float and isinstance(data, int | float) and not isinstance(data, bool):
        return float(data)
    if tp in (int, str, bool) and type(data) is tp:
        return data
    raise TypeError(f"expected {getattr(tp, '__name__', tp)}, got {data!r}")
