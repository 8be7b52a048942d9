# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_s3.split_listing: a listing's rest cut into parts that, read one after the other, are exactly the
keys after the last one handed on, in S3's order; against a bucket modelled with S3's delimiter rules."""

from __future__ import annotations

import random

import pytest

from ansible_collections.rat.backup.plugins.module_utils._s3 import split_listing
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError


class Bucket:
    """Keys answered as S3 answers a delimiter ("/") listing: keys with no "/" after ``under``, and
    each prefix up to the next "/" once; ``page`` entries at most before it says truncated."""

    def __init__(self, keys, page=1000):
        self.keys = sorted(keys)
        self.page = page
        self.asked = []

    def level(self, under):
        self.asked.append(under)
        items, prefixes = [], []
        for key in self.keys:
            if not key.startswith(under):
                continue
            cut = key.find("/", len(under))
            if cut < 0:
                items.append((key, len(key), '"e"', "2026-12-07T00:00:00.000Z"))
            elif key[:cut + 1] not in prefixes:
                prefixes.append(key[:cut + 1])
        return items, prefixes, len(items) + len(prefixes) > self.page

    def below(self, prefix, after):
        return [key for key in self.keys if key.startswith(prefix) and (after is None or key > after)]


def read_back(bucket, parts):
    """The keys the parts stand for, read one after the other as the transport reads them."""
    keys = []
    for part in parts:
        keys.extend(item[0] for item in part.items) if part.prefix is None else \
            keys.extend(bucket.below(part.prefix, part.after))
    return keys


NAMES = ["a", "a-", "a.b", "a0", "b", "sp ace", "plus+", "ünï", "鍵", "z~", "-", "0"]


def random_key(rnd):
    return "/".join(rnd.choice(NAMES) for dummy in range(rnd.randint(1, 4))) + rnd.choice(["", "/", ".x"])


@pytest.mark.parametrize("seed", range(40))
def test_parts_when_read_in_order_are_exactly_the_keys_after_the_last_one_handed_on(seed, monkeypatch):
    rnd = random.Random(seed)
    monkeypatch.setattr(split_listing, "MIN_PARTS", rnd.choice([2, 4, 16]))
    keys = sorted({random_key(rnd) for dummy in range(rnd.randint(20, 300))})
    bucket = Bucket(keys, page=rnd.choice([3, 10, 1000]))
    prefix = rnd.choice(["", "", "a/", "sp ace/"])
    scoped = [key for key in keys if key.startswith(prefix)]
    after = rnd.choice(scoped[:len(scoped) // 2 + 1]) if scoped else prefix
    parts = split_listing.parts(bucket.level, prefix, [key for key in scoped if key <= after] or [after])
    if parts is None:
        return
    assert read_back(bucket, parts) == [key for key in scoped if key > after]
    assert sum(1 for part in parts if part.prefix is not None) != 1


def test_parts_when_one_directory_on_top_descends_into_it_until_enough_prefixes():
    keys = ["warehouse/db_%d/t_%02d/k%d" % (db, table, i) for db in range(3) for table in range(8) for i in range(3)]
    bucket = Bucket(keys)
    parts = split_listing.parts(bucket.level, "", keys[:5])
    # "" then "warehouse/" (3 prefixes) then each db: 24 tables, of which the first holds keys[4].
    assert bucket.asked == ["", "warehouse/", "warehouse/db_0/", "warehouse/db_1/", "warehouse/db_2/"]
    assert [part.prefix for part in parts] == ["warehouse/db_0/t_%02d/" % t for t in range(1, 8)] + \
        ["warehouse/db_%d/t_%02d/" % (db, t) for db in (1, 2) for t in range(8)]
    assert read_back(bucket, parts) == keys[5:]


def test_parts_when_the_last_key_handed_on_is_inside_a_prefix_reads_that_prefix_on_from_it(monkeypatch):
    monkeypatch.setattr(split_listing, "MIN_PARTS", 2)
    bucket = Bucket(["a/%02d" % i for i in range(10)] + ["b/1", "c/1", "d"])
    parts = split_listing.parts(bucket.level, "", ["a/%02d" % i for i in range(4)])
    assert [(part.prefix, part.after) for part in parts] == [("a/", "a/03"), ("b/", None), ("c/", None), (None, None)]
    assert parts[0].handed == {"a/%02d" % i for i in range(4)} and not parts[1].handed
    assert read_back(bucket, parts) == ["a/%02d" % i for i in range(4, 10)] + ["b/1", "c/1", "d"]


@pytest.mark.parametrize("keys, page", [(["k%03d" % i for i in range(50)], 10),  # no prefix, a long level
                                        (["a/%d" % i for i in range(9)] + ["b/1"], 1)])  # a long level
def test_parts_when_one_listing_is_left_to_ask_for_is_none(keys, page):
    assert split_listing.parts(Bucket(keys, page=page).level, "", keys[:4]) is None


def test_parts_when_the_levels_gave_the_whole_rest_hold_it_with_nothing_left_to_ask_for():
    keys = ["a/%d" % i for i in range(9)] + ["b/1", "b/2", "c"]
    bucket = Bucket(keys)
    parts = split_listing.parts(bucket.level, "", keys[:5])
    assert [part.prefix for part in parts] == [None] and read_back(bucket, parts) == keys[5:]


def test_parts_when_a_level_is_longer_than_a_page_keeps_that_prefix_whole(monkeypatch):
    monkeypatch.setattr(split_listing, "MIN_PARTS", 4)
    keys = ["a/%02d" % i for i in range(20)] + ["b/x/1", "b/y/1", "b/z/1", "c/1"]
    bucket = Bucket(keys, page=5)

    def level(under):
        items, prefixes, truncated = bucket.level(under)
        return items, prefixes, truncated and under == "a/"

    parts = split_listing.parts(level, "", keys[:3])
    assert [(part.prefix, part.after) for part in parts] == [
        ("a/", "a/02"), ("b/x/", None), ("b/y/", None), ("b/z/", None), (None, None)]
    assert read_back(bucket, parts) == keys[3:]


def test_parts_when_the_server_answers_a_prefix_outside_the_one_asked_fails_naming_both():
    def level(under):
        return [], ["a/", "elsewhere/"] if under == "" else [under], False

    with pytest.raises(RatBackupError, match=r"delimiter listing under 'a/' with the prefix 'a/'"):
        split_listing.parts(level, "", ["0"])


def test_checked_when_a_server_ignores_start_after_drops_the_keys_handed_on_already():
    part = split_listing.Part(prefix="a/", after="a/2", handed={"a/0", "a/1", "a/2"})
    items = [("a/%d" % i, 1, '"e"', None) for i in range(5)]
    assert [item[0] for item in split_listing.checked(items, part)] == ["a/3", "a/4"]


def test_checked_when_a_key_is_outside_its_prefix_fails_naming_it():
    with pytest.raises(RatBackupError, match=r"under the prefix 'a/' with the key 'b/1'"):
        split_listing.checked([("a/1", 1, None, None), ("b/1", 1, None, None)], split_listing.Part(prefix="a/"))


def test_parts_when_a_level_comes_out_of_s3_order_is_none():
    def level(under):
        # A server sorting without regard to case: "a/" before "B/".
        return [], ["a/", "B/", "c/"], False

    assert split_listing.parts(level, "", ["0"]) is None


def test_checked_when_keys_come_out_of_s3_order_fails_naming_the_key():
    part = split_listing.Part(prefix="p/")
    assert split_listing.checked([("p/a", 1, None, None), ("p/c", 1, None, None)], part)
    with pytest.raises(RatBackupError, match=r"listed the key 'p/B' after 'p/c', out of S3's order"):
        split_listing.checked([("p/B", 1, None, None)], part)


def test_checked_when_start_after_is_ignored_a_key_before_it_later_on_fails():
    part = split_listing.Part(prefix="p/", after="p/2", handed={"p/1", "p/2"})
    items = [("p/%d" % i, 1, None, None) for i in (1, 2, 3)]
    assert [item[0] for item in split_listing.checked(items, part)] == ["p/3"]
    with pytest.raises(RatBackupError, match="out of S3's order"):
        split_listing.checked([("p/1", 1, None, None)], part)


def test_parts_when_a_key_before_a_prefix_sorting_ahead_of_it_is_none(monkeypatch):
    # A server sorting without regard to case listed "0/1", "a" first; "B/1" comes after "a" there,
    # though "B/" sorts before it: skipped as handed on, its keys would be dropped.
    monkeypatch.setattr(split_listing, "MIN_PARTS", 2)

    def level(under):
        return [("a", 1, None, None)], ["0/", "B/", "c/", "d/"], False

    assert split_listing.parts(level, "", ["0/1", "a"]) is None


@pytest.mark.parametrize("items, prefixes", [([("d/", 1, None, None)], ["d/", "e/"]),  # a marker as key and prefix
                                             ([("d/x/1", 1, None, None)], ["d/", "e/"]),  # a key not rolled up
                                             ([], ["d/", "d/x/", "e/"])])  # a prefix below another
def test_parts_when_a_level_answers_a_name_below_a_prefix_of_it_is_none(items, prefixes, monkeypatch):
    monkeypatch.setattr(split_listing, "MIN_PARTS", 2)
    assert split_listing.parts(lambda under: (items, prefixes, False), "", ["0"]) is None


def test_checked_when_start_after_is_not_s3_order_a_key_before_it_not_handed_on_fails_naming_it():
    # A server sorting without regard to case, asked for "p/" after "p/a", sends "p/B".
    part = split_listing.Part(prefix="p/", after="p/a", handed={"p/0", "p/a"})
    with pytest.raises(RatBackupError, match=r"listed the key 'p/B' after start-after 'p/a', which S3's order"):
        split_listing.checked([("p/B", 1, None, None), ("p/c", 1, None, None)], part)


@pytest.mark.parametrize("cores, threads", [(1, 2), (2, 2), (3, 3), (4, 4), (64, 4)])
def test_parts_are_listed_by_a_thread_per_usable_core_from_2_to_4(cores, threads, monkeypatch):
    monkeypatch.setattr(split_listing.os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert split_listing.listing_threads() == threads
