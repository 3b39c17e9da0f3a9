#!/usr/bin/env bash
# Fails, listing each of them, when a line of a tracked Rust file is over 100 columns.
# rustfmt silently leaves alone the lines it cannot break (long string literals, bodies of
# macros it cannot parse), so `cargo fmt --check` alone lets such lines through.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly max_columns=100

# Taken apart from mapfile so that a failing git fails the script (set -e).
tracked=$(git ls-files -- '*.rs')
if [[ -z "${tracked}" ]]; then
    exit 0
fi
mapfile -t files <<<"${tracked}"

# rustfmt counts characters, not bytes ("—" is one column). In the C locale every awk
# (mawk, gawk, busybox) counts bytes, so the UTF-8 continuation bytes (0x80 to 0xBF)
# are dropped first and what is left counts one per character.
too_long=$(LC_ALL=C awk -v max="${max_columns}" '
    { line = $0; gsub(/[\200-\277]/, "", line) }
    length(line) > max { printf "%s:%d: %d columns\n", FILENAME, FNR, length(line) }
' "${files[@]}")

if [[ -n "${too_long}" ]]; then
    printf '%s\n' "${too_long}" >&2
    printf '%s\n' "check-line-length: the lines above are over ${max_columns} columns and" \
        "rustfmt cannot break them: split long string literals with a \\ continuation" \
        "(keep the space before the backslash) or concat!(...) for raw strings." >&2
    exit 1
fi
