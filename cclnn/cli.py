"""The ``cclnn`` command line. Errors are one line on stderr and a non-zero exit status."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

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
    print("| model | x2 params | x3 params | x4 params | description |")
    print("|---|---:|---:|---:|---|")
    for name, counts in by_name.items():
        cells = " | ".join(f"{counts[s] / 1e6:.3f} M" for s in (2, 3, 4))
        print(f"| {name} | {cells} | {get_entry(name).summary} |")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import torch

    from . import build_model
    from .assets import set5_lr
    from .data.images import read_image
    path = set5_lr(args.image, args.scale)
    if not path.is_file():
        raise CLIError(f"--image: no bundled Set5 image '{args.image}'")
    lr = read_image(path)
    torch.manual_seed(0)
    model = build_model(args.model, args.scale).eval()
    x = torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1)[None].float()
    times = []
    with torch.inference_mode():
        for _ in range(args.repeat):
            start = time.perf_counter()
            sr = model(x)
            times.append(time.perf_counter() - start)
    print(f"{args.model} x{args.scale} (randomly initialised weights: the demo times the "
          f"network, trained weights come with the upscale command)")
    print(f"input {path.name} {lr.shape[1]}x{lr.shape[0]} -> output "
          f"{sr.shape[-1]}x{sr.shape[-2]}; forward pass median {statistics.median(times):.3f} s "
          f"over {args.repeat} runs on {torch.get_num_threads()} CPU threads")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cclnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the networks with their parameter counts")
    p.add_argument("--json", action="store_true", help="JSON list of {name, scale, params}")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("demo", help="timed forward pass of a network on a bundled Set5 image")
    p.add_argument("--model", default="cclnn-l")
    p.add_argument("--scale", type=int, default=2, choices=(2, 3, 4))
    p.add_argument("--image", default="butterfly", help="bundled Set5 image name")
    p.add_argument("--repeat", type=int, default=3)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CclnnError as exc:
        print(f"cclnn {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"cclnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
