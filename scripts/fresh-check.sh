#!/usr/bin/env bash
# Proves that the README's commands work on a new machine: runs `make <target>` (default: demo)
# in a clean clone of this checkout's HEAD, inside a replica of a brand-new machine of this
# project's kind.
#
# The replica is `debootstrap --variant=minbase bookworm` plus exactly the Debian packages of
# the machine image (scripts/fresh-machine/packages.txt) and the image's apt configuration:
# nothing this machine gained by hand. It is built once and cached under $FRESH_CACHE
# (default /var/tmp/flannel-rs-fresh), keyed by the package list and the replica's recipe. Every run
# starts from the pristine replica (an overlay whose upper layer is thrown away), so what one
# run installs never helps the next. The host's Rust toolchain (~/.rustup, ~/.cargo) is bound
# in, as the image ships it; /run and /tmp are private.
#
# What it catches: with libprotobuf-dev taken out of scripts/install-deps.sh, `make demo` on the
# replica stops in etcd-client's build script ("google/protobuf/descriptor.proto: File not
# found") and fresh-check fails with those lines, while the same build passes on any machine
# that once had the package installed by hand.
#
# Usage: scripts/fresh-check.sh [make-target ...]      (root; e.g. `demo`, `test`, `test-unit`)
#   FRESH_USER=1   run the targets as an unprivileged user (for `test-unit`), after root has
#                  installed the build packages (`scripts/install-deps.sh build`)
#   FRESH_KEEP=1   keep the run's overlay and log for a look afterwards
#   FRESH_AFTER=F  then run the clone's shell script F (a path relative to the checkout), as
#                  root: e.g. scripts/readme-lab-check.sh, the README's lab commands as written
set -euo pipefail

top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
cache=${FRESH_CACHE:-/var/tmp/flannel-rs-fresh}
list="$top/scripts/fresh-machine/packages.txt"
mirror=${FRESH_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(demo)

die() { echo "fresh-check: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, mounts, network namespaces)"

# Bump when build_base changes what it makes: the cache key is the package list plus this.
replica_version=1
key=$( { cat "$list"; echo "$replica_version $suite $mirror"; } | sha256sum | cut -c1-16)
base="$cache/base-$key"

# --- the replica of a new machine, built once ------------------------------------------------
build_base() {
  command -v debootstrap >/dev/null || {
    echo "fresh-check: installing debootstrap on this host"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }
  }
  local tmp="$base.tmp" log="$cache/base-$key.log"
  rm -rf "$tmp"; mkdir -p "$tmp"
  echo "fresh-check: building the replica of a new machine in $base (once; log: $log)"
  # In a private mount namespace: package scripts need /proc, /dev and /dev/pts, and nothing
  # mounted for them may outlive the build. A separate bash, so that `set -e` holds throughout.
  if ! unshare --mount --propagation private bash -euo pipefail -s "$tmp" "$suite" "$mirror" "$list" \
       > "$log" 2>&1 <<'BUILD'
    tmp=$1 suite=$2 mirror=$3 list=$4
    debootstrap --variant=minbase "$suite" "$tmp" "$mirror"
    mount -t proc proc "$tmp/proc"
    mount --rbind /dev "$tmp/dev"
    mount --rbind /sys "$tmp/sys"
    # The image's apt configuration: its sources and its settings (e.g. snapshot mirrors whose
    # Release files are past their Valid-Until date).
    rm -f "$tmp/etc/apt/sources.list"
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
             /etc/apt/apt.conf.d/99*; do
      if [ -f "$f" ]; then cp "$f" "$tmp$f"; fi
    done
    # No service starts inside the replica while packages are installed.
    printf '#!/bin/sh\nexit 101\n' > "$tmp/usr/sbin/policy-rc.d"; chmod +x "$tmp/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf "$tmp/etc/resolv.conf"
    chroot "$tmp" apt-get update -qq
    # Every image package bookworm has by that name (a few come from repositories the replica
    # cannot reach, e.g. nodesource's nodejs build; Debian's own package of that name stands in).
    chroot "$tmp" apt-cache pkgnames | sort -u > "$tmp/.available"
    grep -vE '^\s*(#|$)' "$list" | sort -u | comm -12 - "$tmp/.available" > "$tmp/.wanted"
    grep -vE '^\s*(#|$)' "$list" | sort -u | comm -23 - "$tmp/.available" > "$tmp/.unavailable"
    echo "image packages not in $suite's archive (skipped): $(tr '\n' ' ' < "$tmp/.unavailable")"
    # shellcheck disable=SC2046
    DEBIAN_FRONTEND=noninteractive chroot "$tmp" apt-get install -y -q --no-install-recommends \
      $(cat "$tmp/.wanted")
    chroot "$tmp" apt-get clean
    rm -rf "$tmp/var/lib/apt/lists/"*   # a new machine has no package lists until `apt-get update`
BUILD
  then
    tail -n 40 "$log" >&2
    die "building the replica failed (log: $log)"
  fi
  touch "$tmp/.complete"
  rm -rf "$base"; mv "$tmp" "$base"
  # Older replicas (another package list or script version) are of no use any more.
  find "$cache" -maxdepth 1 -name 'base-*' ! -name "base-$key" ! -name "base-$key.*" -exec rm -rf {} + 2>/dev/null || true
}
mkdir -p "$cache"
[ -e "$base/.complete" ] || build_base

# --- one run on a pristine copy ---------------------------------------------------------------
[ -z "$(git -C "$top" status --porcelain --untracked-files=no)" ] \
  || echo "fresh-check: note: uncommitted changes are not part of the check (it clones HEAD)"
run=$(mktemp -d "$cache/run.XXXXXX")
log="$run/make.log"
mkdir -p "$run/upper" "$run/work" "$run/root"
cleanup() {
  if [ "${FRESH_KEEP:-}" = 1 ]; then echo "fresh-check: kept $run"; else rm -rf "$run"; fi
}
trap cleanup EXIT

# What runs inside the replica: the clone, optionally an ordinary user, then make.
{
  echo 'set -euo pipefail'
  echo 'export PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  if [ "${FRESH_USER:-}" = 1 ]; then
    # An ordinary user with its own CARGO_HOME, using the image's toolchain.
    # The build packages are installed by root first (what install-deps tells a user to do).
    echo 'useradd -m -u 4242 dev; chmod 755 /root; chown -R dev: /src; /src/scripts/install-deps.sh build'
    printf 'cd /src && exec setpriv --reuid=4242 --regid=4242 --init-groups env HOME=/home/dev CARGO_HOME=/home/dev/.cargo RUSTUP_HOME=/root/.rustup make'
  else
    printf 'cd /src && exec make'
  fi
  printf ' %q' "${targets[@]}"; echo
} > "$run/inside.sh"
if [ -n "${FRESH_AFTER:-}" ]; then
  sed -i 's/^\(cd \/src && \)exec /\1/' "$run/inside.sh"
  printf 'cd /src && bash -euo pipefail %q\n' "$FRESH_AFTER" >> "$run/inside.sh"
fi

started=$(date +%s)
echo "fresh-check: make ${targets[*]} in a clean clone of $(git -C "$top" rev-parse --short HEAD), on the replica (log: $log)"
set +e
unshare --mount --propagation private bash -euo pipefail -c '
  base=$1 run=$2 top=$3
  r=$run/root
  mount -t overlay overlay -o "lowerdir=$base,upperdir=$run/upper,workdir=$run/work" "$r"
  mount -t proc proc "$r/proc"
  mount --rbind /sys "$r/sys"; mount --make-rslave "$r/sys"
  mount --rbind /dev "$r/dev"; mount --make-rslave "$r/dev"
  mount -t tmpfs -o mode=755 tmpfs "$r/run"
  mount -t tmpfs -o mode=1777 tmpfs "$r/tmp"
  cp /etc/resolv.conf "$r/etc/resolv.conf"
  # The machine'"'"'s trust store, as its image has it (it may trust a local egress CA that the
  # package registries are reached through).
  if [ -d /usr/local/share/ca-certificates ]; then
    mkdir -p "$r/usr/local/share/ca-certificates"
    cp -a /usr/local/share/ca-certificates/. "$r/usr/local/share/ca-certificates/"
  fi
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    mkdir -p "$r/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
  fi
  mkdir -p "$r/root/.rustup" "$r/root/.cargo"
  mount --bind "$HOME/.rustup" "$r/root/.rustup"
  mount --bind "$HOME/.cargo" "$r/root/.cargo"
  git clone -q --no-local "$top" "$r/src"
  cp "$run/inside.sh" "$r/inside.sh"
  exec chroot "$r" /usr/bin/env -i HOME=/root TERM=dumb CI="${CI:-}" /bin/bash /inside.sh
' fresh-check "$base" "$run" "$top" > "$log" 2>&1
rc=$?
set -e
took=$(( $(date +%s) - started ))
if [ $rc -ne 0 ]; then
  echo "fresh-check: FAILED (exit $rc after ${took}s): make ${targets[*]} on a new machine. Last lines:" >&2
  tail -n 60 "$log" >&2
  exit 1
fi
tail -n 5 "$log"
echo "fresh-check: make ${targets[*]} passed on a new machine in ${took}s"
