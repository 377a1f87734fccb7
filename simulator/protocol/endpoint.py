"""One side of one connection: frames in, messages out; messages in, frames out.

The endpoint owns the reassembler, the message numbering and the ATT MTU of its connection.
It does no I/O: the BLE edge hands it the bytes of each ATT write or notification and sends
the frames it returns.
"""

from __future__ import annotations

import dataclasses
from typing import Generic, TypeVar

from simulator.protocol import framing
from simulator.protocol.errors import ProtocolError
from simulator.protocol.messages import COMMANDS, EVENTS, Command, Event, Message, decode, encode

In = TypeVar("In", bound=Message)
Out = TypeVar("Out", bound=Message)


class Endpoint(Generic[In, Out]):
    """Generic endpoint; use :class:`TerminalEndpoint` or :class:`PhoneEndpoint`."""

    def __init__(
        self,
        receives: dict[str, type[In]],
        att_mtu: int = framing.MIN_ATT_MTU,
        max_message_size: int = framing.DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self._receives = receives
        self._reassembler = framing.Reassembler(max_message_size)
        self._next_id = 1
        self.att_mtu = att_mtu

    @property
    def att_mtu(self) -> int:
        return self._att_mtu

    @att_mtu.setter
    def att_mtu(self, value: int) -> None:
        framing.fragment_payload_size(value)  # validates
        self._att_mtu = value

    def receive_frame(self, frame: bytes) -> list[In | ProtocolError]:
        """Feed the bytes of one ATT write or notification."""
        results: list[In | ProtocolError] = []
        for item in self._reassembler.feed(frame):
            if isinstance(item, ProtocolError):
                results.append(item)
                continue
            try:
                results.append(decode(item, self._receives))
            except ProtocolError as error:
                results.append(error)
        return results

    def send(self, message: Out) -> tuple[Out, list[bytes]]:
        """Number ``message`` (when its id is 0) and cut it into frames for the MTU."""
        if message.id == 0:
            message = dataclasses.replace(message, id=self._next_id)
        self._next_id = max(self._next_id, message.id) + 1
        frames = list(framing.fragment(encode(message), message.id, self._att_mtu))
        return message, frames

    def reset(self) -> None:
        """Forget partial input, e.g. after a disconnection."""
        self._reassembler.reset()


class TerminalEndpoint(Endpoint[Command, Event]):
    """The terminal's side: receives commands, sends events."""

    def __init__(self, att_mtu: int = framing.MIN_ATT_MTU, **kwargs: int) -> None:
        super().__init__(COMMANDS, att_mtu, **kwargs)


class PhoneEndpoint(Endpoint[Event, Command]):
    """The phone's side: receives events, sends commands."""

    def __init__(self, att_mtu: int = framing.MIN_ATT_MTU, **kwargs: int) -> None:
        super().__init__(EVENTS, att_mtu, **kwargs)
