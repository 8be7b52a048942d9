# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Several PUTs in flight per connection (_s3/pipeline.py) for a restore (disk -> S3): against moto
and `rclone serve s3` directly, and through test_s3_pipeline's proxy playing one fault on a chosen
request, with the restore in a worker process as bucket_mirror runs it. Only into a bucket without
versioning: a PUT the pipeline sends again would keep one version more in a versioned one."""

from __future__ import annotations

import hashlib
import os

import pytest

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from ansible_collections.rat.backup.plugins.module_utils import mirror as mr  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils import s3  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._mirror import upload as mirror_upload  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._mirror.model import Entry  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._s3 import pipeline  # noqa: E402
from ansible_collections.rat.backup.plugins.module_utils._s3 import transport as fast_transport  # noqa: E402
from ansible_collections.rat.backup.tests.unit.plugins.module_utils.s3_servers import (  # noqa: E402
    KEY, SECRET, Rclone, rclone_binary)
from ansible_collections.rat.backup.tests.unit.plugins.module_utils.test_mirror import (  # noqa: E402
    options as mirror_options)
# The fixtures: moto in this process, its "pipelined" bucket of KEYS, the fault-playing proxy.
from ansible_collections.rat.backup.tests.unit.plugins.module_utils.test_s3_pipeline import (  # noqa: E402,F401 pylint: disable=unused-import
    KEYS, bodies, lake, mirror, moto, path_of, proxy, quick)

RESTORED = "restored"


@pytest.fixture
def backup(lake, tmp_path):
    """The lake mirrored to disk with its manifest, and a boto3 client on moto that empties
    RESTORED (all its versions) afterwards: (moto URL, directory, manifest, objects, client)."""
    url, bucket, objects = lake
    mirror(url, bucket, tmp_path / "minio")
    client = s3.make_client(s3.Endpoint(url, KEY, SECRET), retry_max_attempts=1)
    yield url, tmp_path / "minio", str(tmp_path / "minio") + ".json", objects, client
    if RESTORED in s3.bucket_names(client, s3.Endpoint(url)):
        for page in client.get_paginator("list_object_versions").paginate(Bucket=RESTORED):
            for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                client.delete_object(Bucket=RESTORED, Key=item["Key"], VersionId=item["VersionId"])
        client.delete_bucket(Bucket=RESTORED)


def restore(url, client, src, manifest, **overrides):
    """bucket_mirror disk -> S3 as the module runs it, PUTs to ``url``: one worker process."""
    settings = mirror_options(src=str(src), dest="s3://" + RESTORED, manifest=manifest, processes=1,
                              create_buckets=True, src_endpoint=url, dest_endpoint=url,
                              dest_access_key=KEY, dest_secret_key=SECRET)
    settings.update(overrides)
    transport = fast_transport.Transport(s3.Endpoint(url, KEY, SECRET), attempts=3)
    return mr.Mirror(settings, None, client, dest_http=transport).run()


def stored(client):
    return {key: client.get_object(Bucket=RESTORED, Key=key)["Body"].read()
            for key in [item["Key"] for item in client.list_objects_v2(Bucket=RESTORED).get("Contents", [])]}


def puts(server, key):
    return server.requests_of(path_of(RESTORED, key))


# --- against real servers ---------------------------------------------------------------------------


def pipelined_puts(url, bucket, objects):
    """Expect a PUT of every object, then make each: (ETags answered, most requests in flight at once,
    the Pipeline)."""
    transport = fast_transport.Transport(s3.Endpoint(url, KEY, SECRET), attempts=1)
    checked = {key: hashlib.sha256(body).hexdigest() for key, body in objects.items()}
    transport.expect(puts=[(bucket, key, body, checked[key], {"ContentType": "application/x-parquet"})
                           for key, body in objects.items()])
    pipe = transport.local.pipeline
    most = pipe.sent
    etags = {}
    for key, body in objects.items():
        most = max(most, pipe.sent)
        etags[key] = transport.put_object(bucket, key, body, checked[key], {"ContentType": "application/x-parquet"})
    return etags, most, pipe


def md5_etags(objects):
    return {key: '"%s"' % hashlib.md5(body).hexdigest() for key, body in objects.items()}


def test_pipeline_when_rclone_takes_several_puts_in_flight_writes_each_whole(monkeypatch):
    if rclone_binary() is None:
        pytest.skip("rclone with serve s3 is not installed (lab/deps.sh all)")
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    server = Rclone()
    try:
        os.makedirs(os.path.join(server.dir, "lake"))
        objects = bodies()
        etags, most, pipe = pipelined_puts(server.url, "lake", objects)
        written = {}
        for key in objects:
            with open(os.path.join(server.dir, "lake", key), "rb") as handle:
                written[key] = handle.read()
    finally:
        server.stop()
    assert written == objects and etags == md5_etags(objects)
    # DEPTH PUTs in flight on one connection, and every answer taken from it.
    assert most == pipeline.DEPTH and pipe.enabled


def test_pipeline_when_moto_closes_after_each_answer_puts_the_rest_alone(backup):
    url, dummy_src, dummy_manifest, objects, client = backup
    client.create_bucket(Bucket=RESTORED)
    etags, most, pipe = pipelined_puts(url, RESTORED, objects)
    # moto answers "Connection: close": its first answer is taken, pipelining stops.
    assert stored(client) == objects and etags == md5_etags(objects)
    assert most == pipeline.DEPTH and not pipe.enabled


# --- the restore, through the proxy -------------------------------------------------------------------


def test_restore_when_bucket_has_no_versioning_keeps_several_puts_in_flight(backup, proxy):
    url, src, manifest, objects, client = backup
    server = proxy(url)
    result = restore(server.url, client, src, manifest)
    assert result["copied"] == len(KEYS) and stored(client) == objects
    sent = [entry for key in KEYS for entry in puts(server, key)]
    # Server-side: when the first PUT was answered, the rest of the window had already come, on
    # one connection, and no PUT was sent twice.
    assert len(sent) == len(KEYS) and max(entry[2] for entry in sent) == pipeline.DEPTH - 1
    assert len({entry[0] for entry in sent}) == 1


def test_restore_when_bucket_has_versioning_puts_one_at_a_time_and_keeps_one_version_each(backup, proxy):
    url, src, manifest, objects, client = backup
    client.create_bucket(Bucket=RESTORED)
    client.put_bucket_versioning(Bucket=RESTORED, VersioningConfiguration={"Status": "Enabled"})
    server = proxy(url)
    result = restore(server.url, client, src, manifest)
    assert result["copied"] == len(KEYS) and stored(client) == objects
    assert all(entry[2] == 0 for key in KEYS for entry in puts(server, key))
    versions = client.list_object_versions(Bucket=RESTORED)["Versions"]
    assert sorted(v["Key"] for v in versions) == sorted(KEYS)


@pytest.mark.parametrize("fault, plays, pipelining_goes_on", [
    # The connection reset before the answer: sent again alone; pipelining stops.
    ("reset", ["reset", None], False),
    # An error answer: retried alone as an error answer is; the pipeline goes on.
    ("500", ["500", None], True),
    # Answered with Connection: close while PUTs were in flight behind it: those go alone.
    ("close", ["close"], False),
    # Answered, then the connection ended with PUTs in flight behind it, without a word.
    ("fin", ["fin"], False),
    # Written, but the answer's ETag is not the body's MD5: sent again alone; pipelining stops.
    ("etag", ["etag", None], False),
])
def test_restore_when_one_answer_of_a_pipeline_fails_puts_again_that_object_only(
        backup, proxy, quick, fault, plays, pipelining_goes_on):
    url, src, manifest, objects, client = backup
    faulty = KEYS[3]
    server = proxy(url, {path_of(RESTORED, faulty): [fault]})
    result = restore(server.url, client, src, manifest)
    assert result["copied"] == len(KEYS) and stored(client) == objects
    assert [entry[3] for entry in puts(server, faulty)] == plays
    # Sent once, except the faulty one and, where the client drops the connection on an answer it
    # does not take (the ETag), the PUTs in flight behind it that the server went on with:
    # written again (the same bytes, into a bucket without versioning).
    behind = KEYS[4:pipeline.DEPTH]
    assert all(len(puts(server, key)) == 1 for key in KEYS if key != faulty and key not in behind)
    assert all(len(puts(server, key)) == 1 if fault != "etag" else 1 <= len(puts(server, key)) <= 2 for key in behind)
    later = [entry for key in KEYS[8:] for entry in puts(server, key)]
    assert (max(entry[2] for entry in later) > 0) == pipelining_goes_on


def test_restore_when_server_reads_one_request_at_a_time_stops_pipelining_after_the_stall(backup, proxy, quick):
    url, src, manifest, objects, client = backup
    server = proxy(url, one_at_a_time=True)
    result = restore(server.url, client, src, manifest)
    assert result["copied"] == len(KEYS) and stored(client) == objects
    # The pipeline's first answer came; its second never did (the server dropped it): from then on
    # one PUT at a time, the second sent again alone.
    assert len(puts(server, KEYS[0])) == 1 and len(puts(server, KEYS[1])) == 1
    assert all(entry[2] == 0 for key in KEYS[2:] for entry in puts(server, key))


def test_restore_when_one_put_is_refused_fails_naming_it_and_sends_it_once(backup, proxy, quick):
    url, src, manifest, objects, client = backup
    faulty = KEYS[3]
    server = proxy(url, {path_of(RESTORED, faulty): ["403"] * 5})
    with pytest.raises(RatBackupError) as failed:
        restore(server.url, client, src, manifest)
    assert faulty in failed.value.msg and "AccessDenied" in failed.value.msg
    assert [entry[3] for entry in puts(server, faulty)] == ["403"]
    assert faulty not in stored(client)


def test_restore_when_file_changes_before_its_put_is_sent_ahead_sends_nothing_of_it(backup, proxy, monkeypatch):
    url, src, manifest, objects, client = backup
    faulty = KEYS[3]
    real = mirror_upload.Upload.ahead

    def changed_first(self, entries):
        # After the plan checked every file, before the worker reads them for their PUTs.
        (src / faulty).write_bytes(b"X" * len(objects[faulty]))
        return real(self, entries)

    monkeypatch.setattr(mirror_upload.Upload, "ahead", changed_first)
    server = proxy(url)
    with pytest.raises(RatBackupError, match=r"s3://%s/%s .* changed since it was verified" % (RESTORED, faulty)):
        restore(server.url, client, src, manifest)
    assert puts(server, faulty) == [] and faulty not in stored(client)
    # The others in flight beside it are whole.
    assert all(body == objects[key] for key, body in stored(client).items())


def test_restore_when_one_objects_metadata_cannot_be_sent_fails_naming_it_and_sends_nothing_of_it(
        backup, proxy, monkeypatch):
    url, src, manifest, objects, client = backup
    faulty = KEYS[3]
    real = Entry.extra_args

    def extra_args(self):
        # A value with a line break (a hand-edited manifest): it would end the header early.
        return dict(real(self), Metadata={"note": "a\nb"}) if self.key == faulty else real(self)

    monkeypatch.setattr(Entry, "extra_args", extra_args)
    server = proxy(url)
    with pytest.raises(RatBackupError, match=r"key '%s' failed: header 'x-amz-meta-note' has a character HTTP does not "
                                             r"allow in its name or value" % faulty):
        restore(server.url, client, src, manifest)
    assert puts(server, faulty) == [] and faulty not in stored(client)
    assert all(body == objects[key] for key, body in stored(client).items())
