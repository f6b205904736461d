#!/usr/bin/env python3
"""Joins one compare.sh run (criterion's estimates for our kernels, peers-*.json for NumPy and
PyTorch) into a markdown table and rewrites the generated section of BENCHMARKS.md, between
the markers below. Standard library only.

    report.py --out-dir target/bench-compare --targets bench/targets.json --update BENCHMARKS.md

Ratios are throughput ratios ours/peer, i.e. the peer's median time over ours (> 1: we are
faster), so they do not depend on how work is counted. Medians only: the machine is shared
and noisy, so absolute figures drift between runs while same-run ratios hold up better.
"""
import argparse
import glob
import json
import os
import platform
import sys
import time

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
# Background load (cores used by other processes) above which a row is not trustworthy;
# the same threshold as the shared baselines' README.
NOISY_BG = 0.2
PEERS = ("numpy", "torch")
CONV_FWD_FLOP = 2 * 32 * 16 * 32 * 32 * 3 * 3 * 3  # x 32x3x32x32, w 16x3x3x3, padding 1
N_ELEMS = 10_000_000
# Display order of the groups, as in kernels.rs.
GROUP_ORDER = ("matmul", "elementwise", "reduce", "unary", "conv2d")


def work(case):
    """(amount, unit) of one call of `case`, for the throughput columns."""
    group, _, rest = case.partition("/")
    if group == "matmul":
        n = int(rest.split("/")[1])
        return 2 * n**3 / 1e9, "GFLOP/s"
    if group == "conv2d":
        return (CONV_FWD_FLOP if rest == "fwd" else 3 * CONV_FWD_FLOP) / 1e9, "GFLOP/s"
    return N_ELEMS / 1e9, "Gelem/s"


def read_ours(out_dir):
    """{criterion id: {"median_s", "lo_s", "hi_s"}} from criterion's `new` folders."""
    ours = {}
    for bj in glob.glob(os.path.join(out_dir, "criterion", "**", "new", "benchmark.json"),
                        recursive=True):
        try:
            with open(bj) as f:
                bid = json.load(f)["full_id"]
            with open(os.path.join(os.path.dirname(bj), "estimates.json")) as f:
                med = json.load(f)["median"]
        except (OSError, KeyError, ValueError) as e:
            print(f"report.py: skipping {bj}: {e!r}", file=sys.stderr)
            continue
        ci = med.get("confidence_interval", {})
        ours[bid] = {"median_s": med["point_estimate"] * 1e-9,
                     "lo_s": ci.get("lower_bound", float("nan")) * 1e-9,
                     "hi_s": ci.get("upper_bound", float("nan")) * 1e-9}
    return ours


def read_peers(out_dir):
    """Merged results, metas and errors of every peers-*.json."""
    results, metas, errors = {}, [], []
    for p in sorted(glob.glob(os.path.join(out_dir, "peers-*.json"))):
        with open(p) as f:
            d = json.load(f)
        for case, impls in d.get("results", {}).items():
            results.setdefault(case, {}).update(impls)
        metas.append(d.get("meta", {}))
        errors += d.get("errors", [])
    return results, metas, errors


def read_jsonl(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except OSError:
        return []


def read_json(path, default):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def targets_for(case, targets):
    """{peer: min_ratio}: per peer, the entry with the longest matching case or prefix."""
    best = {}
    for t in targets:
        c = t["case"]
        if c == case or (c.endswith("/") and case.startswith(c)):
            if t["peer"] not in best or len(c) > best[t["peer"]][0]:
                best[t["peer"]] = (len(c), t["min_ratio"])
    return {p: r for p, (_, r) in best.items()}


# Display order of the cases within a group, as in kernels.rs; others sort after, by name.
NAME_ORDER = ("f32", "f64", "add", "mul", "sum_all", "sum_last", "max_all", "exp", "log",
              "tanh", "sigmoid", "gelu", "sin", "cos", "fwd", "fwd_bwd")


def case_key(case):
    g, _, rest = case.partition("/")
    parts = rest.split("/")
    # Numeric sizes sort as numbers (64 before 256).
    return (GROUP_ORDER.index(g) if g in GROUP_ORDER else len(GROUP_ORDER),
            [(0, int(p), "") if p.isdigit() else
             (1, NAME_ORDER.index(p), "") if p in NAME_ORDER else (2, 0, p) for p in parts])


def fmt_rate(x):
    return "—" if x is None else (f"{x:.3g}" if x < 1000 else f"{x:.0f}")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def build(out_dir, targets, failed):
    ours = read_ours(out_dir)
    peers, metas, peer_errors = read_peers(out_dir)
    loads = {r["label"]: r for r in read_jsonl(os.path.join(out_dir, "load.jsonl"))}
    run = read_json(os.path.join(out_dir, "run_meta.json"), {})
    failed_groups = {f.split("/", 1)[1] for f in failed if f.startswith("ours/")}

    rows, summary, noisy = [], [], False
    for case in sorted(set(ours) | set(peers), key=case_key):
        amount, unit = work(case)
        group = case.split("/", 1)[0]
        mine = ours.get(case)
        t_ours = mine["median_s"] if mine else None
        cells = {"ours": fmt_rate(amount / t_ours) if t_ours else
                 ("FAILED" if group in failed_groups else "—")}
        ratios = {}
        for p in PEERS:
            rec = peers.get(case, {}).get(p)
            cells[p] = fmt_rate(amount / rec["median_s"]) if rec else "—"
            ratios[p] = rec["median_s"] / t_ours if (rec and t_ours) else None
        want = targets_for(case, targets)
        verdicts = []
        for p, r in sorted(want.items()):
            if ratios.get(p) is None:
                verdicts.append(f"n/a ({p})")
            else:
                verdicts.append(("yes" if ratios[p] >= r else "**no**") + f" ({p})")
        bg_ours = loads.get(f"ours/{group}", {}).get("bg_cores")
        bg_peer = max((r.get("load", {}).get("bg_cores") or 0.0
                       for r in peers.get(case, {}).values()), default=None)
        bgs = [b for b in (bg_ours, bg_peer) if b is not None]
        row_noisy = any(b > NOISY_BG for b in bgs)
        noisy |= row_noisy
        bg_txt = "/".join("—" if b is None else f"{b:.2f}" for b in (bg_ours, bg_peer))
        rows.append("| " + " | ".join([
            f"`{case}`", unit, cells["ours"], cells["numpy"], cells["torch"],
            "—" if ratios["numpy"] is None else f"{ratios['numpy']:.2f}",
            "—" if ratios["torch"] is None else f"{ratios['torch']:.2f}",
            "; ".join(f"≥{r:g}× {p}" for p, r in sorted(want.items())) or "—",
            ", ".join(verdicts) or "—",
            bg_txt + (" ⚠" if row_noisy else ""),
        ]) + " |")
        summary.append({"case": case, "unit": unit, "work": amount, "ours_s": t_ours,
                        "peers_s": {p: peers.get(case, {}).get(p, {}).get("median_s")
                                    for p in PEERS},
                        "ratios": ratios, "targets": want,
                        "bg_cores": {"ours": bg_ours, "peers": bg_peer}})

    meta = next((m for m in metas if m), {})
    versions = meta.get("versions", {})
    blas = [b for b in meta.get("blas", []) if isinstance(b, dict) and "num_threads" in b]
    blas_txt = ", ".join(" ".join(str(x) for x in (b.get("internal_api"), b.get("version"))
                                  if x) + f" {b.get('num_threads')} threads"
                         for b in blas) or "unknown"
    quick = run.get("quick") == "1"
    lines = [
        f"_Generated by `bench/report.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f" from a run started {run.get('started', '?')}; do not edit by hand._",
        "",
        f"- Command: `{run.get('command', 'bench/compare.sh')}`"
        f" (git {run.get('git', '?')}, {run.get('rustc', 'rustc ?')})",
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores visible",
        f"- Threads: ours {run.get('rayon_num_threads', '?')} (RAYON_NUM_THREADS); "
        f"torch {meta.get('torch_threads', '—')}; NumPy/BLAS: {blas_txt}; "
        "NumPy elementwise and reductions are single-threaded",
        "- Peers: " + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "python")
        + f" (Python {versions.get('python', '?')})",
    ]
    if quick or noisy:
        why = []
        if quick:
            why.append("a QUICK=1 smoke run (short measurements)")
        if noisy:
            why.append(f"rows marked ⚠ ran with more than {NOISY_BG} cores of background load")
        lines.append(f"- **Provisional:** {'; '.join(why)}.")
    lines += [
        "",
        "Throughput columns are medians (higher is better); ratios are ours/peer "
        "(peer median time / our median time, > 1: ours faster); bg = cores used by other "
        "processes while ours / the peer ran.",
        "",
        "| case | unit | ours | numpy | torch | ours/numpy | ours/torch | target | met? | bg |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    if failed:
        lines += ["", "Failed (see the logs in the run's output folder): "
                  + ", ".join(f"`{f}`" for f in failed) + "."]
    if peer_errors:
        lines += ["", "Peer errors: " + "; ".join(
            f"{e.get('case', e.get('group'))} {e.get('impl', '')}: {e['error'][:120]}"
            for e in peer_errors) + "."]
    return "\n".join(lines) + "\n", summary


def update(path, section):
    """Replaces the text between the markers (or appends a marked section)."""
    block = f"{BEGIN}\n{section}{END}"
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = "# Benchmarks\n\n"
    i, j = text.find(BEGIN), text.find(END)
    if i >= 0 and j > i:
        text = text[:i] + block + text[j + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", required=True, help="compare.sh's output folder")
    ap.add_argument("--targets", default=None, help="targets JSON (bench/targets.json)")
    ap.add_argument("--update", default=None, help="markdown file whose section to rewrite")
    ap.add_argument("--failed", default="", help="space-separated side/group that failed")
    a = ap.parse_args()
    targets = read_json(a.targets, {}).get("targets", []) if a.targets else []
    section, summary = build(a.out_dir, targets, a.failed.split())
    with open(os.path.join(a.out_dir, "report.md"), "w") as f:
        f.write(section)
    with open(os.path.join(a.out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    if a.update:
        update(a.update, section)
        print(f"report.py: rewrote the generated section of {a.update}")
    print(section)


if __name__ == "__main__":
    main()
