#!/usr/bin/env python3
"""Where each thread's time goes, by system call, from a system-wide `perf record -g`.

The udp backend's profile in docs/udp.md is made with it:

    perf record -F 999 -a -g -e cpu-clock -o perf.data -- sleep 5   # during an iperf3 run
    perf script -i perf.data -F comm,tid,ip,sym | python3 bench/perf_breakdown.py

For the busiest threads it prints their samples, and per outermost system call in their
stacks (`sendmmsg`, `read`, `writev`, ...; "user space" when the sample is not in the
kernel, "kernel, no system call" for interrupts and kernel threads) the share of the
thread's samples and how much of that the kernel's user-copy routines took. The last lines
add up the copies and the user-space samples of the threads named with `--datapath`
(default: `udp-q`, the fast path's workers) as shares of all samples, and the idle share.

Options: `--top N` threads (default 6); `--datapath PREFIX` (thread-name prefix).
"""

import argparse
import collections
import re
import sys

# The kernel's routines that copy between user memory and skbs (leaf frames).
COPY = {
    "_copy_to_iter",
    "_copy_from_iter",
    "copy_page_to_iter",
    "copy_page_from_iter",
    "_copy_from_iter_nocache",
    "rep_movs_alternative",
    "copy_user_generic_string",
    "copy_user_enhanced_fast_string",
}

SYSCALL = [
    re.compile(r"^__x64_sys_(\w+)$"),
    re.compile(r"^__se_sys_(\w+)$"),
    re.compile(r"^__sys_(\w+)$"),
    re.compile(r"^ksys_(\w+)$"),
    re.compile(r"^do_(writev|readv|sendmmsg|recvmmsg)$"),
]


def syscall_of(frames):
    """The outermost system call in a stack (leaf first), or None. Where the kernel's own
    frames do not name it (a sample on the way out of the call), the C library's wrapper
    above the entry point does (`__libc_sendmsg`, `__GI___writev`)."""
    for _ip, sym in reversed(frames):
        for pattern in SYSCALL:
            m = pattern.match(sym)
            if m:
                return m.group(1)
    for i, (_ip, sym) in enumerate(frames):
        if sym.startswith("entry_SYSCALL_64") and i + 1 < len(frames):
            ip, wrapper = frames[i + 1]
            if not is_kernel(ip) and wrapper not in ("[unknown]", "?"):
                return re.sub(r"^(__libc_|__GI___|__)", "", wrapper)
    return None


def is_kernel(ip):
    return ip.startswith("ffff")


def samples(lines):
    """Yields (comm, tid, frames) per sample of `perf script -F comm,tid,ip,sym`."""
    head = None
    frames = []
    for line in lines:
        if not line.strip():
            if head:
                yield head[0], head[1], frames
            head, frames = None, []
        elif line.startswith(("\t", "        ")) and head:
            parts = line.split(None, 1)
            frames.append((parts[0], parts[1].strip() if len(parts) > 1 else "?"))
        else:
            if head:
                yield head[0], head[1], frames
            fields = line.rsplit(None, 1)
            head = (fields[0].strip(), fields[1]) if len(fields) == 2 else (line.strip(), "?")
            frames = []
    if head:
        yield head[0], head[1], frames


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=6)
    ap.add_argument("--datapath", default="udp-q")
    args = ap.parse_args()

    total = 0
    per_thread = collections.Counter()
    per_call = collections.Counter()
    copies = collections.Counter()
    for comm, tid, frames in samples(sys.stdin):
        if not frames:
            continue
        total += 1
        key = (comm, tid)
        per_thread[key] += 1
        leaf_ip, leaf = frames[0]
        if not is_kernel(leaf_ip):
            call = "user space"
        else:
            call = syscall_of(frames) or "kernel, no system call"
        per_call[(key, call)] += 1
        if leaf in COPY:
            copies[(key, call)] += 1

    if total == 0:
        sys.exit("no samples on stdin (perf script -F comm,tid,ip,sym)")
    for key, n in per_thread.most_common(args.top):
        comm, tid = key
        print(f"{comm} (tid {tid}): {n} samples, {100 * n / total:.1f}% of all")
        calls = [(c, m) for (k, c), m in per_call.items() if k == key]
        for call, m in sorted(calls, key=lambda x: -x[1]):
            if m < 0.01 * n:
                continue
            cp = copies[(key, call)]
            print(f"    {call:24s} {100 * m / n:5.1f}%   copying {100 * cp / n:5.1f}%")
    dp = [k for k in per_thread if k[0].startswith(args.datapath)]
    dp_copy = sum(m for (k, _c), m in copies.items() if k in dp)
    dp_user = sum(per_call[(k, "user space")] for k in dp)
    dp_all = sum(per_thread[k] for k in dp)
    idle = sum(n for (comm, _tid), n in per_thread.items() if comm == "swapper")
    print(f"all samples: {total}; idle (swapper) {100 * idle / total:.1f}%")
    print(
        f"threads {args.datapath}*: {100 * dp_all / total:.1f}% of all samples; "
        f"their copies {100 * dp_copy / total:.1f}%, their user space {100 * dp_user / total:.1f}%"
    )


if __name__ == "__main__":
    main()
