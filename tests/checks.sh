# shellcheck shell=bash
# shellcheck disable=SC2034  # passed and failed are read by the scripts that source this file
# Sourced by tests/package.sh and tests/ee_image.sh: `check NAME CMD...` runs CMD, prints one
# "ok"/"FAIL" line (with the end of its output on failure) and counts it in passed/failed.
passed=0
failed=0

check() {
    local name="$1" out
    shift
    if out="$("$@" 2>&1)"; then
        passed=$((passed + 1))
        printf 'ok    %s\n' "$name"
    else
        failed=$((failed + 1))
        printf 'FAIL  %s\n%s\n' "$name" "$(printf '%s\n' "$out" | tail -n 30 | sed 's/^/      /')"
    fi
}
