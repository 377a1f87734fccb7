"""The sans-IO wire codec between phone and terminal: frames and typed messages.

See ``docs/protocol.md`` for the wire format.
"""

from simulator.protocol.endpoint import Endpoint, PhoneEndpoint, TerminalEndpoint
from simulator.protocol.errors import (
    FramingError,
    MessageError,
    ProtocolError,
    ReplayedCommand,
    UnknownMessageType,
    UnsupportedVersion,
)

__all__ = [
    "Endpoint",
    "FramingError",
    "MessageError",
    "PhoneEndpoint",
    "ProtocolError",
    "ReplayedCommand",
    "TerminalEndpoint",
    "UnknownMessageType",
    "UnsupportedVersion",
]
