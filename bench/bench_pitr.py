# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of point-in-time recovery (issue 26), run by `make bench` with .lab/env exported.

The bench makes its own PostgreSQL cluster (initdb, 127.0.0.1:BENCH_PITR_PORT, under /var/tmp), so the
writer has a server to itself and the shared lab's is not touched. In one run, on one machine:

1. The WAL stream's cost on a busy database: pgbench's TPC-B-like writer (2 clients, as many as cores)
   for BENCH_PITR_SECONDS with no stream, then Barman streaming enabled through the collection as an
   operator enables it (ansible-playbook playbooks/pitr.yml: replication role, slot, Barman's
   configuration, the stream, the first base backup), then the same writer again with the stream
   running and `barman cron` every minute (what the role's cron line does). Throughput both ways, CPU
   seconds of everything the bench started (its cgroup) per transaction, and the stream's own CPU
   (barman receive-wal, pg_receivewal, the server's walsender, barman cron: read from /proc).
2. Recovery of the database (BENCH_PITR_MB, default 1024: pgbench's tables at the scale that gives it)
   plus BENCH_PITR_WAL_MB of WAL written after the base backup (default 1024: an hour at 17 MB/min;
   the table also says what an hour of part 1's writer flat out would be), to a time T after that WAL:
   Barman's own command line by hand (`barman recover --target-time`, chown, pg_ctl start, wait until
   promoted) beside rat.backup.pitr_recover (run as Ansible runs a module), same base backup, same T,
   both checked to hold the same rows. The module's own timings split its time.

Quick run: BENCH_PITR_MB=64 BENCH_PITR_WAL_MB=128 BENCH_PITR_SECONDS=15. BENCH_PITR_ROUNDS (2) repeats
the recoveries, alternating which goes first, and shows the best of each: the first recovery reads the
base backup and WAL from disk, the second from the page cache (one round made the CLI look 1.7x
slower). Everything started is stopped by pid and removed: scratch servers, the role run with
rat_pitr_state=absent (stream, slot, role, Barman's configuration, cron file), the cluster, the
working directory.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from cpu_meter import CpuMeter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("RAT_LAB_PG_BIN", "/usr/lib/postgresql/15/bin")
PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
PORT = int(os.environ.get("BENCH_PITR_PORT", "20480"))
DB_MB = int(os.environ.get("BENCH_PITR_MB", "1024"))
WAL_MB = int(os.environ.get("BENCH_PITR_WAL_MB", "1024"))
SECONDS = int(os.environ.get("BENCH_PITR_SECONDS", "60"))
CLIENTS = int(os.environ.get("BENCH_PITR_CLIENTS", "2"))
ROUNDS = int(os.environ.get("BENCH_PITR_ROUNDS", "2"))
DB = "bench"
SERVER = "rat"
CRON_FILE = "rat-backup-pitr-bench"
# pgbench -i: about 15 MB of tables and indexes per unit of scale (100,000 accounts).
MB_PER_SCALE = 15
TICKS = os.sysconf("SC_CLK_TCK")


def say(text):
    print(f"bench_pitr: {text}", file=sys.stderr, flush=True)


def run(argv, env=None, check=True):
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"bench_pitr: {' '.join(argv[:6])} ... failed (rc {proc.returncode}): "
                         f"{(proc.stderr or proc.stdout)[-3000:]}")
    return proc


def as_postgres(argv):
    return ["runuser", "-u", "postgres", "--"] + argv


class Bench:
    def __init__(self, work):
        self.work = work
        self.password = os.urandom(16).hex()
        self.data = os.path.join(work, "pg")
        self.config = os.path.join(work, "barman", "barman.conf")
        self.home = os.path.join(work, "barman", "home")
        self.meter = CpuMeter(os.path.join(os.environ.get("RAT_LAB_STATE", "/nonexistent"), "s3-primary.pid"))
        self.postmaster = None
        self.enabled = False

    # PostgreSQL ----------------------------------------------------------------------------------
    def env(self):
        env = dict(os.environ, PGPASSWORD=self.password)
        env.pop("PGSERVICEFILE", None)
        return env

    def psql(self, sql, port=PORT, database=DB):
        return run([f"{BIN}/psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-w", "-h", "127.0.0.1", "-p",
                    str(port), "-U", "postgres", "-d", database, "-c", sql], env=self.env()).stdout.strip()

    def start_cluster(self):
        postgres = pwd.getpwnam("postgres")
        os.mkdir(self.data, 0o700)
        os.chown(self.data, postgres.pw_uid, postgres.pw_gid)
        pwfile = os.path.join(self.work, "initdb.pw")
        with open(os.open(pwfile, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as handle:
            handle.write(self.password)
        os.chown(pwfile, postgres.pw_uid, postgres.pw_gid)
        run(as_postgres([f"{BIN}/initdb", "-D", self.data, "-U", "postgres", "--pwfile", pwfile, "-E", "UTF8",
                         "--locale=C", "--auth-local=peer", "--auth-host=scram-sha-256"]))
        os.unlink(pwfile)
        logs = os.path.join(self.work, "log")
        os.mkdir(logs, 0o700)
        os.chown(logs, postgres.pw_uid, postgres.pw_gid)
        # PostgreSQL's defaults otherwise (RAT's stock container's): wal_level replica, max_wal_size 1 GB.
        with open(os.path.join(self.data, "postgresql.conf"), "a", encoding="utf-8") as conf:
            conf.write(f"port = {PORT}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n")
        run(as_postgres([f"{BIN}/pg_ctl", "-D", self.data, "-l", os.path.join(logs, "postgresql.log"), "-w", "start"]))
        with open(os.path.join(self.data, "postmaster.pid"), encoding="ascii") as pid_file:
            self.postmaster = int(pid_file.readline())
        self.psql(f"CREATE DATABASE {DB}", database="postgres")

    def fill(self):
        scale = max(1, round(DB_MB / MB_PER_SCALE))
        started = time.monotonic()
        # Server-side generation (G): the fastest way to ~1 GB of logged tables and their indexes.
        run([f"{BIN}/pgbench", "-i", "-I", "dtGvp", "-s", str(scale), "-q", "-h", "127.0.0.1", "-p", str(PORT),
             "-U", "postgres", DB], env=self.env())
        return scale, int(self.psql(f"SELECT pg_database_size('{DB}')")), time.monotonic() - started

    def lsn_diff(self, since):
        return int(float(self.psql(f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{since}')")))

    def pgbench(self, seconds):
        return [f"{BIN}/pgbench", "-n", "-M", "prepared", "-c", str(CLIENTS), "-j", str(CLIENTS), "-T", str(seconds),
                "-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres", DB]

    # Barman, through the collection and by hand ----------------------------------------------------
    def play(self, state):
        """playbooks/pitr.yml as an operator runs it, on an inventory of this bench's cluster."""
        inventory = os.path.join(self.work, "inventory.json")
        host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                "rat_postgres_host": "127.0.0.1", "rat_postgres_port": PORT, "rat_postgres_user": "postgres",
                "rat_postgres_password": self.password, "rat_postgres_database": DB,
                "rat_pitr_state": state, "rat_pitr_password": self.password + "-barman",
                "rat_pitr_config": self.config, "rat_pitr_home": self.home, "rat_pitr_cron_file": CRON_FILE,
                "rat_pitr_install": False}
        with open(os.open(inventory, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
            json.dump({"all": {"hosts": {"bench-pitr": host}}}, handle)
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, "collections"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_RETRY_FILES_ENABLED="False")
        before, started = self.meter.sample(), time.monotonic()
        self.enabled = self.enabled or state == "present"
        run([PLAYBOOK, "-i", inventory, os.path.join(REPO, "playbooks", "pitr.yml")], env=env)
        return time.monotonic() - started, group_cpu(self.meter, before)

    def barman(self, *args, check=True):
        return run(["barman", "-c", self.config, "-q"] + list(args), check=check)

    def archive_all(self, timeout=600):
        """Switch the segment being written and run Barman's cron until it is archived (what the operator's
        cron does every minute): every WAL record written so far is in Barman's archive."""
        # The restore point begins the next segment at once: Barman archives a streamed one only after that.
        segment = self.psql("SELECT pg_walfile_name(pg_switch_wal()); "
                            "SELECT pg_create_restore_point('bench_pitr')").splitlines()[0]
        path = os.path.join(self.home, SERVER, "wals", segment[:16], segment)
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise SystemExit(f"bench_pitr: WAL segment {segment} not archived within {timeout} s")
            self.barman("cron")
            time.sleep(0.5)

    def base_backup(self):
        listing = json.loads(run(["barman", "-c", self.config, "-f", "json", "list-backups", SERVER]).stdout)
        done = [b for b in listing[SERVER] if b.get("status") == "DONE"]
        return done[-1]["backup_id"], int(float(done[-1].get("size_bytes") or 0))

    def stream_processes(self):
        """{(pid, start): CPU seconds} of the stream: Barman's processes and pg_receivewal (their command lines
        name this bench's Barman files) and the server's walsender."""
        found = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
                with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ours = os.path.join(self.work, "barman") in cmdline
            walsender = cmdline.startswith("postgres: walsender") and int(fields[1]) == self.postmaster
            if ours or walsender:
                found[(int(pid), fields[19])] = (int(fields[11]) + int(fields[12])) / TICKS
        return found

    def writer_phase(self, label, streaming):
        """pgbench for SECONDS; with the stream on, barman cron every minute as the role's cron line does."""
        self.psql("CHECKPOINT")
        lsn = self.psql("SELECT pg_current_wal_lsn()")
        watch = StreamWatch(self, streaming)
        before, started = self.meter.sample(), time.monotonic()
        watch.start()
        out = run(self.pgbench(SECONDS), env=self.env()).stdout
        watch.stop()
        wall = time.monotonic() - started
        tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", out).group(1))
        xacts = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
        wal = self.lsn_diff(lsn)
        return {"label": label, "tps": tps, "xacts": xacts, "wal": wal, "wall": wall,
                "cpu": group_cpu(self.meter, before), "stream_cpu": watch.cpu if streaming else None,
                "stream_names": watch.names}

    def generate_wal(self, since_lsn, target_bytes):
        """The writer flat out until the WAL written since ``since_lsn`` reaches ``target_bytes``; barman cron
        every minute meanwhile. Returns the seconds it took."""
        started = time.monotonic()
        last_cron = started
        with subprocess.Popen(self.pgbench(36000), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=self.env()) as proc:
            try:
                while self.lsn_diff(since_lsn) < target_bytes:
                    if proc.poll() is not None:
                        raise SystemExit(f"bench_pitr: the writer stopped (rc {proc.returncode})")
                    if time.monotonic() - last_cron >= 60:
                        self.barman("cron")
                        last_cron = time.monotonic()
                    time.sleep(1)
            finally:
                proc.terminate()
                proc.wait(60)
        return time.monotonic() - started

    def wait_caught_up(self, timeout=900):
        """Until the receiver has written all the WAL there is, then a second more.

        Barman 3.4's recover copies WAL up to the first segment whose file time (when pg_receivewal wrote
        it, not when the server did) is after the target time: a segment of before T received after T
        (the stream catching up, here after the phase with the receiver stopped) cuts the copy short and
        recovery ends before the target. T is taken once the stream has caught up, as after any outage.
        """
        deadline = time.monotonic() + timeout
        while float(self.psql("SELECT coalesce(min(pg_wal_lsn_diff(pg_current_wal_lsn(), write_lsn)), 1e12) "
                              "FROM pg_stat_replication WHERE application_name = 'barman_receive_wal'")) > 2**20:
            if time.monotonic() > deadline:
                raise SystemExit(f"bench_pitr: the WAL stream did not catch up within {timeout} s")
            self.barman("cron")
            time.sleep(1)
        time.sleep(1.1)

    # Recoveries ------------------------------------------------------------------------------------
    def recover_cli(self, backup_id, moment, scratch):
        """What an operator types with Barman's own tools: recover, chown, start, wait until promoted."""
        laps, before = Laps(), self.meter.sample()
        os.mkdir(scratch, 0o700)
        data = os.path.join(scratch, "data")
        self.barman("recover", "--target-time", moment, "--target-action", "promote", SERVER, backup_id, data)
        laps.lap("barman_recover")
        run(["chown", "-R", "postgres:postgres", scratch])
        # Barman makes the directory 0755; PostgreSQL refuses to start on a data directory others can read.
        os.chmod(data, 0o700)
        laps.lap("chown")
        port = free_port()
        log = os.path.join(scratch, "postgresql.log")
        started = run(as_postgres([f"{BIN}/pg_ctl", "-D", data, "-l", log, "-w", "-t", "3600", "-o",
                                   f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={scratch} "
                                   "-c archive_mode=off", "start"]), check=False)
        if started.returncode != 0:
            raise SystemExit(f"bench_pitr: the CLI's recovered server did not start: {tail(log)}")
        laps.lap("start")
        deadline = time.monotonic() + 3600
        while True:
            asked = run([f"{BIN}/psql", "-X", "-A", "-t", "-w", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                         "-d", DB, "-c", "SELECT pg_is_in_recovery()"], env=self.env(), check=False)
            if asked.stdout.strip() == "f":
                break
            if time.monotonic() > deadline or not os.path.exists(os.path.join(data, "postmaster.pid")):
                raise SystemExit(f"bench_pitr: the CLI's recovered server did not promote: {tail(log)}")
            time.sleep(0.2)
        reached = self.psql("SELECT pg_last_xact_replay_timestamp()", port=port)
        laps.lap("promoted")
        return {"laps": laps.seconds, "wall": laps.total(), "cpu": group_cpu(self.meter, before), "port": port,
                "reached": reached}

    def recover_module(self, moment, scratch):
        """rat.backup.pitr_recover as Ansible runs a module (python module.py args.json)."""
        result, wall, cpu = self.module("pitr_recover", {
            "config": self.config, "server": SERVER, "as_of": moment, "scratch": scratch, "bin_dir": BIN,
            "user": "postgres", "password": self.password, "database": DB})
        return {"laps": result["timings"], "wall": wall, "cpu": cpu, "port": result["port"],
                "reached": result["reached"], "backup_id": result["backup_id"]}

    def module(self, name, args):
        path = os.path.join(self.work, f"{name}-args.json")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
            json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
        before, started = self.meter.sample(), time.monotonic()
        proc = run([sys.executable, os.path.join(REPO, "plugins", "modules", f"{name}.py"), path], check=False,
                   env=dict(os.environ, PYTHONPATH=os.path.join(REPO, "collections")))
        wall = time.monotonic() - started
        result = json.loads(proc.stdout[proc.stdout.index("{"):])
        if proc.returncode != 0 or result.get("failed"):
            raise SystemExit(f"bench_pitr: {name} failed: {result.get('msg')} {proc.stderr[-1000:]}")
        return result, wall, group_cpu(self.meter, before)

    def recovered_rows(self, port):
        return self.psql("SELECT count(*) || ' ' || coalesce(max(mtime)::text, '-') FROM pgbench_history", port=port)

    def stop_scratch(self, scratch, collection):
        if not os.path.lexists(scratch):
            return
        if collection:
            self.module("pitr_recover", {"state": "absent", "scratch": scratch, "bin_dir": BIN})
            return
        if os.path.exists(os.path.join(scratch, "data", "postmaster.pid")):
            run(as_postgres([f"{BIN}/pg_ctl", "-D", os.path.join(scratch, "data"), "-m", "fast", "-w", "stop"]),
                check=False)
        shutil.rmtree(scratch, ignore_errors=True)

    # Cleanup ---------------------------------------------------------------------------------------
    def clean(self):
        for name in sorted(os.listdir(self.work)):
            if name.startswith(("cli-", "rat-")):
                self.stop_scratch(os.path.join(self.work, name), name.startswith("rat-"))
        if self.enabled:
            # The role's own removal: cron file, stream, slot, role, Barman's configuration.
            try:
                self.play("absent")
            except SystemExit as exc:
                say(f"role removal failed, stopping by pid: {exc}")
        for (pid, _start), _cpu in self.stream_processes().items():
            if not _is_walsender(pid):
                say(f"left running, stopped: pid {pid}")
                os.kill(pid, 15)
        if self.postmaster:
            run(as_postgres([f"{BIN}/pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"]), check=False)
        cron = os.path.join("/etc/cron.d", CRON_FILE)
        if os.path.exists(cron):
            os.unlink(cron)
        shutil.rmtree(self.work, ignore_errors=True)
        self.meter.close()


def tail(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()[-2000:]
    except OSError as exc:
        return f"(no log: {exc.strerror})"


def _is_walsender(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().startswith(b"postgres: walsender")
    except OSError:
        return True


class StreamWatch:
    """Polls the stream's processes every 0.2 s: the CPU each used during the phase (short-lived barman cron
    and archive-wal runs included, up to their last poll), and their names."""

    def __init__(self, bench, enabled):
        self.bench = bench
        self.enabled = enabled
        self.base = {}
        self.last = {}
        self.names = set()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.cron_at = time.monotonic()

    def start(self):
        if self.enabled:
            self.base = self.bench.stream_processes()
            self.last = dict(self.base)
            self.thread.start()

    def loop(self):
        while not self.done.wait(0.2):
            self.last.update(self.bench.stream_processes())
            if time.monotonic() - self.cron_at >= 60:
                self.cron_at = time.monotonic()
                self.bench.barman("cron")

    def stop(self):
        if self.enabled:
            self.done.set()
            self.thread.join()
            self.last.update(self.bench.stream_processes())
            self.names = {process_name(pid) for pid, _start in self.last}

    @property
    def cpu(self):
        return sum(seconds - self.base.get(key, 0.0) for key, seconds in self.last.items())


def process_name(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            words = handle.read().split(b"\0")
    except OSError:
        return "(exited)"
    text = b" ".join(words).decode(errors="replace")
    if text.startswith("postgres: walsender"):
        return "walsender"
    if "pg_receivewal" in text:
        return "pg_receivewal"
    return "barman " + next((w.decode() for w in words if w.decode() in ("receive-wal", "cron", "archive-wal")), "?")


class Laps:
    def __init__(self):
        self.start = self.mark = time.monotonic()
        self.seconds = {}

    def lap(self, step):
        now = time.monotonic()
        self.seconds[step] = now - self.mark
        self.mark = now

    def total(self):
        return self.mark - self.start


def group_cpu(meter, before):
    """CPU seconds of everything the bench started since ``before`` (its cgroup), None when unmeasurable."""
    after = meter.sample()
    return None if after is None else after["group"] - before["group"]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def utc_now(bench):
    # The form PostgreSQL's recovery_target_time and Barman both read (PostgreSQL refuses "...Z").
    return bench.psql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00:00'")


def recoveries(bench, backup_id, moment):
    """Both recoveries ROUNDS times (order alternating); the best of each, and the rows each held."""
    best = {}
    for round_no in range(ROUNDS):
        for tool in (("cli", "rat") if round_no % 2 == 0 else ("rat", "cli")):
            scratch = os.path.join(bench.work, f"{tool}-{round_no}")
            say(f"recovery round {round_no + 1}: {'barman CLI' if tool == 'cli' else 'rat.backup.pitr_recover'}")
            done = (bench.recover_cli(backup_id, moment, scratch) if tool == "cli"
                    else bench.recover_module(moment, scratch))
            done["rows"] = bench.recovered_rows(done["port"])
            bench.stop_scratch(scratch, tool == "rat")
            if tool not in best or done["wall"] < best[tool]["wall"]:
                best[tool] = done
    return best["cli"], best["rat"]


def main():
    work = tempfile.mkdtemp(prefix="rat-bench-pitr-", dir="/var/tmp")
    # The scratch servers run as postgres below this directory: it must be able to pass through it.
    os.chmod(work, 0o711)
    bench = Bench(work)
    try:
        say(f"cluster on port {PORT}, pgbench tables of ~{DB_MB} MB")
        bench.start_cluster()
        scale, db_bytes, fill_seconds = bench.fill()
        say("writer: warm-up, then without the stream")
        # The first minutes after loading (autovacuum, cold caches) are slower than the rest: not measured.
        run(bench.pgbench(min(SECONDS, 20)), env=bench.env())
        off = bench.writer_phase("no stream", False)
        say("enabling Barman streaming through the pitr role (first base backup)")
        enable_wall, enable_cpu = bench.play("present")
        start_lsn, wal_started = bench.psql("SELECT pg_current_wal_lsn()"), time.monotonic()
        say("writer with the stream")
        on = bench.writer_phase("Barman streaming (pitr role)", True)
        # Drift check: the receiver stopped with Barman's own command (the slot keeps the WAL), the writer
        # again, then the stream started again by barman cron (it catches up from the slot).
        bench.barman("receive-wal", "--stop", SERVER)
        say("writer with the stream stopped")
        off_again = bench.writer_phase("no stream (receiver stopped)", False)
        bench.barman("cron")
        say(f"writing WAL until {WAL_MB} MB since the base backup")
        gen_seconds = bench.generate_wal(start_lsn, WAL_MB * 2**20)
        wal_bytes, wal_seconds = bench.lsn_diff(start_lsn), time.monotonic() - wal_started
        bench.wait_caught_up()
        moment = utc_now(bench)
        # Commits after T: recovery to a time stops at the first commit after it.
        run(bench.pgbench(2), env=bench.env())
        live_rows = bench.recovered_rows(PORT)
        started = time.monotonic()
        bench.archive_all()
        archive_seconds = time.monotonic() - started
        backup_id, backup_bytes = bench.base_backup()
        cli, rat = recoveries(bench, backup_id, moment)
    finally:
        bench.clean()

    if cli["rows"] != rat["rows"] or rat["backup_id"] != backup_id:
        raise SystemExit(f"bench_pitr: the recoveries differ: CLI {cli['rows']}, collection {rat['rows']} "
                         f"(base backups {backup_id}, {rat['backup_id']})")
    print_stream((off, on, off_again), enable_wall, enable_cpu, backup_bytes)
    print_recovery(dict(scale=scale, db_bytes=db_bytes, fill=fill_seconds, wal=wal_bytes, gen=gen_seconds,
                        wal_seconds=wal_seconds, archive=archive_seconds, moment=moment, live_rows=live_rows,
                        backup_id=backup_id, backup_bytes=backup_bytes), off, cli, rat)


def mb(value):
    return f"{value / 2**20:.0f}"


def sec(value):
    return "n/a" if value is None else f"{value:.1f}"


def print_stream(phases, enable_wall, enable_cpu, backup_bytes):
    off, on, off_again = phases
    print(f"\n### PITR 1: the WAL stream's cost on a busy database (pgbench TPC-B-like, {CLIENTS} clients, "
          f"{SECONDS} s each, same run, in this order)\n")
    print("| writer phase | tps | transactions | WAL MB | WAL MB/min | CPU s, all | CPU ms per transaction "
          "| CPU s, the stream |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for phase in phases:
        per_tx = f"{phase['cpu'] * 1000 / phase['xacts']:.3f}" if phase["cpu"] is not None else "n/a"
        print(f"| {phase['label']} | {phase['tps']:.0f} | {phase['xacts']} | {mb(phase['wal'])} "
              f"| {phase['wal'] / 2**20 / phase['wall'] * 60:.0f} | {sec(phase['cpu'])} | {per_tx} "
              f"| {sec(phase['stream_cpu']) if phase['stream_cpu'] is not None else '-'} |")
    base_tps = (off["tps"] + off_again["tps"]) / 2
    text = f"\nThroughput with the stream / without (mean of the two phases without): {on['tps'] / base_tps:.3f}"
    if all(phase["cpu"] for phase in phases):
        base = (off["cpu"] + off_again["cpu"]) / (off["xacts"] + off_again["xacts"])
        text += f"; CPU per transaction: {(on['cpu'] / on['xacts']) / base:.3f}"
        text += f"; the stream's own CPU is {on['stream_cpu'] / on['wall'] * 100:.0f}% of a core"
    print(text + f". The stream's processes: {', '.join(sorted(on['stream_names'])) or 'none seen'}. \"CPU s, "
          "all\" is everything the bench started (server, pgbench, Barman) from its cgroup; the stream's part is "
          "read from /proc. Enabling it (ansible-playbook playbooks/pitr.yml, including the first base backup of "
          f"{mb(backup_bytes)} MB): {enable_wall:.1f} s wall, {sec(enable_cpu)} CPU s.")


def print_recovery(facts, off, cli, rat):
    hour_rate = facts["wal"] / 2**20 / 60
    writer_rate = off["wal"] / 2**20 / off["wall"] * 60
    per_tx = off["wal"] / off["xacts"]
    print(f"\n### PITR 2: recover {mb(facts['db_bytes'])} MB (pgbench scale {facts['scale']}) + "
          f"{mb(facts['wal'])} MB of WAL to T = {facts['moment']}, same base backup ({facts['backup_id']}, "
          f"{mb(facts['backup_bytes'])} MB), same T\n")
    print(f"WAL after the base backup: {mb(facts['wal'])} MB, an hour at {hour_rate:.1f} MB/min (about "
          f"{hour_rate * 2**20 / 60 / per_tx:.0f} TPC-B transactions/s of {per_tx / 1024:.1f} kB of WAL each), "
          f"written in {facts['wal_seconds']:.0f} s instead of an hour (the writer phases with the stream on and "
          f"stopped, then {facts['gen']:.0f} s flat out); part 1's writer flat out wrote "
          f"{writer_rate:.0f} MB/min, so an hour of it would be {writer_rate * 60 / 1024:.1f} GB. Making the "
          f"database took {facts['fill']:.0f} s; archiving the last segment before the recoveries "
          f"{facts['archive']:.1f} s.\n")
    steps = [("plan (Barman's base backups)", "plan", False), ("WAL switched, archived", "wal_switch", False),
             ("barman recover (base backup + WAL copied)", "barman_recover", True), ("chown", "chown", True),
             ("start (pg_ctl -w: consistent)", "start", True),
             ("replay to promotion, recovery point read", "promoted", True)]
    print("| step | Barman's CLI by hand, s | rat.backup.pitr_recover, s |")
    print("|---|---:|---:|")
    for label, key, both in steps:
        print(f"| {label} | {sec(cli['laps'][key]) if both else '-'} | {sec(rat['laps'].get(key))} |")
    rest = rat["wall"] - sum(rat["laps"].values())
    print(f"| module start-up (Python, Ansible's module runtime) | - | {rest:.1f} |")
    print(f"| **total wall** | **{cli['wall']:.1f}** | **{rat['wall']:.1f}** |")
    print(f"| CPU seconds (the tool, Barman, the recovering server) | {sec(cli['cpu'])} | {sec(rat['cpu'])} |")
    cpu_ratio = f", CPU {rat['cpu'] / cli['cpu']:.2f}" if cli["cpu"] and rat["cpu"] else ""
    replay = cli["laps"]["start"] + cli["laps"]["promoted"]
    print(f"\nOverhead, collection / CLI: wall {rat['wall'] / cli['wall']:.2f}{cpu_ratio}. Both recovered the same "
          f"rows (pgbench_history count and newest: {cli['rows']}; the live server has {facts['live_rows']}); "
          f"recovery point reached: CLI {cli['reached']}, collection {rat['reached']} (T {facts['moment']}). "
          f"The CLI's copy ran at {(facts['backup_bytes'] + facts['wal']) / 2**20 / cli['laps']['barman_recover']:.0f} "
          f"MB/s (base backup + WAL), its replay at {facts['wal'] / 2**20 / replay:.0f} MB of WAL/s."
          + (f" Best of {ROUNDS} rounds each." if ROUNDS > 1 else ""))


if __name__ == "__main__":
    main()
