"""What every command shares: the parser class, argument types, repeated options, the network
that ``--model``/``--weights`` name, and the one place where a :class:`CclnnError` becomes one
line on stderr and an exit status."""
from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from ..data.layout import SCALES, SCALES_TEXT
from ..errors import CclnnError
from ..factory import (PRETRAINED, SHIPPED, NoShippedWeights, UnnamedNetwork, WrongNetwork,
                       create_model, weights_path)
from ..manifest import PretrainedError
from ..weights import WeightsError, read_origin

DEFAULT_MODEL = "cclnn-t"  # the network of `cclnn upscale` without --model or --weights
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CLIError(CclnnError):
    """A bad command-line option or argument."""


def printable_line(text: object) -> str:
    """``text`` as one line a terminal shows as written: line breaks collapsed to a space,
    every other control or format character (ANSI escapes from a file name, say) escaped."""
    joined = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in joined)


# argparse's own words, which name Python types and functions, in the user's words
USAGE_WORDS = ((re.compile(r"^argument ([^:]+): "), r"\1: "),
               (re.compile(r"invalid int value: "), "expected a whole number, got "),
               (re.compile(r"invalid float value: "), "expected a number, got "),
               (re.compile(r"invalid \w+ value: "), "invalid value "))


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with a pointer to --help), exit status 2, and
    a negative number in exponent form (``--a -1e-3``) is a value, not an unknown option."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

    def error(self, message):
        for pattern, words in USAGE_WORDS:
            message = pattern.sub(words, message)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {printable_line(message)} "
                              f"(see {self.prog} --help)\n")


def count_at_least(minimum: int):
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


POSITIVE, NON_NEGATIVE = count_at_least(1), count_at_least(0)


def scale_factor(value: str) -> int:
    """argparse type: a scale the networks are built for."""
    number = int(value) if value.strip().isdigit() else None
    if number not in SCALES:
        raise argparse.ArgumentTypeError(f"must be {SCALES_TEXT}, got {value}")
    return number


def positive_number(value: str) -> float:
    """argparse type: a finite number above zero (seconds, say)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return number


def tile_size(value: str):
    """argparse type: ``auto`` or a tile side in LR pixels (0: no tiling)."""
    return value if value == "auto" else NON_NEGATIVE(value)


def add_scale(parser: argparse.ArgumentParser, **options) -> None:
    """``--scale`` (one of ``SCALES``); ``options`` say its default, ``nargs`` or ``required``."""
    parser.add_argument("--scale", type=scale_factor, **options)


WEIGHTS_WITH_SCALE = ("weights file ('{scale}' in the path is replaced), or 'pretrained': the "
                      "network's official weights, fetched on first use (cclnn weights list)")
NAMED_WEIGHTS = (SHIPPED, PRETRAINED)  # --weights words that name no file


def add_weights(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--weights", help=help_text)


def model_from_options(name: str | None, scale: int, weights: str | None,
                       device: str | torch.device = "cpu", n_scales: int = 1) -> nn.Module:
    """The network of ``--model NAME`` / ``--weights FILE`` at ``scale``, from
    :func:`cclnn.create_model`: without ``--weights`` the shipped weights (of cclnn-t without
    ``--model``); ``--weights pretrained`` the manifest's file for ``--model``, fetched on
    first use; a file that records its network is built as recorded, so ``--model`` may
    be omitted; with ``n_scales`` scales the file name must hold ``{scale}``. The errors name
    the option."""
    if weights and weights not in NAMED_WEIGHTS and n_scales > 1 and "{scale}" not in weights:
        raise WeightsError("--weights: several scales need one file each; put '{scale}' in "
                           "the path (e.g. model_x{scale}.pt)")
    if not weights:
        name = name or DEFAULT_MODEL
    elif weights in NAMED_WEIGHTS and not name:
        raise WeightsError(f"--model: required with --weights {weights} (which network's?)")
    try:
        return create_model(name, scale, weights or SHIPPED, device=device)
    except NoShippedWeights as exc:
        raise WeightsError(f"--weights: required for model '{name}' at x{scale}: no weights "
                           f"ship with cclnn for it; {exc.how_to_get}") from None
    except PretrainedError as exc:
        raise WeightsError(f"--weights {weights}: {exc}") from None
    except UnnamedNetwork as exc:
        raise WeightsError(f"--model: required: {exc}") from None
    except WrongNetwork as exc:
        if exc.field == "model":
            raise WeightsError(f"--model {name}: {exc.path} holds weights for {exc.recorded} "
                               "(omit --model to use the file's own)") from None
        raise WeightsError(f"--scale {scale}: {exc.path} holds weights for "
                           f"{exc.recorded}") from None


def scale_or_recorded(scale: int | None, weights: str | None, default: int = 2) -> int:
    """``--scale`` if given, else the scale the ``--weights`` file records, else ``default``."""
    if scale is not None:
        return scale
    if weights and weights not in NAMED_WEIGHTS and "{scale}" not in weights:
        origin = read_origin(weights_path(None, default, weights))
        if origin is not None:
            return origin.scale
    return default


def model_label(name: str | None, weights: str | None, scale: int) -> str:
    """The network's name for tables and titles: ``--model``, else what the file records."""
    if name:
        return name
    if not weights:
        return DEFAULT_MODEL
    if weights in NAMED_WEIGHTS:
        raise WeightsError(f"--model: required with --weights {weights} (which network's?)")
    origin = read_origin(weights_path(None, scale, weights))
    return origin.name if origin else Path(weights).stem


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")


def add_data_root(parser: argparse.ArgumentParser, holding: str = "the benchmarks") -> None:
    parser.add_argument("--data-root", help=f"folder holding {holding} (default $CCLNN_DATA)")


def add_json(parser: argparse.ArgumentParser, help_text: str | None = None) -> None:
    parser.add_argument("--json", action="store_true", help=help_text)


def add_self_ensemble(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--self-ensemble", action="store_true", help="x8 flip/rotation average")


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command; a user-facing error or an interrupt becomes one line on stderr
    and the exit status (the error's ``exit_code``, else 2), never a traceback. Python
    warnings (PIL's, torch's) are one line each too, written around any progress bar."""
    sub_command = getattr(args, f"{args.command}_command", None)  # `cclnn data make-lr`
    command = f"{args.command} {sub_command}" if sub_command else args.command
    with warnings.catch_warnings():
        warnings.showwarning = _warning_printer(command)
        try:
            return args.func(args)
        except (CclnnError, OSError) as exc:
            code = getattr(exc, "exit_code", EXIT_USAGE)
            kind = "error: " if code == EXIT_USAGE else ""
            print(f"cclnn {command}: {kind}{printable_line(exc)}", file=sys.stderr)
            return code
        except KeyboardInterrupt:
            print(f"cclnn {command}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED


def _warning_printer(command: str):
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        tqdm.write(f"cclnn {command}: warning: {printable_line(message)}", file=sys.stderr)
    return show
