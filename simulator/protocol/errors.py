"""Protocol errors. Each says what was wrong, so a peer (or a test) can tell why."""

from __future__ import annotations


class ProtocolError(ValueError):
    """Bytes or a message that the protocol does not accept.

    ``code`` is stable (English, snake_case) and crosses the wire in an ``Error`` message;
    ``reason`` is a human explanation for logs and developers.
    """

    code = "protocol_error"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FramingError(ProtocolError):
    """A fragment that does not fit the frame format or the message being reassembled."""

    code = "framing_error"


class MessageError(ProtocolError):
    """A complete message that is not valid JSON of a known type with the right fields."""

    code = "invalid_message"


class UnsupportedVersion(MessageError):
    """A message of a protocol version this side does not speak."""

    code = "unsupported_version"


class UnknownMessageType(MessageError):
    """A message type this side does not know, or does not accept in this direction."""

    code = "unknown_message_type"


class ReplayedCommand(ProtocolError):
    """A command whose ``id`` is not above the last one accepted on this connection: a replay
    (or a phone that numbers its commands wrongly). Refused; the next valid one is served."""

    code = "replayed_command"
