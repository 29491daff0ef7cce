#!/usr/bin/env bash
# Installs the Debian packages the build, the tests and the demo need, if any is missing.
# Safe to run repeatedly; needs root (or sudo) only when something must be installed.
set -euo pipefail

packages=(etcd-server etcd-client protobuf-compiler containernetworking-plugins
          iproute2 iptables nftables iputils-ping iperf3 bridge-utils)
# One binary per package tells whether it is there.
declare -A probe=(
  [etcd-server]=/usr/bin/etcd [etcd-client]=/usr/bin/etcdctl [protobuf-compiler]=/usr/bin/protoc
  [containernetworking-plugins]=/usr/lib/cni/bridge [iproute2]=/usr/sbin/ip [iptables]=/usr/sbin/iptables
  [nftables]=/usr/sbin/nft [iputils-ping]=/usr/bin/ping [iperf3]=/usr/bin/iperf3
  [bridge-utils]=/usr/sbin/brctl
)
missing=()
for p in "${packages[@]}"; do
  [ -e "${probe[$p]}" ] || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
