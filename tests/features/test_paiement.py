"""Binds features/paiement/*.feature to the step library."""

from pytest_bdd import scenarios

scenarios("paiement")
