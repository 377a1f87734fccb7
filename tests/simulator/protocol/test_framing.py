"""Frames: fragmentation to the ATT MTU and reassembly with its defect checks (sans-IO)."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.protocol.errors import FramingError
from simulator.protocol.framing import (
    DEFAULT_MAX_MESSAGE_SIZE,
    FLAG_FIRST,
    FLAG_LAST,
    FRAME_VERSION,
    Reassembler,
    fragment,
    fragment_payload_size,
)

VERSION_BITS = FRAME_VERSION << 6
FIRST = VERSION_BITS | FLAG_FIRST
MIDDLE = VERSION_BITS
LAST = VERSION_BITS | FLAG_LAST
ONLY = VERSION_BITS | FLAG_FIRST | FLAG_LAST
MTUS = (23, 24, 185, 517)


def make_frame(
    flags: int, number: int, index: int, payload: bytes = b"", length: int | None = None
) -> bytes:
    """A frame built by hand from the documented layout."""
    header = bytes([flags, number, index])
    if length is not None:
        header += struct.pack(">H", length)
    return header + payload


def feed_all(reassembler: Reassembler, frames: list[bytes]) -> list[bytes | FramingError]:
    out: list[bytes | FramingError] = []
    for frame in frames:
        out.extend(reassembler.feed(frame))
    return out


def assert_usable(reassembler: Reassembler, number: int = 42) -> None:
    """A following valid multi-fragment message still reassembles exactly."""
    message = bytes(range(256)) * 2
    assert feed_all(reassembler, list(fragment(message, number, 23))) == [message]
    assert not reassembler.in_progress


# ------------------------------------------------------------------------------ fragmentation
def test_single_frame_layout_matches_the_documented_header() -> None:
    frames = list(fragment(b"hello", 7, 23))
    assert frames == [bytes([0b0100_0011, 7, 0]) + struct.pack(">H", 5) + b"hello"]


def test_multi_frame_layout_flags_indexes_and_length() -> None:
    message = bytes(100)
    frames = list(fragment(message, 300, 23))  # message number wraps to one byte
    chunk = 23 - 3 - 5
    assert len(frames) == math.ceil(100 / chunk)
    assert frames[0][:5] == bytes([FIRST, 300 & 0xFF, 0]) + struct.pack(">H", 100)
    for i, frame in enumerate(frames[1:-1], start=1):
        assert frame[:3] == bytes([MIDDLE, 300 & 0xFF, i])
    assert frames[-1][:3] == bytes([LAST, 300 & 0xFF, len(frames) - 1])


@pytest.mark.parametrize("att_mtu", MTUS)
def test_round_trip_at_size_boundaries(att_mtu: int) -> None:
    chunk = fragment_payload_size(att_mtu)
    sizes = sorted({1, 2, chunk - 1, chunk, chunk + 1, 2 * chunk, 2 * chunk + 1, 8191, 8192})
    reassembler = Reassembler()
    for number, size in enumerate(sizes):
        message = bytes((number + i) % 251 for i in range(size))
        frames = list(fragment(message, number, att_mtu))
        assert len(frames) == math.ceil(size / chunk)
        assert all(len(frame) <= att_mtu - 3 for frame in frames)
        assert feed_all(reassembler, frames) == [message]
        assert not reassembler.in_progress


@given(
    message=st.binary(min_size=1, max_size=8192),
    att_mtu=st.integers(23, 517),
    number=st.integers(0, 255),
)
def test_round_trip_property(message: bytes, att_mtu: int, number: int) -> None:
    frames = list(fragment(message, number, att_mtu))
    assert all(len(frame) <= att_mtu - 3 for frame in frames)
    assert all(frame[1] == number for frame in frames)
    assert [frame[2] for frame in frames] == [i & 0xFF for i in range(len(frames))]
    reassembler = Reassembler()
    for frame in frames[:-1]:
        assert reassembler.feed(frame) == []
        assert reassembler.in_progress
    assert reassembler.feed(frames[-1]) == [message]
    assert not reassembler.in_progress


def test_fragment_index_wraps_past_255_and_still_reassembles() -> None:
    message = bytes(i % 256 for i in range(8192))
    frames = list(fragment(message, 1, 23))
    assert len(frames) > 256
    assert frames[256][2] == 0
    assert feed_all(Reassembler(), frames) == [message]


def test_fragment_refuses_empty_and_oversized_messages_and_small_mtu() -> None:
    with pytest.raises(ValueError, match="empty"):
        list(fragment(b"", 1, 23))
    with pytest.raises(ValueError, match="65535"):
        list(fragment(bytes(0x10000), 1, 517))
    with pytest.raises(ValueError, match="minimum of 23"):
        list(fragment(b"x", 1, 22))


# ------------------------------------------------------------------------------ defects
PARTIAL = make_frame(FIRST, 5, 0, b"abcd", length=10)  # message 5: 4 of 10 bytes

DEFECTS = {
    "short frame": ([], b"\x41\x01", "shorter than its header"),
    "empty frame": ([], b"", "shorter than its header"),
    "version 0": ([], make_frame(ONLY & 0x3F, 1, 0, b"x", length=1), "version 0"),
    "version 2": ([], make_frame((2 << 6) | 0x03, 1, 0, b"x", length=1), "version 2"),
    "reserved bits": ([], make_frame(ONLY | 0x04, 1, 0, b"x", length=1), "reserved"),
    "reserved bit 5": ([], make_frame(ONLY | 0x20, 1, 0, b"x", length=1), "reserved"),
    "continuation without first": ([], make_frame(LAST, 1, 1, b"x"), "without a first"),
    "first shorter than its header": ([], bytes([ONLY, 1, 0, 0]), "first fragment is shorter"),
    "first with non-zero index": (
        [],
        make_frame(ONLY, 1, 3, b"x", length=1),
        "first fragment has index 3",
    ),
    "out-of-order fragment": ([PARTIAL], make_frame(MIDDLE, 5, 2, b"ef"), "out of order"),
    "repeated fragment": ([PARTIAL], make_frame(MIDDLE, 5, 0, b"ef"), "out of order"),
    "fragment of another message": (
        [PARTIAL],
        make_frame(MIDDLE, 6, 1, b"ef"),
        "fragment of message 6 inside message 5",
    ),
    "declared length above cap": (
        [],
        make_frame(FIRST, 1, 0, b"x", length=DEFAULT_MAX_MESSAGE_SIZE + 1),
        "above the 8192-byte cap",
    ),
    "longer than declared (first)": (
        [],
        make_frame(ONLY, 1, 0, b"abc", length=2),
        "longer than its declared 2 bytes",
    ),
    "longer than declared (continuation)": (
        [PARTIAL],
        make_frame(LAST, 5, 1, b"0123456789"),
        "longer than its declared 10 bytes",
    ),
    "shorter than declared at LAST": (
        [PARTIAL],
        make_frame(LAST, 5, 1, b"ef"),
        "ended at 6 bytes, declared 10",
    ),
    "single frame shorter than declared": (
        [],
        make_frame(ONLY, 1, 0, b"ab", length=3),
        "ended at 2 bytes, declared 3",
    ),
    "zero length": ([], make_frame(ONLY, 1, 0, b"", length=0), "length of 0"),
}


@pytest.mark.parametrize(("before", "bad", "reason"), DEFECTS.values(), ids=DEFECTS.keys())
def test_defect_is_reported_with_its_reason_and_reassembler_recovers(
    before: list[bytes], bad: bytes, reason: str
) -> None:
    reassembler = Reassembler()
    assert feed_all(reassembler, before) == []
    out = reassembler.feed(bad)
    assert len(out) == 1
    error = out[0]
    assert isinstance(error, FramingError)
    assert reason in error.reason
    assert error.code == "framing_error"
    assert not reassembler.in_progress
    assert_usable(reassembler)


def test_declared_length_at_cap_is_accepted() -> None:
    reassembler = Reassembler(max_message_size=100)
    message = bytes(range(100))
    assert feed_all(reassembler, list(fragment(message, 1, 517))) == [message]
    out = reassembler.feed(make_frame(FIRST, 2, 0, b"x", length=101))
    assert len(out) == 1
    assert isinstance(out[0], FramingError)
    assert "above the 100-byte cap" in out[0].reason


def test_defect_drops_the_partial_message() -> None:
    """After a bad continuation, the rest of the broken message is dropped (reported once),
    never glued onto anything; the next message goes through."""
    reassembler = Reassembler()
    reassembler.feed(PARTIAL)
    (error,) = reassembler.feed(make_frame(MIDDLE, 5, 7, b"ef"))  # out of order: dropped
    assert isinstance(error, FramingError)
    assert reassembler.feed(make_frame(LAST, 5, 1, b"efghij")) == []
    assert not reassembler.in_progress
    assert reassembler.feed(make_frame(ONLY, 6, 0, b"new", length=3)) == [b"new"]


def test_an_oversized_message_is_reported_once_not_per_fragment() -> None:
    reassembler = Reassembler(max_message_size=100)
    frames = list(fragment(bytes(1000), 3, 23))
    results = [item for frame in frames for item in reassembler.feed(frame)]
    assert len(results) == 1
    assert isinstance(results[0], FramingError)
    assert "above the 100-byte cap" in results[0].reason


def test_frames_never_exceed_an_attribute_value_even_with_a_large_mtu() -> None:
    frames = list(fragment(bytes(2000), 1, 517))
    assert max(len(f) for f in frames) == 512
    assert fragment_payload_size(517) == 507


def test_first_frame_interrupting_a_partial_message_reports_it_and_keeps_the_new_one() -> None:
    reassembler = Reassembler()
    assert reassembler.feed(PARTIAL) == []
    out = reassembler.feed(make_frame(ONLY, 6, 0, b"new", length=3))
    assert len(out) == 2
    assert isinstance(out[0], FramingError)
    assert "message 5 interrupted by message 6" in out[0].reason
    assert out[1] == b"new"
    assert not reassembler.in_progress


def test_interrupting_first_frame_starts_a_multi_fragment_message() -> None:
    reassembler = Reassembler()
    reassembler.feed(PARTIAL)
    message = bytes(range(40))
    frames = list(fragment(message, 6, 23))
    first = reassembler.feed(frames[0])
    assert len(first) == 1
    assert isinstance(first[0], FramingError)
    assert reassembler.in_progress
    assert feed_all(reassembler, frames[1:]) == [message]


def test_interrupting_first_frame_that_is_itself_bad_reports_both() -> None:
    reassembler = Reassembler()
    reassembler.feed(PARTIAL)
    out = reassembler.feed(make_frame(ONLY, 6, 0, b"", length=0))
    assert [type(item) for item in out] == [FramingError, FramingError]
    assert isinstance(out[0], FramingError)
    assert isinstance(out[1], FramingError)
    assert "interrupted" in out[0].reason
    assert "length of 0" in out[1].reason
    assert not reassembler.in_progress
    assert_usable(reassembler)


def test_reset_forgets_the_partial_message() -> None:
    reassembler = Reassembler()
    reassembler.feed(PARTIAL)
    reassembler.reset()
    assert not reassembler.in_progress
    out = reassembler.feed(make_frame(LAST, 5, 1, b"efghij"))
    assert len(out) == 1
    assert isinstance(out[0], FramingError)
    assert_usable(reassembler)


# ------------------------------------------------------------------------------ robustness
# Frames that look like frames (valid version, small numbers and indexes, lengths around the
# cap) reach much deeper into the state machine than uniformly random bytes.
frame_like = st.builds(
    lambda flags, number, index, length, payload: (
        bytes([flags, number, index])
        + (struct.pack(">H", length) if flags & FLAG_FIRST else b"")
        + payload
    ),
    st.one_of(st.sampled_from([FIRST, MIDDLE, LAST, ONLY]), st.integers(0, 255)),
    st.integers(0, 3),
    st.integers(0, 3),
    st.one_of(st.integers(0, 80), st.integers(0, 0xFFFF)),
    st.binary(max_size=70),
)
junk = st.lists(st.one_of(st.binary(max_size=80), frame_like), max_size=30)


@given(
    garbage=junk,
    message=st.binary(min_size=1, max_size=64),
    att_mtu=st.integers(23, 100),
    number=st.integers(0, 255),
)
def test_arbitrary_frames_never_raise_and_a_valid_message_still_goes_through(
    garbage: list[bytes], message: bytes, att_mtu: int, number: int
) -> None:
    reassembler = Reassembler(max_message_size=64)
    for frame in garbage:
        out = reassembler.feed(frame)
        assert all(isinstance(item, (bytes, FramingError)) for item in out)
        assert all(0 < len(item) <= 64 for item in out if isinstance(item, bytes))
        # Memory stays bounded by the cap, whatever the peer declares.
        assert len(reassembler._buffer) <= reassembler.max_message_size
    out = feed_all(reassembler, list(fragment(message, number, att_mtu)))
    assert out[-1] == message
    assert all(isinstance(item, FramingError) for item in out[:-1])
    assert len(out) <= 2  # at most the abandoned partial message is reported
    assert not reassembler.in_progress
