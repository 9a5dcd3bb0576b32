"""The ``cclnn`` command line. Errors are one line on stderr and a non-zero exit status."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from .errors import CclnnError

EXIT_USAGE = 2


class CLIError(CclnnError):
    """A bad command-line option or argument."""


def cmd_models(args: argparse.Namespace) -> int:
    from .models import count_parameters, list_models
    from .models.registry import get_entry
    rows = [{"name": n, "scale": s, "params": count_parameters(n, s)}
            for n in list_models() for s in (2, 3, 4)]
    if args.json:
        print(json.dumps(rows))
        return 0
    by_name: dict[str, dict[int, int]] = {}
    for r in rows:
        by_name.setdefault(r["name"], {})[r["scale"]] = r["params"]
    print("| model | x2 params | x3 params | x4 params | published (x2 / x3 / x4) | description |")
    print("|---|---:|---:|---:|---|---|")
    for name, counts in by_name.items():
        cells = " | ".join(f"{counts[s] / 1e6:.3f} M" for s in (2, 3, 4))
        entry = get_entry(name)
        print(f"| {name} | {cells} | {entry.published} | {entry.summary} |")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Upscale a bundled Set5 image with a trained network, then score it on the bundled Set5
    next to bicubic: what the shipped weights do, without any download."""
    from .assets import SET5, set5_lr
    from .data.benchmark import BenchmarkSet
    from .data.images import read_image, write_image
    from .evaluate import evaluate
    from .resize import imresize
    from .upscale import load_model, upscale_array
    path = set5_lr(args.image, args.scale)
    if not path.is_file():
        raise CLIError(f"--image: no bundled Set5 image '{args.image}'")
    net = load_model(args.model, args.scale, args.weights)
    lr = read_image(path)
    start = time.perf_counter()
    sr = upscale_array(lr, net, args.scale, device="cpu")
    seconds = time.perf_counter() - start
    out = Path(args.output or f"{args.image}_{args.model}_x{args.scale}.png")
    write_image(out, sr)
    print(f"{out}: {args.image} {lr.shape[1]}x{lr.shape[0]} -> {sr.shape[1]}x{sr.shape[0]} "
          f"with {args.model} x{args.scale} in {seconds:.2f} s")
    bench = BenchmarkSet(SET5, args.scale)
    print(f"\n| Set5 x{args.scale} | PSNR (dB) | SSIM |\n|---|---:|---:|")
    for label, fn in (("bicubic", lambda x: imresize(x, args.scale)),
                      (args.model, lambda x: upscale_array(x, net, args.scale, device="cpu"))):
        r = evaluate(fn, bench, progress=False)
        print(f"| {label} | {r.psnr:.2f} | {r.ssim:.4f} |")
    return 0


def _make_super_resolver(args: argparse.Namespace, scale: int, n_scales: int):
    """uint8 LR -> uint8 SR for ``--model`` at ``scale`` (MATLAB bicubic for 'bicubic')."""
    from . import build_model, load_weights
    from .inference import resolve_device, super_resolve
    from .resize import imresize
    if args.model == "bicubic":
        return lambda lr: imresize(lr, scale)
    from .weights import resolve_weights
    model = build_model(args.model, scale)
    load_weights(model, resolve_weights(args.model, scale, args.weights, n_scales))
    device = resolve_device(args.device)
    model.to(device).eval()
    return lambda lr: super_resolve(model, lr, scale, tile=args.tile, overlap=args.tile_overlap,
                                    ensemble=args.self_ensemble, device=device)


def cmd_test(args: argparse.Namespace) -> int:
    from .data.benchmark import BenchmarkSet, resolve_benchmark
    from .evaluate import evaluate, markdown_table
    folders = [resolve_benchmark(d, args.data_root) for d in args.datasets]
    results = []
    for scale in args.scale:
        sr_fn = _make_super_resolver(args, scale, len(args.scale))
        for name, folder in zip(args.datasets, folders):
            bench = BenchmarkSet(folder, scale, name=Path(name).name)
            save = (Path(args.save_images) / bench.name / f"x{scale}") if args.save_images else None
            results.append(evaluate(sr_fn, bench, progress=not args.json, save_dir=save))
    if args.json:
        print(json.dumps({"results": [r.as_dict() for r in results]}))
    else:
        label = args.model + ("+" if args.self_ensemble else "")
        print(markdown_table(label, results))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .data.benchmark import list_images, mod_crop
    from .data.images import read_image
    from .metrics import psnr, ssim
    hr_files, _ = list_images(Path(args.hr))
    sr_files, _ = list_images(Path(args.sr))
    by_stem = {p.stem: p for p in hr_files}
    suffixes = [args.sr_suffix] if args.sr_suffix is not None else [
        f"_SR_x{args.scale}", f"_x{args.scale}", f"x{args.scale}", "_SR", ""]
    rows = []
    for sr_path in sr_files:
        match = None
        for suffix in suffixes:
            if sr_path.stem.endswith(suffix):
                stem = sr_path.stem[: len(sr_path.stem) - len(suffix)] if suffix else sr_path.stem
                if stem in by_stem:
                    match = by_stem[stem]
                    break
        if match is None:
            print(f"score: no HR image for {sr_path.name}, skipped", file=sys.stderr)
            continue
        hr = mod_crop(read_image(match), args.scale)
        sr = read_image(sr_path)
        if sr.shape != hr.shape:
            raise CLIError(f"{sr_path}: size {sr.shape[1]}x{sr.shape[0]} does not match HR "
                           f"{match.name} cropped to x{args.scale} ({hr.shape[1]}x{hr.shape[0]})")
        rows.append({"name": match.stem, "psnr": psnr(hr, sr, args.scale),
                     "ssim": ssim(hr, sr, args.scale)})
    if not rows:
        raise CLIError(f"--sr: no image in {args.sr} matches an HR image in {args.hr}")
    mean_psnr = float(np.mean([r["psnr"] for r in rows]))
    mean_ssim = float(np.mean([r["ssim"] for r in rows]))
    if args.json:
        print(json.dumps({"images": rows, "psnr": mean_psnr, "ssim": mean_ssim}))
    else:
        print("| image | PSNR | SSIM |\n|---|---:|---:|")
        for r in rows:
            print(f"| {r['name']} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
        print(f"| **mean ({len(rows)})** | {mean_psnr:.2f} | {mean_ssim:.4f} |")
    return 0


def cmd_make_lr(args: argparse.Namespace) -> int:
    from .data.benchmark import make_lr_files
    written = make_lr_files(args.hr_dir, args.scales, overwrite=args.overwrite)
    print(f"wrote {written} LR image(s) under {Path(args.hr_dir).parent / 'LR_bicubic'}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .engine.config import load_config
    from .engine.trainer import Trainer, resume_config
    overrides = list(args.overrides)
    if args.resume:
        if args.config:
            overrides.insert(0, args.config)
        run_dir = Path(args.resume)
        trainer = Trainer(resume_config(run_dir, overrides), run_dir, resume=True,
                          progress=not args.no_progress)
    else:
        if not args.config:
            raise CLIError("train: give a CONFIG file, or --resume RUN_DIR")
        trainer = Trainer(load_config(args.config, overrides), progress=not args.no_progress)
    if trainer.is_main:
        print(f"run {trainer.run_dir}: {trainer.config.model.name} x{trainer.scale}, "
              f"{len(trainer.dataset.pairs)} training images, {trainer.iters_per_epoch} "
              f"iterations/epoch, iterations {trainer.iteration} -> {trainer.total_iterations} "
              f"on {trainer.devices[-1]}",
              file=sys.stderr)
    result = trainer.train()
    if trainer.is_main and result:
        print(f"validation at iteration {result['iteration']}: {result['dataset']} "
              f"x{trainer.scale} {result['psnr']:.2f} dB / {result['ssim']:.4f}; best "
              f"{trainer.best_psnr:.2f} dB at iteration {trainer.best_iteration}")
    return 0


def cmd_upscale(args: argparse.Namespace) -> int:
    from .upscale import run_upscale
    return run_upscale(args)


def cmd_lam(args: argparse.Namespace) -> int:
    from .analysis.lam import run_lam
    return run_lam(args)


def cmd_compare(args: argparse.Namespace) -> int:
    from .analysis.compare import run_compare
    return run_compare(args)


def cmd_plot(args: argparse.Namespace) -> int:
    from .analysis.plots import run_plot
    return run_plot(args)


def cmd_export(args: argparse.Namespace) -> int:
    from .weights import export_checkpoint
    meta = export_checkpoint(args.checkpoint, args.output)
    size = Path(args.output).stat().st_size / 1e6
    print(f"{args.output}: {meta['model']} x{meta['scale']} from {meta['run']} at iteration "
          f"{meta['iteration']}{', ' + meta['validation'] if 'validation' in meta else ''} "
          f"({size:.1f} MB)")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from .experiments import AblationError
    from .experiments.estimate import estimate
    from .experiments.report import write_tables
    from .experiments.runner import run_suite
    from .experiments.study import Study
    from .experiments.suites import SUITES, only_rows
    suite = SUITES.get(args.suite)
    if suite is None:
        raise AblationError(f"suite '{args.suite}': expected one of {', '.join(SUITES)}")
    if args.budget < 1:
        raise AblationError("--budget: must be at least 1 iteration")
    if args.jobs < 1:
        raise AblationError("--jobs: must be at least 1")
    study = Study(out=Path(args.out), budget=args.budget, scale=args.scale,
                  seeds=tuple(dict.fromkeys(args.seeds)), train_dirs=tuple(args.train),
                  datasets=tuple(args.datasets), data_root=args.data_root,
                  a2n_weights=args.a2n_weights, overrides=tuple(args.set or ()),
                  jobs=args.jobs, threads=args.threads, hold_out=args.hold_out)
    for d in study.train_dirs:
        if not Path(d).is_dir():
            raise AblationError(f"--train: {d} is not a folder")
    part = only_rows(suite, tuple(args.only or ()))  # an unknown row fails before anything runs
    if args.plan:
        rows = estimate(study, part)
        total = sum(r.get("seconds", 0.0) for r in rows)
        for r in rows:
            extra = (f"~{r['seconds'] / 60:.0f} min ({r['step_seconds']:.3f} s/step)"
                     if "seconds" in r else "")
            print(f"{r['run']:<40} {r['state']:<7} {extra}")
        print(f"estimated training time left: {total / 3600:.2f} h with {study.jobs} job(s) "
              f"of {study.threads_per_job()} thread(s); about {total / 3600 / study.jobs:.2f} h "
              f"of wall time if the jobs overlap perfectly")
        return 0
    if args.tables_only:
        path = write_tables(study, suite)
    else:
        failed = run_suite(study, suite, part=part)
        path = study.out / f"{suite.name}_x{study.scale}_b{study.budget}.md"
        if failed:
            print(f"cclnn ablate: {failed} run(s) failed; finished runs are kept, rerun the same "
                  f"command to retry", file=sys.stderr)
            print(path.read_text())
            return 1
    print(path.read_text())
    return 0


def _count(minimum: int):
    """argparse type: an integer of at least ``minimum`` (a one-line usage error otherwise)."""
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {number}")
        return number
    parse.__name__ = "count"  # argparse names the type in its message
    return parse


POSITIVE, NON_NEGATIVE = _count(1), _count(0)


def _tile(value: str):
    return value if value == "auto" else NON_NEGATIVE(value)


def _run_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench
    return run_bench(args)


def _scale_list(parser_arg: str) -> int:
    value = int(parser_arg)
    if value not in (2, 3, 4):
        raise argparse.ArgumentTypeError("scale must be 2, 3 or 4")
    return value


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with a pointer to --help), exit status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="cclnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    p = sub.add_parser("models", help="list the networks with their parameter counts")
    p.add_argument("--json", action="store_true", help="JSON list of {name, scale, params}")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("demo", help="upscale a bundled Set5 image with the shipped CCLNN-T and "
                                    "print its Set5 scores next to bicubic")
    p.add_argument("--model", default="cclnn-t")
    p.add_argument("--weights", help="weights file (default: the shipped weights)")
    p.add_argument("--scale", type=_scale_list, default=2)
    p.add_argument("--image", default="butterfly", help="bundled Set5 image name")
    p.add_argument("-o", "--output", help="picture written (replaced if it exists; default "
                                          "IMAGE_MODEL_xS.png)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("upscale", help="upscale images (files, folders, globs)")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("-o", "--output", help="output file (one input) or folder "
                                          "(default: beside each input, NAME_xS.EXT)")
    p.add_argument("--scale", type=_scale_list, default=2)
    p.add_argument("--model", default="cclnn-t", help="network (default: the shipped cclnn-t)")
    p.add_argument("--weights", help="weights file; '{scale}' in the path is replaced")
    p.add_argument("--tile", type=_tile, default="auto",
                   help="tile size in LR pixels, 0 for none (default auto: 1024/scale on "
                        "larger images)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--self-ensemble", action="store_true", help="x8 flip/rotation average")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=cmd_upscale)

    p = sub.add_parser("test", help="PSNR/SSIM of a network on benchmark sets (Table 5 style)")
    p.add_argument("--model", required=True, help="a registered network, or 'bicubic'")
    p.add_argument("--weights", help="weights file; '{scale}' in the path is replaced")
    p.add_argument("--scale", type=_scale_list, nargs="+", required=True)
    p.add_argument("--datasets", nargs="+", required=True,
                   help="Set5, Set14, B100, Urban100, Manga109 (under --data-root) or folders")
    p.add_argument("--data-root", help="folder holding the benchmarks (default $CCLNN_DATA)")
    p.add_argument("--self-ensemble", action="store_true", help="x8 flip/rotation average")
    p.add_argument("--tile", type=NON_NEGATIVE,
                   help="tile size in LR pixels, 0 for none (default: the whole image, or the "
                        "network's own limit: 128 for RNAN, as its official test)")
    p.add_argument("--tile-overlap", type=NON_NEGATIVE, default=16,
                   help="LR pixels of context per side")
    p.add_argument("--save-images", help="write SR images to DIR/DATASET/xS/")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--json", action="store_true", help="JSON results only on stdout")
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("score", help="PSNR/SSIM of SR images made elsewhere against HR")
    p.add_argument("--hr", required=True, help="folder of HR images")
    p.add_argument("--sr", required=True, help="folder of SR images")
    p.add_argument("--scale", type=_scale_list, required=True)
    p.add_argument("--sr-suffix", help="suffix of SR file stems, e.g. _RCAN_x2 (default: "
                                       "tries _SR_xS, _xS, xS, _SR and none)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("train", help="train a network from a YAML config (see configs/)")
    p.add_argument("config", nargs="?", help="YAML config file")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=2e-4")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="a training checkpoint as a .safetensors weights file")
    p.add_argument("checkpoint", help="best.pt or latest.pt of a `cclnn train` run")
    p.add_argument("-o", "--output", required=True, help="weights file (*.safetensors)")
    p.set_defaults(func=cmd_export)

    from .experiments.suites import DEFAULT_A2N, DEFAULT_TRAIN, HOLD_OUT, SUITES
    p = sub.add_parser("ablate", help="the paper's tables at CPU scale: train a suite, write "
                                      "its table (see docs/experiments.md)")
    p.add_argument("suite", metavar="SUITE", help="one of " + ", ".join(SUITES))
    p.add_argument("--budget", type=POSITIVE, required=True, help="training iterations per run")
    p.add_argument("--seeds", type=NON_NEGATIVE, nargs="+", default=[0, 1])
    p.add_argument("--out", default="results/experiments", help="results folder")
    p.add_argument("--scale", type=_scale_list, default=2)
    p.add_argument("--jobs", type=POSITIVE, default=1, help="runs trained at the same time")
    p.add_argument("--threads", type=POSITIVE, help="threads per run (default: CPUs / jobs)")
    p.add_argument("--train", nargs="+", default=list(DEFAULT_TRAIN), metavar="HR_DIR",
                   help="training image folders (default: T91 and SunHays80 in ../shared)")
    p.add_argument("--hold-out", type=POSITIVE, default=HOLD_OUT, metavar="N",
                   help="the last N images of the last --train folder are not trained on; "
                        f"they validate and pick best.pt (default {HOLD_OUT})")
    p.add_argument("--datasets", nargs="+", default=["Set5", "Set14", "B100"],
                   help="test sets scored with the final weights")
    p.add_argument("--data-root", help="folder holding the test sets (default $CCLNN_DATA)")
    p.add_argument("--a2n-weights", default=DEFAULT_A2N, help="official A2N x2 weights "
                                                              "(Table 5 row; skipped if absent)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="config override for every trained run, e.g. data.patch_size=48")
    p.add_argument("--only", nargs="+", metavar="ROW",
                   help="train only these rows of the suite (run names' stems, e.g. rnan-s); "
                        "the table still lists every finished row")
    p.add_argument("--plan", action="store_true",
                   help="list the runs and estimate the training time left; train nothing")
    p.add_argument("--tables-only", action="store_true",
                   help="rewrite the table from finished runs; train nothing")
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("bench", help="performance benchmarks")
    bench_sub = p.add_subparsers(dest="what", required=True)
    q = bench_sub.add_parser("resize", help="MATLAB-exact resize vs PIL, 2040x1356 at x1/4")
    q.add_argument("--repeat", type=POSITIVE, default=7)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_run_bench)
    for what, title, channels, size, repeat in (
            ("nlsa", "our NLSA vs the official tensor program", 64, 512, 5),
            ("rnan-nonlocal", "RNAN's non-local block in key chunks vs the official dense "
             "form (160x160: a 128-pixel tile with its context)", 32, 160, 3)):
        q = bench_sub.add_parser(what, help=title)
        q.add_argument("--channels", type=POSITIVE, default=channels)
        q.add_argument("--size", type=POSITIVE, nargs=2, default=[size, size],
                       metavar=("H", "W"))
        q.add_argument("--batch", type=POSITIVE, default=1)
        q.add_argument("--backward", action="store_true", help="time forward + backward")
        q.add_argument("--repeat", type=POSITIVE, default=repeat)
        q.add_argument("--json", action="store_true")
        q.set_defaults(func=_run_bench)
    q = bench_sub.add_parser("model", help="a whole network: seconds, GFLOP/s, memory")
    q.add_argument("--model", required=True)
    q.add_argument("--scale", type=_scale_list, default=2)
    q.add_argument("--size", type=POSITIVE, nargs=2, default=[256, 256], metavar=("H", "W"),
                   help="LR size of the inference (and of the training patches with --train)")
    q.add_argument("--train", action="store_true", help="also time a training step")
    q.add_argument("--batch", type=POSITIVE, default=16)
    q.add_argument("--repeat", type=POSITIVE, default=3)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_run_bench)
    q = bench_sub.add_parser("train", help="seconds per training step: data vs compute")
    q.add_argument("--config", required=True)
    q.add_argument("--steps", type=POSITIVE, default=20)
    q.add_argument("--warmup", type=NON_NEGATIVE, default=3)
    q.add_argument("overrides", nargs="*", help="key=value config overrides")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_run_bench)

    p = sub.add_parser("lam", help="Local Attribution Map and Diffusion Index of a network")
    p.add_argument("--model", required=True)
    p.add_argument("--weights", help="weights file; '{scale}' in the path is replaced "
                                     "(default: the shipped weights)")
    p.add_argument("--scale", type=_scale_list, required=True)
    p.add_argument("--image", help="HR image (LR = MATLAB bicubic of it, mod-cropped)")
    p.add_argument("--dataset", help="mean DI over a benchmark set, centre window of each image")
    p.add_argument("--data-root", help="folder holding the benchmarks (default $CCLNN_DATA)")
    p.add_argument("--x", type=NON_NEGATIVE, help="window's left column, SR pixels")
    p.add_argument("--y", type=NON_NEGATIVE, help="window's top row, SR pixels")
    p.add_argument("--window", type=POSITIVE, default=16,
                   help="window size, SR pixels (default 16)")
    p.add_argument("-o", "--output", help="picture (.png; default IMAGE_lam_MODEL_xS.png); "
                                          "with --dataset a folder for one picture per image")
    p.add_argument("--batch", type=POSITIVE, default=10, help="path steps per network call")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--json", action="store_true", help="JSON only on stdout")
    p.set_defaults(func=cmd_lam)

    p = sub.add_parser("compare", help="crops of HR, LR, bicubic and networks with PSNR/SSIM")
    p.add_argument("--models", nargs="+", required=True, metavar="NAME[:WEIGHTS]",
                   help="networks ('bicubic' too); WEIGHTS may contain '{scale}' "
                        "(default: the shipped weights)")
    p.add_argument("--image", required=True, help="HR image")
    p.add_argument("--box", type=int, nargs=4, required=True, metavar=("X", "Y", "W", "H"),
                   help="crop in HR pixels: left, top, width, height")
    p.add_argument("--scale", type=_scale_list, required=True)
    p.add_argument("-o", "--output", required=True, help="picture (.png)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("plot", help="training curves of runs, or PSNR vs parameters (--scatter)")
    p.add_argument("inputs", nargs="+", metavar="RUN_DIR|RESULT.json")
    p.add_argument("--scatter", action="store_true",
                   help="inputs are `cclnn test --json` outputs: PSNR vs parameters")
    p.add_argument("--label", action="append", metavar="NAME",
                   help="network of each RESULT.json, in order (default: the file's stem)")
    p.add_argument("-o", "--output", required=True, help="picture (.png)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    q = data_sub.add_parser("make-lr", help="write MATLAB-bicubic LR_bicubic/X{s}/ beside HR_DIR")
    q.add_argument("hr_dir")
    q.add_argument("--scales", type=_scale_list, nargs="+", default=[2, 3, 4])
    q.add_argument("--overwrite", action="store_true")
    q.set_defaults(func=cmd_make_lr)
    from .data.fetch import add_fetch_parser
    add_fetch_parser(data_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CclnnError, OSError) as exc:
        code = getattr(exc, "exit_code", EXIT_USAGE)
        kind = "error: " if code == EXIT_USAGE else ""
        print(f"cclnn {args.command}: {kind}{exc}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print(f"cclnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
