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
    source = crypt.Source(str(path), crypt.Crypt(recipients=[public]))
    cipher = b"".join(source.chunks(65536))
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
    assert b"".join(crypt.decrypt_chunks(box, iter([cipher[:10], cipher[10:]]), "f")) == b"hello"
    with pytest.raises(RatBackupError) as err:
        b"".join(crypt.decrypt_chunks(box, iter([cipher[:-3] + b"xyz"]), "minio/b/k.age"))
    assert "decrypting minio/b/k.age failed" in err.value.msg


def test_crypt_when_fetching_without_identity_then_error_names_the_variables():
    box = crypt.Crypt(age_bin=shutil.which("true") or "/bin/true")
    with pytest.raises(RatBackupError) as err:
        box.decrypt_argv()
    assert "rat_offsite_identity_file" in err.value.msg


def test_crypt_when_recipients_given_then_age_reads_them_from_a_pipe():
    box = crypt.Crypt(age_bin=shutil.which("true") or "/bin/true", recipients=[RECIPIENT])
    argv, fd = box.encrypt_argv()
    try:
        assert argv[1:] == ["--encrypt", "-R", "/dev/fd/%d" % fd]
        assert os.read(fd, 1000) == (RECIPIENT + "\n").encode()
    finally:
        os.close(fd)


@needs_age
def test_decrypt_chunks_when_wrong_key_then_ages_own_message_is_kept(tmp_path, key):
    _identity, public = key
    other = str(tmp_path / "other.txt")
    subprocess.run(["age-keygen", "-o", other], check=True, capture_output=True)
    cipher = subprocess.run(["age", "-r", public], input=b"hello", capture_output=True, check=True).stdout
    with pytest.raises(RatBackupError) as err:
        b"".join(crypt.decrypt_chunks(crypt.Crypt(identity_file=other), iter([cipher]), "minio/b/k.age"))
    assert err.value.msg == "decrypting minio/b/k.age failed: age: no identity matched any of the recipients"


def test_age_error_when_only_the_report_line_then_exit_code():
    assert crypt.age_error(b"age: report unexpected or unhelpful errors at https://filippo.io/age/report\n", 1) \
        == "exit code 1"


@needs_age
def test_crypt_when_identity_text_then_decrypts_through_a_pipe_and_writes_no_file(tmp_path, key, monkeypatch):
    identity, public = key
    monkeypatch.setattr(crypt.tempfile, "tempdir", str(tmp_path))
    with open(identity) as handle:
        box = crypt.Crypt(identity=handle.read())
    cipher = subprocess.run(["age", "-r", public], input=b"hello", capture_output=True, check=True).stdout
    assert b"".join(crypt.decrypt_chunks(box, iter([cipher]), "f")) == b"hello"
    assert sorted(os.listdir(str(tmp_path))) == ["key.txt"]
