import os
import re

import pytest
import torch

import cclnn
from cclnn.weights import WeightsError, load_weights, save_weights
from conftest import shared_path


def _same_output(a, b, size=(1, 3, 12, 12)):
    x = torch.rand(*size) * 255
    a.eval(), b.eval()
    with torch.no_grad():
        return torch.equal(a(x), b(x))


def test_own_checkpoint_roundtrip(tmp_path):
    model = cclnn.build_model("cclnn-l", 2, channels=16, n_resblocks=8, cca_reduction=4)
    fresh = cclnn.build_model("cclnn-l", 2, channels=16, n_resblocks=8, cca_reduction=4)
    save_weights(model, tmp_path / "w.safetensors")
    assert _same_output(model, load_weights(fresh, tmp_path / "w.safetensors"))
    torch.save({"model": model.state_dict(), "iteration": 3}, tmp_path / "ckpt.pt")
    fresh2 = cclnn.build_model("cclnn-l", 2, channels=16, n_resblocks=8, cca_reduction=4)
    assert _same_output(model, load_weights(fresh2, tmp_path / "ckpt.pt"))
    ddp = {"params": {"module." + k: v for k, v in model.state_dict().items()}}
    torch.save(ddp, tmp_path / "ddp.pth")
    fresh3 = cclnn.build_model("cclnn-l", 2, channels=16, n_resblocks=8, cca_reduction=4)
    assert _same_output(model, load_weights(fresh3, tmp_path / "ddp.pth"))


def test_saved_weights_follow_the_umask(tmp_path):
    """A weights file is as readable as any file the user creates (safetensors' own writer
    makes owner-only files), and no temp file is left beside it."""
    save_weights(cclnn.build_model("srcnn", 2), tmp_path / "w.safetensors")
    (tmp_path / "plain").write_bytes(b"")
    assert (tmp_path / "w.safetensors").stat().st_mode == (tmp_path / "plain").stat().st_mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "w.safetensors"]


def _to_official(state, table):
    """Our keys -> EDSR-PyTorch-style keys, written out by hand for the test."""
    out = {}
    for key, value in state.items():
        for ours, theirs in table:
            key = re.sub(ours, theirs, key)
        out[key] = value
    return out


OFFICIAL_RESBLOCK = [(r"\.conv1\.", ".body.0."), (r"\.conv2\.", ".body.2.")]
OFFICIAL_NLSA = [(r"\.conv_match\.", ".conv_match.0."), (r"\.conv_assembly\.", ".conv_assembly.0.")]
OFFICIAL_RCAN = [(r"\.ca\.squeeze\.", ".body.3.conv_du.0."), (r"\.ca\.excite\.", ".body.3.conv_du.2.")]


@pytest.mark.parametrize("name, overrides, table", [
    ("edsr-baseline", dict(n_resblocks=2), OFFICIAL_RESBLOCK),
    ("nlsn", dict(channels=16, n_resblocks=8), OFFICIAL_RESBLOCK + OFFICIAL_NLSA),
    ("rcan", dict(channels=16, n_resgroups=2, n_resblocks=20), OFFICIAL_RESBLOCK + OFFICIAL_RCAN),
])
def test_official_style_state_dicts(tmp_path, name, overrides, table):
    model = cclnn.build_model(name, 4, **overrides)
    official = _to_official(model.state_dict(), table)
    assert set(official) != set(model.state_dict())
    torch.save(official, tmp_path / "official.pt")
    fresh = cclnn.build_model(name, 4, **overrides)
    assert _same_output(model, load_weights(fresh, tmp_path / "official.pt"))


def test_checkpoints_trained_in_0_1_compute_their_official_function(tmp_path):
    """The official NLSN trains with --rgb_range 1: its checkpoints (mean shifts at +-mean, not
    +-255 mean) must give that network's outputs, scaled to [0, 255], not a wrong image. EDSR is
    a ReLU network: dividing every bias by 255 makes exactly the [0, 1] version of the same
    function, so the loaded network must reproduce the original outputs."""
    model = cclnn.build_model("edsr-baseline", 2, n_resblocks=2, channels=8).eval()
    for name, p in model.named_parameters():
        if name.endswith("bias") and "mean" not in name:
            torch.nn.init.uniform_(p, -3.0, 3.0)
    in_0_1 = {k: v / 255 if k.endswith("bias") else v for k, v in model.state_dict().items()}
    torch.save(_to_official(in_0_1, OFFICIAL_RESBLOCK), tmp_path / "rgb_range_1.pt")
    fresh = load_weights(cclnn.build_model("edsr-baseline", 2, n_resblocks=2, channels=8).eval(),
                         tmp_path / "rgb_range_1.pt")
    assert (fresh.sub_mean.rgb_range, fresh.add_mean.rgb_range) == (1.0, 1.0)
    assert fresh.info.value_range == 1.0  # the descriptor follows the file's range
    x = torch.rand(1, 3, 9, 7) * 255
    with torch.no_grad():
        assert torch.allclose(fresh(x), model(x), atol=1e-3)
        assert fresh(x).std() > 10  # a real image-scale output, not a blank one
    save_weights(fresh, tmp_path / "again.safetensors")  # our own files keep the range too
    again = load_weights(cclnn.build_model("edsr-baseline", 2, n_resblocks=2, channels=8).eval(),
                         tmp_path / "again.safetensors")
    built = cclnn.build_model("edsr-baseline", 2, n_resblocks=2, channels=8, rgb_range=1).eval()
    built.load_state_dict(in_0_1)  # a network trained in [0, 1] from the start (config field)
    with torch.no_grad():
        assert torch.allclose(again(x), model(x), atol=1e-3)
        assert torch.allclose(built(x), model(x), atol=1e-3)
    with pytest.raises(cclnn.config.ConfigError, match="rgb_range"):
        cclnn.build_model("nlsn-s", 2, rgb_range=0)


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    model = cclnn.build_model("edsr-baseline", 2, n_resblocks=2)
    state = model.state_dict()
    state.pop("head.0.weight")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match=r"missing keys: head\.0\.weight.*unexpected keys: "
                                           r"extra\.weight"):
        load_weights(model, tmp_path / "bad.pt")
    wrong_scale = cclnn.build_model("edsr-baseline", 3, n_resblocks=2)
    torch.save(cclnn.build_model("edsr-baseline", 2, n_resblocks=2).state_dict(), tmp_path / "x2.pt")
    with pytest.raises(WeightsError, match=r"shape mismatch: .*tail\.0\.0\.weight \(file \(256, 64, 3, 3\), model \(576, 64, 3, 3\)\)"):
        load_weights(wrong_scale, tmp_path / "x2.pt")


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    _Evil.marker = str(marker)
    torch.save({"head.0.weight": torch.zeros(1), "payload": evil}, tmp_path / "evil.pt")
    model = cclnn.build_model("edsr-baseline", 2, n_resblocks=1)
    with pytest.raises(WeightsError, match="refused to load"):
        load_weights(model, tmp_path / "evil.pt")
    assert not marker.exists()


def test_unreadable_files(tmp_path):
    model = cclnn.build_model("srcnn", 2)
    with pytest.raises(WeightsError, match="not found"):
        load_weights(model, tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pt"):
        load_weights(model, tmp_path / "junk.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(WeightsError, match="junk.safetensors"):
        load_weights(model, tmp_path / "junk.safetensors")


def test_official_a2n_weights_load_every_key():
    path = shared_path("weights", "a2n", "aan_x2.pt")
    raw = torch.load(path, weights_only=True, map_location="cpu")
    model = load_weights(cclnn.build_model("a2n", 2), path)  # strict: every key used
    assert len(raw) == len(model.state_dict())
    assert torch.equal(model.head.weight, raw["conv_first.weight"])
    assert torch.equal(model.upsample[0].pa.weight, raw["att1.conv.weight"])
