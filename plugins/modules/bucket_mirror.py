#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: bucket_mirror
short_description: Mirror S3 buckets to a local directory, a local directory to S3, or S3 to S3
version_added: 0.1.0
description:
  - Copies objects between an S3 endpoint (MinIO, AWS S3, any S3-compatible server) and a local
    directory, in either direction, or between two S3 endpoints, in Python (boto3 and the
    collection's own S3 client); no aws, mc or rclone binary is needed.
  - "S3 -> disk: C(src=s3://) mirrors every bucket (or those in O(buckets)) into one sub-directory
    per bucket of O(dest); C(src=s3://bucket/prefix) mirrors the keys under the prefix into O(dest)
    itself. An object manifest (O(manifest)) records bucket, key, local path, size, sha256 computed
    while downloading, ETag, version id, Content-Type, Cache-Control, Content-Encoding,
    Content-Disposition and user metadata of every object."
  - Keys that cannot be a plain relative path (C(..) or empty segments, a leading or trailing
    C(/), control characters, segments over 255 bytes, a key that is also the "directory" of
    another key) are stored at C(.rat-keys/<bucket>/<sha256 of the key>) under the mirror root and
    restored under their exact key from the manifest. Nothing is written outside O(dest).
  - "disk -> S3: with O(manifest) the manifest is the list of objects to restore, with their
    original keys and attributes; every file is checked against its sha256 before anything is
    uploaded. Without a manifest every regular file is uploaded (sub-directories of O(src) are the
    buckets for C(dest=s3://)); symlinks and special files are skipped and listed in
    RV(skipped_files)."
  - Change detection never trusts mtime alone. S3 -> disk skips an object only when the
    destination manifest (or the journal of an interrupted run) holds the same bucket, key, size,
    ETag and version id, and the local file is still a regular file of that size with the
    object's LastModified as mtime. Without a manifest the local file is hashed and compared with
    a single-part ETag or the multipart ETag this module's uploads produce.
    disk -> S3 skips an object when the destination has the same size and the ETag recorded in the
    manifest, or an ETag the local file's MD5 proves equal.
  - Every file is written to a temporary file under C(.rat-tmp/) in the mirror root, fsynced and
    renamed into place, so an interrupted transfer never leaves a file that looks complete; a rerun
    finishes only what is missing. Directories are created 0700, files 0600.
options:
  src:
    description:
      - Where to copy from, C(s3://), C(s3://bucket) or C(s3://bucket/prefix) (on O(src_endpoint)),
        or a local directory.
      - A prefix names a "directory"; C(s3://rat/data) means the keys under C(data/).
    type: str
    required: true
  dest:
    description:
      - Where to copy to, same forms as O(src) (on O(dest_endpoint)). One side must be S3.
    type: str
    required: true
  buckets:
    description:
      - With C(s3://) (no bucket) as O(src) or O(dest), only these buckets. Empty means every bucket
        of the S3 source, or every bucket directory / manifest bucket of a local source.
      - A named bucket that does not exist on the S3 source is an error.
    type: list
    elements: str
    default: []
  bucket_map:
    description:
      - "Disk -> S3 with O(manifest) and C(dest=s3://) only. Restores the manifest's buckets (those
        in O(buckets) when set, by their names in the manifest) into buckets of other names,
        C({backup bucket: destination bucket}). Buckets not in the map keep their names."
      - The restore drill uses it to restore into scratch buckets beside the live ones.
    type: dict
    default: {}
    version_added: 0.1.0
  delete:
    description:
      - Remove from the destination what the source does not have, within the buckets (and
        prefix) being mirrored only and only where O(include)/O(exclude) select.
      - On a versioned destination bucket S3 keeps the removed object as a noncurrent version.
    type: bool
    default: false
  include:
    description:
      - Shell-style patterns (C(*) matches across C(/)) on the key relative to the prefix; only
        matching objects are copied or deleted. Empty means all.
    type: list
    elements: str
    default: []
  exclude:
    description:
      - Shell-style patterns on the key relative to the prefix; matching objects are neither copied
        nor deleted. Applied after O(include).
    type: list
    elements: str
    default: []
  manifest:
    description:
      - S3 -> disk, object manifest to write (JSON, 0600, written atomically when the mirror
        completes). Object paths in it are relative to the parent of O(dest). If it exists it is
        the record of the previous run into the same O(dest) and makes a no-change rerun fast;
        C(<manifest>.journal) records finished objects until then, so an interrupted run is
        resumed.
      - disk -> S3, object manifest to restore from; a backup C(manifest.json) whose C(minio) key
        holds the object manifest works too. Paths in it are resolved below the parent of O(src).
    type: path
  link_dest:
    description:
      - S3 -> disk only. A previous mirror directory (for example C(<previous backup>/minio)).
        Objects unchanged since then (same bucket, key, size, ETag and version id) are hard-linked
        from it instead of downloaded; O(dest) is still a complete copy.
      - Into an O(dest) that is missing or empty (a new backup's), the links are made while the source is
        still listed, once the S3 clock (O(consistency_point)) is known to be within O(max_clock_skew);
        into one that holds anything, after the listing, as before.
      - So are objects written again with the same bytes (after a restore into empty buckets, with a
        new version id or another multipart ETag) when their ETag is the MD5 of the previous file or
        the multipart ETag this collection's uploads give it; a one-byte GET reads their attributes.
      - The previous files are trusted to match their manifest (size is checked); verify old
        backups separately.
    type: path
  link_dest_manifest:
    description:
      - Manifest describing O(link_dest), an object manifest or a backup manifest with a C(minio)
        key.
      - Defaults to C(manifest.json) in the parent directory of O(link_dest).
    type: path
  versions_as_of:
    description:
      - S3 source only. ISO 8601 time (UTC when no offset is given). From versioned buckets, copy
        for each key the version that was current at that time, leaving out keys deleted by then.
        Version ids are recorded in the manifest.
      - "Whole-second stamps (AWS S3, moto) leave the order inside a second unknown: versions stamped in
        the second of the time count, delete markers stamped in it do not."
    type: str
  consistency_point:
    description:
      - S3 source only. M(rat.backup.pg_dump)'s RV(rat.backup.pg_dump#module:consistency_point) (or, for
        O(probe), its check-mode RV(rat.backup.pg_dump#module:clock)).
      - When a bucket to mirror is versioned, the S3 server's clock is measured against PostgreSQL's through
        the C(Date) header of a few C(HeadBucket) requests (about a second), and the mirror fails before
        listing a versioned bucket when the difference may exceed O(max_clock_skew). Without a versioned
        bucket nothing is captured as of the snapshot, so the clock is not measured.
      - "Versioned buckets are then captured as of the dump's snapshot: per key the newest version
        stamped at or before the window in which the snapshot happened on the S3 clock, fetched by
        version id; a delete marker that may be later than the window's start is not applied (an
        expiry right after the snapshot must not remove files the dumped catalog names). Unversioned
        buckets are captured as listed (best-effort). RV(consistency) records all of it."
    type: dict
  max_clock_skew:
    description: Seconds the S3 and PostgreSQL clocks may differ, with O(consistency_point) and a versioned bucket.
    type: float
    default: 2.0
  fail_on_best_effort:
    description:
      - S3 source only. Fail (also with O(probe)) when a bucket to mirror is not versioned, since its
        objects cannot be pinned to one moment.
    type: bool
    default: false
  use_versions:
    description:
      - S3 source only. On versioned buckets list object versions and fetch every object by the
        version id listed at plan time, so objects rewritten during the mirror do not make the copy
        inconsistent. On unversioned buckets objects that changed meanwhile are reported in
        RV(changed_during).
    type: bool
    default: false
  concurrency:
    description:
      - Number of objects transferred (or files hashed) in parallel. At most 64.
    type: int
    default: 8
  processes:
    description:
      - Worker processes the downloads of an S3 source given by O(src_endpoint) run in, each
        transferring one object at a time; the O(concurrency) transfers are then spread over them.
        Python threads share one core, so on a lake of many small objects processes are what
        puts more than one core to work.
      - V(0) keeps every transfer in threads of the module's own process (also what a source
        reached without an endpoint URL does).
      - Default two per CPU core, at most O(concurrency).
    type: int
    version_added: 0.2.0
  probe:
    description:
      - Only check what a mirror needs before it starts, cheaply on a lake of any size, and stop.
        Each S3 side must answer with these credentials, and on an S3 source the buckets to mirror
        must exist (their versioning is returned in RV(probed)). No object is listed, copied or deleted.
      - The backup role probes S3 this way before a long database dump, so a wrong secret or a
        missing bucket fails the run before the dump instead of after it.
    type: bool
    default: false
  min_free_bytes:
    description:
      - S3 -> disk only. After listing, and before anything is downloaded, fail unless the file system
        of O(dest) has room for the objects to download (hard links need none) plus this many
        bytes, so a full disk is found before the transfer rather than in the middle of it.
      - V(0) still checks that the objects fit.
    type: int
    default: 0
  create_buckets:
    description:
      - Create missing destination buckets (versioned when the manifest says the source was).
        Otherwise a missing destination bucket is an error.
    type: bool
    default: false
extends_documentation_fragment:
  - rat.backup.attributes
  - rat.backup.s3
  - rat.backup.s3.src
  - rat.backup.s3.dest
attributes:
  check_mode:
    support: full
    details:
      - Lists both sides and returns the plan in RV(plan); reads local files to decide what a
        disk -> S3 run would upload; writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A second run with no change on the source copies nothing and reports no change.
notes:
  - "Two ways to S3: for a side given by O(src_endpoint)/O(dest_endpoint) URL with an access key and
    secret key, listings, GETs and single-request PUTs go through the collection's own signed
    HTTP/1.1 client (a fraction of boto3's CPU per object; held to boto3 by tests on moto and
    C(rclone serve s3): same keys, ETags, metadata, errors, botocore's standard retry mode,
    C(Content-MD5) on uploads). boto3 carries everything else, and every request of a side
    without an endpoint URL (AWS by region), without keys (boto3's credential chain: environment,
    files, instance profile, SSO, web identity), behind a proxy from C(HTTP_PROXY)/C(HTTPS_PROXY)
    (unless C(NO_PROXY) names the host), or with a O(retry_mode) other than C(standard)."
  - "An object that was listed and then answers \"not found\" is recorded in RV(changed_during) as
    deleted only when a fresh listing of its directory no longer holds it; otherwise the run fails
    naming the key."
  - Progress is logged (syslog / journal) every 15 seconds on long mirrors.
  - S3 -> S3 compares size and ETag; objects whose ETags differ only because they were uploaded
    with a different part size are copied again.
  - When restoring to S3, an object whose bytes equal the backup's (same size and ETag) but which was
    written again after the backup listed it is read with one HEAD, and put back when its
    Content-Type, Cache-Control, Content-Encoding, Content-Disposition or user metadata differ
    from the manifest's. Objects untouched since the backup cost no request.
requirements:
  - boto3 (with botocore) on the managed host
seealso:
  - module: rat.backup.backup_verify
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: Mirror every bucket of the local MinIO into the backup being written
  rat.backup.bucket_mirror:
    src: s3://
    src_endpoint: http://127.0.0.1:9000
    src_access_key: "{{ rat_minio_access_key }}"
    src_secret_key: "{{ rat_minio_secret_key }}"
    dest: /var/backups/rat/20260131_020000.partial/minio
    manifest: /var/backups/rat/20260131_020000.partial/minio.json
    link_dest: /var/backups/rat/20260130_020000/minio
    use_versions: true

- name: Restore one backup's buckets exactly
  rat.backup.bucket_mirror:
    src: /var/backups/rat/20260131_020000/minio
    manifest: /var/backups/rat/20260131_020000/manifest.json
    dest: s3://
    dest_endpoint: http://127.0.0.1:9000
    dest_access_key: "{{ rat_minio_access_key }}"
    dest_secret_key: "{{ rat_minio_secret_key }}"
    delete: true
    create_buckets: true

- name: Copy the lake as it was last night into a scratch directory
  rat.backup.bucket_mirror:
    src: s3://rat/ecommerce
    src_endpoint: http://127.0.0.1:9000
    dest: /srv/scratch/ecommerce
    versions_as_of: "2026-01-31T00:00:00Z"

- name: Fail early when MinIO does not answer or a bucket is missing (lists no object)
  rat.backup.bucket_mirror:
    src: s3://
    src_endpoint: http://127.0.0.1:9000
    src_access_key: "{{ rat_minio_access_key }}"
    src_secret_key: "{{ rat_minio_secret_key }}"
    buckets: [rat]
    dest: /var/backups/rat/probe
    probe: true
"""

RETURN = r"""
copied:
  description: Objects transferred.
  returned: always
  type: int
  sample: 120
linked:
  description: Objects hard-linked from O(link_dest).
  returned: always
  type: int
  sample: 2040
unchanged:
  description:
    - Objects already present and unchanged at the destination.
    - Not called C(skipped), which Ansible would read as "this task was skipped".
  returned: always
  type: int
  sample: 3
deleted:
  description: Objects (or local files) removed because the source does not have them.
  returned: always
  type: int
  sample: 0
bytes:
  description: Bytes transferred.
  returned: always
  type: int
  sample: 73400320
seconds:
  description: Wall-clock duration of the run.
  returned: always
  type: float
  sample: 4.2
mb_per_s:
  description: Transfer rate, bytes transferred / 1,000,000 / seconds.
  returned: always
  type: float
  sample: 17.5
plan:
  description:
    - What the run does (in check mode, what it would do); C(first) lists up to 10 C(bucket/key)
      (or local paths for local deletions) of each kind.
  returned: always
  type: dict
  sample:
    to_copy: {count: 2, bytes: 120, first: [rat/a.csv, rat/b.csv]}
    to_link: {count: 0, bytes: 0, first: []}
    to_delete: {count: 0, first: []}
    unchanged: {count: 1000}
    create_buckets: []
probed:
  description:
    - With O(probe=true), what was checked. C(src) maps each bucket of an S3 source to its
      versioning; C(dest) is present (empty) when an S3 destination answered.
  returned: when O(probe=true)
  type: dict
  sample: {src: {rat: {versioned: true}, rat-scratch: {versioned: false}}}
changed_during:
  description: Objects whose ETag moved (or that disappeared) between listing and fetching.
  returned: always
  type: list
  elements: dict
  sample: [{bucket: rat, key: landing/x.csv, change: modified, listed_etag: '"a"', etag: '"b"'}]
consistency:
  description:
    - With O(consistency_point) how the buckets were pinned to the database snapshot, for manifest.json.
      C(level) is C(snapshot) or C(best-effort) (some bucket unversioned, C(buckets) says which), C(time)
      and C(earliest) the snapshot's moment on PostgreSQL's clock, C(obtained) how it was read,
      C(clock_skew) the interval of S3's clock minus PostgreSQL's, C(window) the snapshot on S3's clock
      (both only with a versioned bucket), C(rule) the version rule. With O(probe) only C(clock_skew)
      and C(max_clock_skew) (null without a versioned bucket). Null otherwise.
  returned: always
  type: dict
  sample: {"level": "snapshot", "buckets": {"rat": "snapshot"}, "time": "2026-11-27T18:30:00.123456Z",
           "earliest": "2026-11-27T18:30:00.122001Z", "obtained": "PostgreSQL clock_timestamp() ...",
           "clock_skew": [-0.08, 0.05], "max_clock_skew": 2.0,
           "window": ["2026-11-27T18:30:00.042001Z", "2026-11-27T18:30:00.173456Z"], "rule": "..."}
skipped_files:
  description: Local files not uploaded (symlinks, special files, files outside bucket directories).
  returned: when src is a local directory
  type: list
  elements: dict
  sample: [{path: /srv/mirror/rat/link, reason: symlink}]
manifest:
  description: Path of the object manifest written (S3 -> disk).
  returned: when src is S3 and dest is local
  type: str
  sample: /var/backups/rat/20260131_020000.partial/minio.json
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils.errors import exit_with
from ansible_collections.rat.backup.plugins.module_utils.mirror import Mirror


def argument_spec():
    spec = {
        "src": {"type": "str", "required": True},
        "dest": {"type": "str", "required": True},
        "buckets": {"type": "list", "elements": "str", "default": []},
        "bucket_map": {"type": "dict", "default": {}},
        "delete": {"type": "bool", "default": False},
        "include": {"type": "list", "elements": "str", "default": []},
        "exclude": {"type": "list", "elements": "str", "default": []},
        "manifest": {"type": "path"},
        "link_dest": {"type": "path"},
        "link_dest_manifest": {"type": "path"},
        "versions_as_of": {"type": "str"},
        "consistency_point": {"type": "dict"},
        "max_clock_skew": {"type": "float", "default": 2.0},
        "fail_on_best_effort": {"type": "bool", "default": False},
        "use_versions": {"type": "bool", "default": False},
        "concurrency": {"type": "int", "default": 8},
        "processes": {"type": "int"},
        "create_buckets": {"type": "bool", "default": False},
        "min_free_bytes": {"type": "int", "default": 0},
        "probe": {"type": "bool", "default": False},
    }
    spec.update(s3.connection_argspec("src_"))
    spec.update(s3.connection_argspec("dest_"))
    spec.update(s3.transport_argspec())
    return spec


def run(module):
    params = module.params
    pool = max(10, 2 * (params["concurrency"] or 1) + 4)
    sides = {side: s3.connect(params, side + "_", fast=True, max_pool_connections=pool)
             for side in ("src", "dest") if params[side].startswith("s3://")}
    src, dest = sides.get("src"), sides.get("dest")
    mirror = Mirror(params, src and src.client, dest and dest.client, log=module.log, check_mode=module.check_mode,
                    src_http=src and src.fast, dest_http=dest and dest.fast)
    return mirror.run()


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not s3.HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"), exception=s3.BOTO3_IMPORT_ERROR)
    exit_with(module, run)


if __name__ == "__main__":
    main()
