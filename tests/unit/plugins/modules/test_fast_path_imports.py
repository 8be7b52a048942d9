# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_capture's S3 check, bucket_mirror's S3 -> disk run and backup_capture's mirror on an endpoint
given by URL never import boto3 (0.3-0.45 s of every module start): each runs in a fresh interpreter
against moto, which then names the modules it loaded. The work is real: buckets checked, versions listed
as of a consistency point and the objects written to disk."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time

import pytest

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from ansible_collections.rat.backup.plugins.module_utils import capture, s3  # noqa: E402
from ansible_collections.rat.backup.tests.unit.plugins.module_utils.s3_servers import moto_in_process  # noqa: E402

# Run in the child: the two modules' work, then what of boto3 (and botocore beyond its exceptions) loaded.
CHILD = r"""
import json, sys
from ansible_collections.rat.backup.tests.unit.plugins.modules.module_args import patch_module_args
from ansible_collections.rat.backup.plugins.module_utils import capture
from ansible_collections.rat.backup.plugins.modules import bucket_mirror
args = json.loads(sys.argv[1])
found = capture.check_source(args["start"])
with patch_module_args(args["mirror"]):
    try:
        bucket_mirror.main()
    except SystemExit:
        pass
captured = capture._mirror(args["capture"], args["mirror"]["consistency_point"], None, False).run()
print(json.dumps({"level": captured["consistency"]["level"]}))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "s3transfer")
               or (m.startswith("botocore.") and not m.startswith(("botocore.exceptions", "botocore.vendored"))))
print(json.dumps({"found": found, "heavy": heavy}))
"""


@pytest.fixture(scope="module")
def moto():
    yield from moto_in_process()


def point_now():
    now = time.time()
    stamp = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat()
    return {"time": stamp, "time_epoch": now, "earliest": stamp, "earliest_epoch": now, "obtained": "test",
            "host_offset": [0.0, 0.0]}


def test_start_check_and_mirror_when_endpoint_given_by_url_never_import_boto3(moto, tmp_path):
    keys = {"src_endpoint": moto, "src_access_key": "k", "src_secret_key": "s"}
    client = s3.make_client(s3.Endpoint(moto, "k", "s"), retry_max_attempts=1)
    client.create_bucket(Bucket="lake")
    client.put_bucket_versioning(Bucket="lake", VersioningConfiguration={"Status": "Enabled"})
    client.put_object(Bucket="lake", Key="a b+c", Body=b"old")
    client.put_object(Bucket="lake", Key="gone", Body=b"g")
    time.sleep(1.1)
    point = point_now()
    # After the point (moto stamps whole seconds): neither may reach the copy.
    time.sleep(1.5)
    client.put_object(Bucket="lake", Key="a b+c", Body=b"new")
    client.delete_object(Bucket="lake", Key="gone")
    args = {"start": dict(keys, buckets=["lake"], fail_on_best_effort=False),
            "mirror": dict(keys, src="s3://", dest=str(tmp_path / "m"), manifest=str(tmp_path / "m.json"),
                           consistency_point=point, max_clock_skew=2.0),
            "capture": dict(keys, dest=str(tmp_path / "c"), buckets=["lake"], use_versions=True, max_clock_skew=2.0,
                            fail_on_best_effort=True, concurrency=2, min_free_bytes=0)}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for name in ("HTTP_PROXY", "http_proxy", "AWS_CA_BUNDLE"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    mirrored, captured, child = (json.loads(line) for line in done.stdout.strip().splitlines()[-3:])
    assert child["heavy"] == []
    assert child["found"] == {"buckets": {"lake": {"versioned": True}}}
    assert not mirrored.get("failed"), mirrored
    assert mirrored["consistency"]["level"] == "snapshot"
    assert (tmp_path / "m" / "lake" / "a b+c").read_bytes() == b"old"
    assert (tmp_path / "m" / "lake" / "gone").read_bytes() == b"g"
    assert captured["level"] == "snapshot"
    assert (tmp_path / "c" / capture.MIRROR_DIR / "lake" / "a b+c").read_bytes() == b"old"
