# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private parts of module_utils/offsite.py: plan, streams and age, the S3 and SSH targets."""
