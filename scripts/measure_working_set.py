"""The numbers behind cclnn.memory: for each network, the largest layer and the counted
working set per LR pixel (``BOUND_FACTOR`` must cover their ratio), the two-size fit against
a count at a larger size, and, for a few, the process's resident-memory growth over one
untiled forward against the count (``MARGIN`` must cover it). Writes a markdown table.

    python scripts/measure_working_set.py -o results/bench/working_set.md
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys

NETWORKS = ["cclnn-t:2", "cclnn-t:4", "cclnn-l:2", "cclnn-l:4", "nlsn:4", "edsr:4", "rcan:4",
            "rnan:2", "divanet:4", "a2n:4", "vdsr:2", "srcnn:2"]
RESIDENT = ["cclnn-t:2:300", "cclnn-t:2:532", "cclnn-t:4:300", "edsr-s:2:700", "rcan-s:4:400",
            "divanet-s:2:600"]  # network:scale:LR side, run whole in a fresh process
CHECK_SIDE = 96

COUNT = """
import json, sys, torch
torch.set_num_threads(1)
from cclnn import build_model
from cclnn.memory import forward_peak_bytes, largest_layer_bytes, working_set
name, scale = sys.argv[1].split(":")
net = build_model(name, int(scale)).eval()
ws = working_set(net, True)
side = int(sys.argv[2])
print(json.dumps({"largest": largest_layer_bytes(net, True), "fixed": ws.fixed,
                  "per_pixel": ws.per_pixel,
                  "counted": forward_peak_bytes(net, side, True) / side ** 2}))
"""

RESIDENT_RUN = """
import json, sys, numpy as np, torch
torch.set_num_threads(1)
from cclnn import build_model, create_model
from cclnn.cpu import keep_freed_memory
from cclnn.memory import working_set
from cclnn.upscaling import upscale_array
keep_freed_memory()
name, scale, side = sys.argv[1].split(":"); scale, side = int(scale), int(side)
net = (create_model(name, scale) if name == "cclnn-t" else build_model(name, scale)).eval()
rgb = (np.random.default_rng(0).random((side, side, 3)) * 255).astype(np.uint8)
def status(key):
    return [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key)][0]
upscale_array(rgb[:64, :64], net, scale)  # oneDNN and the caches warmed up
ws = working_set(net, True)
base = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # resets VmHWM
upscale_array(rgb, net, scale, tile=0)
print(json.dumps({"grown": status("VmHWM") - base,
                  "counted": ws.fixed + ws.per_pixel * side * side}))
"""


def child(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    lines = [f"# Working set of the networks' inference (`python scripts/measure_working_set.py`"
             f", {datetime.date.today()}, commit {commit}, one thread, channels-last)", "",
             f"Bytes per LR pixel. *largest layer*: the largest input or output of one layer; "
             f"*fit*: `cclnn.memory.working_set` (two forwards at 24 and 48 px); *counted at "
             f"{CHECK_SIDE}*: the same count on one {CHECK_SIDE} x {CHECK_SIDE} forward. "
             f"Random weights (the shapes are what matter).", "",
             "| network | largest layer | fit (fixed MB + per pixel) | counted at "
             f"{CHECK_SIDE} | counted / largest | fit / counted |",
             "|---|---:|---:|---:|---:|---:|"]
    for spec in NETWORKS:
        r = child(COUNT, spec, str(CHECK_SIDE))
        fit = r["per_pixel"] + r["fixed"] / CHECK_SIDE ** 2
        lines.append(f"| {spec.replace(':', ' x')} | {r['largest']:.0f} | {r['fixed'] / 1e6:.1f}"
                     f" + {r['per_pixel']:.0f} | {r['counted']:.0f} | "
                     f"{r['counted'] / r['largest']:.2f} | {fit / r['counted']:.3f} |")
        print(lines[-1], flush=True)
    lines += ["", "Resident memory: the growth of the process's peak RSS (VmHWM, reset) over "
              "one untiled `upscale_array` in a fresh process with freed memory kept "
              "(`keep_freed_memory`), against the fitted count for that size.", "",
              "| network | LR side | counted MB | RSS grown MB | grown / counted |",
              "|---|---:|---:|---:|---:|"]
    for spec in RESIDENT:
        r = child(RESIDENT_RUN, spec)
        name, scale, side = spec.split(":")
        lines.append(f"| {name} x{scale} | {side} | {r['counted'] / 1e6:.0f} | "
                     f"{r['grown'] / 1e6:.0f} | {r['grown'] / r['counted']:.2f} |")
        print(lines[-1], flush=True)
    with open(args.output, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
