"""One side of one connection: frames in, messages out; messages in, frames out.

The endpoint owns the reassembler, the message numbering and the ATT MTU of its connection.
It does no I/O: the BLE edge hands it the bytes of each ATT write or notification and sends
the frames it returns.

The terminal's endpoint also refuses replays: a command whose ``id`` is not above the last
one it accepted on this connection comes out as a :class:`ReplayedCommand` error instead of a
command (so a captured write sent again does nothing), and the next valid command is served.
"""

from __future__ import annotations

import dataclasses
from typing import Generic, TypeVar

from simulator.protocol import framing
from simulator.protocol.errors import MessageError, ProtocolError, ReplayedCommand
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
        *,
        refuse_replays: bool = False,
    ) -> None:
        self._receives = receives
        self._reassembler = framing.Reassembler(max_message_size)
        self._next_id = 1
        self._refuse_replays = refuse_replays
        #: the id of the last message accepted (0: none yet; ids start at 1)
        self.last_received_id = 0
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
                message = decode(item, self._receives)
            except ProtocolError as error:
                results.append(error)
                continue
            if self._refuse_replays and message.id <= self.last_received_id:
                results.append(
                    ReplayedCommand(
                        f"{type(message).__name__} id {message.id} is not above "
                        f"{self.last_received_id}, the last id accepted on this connection"
                    )
                )
                continue
            if self._refuse_replays and message.id > self.last_received_id + MAX_ID_STEP:
                # One absurd id must not make every later genuine command look replayed.
                results.append(
                    MessageError(
                        f"{type(message).__name__} id {message.id} jumps more than "
                        f"{MAX_ID_STEP} above the last id accepted ({self.last_received_id})"
                    )
                )
                continue
            self.last_received_id = max(self.last_received_id, message.id)
            results.append(message)
        return results

    def send(self, message: Out) -> tuple[Out, list[bytes]]:
        """Number ``message`` (when its id is 0) and cut it into frames for the MTU."""
        if message.id == 0:
            message = dataclasses.replace(message, id=self._next_id)
        self._next_id = max(self._next_id, message.id) + 1
        frames = list(framing.fragment(encode(message), message.id, self._att_mtu))
        return message, frames

    def reset(self) -> None:
        """Forget partial input, e.g. after a disconnection (not the last id accepted: a
        connection never accepts an id twice)."""
        self._reassembler.reset()


#: How far above the last accepted id a command may be numbered (a phone counts up by one).
MAX_ID_STEP = 1024


class TerminalEndpoint(Endpoint[Command, Event]):
    """The terminal's side: receives commands (refusing replayed ids), sends events."""

    def __init__(
        self,
        att_mtu: int = framing.MIN_ATT_MTU,
        max_message_size: int = framing.DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        super().__init__(COMMANDS, att_mtu, max_message_size, refuse_replays=True)


class PhoneEndpoint(Endpoint[Event, Command]):
    """The phone's side: receives events, sends commands."""

    def __init__(
        self,
        att_mtu: int = framing.MIN_ATT_MTU,
        max_message_size: int = framing.DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        super().__init__(EVENTS, att_mtu, max_message_size)
