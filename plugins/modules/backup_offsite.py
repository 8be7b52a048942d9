#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_offsite
short_description: Ship complete RAT backups off-site (S3 or SSH), verify the copies, fetch one back
version_added: 0.1.0
description:
  - O(state=shipped) copies every complete backup of O(root) that the target lacks, oldest first,
    to C(<prefix>/<host>/<backup name>/) on an S3-compatible bucket (O(target=s3)) or on a server over
    SSH with rsync (O(target=ssh)). C(manifest.json) is written last (over SSH the copy is also
    renamed from C(<name>.partial) only then), so a half-shipped copy never looks complete.
  - Incremental. A file whose size and sha256 (from the manifests) equal those of the previous
    off-site copy is not sent again. S3 copies it server-side; over SSH it becomes a hard link made
    on the server by its rsync with C(--link-dest).
  - Every file is hashed while it is read for shipping and refused unless it matches the manifest;
    each copy is verified right after shipping (O(verify)). An interrupted run resumes. Files
    already shipped are listed in a journal under C(<root>/.offsite/), and rsync keeps partial files.
  - A local backup found damaged while it is shipped is skipped (RV(damaged), a warning, its status
    record) and the later backups are still shipped; the module does not fail for it, so the backup
    play goes on to retention.
  - Each copy's index (C(rat-offsite.json)) names its backup, binds the manifest (stored size and
    sha256, the backup's name and creation time) and records the age recipients. Verification and
    fetch-back refuse a manifest or index moved in from another copy. Files are reused (server-side
    copy, hard link) only from a copy made for the same recipients whose last verification passed,
    and only while its listing still matches its index. A copy that failed verification counts as
    missing and is shipped again.
  - O(encrypt) encrypts every file (and the manifest) with the stock C(age) command for O(recipients)
    before it leaves the host. The target only holds age files, C(<path>.age). Decrypt any of them
    with C(age -d -i key.txt).
  - O(state=verified) verifies copies already off-site; O(state=fetched) fetches one copy back into
    O(root) (decrypting it with O(identity_file) or O(identity)), each file checked against the
    manifest as it is written, so that the restore role works on it unchanged.
  - Results go to C(<root>/.status/<name>.offsite.json), which M(rat.backup.backup_info) shows.
extends_documentation_fragment:
  - rat.backup.attributes
  - rat.backup.s3
attributes:
  check_mode:
    support: full
    details:
      - Lists the target and reports what would be shipped or fetched; nothing is sent or written.
  diff_mode:
    support: partial
    details:
      - With O(state=shipped), the target's complete copies before and after (shipped ones added, those
        O(retention) removes taken away), one name a line, also in check mode.
  idempotent:
    support: full
    details:
      - A second run finds everything off-site and ships nothing.
options:
  state:
    description: V(shipped) ships, V(verified) verifies copies off-site, V(fetched) fetches one copy back.
    type: str
    choices: [shipped, verified, fetched]
    default: shipped
  root:
    description: The backup root of the host (C(rat_backup_root)).
    type: path
    required: true
  host:
    description: The host's name in the off-site layout, C(<prefix>/<host>/<backup name>/).
    type: str
    required: true
  target:
    description: V(s3) for an S3-compatible bucket, V(ssh) for a server reached with SSH and rsync.
    type: str
    choices: [s3, ssh]
    required: true
  label:
    description: Name of this target in the status records (default the value of O(target)).
    type: str
  backups:
    description:
      - With O(state=shipped), V(missing) is every local complete backup the target lacks (except
        those its retention removed there), V(latest) is the newest one only. A list of backup names
        ships those.
      - With O(state=verified), the names to verify; V(missing) or empty means every copy off-site.
    type: raw
    default: missing
  name:
    description: With O(state=fetched), the backup to fetch (C(YYYYmmdd_HHMMSS)) or V(latest).
    type: str
    default: latest
  retention:
    description:
      - With O(state=shipped), the retention policy of this target, applied after shipping with the
        same engine and keys as local retention (C(keep_last), C(keep_within), C(keep_hourly),
        C(keep_daily), C(keep_weekly), C(keep_monthly), C(keep_yearly), C(protect_drilled),
        C(partial_max_age)). The newest complete copy always stays; a copy stops being complete
        (manifest removed, or renamed out of the listed names over SSH) before its files go.
      - Backups the policy would remove at once are not shipped. Empty keeps every copy.
    type: dict
    default: {}
  verify:
    description:
      - V(quick) compares the off-site listing with what was shipped (sizes, ETags on S3) and with the
        manifest. V(full) also reads every file back and compares its sha256 (on S3 through this host;
        over SSH with sha256sum on the server).
    type: str
    choices: [quick, full]
    default: quick
  parallel:
    description: Files transferred (S3) or encrypted (SSH) at the same time.
    type: int
    default: 4
  bandwidth_limit_kib:
    description: Upper limit of the sending rate in KiB/s, over all parallel transfers. V(0) means no limit.
    type: int
    default: 0
  encrypt:
    description: Encrypt every file with age for O(recipients) before it leaves the host.
    type: bool
    default: false
  recipients:
    description: age public keys (C(age1...)) or SSH public keys. Any of their private keys decrypts.
    type: list
    elements: str
    default: []
  identity_file:
    description: age identity file (private key) on the host, to fetch an encrypted copy back.
    type: path
  identity:
    description:
      - age identity (private key) text, instead of O(identity_file). Never logged, and never written to
        disk - age reads it from a pipe (C(-i /dev/fd/N)), so no failure or kill leaves the key behind.
    type: str
  age_bin:
    description: The age command (default C(age) on PATH).
    type: path
  s3_bucket:
    description: Bucket of the S3 target. It must exist.
    type: str
  s3_prefix:
    description: Key prefix under which the host's directory lives.
    type: str
    default: ""
  s3_endpoint:
    description: S3 endpoint URL of the target (omit for AWS S3; V(https://storage.googleapis.com) for GCS).
    type: str
  s3_access_key:
    description: Access key of the S3 target (GCS HMAC key id).
    type: str
  s3_secret_key:
    description: Secret key of the S3 target. Never logged.
    type: str
  s3_session_token:
    description:
      - Session token of temporary credentials (STS) for the S3 target, with O(s3_access_key) and
        O(s3_secret_key). Never logged or returned.
    type: str
  s3_region:
    description: Region of the S3 target.
    type: str
    default: us-east-1
  s3_validate_certs:
    description: Verify the S3 target's TLS certificate.
    type: bool
    default: true
  s3_ca_bundle:
    description: CA bundle for the S3 target's certificate.
    type: path
  ssh_host:
    description: Server of the SSH target.
    type: str
  ssh_port:
    description: SSH port.
    type: int
    default: 22
  ssh_user:
    description: SSH login (default that of the user running the module).
    type: str
  ssh_path:
    description: Absolute directory on the server holding C(<host>/<backup name>/).
    type: str
  ssh_key_file:
    description: Private key file for the SSH login, on the host.
    type: path
  ssh_known_hosts_file:
    description: known_hosts file with the server's host key.
    type: path
  ssh_strict_host_key_checking:
    description: Refuse a server whose host key is not in the known_hosts file.
    type: bool
    default: true
notes:
  - One off-site run per backup root at a time (C(<root>/.offsite/.lock)); it does not take the backup
    lock, so backups keep running while a long upload goes on. M(rat.backup.backup_retention) takes the
    off-site lock while it deletes, so no backup is deleted while it is being shipped.
  - Over SSH, the server needs C(rsync), GNU C(find), C(sha256sum) and C(tar), and nothing of this
    collection. Encrypted files are staged under C(<root>/.offsite/) before rsync sends them.
requirements:
  - boto3 (with botocore) on the managed host for O(target=s3)
  - C(ssh) and C(rsync) on the managed host for O(target=ssh), C(rsync) and C(sha256sum) on the server
  - the C(age) command on the managed host for O(encrypt) and for fetching encrypted copies (Debian/Ubuntu
    C(age), or O(age_bin))
seealso:
  - module: rat.backup.backup_info
  - module: rat.backup.backup_verify
author:
  - rat.backup maintainers (@rat-backup)
"""

EXAMPLES = r"""
- name: Ship every backup not yet off-site to a second S3 endpoint, encrypted
  rat.backup.backup_offsite:
    root: /var/backups/rat
    host: "{{ inventory_hostname }}"
    target: s3
    s3_endpoint: https://s3.eu-central-1.amazonaws.com
    s3_bucket: rat-offsite
    s3_prefix: fleet
    s3_access_key: "{{ vault_offsite_access_key }}"
    s3_secret_key: "{{ vault_offsite_secret_key }}"
    encrypt: true
    recipients: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]

- name: Ship over SSH with rsync, at most 10 MiB/s, reading everything back afterwards
  rat.backup.backup_offsite:
    root: /var/backups/rat
    host: "{{ inventory_hostname }}"
    target: ssh
    ssh_host: backup.example.internal
    ssh_user: ratbackup
    ssh_path: /srv/rat-offsite
    ssh_key_file: /root/.ssh/rat_offsite
    bandwidth_limit_kib: 10240
    verify: full

- name: Fetch the newest copy back onto a rebuilt host
  rat.backup.backup_offsite:
    state: fetched
    root: /var/backups/rat
    host: rat-prod-eu-01.example.internal
    target: s3
    s3_bucket: rat-offsite
    s3_access_key: "{{ vault_offsite_access_key }}"
    s3_secret_key: "{{ vault_offsite_secret_key }}"
    identity_file: /root/rat-offsite-age.key

- name: Read every off-site copy back and compare it with its manifest (a monthly check)
  rat.backup.backup_offsite:
    state: verified
    root: /var/backups/rat
    host: "{{ inventory_hostname }}"
    target: s3
    s3_endpoint: https://s3.eu-central-1.amazonaws.com
    s3_bucket: rat-offsite
    s3_prefix: fleet
    s3_access_key: "{{ vault_offsite_access_key }}"
    s3_secret_key: "{{ vault_offsite_secret_key }}"
    verify: full
"""

RETURN = r"""
target:
  description: Label of the target.
  returned: always
  type: str
  sample: s3
location:
  description: Where this host's copies live.
  returned: always
  type: str
  sample: s3://rat-offsite/fleet/rat-lab/
shipped:
  description: Copies shipped by this run, oldest first, with what each cost.
  returned: when O(state=shipped)
  type: list
  elements: dict
  sample: [{"name": "20260216_093000", "files": 1044, "linked": 1040, "sent": 4, "resumed": 0, "bytes_sent": 52311,
            "previous": "20260215_093000", "verified": "quick", "location": "s3://rat-offsite/fleet/rat-lab/20260216_093000/"}]
to_ship:
  description: Backups that were (check mode, would be) shipped.
  returned: when O(state=shipped)
  type: list
  elements: str
  sample: ["20260216_093000"]
removed:
  description: Copies removed off-site by O(retention), with the reason.
  returned: when O(state=shipped)
  type: list
  elements: dict
  sample: [{"name": "20260101_093000", "reason": "not kept by any rule", "complete": true}]
not_shipped:
  description: Backups not shipped because O(retention) would remove them at once.
  returned: when O(state=shipped)
  type: list
  elements: dict
  sample: []
suspect:
  description:
    - Copies on the target named more than ten minutes ahead of this host's clock (made where the clock was wrong,
      or copied in by hand). O(retention) never counts them (one named a year ahead would otherwise be the newest
      that C(keep_last) keeps, and the real newest would go) and never removes them; each is warned about.
  returned: when O(state=shipped) and O(retention) is set
  type: list
  elements: dict
  sample: [{"name": "20271231_093000", "reason": "named ahead of this host's clock: suspect ..."}]
diff:
  description: With C(--diff), the target's complete copies before and after this run (see the C(diff_mode) attribute).
  returned: when O(state=shipped) in diff mode
  type: dict
  sample: {"before": "20260101_093000\n20260215_093000\n", "after": "20260215_093000\n20260216_093000\n",
           "before_header": "s3://rat-offsite/fleet/rat-lab/ (before)",
           "after_header": "s3://rat-offsite/fleet/rat-lab/ (after shipping and retention)"}
damaged:
  description:
    - Local backups not shipped because they are damaged (a file unlike the manifest), with the error.
    - One found damaged by an earlier run is not read or uploaded again (its bytes do not mend); it stays listed
      here on every run. Naming it in O(backups) tries it again.
  returned: when O(state=shipped)
  type: list
  elements: dict
  sample: [{"name": "20260214_093000", "error": "the local backup 20260214_093000 is damaged: ..."}]
already:
  description: Local backups already complete off-site (those whose last verification failed are shipped again).
  returned: when O(state=shipped)
  type: list
  elements: str
  sample: ["20260215_093000"]
bytes_sent:
  description: Bytes this run sent to the target (file contents, index and manifest).
  returned: when O(state=shipped)
  type: int
  sample: 52311
checked:
  description: Per copy verified, its name, mode, number of files and problems.
  returned: when O(state=verified)
  type: list
  elements: dict
  sample: [{"name": "20260216_093000", "mode": "full", "files": 1044, "bad": []}]
bad:
  description: "One line per problem found: C(<name>/<path>) then C(:) and the reason."
  returned: when O(state=verified)
  type: list
  elements: str
  sample: ["20260216_093000/minio/rat/a.csv: off-site size 10, shipped 12"]
remote:
  description: The complete and partial copies on the target.
  returned: always
  type: dict
  sample: {"complete": ["20260216_093000"], "partial": []}
name:
  description: The backup fetched.
  returned: when O(state=fetched)
  type: str
  sample: "20260216_093000"
path:
  description: Where it was fetched to.
  returned: when O(state=fetched)
  type: str
  sample: /var/backups/rat/20260216_093000
files:
  description: Files of the fetched backup.
  returned: when O(state=fetched)
  type: int
  sample: 1044
fetched:
  description: Files downloaded (the others were hard-linked from the newest local backup).
  returned: when O(state=fetched)
  type: int
  sample: 1044
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rat.backup.plugins.module_utils import offsite
from ansible_collections.rat.backup.plugins.module_utils.backup_root import retention
from ansible_collections.rat.backup.plugins.module_utils import s3
from ansible_collections.rat.backup.plugins.module_utils.errors import RatBackupError, exit_with


def argument_spec():
    spec = dict(
        state=dict(type="str", default="shipped", choices=["shipped", "verified", "fetched"]),
        root=dict(type="path", required=True),
        host=dict(type="str", required=True),
        target=dict(type="str", required=True, choices=["s3", "ssh"]),
        label=dict(type="str"),
        backups=dict(type="raw", default="missing"),
        name=dict(type="str", default="latest"),
        retention=dict(type="dict", default={}),
        verify=dict(type="str", default="quick", choices=["quick", "full"]),
        parallel=dict(type="int", default=4),
        bandwidth_limit_kib=dict(type="int", default=0),
        encrypt=dict(type="bool", default=False),
        recipients=dict(type="list", elements="str", default=[]),
        identity_file=dict(type="path"),
        identity=dict(type="str", no_log=True),
        age_bin=dict(type="path"),
        s3_bucket=dict(type="str"),
        s3_prefix=dict(type="str", default=""),
        ssh_host=dict(type="str"),
        ssh_port=dict(type="int", default=22),
        ssh_user=dict(type="str"),
        ssh_path=dict(type="str"),
        ssh_key_file=dict(type="path"),
        ssh_known_hosts_file=dict(type="path"),
        ssh_strict_host_key_checking=dict(type="bool", default=True),
    )
    spec.update(s3.connection_argspec("s3_"))
    spec.update(s3.transport_argspec())
    return spec


def run(module):
    p = module.params
    if p["parallel"] < 1 or p["bandwidth_limit_kib"] < 0:
        raise RatBackupError("parallel must be >= 1 and bandwidth_limit_kib >= 0")
    wanted = offsite.selection(p["backups"])
    policy = retention.check_policy(p["retention"], "rat_offsite_retention") if p["retention"] else None
    target = offsite.make_target(p, offsite.Throttle(p["bandwidth_limit_kib"] * 1024))
    crypt = offsite.make_crypt(p)
    lock = offsite.lock(p["root"]) if not module.check_mode else None
    try:
        job = offsite.Run(p["root"], target, p["label"] or p["target"], p["host"], crypt, p["parallel"], p["verify"],
                          log=module.log)
        if p["state"] == "shipped":
            result = offsite.ship(job, wanted, module.check_mode, policy=policy)
            result["changed"] = bool(result["to_ship"] or result["removed"] or result["not_shipped"])
            for item in result["damaged"]:
                module.warn(f"local backup {item['name']} not shipped to {target.location()}: {item['error']}")
            for item in result["suspect"]:
                module.warn(f"off-site copy {item['name']} at {target.location()}: {item['reason']}")
        elif p["state"] == "verified":
            result = offsite.verify(job, None if wanted == "missing" else wanted)
            result["changed"] = False
            if result["bad"]:
                raise RatBackupError(f"off-site verification found {len(result['bad'])} problem(s) at "
                                     f"{target.location()}: {'; '.join(result['bad'][:10])}",
                                     **result)
        else:
            result = offsite.fetch(job, p["name"], module.check_mode)
        result["remote"] = target.backups()
        return result
    finally:
        if lock is not None:
            os.close(lock)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_if=[("target", "s3", ["s3_bucket"]), ("target", "ssh", ["ssh_host", "ssh_path"])])
    exit_with(module, run)


if __name__ == "__main__":
    main()
