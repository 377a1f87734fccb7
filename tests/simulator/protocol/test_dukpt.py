"""AES DUKPT (ANSI X9.24-3-2017) against the standard's published test vectors.

Where the vectors come from: ANSI X9.24-3-2017, annex B.1 ("Sample Test Vectors") and the
supplement of test vectors X9 publishes with it (https://x9.org/standards/x9-24-part-3-test-
vectors/), as transcribed, with page references, by two independent open-source
implementations whose test suites check them:

* openemv/dukpt (Leon Lynch, C), ``test/dukpt_aes128_test.c`` and ``test/dukpt_aes256_test.c``:
  BDK, initial key ID, initial key, the transaction keys of counters 1-8, 0x1FFFE, 0x20000,
  0x20001 and the last four counters, the data encryption keys of counters 1-8 (AES-128 BDK,
  page 2; AES-256 BDK, pages 7 and 13);
* moov-io/dukpt (Go), ``pkg/aes/aes_test.go``: the same initial and transaction keys, and the
  AES-CBC encryption (zero IV, zero padding) of the supplement's sample data
  ``4012345678909D987`` under the data encryption key of counter 1.

Both agree on every value used here. Only the values are taken, none of their code.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from simulator.protocol.dukpt import (
    DukptError,
    KeyType,
    KeyUsage,
    Originator,
    bdk_id,
    derivation_data,
    derive_initial_key,
    derive_transaction_key,
    derive_working_key,
    host_working_key,
    make_ksn,
    next_counter,
    split_ksn,
    valid_counter,
)

# -- ANSI X9.24-3-2017 B.1, AES-128 BDK ----------------------------------------------------
BDK_128 = bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1")
IKID = bytes.fromhex("1234567890123456")
INITIAL_KEY_128 = bytes.fromhex("1273671EA26AC29AFA4D1084127652A1")
#: counter → transaction (derivation) key
TRANSACTION_KEYS_128 = {
    0x00000001: "4F21B565BAD9835E112B6465635EAE44",
    0x00000002: "2F34D68DE10F68D38091A73B9E7C437C",
    0x00000003: "031504E530365CF81264238540518318",
    0x00000004: "0EEFC7ADA628BA68878DA9165A8A1887",
    0x00000005: "C2A7AC328A5DA2D6002D62465BFC028B",
    0x00000006: "D30F7D9351DA58448A2F5E92B4EE3B7D",
    0x00000007: "A8253CEED9AC042C54F75D35C8352278",
    0x00000008: "718EE6CF0B27E53D5F7AF99C4D8146A2",
    0x0001FFFE: "E21E8C8D347F8561A2BE752DAA85A111",
    0x00020000: "F7AE9025468A25D37B7249CFFED224C8",
    0x00020001: "692C8EA4013645135B36497131DF9D2C",
    0xFFFE2000: "48E585B694EB0B18D5C35443E163C0BA",
    0xFFFE4000: "396C2C7CA1EA701C03B86B7D41F0C562",
    0xFFFE8000: "0387625F189B58AE03EF0E8CCA41105E",
    0xFFFF0000: "F6BA59389BD14A9855BE9727E7C52E3C",
}
#: counter → AES-128 data encryption key, usage "data encryption, encrypt" (3000)
DATA_KEYS_128 = {
    1: "A35C412EFD41FDB98B69797C02DCD08F",
    2: "D639514AA33AC43AD9229E433D6D4E5B",
    3: "EF17F6AB45B4820C93A3DCB21BC491AD",
    4: "B3BD44C08BB6BA27C3BB4711D7D70387",
    5: "CA02DF6F30B39E14BD0B4A30E460920F",
    6: "C9B8A7C4E486180B2229115164F0B293",
    7: "0FA8F1F0A2DD7B1005A862D77CDED698",
    8: "650F34204ABD4E57764D61AC3D266FB1",
}
SAMPLE_DATA = b"4012345678909D987"
#: AES-CBC, zero IV, of SAMPLE_DATA zero-padded to 32 bytes under DATA_KEYS_128[1]
SAMPLE_CIPHERTEXT_1 = "E5AFA5B408A3310E3D779C8A9A2AE29448BD5B4232582090DB703AF647205A79"

# -- AES-256 BDK (the supplement's second set) ---------------------------------------------
BDK_256 = BDK_128 * 2
INITIAL_KEY_256 = bytes.fromhex("CE9CE0C101D1138F97FB6CAD4DF045A7083D4EAE2D35A31789D01CCF0949550F")
TRANSACTION_KEYS_256 = {
    1: "54AC2B32B145EA4A554CB8BC44B17467063A799856B1CCC2A138D36E8DBF78B3",
    2: "5DD5A0253842BBBE1D7C0DA27021412C6F1FAB53FB928DEAE56DA06090A9DE97",
    3: "8EEEF7C464AE415BB1D73FAED21993CD669F7999092A579EC6DD3CC680C65171",
}
DATA_KEYS_256_AES128 = {
    1: "616D59AE91F8CC7016F89FDA29605FA4",
    2: "07B79D9BFF3633C07A9FDDF132070B30",
    3: "706E4E629E466BED956548E7B0D90C3D",
}
DATA_KEYS_256_AES256 = {
    1: "71EB36C9A6B7F801D1D1700C29741FC5A5C4E9B45D742DA7AF6992B8AA29AF58",
    2: "D0AC9F71F875FFFF3A83778F72F39EBB0924A5A526617AF669665E0A19725465",
    3: "8E70D5DF53F48ED2F2A0B54FC4F45C844579BE96F6F161222CDD50193E2F737F",
}


def test_initial_key_from_the_bdk_and_initial_key_id() -> None:
    assert derive_initial_key(BDK_128, IKID) == INITIAL_KEY_128
    assert derive_initial_key(BDK_256, IKID) == INITIAL_KEY_256


@pytest.mark.parametrize(("counter", "expected"), TRANSACTION_KEYS_128.items())
def test_transaction_keys_aes128(counter: int, expected: str) -> None:
    ksn = make_ksn(IKID, counter)
    assert derive_transaction_key(INITIAL_KEY_128, ksn).hex().upper() == expected


@pytest.mark.parametrize(("counter", "expected"), TRANSACTION_KEYS_256.items())
def test_transaction_keys_aes256(counter: int, expected: str) -> None:
    ksn = make_ksn(IKID, counter)
    assert derive_transaction_key(INITIAL_KEY_256, ksn).hex().upper() == expected


@pytest.mark.parametrize(("counter", "expected"), DATA_KEYS_128.items())
def test_data_encryption_keys_aes128(counter: int, expected: str) -> None:
    ksn = make_ksn(IKID, counter)
    transaction_key = derive_transaction_key(INITIAL_KEY_128, ksn)
    data_key = derive_working_key(transaction_key, ksn, KeyUsage.DATA_ENCRYPTION_ENCRYPT)
    assert data_key.hex().upper() == expected
    # the processor gets the same key straight from the BDK and the KSN
    assert host_working_key(BDK_128, ksn, KeyUsage.DATA_ENCRYPTION_ENCRYPT) == data_key


@pytest.mark.parametrize("counter", sorted(DATA_KEYS_256_AES128))
def test_data_encryption_keys_from_an_aes256_bdk(counter: int) -> None:
    ksn = make_ksn(IKID, counter)
    usage = KeyUsage.DATA_ENCRYPTION_ENCRYPT
    short = host_working_key(BDK_256, ksn, usage, KeyType.AES128)
    long = host_working_key(BDK_256, ksn, usage, KeyType.AES256)
    assert short.hex().upper() == DATA_KEYS_256_AES128[counter]
    assert long.hex().upper() == DATA_KEYS_256_AES256[counter]


def test_the_supplement_sample_data_encrypted_under_the_first_data_key() -> None:
    data_key = host_working_key(BDK_128, make_ksn(IKID, 1), KeyUsage.DATA_ENCRYPTION_ENCRYPT)
    encryptor = Cipher(algorithms.AES(data_key), modes.CBC(bytes(16))).encryptor()
    ciphertext = encryptor.update(SAMPLE_DATA.ljust(32, b"\0")) + encryptor.finalize()
    assert ciphertext.hex().upper() == SAMPLE_CIPHERTEXT_1


def test_usages_give_different_keys() -> None:
    ksn = make_ksn(IKID, 1)
    keys = {host_working_key(BDK_128, ksn, usage) for usage in KeyUsage}
    assert len(keys) == len(KeyUsage)


def test_derivation_data_layout() -> None:
    data = derivation_data(KeyUsage.DATA_ENCRYPTION_ENCRYPT, KeyType.AES128, IKID[4:] + bytes(4))
    assert data.hex().upper() == "010130000002008090123456" + "00000000"
    initial = derivation_data(KeyUsage.KEY_DERIVATION_INITIAL_KEY, KeyType.AES256, IKID)
    assert initial.hex().upper() == "0101800100040100" + IKID.hex().upper()


# -- key serial numbers and counters ---------------------------------------------------------
def test_ksn_is_the_initial_key_id_then_the_counter() -> None:
    ksn = make_ksn(IKID, 0x20001)
    assert ksn.hex().upper() == "123456789012345600020001"
    assert split_ksn(ksn) == (IKID, 0x20001)
    assert bdk_id(ksn) == bytes.fromhex("12345678")


def test_counters_with_more_than_16_bits_set_are_skipped() -> None:
    assert not valid_counter(0x1FFFF)  # 17 bits: the vector the standard lists but never uses
    assert next_counter(0x1FFFE) == 0x20000
    assert next_counter(0) == 1
    assert next_counter(0xFFFE8000) == 0xFFFF0000
    with pytest.raises(DukptError, match="exhausted"):
        next_counter(0xFFFF0000)
    with pytest.raises(DukptError, match="not a valid DUKPT counter"):
        derive_transaction_key(INITIAL_KEY_128, make_ksn(IKID, 0x1FFFF))
    with pytest.raises(DukptError, match="not a valid"):
        derive_transaction_key(INITIAL_KEY_128, make_ksn(IKID, 0))


@given(st.integers(min_value=0, max_value=0xFFFE_FFFF))
def test_next_counter_is_the_smallest_valid_counter_above(counter: int) -> None:
    following = next_counter(counter)
    assert following > counter
    assert valid_counter(following)
    # nothing valid is skipped: every counter in between has more than 16 bits set
    if following - counter < 4096:
        assert not any(valid_counter(c) for c in range(counter + 1, following))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: derive_initial_key(BDK_128, IKID[:7]), "8 bytes"),
        (lambda: derive_initial_key(BDK_128[:15], IKID), "16, 24 or 32 bytes"),
        (lambda: split_ksn(bytes(10)), "12 bytes"),
        (lambda: make_ksn(IKID, 1 << 32), "32 bits"),
        (lambda: Originator(INITIAL_KEY_128, IKID, counter=0x1FFFF), "not a valid"),
    ],
)
def test_malformed_inputs_are_refused(call: object, message: str) -> None:
    with pytest.raises(DukptError, match=message):
        call()  # type: ignore[operator]


# -- the terminal's side ---------------------------------------------------------------------
def test_originator_moves_its_counter_on_before_every_key() -> None:
    terminal = Originator(INITIAL_KEY_128, IKID)
    usage = KeyUsage.DATA_ENCRYPTION_ENCRYPT
    for counter in range(1, 9):
        ksn, key = terminal.next_key(usage)
        assert split_ksn(ksn) == (IKID, counter)
        assert key.hex().upper() == DATA_KEYS_128[counter]
    assert terminal.counter == 8


def test_originator_skips_invalid_counters_and_never_reuses_one() -> None:
    terminal = Originator(INITIAL_KEY_128, IKID, counter=0x1FFFD)
    seen = [split_ksn(terminal.next_key(KeyUsage.DATA_ENCRYPTION_ENCRYPT)[0])[1] for _ in range(3)]
    assert seen == [0x1FFFE, 0x20000, 0x20001]


def test_originator_repr_shows_no_key() -> None:
    terminal = Originator(INITIAL_KEY_128, IKID)
    assert INITIAL_KEY_128.hex() not in repr(terminal).lower()
    assert "1234567890123456" in repr(terminal)
