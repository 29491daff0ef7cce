#!/usr/bin/env python3
"""Plot pod-to-pod throughput and CPU per GB per backend (docs/udp-throughput.png) from the
CSV that `flannel-bench throughput --csv bench/plots/throughput.csv` writes.

Usage: python3 bench/plots/throughput.py [CSV] [PNG]
Needs matplotlib (`pip install matplotlib`).
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src = sys.argv[1] if len(sys.argv) > 1 else "bench/plots/throughput.csv"
dst = sys.argv[2] if len(sys.argv) > 2 else "docs/udp-throughput.png"


def num(v):
    return float(v) if v != "" else None


rows = []
with open(src, newline="") as f:
    for r in csv.DictReader(f):
        rows.append({k: (v if k == "backend" else num(v)) for k, v in r.items()})

backends = []
for r in rows:
    if r["backend"] not in backends:
        backends.append(r["backend"])
streams = sorted({int(r["streams"]) for r in rows})
by = {(r["backend"], int(r["streams"])): r for r in rows}
colours = {1: "tab:blue", 4: "tab:orange"}
width = 0.8 / max(len(streams), 1)

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))

# Left: median Gbit/s, min–max as error bars, ratio to vxlan on top.
for j, n in enumerate(streams):
    xs, ys, lo, hi, labels = [], [], [], [], []
    for i, b in enumerate(backends):
        r = by.get((b, n))
        if r is None:
            continue
        xs.append(i + (j - (len(streams) - 1) / 2) * width)
        ys.append(r["gbps_median"])
        lo.append(r["gbps_median"] - r["gbps_min"])
        hi.append(r["gbps_max"] - r["gbps_median"])
        labels.append("" if r["ratio_vxlan"] is None else f"{r['ratio_vxlan']:.2f}×")
    bars = left.bar(xs, ys, width, yerr=[lo, hi], capsize=3,
                    color=colours.get(n, None), label=f"{n} stream{'s' if n > 1 else ''}")
    left.bar_label(bars, labels=labels, padding=3, fontsize=8)
left.set_ylim(0, left.get_ylim()[1] * 1.2)
left.set_xticks(range(len(backends)))
left.set_xticklabels(backends)
left.set_ylabel("Gbit/s (median; bars: min–max over rounds)")
left.set_title("iperf3 pod → pod (label: × vxlan, same run)")
left.grid(axis="y", alpha=0.3)
left.legend(fontsize=8, loc="upper right")

# Right: machine CPU seconds per GB; flanneld's own share hatched in front.
for j, n in enumerate(streams):
    xs, machine, daemon = [], [], []
    for i, b in enumerate(backends):
        r = by.get((b, n))
        if r is None or r["machine_cpu_s_per_gb"] is None:
            continue
        xs.append(i + (j - (len(streams) - 1) / 2) * width)
        machine.append(r["machine_cpu_s_per_gb"])
        daemon.append(r["flanneld_cpu_s_per_gb"] or 0.0)
    bars = right.bar(xs, machine, width, color=colours.get(n, None), alpha=0.55,
                     label=f"whole machine, {n} stream{'s' if n > 1 else ''}")
    right.bar_label(bars, labels=[f"{m:.1f}" for m in machine], padding=3, fontsize=8)
    right.bar(xs, daemon, width, color=colours.get(n, None), hatch="///",
              edgecolor="black", linewidth=0.5,
              label=f"of which flanneld, {n} stream{'s' if n > 1 else ''}")
right.set_ylim(0, right.get_ylim()[1] * 1.25)
right.set_xticks(range(len(backends)))
right.set_xticklabels(backends)
right.set_ylabel("CPU seconds per GB received")
right.set_title("CPU cost (lower is better)")
right.grid(axis="y", alpha=0.3)
right.legend(fontsize=8, loc="upper left")

fig.suptitle("flannel-rs backends on one 2-core machine: pod-to-pod TCP throughput and CPU per GB")
fig.tight_layout()
fig.savefig(dst, dpi=110)
print(f"wrote {dst}")
