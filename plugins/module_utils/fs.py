# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""File helpers every part of the collection shares: one rule per fact."""

from __future__ import annotations

import os

# Reads and copies go in 1 MiB pieces: large enough for few system calls, small enough to stay
# out of the way of other memory.
CHUNK = 1 << 20


def unlink_quietly(path):
    """Remove ``path`` if it is there; a leftover that cannot be removed is no reason to fail."""
    try:
        os.unlink(path)
    except OSError:
        pass
