"""Print, as a JSON list, the commands of README.md's block marked <!-- readme_walkthrough -->.

The block is the fenced code right after the marker; each non-empty line is one command, run as
written (comments included: the shell drops them).
"""

from __future__ import annotations

import json
import sys

MARKER = "<!-- readme_walkthrough -->"


def block(text):
    lines = text.splitlines()
    start = lines.index(MARKER) + 1
    if not lines[start].startswith("```"):
        raise SystemExit(f"README.md: the line after {MARKER} is not a code fence")
    end = lines.index("```", start + 1)
    return [line for line in lines[start + 1:end] if line.strip()]


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        print(json.dumps(block(handle.read())))
