# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rewrite a file in place, same size, between two reads of it: the window a restore must close.

    rewrite_after_read.py PATH READY_FILE [--find TEXT --replace TEXT] (--after-read | --before-open N)

--after-read: inotify; the rewrite follows the first close of PATH by a reader (IN_CLOSE_NOWRITE).
--before-open N: fanotify permission events (root); the Nth open of PATH waits until the rewrite is
done, so that reader gets the new bytes whatever the timing.
The rewrite replaces TEXT by the same-length replacement (a valid archive with other data), or
else inverts the first 64 bytes. READY_FILE is created once watching; prints "rewritten", exit 0;
exit 1 when the event does not come within --timeout seconds.
"""

import argparse
import ctypes
import os
import select
import struct
import sys

IN_CLOSE_NOWRITE = 0x10
FAN_CLASS_CONTENT = 0x04
FAN_OPEN_PERM = 0x00010000
FAN_MARK_ADD = 0x01
FAN_ALLOW = 0x01
AT_FDCWD = -100
EVENT = struct.Struct("IBBHQii")  # struct fanotify_event_metadata

libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]


def rewrite(fd, find, replace):
    data = os.pread(fd, os.fstat(fd).st_size, 0)
    if find:
        if len(find) != len(replace):
            raise SystemExit("replacement must have the same length")
        at, new = data.index(find.encode()), replace.encode()
    else:
        at, new = 0, bytes(b ^ 0xFF for b in data[:64])
    os.pwrite(fd, new, at)
    os.fsync(fd)


def wait(fd, timeout, what):
    if not select.select([fd], [], [], timeout)[0]:
        print("no %s within %.0fs" % (what, timeout))
        sys.exit(1)


def after_read(args):
    fd = libc.inotify_init1(0)
    if fd < 0 or libc.inotify_add_watch(fd, os.fsencode(args.path), IN_CLOSE_NOWRITE) < 0:
        raise SystemExit("inotify: %s" % os.strerror(ctypes.get_errno()))
    open(args.ready, "w", encoding="utf-8").close()
    wait(fd, args.timeout, "read of %s" % args.path)
    target = os.open(args.path, os.O_RDWR)
    rewrite(target, args.find, args.replace)


def before_open(args):
    fd = libc.fanotify_init(FAN_CLASS_CONTENT, os.O_RDWR | os.O_LARGEFILE)
    if fd < 0 or libc.fanotify_mark(fd, FAN_MARK_ADD, FAN_OPEN_PERM, AT_FDCWD, os.fsencode(args.path)) < 0:
        raise SystemExit("fanotify: %s" % os.strerror(ctypes.get_errno()))
    open(args.ready, "w", encoding="utf-8").close()
    opens = 0
    while opens < args.before_open:
        wait(fd, args.timeout, "open number %d of %s" % (opens + 1, args.path))
        data = os.read(fd, 4096)
        for offset in range(0, len(data), EVENT.size):
            _len, _vers, _res, _mlen, _mask, event_fd, _pid = EVENT.unpack_from(data, offset)
            opens += 1
            if opens == args.before_open:
                # Through the event's own descriptor: opening PATH again would wait on ourselves.
                rewrite(event_fd, args.find, args.replace)
            os.write(fd, struct.pack("iI", event_fd, FAN_ALLOW))
            os.close(event_fd)
    os.close(fd)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("ready")
    parser.add_argument("--find")
    parser.add_argument("--replace")
    parser.add_argument("--timeout", type=float, default=300)
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--after-read", action="store_true")
    when.add_argument("--before-open", type=int)
    args = parser.parse_args()
    if args.after_read:
        after_read(args)
    else:
        before_open(args)
    print("rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
