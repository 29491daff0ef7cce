#!/usr/bin/env python3
"""Plot the vxlan modes' entries per host (docs/vxlan-modes.png) from the CSV that
`flannel-bench modes --csv bench/plots/vxlan_modes.csv` writes.

Usage: python3 bench/plots/vxlan_modes.py [CSV] [PNG]
Needs matplotlib (`pip install matplotlib`).
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src = sys.argv[1] if len(sys.argv) > 1 else "bench/plots/vxlan_modes.csv"
dst = sys.argv[2] if len(sys.argv) > 2 else "docs/vxlan-modes.png"

rows = []
with open(src, newline="") as f:
    for r in csv.DictReader(f):
        rows.append({k: (v if k == "mode" else int(v)) for k, v in r.items()})

modes = ["default", "on-demand"]
colours = {"default": "tab:blue", "on-demand": "tab:orange"}
hosts = sorted({r["hosts"] for r in rows})
pods = sorted({r["pods"] for r in rows})
max_hosts, max_pods = max(hosts), max(pods)

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))


def series(mode, key, value):
    """(x, neighbours + FDB) of `mode`'s rows whose `key` equals `value`."""
    other = "pods" if key == "hosts" else "hosts"
    pts = sorted((r for r in rows if r["mode"] == mode and r[key] == value),
                 key=lambda r: r[other])
    return [r[other] for r in pts], [r["neigh"] + r["fdb"] for r in pts]


# Left: entries vs remote hosts. The default mode is the same whatever the traffic.
x, y = series("default", "pods", max_pods)
left.plot(x, y, "o-", color=colours["default"], lw=2.5,
          label="default (any traffic, also none)")
styles = ["v:", "s--", "o-"]
for style, p in zip(styles, [0, 1, max_pods] if max_pods > 1 else pods):
    x, y = series("on-demand", "pods", p)
    left.plot(x, y, style, color=colours["on-demand"],
              label=f"on-demand, {p} pod(s) contacted per remote host")
left.set_xlabel("remote hosts")
left.set_ylabel("neighbours + FDB entries on one host")
left.set_title("vs remote hosts")
left.set_xticks(hosts)
left.grid(alpha=0.3)
left.legend(fontsize=8)

# Right: entries vs pods contacted per remote host, at the largest number of hosts.
for mode in modes:
    x, y = series(mode, "hosts", max_hosts)
    right.plot(x, y, "o-", color=colours[mode], label=mode)
right.set_xlabel("pods contacted per remote host")
right.set_ylabel("neighbours + FDB entries on one host")
right.set_title(f"vs pods contacted ({max_hosts} remote hosts)")
right.set_xticks(pods)
right.grid(alpha=0.3)
right.legend(fontsize=8)

fig.suptitle("flannel-rs vxlan: flannel.1 neighbour + FDB entries on one host, default vs on-demand")
fig.tight_layout()
fig.savefig(dst, dpi=110)
print(f"wrote {dst}")
