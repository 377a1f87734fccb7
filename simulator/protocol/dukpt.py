"""AES DUKPT, Derived Unique Key Per Transaction (ANSI X9.24-3-2017), on ``cryptography``'s AES.

One base derivation key (BDK) at the processor; in each terminal only its *initial key*,
derived from the BDK and the terminal's 8-byte *initial key ID*. For every transaction the
terminal moves its 32-bit transaction counter on and derives a key no other transaction uses;
the processor, given the 12-byte key serial number (KSN = initial key ID ‖ counter), derives the
same key from the BDK. Whoever learns one transaction key learns nothing of the others, nor of
the initial key.

The standard's derivation function is one AES-ECB block encryption per 128 bits of key, under
the derivation key, of 16 bytes of *derivation data*::

    byte 0      version, 01
    byte 1      key block counter, 01 for the first 128 bits of the derived key, 02 next…
    bytes 2-3   key usage indicator (:class:`KeyUsage`), e.g. 8001 initial key, 3000 data
    bytes 4-5   algorithm of the derived key (:class:`KeyType`): 0002 AES-128 … 0004 AES-256
    bytes 6-7   length of the derived key in bits: 0080, 00C0 or 0100
    bytes 8-15  the initial key ID, for the initial key; otherwise the initial key ID's last
                4 bytes (the derivation ID) and a 4-byte transaction counter

From the initial key to the transaction key, one derivation per bit set in the counter, from
the most significant: each step uses the counter with only the bits handled so far. A counter
may have at most 16 bits set (so that a terminal keeps at most 16 future keys); terminals skip
the others (:func:`next_counter`). Working keys (data encryption, PIN, MAC) are derived from
the transaction key with their usage and the full counter.

The simulated terminal keeps its initial key and derives each transaction key from it (the
"host" computation), where a real one erases it and keeps a register of future keys; the keys
are the same. This module does no I/O and reads no clock.
"""

from __future__ import annotations

from enum import Enum, IntEnum

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

KSN_SIZE = 12
INITIAL_KEY_ID_SIZE = 8
BDK_ID_SIZE = 4
#: A transaction counter has at most this many bits set (the standard's MAX_WORK).
MAX_COUNTER_BITS = 16
MAX_COUNTER = 0xFFFF_FFFF


class DukptError(ValueError):
    """A key, key serial number or counter that DUKPT does not accept."""


class KeyUsage(IntEnum):
    """Key usage indicators of the derivation data (X9.24-3-2017, table 2)."""

    KEY_ENCRYPTION_KEY = 0x0002
    PIN_ENCRYPTION = 0x1000
    MAC_GENERATION = 0x2000
    MAC_VERIFICATION = 0x2001
    MAC_BOTH_WAYS = 0x2002
    DATA_ENCRYPTION_ENCRYPT = 0x3000
    DATA_ENCRYPTION_DECRYPT = 0x3001
    DATA_ENCRYPTION_BOTH_WAYS = 0x3002
    KEY_DERIVATION = 0x8000
    KEY_DERIVATION_INITIAL_KEY = 0x8001


class KeyType(Enum):
    """Algorithm indicator and length in bits of a derived key (X9.24-3-2017, table 3)."""

    TDEA_2KEY = (0x0000, 128)
    TDEA_3KEY = (0x0001, 192)
    AES128 = (0x0002, 128)
    AES192 = (0x0003, 192)
    AES256 = (0x0004, 256)

    @property
    def indicator(self) -> int:
        return self.value[0]

    @property
    def bits(self) -> int:
        return self.value[1]

    @property
    def size(self) -> int:
        """Length in bytes."""
        return self.bits // 8

    @classmethod
    def aes_for(cls, key: bytes) -> KeyType:
        """The AES key type of a BDK or derivation key, from its length."""
        for key_type in (cls.AES128, cls.AES192, cls.AES256):
            if len(key) == key_type.size:
                return key_type
        raise DukptError(f"an AES key has 16, 24 or 32 bytes, not {len(key)}")


def derivation_data(usage: KeyUsage, key_type: KeyType, tail: bytes) -> bytes:
    """The 16 bytes of derivation data for the first block of a key (``tail``: 8 bytes)."""
    if len(tail) != 8:
        raise DukptError("derivation data ends with 8 bytes")
    return (
        bytes((0x01, 0x01))
        + usage.to_bytes(2, "big")
        + key_type.indicator.to_bytes(2, "big")
        + key_type.bits.to_bytes(2, "big")
        + tail
    )


def derive_key(derivation_key: bytes, key_type: KeyType, data: bytes) -> bytes:
    """The standard's derivation function: AES-ECB of ``data`` under ``derivation_key``, once
    per 128 bits of the derived key with the key block counter (byte 1) counting from 1."""
    KeyType.aes_for(derivation_key)  # validates
    encryptor = Cipher(algorithms.AES(derivation_key), modes.ECB()).encryptor()
    blocks = -(-key_type.bits // 128)
    out = b"".join(
        encryptor.update(data[:1] + bytes((counter,)) + data[2:])
        for counter in range(1, blocks + 1)
    )
    return out[: key_type.size]


def derive_initial_key(bdk: bytes, initial_key_id: bytes) -> bytes:
    """The initial key a terminal is loaded with: from the BDK and the terminal's initial key
    ID (4 bytes of BDK ID, 4 bytes of derivation ID). It has the BDK's AES type."""
    _check_initial_key_id(initial_key_id)
    key_type = KeyType.aes_for(bdk)
    data = derivation_data(KeyUsage.KEY_DERIVATION_INITIAL_KEY, key_type, initial_key_id)
    return derive_key(bdk, key_type, data)


def derive_transaction_key(initial_key: bytes, ksn: bytes) -> bytes:
    """The transaction (derivation) key of the KSN's counter, from the initial key."""
    initial_key_id, counter = split_ksn(ksn)
    if not valid_counter(counter):
        raise DukptError(f"transaction counter {counter:#010x} is not a valid DUKPT counter")
    key_type = KeyType.aes_for(initial_key)
    key = initial_key
    working_counter = 0
    for bit in range(31, -1, -1):
        mask = 1 << bit
        if counter & mask:
            working_counter |= mask
            tail = initial_key_id[4:] + working_counter.to_bytes(4, "big")
            key = derive_key(
                key, key_type, derivation_data(KeyUsage.KEY_DERIVATION, key_type, tail)
            )
    return key


def derive_working_key(
    transaction_key: bytes,
    ksn: bytes,
    usage: KeyUsage,
    key_type: KeyType = KeyType.AES128,
) -> bytes:
    """A working key of ``usage`` for the KSN's transaction, from its transaction key."""
    initial_key_id, counter = split_ksn(ksn)
    tail = initial_key_id[4:] + counter.to_bytes(4, "big")
    return derive_key(transaction_key, key_type, derivation_data(usage, key_type, tail))


def host_working_key(
    bdk: bytes, ksn: bytes, usage: KeyUsage, key_type: KeyType = KeyType.AES128
) -> bytes:
    """What the processor computes: the working key of a KSN, straight from the BDK."""
    initial_key_id, _ = split_ksn(ksn)
    initial_key = derive_initial_key(bdk, initial_key_id)
    return derive_working_key(derive_transaction_key(initial_key, ksn), ksn, usage, key_type)


def make_ksn(initial_key_id: bytes, counter: int) -> bytes:
    """The 12-byte key serial number: initial key ID then the counter, big-endian."""
    _check_initial_key_id(initial_key_id)
    if not 0 <= counter <= MAX_COUNTER:
        raise DukptError(f"transaction counter {counter} does not fit 32 bits")
    return initial_key_id + counter.to_bytes(4, "big")


def split_ksn(ksn: bytes) -> tuple[bytes, int]:
    """(initial key ID, transaction counter) of a 12-byte KSN."""
    if len(ksn) != KSN_SIZE:
        raise DukptError(f"an AES DUKPT key serial number has 12 bytes, not {len(ksn)}")
    return ksn[:INITIAL_KEY_ID_SIZE], int.from_bytes(ksn[INITIAL_KEY_ID_SIZE:], "big")


def bdk_id(ksn: bytes) -> bytes:
    """The BDK ID of a KSN (its first 4 bytes): which BDK the processor derives from."""
    return split_ksn(ksn)[0][:BDK_ID_SIZE]


def valid_counter(counter: int) -> bool:
    """A counter a terminal may use: 1 to 2³²-1, with at most 16 bits set."""
    return 0 < counter <= MAX_COUNTER and counter.bit_count() <= MAX_COUNTER_BITS


def next_counter(counter: int) -> int:
    """The first valid counter after ``counter``, skipping those with more than 16 bits set
    as the standard's terminal does (adding the lowest set bit until few enough are set)."""
    following = counter + 1
    while following.bit_count() > MAX_COUNTER_BITS:
        following += following & -following
    if following > MAX_COUNTER:
        raise DukptError("the DUKPT transaction counter is exhausted: load a new initial key")
    return following


def _check_initial_key_id(initial_key_id: bytes) -> None:
    if len(initial_key_id) != INITIAL_KEY_ID_SIZE:
        raise DukptError(f"an initial key ID has 8 bytes, not {len(initial_key_id)}")


class Originator:
    """The terminal's side: its initial key, initial key ID and transaction counter.

    :meth:`next_key` moves the counter on *before* deriving, so no counter is ever used twice;
    ``counter`` is the last one used (0: none yet).
    """

    def __init__(self, initial_key: bytes, initial_key_id: bytes, counter: int = 0) -> None:
        KeyType.aes_for(initial_key)
        _check_initial_key_id(initial_key_id)
        if counter and not valid_counter(counter):
            raise DukptError(f"transaction counter {counter:#010x} is not a valid DUKPT counter")
        self._initial_key = initial_key
        self.initial_key_id = initial_key_id
        self.counter = counter

    def __repr__(self) -> str:
        key_id = self.initial_key_id.hex().upper()
        return f"Originator(initial_key_id={key_id}, counter={self.counter})"

    def next_key(self, usage: KeyUsage, key_type: KeyType = KeyType.AES128) -> tuple[bytes, bytes]:
        """(KSN, working key of ``usage``) for a new transaction."""
        self.counter = next_counter(self.counter)
        ksn = make_ksn(self.initial_key_id, self.counter)
        transaction_key = derive_transaction_key(self._initial_key, ksn)
        return ksn, derive_working_key(transaction_key, ksn, usage, key_type)


__all__ = [
    "KSN_SIZE",
    "DukptError",
    "KeyType",
    "KeyUsage",
    "Originator",
    "bdk_id",
    "derive_initial_key",
    "derive_key",
    "derive_transaction_key",
    "derive_working_key",
    "host_working_key",
    "make_ksn",
    "next_counter",
    "split_ksn",
    "valid_counter",
]
