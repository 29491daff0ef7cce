#!/usr/bin/env bash
# `make test-unit`: every test that needs neither root nor a service: the unit tests in each
# crate's src/ (lib and bins) and each integration test file under crates/*/tests and
# bench/tests that does not need root, a real etcd or a VM. A test file needs them when it (or
# the tests/common/mod.rs it includes) calls `require_root`, starts an `EtcdServer` or boots a
# VM (`flannel_vmkernel`, `vm::in_debian_kernel`); such files run only in `make test`.
#
# Usage: scripts/unit-tests.sh [--list]      (--list: print which files run where, run nothing)
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
CARGO=${CARGO:-cargo}

needs_privileges() {
  local f=$1 common
  common="$(dirname "$f")/common/mod.rs"
  grep -qE 'require_root|EtcdServer|flannel_vmkernel|in_debian_kernel' "$f" && return 0
  grep -qE '^\s*mod common;' "$f" && [ -f "$common" ] && grep -qE 'require_root|EtcdServer|flannel_vmkernel|in_debian_kernel' "$common" && return 0
  return 1
}

# package name of the crate a tests/ file belongs to
package_of() {
  sed -nE 's/^name\s*=\s*"([^"]+)".*/\1/p;/^\[(dependencies|lib|bin|features)/q' "$(dirname "$(dirname "$1")")/Cargo.toml" | head -n1
}

declare -A unit
for f in crates/*/tests/*.rs bench/tests/*.rs; do
  [ -f "$f" ] || continue
  if needs_privileges "$f"; then
    [ "${1:-}" = --list ] && echo "make test only: $f"
    continue
  fi
  [ "${1:-}" = --list ] && echo "make test-unit:  $f"
  pkg=$(package_of "$f")
  unit[$pkg]+=" --test $(basename "$f" .rs)"
done
[ "${1:-}" = --list ] && exit 0

set -x
$CARGO test --workspace --lib --bins
for pkg in "${!unit[@]}"; do
  # shellcheck disable=SC2086
  $CARGO test -p "$pkg" ${unit[$pkg]}
done
