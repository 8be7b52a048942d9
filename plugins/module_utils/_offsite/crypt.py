# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files streamed out of (and back into) a backup, hashed on the way, optionally through age.

Encryption runs the stock ``age`` command (Debian's age package): the format's reference
implementation, the very tool an operator decrypts with, so what we write is readable by it by
construction. It streams through pipes in constant memory; recipients are public keys, so
backing up needs no secret. Decryption (fetch-back) takes an identity file.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils.fs import CHUNK

AGE_SUFFIX = ".age"
# age1 + bech32 body (X25519), or an OpenSSH public key age accepts as a recipient.
_RECIPIENT_RE = re.compile(r"^(age1[02-9ac-hj-np-z]{58}|ssh-(ed25519|rsa) [A-Za-z0-9+/]+={0,3}( [^\n]*)?)$")


def check_recipients(recipients, variable="rat_offsite_recipients"):
    """The recipients, stripped; an error naming the first one that is not an age or SSH public key."""
    if not recipients:
        raise RatBackupError(f"{variable} is empty: encryption needs at least one age public key (age1...)",
                             variable=variable)
    cleaned = []
    for index, item in enumerate(recipients):
        text = str(item).strip()
        if not _RECIPIENT_RE.match(text):
            shown = text if len(text) <= 80 else text[:77] + "..."
            raise RatBackupError(f"{variable}[{index}]={shown!r} is not an age recipient: expected a public key "
                                 "age1... (age-keygen -y) or an ssh-ed25519/ssh-rsa public key; never a private key",
                                 variable=variable)
        cleaned.append(text)
    return cleaned


def find_age(age_bin=None):
    """Path of the age command, or an error saying how to get it."""
    found = age_bin if age_bin and os.access(age_bin, os.X_OK) else shutil.which(age_bin or "age")
    if not found:
        raise RatBackupError(f"the age command is missing on this host ({age_bin or 'age'}): install Debian's age "
                             "package (apt-get install age) or set rat_offsite_age_bin")
    return found


class Crypt:
    """age settings of one run: the command, the recipients, the identity that decrypts.

    Keys reach age through a pipe (``-R``/``-i /dev/fd/N``), never through a file this code
    writes: an identity given as text exists only in this process's memory, so no path (a lock
    refusal, an error, kill -9) can leave the private key on disk.
    """

    def __init__(self, age_bin=None, recipients=None, identity_file=None, identity=None):
        self.age = find_age(age_bin)
        self.recipients = check_recipients(recipients) if recipients else []
        self.identity_file = identity_file
        self._identity = (identity.strip() + "\n").encode("utf-8") if identity else None
        if self._identity and len(self._identity) > _PIPE_BYTES:
            raise RatBackupError(f"rat_offsite_identity is {len(self._identity)} bytes: an age identity is far "
                                 f"smaller; give at most {_PIPE_BYTES} bytes, or rat_offsite_identity_file",
                                 variable="rat_offsite_identity")
        if identity_file and not identity and not os.path.isfile(identity_file):
            raise RatBackupError(f"age identity file {identity_file} does not exist on this host", path=identity_file)

    def encrypt_argv(self):
        """(argv, fd): age encrypting to the recipients it reads from the pipe ``fd``."""
        fd = _pipe_holding(("\n".join(self.recipients) + "\n").encode("utf-8"))
        return [self.age, "--encrypt", "-R", f"/dev/fd/{fd}"], fd

    def decrypt_argv(self):
        """(argv, fd): age decrypting with the identity file, or with the identity text from the pipe ``fd``."""
        if self._identity:
            fd = _pipe_holding(self._identity)
            return [self.age, "--decrypt", "-i", f"/dev/fd/{fd}"], fd
        if not self.identity_file:
            raise RatBackupError("the off-site copy is encrypted: give the age identity "
                                 "(rat_offsite_identity_file or rat_offsite_identity) to fetch it back")
        return [self.age, "--decrypt", "-i", self.identity_file], None


# A pipe takes this much without a reader (Linux's default capacity), so it is filled before age starts.
_PIPE_BYTES = 65536


def _pipe_holding(data):
    """The read end of a pipe already holding ``data`` and closed for writing."""
    if len(data) > _PIPE_BYTES:
        raise RatBackupError(f"{len(data)} bytes of age keys do not fit a pipe ({_PIPE_BYTES} at most)")
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, data)
    finally:
        os.close(write_end)
    return read_end


class Source:
    """The bytes of one local file as they leave: chunks() yields them, hashing the plaintext as read.

    With ``crypt`` the chunks are age ciphertext; ``stored_sha256``/``stored_size`` describe what was
    yielded and ``plain_sha256``/``plain_size`` what was read. A file that changed under us is caught
    by the caller comparing plain_sha256 with the manifest before anything is committed.
    """

    def __init__(self, path, crypt=None):
        self.path = path
        self.crypt = crypt
        self.plain = hashlib.sha256()
        self.plain_size = 0
        self.stored = hashlib.sha256()
        self.stored_md5 = hashlib.md5()
        self.stored_size = 0

    @property
    def plain_sha256(self):
        return self.plain.hexdigest()

    @property
    def stored_sha256(self):
        return self.stored.hexdigest()

    def _count(self, block):
        self.stored.update(block)
        self.stored_md5.update(block)
        self.stored_size += len(block)
        return block

    def _read_plain(self, handle, size):
        block = handle.read(size)
        self.plain.update(block)
        self.plain_size += len(block)
        return block

    def chunks(self, size=CHUNK):
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise RatBackupError(f"cannot read {self.path}: {exc.strerror or exc}", path=self.path, local=self.path)
        with os.fdopen(fd, "rb") as handle:
            if self.crypt is None:
                for block in iter(lambda: self._read_plain(handle, size), b""):
                    yield self._count(block)
                return
            for block in _through(self.crypt.encrypt_argv, iter(lambda: self._read_plain(handle, CHUNK), b""),
                                  size, f"encrypting {self.path}"):
                yield self._count(block)


def decrypt_chunks(crypt, chunks, what, size=CHUNK):
    """Plaintext chunks of age ciphertext ``chunks``; a wrong key or damaged file raises naming ``what``."""
    return _through(crypt.decrypt_argv, chunks, size, f"decrypting {what}")


def _through(make_argv, chunks, size, what):
    """Feed ``chunks`` to the stdin of the command ``make_argv()`` gives and yield its stdout in blocks of
    up to ``size``. Its key pipe (or None) is made only here, handed to the child and closed at once."""
    with tempfile.TemporaryFile() as errors:
        argv, key_fd = make_argv()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                                    pass_fds=(key_fd,) if key_fd is not None else ())
        finally:
            if key_fd is not None:
                os.close(key_fd)
        failure = []

        def feed():
            try:
                for block in chunks:
                    proc.stdin.write(block)
            except BrokenPipeError:
                pass
            except BaseException as exc:  # pylint: disable=broad-except
                failure.append(exc)
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        finished = False
        try:
            while True:
                block = proc.stdout.read(size)
                if not block:
                    break
                yield block
            finished = True
        finally:
            if not finished or failure:
                # The consumer gave up or the input broke: a half stream must not pass for a whole one.
                proc.kill()
            proc.stdout.close()
            code = proc.wait()
            feeder.join()
        if failure:
            raise failure[0]
        if code != 0:
            errors.seek(0)
            raise RatBackupError(f"{what} failed: age: {age_error(errors.read(), code)}")


def age_error(stderr, code):
    """age's own message from its stderr, without its "age: error:" prefix and the line that always
    follows it (where to report unhelpful errors), which says nothing about this failure."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()
             if line.strip() and "report unexpected or unhelpful errors" not in line]
    for prefix in ("age: error: ", "age: "):
        lines = [line[len(prefix):] if line.startswith(prefix) else line for line in lines]
    return "; ".join(lines[-3:]) if lines else f"exit code {code}"
