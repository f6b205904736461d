#!/usr/bin/env python3
"""Runs one command the way the peers are timed: wait (bounded) for the shared machine to go
quiet, run it, and record how many cores *other* processes kept busy meanwhile.

    timed.py --log load.jsonl --label ours/matmul -- cargo bench ...

Appends one JSON line {"label", "rc", "wall_s", "bg_cores", "steal_cores", "gate_wait_s",
"bg_cores_before"} to --log and exits with the command's status. The command's own CPU time
(with its children's) is taken from getrusage, so it is not counted as background load.
Uses the quiet gate of ../shared/baselines/common.py, so both sides wait alike.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.environ.get("BASELINES_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "baselines")))
import common as C  # noqa: E402  (the path is only known at run time)


def busy_ticks():
    """Busy jiffies of the whole machine and hypervisor steal, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6], (v[7] if len(v) > 7 else 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("no command given")

    waited, pre = C.quiet_gate()
    clk = os.sysconf("SC_CLK_TCK")
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    (b0, s0), t0 = busy_ticks(), time.perf_counter()
    rc = subprocess.call(cmd)
    (b1, s1), t1 = busy_ticks(), time.perf_counter()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = t1 - t0
    own = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    other = max(0.0, (b1 - b0) / clk - own) / wall if wall > 0 else None
    rec = {"label": a.label, "rc": rc, "wall_s": round(wall, 2),
           "bg_cores": None if other is None else round(other, 3),
           "steal_cores": round((s1 - s0) / clk / wall, 3) if wall > 0 else None,
           "gate_wait_s": round(waited, 1),
           "bg_cores_before": None if pre is None else round(pre, 3)}
    with open(a.log, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"[timed] {a.label}: rc={rc} wall={wall:.1f}s bg={rec['bg_cores']}", flush=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
