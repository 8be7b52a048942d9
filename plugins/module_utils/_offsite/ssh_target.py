# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A server reached over SSH as off-site target: ``<path>/<host>/<name>/<stored path>``, via rsync.

A copy is written into ``<name>.partial/`` and renamed once its manifest is in, so a half-shipped
copy never looks complete there either. Unchanged files are hard links made on the server by its
own rsync with ``--link-dest`` to the previous copy; the rest travels with rsync (``--partial-dir``
resumes a cut transfer, ``--bwlimit`` caps the rate). The server needs sshd, rsync, GNU find,
coreutils (sha256sum, mv) and tar: nothing of this collection.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import subprocess
import threading

from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._offsite import plan as pl

PARTIAL = layout.PARTIAL_SUFFIX
_SENT_RE = re.compile(r"^Total bytes sent: ([0-9,.]+)", re.M)


def quote(argv):
    return " ".join(shlex.quote(str(a)) for a in argv)


class SshTarget:
    kind = "ssh"

    def __init__(self, server, path, host, port=22, user=None, key_file=None, known_hosts_file=None,
                 strict_host_key_checking=True, connect_timeout=10, bwlimit_kib=0, ssh_bin="ssh", rsync_bin="rsync"):
        if not path or not path.startswith("/"):
            raise RatBackupError(f"rat_offsite_ssh_path={path!r} must be an absolute directory on the server",
                                 variable="rat_offsite_ssh_path")
        if not server or server.startswith("-") or "/" in server:
            raise RatBackupError(f"rat_offsite_ssh_host={server!r} is not a host name or address",
                                 variable="rat_offsite_ssh_host")
        self.server = server
        self.port = int(port)
        self.user = user
        self.key_file = key_file
        self.known_hosts_file = known_hosts_file
        self.strict = strict_host_key_checking
        self.connect_timeout = int(connect_timeout)
        self.bwlimit_kib = int(bwlimit_kib or 0)
        self.ssh_bin = ssh_bin
        self.rsync_bin = rsync_bin
        self.base = posixpath.join(posixpath.normpath(path), host)
        self.bytes_sent = 0

    # --- argv (pure) ---
    def ssh_argv(self):
        argv = [self.ssh_bin, "-p", str(self.port), "-o", "BatchMode=yes",
                "-o", f"ConnectTimeout={self.connect_timeout}",
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
                "-o", f"StrictHostKeyChecking={'yes' if self.strict else 'no'}"]
        if self.known_hosts_file:
            argv += ["-o", f"UserKnownHostsFile={self.known_hosts_file}"]
        if self.key_file:
            argv += ["-i", self.key_file, "-o", "IdentitiesOnly=yes"]
        if self.user:
            argv += ["-l", self.user]
        return argv

    def remote_argv(self, command):
        # umask: whatever the login's default, nothing written there is readable by other users.
        return self.ssh_argv() + ["--", self.server, "umask 077; " + command]

    def dir(self, name, partial=False):
        return posixpath.join(self.base, name + (PARTIAL if partial else ""))

    def rsync_argv(self, local_dir, name):
        argv = [self.rsync_bin, "--recursive", "--times", "--chmod=D0700,F0600", "--secluded-args",
                "--partial-dir=.rsync-partial", "--files-from=-", "--from0", "--stats",
                f"--rsh={quote(self.ssh_argv())}"]
        if self.bwlimit_kib:
            argv.append(f"--bwlimit={self.bwlimit_kib}")
        return argv + [local_dir.rstrip("/") + "/", f"{self.server}:{self.dir(name, partial=True)}/"]

    def location(self, name=None):
        where = f"{self.user}@{self.server}" if self.user else self.server
        return f"ssh://{where}:{self.port}{self.base}/{name + '/' if name else ''}"

    # --- running ---
    def _run(self, argv, what, stdin=b""):
        try:
            proc = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        except OSError as exc:
            raise RatBackupError(f"off-site target {self.location()}: cannot run {argv[0]}: {exc.strerror}")
        if proc.returncode != 0:
            raise self._failure(proc.returncode, proc.stderr, what)
        return proc.stdout

    def _failure(self, code, stderr, what):
        lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        tail = lines[-1] if lines else f"exit code {code}"
        # 255: ssh itself failed (refused, timed out, no route, host key); rsync says 12 or 255 then.
        if code == 255 or (code == 12 and "ssh" in stderr.decode("utf-8", "replace")):
            return RatBackupError(f"off-site target {self.location()} unreachable over SSH while {what}: {tail}",
                                  unreachable=True)
        return RatBackupError(f"off-site target {self.location()}: {what} failed: {tail}")

    def remote(self, command, what, stdin=b""):
        return self._run(self.remote_argv(command), what, stdin)

    def check(self):
        self.remote(quote(["mkdir", "-p", "-m", "700", self.base]), f"preparing {self.base}")

    def backups(self):
        out = self.remote(f"test -d {shlex.quote(self.base)} || exit 0; cd {shlex.quote(self.base)} && find . "
                          "-mindepth 1 -maxdepth 2 -printf '%P\\0'", "listing the off-site copies")
        entries = [e for e in out.decode("utf-8", "surrogateescape").split("\0") if e]
        names = {e for e in entries if "/" not in e and layout.time_of(e)}
        complete = {e.split("/", 1)[0] for e in entries if "/" in e and e.split("/", 1)[1] in pl.MANIFESTS}
        partial = {e[:-len(PARTIAL)] for e in entries if e.endswith(PARTIAL) and layout.time_of(e[:-len(PARTIAL)])}
        return {"complete": sorted(names & complete), "partial": sorted((names - complete) | partial)}

    def listing(self, name, partial=False):
        where = self.dir(name, partial)
        out = self.remote(f"test -d {shlex.quote(where)} || exit 0; cd {shlex.quote(where)} && find . -type f "
                          "-printf '%s %P\\0'", f"listing {where}")
        found = {}
        for item in out.decode("utf-8", "surrogateescape").split("\0"):
            if item:
                size, stored = item.split(" ", 1)
                if not stored.startswith(".rsync-partial/"):
                    found[stored] = {"size": int(size)}
        return found

    def read(self, name, stored, partial=False):
        return self.remote(quote(["cat", "--", posixpath.join(self.dir(name, partial), stored)]), f"reading {stored}")

    def begin(self, name):
        self.remote(quote(["mkdir", "-p", "-m", "700", self.dir(name, partial=True)]), f"preparing {name}")

    def put_bytes(self, name, stored, data):
        final = posixpath.join(self.dir(name, partial=True), stored)
        tmp = shlex.quote(final + ".tmp")
        self.remote(f"cat > {tmp} && mv -f -- {tmp} {shlex.quote(final)}", f"writing {stored}", stdin=data)
        self.bytes_sent += len(data)

    def link(self, name, prev, items, pool_map=None):
        """Hard links to the unchanged files of the previous copy, made on the server by its own rsync
        in one run (``pool_map`` is for targets that copy file by file). Returns ``items``."""
        if items:
            source = self.dir(prev)
            command = quote(["rsync", "--recursive", "--times", f"--link-dest={source}", "--files-from=-", "--from0",
                             source + "/", self.dir(name, partial=True) + "/"])
            self.remote(command, f"linking unchanged files from {prev}", stdin=_nul(i["stored"] for i in items))
        return list(items)

    def send(self, local_dir, name, stored_paths):
        """rsync the listed files of ``local_dir``; returns the bytes rsync reports as sent."""
        if not stored_paths:
            return 0
        out = self._run(self.rsync_argv(local_dir, name), f"sending {len(stored_paths)} files with rsync",
                        stdin=_nul(stored_paths))
        match = _SENT_RE.search(out.decode("utf-8", "replace"))
        sent = int(re.sub(r"[,.]", "", match.group(1))) if match else 0
        self.bytes_sent += sent
        return sent

    def hashes(self, name, stored_paths, partial=False):
        """{stored path: sha256} computed on the server (reads every listed file back there)."""
        if not stored_paths:
            return {}
        where = self.dir(name, partial)
        out = self.remote(f"cd {shlex.quote(where)} && xargs -0r sha256sum --zero --",
                          f"hashing {len(stored_paths)} files", stdin=_nul(stored_paths))
        found = {}
        for line in out.decode("utf-8", "surrogateescape").split("\0"):
            if len(line) > 66:
                found[line[66:]] = line[:64]
        return found

    def commit(self, name):
        self.remote(quote(["mv", "-T", "--", self.dir(name, partial=True), self.dir(name)]),
                    f"renaming {name}{PARTIAL} into place")

    def remove(self, name):
        """The copy (complete or partial): renamed out of the listed names first, then deleted."""
        self.remote(f"for d in {shlex.quote(self.dir(name))} {shlex.quote(self.dir(name, partial=True))}; do if test "
                    "-e \"$d\"; then mv -T -- \"$d\" \"$d.deleting\" && rm -rf -- \"$d.deleting\" || exit 1; fi; done",
                    f"removing {name}")

    def tar_stream(self, name, stored_paths):
        """A tar stream of the listed files (one SSH connection), for fetching back."""
        command = quote(["tar", "-C", self.dir(name), "--null", "--verbatim-files-from", "-T", "-", "-cf", "-"])
        return _Stream(self.remote_argv(command), _nul(stored_paths), self)


def _nul(paths):
    return b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths)


class _Stream:
    """stdout of a remote command as a file object; its exit status checked on close."""

    def __init__(self, argv, stdin, target):
        self.target = target
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.errors = []
        self.stderr_reader = threading.Thread(target=lambda: self.errors.append(self.proc.stderr.read()), daemon=True)
        self.stderr_reader.start()
        self.feeder = threading.Thread(target=self._feed, args=(stdin,), daemon=True)
        self.feeder.start()

    def _feed(self, data):
        try:
            self.proc.stdin.write(data)
        except BrokenPipeError:
            pass
        finally:
            self.proc.stdin.close()

    def read(self, size=-1):
        return self.proc.stdout.read(size)

    def close(self, complete=True):
        if not complete:
            self.proc.kill()
        self.proc.stdout.close()
        code = self.proc.wait()
        self.feeder.join()
        self.stderr_reader.join()
        if complete and code != 0:
            raise self.target._failure(code, b"".join(self.errors), "streaming files back")  # pylint: disable=protected-access
