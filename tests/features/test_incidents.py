"""Binds features/incidents/*.feature to the step library.

Scenarios tagged ``@en_attente`` need behaviour that has not landed yet: they are skipped
until it does (then drop the tag).
"""

import pytest
from pytest_bdd import scenarios

scenarios("incidents")

PENDING_REASON = (
    "en attente : needs behaviour not landed yet (a terminal powered off at 0 % while the "
    "bank approves leaves the authorisation held until it lapses)"
)


@pytest.fixture(autouse=True)
def _skip_pending(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("en_attente") is not None:
        pytest.skip(PENDING_REASON)
