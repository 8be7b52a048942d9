# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._offsite import crypt

needs_age = pytest.mark.skipif(not shutil.which("age") or not shutil.which("age-keygen"), reason="age not installed")
RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"


@pytest.fixture(name="key")
def fixture_key(tmp_path):
    path = str(tmp_path / "key.txt")
    subprocess.run(["age-keygen", "-o", path], check=True, capture_output=True)
    public = subprocess.run(["age-keygen", "-y", path], check=True, capture_output=True, text=True).stdout.strip()
    return path, public


def test_check_recipients_when_age_and_ssh_keys_then_accepted():
    keys = [" %s " % RECIPIENT, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx root@h"]
    assert crypt.check_recipients(keys) == [RECIPIENT, keys[1]]


@pytest.mark.parametrize("bad", ["AGE-SECRET-KEY-1QQQ", "age1short", ""])
def test_check_recipients_when_not_a_public_key_then_error_names_index(bad):
    with pytest.raises(RatBackupError) as err:
        crypt.check_recipients([RECIPIENT, bad])
    assert "rat_offsite_recipients[1]" in err.value.msg


def test_check_recipients_when_empty_then_error():
    with pytest.raises(RatBackupError):
        crypt.check_recipients([])


def test_find_age_when_missing_then_error_says_how_to_install():
    with pytest.raises(RatBackupError) as err:
        crypt.find_age("/nonexistent/age")
    assert "apt-get install age" in err.value.msg


def test_source_when_plain_then_chunks_are_the_file_and_both_hashes_equal(tmp_path):
    data = os.urandom(3 * 1024 + 5)
    path = tmp_path / "f"
    path.write_bytes(data)
    source = crypt.Source(str(path))
    assert b"".join(source.chunks(1024)) == data
    assert source.plain_sha256 == source.stored_sha256 == hashlib.sha256(data).hexdigest()
    assert source.plain_size == source.stored_size == len(data)


def test_source_when_file_missing_then_error_names_it(tmp_path):
    with pytest.raises(RatBackupError) as err:
        list(crypt.Source(str(tmp_path / "gone")).chunks())
    assert "gone" in err.value.msg


@needs_age
def test_source_when_encrypted_then_stock_age_decrypts_the_exact_file(tmp_path, key):
    identity, public = key
    data = b"secret row 42\n" * 50000
    path = tmp_path / "f"
    path.write_bytes(data)
    box = crypt.Crypt(recipients=[public])
    try:
        source = crypt.Source(str(path), box)
        cipher = b"".join(source.chunks(65536))
    finally:
        box.close()
    assert b"secret row" not in cipher
    assert source.plain_sha256 == hashlib.sha256(data).hexdigest()
    assert source.stored_sha256 == hashlib.sha256(cipher).hexdigest() and source.stored_size == len(cipher)
    plain = subprocess.run(["age", "-d", "-i", identity], input=cipher, capture_output=True, check=True).stdout
    assert plain == data


@needs_age
def test_decrypt_chunks_when_right_key_then_plaintext_else_error(tmp_path, key):
    identity, public = key
    cipher = subprocess.run(["age", "-r", public], input=b"hello", capture_output=True, check=True).stdout
    box = crypt.Crypt(identity_file=identity)
    try:
        assert b"".join(crypt.decrypt_chunks(box, iter([cipher[:10], cipher[10:]]), "f")) == b"hello"
        with pytest.raises(RatBackupError) as err:
            b"".join(crypt.decrypt_chunks(box, iter([cipher[:-3] + b"xyz"]), "minio/b/k.age"))
        assert "decrypting minio/b/k.age failed" in err.value.msg
    finally:
        box.close()


def test_crypt_when_fetching_without_identity_then_error_names_the_variables():
    box = crypt.Crypt(age_bin=shutil.which("true") or "/bin/true")
    try:
        with pytest.raises(RatBackupError) as err:
            box.decrypt_argv()
        assert "rat_offsite_identity_file" in err.value.msg
    finally:
        box.close()


def test_crypt_when_recipients_given_then_written_to_a_private_file():
    box = crypt.Crypt(age_bin=shutil.which("true") or "/bin/true", recipients=[RECIPIENT])
    try:
        assert oct(os.stat(box.recipients_file).st_mode & 0o777) == "0o600"
        assert box.encrypt_argv()[1:] == ["--encrypt", "-R", box.recipients_file]
    finally:
        box.close()
    assert not os.path.exists(box.recipients_file)
