"""``hubconf.py``: torch.hub.load on a local clone, one entry point per registered network."""
import pytest
import torch

import cclnn
from cclnn.errors import CclnnError
from conftest import ROOT


def test_every_registered_network_has_an_entry_point():
    hub = torch.hub._import_module("hubconf", str(ROOT / "hubconf.py"))  # as torch.hub does
    names = {name for name in dir(hub) if callable(getattr(hub, name)) and name[0] != "_"}
    assert names == {name.replace("-", "_") for name in cclnn.list_models()}


def test_pretrained_cclnn_t_is_the_shipped_network():
    net = torch.hub.load(str(ROOT), "cclnn_t", source="local", scale=2, pretrained=True)
    shipped = cclnn.create_model("cclnn-t", 2, "shipped")
    x = torch.rand(1, 3, 12, 10) * 255
    with torch.no_grad():
        assert torch.equal(net(x), shipped(x)) and net(x).shape == (1, 3, 24, 20)
    assert not net.training


def test_untrained_entry_point_takes_config_options():
    net = torch.hub.load(str(ROOT), "edsr_s", source="local", scale=3, n_resblocks=1)
    assert net.info.name == "edsr-s" and net.info.scale == 3 and net.info.config.n_resblocks == 1
    assert not net.training


def test_pretrained_without_shipped_weights_is_one_line():
    with pytest.raises(CclnnError) as info:
        torch.hub.load(str(ROOT), "edsr_baseline", source="local", scale=4, pretrained=True)
    message = str(info.value)
    assert message.count("\n") == 0
    assert message.startswith("no weights ship with cclnn for 'edsr-baseline' at x4 (shipped: "
                              "cclnn-t x2, x3, x4)")
