"""torch.hub entry points of a cclnn clone: one per registered network, its name with '_' for
'-' (``cclnn_t``, ``edsr_baseline``, ...)::

    net = torch.hub.load("/path/to/clone", "cclnn_t", source="local", scale=2, pretrained=True)

Each takes ``scale`` (2, 3 or 4), ``pretrained`` (the weights that ship with cclnn; a network
without them is a one-line :class:`cclnn.errors.CclnnError` naming those that exist) and the
network's config options as keywords; it returns the network in eval mode on the CPU, taking
N x 3 x h x w float RGB in [0, 255]. ``cclnn models`` lists the networks.
"""
from __future__ import annotations

dependencies = ["torch", "numpy", "PIL", "yaml", "tqdm", "safetensors", "scipy"]


def _entry_point(name: str):
    def load(scale: int = 2, pretrained: bool = False, **options):
        from cclnn import build_model, create_model
        if pretrained:
            return create_model(name, scale, "shipped", **options)
        return build_model(name, scale, **options).eval()
    load.__name__ = name.replace("-", "_")
    load.__doc__ = f"Network '{name}' (see `cclnn models`) at ``scale``; ``pretrained``: the " \
                   "weights that ship with cclnn."
    return load


def _register_all() -> None:
    from cclnn import list_models
    for name in list_models():
        globals()[name.replace("-", "_")] = _entry_point(name)


_register_all()
