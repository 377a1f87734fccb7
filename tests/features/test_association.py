"""Binds features/association/*.feature to the step library."""

from pytest_bdd import scenarios

scenarios("association")
