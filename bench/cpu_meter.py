# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CPU seconds a benchmark costs, split into parts, so a wall-time target can be judged against its floor.

Wall time on a 2-core machine says as much about everything else running as about the code; CPU
seconds do not. The meter puts the benchmark process into a cgroup v1 `cpuacct` group of its own, so
everything it starts afterwards (PostgreSQL clusters, sshd in network namespaces, ansible-playbook)
is counted, even daemons that leave the process tree. Three parts live outside that group and are
read on their own: the lab's S3 server (its pid file), and Docker containers (dockerd starts them in
its own groups). Without a writable cpuacct hierarchy every figure is None and `unavailable` says why.
"""

from __future__ import annotations

import glob
import os
import resource

CPUACCT = "/sys/fs/cgroup/cpuacct"
CONTAINER_GROUPS = ("docker/*/cpuacct.usage", "system.slice/docker-*.scope/cpuacct.usage")
TICKS = os.sysconf("SC_CLK_TCK")


class CpuMeter:
    def __init__(self, s3_pid_file):
        self.s3_pid_file = s3_pid_file
        self.group = os.path.join(CPUACCT, f"rat-bench-{os.getpid()}")
        self.unavailable = None
        try:
            os.mkdir(self.group)
            with open(os.path.join(self.group, "cgroup.procs"), "w", encoding="ascii") as procs:
                procs.write(str(os.getpid()))
        except OSError as exc:
            self.unavailable = f"no writable cgroup v1 cpuacct hierarchy at {CPUACCT}: {exc.strerror}"

    def sample(self):
        """Raw counters now, in seconds: our group, our finished child processes, S3, containers."""
        if self.unavailable:
            return None
        return {"group": read_ns(os.path.join(self.group, "cpuacct.usage")),
                "ansible": children_seconds(),
                "s3": process_seconds(self.s3_pid_file),
                "containers": sum(read_ns(path) for pattern in CONTAINER_GROUPS
                                  for path in glob.glob(os.path.join(CPUACCT, pattern)))}

    def since(self, before):
        """CPU seconds since `before` by part: ansible (the playbook, its forks and the modules run
        locally), services (the hosts' PostgreSQL, sshd and what runs over SSH, containers), s3, total."""
        after = self.sample()
        if after is None:
            return {"ansible": None, "services": None, "s3": None, "total": None}
        delta = {key: after[key] - before[key] for key in after}
        # A finished child's CPU is in both our group and the rusage counters: count it once.
        services = delta["group"] - delta["ansible"] + delta["containers"]
        return {"ansible": delta["ansible"], "services": services, "s3": delta["s3"],
                "total": delta["ansible"] + services + delta["s3"]}

    def close(self):
        """Leave the group and remove it; a group still holding a process (a leak) is left in place."""
        if self.unavailable:
            return
        try:
            with open(os.path.join(CPUACCT, "cgroup.procs"), "w", encoding="ascii") as procs:
                procs.write(str(os.getpid()))
            os.rmdir(self.group)
        except OSError:
            pass


def read_ns(path):
    with open(path, encoding="ascii") as handle:
        return int(handle.read()) / 1e9


def children_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_seconds(pid_file):
    """utime + stime of the process named by pid_file, 0 when there is none (no lab S3 to count)."""
    try:
        with open(pid_file, encoding="ascii") as handle:
            pid = int(handle.read().strip())
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return 0.0
    # Fields after the command name start at field 3 (state): utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / TICKS
