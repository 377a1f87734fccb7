"""What one payment exchanges over the air, counted on the HCI of a real world.

A snooper on each host sees the ACL packets its host sends: the phone's ATT Write Requests
to the terminal's command characteristic and the terminal's Handle Value Notifications on
the event characteristic are the payment protocol's frames (the CCCD write of the
subscription and the GATT discovery are not counted: the floor does those too). The result
is the ordered script of frames with their value sizes, which the floor replays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bumble.snoop import Snooper

from bench.e2e import payment_config
from harness.rig import World

HCI_ACL_DATA_PACKET = 0x02
PB_CONTINUING_FRAGMENT = 0b01
ATT_CID = 0x0004
ATT_WRITE_REQUEST = 0x12
ATT_HANDLE_VALUE_NOTIFICATION = 0x1B

Op = Literal["write", "notify"]


@dataclass
class FrameScript:
    """The payment's frames in the order they went out: ``(op, value size in bytes)``."""

    steps: list[tuple[Op, int]] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return sum(1 for op, _ in self.steps if op == "write")

    @property
    def notifications(self) -> int:
        return sum(1 for op, _ in self.steps if op == "notify")

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.steps)


class AttSnooper(Snooper):
    """Records ATT PDUs with ``opcode`` to ``handle`` that its host sends, as ``op``."""

    def __init__(self, script: FrameScript, op: Op, opcode: int, handle: int) -> None:
        self.script = script
        self.op: Op = op
        self.opcode = opcode
        self.handle = handle

    def snoop(self, hci_packet: bytes, direction: Snooper.Direction) -> None:
        if direction != Snooper.Direction.HOST_TO_CONTROLLER or len(hci_packet) < 12:
            return
        if hci_packet[0] != HCI_ACL_DATA_PACKET:
            return
        handle_and_flags = int.from_bytes(hci_packet[1:3], "little")
        if (handle_and_flags >> 12) & 0b11 == PB_CONTINUING_FRAGMENT:
            return  # the L2CAP header is in the first fragment only
        l2cap_length = int.from_bytes(hci_packet[5:7], "little")
        cid = int.from_bytes(hci_packet[7:9], "little")
        opcode = hci_packet[9]
        att_handle = int.from_bytes(hci_packet[10:12], "little")
        if cid == ATT_CID and opcode == self.opcode and att_handle == self.handle:
            self.script.steps.append((self.op, l2cap_length - 3))  # opcode + handle


def payment_script(card: str = "visa") -> FrameScript:
    """Associate and pay one small invoice contactless in a fresh world; its frames."""
    script = FrameScript()
    with World(payment_config()) as world:
        service = world.terminal.payment_service
        world.phone.device.host.snooper = AttSnooper(
            script, "write", ATT_WRITE_REQUEST, service.command_characteristic.handle
        )
        world.terminal.device.host.snooper = AttSnooper(
            script, "notify", ATT_HANDLE_VALUE_NOTIFICATION, service.event_characteristic.handle
        )
        world.associate()
        number = world.unpaid_invoice(at_most_cents=5000)
        if number is None:
            raise RuntimeError("the seeded world has no invoice of at most 50 €")
        world.start_payment(number)
        world.tap(card)
        outcome = world.finish_payment()
        if outcome.invoice.get("status") != "paid":
            raise RuntimeError(f"the reference payment did not pay the invoice: {outcome}")
    return script
