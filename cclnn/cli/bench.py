"""``cclnn bench ...``: performance measurements (see :mod:`cclnn.speed`)."""
from __future__ import annotations

import argparse
import json

from .common import NON_NEGATIVE, POSITIVE, add_json, add_scale, tile_size

# (sub-command, help, default channels, default side, default repeats) of the path comparisons
PATH_BENCHES = (
    ("nlsa", "our NLSA vs the official tensor program", 64, 512, 5),
    ("rnan-nonlocal", "RNAN's non-local block in key chunks vs the official dense "
     "form (160x160: a 128-pixel tile with its context)", 32, 160, 3))


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="performance benchmarks")
    bench_sub = p.add_subparsers(dest="what", required=True)
    q = bench_sub.add_parser("resize", help="MATLAB-exact resize vs PIL, 2040x1356 at x1/4")
    q.add_argument("--repeat", type=POSITIVE, default=7)
    add_json(q)
    q.set_defaults(func=run)
    for what, title, channels, size, repeat in PATH_BENCHES:
        q = bench_sub.add_parser(what, help=title)
        q.add_argument("--channels", type=POSITIVE, default=channels)
        q.add_argument("--size", type=POSITIVE, nargs=2, default=[size, size],
                       metavar=("H", "W"))
        q.add_argument("--batch", type=POSITIVE, default=1)
        q.add_argument("--backward", action="store_true", help="time forward + backward")
        q.add_argument("--repeat", type=POSITIVE, default=repeat)
        if what == "nlsa":
            q.add_argument("--device", default="cpu", help="cpu (default) or cuda")
        add_json(q)
        q.set_defaults(func=run)
    q = bench_sub.add_parser("model", help="a whole network: seconds, GFLOP/s, memory")
    q.add_argument("--model", required=True)
    add_scale(q, default=2)
    q.add_argument("--size", type=POSITIVE, nargs=2, default=[256, 256], metavar=("H", "W"),
                   help="LR size of the inference (and of the training patches with --train)")
    q.add_argument("--train", action="store_true", help="also time a training step")
    q.add_argument("--batch", type=POSITIVE, default=16)
    q.add_argument("--repeat", type=POSITIVE, default=3)
    add_json(q)
    q.set_defaults(func=run)
    q = bench_sub.add_parser("upscale", help="cclnn upscale end to end on the CPU: seconds per "
                             "output megapixel, GFLOP/s, user/system time, memory")
    q.add_argument("--size", type=POSITIVE, nargs=2, default=[1000, 1000], metavar=("W", "H"),
                   help="LR image size (default 1000 1000)")
    add_scale(q, default=2)
    q.add_argument("--model", help="network (default: the one --weights records, else the "
                                   "shipped cclnn-t)")
    q.add_argument("--weights", help="weights file (default: the shipped weights)")
    q.add_argument("--threads", type=POSITIVE, help="torch threads (default: torch's)")
    q.add_argument("--tile", type=tile_size, default="auto",
                   help="as cclnn upscale --tile (default auto)")
    add_json(q)
    q.set_defaults(func=run)
    q = bench_sub.add_parser("train", help="seconds per training step: data vs compute")
    q.add_argument("--config", required=True)
    q.add_argument("--steps", type=POSITIVE, default=20)
    q.add_argument("--warmup", type=NON_NEGATIVE, default=3)
    q.add_argument("overrides", nargs="*", help="key=value config overrides")
    add_json(q)
    q.set_defaults(func=run)


def print_comparison(title: str, r: dict, repeat: int) -> None:
    ours, reference = r["paths"]
    kind = "forward+backward" if r["backward"] else "forward"
    where = f" on {r['device']}" if "device" in r else ""
    print(f"{title} {kind}{where}, C={r['channels']}, {r['batch']}x{r['size'][0]}x"
          f"{r['size'][1]} (median of {repeat}, each path in its own process):")
    for name in r["paths"]:
        print(f"  {name:9s} {r[name]['seconds']:.3f} s  peak {r[name]['peak_mb']:.0f} MB")
    print(f"  speed-up {r['speedup']:.2f}x, memory {r['memory_ratio']:.3f} of the {reference} "
          f"path, max |{ours} - {reference}| = {r['max_abs_diff']:.2e}")


def _run_model(args: argparse.Namespace) -> int:
    from ..speed import bench_model  # loaded when run, not for --help
    r = bench_model(args.model, args.scale, args.size[0], args.size[1], args.train,
                    args.batch, args.repeat)
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"{r['model']} x{r['scale']}; this machine's fp32 matmul: "
          f"{r['matmul_gflops']:.1f} GFLOP/s")
    rows = [("inference", r["inference"], f"1x{args.size[0]}x{args.size[1]}")]
    if "train_step" in r:
        rows.append(("train step", r["train_step"],
                     f"{args.batch}x{args.size[0]}x{args.size[1]}"))
    for label, m, shape in rows:
        print(f"  {label:10s} {shape:>12s}: {m['seconds']:.3f} s, {m['gflop']:.1f} GFLOP, "
              f"{m['gflops']:.1f} GFLOP/s = {100 * m['efficiency']:.0f} % of matmul, "
              f"peak {m['peak_mb']:.0f} MB")
    return 0


def _run_paths(args: argparse.Namespace) -> int:
    from ..inference import resolve_device  # loaded when run, not for --help
    from ..speed import bench_nlsa, bench_rnan_nonlocal
    options = {}
    if args.what == "nlsa":
        options["device"] = str(resolve_device(args.device))
    bench = bench_nlsa if args.what == "nlsa" else bench_rnan_nonlocal
    r = bench(args.channels, args.size[0], args.size[1], args.batch, args.backward,
              args.repeat, **options)
    if args.json:
        print(json.dumps({k: r[k] for k in (*r["paths"], "max_abs_diff")}))
    else:
        print_comparison("NLSA" if args.what == "nlsa" else "RNAN non-local block", r,
                         args.repeat)
    return 0


UPSCALE_JSON = ("seconds_per_mp", "gflops", "matmul_fraction", "user_seconds", "system_seconds",
                "peak_mb", "network_seconds", "threads")


def _run_upscale(args: argparse.Namespace) -> int:
    from ..speed import bench_upscale  # loaded when run, not for --help
    r = bench_upscale(args.size[0], args.size[1], args.scale, args.model, args.weights,
                      args.threads, args.tile)
    if args.json:
        print(json.dumps({k: r[k] for k in UPSCALE_JSON}))
        return 0
    print(f"upscale {r['model']} x{r['scale']}, {r['size'][0]}x{r['size'][1]} LR, "
          f"{r['threads']} thread(s), {r['tiles']} tile(s): {r['wall_seconds']:.1f} s = "
          f"{r['seconds_per_mp']:.2f} s per output megapixel")
    print(f"  network {r['network_seconds']:.1f} s ({100 * r['network_seconds'] / r['wall_seconds']:.0f} %"
          f" of the time); {r['gflop']:.0f} GFLOP, {r['gflops']:.1f} GFLOP/s = "
          f"{100 * r['matmul_fraction']:.0f} % of this machine's matmul "
          f"({r['matmul_gflops']:.1f} GFLOP/s at {r['threads']} thread(s))")
    print(f"  user {r['user_seconds']:.1f} s, system {r['system_seconds']:.1f} s "
          f"({100 * r['system_seconds'] / max(r['user_seconds'], 1e-9):.1f} % of user), "
          f"{r['minor_faults']} minor page faults, peak {r['peak_mb']:.0f} MB")
    return 0


def _run_train(args: argparse.Namespace) -> int:
    from ..speed import bench_train  # loaded when run, not for --help
    r = bench_train(args.config, args.steps, args.warmup, args.overrides)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"train {r['model']} x{r['scale']}, batch {r['batch']} x {r['patch']}x"
              f"{r['patch']} on {r['device']} ({r['threads']} threads), median of "
              f"{r['steps']} steps: {r['step_seconds']:.3f} s/step = data "
              f"{r['data_seconds'] * 1e3:.1f} ms + compute {r['compute_seconds']:.3f} s; "
              f"data {100 * r['data_fraction']:.2f} % of the step")
    return 0


def _run_resize(args: argparse.Namespace) -> int:
    from ..speed import bench_resize  # loaded when run, not for --help
    r = bench_resize(repeat=args.repeat)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"resize {r['image']} x{r['scale']}: cclnn.imresize (MATLAB-exact) "
              f"{r['cclnn_seconds'] * 1e3:.1f} ms, PIL bicubic {r['pil_seconds'] * 1e3:.1f} ms"
              f" (median of {r['repeat']}); ratio {r['ratio']:.2f}x")
    return 0


def run(args: argparse.Namespace) -> int:
    """Every ``cclnn bench`` sub-command: the measurement named by ``args.what``."""
    if args.what == "model":
        return _run_model(args)
    if args.what in ("nlsa", "rnan-nonlocal"):
        return _run_paths(args)
    if args.what == "train":
        return _run_train(args)
    if args.what == "upscale":
        return _run_upscale(args)
    if args.what == "resize":
        return _run_resize(args)
    raise ValueError(args.what)
