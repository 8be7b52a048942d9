"""Measures an Ansible module's memory: copied behind a "#!<python>" line and used as ansible_python_interpreter.

Runs the same Python on the given arguments (the module), then appends the peak resident set size
of that child, in KiB, to the file named by RAT_PEAK_RSS_FILE, and exits with the child's code.
"""
import os
import resource
import subprocess
import sys

rc = subprocess.call([sys.executable] + sys.argv[1:])
with open(os.environ["RAT_PEAK_RSS_FILE"], "a", encoding="ascii") as out:
    out.write(f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\n")
sys.exit(rc)
