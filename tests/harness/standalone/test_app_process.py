"""``tpe-sim app``'s exit statuses and messages when its flow stops early, in this process
with a stand-in app: a terminal that stops mid-pairing (Bumble cancels what it awaited) is
a failed flow, not a Ctrl-C; a radio that stops answering is one French line, no traceback;
a real Ctrl-C is still « interrompu », 130."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
from bumble.core import CommandTimeoutError

from harness.app import PaymentOutcome
from harness.standalone.app import (
    FLOW_FAILED,
    INTERRUPTED,
    RADIO_LOST,
    AppOptions,
    interruptible,
    run_flow,
)

PAY = AppOptions(action="pay", transport="unused", backend="unused", invoice="F-2026-0001")
ASSOCIATE = AppOptions(action="associate", transport="unused", backend="unused")


async def cancelled_from_below() -> None:
    """What Bumble does when the link goes mid-pairing: the future it awaited is cancelled
    (the task itself is not)."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(future.cancel)
    await future


class StandIn:
    """An app whose flows fail the way ``failure`` says."""

    def __init__(self, failure: str) -> None:
        self.failure = failure

    async def _fail(self) -> None:
        if self.failure == "terminal stopped":
            await cancelled_from_below()
        elif self.failure == "radio lost":
            raise CommandTimeoutError()
        elif self.failure == "ctrl-c":
            signal.raise_signal(signal.SIGINT)  # handled by the loop: cancels the flow
            await asyncio.Event().wait()

    async def associate_terminal(self, name: str | None = None) -> Any:
        await self._fail()

    async def pay_invoice(self, number: str) -> PaymentOutcome:
        await self._fail()
        raise AssertionError("the stand-in always fails")


def run(failure: str, options: AppOptions) -> int:
    return asyncio.run(interruptible(run_flow(StandIn(failure), options)))


@pytest.mark.parametrize("options", [ASSOCIATE, PAY], ids=["pairing", "payment"])
def test_a_terminal_that_stops_mid_flow_is_a_failed_flow_not_a_ctrl_c(
    options: AppOptions, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("terminal stopped", options) == FLOW_FAILED
    err = capsys.readouterr().err
    assert err.startswith("✗ ÉCHEC : le terminal a interrompu l'échange")
    assert err.count("\n") == 1
    assert "interrompu\n" not in err.splitlines(keepends=True)


def test_a_radio_that_stops_answering_is_one_french_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run("radio lost", PAY) == RADIO_LOST != INTERRUPTED
    err = capsys.readouterr().err
    assert err.startswith("✗ ÉCHEC : plus de réponse du contrôleur Bluetooth")
    assert "CommandTimeoutError" in err  # the technical detail, after the French
    assert "Traceback" not in err
    assert err.count("\n") == 1


def test_ctrl_c_is_still_interrupted_130(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("ctrl-c", PAY) == INTERRUPTED == 130
    assert capsys.readouterr().err == "interrompu\n"
