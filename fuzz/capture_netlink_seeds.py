#!/usr/bin/env python3
"""Captures real rtnetlink messages from the kernel as seeds for the `netlink` fuzz target.

Run as root: `python3 fuzz/capture_netlink_seeds.py fuzz/seeds/netlink`. It creates a private
network namespace (a veth pair as underlay and the devices flanneld makes: a vxlan device with
addresses, routes, a blackhole route, permanent neighbours and FDB entries, documentation and
benchmark addresses only, no route out), dumps them the way flannel-kernel's observer does,
records the notifications the monitor and the on-demand miss listener get while a few of them
are removed and one ping (to an address inside the namespace) misses, and writes each message
as one file. The namespace is removed afterwards, also on failure.
"""

import os
import select
import socket
import struct
import subprocess
import sys
import time

NS = f"flannel-fuzz-seeds-{os.getpid()}"
RTM_NAMES = {16: "newlink", 17: "dellink", 20: "newaddr", 21: "deladdr", 24: "newroute",
             25: "delroute", 28: "newneigh", 29: "delneigh", 30: "getneigh"}
# RTMGRP_LINK | NEIGH | IPV4_IFADDR | IPV4_ROUTE | IPV6_IFADDR | IPV6_ROUTE
GROUPS = 0x1 | 0x4 | 0x10 | 0x40 | 0x100 | 0x400

SETUP = """
link add veth0 type veth peer name veth1
addr add 192.0.2.1/24 dev veth0
link set veth1 up
link set veth0 up
link add flannel.1 type vxlan id 1 local 192.0.2.1 dev veth0 dstport 8472 nolearning l2miss l3miss
addr add 198.18.1.0/32 dev flannel.1
addr add 2001:db8:100:1::/128 dev flannel.1
link set flannel.1 up
route add 198.18.2.0/24 via 198.18.2.0 dev flannel.1 onlink
route add 2001:db8:100:2::/64 via 2001:db8:100:2:: dev flannel.1 onlink
route add blackhole 198.18.0.0/16
neigh add 198.18.3.0 lladdr 0e:00:00:00:00:03 dev flannel.1 nud permanent
neigh add 2001:db8:100:3:: lladdr 0e:00:00:00:00:03 dev flannel.1 nud permanent
"""
TEARDOWN = """
neigh del 198.18.3.0 dev flannel.1
route del 198.18.2.0/24 via 198.18.2.0 dev flannel.1 onlink
route del 2001:db8:100:2::/64
route del blackhole 198.18.0.0/16
addr del 198.18.1.0/32 dev flannel.1
link del flannel.1
"""


def ip(*args):
    subprocess.run(["ip", *args], check=True)


def messages(buf):
    while len(buf) >= 16:
        length, kind = struct.unpack_from("=IH", buf)
        if length < 16 or length > len(buf):
            return
        yield kind, buf[:length]
        buf = buf[(length + 3) & ~3:]


def dump(sock, kind, family, header_len):
    payload = struct.pack("=B", family) + bytes(header_len - 1)
    sock.send(struct.pack("=IHHII", 16 + len(payload), kind, 0x1 | 0x300, 1, 0) + payload)
    out = []
    while True:
        for k, m in messages(sock.recv(1 << 20)):
            if k == 3:  # NLMSG_DONE
                return out
            out.append(m)


def capture(dest):
    """Runs inside the namespace."""
    for line in SETUP.strip().splitlines():
        ip(*line.split())
    subprocess.run(["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "flannel.1",
                    "dst", "192.0.2.3", "self", "permanent"], check=True)
    subprocess.run(["bridge", "fdb", "add", "0e:00:00:00:00:03", "dev", "flannel.1",
                    "dst", "192.0.2.3", "self", "permanent"], check=True)
    subprocess.run(["sysctl", "-qw", "net.ipv4.neigh.flannel/1.app_solicit=3"], check=True)
    seeds = {}
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    mon = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    mon.bind((0, GROUPS))
    # Dumps, as the observer reads them (AF_UNSPEC, AF_BRIDGE for the FDB).
    for kind, family, hlen, tag in [(18, 0, 16, "dump"), (22, 0, 8, "dump"),
                                    (26, 2, 12, "dump-v4"), (26, 10, 12, "dump-v6"),
                                    (30, 0, 12, "dump"), (30, 7, 12, "dump-bridge")]:
        for i, m in enumerate(dump(sock, kind, family, hlen)):
            seeds.setdefault(f"{RTM_NAMES.get(m[4], m[4])}-{tag}-{i}", m)
    # A miss: a ping to a peer subnet whose gateway has no neighbour entry.
    subprocess.run(["ping", "-c", "1", "-W", "1", "198.18.2.5"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    for line in TEARDOWN.strip().splitlines():
        ip(*line.split())
    deadline = time.monotonic() + 2
    n = 0
    while time.monotonic() < deadline and select.select([mon], [], [], 0.2)[0]:
        for k, m in messages(mon.recv(1 << 20)):
            seeds[f"{RTM_NAMES.get(k, k)}-event-{n}"] = m
            n += 1
    for name, m in seeds.items():
        with open(os.path.join(dest, name), "wb") as f:
            f.write(m)
    print(f"{len(seeds)} messages written to {dest}")


def main():
    if sys.argv[1] == "--inside":
        capture(sys.argv[2])
        return
    dest = os.path.abspath(sys.argv[1])
    os.makedirs(dest, exist_ok=True)
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", NS, sys.executable, os.path.abspath(__file__),
                        "--inside", dest], check=True)
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)


if __name__ == "__main__":
    main()
