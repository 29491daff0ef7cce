#!/usr/bin/env bash
# A three-host flannel-rs cluster on this machine, once with vxlan and once with host-gw,
# then torn down again.
#
# Topology (all in network namespaces created here; the machine's own interfaces are never
# touched and no namespace has a route out): a switch namespace with a bridge, an etcd
# namespace and three host namespaces joined to the bridge by veth pairs on 192.0.2.0/24.
# The pod network is 198.18.0.0/16. Each host gets one pod: a namespace behind a `cni0`
# bridge, addressed from the host's leased subnet (what the flannel CNI plugin will do).
#
# It shows, per backend: the leases, subnet.env, the kernel entries flanneld programmed, an
# all-pairs pod ping matrix; then a lease deleted by hand being re-acquired (Flannel would
# exit) and a restart keeping the subnet without losing a ping.
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${FLANNELD:-target/release/flanneld}
[ -x "$BIN" ] || { echo "build first: cargo build --release (or make demo)"; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "the demo creates network namespaces: run it as root"; exit 1; }
BIN=$(realpath "$BIN")

ID="frsdemo$$"
WORK=$(mktemp -d "/tmp/${ID}.XXXX")
NS_SW="${ID}-sw"; NS_ETCD="${ID}-etcd"
HOSTS=(1 2 3)
PIDS=()
ETCD_EP="http://192.0.2.254:2379"
PREFIX=/coreos.com/network

cleanup() {
  # Only the script itself cleans up (background subshells inherit this trap).
  [ "$BASHPID" = "$$" ] || return 0
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  for ns in $(ip netns list | awk '{print $1}' | grep "^${ID}-"); do ip netns del "$ns"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
etcdctl_() { ip netns exec "$NS_ETCD" env ETCDCTL_API=3 etcdctl --endpoints="$ETCD_EP" "$@"; }
hx() { local h=$1; shift; ip netns exec "${ID}-h$h" "$@"; }

attach() { # namespace, address, interface name inside
  local ns=$1 addr=$2 ifname=$3 peer="v${RANDOM}${RANDOM}"
  ip link add "$peer" type veth peer name "${peer}x"
  ip link set "$peer" netns "$NS_SW"; ip -n "$NS_SW" link set "$peer" master br0 up
  ip link set "${peer}x" netns "$ns"; ip -n "$ns" link set "${peer}x" name "$ifname"
  ip -n "$ns" addr add "$addr/24" dev "$ifname"
  ip -n "$ns" link set "$ifname" up; ip -n "$ns" link set lo up
}

wait_file() { for _ in $(seq 150); do [ -s "$1" ] && return 0; sleep 0.1; done; echo "timed out waiting for $1"; return 1; }
env_of() { sed -n "s/^$2=//p" "$WORK/$1/h$3/subnet.env"; }

start_flanneld() { # run, host
  local run=$1 h=$2
  mkdir -p "$WORK/$run/h$h"
  ip netns exec "${ID}-h$h" "$BIN" --etcd-endpoints="$ETCD_EP" --iface=eth0 --ip-masq \
    --subnet-file="$WORK/$run/h$h/subnet.env" >>"$WORK/$run/h$h/flanneld.log" 2>&1 &
  PIDS+=($!)
  eval "PID_H$h=$!"
}

add_pod() { # run, host: a pod namespace behind cni0, like the flannel CNI plugin + bridge
  local run=$1 h=$2 pod="${ID}-h$h-pod" sub mtu gw ip len
  sub=$(env_of "$run" FLANNEL_SUBNET "$h"); mtu=$(env_of "$run" FLANNEL_MTU "$h")
  gw=${sub%/*}; len=${sub#*/}; ip="${gw%.*}.$(( ${gw##*.} + 1 ))"
  ip netns add "$pod"; ip -n "$pod" link set lo up
  hx "$h" ip link add cni0 type bridge 2>/dev/null || true
  hx "$h" ip addr replace "$gw/$len" dev cni0; hx "$h" ip link set cni0 mtu "$mtu" up
  local hostend="vp${h}${RANDOM}"
  ip link add "$hostend" type veth peer name eth0 netns "$pod"
  ip link set "$hostend" netns "${ID}-h$h"
  hx "$h" ip link set "$hostend" master cni0 mtu "$mtu" up
  ip -n "$pod" link set eth0 mtu "$mtu" up
  ip -n "$pod" addr add "$ip/$len" dev eth0
  ip -n "$pod" route add default via "$gw"
  echo "$ip" > "$WORK/$run/h$h/pod-ip"
}

matrix() { # run
  local run=$1
  printf '\n  %-22s' "ping from \\ to"
  for b in "${HOSTS[@]}"; do printf '%-22s' "h$b $(cat "$WORK/$run/h$b/pod-ip")"; done; echo
  local bad=0
  for a in "${HOSTS[@]}"; do
    printf '  %-22s' "h$a $(cat "$WORK/$run/h$a/pod-ip")"
    for b in "${HOSTS[@]}"; do
      local dst; dst=$(cat "$WORK/$run/h$b/pod-ip")
      local out; out=$(ip netns exec "${ID}-h$a-pod" ping -c 3 -i 0.2 -W 1 -q "$dst" 2>/dev/null || true)
      local rx; rx=$(echo "$out" | sed -n 's/.* \([0-9]*\) received.*/\1/p')
      local rtt; rtt=$(echo "$out" | sed -n 's/^rtt.* = [0-9.]*\/\([0-9.]*\)\/.*/\1/p')
      if [ "${rx:-0}" -ge 1 ]; then printf '%-22s' "ok ${rtt} ms"; else printf '%-22s' "FAIL"; bad=1; fi
    done; echo
  done
  return $bad
}

run_backend() { # backend
  local backend=$1 run=$1
  step "backend $backend: network config"
  etcdctl_ del --prefix "$PREFIX/subnets/" >/dev/null
  local config="{\"Network\":\"198.18.0.0/16\",\"SubnetLen\":24,\"Backend\":{\"Type\":\"$backend\"}}"
  etcdctl_ put "$PREFIX/config" "$config" >/dev/null
  echo "  $config"

  step "backend $backend: starting flanneld on every host"
  for h in "${HOSTS[@]}"; do start_flanneld "$run" "$h"; done
  for h in "${HOSTS[@]}"; do wait_file "$WORK/$run/h$h/subnet.env"; done
  printf '\n  %-6s %-14s %-18s %s\n' HOST PUBLIC_IP FLANNEL_SUBNET FLANNEL_MTU
  for h in "${HOSTS[@]}"; do
    printf '  %-6s %-14s %-18s %s\n' "h$h" "192.0.2.$h" "$(env_of "$run" FLANNEL_SUBNET "$h")" "$(env_of "$run" FLANNEL_MTU "$h")"
  done
  echo; echo "  leases in etcd:"
  etcdctl_ get --prefix "$PREFIX/subnets/" | paste - - | sed 's/^/    /'
  for h in "${HOSTS[@]}"; do add_pod "$run" "$h"; done
  sleep 0.5
  step "backend $backend: what flanneld programmed on h1"
  if [ "$backend" = vxlan ]; then
    hx 1 ip -d link show flannel.1 | sed -n '1,3p' | sed 's/^/    /'
    hx 1 ip route show dev flannel.1 | sed 's/^/    route: /'
    hx 1 ip neigh show dev flannel.1 | sed 's/^/    neigh: /'
    hx 1 bridge fdb show dev flannel.1 | grep dst | sed 's/^/    fdb:   /'
  else
    hx 1 ip route show proto boot | sed 's/^/    route: /'
  fi
  step "backend $backend: all-pairs pod ping"
  matrix "$run" || { echo "FAIL: some pods cannot reach each other"; exit 1; }

  step "backend $backend: deleting h2's lease by hand (Flannel would exit)"
  local sub key
  sub=$(env_of "$run" FLANNEL_SUBNET 2); key="$PREFIX/subnets/${sub%.1/24}.0-24"
  etcdctl_ del "$key" >/dev/null
  for _ in $(seq 50); do etcdctl_ get "$key" | grep -q . && break; sleep 0.1; done
  etcdctl_ get "$key" | grep -q . || { echo "FAIL: lease not re-acquired"; exit 1; }
  echo "  h2 re-acquired $key; flanneld still running: $(kill -0 "$PID_H2" && echo yes)"

  step "backend $backend: restarting flanneld on h1 while h2's pod pings h1's pod 100 times a second"
  local dst; dst=$(cat "$WORK/$run/h1/pod-ip")
  ip netns exec "${ID}-h2-pod" ping -c 300 -i 0.01 -W 1 -q "$dst" >"$WORK/$run/ping.txt" 2>&1 &
  local ping=$!
  sleep 0.5; kill "$PID_H1"; wait "$PID_H1" 2>/dev/null || true
  start_flanneld "$run" 1
  wait "$ping" || true
  local summary; summary=$(grep -E 'packets transmitted' "$WORK/$run/ping.txt")
  echo "  $summary"
  case "$summary" in
    "300 packets transmitted, 300 received"*) ;;
    *) echo "FAIL: pings were lost across the restart"; exit 1 ;;
  esac
  echo "  h1 subnet after restart: $(env_of "$run" FLANNEL_SUBNET 1)"

  local pids=("$PID_H1" "$PID_H2" "$PID_H3")
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  for h in "${HOSTS[@]}"; do ip netns del "${ID}-h$h-pod"; hx "$h" ip link del cni0 2>/dev/null || true; done
  # host-gw after vxlan on the same hosts: remove the vxlan device like an operator would.
  for h in "${HOSTS[@]}"; do hx "$h" ip link del flannel.1 2>/dev/null || true; done
}

step "building the underlay: switch, etcd and ${#HOSTS[@]} hosts on 192.0.2.0/24"
ip netns add "$NS_SW"; ip -n "$NS_SW" link add br0 type bridge; ip -n "$NS_SW" link set br0 up
ip netns add "$NS_ETCD"; attach "$NS_ETCD" 192.0.2.254 eth0
for h in "${HOSTS[@]}"; do
  ip netns add "${ID}-h$h"; attach "${ID}-h$h" "192.0.2.$h" eth0
  hx "$h" sysctl -qw net.ipv4.ip_forward=1
done

step "starting etcd in $NS_ETCD"
ip netns exec "$NS_ETCD" etcd --name demo --data-dir "$WORK/etcd" \
  --listen-client-urls "$ETCD_EP" --advertise-client-urls "$ETCD_EP" \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster demo=http://127.0.0.1:2380 >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do etcdctl_ endpoint health >/dev/null 2>&1 && break; sleep 0.2; done

run_backend vxlan
run_backend host-gw

step "demo OK; tearing down"
