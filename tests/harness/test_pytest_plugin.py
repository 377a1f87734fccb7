"""The pytest plugin, run on generated projects (pytester)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

FEATURE = """\
# language: fr
Fonctionnalité: Comptabilité
  Scénario: Une facture marquée payée sans paiement
    Étant donné le TPE est activé comme moyen de paiement dans le module Facturation
    Et une facture impayée de 20,00 € pour un client généré
    Quand quelqu'un marque la facture payée sans paiement
"""

CONFTEST = """\
from pytest_bdd import when

@when("quelqu'un marque la facture payée sans paiement")
def corrupt(world, invoice_number):
    world.store.invoice(invoice_number).balance_due_cents = 0
"""


def test_a_scenario_that_pays_an_invoice_without_money_fails_with_the_reason(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".feature", comptabilite=FEATURE)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_comptabilite="from pytest_bdd import scenarios\nscenarios('comptabilite.feature')\n"
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*payment bookkeeping broken*", "*balance*"])
    result.stdout.fnmatch_lines(["*tpe-sim world*", "*terminal screen history*"])
