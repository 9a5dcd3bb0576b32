"""``cclnn inspect FILE``: which network a weights file holds, and where that knowledge comes
from: the file's own JSON record, or its tensors' names and shapes (``cclnn.detect``)."""
from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from .common import add_json


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="the network, scale and options a weights file holds "
                                       "(recorded, or detected from its tensors)")
    p.add_argument("file", help="weights file (.safetensors, .pt, .pth)")
    add_json(p, "one JSON object on stdout")
    p.set_defaults(func=run)


def weights_report(path: str) -> dict[str, Any]:
    """The facts of ``path`` as one JSON-ready dict (``network`` is None when ambiguous)."""
    from ..detect import AmbiguousWeights, describe_state, detect, fits
    from ..weights import WeightsError, read_weights
    state, origin = read_weights(path)
    report: dict[str, Any] = {"file": path, "tensors": len(state), "candidates": []}
    if origin is not None:
        if not fits(state, origin.name, origin.scale, **origin.options):
            raise WeightsError(f"{path}: its record names {origin.name} x{origin.scale}, but its "
                               "tensors do not fit that network")
        report.update(source="record", scale_from="record")
        return _network(report, origin.name, origin.scale, origin.options,
                        {k: "recorded" for k in origin.options}, state)
    try:
        found = detect(state, path)
    except AmbiguousWeights as exc:
        return dict(report, source="detected", network=None, ambiguity=str(exc),
                    candidates=[_candidate(c) for c in exc.candidates])
    if found is None:
        raise WeightsError(f"{path}: no cclnn record, and no registry network fits its tensors "
                           f"({describe_state(state)})")
    report.update(source="detected", scale_from=found.scale_from,
                  same_network=list(found.same_network),
                  candidates=[_candidate(c) for c in found.candidates])
    return _network(report, found.name, found.scale, found.options,
                    {k: "detected" for k in found.read}, state)


def _network(report: dict, name: str, scale: int, options: dict, sources: dict,
             state) -> dict[str, Any]:
    from ..detect import model_value_range
    from ..models import count_parameters, model_config
    config = model_config(name, **options)
    fields = [f.name for f in dataclasses.fields(config)]
    return dict(report, network=name, scale=scale,
                options={f: getattr(config, f) for f in fields},
                option_sources={f: sources.get(f, "default") for f in fields},
                value_range=model_value_range(name, scale, options, state),
                parameters=count_parameters(name, scale, **options))


def _candidate(candidate) -> dict[str, Any]:
    return {"network": candidate.name, "scale": candidate.scale,
            "options": dict(candidate.options)}


SCALE_FROM = {"record": "recorded", "weights": "from the upsampler's shapes",
              "file name": "from the file name: the shapes fit more than one scale",
              "request": "as asked"}
SOURCE = {"record": "the file's JSON record", "detected": "detected from its keys and shapes"}


def _text(report: dict[str, Any]) -> list[str]:
    lines = [f"file:        {report['file']} ({report['tensors']} tensors)"]
    if report["network"] is None:
        lines.append(f"network:     ambiguous: {report['ambiguity']}")
        lines += [f"candidate:   {c['network']} x{c['scale']} {c['options'] or ''}".rstrip()
                  for c in report["candidates"]]
        return lines
    lines += [f"network:     {report['network']} ({SOURCE[report['source']]})",
              f"scale:       x{report['scale']} ({SCALE_FROM[report['scale_from']]})"]
    groups: dict[str, list[str]] = {}
    for name, value in report["options"].items():
        groups.setdefault(report["option_sources"][name], []).append(f"{name}={value!r}")
    default = ("not in the weights: default used" if report["source"] == "detected"
               else "not recorded: default used")
    lines += [f"options:     {', '.join(items)} ({default if kind == 'default' else kind})"
              for kind, items in groups.items()]
    value_range = report["value_range"]
    lines += ["value range: " + ("[0, 255] (no mean shift)" if value_range is None
                                 else f"[0, {value_range:g}] (its mean shifts convert: input "
                                      "and output stay [0, 255])" if value_range != 255
                                 else "[0, 255]"),
              f"parameters:  {report['parameters']:,}"]
    if report.get("same_network"):
        lines.append(f"same network for inference (they differ in training only): "
                     f"{', '.join(report['same_network'])}")
    return lines


def run(args: argparse.Namespace) -> int:
    report = weights_report(args.file)
    if args.json:
        print(json.dumps(report))
    else:
        print("\n".join(_text(report)))
    return 0
