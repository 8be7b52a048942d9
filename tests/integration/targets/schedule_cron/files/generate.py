# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Complete-looking backups for retention tests: COUNT names ending at NEWEST, STEP seconds apart.

    generate.py ROOT NEWEST(YYYYmmdd_HHMMSS) STEP_SECONDS COUNT   prints the names, oldest first, as JSON
"""

import datetime
import json
import os
import sys

root, newest, step, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
last = datetime.datetime.strptime(newest, "%Y%m%d_%H%M%S")
names = [(last - datetime.timedelta(seconds=step * k)).strftime("%Y%m%d_%H%M%S") for k in range(count)][::-1]
for name in names:
    os.makedirs(os.path.join(root, name), mode=0o700)
    with open(os.path.join(root, name, "manifest.json"), "w", encoding="utf-8") as handle:
        # A manifest retention accepts as intact (format 1): a damaged one counts toward no rule.
        handle.write('{"format": 1}\n')
print(json.dumps(names))
