# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError
from ansible_collections.rat.backup.plugins.module_utils._offsite import plan as pl

A, B, C = "20260101_000000", "20260102_000000", "20260103_000000"
FILES = {"postgres/rat.dump": {"size": 10, "sha256": "d" * 64}, "minio/b/k": {"size": 3, "sha256": "a" * 64}}


def index_of(files, encrypted=False, etag="e", bound=False):
    entries = [pl.entry(rel, pl.stored_path(rel, encrypted), w["size"], w["sha256"], etag) for rel, w in files.items()]
    binding = pl.manifest_binding(b"{}", encrypted, {"name": A, "created_at": "t"}) if bound else None
    return pl.build_index(A, "h", encrypted, [], entries, binding)


def test_choose_when_missing_then_every_local_backup_the_target_lacks_oldest_first():
    assert pl.choose([A, B, C], [B], set(), "missing") == [A, C]


def test_choose_when_target_pruned_one_then_it_is_not_shipped_again():
    assert pl.choose([A, B, C], [C], {A}, "missing") == [B]


def test_choose_when_latest_then_only_the_newest_if_absent():
    assert pl.choose([A, B], [], set(), "latest") == [B]
    assert pl.choose([A, B], [B], set(), "latest") == []


def test_choose_when_named_backup_is_not_local_then_error_names_it():
    with pytest.raises(RatBackupError) as err:
        pl.choose([A], [], set(), [B])
    assert B in err.value.msg and err.value.details["missing"] == [B]


def test_choose_when_name_is_a_path_then_refused():
    with pytest.raises(RatBackupError):
        pl.choose([A], [], set(), ["../" + A])


def test_previous_when_several_copies_then_newest_older_one_still_local():
    assert pl.previous(C, [A, B], [A, C]) == A
    assert pl.previous(C, [A, B], [A, B, C]) == B
    assert pl.previous(A, [B], [A, B]) is None


def test_plan_files_when_same_path_size_and_hash_then_linked_else_sent():
    prev = dict(FILES)
    now = dict(FILES, **{"minio/b/k": {"size": 3, "sha256": "b" * 64}, "minio/b/new": {"size": 1, "sha256": "c" * 64}})
    plan = pl.plan_files(now, False, prev, index_of(prev)["files"])
    assert [t[0] for t in plan["link"]] == ["postgres/rat.dump"]
    assert [t[0] for t in plan["send"]] == ["minio/b/k", "minio/b/new"]


def test_plan_files_when_encrypted_then_stored_paths_carry_age_suffix():
    plan = pl.plan_files(FILES, True, FILES, index_of(FILES, True)["files"])
    assert sorted(t[1] for t in plan["link"]) == ["minio/b/k.age", "postgres/rat.dump.age"]


def test_plan_files_when_previous_copy_was_not_encrypted_then_nothing_linked():
    plan = pl.plan_files(FILES, True, FILES, index_of(FILES, False)["files"])
    assert not plan["link"] and len(plan["send"]) == 2


def test_plan_files_when_journal_has_entries_then_they_are_done():
    done = {"minio/b/k": pl.entry("minio/b/k", "minio/b/k", 3, "a" * 64, "e")}
    plan = pl.plan_files(FILES, False, done=done)
    assert [t[0] for t in plan["done"]] == ["minio/b/k"] and [t[0] for t in plan["send"]] == ["postgres/rat.dump"]


def test_compare_when_listing_matches_then_no_problem():
    listing = {"postgres/rat.dump": {"size": 10, "etag": "e"}, "minio/b/k": {"size": 3, "etag": "e"},
               pl.INDEX: {"size": 1}, "manifest.json": {"size": 1}}
    assert pl.compare(index_of(FILES), listing, FILES) == []


def test_compare_when_files_damaged_then_each_is_named_with_its_reason():
    listing = {"postgres/rat.dump": {"size": 11, "etag": "e"}, "minio/b/k": {"size": 3, "etag": "x"},
               "stray": {"size": 1}}
    reasons = dict((b["path"], b["reason"]) for b in pl.compare(index_of(FILES), listing, FILES))
    assert reasons["postgres/rat.dump"] == "off-site size 11, shipped 10"
    assert "rewritten" in reasons["minio/b/k"]
    assert reasons["stray"] == "off-site file not in the index"


def test_compare_when_full_hashes_differ_then_named():
    listing = {"postgres/rat.dump": {"size": 10}, "minio/b/k": {"size": 3}}
    hashes = {"postgres/rat.dump": "d" * 64, "minio/b/k": "0" * 64}
    bad = pl.compare(index_of(FILES, etag=None), listing, FILES, hashes)
    assert bad == [{"path": "minio/b/k", "reason": "off-site sha256 differs from what was shipped"}]


def test_compare_when_manifest_file_not_in_index_then_named():
    listing = {"postgres/rat.dump": {"size": 10, "etag": "e"}}
    index = index_of({"postgres/rat.dump": FILES["postgres/rat.dump"]})
    assert pl.compare(index, listing, FILES) == [{"path": "minio/b/k", "reason": "in the manifest but not shipped"}]


def test_compare_when_missing_off_site_then_named():
    bad = pl.compare(index_of(FILES), {}, None)
    assert {b["path"] for b in bad} == set(FILES)
    assert all(b["reason"].startswith("missing off-site") for b in bad)


def test_parse_index_when_stored_path_disagrees_with_encryption_then_refused():
    index = index_of(FILES, encrypted=False)
    index["encrypted"] = True
    with pytest.raises(RatBackupError):
        pl.parse_index(pl.index_text(index), "s3://x/", A)


def test_parse_index_when_not_json_then_error_names_location():
    with pytest.raises(RatBackupError) as err:
        pl.parse_index(b"{", "s3://x/h/A/", A)
    assert "s3://x/h/A/" in err.value.msg


def test_parse_index_when_it_names_another_backup_then_refused_as_moved_in():
    with pytest.raises(RatBackupError) as err:
        pl.parse_index(pl.index_text(index_of(FILES, bound=True)), "s3://x/h/%s/" % B, B)
    assert "index of backup '%s', not of %s" % (A, B) in err.value.msg


def test_parse_index_when_format_2_without_manifest_binding_then_refused():
    index = index_of(FILES)
    with pytest.raises(RatBackupError) as err:
        pl.parse_index(pl.index_text(index), "s3://x/", A)
    assert "does not bind its manifest" in err.value.msg


def test_compare_when_manifest_is_another_copys_then_named():
    index = index_of(FILES, bound=True)
    listing = {item["stored"]: {"size": item["size"], "etag": "e"} for item in index["files"].values()}
    listing["manifest.json"] = {"size": 2}
    assert pl.compare(index, listing, manifest_sha256=index["manifest"]["sha256"]) == []
    bad = pl.compare(index, listing, manifest_sha256="0" * 64)
    assert [b["path"] for b in bad] == ["manifest.json"] and "moved in from another copy" in bad[0]["reason"]
    listing["manifest.json"] = {"size": 3}
    assert [b["path"] for b in pl.compare(index, listing)] == ["manifest.json"]


def test_same_keys_when_recipients_differ_or_order_changes_then_only_the_set_counts():
    index = pl.build_index(A, "h", True, ["age1b", "age1a"], [])
    assert pl.same_keys(index, True, ["age1a", "age1b"])
    assert not pl.same_keys(index, True, ["age1a", "age1c"])
    assert not pl.same_keys(index, False, [])


def test_throttle_when_rate_set_then_sleeps_for_the_budget():
    clock = [0.0]
    slept = []
    throttle = pl.Throttle(1000, clock=lambda: clock[0], sleep=slept.append)
    throttle.take(500)
    throttle.take(500)
    throttle.take(1000)
    assert slept == [0.5, 1.0]


def test_throttle_when_unlimited_then_never_sleeps():
    throttle = pl.Throttle(0, sleep=lambda s: pytest.fail("slept"))
    throttle.take(10 ** 9)
