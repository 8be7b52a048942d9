#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""bucket_mirror against `aws s3 sync` and `rclone sync`, same moto server, same data, same run.

Scenarios: full download of 2,000 small objects + 3 x 64 MB; no-change rerun into the same
directory; upload of the same set into a fresh bucket; peak RSS downloading one 1 GB object.
Every tool runs as its own process; time is wall clock, RSS is the process tree's peak from
wait4(). Prints a Markdown table. Needs awscli (venv) and rclone (Debian package) on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
PORT = int(os.environ.get("RAT_BENCH_MIRROR_PORT", "19050"))
ENDPOINT = "http://127.0.0.1:{0}".format(PORT)
KEY, SECRET = "bench", "bench-secret"
SMALL, LARGE, LARGE_SIZE, HUGE_SIZE = 2000, 3, 64 << 20, 1 << 30
MODULE = os.path.join(REPO, "plugins", "modules", "bucket_mirror.py")


def env_for(tool):
    env = dict(os.environ)
    # Loopback moto speaks plain http; a CA bundle variable only confuses the clients.
    env.pop("AWS_CA_BUNDLE", None)
    env.update({"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
                "PYTHONPATH": os.path.join(REPO, "collections")})
    if tool == "rclone":
        env.update({"RCLONE_CONFIG_BENCH_TYPE": "s3", "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
                    "RCLONE_CONFIG_BENCH_ENDPOINT": ENDPOINT, "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": KEY,
                    "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": SECRET, "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
                    "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true"})
    return env


def run_isolated(argv, env):
    """Run ``argv`` under a fresh helper interpreter so RUSAGE_CHILDREN is this command's alone."""
    helper = ("import json,subprocess,sys,time,resource\n"
              "t=time.monotonic();p=subprocess.run(sys.argv[1:],capture_output=True)\n"
              "s=time.monotonic()-t\n"
              "print(json.dumps({'rc':p.returncode,'s':s,"
              "'rss':resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024.0,"
              "'out':p.stdout[-4000:].decode('utf-8','replace'),'err':p.stderr[-4000:].decode('utf-8','replace')}))\n")
    proc = subprocess.run([PYTHON, "-c", helper] + argv, env=env, capture_output=True, check=True)
    result = json.loads(proc.stdout)
    if result["rc"] != 0:
        raise SystemExit("command failed ({0}): {1}\n{2}\n{3}".format(result["rc"], argv, result["out"], result["err"]))
    return result["s"], result["rss"], result["out"]


def ours(work, src, dest, extra=None):
    args = {"src": src, "dest": dest, "concurrency": 8}
    for side in ("src_", "dest_"):
        args.update({side + "endpoint": ENDPOINT, side + "access_key": KEY, side + "secret_key": SECRET})
    args.update(extra or {})
    path = os.path.join(work, "args-{0}.json".format(time.monotonic_ns()))
    with open(path, "w") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    return [PYTHON, MODULE, path]


def aws(src, dest):
    return [shutil.which("aws") or os.path.join(os.path.dirname(PYTHON), "aws"), "s3", "sync", "--only-show-errors",
            "--endpoint-url", ENDPOINT, src, dest]


def rclone(src, dest, fast=False):
    argv = ["rclone", "sync", src, dest]
    return argv + (["--checksum", "--fast-list"] if fast else [])


def wait_port(port, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit("moto_server did not listen on {0}".format(port))


def seed(client, work):
    """The data set, uploaded once with boto3, and the same files on disk for the upload scenario."""
    local = os.path.join(work, "source")
    client.create_bucket(Bucket="bench")
    client.create_bucket(Bucket="bench-huge")
    os.makedirs(os.path.join(local, "small"), exist_ok=True)
    from concurrent.futures import ThreadPoolExecutor

    def small(i):
        body = os.urandom(1024 + (i * 37) % 8192)
        key = "small/{0:05d}.json".format(i)
        with open(os.path.join(local, key), "wb") as handle:
            handle.write(body)
        client.put_object(Bucket="bench", Key=key, Body=body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(small, range(SMALL)))
    for i in range(LARGE):
        path = os.path.join(local, "large-{0}.bin".format(i))
        with open(path, "wb") as handle:
            handle.write(os.urandom(LARGE_SIZE))
        client.upload_file(path, "bench", "large-{0}.bin".format(i))
    huge = os.path.join(work, "huge.bin")
    with open(huge, "wb") as handle:
        for dummy in range(HUGE_SIZE >> 24):
            handle.write(os.urandom(1 << 24))
    client.upload_file(huge, "bench-huge", "huge.bin")
    os.unlink(huge)


TOOLS = [("bucket_mirror", "ours", False), ("aws s3 sync", "aws", False), ("rclone sync", "rclone", False),
         ("rclone sync --checksum --fast-list", "rclone", True)]
# Other work on a shared machine makes single runs noisy: each tool's best of ROUNDS is reported.
ROUNDS = int(os.environ.get("RAT_BENCH_MIRROR_ROUNDS", "1"))


def command(work, kind, fast, src, dest, manifest=None):
    """argv of one tool copying ``src`` to ``dest`` (an s3 location is given as bucket name "@b")."""
    if kind == "ours":
        src, dest = (("s3://" + p[1:]) if p.startswith("@") else p for p in (src, dest))
        return ours(work, src, dest, {"manifest": manifest} if manifest else None)
    if kind == "aws":
        src, dest = (("s3://" + p[1:]) if p.startswith("@") else p for p in (src, dest))
        return aws(src, dest)
    src, dest = (("bench:" + p[1:]) if p.startswith("@") else p for p in (src, dest))
    return rclone(src, dest, fast)


def measure_tool(client, work, kind, fast, tag):
    """Seconds for full download, no-change rerun and upload, and peak RSS (MB) on the 1 GB object."""
    env = env_for(kind)
    local = os.path.join(work, "source")
    target = os.path.join(work, "dl-" + tag)
    manifest = target + ".json" if kind == "ours" else None
    full = run_isolated(command(work, kind, fast, "@bench", target, manifest), env)
    rerun = run_isolated(command(work, kind, fast, "@bench", target, manifest), env)
    check_equal(local, target)
    bucket = "up-" + tag
    client.create_bucket(Bucket=bucket)
    upload = run_isolated(command(work, kind, fast, local, "@" + bucket), env)
    huge_target = os.path.join(work, "huge-" + tag)
    huge = run_isolated(command(work, kind, fast, "@bench-huge", huge_target), env)
    shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(huge_target, ignore_errors=True)
    return {"full": full[0], "rerun": rerun[0], "upload": upload[0], "rss": huge[1]}


def main():
    work = tempfile.mkdtemp(prefix="bench-mirror-")
    server = subprocess.Popen([os.path.join(os.path.dirname(PYTHON), "moto_server"), "-H", "127.0.0.1", "-p", str(PORT)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        wait_port(PORT)
        import boto3
        client = boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                              region_name="us-east-1")
        seed(client, work)
        results = {}
        for round_number in range(ROUNDS):
            for index, (name, kind, fast) in enumerate(TOOLS):
                measured = measure_tool(client, work, kind, fast, "{0}-{1}".format(round_number, index))
                best = results.setdefault(name, measured)
                for metric, value in measured.items():
                    best[metric] = min(best[metric], value)
                print("measured {0}: {1}".format(name, measured), file=sys.stderr)
        rows = table(results)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(rows))


def check_equal(local, target):
    """A tool that skipped work must not win: every downloaded byte is compared to the source."""
    for dirpath, dummy, files in os.walk(local):
        for name in files:
            path = os.path.join(dirpath, name)
            other = os.path.join(target, os.path.relpath(path, local))
            with open(path, "rb") as a, open(other, "rb") as b:
                if a.read() != b.read():
                    raise SystemExit("{0} differs from the source".format(other))


def table(results):
    peers = [n for n in results if n != "bucket_mirror"]
    ours_result = results["bucket_mirror"]
    lines = ["## bucket_mirror vs aws s3 sync vs rclone ({0} x ~5 KB + {1} x 64 MB; 1 GB object for RSS)".format(
        SMALL, LARGE), "",
        "| scenario | " + " | ".join(results) + " | ours / best peer | target |",
        "|---|" + "---|" * (len(results) + 2)]
    targets = {"full": ("<= 0.70", 0.7), "rerun": ("<= rclone --checksum --fast-list", None),
               "upload": ("-", None), "rss": ("<= 150 MB", None)}
    labels = {"full": "full download (s)", "rerun": "no-change rerun (s)", "upload": "upload (s)",
              "rss": "peak RSS, 1 GB object (MB)"}
    for metric in ("full", "rerun", "upload", "rss"):
        best = min(results[p][metric] for p in peers)
        cells = ["{0:.2f}".format(results[n][metric]) if metric != "rss" else "{0:.0f}".format(results[n][metric])
                 for n in results]
        ratio = ours_result[metric] / best if best else 0.0
        if metric == "rerun":
            met = ours_result[metric] <= results["rclone sync --checksum --fast-list"][metric]
        elif metric == "rss":
            met = ours_result[metric] <= 150
        elif metric == "full":
            met = ratio <= 0.7
        else:
            met = None
        verdict = "" if met is None else (" (met)" if met else " (missed)")
        lines.append("| {0} | {1} | {2:.2f} | {3}{4} |".format(
            labels[metric], " | ".join(cells), ratio, targets[metric][0], verdict))
    return lines


if __name__ == "__main__":
    main()
