"""Benchmark of the pg_dump and pg_restore modules against PostgreSQL's own tools, same lab, same run.

* dump of a ~500 MB database: the pg_dump module (snapshot, row counts, sha256, fsync) vs raw
  ``pg_dump -Fc --file`` (target: module / raw <= 1.05);
* restore of that dump: module single_transaction vs module jobs=2, with raw ``pg_restore`` as reference;
* container mode: a ~1 GB uncompressed dump streamed out of a container, with the module's peak RSS.

Runs the modules as Ansible runs them (python module.py args.json), so the time includes the
module's start-up. The bench database (bench_pg, ~500 MB) is generated once and kept; the
restore targets and the container are removed at the end. Sizes: BENCH_PG_MB (500),
BENCH_PG_CONTAINER_MB (1024; 0 skips the container part). Prints a Markdown table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.environ["RAT_LAB_REPO"]
PYTHON = os.environ.get("RAT_LAB_PYTHON", sys.executable)
BIN = os.environ["RAT_LAB_PG_BIN"]
HOST = os.environ["RAT_LAB_PG_HOST"]
PORT = int(os.environ["RAT_LAB_PG_PORT"])
ADMIN = os.environ["RAT_LAB_PG_ADMIN_USER"]
ADMIN_PW = os.environ["RAT_LAB_PG_ADMIN_PASSWORD"]
DOCKER = ["docker", "-H", os.environ["RAT_LAB_DOCKER_HOST"]]
IMAGE = os.environ["RAT_LAB_PG_IMAGE"]
DB = "bench_pg"
DB_MB = int(os.environ.get("BENCH_PG_MB", "500"))
CONTAINER_MB = int(os.environ.get("BENCH_PG_CONTAINER_MB", "1024"))
CONTAINER = "bench_pg_container"
CONTAINER_PORT = 25434
MODULES = os.path.join(REPO, "plugins", "modules")
ROUNDS = 2
# Bytes of COPY text per generated row (id, status, timestamps, 3 x md5, small jsonb).
ROW_BYTES = 190


def env(password=ADMIN_PW):
    return dict(os.environ, PGPASSWORD=password)


def psql(sql, database="postgres", port=PORT, password=ADMIN_PW):
    argv = [f"{BIN}/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p", str(port), "-U", ADMIN,
            "-d", database, "-w"]
    proc = subprocess.run(argv, input=sql, env=env(password), check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"psql failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def timed(argv):
    """Run a peer tool; returns its wall-clock seconds."""
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, env=env(), check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {proc.stderr.decode()[-2000:]}")
    return time.monotonic() - started


def run_module(name, args, tmp):
    """The module as Ansible runs it; returns (seconds, peak RSS MiB, result)."""
    path = os.path.join(tmp, f"{name}-args.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    started = time.monotonic()
    proc = subprocess.Popen([PYTHON, os.path.join(MODULES, f"{name}.py"), path],  # pylint: disable=consider-using-with
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=os.path.join(REPO, "collections")))
    out = proc.stdout.read()
    err = proc.stderr.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    result = json.loads(out.decode()[out.decode().index("{"):])
    if os.waitstatus_to_exitcode(status) != 0 or result.get("failed"):
        raise SystemExit(f"module {name} failed: {result.get('msg')} {err.decode()[-1000:]}")
    return seconds, usage.ru_maxrss / 1024, result


def ensure_bench_db():
    size = psql(f"SELECT coalesce(sum(pg_database_size(datname)), 0) FROM pg_database WHERE datname = '{DB}'")
    if int(size) >= DB_MB * 1024 * 1024 * 0.9:
        return int(size)
    print(f"generating {DB} (~{DB_MB} MB), once", file=sys.stderr)
    psql(f"DROP DATABASE IF EXISTS {DB}")
    psql(f"CREATE DATABASE {DB}")
    rows = DB_MB * 1024 * 1024 // ROW_BYTES
    psql(f"""
        CREATE TABLE runs (id bigint PRIMARY KEY, status text, started_at timestamptz, finished_at timestamptz,
                           a text, b text, c text, meta jsonb);
        INSERT INTO runs SELECT g, (ARRAY['success', 'failed', 'running'])[1 + g % 3],
            timestamptz '2026-01-01' + g * interval '1 second', timestamptz '2026-01-01' + g * interval '2 second',
            md5(g::text), md5((g * 7)::text), md5((g * 13)::text), jsonb_build_object('n', g, 'k', g % 97)
        FROM generate_series(1, {rows}) g;
        CREATE INDEX runs_status ON runs (status);
        CREATE TABLE pipelines AS SELECT g AS id, 'pipeline ' || g AS name FROM generate_series(1, 10000) g;
        VACUUM ANALYZE;
    """, database=DB)
    return int(psql(f"SELECT pg_database_size('{DB}')"))


def dump_bench(tmp, rows):
    raw_path = os.path.join(tmp, "raw.dump")
    mod_path = os.path.join(tmp, "module.dump")
    raw_times, mod_times = [], []
    result = None
    for _round in range(ROUNDS):
        seconds = timed([f"{BIN}/pg_dump", "-Fc", "-h", HOST, "-p", str(PORT), "-U", ADMIN, "-w", "-d", DB,
                         "-f", raw_path])
        raw_times.append(seconds)
        seconds, rss, result = run_module("pg_dump", {
            "host": HOST, "port": PORT, "user": ADMIN, "password": ADMIN_PW, "database": DB, "dest": mod_path}, tmp)
        mod_times.append(seconds)
    raw, mod = min(raw_times), min(mod_times)
    size = os.path.getsize(mod_path)
    rows.append(("dump ~%d MB database" % DB_MB, "raw `pg_dump -Fc --file`", raw, size, "1.00", "-"))
    rows.append(("dump ~%d MB database" % DB_MB, "rat.backup.pg_dump (custom)", mod, size, f"{mod / raw:.3f}",
                 f"{rss:.0f}"))
    return mod_path, result, mod / raw


def restore_bench(tmp, dump_path, rows):
    targets = {"bench_pg_restore_raw": None, "bench_pg_restore_single": None, "bench_pg_restore_jobs2": None}
    for name in targets:
        psql(f"DROP DATABASE IF EXISTS {name}")
    try:
        psql("CREATE DATABASE bench_pg_restore_raw")
        seconds = timed([f"{BIN}/pg_restore", "-h", HOST, "-p", str(PORT), "-U", ADMIN, "-w",
                         "-d", "bench_pg_restore_raw", "--no-owner", "--single-transaction", dump_path])
        rows.append(("restore that dump", "raw `pg_restore --single-transaction`", seconds, None, "1.00", "-"))
        base = seconds
        for name, extra, label in (
                ("bench_pg_restore_single", {}, "rat.backup.pg_restore single_transaction"),
                ("bench_pg_restore_jobs2", {"single_transaction": False, "jobs": 2}, "rat.backup.pg_restore jobs=2")):
            args = {"host": HOST, "port": PORT, "user": ADMIN, "password": ADMIN_PW, "database": name,
                    "create_database": True, "src": dump_path}
            args.update(extra)
            seconds, rss, _result = run_module("pg_restore", args, tmp)
            rows.append(("restore that dump", label + " (incl. verification)", seconds, None, f"{seconds / base:.3f}",
                         f"{rss:.0f}"))
    finally:
        for name in targets:
            psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def container_bench(tmp, rows):
    password = os.urandom(12).hex()
    subprocess.run(DOCKER + ["rm", "-f", CONTAINER], capture_output=True, check=False)
    try:
        subprocess.run(DOCKER + ["run", "-d", "--name", CONTAINER, "--network", "host", "-e", "POSTGRES_PASSWORD",
                                 "-e", f"PGPORT={CONTAINER_PORT}", IMAGE], env=dict(os.environ, POSTGRES_PASSWORD=password),
                       check=True, capture_output=True)
        for _attempt in range(120):
            if subprocess.run(DOCKER + ["exec", CONTAINER, "pg_isready", "-q", "-h", "127.0.0.1", "-p",
                                        str(CONTAINER_PORT)], check=False).returncode == 0:
                break
            time.sleep(0.5)
        row_count = CONTAINER_MB * 1024 * 1024 // 104
        psql(f"CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 3) AS payload FROM generate_series(1, {row_count}) g",
             port=CONTAINER_PORT, password=password)
        path = os.path.join(tmp, "container.dump")
        seconds, rss, result = run_module("pg_dump", {
            "host": "127.0.0.1", "port": CONTAINER_PORT, "user": ADMIN, "password": password, "database": "postgres",
            "container": CONTAINER, "docker_host": os.environ["RAT_LAB_DOCKER_HOST"], "dest": path, "compress": 0}, tmp)
        rows.append((f"container mode, {CONTAINER_MB} MB table, compress 0", "rat.backup.pg_dump (Docker exec stream)",
                     seconds, result["size"], "-", f"{rss:.0f}"))
        os.unlink(path)
        return rss
    finally:
        subprocess.run(DOCKER + ["rm", "-f", "-v", CONTAINER], capture_output=True, check=False)


def main():
    rows = []
    db_size = ensure_bench_db()
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        dump_path, result, ratio = dump_bench(tmp, rows)
        restore_bench(tmp, dump_path, rows)
        os.unlink(dump_path)
        rss = container_bench(tmp, rows) if CONTAINER_MB else None
    print(f"\n### PostgreSQL dump and restore (database {db_size / 2**20:.0f} MB, "
          f"{sum(result['row_counts'].values())} rows; best of {ROUNDS} for the dumps)\n")
    print("| operation | tool | seconds | archive MB | ratio to raw | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|")
    for op, tool, seconds, size, ratio_text, peak in rows:
        size_text = f"{size / 2**20:.0f}" if size else "-"
        print(f"| {op} | {tool} | {seconds:.1f} | {size_text} | {ratio_text} | {peak} |")
    print(f"\ndump ratio module/raw: {ratio:.3f} (target <= 1.05)"
          + (f"; container-mode peak RSS {rss:.0f} MiB (target < 150)" if rss is not None else ""))


if __name__ == "__main__":
    main()
