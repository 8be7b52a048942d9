# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""offsite.py against the real S3 target code and an in-process moto S3."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from ansible_collections.rat.backup.plugins.module_utils.backup_root import layout
from ansible_collections.rat.backup.plugins.module_utils.backup_root import manifest as mf
from ansible_collections.rat.backup.plugins.module_utils import offsite
from ansible_collections.rat.backup.plugins.module_utils.backup_root import retention
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._offsite import crypt
from ansible_collections.rat.backup.plugins.module_utils._offsite import fetch as fetch_back
from ansible_collections.rat.backup.plugins.module_utils._offsite.plan import INDEX, Throttle
from ansible_collections.rat.backup.plugins.module_utils._offsite.run import Journal
from ansible_collections.rat.backup.plugins.module_utils._offsite.s3_target import S3Target

moto = pytest.importorskip("moto")

A, B, C = "20260101_000000", "20260102_000000", "20260103_000000"
BUCKET = "offsite"


@pytest.fixture(name="client")
def fixture_client(monkeypatch):
    for name in ("AWS_CA_BUNDLE", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with moto.mock_aws():
        endpoint = s3.Endpoint(None, "k", "s")
        client = s3.make_client(endpoint)
        client.create_bucket(Bucket=BUCKET)
        yield client


def make_backup(root, name, objects):
    path = os.path.join(str(root), name)
    items = []
    for key, data in sorted(objects.items()):
        rel = "minio/b/" + key
        os.makedirs(os.path.dirname(os.path.join(path, rel)), exist_ok=True)
        with open(os.path.join(path, rel), "wb") as handle:
            handle.write(data)
        items.append({"bucket": "b", "key": key, "path": rel, "size": len(data),
                      "sha256": hashlib.sha256(data).hexdigest()})
    mf.write(path, mf.build(name, "backup", "h", "t", "t", {}, None, {"format": 1, "objects": items}))
    return path


def new_run(root, client, box=None, label="s3", verify_mode="quick"):
    target = S3Target(client, s3.Endpoint(None, "k", "s"), BUCKET, "fleet", "h", Throttle(0))
    return offsite.Run(str(root), target, label, "h", box, 2, verify_mode)


def test_ship_when_second_backup_unchanged_then_server_side_copies_and_nothing_shipped_twice(tmp_path, client):
    make_backup(tmp_path, A, {"k1": b"1" * 5000, "k2": b"2" * 7000})
    make_backup(tmp_path, B, {"k1": b"1" * 5000, "k2": b"2" * 7000})
    result = offsite.ship(new_run(tmp_path, client))
    first, second = result["shipped"]
    assert (first["sent"], first["linked"], second["sent"], second["linked"]) == (2, 0, 0, 2)
    assert first["bytes_sent"] > 12000 and second["bytes_sent"] < 3000
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert "fleet/h/%s/minio/b/k1" % B in keys and "fleet/h/%s/manifest.json" % B in keys
    again = offsite.ship(new_run(tmp_path, client))
    assert again["to_ship"] == [] and again["already"] == [A, B]
    status = layout.read_status(str(tmp_path), B)["offsite"]["targets"]["s3"]
    assert status["ok"] and status["verified"] and status["linked"] == 2


def test_ship_when_check_mode_then_plan_only(tmp_path, client):
    make_backup(tmp_path, A, {"k1": b"1"})
    result = offsite.ship(new_run(tmp_path, client), check_mode=True)
    assert result["to_ship"] == [A] and result["shipped"] == []
    assert "Contents" not in client.list_objects_v2(Bucket=BUCKET)


def test_ship_when_interrupted_then_rerun_does_not_send_journaled_files_again(tmp_path, client):
    make_backup(tmp_path, A, {"k1": b"1" * 4000, "k2": b"2" * 4000})
    run = new_run(tmp_path, client)
    entry = run.target.send(A, "minio/b/k1", "minio/b/k1", crypt.Source(os.path.join(str(tmp_path), A, "minio/b/k1")),
                            {"size": 4000, "sha256": hashlib.sha256(b"1" * 4000).hexdigest()})
    Journal(os.path.join(run.work, A + ".plain.journal")).add(entry)
    shipped = offsite.ship(new_run(tmp_path, client))["shipped"][0]
    assert (shipped["resumed"], shipped["sent"]) == (1, 1)
    assert shipped["bytes_sent"] < 4000 + 3000
    assert not os.path.exists(os.path.join(run.work, A + ".plain.journal"))


def test_ship_when_one_old_backup_is_damaged_then_the_others_are_shipped_and_it_is_named(tmp_path, client):
    make_backup(tmp_path, A, {"k1": b"1" * 100})
    path = make_backup(tmp_path, B, {"k1": b"1" * 100, "k2": b"x" * 100})
    make_backup(tmp_path, C, {"k1": b"1" * 100, "k3": b"3" * 100})
    with open(os.path.join(path, "minio/b/k2"), "wb") as handle:
        handle.write(b"y" * 100)
    result = offsite.ship(new_run(tmp_path, client))
    assert [r["name"] for r in result["shipped"]] == [A, C]
    assert [d["name"] for d in result["damaged"]] == [B] and "minio/b/k2" in result["damaged"][0]["error"]
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert not [k for k in keys if "/%s/" % B in k] and "fleet/h/%s/manifest.json" % C in keys
    status = layout.read_status(str(tmp_path), B)["offsite"]["targets"]["s3"]
    assert status["ok"] is False and status["damaged"] is True
    assert offsite.verify(new_run(tmp_path, client))["bad"] == []


def test_ship_when_a_backup_was_found_damaged_before_then_not_uploaded_again_unless_named(tmp_path, client, monkeypatch):
    path = make_backup(tmp_path, A, {"k1": b"1" * 100, "k2": b"x" * 100})
    with open(os.path.join(path, "minio/b/k2"), "wb") as handle:
        handle.write(b"y" * 100)
    assert [d["name"] for d in offsite.ship(new_run(tmp_path, client))["damaged"]] == [A]
    puts = []
    real_send = S3Target.send
    monkeypatch.setattr(S3Target, "send", lambda self, *a, **k: puts.append(a) or real_send(self, *a, **k))
    again = offsite.ship(new_run(tmp_path, client))
    assert puts == [] and again["to_ship"] == [] and again["shipped"] == []
    assert [d["name"] for d in again["damaged"]] == [A] and "not shipped again" in again["damaged"][0]["error"]
    # Named, it is tried again (and still found damaged).
    named = offsite.ship(new_run(tmp_path, client), selection=[A])
    assert [d["name"] for d in named["damaged"]] == [A] and "minio/b/k2" in named["damaged"][0]["error"]


def test_retention_when_a_copy_is_named_ahead_of_the_clock_then_it_is_not_the_newest_and_not_removed(tmp_path, client):
    for name in (A, B, C):
        make_backup(tmp_path, name, {"k1": b"1" * 10})
    offsite.ship(new_run(tmp_path, client))
    # Seen from 2026-01-02 12:00, the copy named 2026-01-03 00:00 lies 12 h ahead: a wrong clock where it was made.
    now = layout.time_of(B) + (layout.time_of(C) - layout.time_of(B)) / 2
    run = new_run(tmp_path, client)
    removed = offsite.apply_retention(run, retention.check_policy({"keep_last": 1}), now=now)
    assert [r["name"] for r in removed] == [A]
    assert offsite.remote_backups(run)["complete"] == [B, C]
    result = offsite.ship(new_run(tmp_path, client), policy=retention.check_policy({"keep_last": 1}), now=now)
    assert result["removed"] == [] and [s["name"] for s in result["suspect"]] == [C]


def test_ship_when_endpoint_unreachable_then_clear_error_and_local_backup_untouched(tmp_path):
    path = make_backup(tmp_path, A, {"k1": b"1"})
    endpoint = s3.Endpoint("http://127.0.0.1:9", "k", "s")
    client = s3.make_client(endpoint, retry_max_attempts=1, connect_timeout=1)
    run = offsite.Run(str(tmp_path), S3Target(client, endpoint, BUCKET, "", "h", Throttle(0)), "s3", "h")
    with pytest.raises(RatBackupError) as err:
        offsite.ship(run)
    assert "unreachable" in err.value.msg and "http://127.0.0.1:9" in err.value.msg
    assert mf.verify(path, mf.read(path))["ok"]


def test_verify_and_fetch_when_object_tampered_then_named_and_fetch_refused(tmp_path, client):
    make_backup(tmp_path / "src", A, {"k1": b"1" * 100, "k2": b"2" * 100})
    offsite.ship(new_run(tmp_path / "src", client))
    client.put_object(Bucket=BUCKET, Key="fleet/h/%s/minio/b/k2" % A, Body=b"3" * 100)
    checked = offsite.verify(new_run(tmp_path / "src", client))
    assert len(checked["bad"]) == 1 and checked["bad"][0].startswith(A + "/minio/b/k2: off-site object was rewritten")
    with pytest.raises(RatBackupError) as err:
        fetch_back.fetch(new_run(tmp_path / "dst", client), A)
    assert "minio/b/k2" in err.value.msg and "refused" in err.value.msg
    assert os.listdir(str(tmp_path / "dst")) in ([], [".offsite"], [".offsite", ".status"])


def test_fetch_when_copy_is_good_then_backup_equal_and_verified_locally(tmp_path, client):
    make_backup(tmp_path / "src", A, {"k1": b"1" * 100, "dir/k2": os.urandom(20000)})
    offsite.ship(new_run(tmp_path / "src", client))
    result = fetch_back.fetch(new_run(tmp_path / "dst", client), "latest")
    fetched = str(tmp_path / "dst" / A)
    assert result["name"] == A and result["fetched"] == 2 and mf.verify(fetched, mf.read(fetched))["ok"]
    assert oct(os.stat(fetched).st_mode & 0o777) == "0o700"
    again = fetch_back.fetch(new_run(tmp_path / "dst", client), A)
    assert again["changed"] is False


def test_fetch_when_latest_copy_named_in_the_future_then_the_real_newest_is_fetched(tmp_path, client, monkeypatch):
    # Issue 27 item 10: a copy named by a wrong clock was shipped, then "latest" fetched it.
    future = "20991231_000000"
    make_backup(tmp_path / "src", A, {"k1": b"1"})
    make_backup(tmp_path / "src", future, {"k1": b"2"})
    with monkeypatch.context() as wrong_clock:
        wrong_clock.setattr(layout, "FUTURE_SKEW", layout.FUTURE_SKEW * 10 ** 6)
        offsite.ship(new_run(tmp_path / "src", client))
    assert fetch_back.fetch(new_run(tmp_path / "dst", client), "latest")["name"] == A


def test_fetch_when_name_unknown_then_error_lists_what_is_off_site(tmp_path, client):
    make_backup(tmp_path / "src", A, {"k1": b"1"})
    offsite.ship(new_run(tmp_path / "src", client))
    with pytest.raises(RatBackupError) as err:
        fetch_back.fetch(new_run(tmp_path / "dst", client), B)
    assert err.value.details["available"] == [A]


@pytest.mark.skipif(not shutil.which("age-keygen"), reason="age not installed")
def test_ship_and_fetch_when_encrypted_then_no_plaintext_off_site_and_round_trip_equal(tmp_path, client):
    key = str(tmp_path / "key.txt")
    subprocess.run(["age-keygen", "-o", key], check=True, capture_output=True)
    public = subprocess.run(["age-keygen", "-y", key], check=True, capture_output=True, text=True).stdout.strip()
    data = b"MARKER-ROW-" * 3000
    make_backup(tmp_path / "src", A, {"k1": data})
    offsite.ship(new_run(tmp_path / "src", client, crypt.Crypt(recipients=[public])))
    stored = {o["Key"]: client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
              for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert "fleet/h/%s/manifest.json.age" % A in stored and "fleet/h/%s/minio/b/k1.age" % A in stored
    assert not [k for k, body in stored.items() if b"MARKER-ROW" in body]
    index = json.loads(stored["fleet/h/%s/%s" % (A, INDEX)])
    assert index["encrypted"] and hashlib.sha256(data).hexdigest() not in json.dumps(index)
    fetch_back.fetch(new_run(tmp_path / "dst", client, crypt.Crypt(identity_file=key)), A)
    with open(str(tmp_path / "dst" / A / "minio/b/k1"), "rb") as handle:
        assert handle.read() == data


def test_ship_when_retention_keeps_last_one_then_older_not_shipped_and_recorded_as_pruned(tmp_path, client):
    make_backup(tmp_path, A, {"k1": b"1"})
    make_backup(tmp_path, B, {"k1": b"1"})
    policy = retention.check_policy({"keep_last": 1})
    result = offsite.ship(new_run(tmp_path, client), policy=policy)
    assert result["to_ship"] == [B] and [n["name"] for n in result["not_shipped"]] == [A]
    assert layout.read_status(str(tmp_path), A)["offsite"]["targets"]["s3"]["pruned_at"]
    assert offsite.ship(new_run(tmp_path, client), policy=policy)["to_ship"] == []


def test_ship_when_retention_applies_to_older_copies_then_they_are_removed_manifest_first(tmp_path, client):
    make_backup(tmp_path, A, {"k1": b"1"})
    offsite.ship(new_run(tmp_path, client))
    make_backup(tmp_path, B, {"k1": b"1"})
    result = offsite.ship(new_run(tmp_path, client), policy=retention.check_policy({"keep_last": 1}))
    assert [(r["name"], r["complete"]) for r in result["removed"]] == [(A, True)]
    assert (result["diff"]["before"], result["diff"]["after"]) == (A + "\n", B + "\n")
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert not [k for k in keys if "/%s/" % A in k] and "fleet/h/%s/manifest.json" % B in keys
    assert layout.read_status(str(tmp_path), A)["offsite"]["targets"]["s3"]["pruned_at"]
    # A copy the target's retention removed is not shipped again.
    assert offsite.ship(new_run(tmp_path, client))["to_ship"] == []


def test_ship_when_check_mode_with_retention_then_reports_what_would_be_removed_and_removes_nothing(tmp_path, client):
    make_backup(tmp_path, A, {"k1": b"1"})
    offsite.ship(new_run(tmp_path, client))
    make_backup(tmp_path, B, {"k1": b"1"})
    result = offsite.ship(new_run(tmp_path, client), check_mode=True, policy=retention.check_policy({"keep_last": 1}))
    assert result["to_ship"] == [B] and [r["name"] for r in result["removed"]] == [A]
    assert (result["diff"]["before"], result["diff"]["after"]) == (A + "\n", B + "\n")
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert "fleet/h/%s/manifest.json" % A in keys


def test_ship_when_bandwidth_limited_then_upload_waits_for_its_budget(tmp_path, client):
    make_backup(tmp_path, A, {"k1": b"1" * 50000})
    slept = []
    target = S3Target(client, s3.Endpoint(None, "k", "s"), BUCKET, "fleet", "h",
                      Throttle(10000, clock=lambda: 0.0, sleep=slept.append))
    offsite.ship(offsite.Run(str(tmp_path), target, "s3", "h"))
    # 50 kB of object plus index and manifest at 10 kB/s: at least 5 s of waiting in total.
    assert sum(slept) >= 5.0


def test_ship_when_large_file_changed_then_multipart_upload_aborted_and_no_object(tmp_path, client):
    path = make_backup(tmp_path, A, {"big": b"a" * (9 << 20)})
    with open(os.path.join(path, "minio/b/big"), "r+b") as handle:
        handle.seek(5 << 20)
        handle.write(b"b")
    result = offsite.ship(new_run(tmp_path, client))
    assert result["shipped"] == [] and "minio/b/big" in result["damaged"][0]["error"]
    assert "Contents" not in client.list_objects_v2(Bucket=BUCKET, Prefix="fleet/h/%s/minio" % A)
    assert not client.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def test_ship_when_large_file_then_parts_and_round_trip_equal(tmp_path, client):
    data = os.urandom(9 << 20)
    make_backup(tmp_path / "src", A, {"big": data})
    shipped = offsite.ship(new_run(tmp_path / "src", client))["shipped"][0]
    assert shipped["bytes_sent"] >= len(data)
    fetch_back.fetch(new_run(tmp_path / "dst", client), A)
    with open(str(tmp_path / "dst" / A / "minio/b/big"), "rb") as handle:
        assert handle.read() == data


def keys(client, name):
    return {o["Key"][len("fleet/h/%s/" % name):] for o in client.list_objects_v2(
        Bucket=BUCKET, Prefix="fleet/h/%s/" % name).get("Contents", [])}


def swap(client, source, dest, stored):
    body = client.get_object(Bucket=BUCKET, Key="fleet/h/%s/%s" % (source, stored))["Body"].read()
    client.put_object(Bucket=BUCKET, Key="fleet/h/%s/%s" % (dest, stored), Body=body)


def test_verify_and_fetch_when_manifest_swapped_from_another_copy_then_both_refuse(tmp_path, client):
    make_backup(tmp_path / "src", A, {"k1": b"1" * 100, "gone": b"g" * 100})
    make_backup(tmp_path / "src", B, {"k1": b"1" * 100, "k2": b"2" * 100})
    offsite.ship(new_run(tmp_path / "src", client))
    for stored in ("manifest.json", "minio/b/gone"):
        swap(client, A, B, stored)
    checked = offsite.verify(new_run(tmp_path / "src", client, verify_mode="full"))
    assert any(line.startswith(B + "/manifest.json: is not the manifest") for line in checked["bad"])
    with pytest.raises(RatBackupError) as err:
        fetch_back.fetch(new_run(tmp_path / "dst", client), B)
    assert "is not the manifest this copy was shipped with" in err.value.msg
    assert not os.path.exists(str(tmp_path / "dst" / B))
    # The index moved in as well: it names the other backup and is refused as such.
    swap(client, A, B, INDEX)
    with pytest.raises(RatBackupError) as err:
        fetch_back.fetch(new_run(tmp_path / "dst", client), B)
    assert "index of backup '%s', not of %s" % (A, B) in err.value.msg
    assert B + "/" in offsite.verify(new_run(tmp_path / "src", client))["bad"][0]


def test_fetch_when_format_1_copy_holds_another_backups_manifest_then_refused(tmp_path, client):
    make_backup(tmp_path / "src", A, {"k1": b"1" * 100})
    make_backup(tmp_path / "src", B, {"k1": b"1" * 100})
    offsite.ship(new_run(tmp_path / "src", client))
    index = json.loads(client.get_object(Bucket=BUCKET, Key="fleet/h/%s/%s" % (B, INDEX))["Body"].read())
    index.update(format=1, manifest=None)
    client.put_object(Bucket=BUCKET, Key="fleet/h/%s/%s" % (B, INDEX), Body=json.dumps(index).encode())
    swap(client, A, B, "manifest.json")
    with pytest.raises(RatBackupError) as err:
        fetch_back.fetch(new_run(tmp_path / "dst", client), B)
    assert "is that of backup '%s'" % A in err.value.msg


def test_ship_when_a_copy_was_damaged_off_site_then_nothing_is_copied_from_it_and_it_is_shipped_again(tmp_path, client):
    make_backup(tmp_path / "src", A, {"k1": b"1" * 100, "k2": b"2" * 100})
    offsite.ship(new_run(tmp_path / "src", client))
    client.put_object(Bucket=BUCKET, Key="fleet/h/%s/minio/b/k1" % A, Body=b"X" * 100)
    make_backup(tmp_path / "src", B, {"k1": b"1" * 100, "k2": b"2" * 100})
    shipped = offsite.ship(new_run(tmp_path / "src", client))["shipped"]
    assert [(s["name"], s["linked"], s["sent"]) for s in shipped] == [(B, 0, 2)]
    status = layout.read_status(str(tmp_path / "src"), A)["offsite"]["targets"]["s3"]
    assert status["verified"] is False and "minio/b/k1" in status["bad"][0]
    # A copy that failed verification is not complete: the next run ships it again, whole.
    again = offsite.ship(new_run(tmp_path / "src", client))
    assert again["to_ship"] == [A] and again["shipped"][0]["linked"] == 0
    assert offsite.verify(new_run(tmp_path / "src", client, verify_mode="full"))["bad"] == []
    fetch_back.fetch(new_run(tmp_path / "dst", client), A)
    with open(str(tmp_path / "dst" / A / "minio/b/k1"), "rb") as handle:
        assert handle.read() == b"1" * 100


def test_ship_when_full_verify_failed_then_the_copy_counts_as_missing_and_is_replaced(tmp_path, client):
    make_backup(tmp_path, A, {"k1": b"1" * 100})
    offsite.ship(new_run(tmp_path, client))
    client.put_object(Bucket=BUCKET, Key="fleet/h/%s/minio/b/k1" % A, Body=b"X" * 100)
    assert offsite.verify(new_run(tmp_path, client, verify_mode="full"))["bad"]
    result = offsite.ship(new_run(tmp_path, client))
    assert result["to_ship"] == [A] and result["already"] == []
    assert offsite.verify(new_run(tmp_path, client, verify_mode="full"))["bad"] == []


def test_fetch_when_newest_local_backup_has_a_rotten_file_then_it_is_downloaded_not_linked(tmp_path, client):
    make_backup(tmp_path / "src", B, {"k1": b"1" * 100, "k2": b"2" * 100})
    offsite.ship(new_run(tmp_path / "src", client))
    older = make_backup(tmp_path / "dst", A, {"k1": b"1" * 100, "k2": b"2" * 100})
    with open(os.path.join(older, "minio/b/k1"), "wb") as handle:
        handle.write(b"R" * 100)
    result = fetch_back.fetch(new_run(tmp_path / "dst", client), B)
    assert (result["linked"], result["fetched"]) == (1, 1)
    fetched = str(tmp_path / "dst" / B)
    assert mf.verify(fetched, mf.read(fetched))["ok"]
    assert os.stat(os.path.join(fetched, "minio/b/k2")).st_ino == os.stat(os.path.join(older, "minio/b/k2")).st_ino


def age_key(path):
    subprocess.run(["age-keygen", "-o", path], check=True, capture_output=True)
    return subprocess.run(["age-keygen", "-y", path], check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.skipif(not shutil.which("age-keygen"), reason="age not installed")
def test_ship_when_recipients_changed_then_nothing_reused_and_new_copy_opens_with_the_new_key(tmp_path, client):
    old, new = str(tmp_path / "old.txt"), str(tmp_path / "new.txt")
    old_public, new_public = age_key(old), age_key(new)
    make_backup(tmp_path / "src", A, {"k1": b"1" * 100, "k2": b"2" * 100})
    offsite.ship(new_run(tmp_path / "src", client, crypt.Crypt(recipients=[old_public])))
    make_backup(tmp_path / "src", B, {"k1": b"1" * 100, "k2": b"2" * 100})
    shipped = offsite.ship(new_run(tmp_path / "src", client, crypt.Crypt(recipients=[new_public])))["shipped"]
    assert [(s["name"], s["linked"], s["sent"]) for s in shipped] == [(B, 0, 2)]
    index = json.loads(client.get_object(Bucket=BUCKET, Key="fleet/h/%s/%s" % (B, INDEX))["Body"].read())
    assert index["recipients"] == [new_public]
    fetch_back.fetch(new_run(tmp_path / "dst", client, crypt.Crypt(identity_file=new)), B)
    assert mf.verify(str(tmp_path / "dst" / B), mf.read(str(tmp_path / "dst" / B)))["ok"]
    # Same keys again: the unchanged files are reused.
    make_backup(tmp_path / "src", C, {"k1": b"1" * 100, "k2": b"2" * 100})
    shipped = offsite.ship(new_run(tmp_path / "src", client, crypt.Crypt(recipients=[new_public])))["shipped"]
    assert [(s["name"], s["linked"]) for s in shipped] == [(C, 2)]


@pytest.mark.skipif(not shutil.which("age-keygen"), reason="age not installed")
def test_fetch_when_identity_given_as_text_then_it_never_touches_the_disk(tmp_path, client, monkeypatch):
    key = str(tmp_path / "key.txt")
    public = age_key(key)
    make_backup(tmp_path / "src", A, {"k1": b"1" * 100})
    offsite.ship(new_run(tmp_path / "src", client, crypt.Crypt(recipients=[public])))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with open(key) as handle:
        secret = handle.read()
    box = crypt.Crypt(identity=secret)
    fetch_back.fetch(new_run(tmp_path / "dst", client, box), A)
    written = [os.path.join(d, f) for d, _dirs, names in os.walk(str(tmp_path)) for f in names]
    assert [p for p in written if p != key and b"AGE-SECRET-KEY-" in open(p, "rb").read()] == []


def test_ship_when_previous_copy_holds_another_copys_index_then_it_gives_nothing_and_is_shipped_again(tmp_path, client):
    make_backup(tmp_path, A, {"k1": b"1" * 100})
    make_backup(tmp_path, B, {"k1": b"1" * 100})
    offsite.ship(new_run(tmp_path, client))
    swap(client, A, B, INDEX)
    make_backup(tmp_path, C, {"k1": b"1" * 100})
    shipped = offsite.ship(new_run(tmp_path, client))["shipped"]
    assert [(s["name"], s["previous"], s["linked"]) for s in shipped] == [(C, None, 0)]
    assert "index of backup '%s'" % A in layout.read_status(str(tmp_path), B)["offsite"]["targets"]["s3"]["bad"][0]
    shipped = offsite.ship(new_run(tmp_path, client))["shipped"]
    assert [(s["name"], s["previous"], s["linked"]) for s in shipped] == [(B, A, 1)]
    assert offsite.verify(new_run(tmp_path, client, verify_mode="full"))["bad"] == []


def test_retention_when_newest_copy_failed_verification_then_the_last_good_copy_stays(tmp_path, client):
    make_backup(tmp_path, A, {"k1": b"1" * 100})
    make_backup(tmp_path, B, {"k1": b"2" * 100})
    offsite.ship(new_run(tmp_path, client))
    assert offsite.verify(new_run(tmp_path, client, verify_mode="full"))["bad"] == []
    client.put_object(Bucket=BUCKET, Key="fleet/h/%s/minio/b/k1" % B, Body=b"X" * 100)
    assert offsite.verify(new_run(tmp_path, client, verify_mode="full"), [B])["bad"]
    shutil.rmtree(str(tmp_path / B))  # pruned locally: the rotten copy cannot be shipped again
    removed = offsite.apply_retention(new_run(tmp_path, client), retention.check_policy({"keep_last": 1}))
    # keep_last 1 kept the rotten B and removed A, the only good copy; now B counts toward no rule.
    assert removed == []
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert "fleet/h/%s/manifest.json" % A in keys


def test_fetch_when_manifest_compressed_then_its_bytes_come_back_as_shipped(tmp_path, client):
    """A format-2 manifest.json stored gzip-compressed (issue 24) travels as bytes both ways."""
    path = make_backup(tmp_path / "src", A, {"k1": b"1" * 100, "dir/k2": os.urandom(2000)})
    data = mf.read(path)
    objects = data["minio"].pop("objects")
    data["minio"]["objects"] = []
    mf.write_streamed(path, data, (json.dumps(o) for o in objects), compress=True)
    with open(os.path.join(path, "manifest.json"), "rb") as handle:
        shipped = handle.read()
    assert shipped[:2] == b"\x1f\x8b"
    offsite.ship(new_run(tmp_path / "src", client))
    assert offsite.verify(new_run(tmp_path / "src", client, verify_mode="full"))["bad"] == []
    result = fetch_back.fetch(new_run(tmp_path / "dst", client), A)
    fetched = str(tmp_path / "dst" / A)
    with open(os.path.join(fetched, "manifest.json"), "rb") as handle:
        assert handle.read() == shipped
    assert result["fetched"] == 2 and mf.verify(fetched, mf.read(fetched), "full")["ok"]
