"""Frames: one message cut into fragments that each fit one ATT write or notification.

A BLE attribute write or notification carries at most ``ATT_MTU - 3`` bytes. Messages are
longer than that, so each is cut into fragments, each with a small header::

    byte 0   flags     bits 7-6: frame format version (1); bit 0: FIRST; bit 1: LAST
    byte 1   message   message number, 0-255, counting up per direction and connection
    byte 2   fragment  fragment index within the message, 0-255 (wraps)
    bytes 3-4          FIRST fragment only: total message length, big-endian
    then               payload bytes

A one-fragment message has both FIRST and LAST set. The reassembler checks that fragments
arrive in order, belong to the message being built, and that the declared length is under the
size cap and matches what arrived. Any defect is reported as a :class:`FramingError` with a
reason and discards the partial message; the next FIRST fragment starts afresh, so one bad
frame never wedges the link. Sans-IO: bytes in, messages and errors out.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from simulator.protocol.errors import FramingError

FRAME_VERSION = 1
FLAG_FIRST = 0x01
FLAG_LAST = 0x02
_VERSION_SHIFT = 6
_RESERVED_MASK = 0x3C

HEADER_SIZE = 3
FIRST_HEADER_SIZE = 5
ATT_WRITE_OVERHEAD = 3  # opcode + handle in an ATT write request or notification

MAX_ATTRIBUTE_VALUE = 512  # an attribute value never exceeds 512 bytes, whatever the MTU
DEFAULT_MAX_MESSAGE_SIZE = 8192
MIN_ATT_MTU = 23


def fragment_payload_size(att_mtu: int) -> int:
    """Bytes of message a fragment can carry for a given ATT MTU."""
    if att_mtu < MIN_ATT_MTU:
        raise ValueError(f"ATT MTU {att_mtu} is below the minimum of {MIN_ATT_MTU}")
    return min(att_mtu - ATT_WRITE_OVERHEAD, MAX_ATTRIBUTE_VALUE) - FIRST_HEADER_SIZE


def fragment(message: bytes, message_number: int, att_mtu: int) -> Iterator[bytes]:
    """Cut ``message`` into frames that each fit in one ATT PDU of ``att_mtu``."""
    if not message:
        raise ValueError("cannot frame an empty message")
    if len(message) > 0xFFFF:
        raise ValueError(f"message of {len(message)} bytes exceeds the 65535-byte frame limit")
    chunk = fragment_payload_size(att_mtu)
    total = len(message)
    offsets = range(0, total, chunk)
    last_index = len(offsets) - 1
    version = FRAME_VERSION << _VERSION_SHIFT
    for index, offset in enumerate(offsets):
        flags = version
        if index == 0:
            flags |= FLAG_FIRST
        if index == last_index:
            flags |= FLAG_LAST
        header = struct.pack(">BBB", flags, message_number & 0xFF, index & 0xFF)
        if index == 0:
            header += struct.pack(">H", total)
        yield header + message[offset : offset + chunk]


class Reassembler:
    """Rebuilds messages from frames of one direction of one connection."""

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self._buffer = bytearray()
        self._expected_length = 0
        self._message_number: int | None = None
        self._next_index = 0
        self._discarding: int | None = None  # message already reported as broken

    @property
    def in_progress(self) -> bool:
        """Whether a message has started and not yet completed."""
        return self._message_number is not None

    def reset(self) -> None:
        """Forget any partial message (on a link loss, for instance)."""
        self._buffer = bytearray()
        self._expected_length = 0
        self._message_number = None
        self._next_index = 0

    def feed(self, frame: bytes) -> list[bytes | FramingError]:
        """Take one frame; return what it produced, in order.

        The list holds the whole message when this frame completes one, and a
        :class:`FramingError` for each defect found: the partial message is then dropped.
        A FIRST frame that interrupts a partial message reports the abandoned one and is kept
        as the start of the next message, so garbage never costs the next valid message.
        """
        number = self._message_number
        try:
            return self._feed(frame)
        except FramingError as error:
            self.reset()
            self._discarding = number
            return [error]

    def _feed(self, frame: bytes) -> list[bytes | FramingError]:
        if len(frame) < HEADER_SIZE:
            raise FramingError(f"frame of {len(frame)} bytes is shorter than its header")
        flags, number, index = frame[0], frame[1], frame[2]
        version = flags >> _VERSION_SHIFT
        if version != FRAME_VERSION:
            raise FramingError(f"unsupported frame version {version}")
        if flags & _RESERVED_MASK:
            raise FramingError(f"reserved flag bits set: {flags:#04x}")
        if flags & FLAG_FIRST:
            self._discarding = None
            events: list[bytes | FramingError] = []
            if self._message_number is not None:
                events.append(
                    FramingError(f"message {self._message_number} interrupted by message {number}")
                )
                self.reset()
            try:
                events.extend(self._start(frame, flags, number, index))
            except FramingError as error:
                self.reset()
                self._discarding = number
                events.append(error)
            return events
        if self._message_number is None:
            if number == self._discarding:
                return []  # the rest of a message already reported: one error is enough
            raise FramingError("continuation fragment without a first fragment")
        if number != self._message_number:
            raise FramingError(
                f"fragment of message {number} inside message {self._message_number}"
            )
        if index != self._next_index:
            raise FramingError(f"fragment {index} out of order, expected {self._next_index}")
        return self._append(frame[HEADER_SIZE:], flags)

    def _start(
        self, frame: bytes, flags: int, number: int, index: int
    ) -> list[bytes | FramingError]:
        if len(frame) < FIRST_HEADER_SIZE:
            raise FramingError("first fragment is shorter than its header")
        if index != 0:
            raise FramingError(f"first fragment has index {index}, expected 0")
        (length,) = struct.unpack_from(">H", frame, HEADER_SIZE)
        if length == 0:
            raise FramingError("message declares a length of 0")
        if length > self.max_message_size:
            raise FramingError(
                f"message declares {length} bytes, above the {self.max_message_size}-byte cap"
            )
        self._message_number = number
        self._expected_length = length
        return self._append(frame[FIRST_HEADER_SIZE:], flags)

    def _append(self, payload: bytes, flags: int) -> list[bytes | FramingError]:
        if len(self._buffer) + len(payload) > self._expected_length:
            raise FramingError(f"message longer than its declared {self._expected_length} bytes")
        self._buffer += payload
        self._next_index = (self._next_index + 1) & 0xFF
        if not flags & FLAG_LAST:
            return []
        if len(self._buffer) != self._expected_length:
            raise FramingError(
                f"message ended at {len(self._buffer)} bytes, declared {self._expected_length}"
            )
        message = bytes(self._buffer)
        self.reset()
        return [message]
