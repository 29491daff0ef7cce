#!/usr/bin/env bash
# Runs the README's lab commands (the `sh` block under "## The demo and the lab") exactly as
# written, one after the other, and fails on the first that fails. `make fresh-check` runs it
# on the replica of a new machine after `make demo`, so the README cannot drift from what the
# lab does. Root (the lab creates network namespaces); needs the release binaries.
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"

block=$(awk '
  /^## The demo and the lab/ { section = 1; next }
  section && /^## / { exit }
  section && /^```sh/ { inblock = 1; next }
  section && inblock && /^```/ { exit }
  section && inblock { print }
' README.md)
[ -n "$block" ] || { echo "readme-lab-check: no sh block under '## The demo and the lab' in README.md" >&2; exit 1; }

status=0
while IFS= read -r line; do
  cmd=${line%%#*}                                  # the comment after the command
  [ -n "${cmd//[[:space:]]/}" ] || continue
  echo "+ $cmd"
  if ! eval "$cmd"; then
    echo "readme-lab-check: README command failed: $cmd" >&2
    status=1
    break
  fi
done <<< "$block"

# Whatever happened, leave no lab behind.
if [ $status -ne 0 ]; then
  PATH="$PWD/target/release:$PATH" flannelctl lab down >/dev/null 2>&1 || true
fi
exit $status
