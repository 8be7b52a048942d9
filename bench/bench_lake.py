# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lake scale (issue 11): rat.backup against rclone and `aws s3 sync` on a 100,000-object lake.

The lake: RAT_BENCH_LAKE_OBJECTS (default 100,000) objects of 256 B - 4 KB with Iceberg-like keys
(data files, manifests, metadata.json under warehouse/db/table/), plus one 1 GiB object in a bucket
of its own. The server: `rclone serve s3` over a temporary directory (lab/deps.sh installs it into
.venv/bench-tools), seeded by writing the files into that directory, so seeding costs no requests.
moto (~4.5 ms of its own CPU per GET) and s3rver (~1.1 ms) would be most of what is measured;
this server's own cost is measured in the same run and shown per scenario (server CPU column).

Scenarios, every tool as its own process in the same run: first backup (the backup playbook, with
the lab's PostgreSQL, against `rclone copy --fast-list --transfers 16` and `aws s3 sync`); the
same lake unchanged (against the listing floor `rclone lsf -R --fast-list` and the peers' reruns);
the 1 GiB object; restore of the lake into empty buckets. Time is wall clock; client CPU is the
process tree's user+sys; server CPU is read from /proc; peak RSS of bucket_mirror is sampled from
/proc while the playbook runs (VmHWM of its process). Prints Markdown tables.

Every measured run (each peer's and ours, every scenario) gets a freshly started server over the
same data directory: `rclone serve s3` spends more CPU per request the longer it runs and the
more it has cached (20,000-object restores on one server process: 12.3 s of server CPU for the
first, 25.7 s for the same restore two runs later), so whichever tool ran later on a shared
server process was measured against a slower server (the restore ran rclone first, ours
second; the first backup rclone's two runs, then ours). The page cache is the machine's and stays.

Planning memory at RAT_BENCH_LAKE_PLAN_KEYS (1,000,000) keys is measured by lake_plan_rss.py against a
synthetic listing. Environment: RAT_BENCH_LAKE_OBJECTS, RAT_BENCH_LAKE_HUGE_MB (1024; 0 skips), RAT_BENCH_LAKE_PORT
(20800), RAT_BENCH_LAKE_PEERS (default "rclone,aws"), RAT_BENCH_LAKE_SERVER (the rclone binary).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET

import bench_backup
import bench_mirror

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
OBJECTS = int(os.environ.get("RAT_BENCH_LAKE_OBJECTS", "100000"))
HUGE_MB = int(os.environ.get("RAT_BENCH_LAKE_HUGE_MB", "1024"))
PLAN_KEYS = int(os.environ.get("RAT_BENCH_LAKE_PLAN_KEYS", "1000000"))
PORT = int(os.environ.get("RAT_BENCH_LAKE_PORT", "20800"))
PEERS = [p for p in os.environ.get("RAT_BENCH_LAKE_PEERS", "rclone,aws").split(",") if p]
SERVER = os.environ.get("RAT_BENCH_LAKE_SERVER", os.path.join(REPO, ".venv", "bench-tools", "bin", "rclone"))
ENDPOINT = "http://127.0.0.1:%d" % PORT
KEY, SECRET = "bench", "bench-secret"
LAKE, HUGE = "lake", "huge"
TICK = os.sysconf("SC_CLK_TCK")


def tool_env():
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update({"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
                # rclone serve s3 answers a ranged GET with the whole object's CRC; the CLI would reject it.
                "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
                "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
                "RCLONE_CONFIG_BENCH_TYPE": "s3", "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
                "RCLONE_CONFIG_BENCH_ENDPOINT": ENDPOINT, "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": KEY,
                "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": SECRET, "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
                "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true", "RCLONE_CONFIG": "/dev/null",
                "PYTHONPATH": os.path.join(REPO, "collections")})
    return env


# --- the lake -------------------------------------------------------------------------------------

def lake_keys(count):
    """Iceberg-like keys: per table snapshot a data file, a manifest list, and every 4th a metadata.json."""
    keys = []
    tables = [(db, table) for db in range(10) for table in range(20)]
    snapshot = 0
    while len(keys) < count:
        db, table = tables[snapshot % len(tables)]
        snapshot += 1
        base = "warehouse/db_%02d/table_%03d" % (db, table)
        tag = hashlib.md5(b"%d" % snapshot).hexdigest()
        keys.append("%s/data/dt=2026-11-%02d/part-%05d-%s.parquet" % (base, 1 + snapshot % 28, snapshot, tag))
        keys.append("%s/metadata/snap-%d-1-%s.avro" % (base, snapshot, tag[:16]))
        if snapshot % 4 == 0:
            keys.append("%s/metadata/%05d-%s.metadata.json" % (base, snapshot, tag))
    return keys[:count]


def seed(data):
    """Writes the lake and the huge object straight into the server's directory."""
    rnd = random.Random(11)
    total = 0
    made = set()
    for key in lake_keys(OBJECTS):
        path = os.path.join(data, LAKE, key)
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        body = rnd.randbytes(rnd.randint(256, 4096))
        total += len(body)
        with open(path, "wb") as handle:
            handle.write(body)
    os.makedirs(os.path.join(data, HUGE))
    if HUGE_MB:
        with open(os.path.join(data, HUGE, "table.parquet"), "wb") as handle:
            for _index in range(HUGE_MB):
                handle.write(rnd.randbytes(1 << 20))
    return total


# --- measuring ----------------------------------------------------------------------------------

class Server:
    def __init__(self, data, log):
        self.data = data
        self.log = log
        self.start()

    def start(self):
        self.proc = subprocess.Popen([SERVER, "serve", "s3", "--addr", "127.0.0.1:%d" % PORT,
                                      "--auth-key", "%s,%s" % (KEY, SECRET), "--etag-hash", "MD5",
                                      "--config", "/dev/null", self.data],
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                # Not another server's port: one left on it would be measured, over another directory.
                raise SystemExit("bench_lake: %s serve s3 exited (%d) before it listened on %d; is the port taken?"
                                 % (SERVER, self.proc.returncode, PORT))
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", PORT)) == 0:
                    return
            time.sleep(0.1)
        self.stop()
        raise SystemExit("bench_lake: %s serve s3 did not listen on %d" % (SERVER, PORT))

    def cpu(self):
        with open("/proc/%d/stat" % self.proc.pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def restart(self):
        """A fresh server process over the same directory (see the module's docstring)."""
        self.stop()
        self.start()


class RssWatch(threading.Thread):
    """Peak memory of the module processes this bench starts (bucket_mirror and its worker
    processes; in a playbook also the other modules, one after the other), sampled every 0.2 s: the most, at any one tick, of their PSS summed (a worker
    is a fork: pages it shares with the module are counted once, split between them).

    A module process is a Python descendant of this bench that is neither ansible-playbook (nor
    one of its forks) nor the bench's timing helper. With pipelining, a module's command line is
    only the interpreter, so it cannot be found by the module's name.
    """

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = 0.0
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(0.2):
            total = 0.0
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open("/proc/%s/cmdline" % pid, "rb") as handle:
                        cmdline = handle.read()
                    if b"python" not in cmdline.split(b"\0")[0] or b"ansible-playbook" in cmdline or \
                            b"RUSAGE_CHILDREN" in cmdline or int(pid) == os.getpid():
                        continue
                    # Other runs on a shared machine are not ours.
                    if not descends_from(pid, os.getpid()):
                        continue
                    total += pss_mb(pid)
                except (OSError, ValueError):
                    continue
            self.peak = max(self.peak, total)

    def stop(self):
        self.done.set()
        self.join()
        return self.peak


def pss_mb(pid):
    with open("/proc/%s/smaps_rollup" % pid, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def vm_hwm_mb(pid="self"):
    """Peak RSS in MB of one process image (VmHWM), None for a process without memory of its own.
    Not ru_maxrss: Linux carries that across exec, so a child would report its parent's size."""
    with open("/proc/%s/status" % pid, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


def descends_from(pid, root):
    """True when process ``pid`` is ``root`` or one of its descendants."""
    pid = int(pid)
    while pid > 1:
        if pid == root:
            return True
        with open("/proc/%d/stat" % pid) as handle:
            pid = int(handle.read().rsplit(")", 1)[1].split()[1])
    return False


def measure(server, argv, env=None, cwd=None, watch=None):
    """Run ``argv`` against a freshly started server: wall s, client CPU s (the process tree), server
    CPU s, peak RSS MB, stdout."""
    helper = ("import json,subprocess,sys,time,resource\n"
              "t=time.monotonic();p=subprocess.run(sys.argv[1:],capture_output=True)\n"
              "s=time.monotonic()-t;u=resource.getrusage(resource.RUSAGE_CHILDREN)\n"
              "print(json.dumps({'rc':p.returncode,'s':s,'cpu':u.ru_utime+u.ru_stime,'rss':u.ru_maxrss/1024.0,"
              "'lines':p.stdout.count(b'\\n'),'out':p.stdout[-20000:].decode('utf-8','replace'),'err':p.stderr[-4000:].decode('utf-8','replace')}))\n")
    server.restart()
    watcher = RssWatch() if watch else None
    if watcher:
        watcher.start()
    before = server.cpu()
    proc = subprocess.run([sys.executable, "-c", helper] + argv, env=env or tool_env(), cwd=cwd,
                          capture_output=True, check=True)
    server_cpu = server.cpu() - before
    result = json.loads(proc.stdout)
    if watcher:
        result["rss"] = watcher.stop()
    if result["rc"] != 0:
        raise SystemExit("bench_lake: %s failed (%d):\n%s\n%s" % (" ".join(argv[:3]), result["rc"],
                                                                  result["out"][-3000:], result["err"]))
    return {"wall": result["s"], "cpu": result["cpu"], "server": server_cpu, "rss": result["rss"],
            "out": result["out"], "lines": result["lines"]}


def module_argv(work, args):
    args = dict(args)
    for side in ("src_", "dest_"):
        args.update({side + "endpoint": ENDPOINT, side + "access_key": KEY, side + "secret_key": SECRET})
    path = os.path.join(work, "args-%d.json" % time.monotonic_ns())
    with open(path, "w") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    return [sys.executable, os.path.join(REPO, "plugins", "modules", "bucket_mirror.py"), path]


def rclone(*args):
    return ["rclone", "--config", "/dev/null"] + list(args)


def aws(*args):
    return [os.path.join(BIN, "aws"), "--endpoint-url", ENDPOINT] + list(args)


def disk_blocks(path, seen=None):
    """Bytes allocated under ``path`` (directories included), counting each inode once across calls."""
    seen = set() if seen is None else seen
    total = 0
    for parent, dirs, files in os.walk(path):
        for name in [""] + files:
            st = os.lstat(os.path.join(parent, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total, seen


# --- scenarios ----------------------------------------------------------------------------------

def run_all(work, server, data):
    results = {}
    inventory = bench_backup.write_inventory(work, [LAKE], (ENDPOINT, KEY, SECRET))

    results["list"] = {"rclone": measure(server, rclone("lsf", "-R", "--fast-list", "--files-only", "bench:" + LAKE))}
    listed = results["list"]["rclone"]["lines"]
    if listed != OBJECTS:
        raise SystemExit("bench_lake: the listing floor saw %d objects, not %d" % (listed, OBJECTS))

    first, second = {}, {}
    if "rclone" in PEERS:
        target = os.path.join(work, "rclone")
        first["rclone"] = measure(server, rclone("copy", "--fast-list", "--transfers", "16", "bench:" + LAKE, target))
        second["rclone"] = measure(server, rclone("copy", "--fast-list", "--transfers", "16", "bench:" + LAKE, target))
    if "aws" in PEERS:
        target = os.path.join(work, "aws")
        first["aws"] = measure(server, aws("s3", "sync", "--only-show-errors", "s3://" + LAKE, target))
        second["aws"] = measure(server, aws("s3", "sync", "--only-show-errors", "s3://" + LAKE, target))
    first["ours"] = playbook_run(server, work, inventory, "first")
    first_dir = first["ours"]["dir"]
    second["ours"] = playbook_run(server, work, inventory, "second")
    second_dir = second["ours"]["dir"]
    results["ansible"] = bench_backup.ansible_floor(inventory, work, bench_backup.ROLE_MODULE_TASKS)
    bench_mirror.check_equal(os.path.join(data, LAKE), os.path.join(second_dir, "minio", LAKE))
    first_disk, seen = disk_blocks(first_dir)
    extra, _seen = disk_blocks(second_dir, seen)
    manifest = os.path.getsize(os.path.join(second_dir, "manifest.json"))
    results.update(first=first, second=second, disk={"first": first_disk, "extra": extra, "manifest": manifest})

    if HUGE_MB:
        huge = {}
        if "rclone" in PEERS:
            huge["rclone"] = measure(server, rclone("copy", "--transfers", "16", "bench:" + HUGE,
                                                    os.path.join(work, "huge-rclone")))
        if "aws" in PEERS:
            huge["aws"] = measure(server, aws("s3", "sync", "--only-show-errors", "s3://" + HUGE, os.path.join(work, "huge-aws")))
        huge["ours"] = measure(server, module_argv(work, {"src": "s3://" + HUGE, "dest": os.path.join(work, "huge-ours"),
                                                          "concurrency": 16}), watch=True)
        bench_mirror.check_equal(os.path.join(data, HUGE), os.path.join(work, "huge-ours"))
        for name in os.listdir(work):
            if name.startswith("huge-"):
                shutil.rmtree(os.path.join(work, name))
        results["huge"] = huge

    restore = {}
    local = os.path.join(second_dir, "minio", LAKE)
    if "rclone" in PEERS:
        restore["rclone"] = measure(server, rclone("copy", "--transfers", "16", local, "bench:restore-rclone"))
    if "aws" in PEERS:
        # Unlike the others, the CLI does not create the bucket.
        subprocess.run(aws("s3", "mb", "s3://restore-aws"), env=tool_env(), check=True, capture_output=True)
        restore["aws"] = measure(server, aws("s3", "sync", "--only-show-errors", local, "s3://restore-aws"))
    restore["ours"] = measure(server, module_argv(work, {
        "src": os.path.dirname(local), "dest": "s3://restore-ours", "manifest": os.path.join(second_dir, "manifest.json"),
        "create_buckets": True, "concurrency": 16}), watch=True)
    bench_mirror.check_equal(os.path.join(data, LAKE), os.path.join(data, "restore-ours"))
    results["restore"] = restore
    results["plan"] = plan_rss(work)
    return results


def plan_rss(work):
    """lake_plan_rss.py in its own process: peak RSS planning PLAN_KEYS unchanged keys."""
    plan_work = os.path.join(work, "plan")
    os.makedirs(plan_work)
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "lake_plan_rss.py"), str(PLAN_KEYS), plan_work],
                          env=tool_env(), capture_output=True, text=True, check=False)
    shutil.rmtree(plan_work, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit("bench_lake: lake_plan_rss.py failed:\n" + proc.stderr[-3000:])
    return json.loads(proc.stdout.splitlines()[-1])


def playbook_run(server, work, inventory, tag):
    """One backup playbook run, with the seconds of each module task from Ansible's junit callback."""
    junit = os.path.join(work, "junit-" + tag)
    env = dict(tool_env(), ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default",
               ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.junit", JUNIT_OUTPUT_DIR=junit, JUNIT_TASK_CLASS="yes")
    result = measure(server, [os.path.join(BIN, "ansible-playbook"), "-i", inventory,
                              os.path.join(REPO, "playbooks", "backup.yml")], env=env, cwd=REPO, watch=True)
    tasks = {}
    for name in os.listdir(junit):
        for case in ET.parse(os.path.join(junit, name)).iter("testcase"):
            tasks[case.get("name")] = tasks.get(case.get("name"), 0.0) + float(case.get("time") or 0)
    # backup_capture: the checks, the lock, the dump, the mirror and the commit in one module run.
    result["capture"] = sum(t for n, t in tasks.items() if "then dump and mirror at one consistency" in n)
    result["dir"] = backup_dir(result["out"], work)
    return result


def backup_dir(out, work):
    for line in out.splitlines():
        if "status=ok name=" in line:
            return os.path.join(work, "backups", line.split("status=ok name=", 1)[1].split()[0])
    raise SystemExit("bench_lake: no success line in the playbook output:\n" + out[-3000:])


# --- report -------------------------------------------------------------------------------------

NAMES = [("ours", "rat.backup"), ("rclone", "rclone"), ("aws", "aws s3 sync")]


def cell(m):
    if not m:
        return "-"
    return "%.1f s (cpu %.0f + server %.0f)" % (m["wall"], m["cpu"], m["server"])


def verdict(ours, reference, limit):
    ratio = ours / reference
    return "%.2f× %s" % (ratio, "met" if ratio <= limit else "missed")


def report(r, lake_bytes):
    print("## bench_lake: %d objects (%.0f MB, 256 B - 4 KB, Iceberg-like keys), `rclone serve s3` on loopback"
          % (OBJECTS, lake_bytes / 1e6))
    print()
    print("Same run, 2 shared cores: absolute times move with the machine's load, the ratios less.")
    print("Each cell: wall clock (client CPU + server CPU, user+sys seconds). Every run, each peer's and ours, "
          "against a freshly started server over the same data (rclone serve s3 slows the longer it runs).")
    print()
    print("| scenario | " + " | ".join(label for _n, label in NAMES) + " | floor | rat.backup / reference | target |")
    print("|---|---|---|---|---|---|---|")
    floor = r["list"]["rclone"]
    rows = [("first backup", r["first"], None, ("rclone", 1.0), "≤ 1.0× rclone copy"),
            ("second backup, nothing changed", r["second"], floor, ("floor", 1.5), "≤ 1.5× listing floor")]
    if "huge" in r:
        rows.append(("one %d MiB object" % HUGE_MB, r["huge"], None, ("rclone", 1.0), "≤ 1.0× rclone"))
    rows.append(("restore into an empty bucket", r["restore"], None, ("rclone", 1.0), "≤ 1.0× rclone copy"))
    for title, group, row_floor, (reference, limit), target in rows:
        ref = row_floor if reference == "floor" else group.get(reference)
        ratio = verdict(group["ours"]["wall"], ref["wall"], limit) if ref else "-"
        print("| %s | %s | %s | %s |" % (title, " | ".join(cell(group.get(n)) for n, _l in NAMES),
                                         ("`rclone lsf -R --fast-list` " + cell(row_floor)) if row_floor else "-",
                                         ratio) + " %s |" % target)
    print()
    print("Where rat.backup's playbook time goes (per-task seconds from Ansible's junit callback; the "
          "Ansible floor is a playbook of %d no-op module task(s) in the same run):" % bench_backup.ROLE_MODULE_TASKS)
    print()
    print("| backup | playbook wall | backup_capture task (checks, lock, pg_dump + mirror, commit) "
          "| rest (other tasks, playbook start) | Ansible floor | capture task / reference |")
    print("|---|---:|---:|---:|---:|---|")
    for title, run, ref, ref_name in (("first", r["first"]["ours"], r["first"].get("rclone"), "rclone copy"),
                                      ("second", r["second"]["ours"], floor, "listing floor")):
        # A task's junit time holds its module's start too: the Ansible floor overlaps the task columns.
        rest = run["wall"] - run["capture"]
        print("| %s | %.1f | %.1f | %.1f | %.1f | %s |" % (
            title, run["wall"], run["capture"], rest, r["ansible"],
            ("%.2f× %s" % (run["capture"] / ref["wall"], ref_name)) if ref else "-"))
    print()
    rss_first, rss_restore = r["first"]["ours"]["rss"], r["restore"]["ours"]["rss"]
    print("| memory and disk | measured | target |")
    print("|---|---:|---|")
    # The playbook's module processes one after the other: bucket_mirror with its workers, and
    # backup_run's commit, which holds the object list while it checks and writes manifest.json.
    print("| first backup (%d keys): the largest module process of the playbook with its workers (PSS; "
          "bucket_mirror or backup_run commit) | %.0f MB | bucket_mirror ≤ 150 MB (%s) |"
          % (OBJECTS, rss_first, "met" if rss_first <= 150 else "this row does not tell the two apart"))
    print("| bucket_mirror peak memory (PSS, with workers), restore | %.0f MB | ≤ 150 MB %s |"
          % (rss_restore, "met" if rss_restore <= 150 else "missed"))
    if "huge" in r:
        print("| bucket_mirror peak memory (PSS, with workers), %d MiB object | %.0f MB | ≤ 150 MB |" % (HUGE_MB, r["huge"]["ours"]["rss"]))
    plan = r["plan"]
    print("| planning an unchanged backup of %d keys (synthetic listing, check mode, no boto3 client) | %.0f MB "
          "in %.0f s | ≤ 200 MB at 1,000,000 %s |" % (plan["keys"], plan["rss_mb"], plan["seconds"],
                                                      "met" if plan["rss_mb"] <= 200 else "missed"))
    disk = r["disk"]
    print("| second backup's extra disk | %.1f MB (%.1f %% of the first's %.0f MB): manifest.json %.1f MB, "
          "directories and anything not linked %.1f MB | as small as the layout allows |"
          % (disk["extra"] / 1e6, 100.0 * disk["extra"] / disk["first"], disk["first"] / 1e6,
             disk["manifest"] / 1e6, (disk["extra"] - disk["manifest"]) / 1e6))
    print()


def main():
    if not os.path.exists(SERVER):
        sys.exit("bench_lake: %s missing: run lab/deps.sh all" % SERVER)
    work = tempfile.mkdtemp(prefix="rat-bench-lake-")
    data = os.path.join(work, "server")
    os.makedirs(data)
    log = open(os.path.join(work, "server.log"), "wb")
    try:
        started = time.monotonic()
        lake_bytes = seed(data)
        print("bench_lake: seeded %d objects in %.0f s" % (OBJECTS, time.monotonic() - started), file=sys.stderr)
        server = Server(data, log)
        try:
            results = run_all(work, server, data)
        finally:
            server.stop()
        report(results, lake_bytes)
    finally:
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
