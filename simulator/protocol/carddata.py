"""Card data sealed by the terminal for the processor.

The phone relays an opaque blob it cannot read: the terminal encrypts the card's sensitive
data (PAN, expiry, PAN sequence number) with AES-GCM under its terminal key, binding the
ciphertext to the transaction (identifier, amount, currency) as associated data. Only the
processor, which holds the same key in its fixtures, can open it.

Wire form (a JSON object inside ``AuthorisationRequest.card_data``)::

    {"scheme": "AESGCM-TK1", "key_id": "<terminal serial>",
     "nonce": "<base64, 12 bytes>", "ciphertext": "<base64>"}

``AESGCM-TK1`` is the project's interim scheme: one static key per terminal. It is meant to
be replaced by AES DUKPT (ANSI X9.24-3) per-transaction keys; the blob carries its scheme so
both can coexist.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SCHEME = "AESGCM-TK1"
NONCE_SIZE = 12


class CardDataError(ValueError):
    """A card-data blob that cannot be opened: malformed, wrong key, or tampered with."""


@dataclass(frozen=True, repr=False)
class SensitiveCardData:
    """What only the terminal and the processor may see. Never logged: ``repr`` masks it."""

    pan: str
    expiry: str  # YYMM
    pan_sequence: str = "00"
    pin: str | None = None  # an online PIN, typed on the terminal, for the issuer to check

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
    key: bytes,
    key_id: str,
    data: SensitiveCardData,
    aad: bytes,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> dict[str, str]:
    """Encrypt ``data`` for the processor; returns the wire form."""
    nonce = random_bytes(NONCE_SIZE)
    fields = {"pan": data.pan, "expiry": data.expiry, "pan_sequence": data.pan_sequence}
    if data.pin is not None:
        fields["pin"] = data.pin
    plaintext = json.dumps(fields, separators=(",", ":")).encode()
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, aad)
    return {
        "scheme": SCHEME,
        "key_id": key_id,
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }


def key_id_of(blob: object) -> str:
    """The key identifier a blob claims, so the processor can pick the key to open it with."""
    if not isinstance(blob, dict) or not isinstance(blob.get("key_id"), str):
        raise CardDataError("card_data has no key_id")
    return str(blob["key_id"])


def open_sealed(key: bytes, blob: object, aad: bytes) -> SensitiveCardData:
    """Decrypt a blob made by :func:`seal`; raises :class:`CardDataError` on any defect."""
    if not isinstance(blob, dict):
        raise CardDataError("card_data must be an object")
    if blob.get("scheme") != SCHEME:
        raise CardDataError(f"unsupported card_data scheme {blob.get('scheme')!r}")
    try:
        nonce = base64.b64decode(str(blob["nonce"]), validate=True)
        ciphertext = base64.b64decode(str(blob["ciphertext"]), validate=True)
    except (KeyError, binascii.Error) as exc:
        raise CardDataError("card_data nonce or ciphertext missing or not base64") from exc
    if len(nonce) != NONCE_SIZE:
        raise CardDataError("card_data nonce has the wrong size")
    try:
        plaintext = AESGCM(key).decrypt(nonce, ciphertext, aad)
    except ValueError as exc:  # a key of the wrong size
        raise CardDataError(f"card_data key is unusable: {exc}") from exc
    except InvalidTag as exc:
        raise CardDataError("card_data does not authenticate (wrong key or tampered)") from exc
    fields = json.loads(plaintext)
    return SensitiveCardData(
        pan=str(fields["pan"]),
        expiry=str(fields["expiry"]),
        pan_sequence=str(fields.get("pan_sequence", "00")),
        pin=str(fields["pin"]) if fields.get("pin") is not None else None,
    )
