"""Reading packet captures: the payment protocol's messages in a btsnoop file.

``tpe-sim terminal --snoop FILE`` and ``pytest --tpe-snoop DIR`` write btsnoop captures
(version 1, datalink 1002: HCI UART/H4) that Wireshark opens. Wireshark knows ATT, not the
payment service's frames (``docs/protocol.md``, section 3); this module joins them back into
the JSON messages, so that a capture can be read (``tpe-sim capture FILE``) or checked by a
test without a dissector. Card data stays as it crossed the air: sealed.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from simulator.protocol.framing import Reassembler

BTSNOOP_MAGIC = b"btsnoop\0"
DATALINK_H4 = 1002
ATT_CID = 0x0004
ATT_WRITE_REQUEST = 0x12
ATT_HANDLE_VALUE_NOTIFICATION = 0x1B
#: a capture shows what crossed the air: any length a frame header can declare
CAPTURE_MAX_MESSAGE = 0xFFFF


class CaptureError(ValueError):
    """Not a btsnoop capture this module reads."""


@dataclass(frozen=True)
class CapturedMessage:
    #: ``sent``: by the device whose capture it is; ``received``: by it
    direction: Literal["sent", "received"]
    message: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.message.get("type", "?"))


@dataclass(frozen=True)
class Capture:
    packets: int
    #: (direction flag, L2CAP channel id, PDU) of every reassembled L2CAP PDU
    pdus: tuple[tuple[int, int, bytes], ...]
    messages: tuple[CapturedMessage, ...]

    @property
    def att_pdus(self) -> int:
        return sum(1 for _, cid, _ in self.pdus if cid == ATT_CID)


def read_capture(data: bytes) -> Capture:
    """Parse a btsnoop capture: HCI ACL packets reassembled into L2CAP PDUs, the ATT writes
    and notifications of the payment service joined into protocol messages."""
    if data[:8] != BTSNOOP_MAGIC:
        raise CaptureError("not a btsnoop capture (no 'btsnoop' header)")
    if len(data) < 16:
        raise CaptureError("truncated btsnoop header")
    version, datalink = struct.unpack(">II", data[8:16])
    if (version, datalink) != (1, DATALINK_H4):
        raise CaptureError(f"btsnoop version {version}, datalink {datalink}: expected 1, 1002")
    offset, packets = 16, 0
    pending: dict[tuple[int, int], bytes] = {}
    pdus: list[tuple[int, int, bytes]] = []
    while offset + 24 <= len(data):
        _orig, length, flags, _drops, _time = struct.unpack(">IIIIQ", data[offset : offset + 24])
        packet = data[offset + 24 : offset + 24 + length]
        offset += 24 + length
        packets += 1
        if len(packet) < 5 or packet[0] != 0x02:  # ACL data only
            continue
        header, _size = struct.unpack("<HH", packet[1:5])
        key = (flags & 1, header & 0x0FFF)  # direction, connection handle
        continuation = (header >> 12) & 0x3 == 0x1
        pending[key] = (pending.get(key, b"") if continuation else b"") + packet[5:]
        buffer = pending[key]
        if len(buffer) >= 4:
            pdu_length, cid = struct.unpack("<HH", buffer[:4])
            if len(buffer) >= 4 + pdu_length:
                pdus.append((key[0], cid, buffer[4 : 4 + pdu_length]))
                del pending[key]
    return Capture(packets, tuple(pdus), tuple(_messages(pdus)))


def read_capture_file(path: Path) -> Capture:
    try:
        return read_capture(path.read_bytes())
    except OSError as error:
        raise CaptureError(f"{path}: {error.strerror or error}") from None
    except CaptureError as error:
        raise CaptureError(f"{path}: {error}") from None


def _messages(pdus: list[tuple[int, int, bytes]]) -> list[CapturedMessage]:
    """The protocol messages of the ATT writes and notifications, each direction's frames
    joined by the protocol's own :class:`Reassembler`; what does not make a JSON object
    (bad framing, bad JSON) is kept as an ``unreadable`` entry with the bytes at fault."""
    streams = {direction: Reassembler(CAPTURE_MAX_MESSAGE) for direction in (0, 1)}
    messages = []
    for direction, cid, pdu in pdus:
        if (
            cid != ATT_CID
            or not pdu
            or pdu[0]
            not in (
                ATT_WRITE_REQUEST,
                ATT_HANDLE_VALUE_NOTIFICATION,
            )
        ):
            continue
        frame = pdu[3:]  # opcode, attribute handle
        if not frame:
            continue
        for event in streams[direction].feed(frame):
            decoded: object
            if isinstance(event, bytes):
                try:
                    decoded = json.loads(event)
                except ValueError:
                    decoded = {"type": "?", "unreadable": event.hex()}
            else:  # a FramingError: the frame that showed it
                decoded = {"type": "?", "unreadable": frame.hex(), "error": str(event)}
            if isinstance(decoded, dict):
                # btsnoop flag bit 0: 0 = sent by the capturing device, 1 = received by it
                messages.append(CapturedMessage("received" if direction else "sent", decoded))
    return messages


def describe(capture: Capture) -> list[str]:
    """One line per protocol message, as ``tpe-sim capture`` prints them."""
    lines = []
    for item in capture.messages:
        arrow = "→" if item.direction == "sent" else "←"
        fields = {k: v for k, v in item.message.items() if k not in ("type", "v")}
        lines.append(f"{arrow} {item.type} {json.dumps(fields, ensure_ascii=False)}")
    return lines
