"""The simulated card processor and issuer: an authorisation decision without I/O.

The processor holds the terminal keys and the card catalogue (shared fixtures). It opens the
card-data blob the terminal sealed, finds the card by PAN and answers with an ISO 8583
response code. The PAN lives only inside :meth:`Processor.authorise`; what leaves is the masked
PAN and the decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

from simulator.protocol.carddata import (
    CardDataError,
    associated_data,
    key_id_of,
    mask_pan,
    open_sealed,
)
from simulator.protocol.response_codes import APPROVED, response_message

UNKNOWN_CARD = "05"
EXPIRED_CARD = "54"


@dataclass(frozen=True)
class IssuerCard:
    """What the simulated issuer knows of a card (from ``fixtures/cards.yaml``)."""

    pan: str = field(repr=False)
    brand: str
    expiry: str  # YYYY-MM, last month of validity
    response_code: str

    def expired_on(self, today: date) -> bool:
        year, month = (int(part) for part in self.expiry.split("-"))
        return (year, month) < (today.year, today.month)


@dataclass(frozen=True)
class AuthorisationRequest:
    """The terminal's authorisation request, as the phone relays it."""

    transaction_id: str
    amount_cents: int
    currency: str
    entry_mode: str
    brand: str
    card_data: object  # the sealed blob, opaque to everyone but the processor
    emv: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    response_code: str
    masked_pan: str

    @property
    def approved(self) -> bool:
        return self.response_code == APPROVED

    @property
    def message(self) -> str:
        return response_message(self.response_code)


class Processor:
    """Opens card data with the terminal's key and decides as the card's issuer would."""

    def __init__(self, terminal_keys: Mapping[str, bytes], cards: Iterable[IssuerCard]) -> None:
        self._keys = dict(terminal_keys)
        self._cards = {card.pan: card for card in cards}

    def __repr__(self) -> str:
        return f"Processor(terminals={sorted(self._keys)!r}, cards={len(self._cards)})"

    def authorise(self, request: AuthorisationRequest, *, today: date) -> Decision:
        """Decide on ``request``; raises :class:`CardDataError` if the blob does not open."""
        key_id = key_id_of(request.card_data)
        key = self._keys.get(key_id)
        if key is None:
            raise CardDataError(f"no key for terminal {key_id!r}")
        aad = associated_data(request.transaction_id, request.amount_cents, request.currency)
        pan = open_sealed(key, request.card_data, aad).pan
        card = self._cards.get(pan)
        if card is None:
            code = UNKNOWN_CARD
        elif card.expired_on(today):
            code = EXPIRED_CARD
        else:
            code = card.response_code
        return Decision(response_code=code, masked_pan=mask_pan(pan))
