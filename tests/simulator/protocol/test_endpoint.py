"""Endpoints: numbering, MTU, and a phone and a terminal wired together by a fake link."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from simulator.protocol import (
    FramingError,
    MessageError,
    PhoneEndpoint,
    ProtocolError,
    ReplayedCommand,
    TerminalEndpoint,
    UnknownMessageType,
)
from simulator.protocol.framing import fragment
from simulator.protocol.messages import (
    AuthorisationRequest,
    Command,
    DiagnosisRequest,
    DisplayUpdate,
    Error,
    Event,
    PaymentRequest,
    encode,
)

PAYMENT = PaymentRequest(transaction_id="T-0001", amount=4250, currency="EUR", reference="FA-42")
BIG_EVENT = AuthorisationRequest(
    transaction_id="T-0001",
    amount=4250,
    currency="EUR",
    entry_mode="contactless",
    brand="VISA",
    masked_pan="************4242",
    application_label="VISA",
    aid="A0000000031010",
    card_data={
        "scheme": "AES-DUKPT-1",
        "ksn": "5E1A000100000001" + "00000001",
        "nonce": "n" * 16,
        "ciphertext": "c",
    },
    emv={f"9F{i:02X}": "00" * 16 for i in range(40)},
)


def carry(frames: Sequence[bytes], receive: TerminalEndpoint | PhoneEndpoint) -> list[object]:
    """The fake link: every frame, in order, to the receiving endpoint."""
    out: list[object] = []
    for frame in frames:
        out.extend(receive.receive_frame(frame))
    return out


def test_ids_are_assigned_incrementally_and_used_as_message_numbers() -> None:
    terminal = TerminalEndpoint()
    ids = []
    for n in range(3):
        sent, frames = terminal.send(DisplayUpdate(lines=[f"line {n}"]))
        ids.append(sent.id)
        assert all(frame[1] == sent.id for frame in frames)
    assert ids == [1, 2, 3]


def test_an_explicit_id_is_kept_and_numbering_continues_after_it() -> None:
    phone = PhoneEndpoint()
    first, _ = phone.send(DiagnosisRequest())
    explicit, _ = phone.send(DiagnosisRequest(id=10))
    after, _ = phone.send(DiagnosisRequest())
    assert (first.id, explicit.id, after.id) == (1, 10, 11)


def test_an_explicit_lower_id_never_makes_numbering_go_back() -> None:
    phone = PhoneEndpoint()
    ids = [phone.send(DiagnosisRequest())[0].id for _ in range(3)]
    phone.send(DiagnosisRequest(id=1))  # e.g. a command re-sent with its original id
    after, _ = phone.send(DiagnosisRequest())
    assert after.id > max(ids)


def test_message_number_wraps_to_one_byte() -> None:
    phone = PhoneEndpoint()
    sent, frames = phone.send(DiagnosisRequest(id=257))
    assert sent.id == 257
    assert frames[0][1] == 1
    terminal = TerminalEndpoint()
    assert carry(frames, terminal) == [sent]


@pytest.mark.parametrize("att_mtu", [23, 24, 185, 517])
def test_frames_respect_the_mtu_and_carry_the_encoded_message(att_mtu: int) -> None:
    terminal = TerminalEndpoint(att_mtu)
    sent, frames = terminal.send(BIG_EVENT)
    assert all(len(frame) <= att_mtu - 3 for frame in frames)
    payload = frames[0][5:] + b"".join(frame[3:] for frame in frames[1:])
    assert payload == encode(sent)


def test_mtu_can_be_raised_after_negotiation_and_is_validated() -> None:
    phone = PhoneEndpoint()
    _, small = phone.send(PAYMENT)
    phone.att_mtu = 517
    _, large = phone.send(PAYMENT)
    assert len(small) > 1
    assert len(large) == 1
    with pytest.raises(ValueError, match="below the minimum"):
        phone.att_mtu = 22
    assert phone.att_mtu == 517
    with pytest.raises(ValueError, match="below the minimum"):
        TerminalEndpoint(att_mtu=20)


@pytest.mark.parametrize(("phone_mtu", "terminal_mtu"), [(23, 23), (517, 517), (185, 23)])
def test_phone_and_terminal_round_trip(phone_mtu: int, terminal_mtu: int) -> None:
    phone = PhoneEndpoint(phone_mtu)
    terminal = TerminalEndpoint(terminal_mtu)

    sent_command, frames = phone.send(PAYMENT)
    received = carry(frames, terminal)
    assert received == [sent_command]
    assert isinstance(received[0], Command)

    sent_event, frames = terminal.send(BIG_EVENT)
    received = carry(frames, phone)
    assert received == [sent_event]
    assert isinstance(received[0], Event)

    reply, frames = terminal.send(Error(code="busy", message="Occupé", in_reply_to=sent_command.id))
    assert carry(frames, phone) == [reply]


def test_garbage_then_a_valid_command() -> None:
    phone = PhoneEndpoint()
    terminal = TerminalEndpoint()
    sent, frames = phone.send(PAYMENT)
    garbage = [
        b"\x00",  # too short
        bytes([0x00, 1, 0, 0, 1, 0x7B]),  # frame version 0
        *fragment(b"{not json", 9, 23),  # a whole message that is not JSON
        *fragment(b'{"v":1,"type":"PaymentResponse"}', 10, 23),  # an event, to the terminal
        next(fragment(b" " * 100, 11, 23)),  # first fragment of a message abandoned below
    ]
    out = carry([*garbage, *frames], terminal)
    errors, last = out[:-1], out[-1]
    assert last == sent
    assert [type(error) for error in errors] == [
        FramingError,
        FramingError,
        MessageError,
        UnknownMessageType,
        FramingError,  # the abandoned first fragment, interrupted by the valid message
    ]
    assert all(isinstance(error, ProtocolError) and error.reason for error in errors)


def test_terminal_refuses_events_and_phone_refuses_commands() -> None:
    phone = PhoneEndpoint()
    terminal = TerminalEndpoint()
    _, command_frames = phone.send(DiagnosisRequest())
    _, event_frames = terminal.send(DisplayUpdate(lines=["x"]))
    [to_phone] = carry(command_frames, phone)
    [to_terminal] = carry(event_frames, terminal)
    assert isinstance(to_phone, UnknownMessageType)
    assert isinstance(to_terminal, UnknownMessageType)


def test_reset_drops_a_partial_message() -> None:
    phone = PhoneEndpoint()
    terminal = TerminalEndpoint()
    _, frames = phone.send(PAYMENT)
    assert len(frames) > 1
    assert carry(frames[:1], terminal) == []
    terminal.reset()
    out = carry(frames[1:], terminal)
    assert out
    assert all(isinstance(item, FramingError) for item in out)
    again, frames = phone.send(PAYMENT)
    assert carry(frames, terminal) == [again]


def test_max_message_size_is_enforced_on_receive() -> None:
    phone = PhoneEndpoint(517)
    terminal = TerminalEndpoint(517, max_message_size=64)
    _, frames = phone.send(PAYMENT)
    [error] = carry(frames, terminal)
    assert isinstance(error, FramingError)
    assert "above the 64-byte cap" in error.reason
    small, frames = phone.send(DiagnosisRequest())
    assert carry(frames, terminal) == [small]


def test_receive_frame_never_raises_on_a_huge_integer() -> None:
    terminal = TerminalEndpoint(517)
    data = b'{"v":1,"type":"DiagnosisRequest","id":' + b"9" * 5000 + b"}"
    out = carry(list(fragment(data, 1, 517)), terminal)
    assert len(out) == 1
    assert isinstance(out[0], MessageError)


# -- replayed commands ---------------------------------------------------------------------------


def command_frames(command: Command) -> list[bytes]:
    """The frames of ``command`` exactly as numbered (no endpoint renumbers it)."""
    return list(fragment(encode(command), command.id, 23))


def diagnosis(command_id: int) -> DiagnosisRequest:
    return DiagnosisRequest(id=command_id)


def test_a_command_sent_again_is_refused_as_a_replay_and_the_next_one_is_served() -> None:
    terminal = TerminalEndpoint()
    payment = dataclasses.replace(PAYMENT, id=1)
    first = command_frames(payment)
    assert carry(first, terminal) == [payment]
    [replay] = carry(first, terminal)  # the same writes, captured and sent again
    assert isinstance(replay, ReplayedCommand)
    assert replay.code == "replayed_command"
    assert "PaymentRequest id 1 is not above 1" in replay.reason
    assert carry(command_frames(diagnosis(2)), terminal) == [diagnosis(2)]
    assert terminal.last_received_id == 2


@pytest.mark.parametrize("replayed_id", [0, 1, 4, 5])
def test_ids_not_above_the_last_accepted_are_refused(replayed_id: int) -> None:
    terminal = TerminalEndpoint()
    assert carry(command_frames(diagnosis(5)), terminal) == [diagnosis(5)]
    [refusal] = carry(command_frames(diagnosis(replayed_id)), terminal)
    assert isinstance(refusal, ReplayedCommand)
    assert terminal.last_received_id == 5  # a refusal moves nothing
    assert carry(command_frames(diagnosis(9)), terminal) == [diagnosis(9)]  # gaps are fine


def test_a_command_without_id_is_refused_by_the_terminal() -> None:
    """A missing id means 0, which no endpoint sends (they number from 1)."""
    terminal = TerminalEndpoint()
    frames = list(fragment(b'{"v":1,"type":"DiagnosisRequest"}', 0, 23))
    [refusal] = carry(frames, terminal)
    assert isinstance(refusal, ReplayedCommand)


def test_an_invalid_message_does_not_consume_its_id() -> None:
    terminal = TerminalEndpoint()
    bad = b'{"v":1,"type":"PaymentRequest","id":3,"amount":"x"}'
    [error] = carry(list(fragment(bad, 3, 23)), terminal)
    assert isinstance(error, MessageError)
    assert terminal.last_received_id == 0
    assert carry(command_frames(diagnosis(3)), terminal) == [diagnosis(3)]


def test_each_connection_has_its_own_numbering() -> None:
    first, second = TerminalEndpoint(), TerminalEndpoint()
    assert carry(command_frames(diagnosis(7)), first) == [diagnosis(7)]
    assert carry(command_frames(diagnosis(1)), second) == [diagnosis(1)]


def test_the_phone_numbers_its_commands_so_that_none_is_ever_refused() -> None:
    phone, terminal = PhoneEndpoint(), TerminalEndpoint()
    received = []
    for _ in range(300):  # past the frame's 8-bit message number
        _, frames = phone.send(DiagnosisRequest())
        received.extend(carry(frames, terminal))
    assert all(isinstance(item, DiagnosisRequest) for item in received)
    assert terminal.last_received_id == 300


def test_the_phone_does_not_refuse_events_by_id() -> None:
    """Replay protection is the terminal's: events may be numbered by several links."""
    phone = PhoneEndpoint()
    update = DisplayUpdate(id=4, lines=["BIENVENUE"])
    frames = list(fragment(encode(update), 4, 23))
    assert carry(frames, phone) == [update]
    assert carry(frames, phone) == [update]


def test_an_absurd_command_id_is_refused_and_does_not_block_the_next_ones() -> None:
    from simulator.protocol.endpoint import MAX_ID_STEP
    from simulator.protocol.errors import MessageError
    from simulator.protocol.messages import DiagnosisRequest

    terminal = TerminalEndpoint(att_mtu=185)
    phone = PhoneEndpoint(att_mtu=185)

    def deliver(command: DiagnosisRequest) -> list[object]:
        _, frames = phone.send(command)
        return [item for frame in frames for item in terminal.receive_frame(frame)]

    assert isinstance(deliver(DiagnosisRequest(id=1))[0], DiagnosisRequest)
    (refused,) = deliver(DiagnosisRequest(id=10**30))
    assert isinstance(refused, MessageError)
    assert "jumps more than" in refused.reason
    (far,) = deliver(DiagnosisRequest(id=2 + MAX_ID_STEP))
    assert isinstance(far, MessageError)
    (next_one,) = deliver(DiagnosisRequest(id=2))
    assert isinstance(next_one, DiagnosisRequest)
