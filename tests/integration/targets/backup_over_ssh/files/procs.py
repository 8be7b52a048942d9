# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Processes of a backup over SSH: who belongs to the run, what their command lines hold.

    procs.py watch LOG OPTIONS -- argv...   runs argv (output to LOG) and samples command lines
                                            until it ends; prints {"rc", "samples", "comms", "leaks"},
                                            leaks = {pid: its command line, the secret masked}
    procs.py scan SECONDS OPTIONS           samples command lines for SECONDS; prints the same
    procs.py tree PID COMM                  PID and all its descendants: [{"pid", "comm"}...]; none
                                            when PID no longer runs COMM (its pid may be reused)
    procs.py reap PID COMM                  kill -9 PID if it still runs COMM; prints what it did

OPTIONS: --root PID (repeatable: a process whose descendants belong to the run, e.g. the
playbook and the private sshd, whose sessions run the modules), --mark TEXT (a process whose
command line holds TEXT belongs too: the lock keeper leaves the sshd tree but runs from the
remote tmp under the target's scratch directory), --secret FILE (repeatable: a secret to look for).
Only the run's processes are read, so other work on the machine cannot fail the test.
"""

import json
import os
import signal
import subprocess
import sys
import time

SAMPLE_PAUSE = 0.01
WATCH_LIMIT = 600


def table():
    """{pid: (ppid, comm, cmdline bytes)} of every process readable now."""
    procs = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as handle:
                head, tail = handle.read().rsplit(b")", 1)
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                cmdline = handle.read()
        except OSError:
            continue
        procs[int(entry)] = (int(tail.split()[1]), head.split(b"(", 1)[1].decode("utf-8", "replace"), cmdline)
    return procs


def descendants(procs, roots):
    found = set(pid for pid in roots if pid in procs)
    grew = True
    while grew:
        more = set(pid for pid, (ppid, _comm, _cmd) in procs.items() if ppid in found) - found
        found |= more
        grew = bool(more)
    return found


def sample(state, roots, mark, secrets):
    procs = table()
    ours = descendants(procs, roots)
    ours |= set(pid for pid, (_ppid, _comm, cmd) in procs.items() if mark and mark in cmd)
    ours.discard(os.getpid())
    state["samples"] += 1
    for pid in ours:
        _ppid, comm, cmdline = procs[pid]
        state["comms"].add(comm)
        for secret in secrets:
            if secret in cmdline:
                shown = cmdline.replace(secret, b"<SECRET>").replace(b"\x00", b" ")
                state["leaks"][pid] = "%s: %s" % (comm, shown.decode("utf-8", "replace")[:300])


def options(args):
    roots, mark, secrets = [], None, []
    pairs = iter(args)
    for flag in pairs:
        value = next(pairs)
        if flag == "--root":
            roots.append(int(value))
        elif flag == "--mark":
            mark = value.encode("utf-8")
        elif flag == "--secret":
            with open(value, "rb") as handle:
                secret = handle.read().strip()
            if not secret:
                raise SystemExit("secret file %s is empty" % value)
            secrets.append(secret)
        else:
            raise SystemExit("unknown option %s" % flag)
    return roots, mark, secrets


def report(state, **extra):
    print(json.dumps(dict(extra, samples=state["samples"], comms=sorted(state["comms"]), leaks=state["leaks"])))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    state = {"samples": 0, "comms": set(), "leaks": {}}
    if cmd == "watch":
        split = args.index("--")
        roots, mark, secrets = options(args[1:split])
        with open(args[0], "ab") as out:
            child = subprocess.Popen(args[split + 1:], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + WATCH_LIMIT
        while child.poll() is None and time.monotonic() < deadline:
            sample(state, roots + [child.pid], mark, secrets)
            time.sleep(SAMPLE_PAUSE)
        if child.poll() is None:
            child.kill()
        report(state, rc=child.wait())
    elif cmd == "scan":
        roots, mark, secrets = options(args[1:])
        deadline = time.monotonic() + float(args[0])
        while time.monotonic() < deadline:
            sample(state, roots, mark, secrets)
            time.sleep(SAMPLE_PAUSE)
        report(state)
    elif cmd == "tree":
        procs, pid = table(), int(args[0])
        found = descendants(procs, [pid]) if procs.get(pid, (0, None))[1] == args[1] else set()
        print(json.dumps([{"pid": one, "comm": procs[one][1]} for one in sorted(found)]))
    elif cmd == "reap":
        pid, comm = int(args[0]), args[1]
        running = table().get(pid)
        if running and running[1] == comm:
            os.kill(pid, signal.SIGKILL)
            print("killed")
        else:
            print("gone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
