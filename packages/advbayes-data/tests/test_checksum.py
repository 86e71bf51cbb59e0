from __future__ import annotations

import hashlib

import pytest

from advbayes_data import ChecksumError, file_digest, sha256sum, verify_checksum

# FIPS 180-2 / RFC 1321 test vectors for the message "abc".
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
ABC_MD5 = "900150983cd24fb0d6963f7d28e17f72"


@pytest.fixture
def abc(tmp_path):
    path = tmp_path / "abc.bin"
    path.write_bytes(b"abc")
    return path


def test_digests_match_published_test_vectors(abc):
    assert sha256sum(abc) == ABC_SHA256
    assert file_digest(abc, "md5") == ABC_MD5


def test_digest_of_a_file_larger_than_one_chunk(tmp_path):
    data = bytes(range(256)) * 9000  # 2.2 MiB: several 1 MiB reads
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert sha256sum(path) == hashlib.sha256(data).hexdigest()


def test_verify_accepts_the_right_digest_in_any_case(abc):
    verify_checksum(abc, ABC_SHA256)
    verify_checksum(abc, ABC_SHA256.upper())
    verify_checksum(abc, ABC_MD5, "md5")


def test_verify_mismatch_names_file_expected_and_actual(abc):
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as info:
        verify_checksum(abc, wrong)
    message = str(info.value)
    assert str(abc) in message and wrong in message and ABC_SHA256 in message


def test_verify_rejects_malformed_expected_and_unknown_algorithm(abc):
    with pytest.raises(ValueError, match="64-character"):
        verify_checksum(abc, "abc")
    with pytest.raises(ValueError, match="algorithm"):
        verify_checksum(abc, ABC_SHA256, "sha1")
    with pytest.raises(ValueError, match="algorithm"):
        file_digest(abc, "crc32")
