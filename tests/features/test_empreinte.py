"""Binds features/empreinte/*.feature to the step library."""

from pytest_bdd import scenarios

scenarios("empreinte")
