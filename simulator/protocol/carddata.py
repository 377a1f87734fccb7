"""Card data sealed by the terminal for the processor: AES DUKPT per-transaction keys.

The phone relays an opaque blob it cannot read: the terminal encrypts the card's sensitive
data (PAN, expiry, PAN sequence number, an online PIN) with AES-GCM under the AES DUKPT
(ANSI X9.24-3-2017) data encryption key of a transaction counter it never uses again, and
binds the ciphertext to the key serial number and to the transaction (identifier, amount,
currency) as associated data. Only the processor, which holds the base derivation key (BDK),
can derive that key from the key serial number and open the blob.

Wire form (a JSON object inside ``AuthorisationRequest.card_data``)::

    {"scheme": "AES-DUKPT-1", "ksn": "<24 hex digits>",
     "nonce": "<base64, 12 bytes>", "ciphertext": "<base64>"}

``AES-DUKPT-1``: the key is the AES-128 working key of usage "data encryption, encrypt"
(``3000``) derived for the KSN (:mod:`simulator.protocol.dukpt`); the cipher is AES-GCM with
a 12-byte random nonce and a 16-byte tag appended to the ciphertext; the associated data is
the 12 KSN bytes followed by :func:`associated_data`. See ``docs/protocol.md``, section 7.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from simulator.protocol.dukpt import (
    KSN_SIZE,
    DukptError,
    KeyUsage,
    Originator,
    bdk_id,
    host_working_key,
)

SCHEME = "AES-DUKPT-1"
NONCE_SIZE = 12
#: The DUKPT working key that seals card data: the terminal encrypts, the processor decrypts.
DATA_KEY_USAGE = KeyUsage.DATA_ENCRYPTION_ENCRYPT


class CardDataError(ValueError):
    """A card-data blob that cannot be opened: malformed, wrong key, or tampered with."""


@dataclass(frozen=True, repr=False)
class SensitiveCardData:
    """What only the terminal and the processor may see. Never logged: ``repr`` masks it."""

    pan: str
    expiry: str  # YYMM
    pan_sequence: str = "00"
    pin: str | None = None  # an online PIN, typed on the terminal, for the issuer to check
    #: How the terminal read the card and verified its holder, sealed with the card data so
    #: that the relaying phone cannot claim a PIN that was never typed, a chip read that was
    #: a tap, or another brand. The processor refuses a request that differs.
    entry_mode: str | None = None
    cvm: str | None = None
    brand: str | None = None

    def __repr__(self) -> str:
        return f"SensitiveCardData(pan={mask_pan(self.pan)!r}, expiry=…, pin=…)"


def mask_pan(pan: str) -> str:
    """The masked form printed on receipts and shown to the phone: all but the last 4 hidden."""
    if len(pan) < 10:
        return "*" * len(pan)
    return "*" * (len(pan) - 4) + pan[-4:]


def associated_data(transaction_id: str, amount: int, currency: str) -> bytes:
    """The transaction fields the ciphertext is bound to."""
    return f"{transaction_id}|{amount}|{currency}".encode()


def seal(
    originator: Originator,
    data: SensitiveCardData,
    aad: bytes,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> dict[str, str]:
    """Encrypt ``data`` for the processor under the next transaction's data key; returns the
    wire form. The terminal's counter moves on: no two seals share a key."""
    ksn, key = originator.next_key(DATA_KEY_USAGE)
    nonce = random_bytes(NONCE_SIZE)
    fields = {"pan": data.pan, "expiry": data.expiry, "pan_sequence": data.pan_sequence}
    for name in ("pin", "entry_mode", "cvm", "brand"):
        value = getattr(data, name)
        if value is not None:
            fields[name] = value
    plaintext = json.dumps(fields, separators=(",", ":")).encode()
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, ksn + aad)
    return {
        "scheme": SCHEME,
        "ksn": ksn.hex().upper(),
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }


def ksn_of(blob: object) -> bytes:
    """The key serial number a blob claims (12 bytes), which names the key that opens it."""
    if not isinstance(blob, dict) or not isinstance(blob.get("ksn"), str):
        raise CardDataError("card_data has no ksn")
    text = str(blob["ksn"])
    if len(text) != 2 * KSN_SIZE or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise CardDataError("card_data ksn must be 24 hex digits")
    return bytes.fromhex(text)


def open_sealed(bdks: Mapping[bytes, bytes], blob: object, aad: bytes) -> SensitiveCardData:
    """Decrypt a blob made by :func:`seal` with the BDK its KSN names (``bdks``: BDK ID, the
    KSN's first 4 bytes, to BDK); raises :class:`CardDataError` on any defect."""
    if not isinstance(blob, dict):
        raise CardDataError("card_data must be an object")
    if blob.get("scheme") != SCHEME:
        raise CardDataError(f"unsupported card_data scheme {blob.get('scheme')!r}")
    ksn = ksn_of(blob)
    bdk = bdks.get(bdk_id(ksn))
    if bdk is None:
        raise CardDataError(f"no base derivation key {bdk_id(ksn).hex().upper()}")
    try:
        nonce = base64.b64decode(str(blob["nonce"]), validate=True)
        ciphertext = base64.b64decode(str(blob["ciphertext"]), validate=True)
    except (KeyError, ValueError) as exc:  # binascii.Error, and non-ASCII text
        raise CardDataError("card_data nonce or ciphertext missing or not base64") from exc
    if len(nonce) != NONCE_SIZE:
        raise CardDataError("card_data nonce has the wrong size")
    try:
        key = host_working_key(bdk, ksn, DATA_KEY_USAGE)
        plaintext = AESGCM(key).decrypt(nonce, ciphertext, ksn + aad)
    except DukptError as exc:  # a counter no terminal uses, a BDK of the wrong size
        raise CardDataError(f"card_data ksn is unusable: {exc}") from exc
    except InvalidTag as exc:
        raise CardDataError("card_data does not authenticate (wrong key or tampered)") from exc
    try:
        fields = json.loads(plaintext)
        return SensitiveCardData(
            pan=str(fields["pan"]),
            expiry=str(fields["expiry"]),
            pan_sequence=str(fields.get("pan_sequence", "00")),
            pin=str(fields["pin"]) if fields.get("pin") is not None else None,
            entry_mode=_optional(fields, "entry_mode"),
            cvm=_optional(fields, "cvm"),
            brand=_optional(fields, "brand"),
        )
    except (ValueError, TypeError, KeyError) as exc:  # authentic, but not what seal() writes
        raise CardDataError("card_data plaintext is malformed") from exc


def _optional(fields: Mapping[str, object], name: str) -> str | None:
    value = fields.get(name)
    return None if value is None else str(value)
