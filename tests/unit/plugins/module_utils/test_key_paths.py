# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import hashlib

import pytest

from ansible_collections.rat.backup.plugins.module_utils._mirror import key_paths


@pytest.mark.parametrize("relpath", ["a", "a/b.csv", "space name/ü.txt", "x" * 255, "a/.hidden", "..a/b..",
                                     "é" * 127, "a/" + "\U0001f600" * 63, "\udc80" * 85])
def test_is_plain_relpath_when_ordinary_true(relpath):
    assert key_paths.is_plain_relpath(relpath)


@pytest.mark.parametrize("relpath", [
    "", "/lead", "trail/", "a//b", "../evil", "a/../../b", "./a", "a/.", "ctl\x01char", "del\x7f",
    "x" * 256, "é" * 128, ".rat-keys/x", ".rat-tmp", "new\nline", "a/" + "\U0001f600" * 64, "\udc80" * 86,
])
def test_is_plain_relpath_when_unsafe_false(relpath):
    assert not key_paths.is_plain_relpath(relpath)


def test_escaped_relpath_when_called_is_sha256_of_key_under_bucket():
    key = "../../etc/passwd"
    assert key_paths.escaped_relpath("rat", key) == ".rat-keys/rat/" + hashlib.sha256(key.encode()).hexdigest()


def test_key_mapper_when_key_is_directory_of_another_escapes_only_the_parent():
    mapper = key_paths.KeyMapper("rat", "rat", keys=["a/b", "a", "a/c/d", "a-b", "a-c/x"])
    assert mapper.relpath("a") == key_paths.escaped_relpath("rat", "a")
    assert mapper.relpath("a/b") == "rat/a/b"
    assert mapper.relpath("a/c/d") == "rat/a/c/d"
    assert mapper.relpath("a-b") == "rat/a-b"


def test_key_mapper_when_prefix_given_strips_it_and_escapes_the_prefix_marker():
    mapper = key_paths.KeyMapper("rat", "", "data/", ["data/", "data/x.csv"])
    assert mapper.relpath("data/x.csv") == "x.csv"
    assert mapper.relpath("data/") == key_paths.escaped_relpath("rat", "data/")


def test_key_mapper_when_single_bucket_root_reserved_names_are_escaped():
    mapper = key_paths.KeyMapper("rat", "", keys=[".rat-keys/rat/abc"])
    assert mapper.relpath(".rat-keys/rat/abc") == key_paths.escaped_relpath("rat", ".rat-keys/rat/abc")
