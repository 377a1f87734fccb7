"""ISO 8583 field 39 response codes that cross the wire, with the French text users read.

Shared by the terminal (its screen and ``PaymentResponse.message``) and the processor (its
answer to the phone), so that both say the same thing for the same code.
"""

from __future__ import annotations

from collections.abc import Mapping

APPROVED = "00"
#: The issuer's answer to a zero-amount account verification when it has no reason to decline
#: (a card capture, "prise d'empreinte"): the card may be saved, nothing was charged.
ACCOUNT_VERIFIED = "85"

RESPONSE_MESSAGES: Mapping[str, str] = {
    "00": "Paiement accepté",
    "05": "Paiement refusé par la banque",
    # Lost (41) and stolen (43) read the same: the person holding the card may not be its owner.
    "41": "Carte refusée : contactez votre banque",
    "43": "Carte refusée : contactez votre banque",
    "51": "Provision insuffisante",
    "54": "Carte expirée",
    "55": "Code confidentiel erroné",
    "57": "Opération non autorisée pour cette carte",
    "61": "Plafond de la carte dépassé",
    "62": "Carte soumise à restrictions",
    "65": "Authentification forte requise : saisissez le code",
    "1A": "Authentification forte requise : saisissez le code",
    "70": "Code confidentiel requis",
    "75": "Nombre d'essais du code confidentiel dépassé",
    "85": "Carte vérifiée",
    "91": "Banque indisponible, réessayez",
    "96": "Erreur système",
}


def response_message(code: str) -> str:
    """The French text shown for a response code; unknown codes are named."""
    return RESPONSE_MESSAGES.get(code, f"Paiement refusé (code {code})")
