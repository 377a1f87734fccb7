"""The French texts the app and the terminal show for each answer of the bank."""

from __future__ import annotations

from simulator.protocol.response_codes import RESPONSE_MESSAGES, response_message
from simulator.terminal.screen import SCREEN_WIDTH

#: What a French cardholder reads for every code the simulated issuer gives. A change here is a
#: change users will see: review it.
EXPECTED = {
    "00": "Paiement accepté",
    "05": "Paiement refusé par la banque",
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


def test_every_response_code_has_its_listed_french_text() -> None:
    assert dict(RESPONSE_MESSAGES) == EXPECTED


def test_an_unknown_code_is_named_rather_than_hidden() -> None:
    assert response_message("Q9") == "Paiement refusé (code Q9)"


def test_each_text_fits_the_terminal_screen_in_at_most_three_lines_under_the_heading() -> None:
    import textwrap

    for code, text in RESPONSE_MESSAGES.items():
        lines = textwrap.wrap(text.upper(), SCREEN_WIDTH)
        assert len(lines) <= 3, (code, lines)
