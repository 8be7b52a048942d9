# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Background processes for fault tests, in their own session so a test can kill -9 the group.

    bg.py start LOG -- argv...        prints the pid (= process group id)
    bg.py wait PID SECONDS            waits until the process is gone; exit 1 on timeout
    bg.py until-file PATH SECONDS     waits until a glob matches; exit 1 on timeout
    bg.py scan PID SECRET_FILE...     until PID ends, samples the command line of every process of
                                      its session (the run and everything it starts) and fails if
                                      one holds a secret (the files' contents)
"""

import glob
import os
import subprocess
import sys
import time


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def scan(pid, secret_files):
    secrets = []
    for path in secret_files:
        with open(path, "rb") as handle:
            secrets.append(handle.read().strip())
    samples = 0
    deadline = time.monotonic() + 600
    while alive(pid) and time.monotonic() < deadline:
        samples += 1
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open("/proc/%s/stat" % entry, "rb") as handle:
                    session = int(handle.read().rsplit(b")", 1)[1].split()[3])
                with open("/proc/%s/cmdline" % entry, "rb") as handle:
                    cmdline = handle.read()
            except (OSError, IndexError, ValueError):
                continue
            if session != pid:
                continue
            for secret in secrets:
                if secret and secret in cmdline:
                    shown = cmdline.replace(secret, b"<SECRET>").replace(b"\x00", b" ")
                    print("secret found in the command line of pid %s: %s" % (entry, shown.decode("utf-8", "replace")[:300]))
                    return 1
        time.sleep(0.05)
    print("%d samples, no secret in any command line" % samples)
    return 0


def main():
    cmd = sys.argv[1]
    if cmd == "start":
        log, argv = sys.argv[2], sys.argv[sys.argv.index("--") + 1:]
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        print(proc.pid)
        return 0
    if cmd == "scan":
        return scan(int(sys.argv[2]), sys.argv[3:])
    deadline = time.monotonic() + float(sys.argv[3])
    while time.monotonic() < deadline:
        if cmd == "wait" and not alive(int(sys.argv[2])):
            return 0
        if cmd == "until-file" and glob.glob(sys.argv[2]):
            return 0
        time.sleep(0.2)
    return 1


if __name__ == "__main__":
    sys.exit(main())
