#!/usr/bin/env bash
# Installs the Debian packages that the build, the tests and the demo use, when any is missing.
# Each package is probed by the file the project actually uses from it (a binary, a header or
# a .proto file), not by the package database, so a half-installed or hand-removed piece is
# noticed too. Safe to run repeatedly; needs root (or sudo) only when something must be installed.
#
# Usage: scripts/install-deps.sh [build|all|vm]     (default: all)
#   build  what `cargo build` needs (used by `make test-unit`, which runs as any user)
#   all    build + what the demo and the privileged tests run
#   vm     what the Debian-kernel VM harness needs (`make test-kernels`, docs/kernels.md); not in all
set -euo pipefail

# package → the file whose absence means the package is missing
declare -A probe=(
  # etcd-client's build script runs protoc on etcd's .proto files, which import Google's
  # well-known types: protoc itself is in protobuf-compiler, the imported .proto files only in
  # libprotobuf-dev (without it: "google/protobuf/descriptor.proto: File not found").
  [protobuf-compiler]=/usr/bin/protoc
  [libprotobuf-dev]=/usr/include/google/protobuf/descriptor.proto
  # Crates that build C code (ring) need a C compiler.
  [gcc]=/usr/bin/cc
  # The demo and the tests.
  [etcd-server]=/usr/bin/etcd
  [etcd-client]=/usr/bin/etcdctl
  [containernetworking-plugins]=/usr/lib/cni/host-local
  [iproute2]=/usr/sbin/ip
  [iptables]=/usr/sbin/iptables-restore
  [nftables]=/usr/sbin/nft
  [iputils-ping]=/usr/bin/ping
  [iperf3]=/usr/bin/iperf3
  [procps]=/usr/sbin/sysctl
  [util-linux]=/usr/bin/setsid
  # flanneld's and flannelctl doctor's vxlan checksum-offload check and fix.
  [ethtool]=/usr/sbin/ethtool
  # The VM harness (crates/vmkernel): qemu boots Debian's kernel, busybox is the initramfs,
  # depmod indexes the unpacked modules, cpio packs the initramfs.
  [qemu-system-x86]=/usr/bin/qemu-system-x86_64
  [busybox-static]=/bin/busybox
  [kmod]=/usr/sbin/depmod
  [cpio]=/usr/bin/cpio
  # The ipsec backend's tests in the guest: charon itself, its VICI plugin (shipped with
  # swanctl) and the AES-GCM/ECP crypto Flannel's default ESP proposal needs.
  [strongswan-charon]=/usr/lib/ipsec/charon
  [strongswan-swanctl]=/usr/lib/ipsec/plugins/libstrongswan-vici.so
  [libstrongswan-standard-plugins]=/usr/lib/ipsec/plugins/libstrongswan-gcm.so
  # The wireguard tests: `wg show` on the devices, `wg set` for a node set up as Go Flannel
  # would, and tcpdump to see what the underlay carries.
  [wireguard-tools]=/usr/bin/wg
  [tcpdump]=/usr/bin/tcpdump
)
build_packages=(protobuf-compiler libprotobuf-dev gcc)
run_packages=(etcd-server etcd-client containernetworking-plugins iproute2 iptables nftables
              iputils-ping iperf3 procps util-linux ethtool)
vm_packages=(qemu-system-x86 busybox-static kmod cpio
             strongswan-charon strongswan-swanctl libstrongswan-standard-plugins
             wireguard-tools tcpdump)

case "${1:-all}" in
  build) packages=("${build_packages[@]}") ;;
  all) packages=("${build_packages[@]}" "${run_packages[@]}") ;;
  vm) packages=("${vm_packages[@]}") ;;
  *) echo "usage: $0 [build|all|vm]" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  [ -e "${probe[$p]}" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: missing: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=sudo
  else
    echo "install-deps: not root and no sudo: install them first, e.g. as root:" >&2
    echo "  apt-get update && apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

still=()
for p in "${missing[@]}"; do
  [ -e "${probe[$p]}" ] || still+=("$p (${probe[$p]})")
done
if [ ${#still[@]} -gt 0 ]; then
  echo "install-deps: installed, but still missing: ${still[*]}" >&2
  exit 1
fi
