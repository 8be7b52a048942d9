#!/usr/bin/env python3
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Background processes for fault tests, in their own session so a test can kill -9 the group.

    bg.py start LOG -- argv...        prints the pid (= process group id)
    bg.py wait PID SECONDS            waits until the process is gone; exit 1 on timeout
    bg.py until-file PATH SECONDS     waits until a glob matches; exit 1 on timeout
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


def main():
    cmd = sys.argv[1]
    if cmd == "start":
        log, argv = sys.argv[2], sys.argv[sys.argv.index("--") + 1:]
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        print(proc.pid)
        return 0
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
