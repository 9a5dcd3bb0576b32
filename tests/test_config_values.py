"""Every out-of-range config value is a one-line ConfigError naming its key, at load time
(issue 22: config values). Configs are built in memory; nothing trains."""
import glob
import math

import pytest
import yaml

from cclnn.cli import main
from cclnn.config import ConfigError
from cclnn.engine.train_config import config_from_dict, dump_config, load_config
from cclnn.models.common import NetworkConfig
from cclnn.models.registry import get_entry, list_models, model_config

from conftest import ROOT

NAN, INF = math.nan, math.inf


def base_tree() -> dict:
    return {"name": "run", "model": {"name": "edsr-s", "scale": 2},
            "data": {"train": [{"hr": "hr"}]}}


def with_value(tree: dict, dotted: str, value) -> dict:
    node = tree
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return tree


BAD = [
    # (dotted key, value, fragment of the message)
    ("optim.lr", NAN, "optim.lr: must be a finite number > 0, got nan"),
    ("optim.lr", INF, "optim.lr: must be a finite number > 0, got inf"),
    ("optim.lr", 0, "optim.lr: must be a finite number > 0"),
    ("optim.lr", -1e-4, "optim.lr: must be a finite number > 0"),
    ("optim.lr", "nan", "optim.lr: must be a finite number > 0"),
    ("optim.eps", -1e-8, "optim.eps: must be a finite number >= 0"),
    ("optim.eps", NAN, "optim.eps: must be"),
    ("optim.weight_decay", -0.1, "optim.weight_decay: must be a finite number >= 0"),
    ("optim.weight_decay", NAN, "optim.weight_decay: must be"),
    ("optim.betas", [0.9], "optim.betas: expected 2 values, got 1"),
    ("optim.betas", [0.9, 0.99, 0.999], "optim.betas: expected 2 values, got 3"),
    ("optim.betas", [], "optim.betas: expected 2 values, got 0"),
    ("optim.betas", [1.0, 0.999], "optim.betas[0]: must be a finite number in [0, 1)"),
    ("optim.betas", [0.9, -0.1], "optim.betas[1]: must be"),
    ("optim.betas", [0.9, NAN], "optim.betas[1]: must be"),
    ("optim.lr_gamma", 0, "optim.lr_gamma: must be a finite number in (0, 1]"),
    ("optim.lr_gamma", 1.5, "optim.lr_gamma: must be"),
    ("optim.lr_gamma", NAN, "optim.lr_gamma: must be"),
    ("optim.grad_clip", -1, "optim.grad_clip: must be a finite number > 0, got -1"),
    ("optim.grad_clip", 0, "optim.grad_clip: must be"),
    ("optim.grad_clip", NAN, "optim.grad_clip: must be"),
    ("optim.lr_step_epochs", 0, "optim.lr_step_epochs: must be at least 1, got 0"),
    ("optim.lr_step_epochs", -5, "optim.lr_step_epochs: must be at least 1"),
    ("optim.lr_step_iterations", 0, "optim.lr_step_iterations: must be at least 1"),
    ("optim.lr_step_iterations", -1, "optim.lr_step_iterations: must be at least 1"),
    ("optim.ema_decay", 1.5, "optim.ema_decay: must be a finite number in (0, 1)"),
    ("optim.ema_decay", 1, "optim.ema_decay: must be"),
    ("optim.ema_decay", 0, "optim.ema_decay: must be"),
    ("optim.ema_decay", NAN, "optim.ema_decay: must be"),
    ("loss.aux_weight", -1e-3, "loss.aux_weight: must be a finite number >= 0"),
    ("loss.aux_weight", NAN, "loss.aux_weight: must be"),
    ("loss.warmup_epochs", -1, "loss.warmup_epochs: must be at least 0, got -1"),
    ("loss.warmup_iterations", -1, "loss.warmup_iterations: must be at least 0"),
    ("data.workers", -1, "data.workers: must be at least 0, got -1"),
    ("data.patch_size", 0, "data.patch_size: must be at least 1"),
    ("data.batch_size", -2, "data.batch_size: must be at least 1"),
    ("data.repeat", 0, "data.repeat: must be at least 1"),
    ("data.train", [{"hr": "hr", "first": 0}], "data.train[0].first: must be at least 1"),
    ("data.train", [{"hr": "a"}, {"hr": "hr", "last": -3}],
     "data.train[1].last: must be at least 1, got -3"),
    ("data.train", [{"hr": "hr", "first": 5, "last": 4}],
     "data.train[0].first: must not be after last=4"),
    ("val.held_out", {"hr": "hr", "first": -1}, "val.held_out.first: must be at least 1"),
    ("val.held_out", {"hr": "hr", "first": 9, "last": 2}, "val.held_out.first: must not be"),
    ("val.every", -1, "val.every: must be at least 0, got -1"),
    ("val.max_images", 0, "val.max_images: must be at least 1, got 0"),
    ("seed", -1, "seed: must be an integer in [0, "),
    ("seed", 2**64, "seed: must be an integer in [0, "),
    ("checkpoint_every", 0, "checkpoint_every: must be at least 1, got 0"),
    ("log_every", 0, "log_every: must be at least 1, got 0"),
    ("log_every", -10, "log_every: must be at least 1"),
    ("max_iterations", 0, "max_iterations: must be at least 1, got 0"),
    ("max_iterations", -1, "max_iterations: must be at least 1"),
    ("epochs", 0, "epochs: must be at least 1, got 0"),
    ("name", "", "name: must not be empty"),
    ("name", "   ", "name: must not be empty"),
    ("name", "../../x", "name: must be one folder name inside out_dir"),
    ("name", "..", "name: must be one folder name"),
    ("name", ".", "name: must be one folder name"),
    ("name", "a/b", "name: must be one folder name"),
    ("name", "a\\b", "name: must be one folder name"),
    # network configs: one shared check (cclnn.models.common.NetworkConfig)
    ("model.options.channels", 0, "channels: must be at least 1, got 0"),
    ("model.options.channels", -8, "channels: must be at least 1"),
    ("model.options.n_resblocks", -1, "n_resblocks: must be at least 0, got -1"),
    ("model.options.res_scale", NAN, "res_scale: must be a finite number, got nan"),
    ("model.options.res_scale", INF, "res_scale: must be a finite number, got inf"),
    ("model.options.rgb_range", 0, "rgb_range: must be a finite number > 0"),
    ("model.options.rgb_range", -255, "rgb_range: must be a finite number > 0"),
]

# (model, option, value, fragment): the shared check over the other networks' fields
BAD_NETWORK = [
    ("rcan-s", "n_resgroups", -1, "n_resgroups: must be at least 0"),
    ("rcan-s", "reduction", 0, "reduction: must be at least 1, got 0"),
    ("rcan-s", "reduction", 64, "reduction: must be at most channels=32, got 64"),
    ("nlsn-s", "n_hashes", 0, "n_hashes: must be at least 1"),
    ("nlsn-s", "chunk_size", 0, "chunk_size: must be at least 1"),
    ("nlsn-s", "reduction", -4, "reduction: must be at least 1"),
    ("cclnn-s", "cca_reduction", 0, "cca_reduction: must be at least 1"),
    ("cclnn-s", "cca_reduction", 33, "cca_reduction: must be at most channels=32"),
    ("cclnn-s", "contrast_margin", NAN, "contrast_margin: must be a finite number"),
    ("cclnn-s", "contrast_ratio", NAN, "contrast_ratio: must be a finite number"),
    ("cclnn-s", "n_resblocks", -1, "n_resblocks: must be at least 0"),
    ("a2n", "channels", 0, "channels: must be at least 1"),
    ("a2n", "up_channels", 0, "up_channels: must be at least 1"),
    ("a2n", "n_blocks", -1, "n_blocks: must be at least 0"),
    ("a2n", "temperature", 0, "temperature: must be a finite number > 0"),
    ("divanet", "up_groups", 0, "up_groups: must be at least 1"),
    ("divanet", "n_groups", -1, "n_groups: must be at least 0"),
    ("divanet", "squeeze", INF, "squeeze: must be a finite number"),
    ("rnan", "channels", -1, "channels: must be at least 1"),
    ("rnan", "n_resgroups", -2, "n_resgroups: must be at least 0"),
    ("srcnn", "channels", 0, "channels: must be at least 1"),
    ("srcnn", "mid_channels", 0, "mid_channels: must be at least 1"),
    ("srcnn", "kernels", [-1, 5, 5], "kernels[0]: must be at least 1"),
    ("vdsr", "depth", 1, "depth: must be at least 2"),
    ("vdsr", "depth", -3, "depth: must be at least"),
    ("vdsr", "channels", 0, "channels: must be at least 1"),
    ("edsr", "n_resblocks", -1, "n_resblocks: must be at least 0"),
]


@pytest.mark.parametrize("key,value,fragment", BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_bad_value_is_one_line_error_naming_the_key(key, value, fragment):
    with pytest.raises(ConfigError) as info:
        config_from_dict(with_value(base_tree(), key, value))
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize("model,key,value,fragment", BAD_NETWORK,
                         ids=[f"{m}.{k}={v!r}" for m, k, v, _ in BAD_NETWORK])
def test_bad_network_option(model, key, value, fragment):
    with pytest.raises(ConfigError) as info:
        model_config(model, **{key: value})
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_every_network_config_shares_the_check():
    for name in list_models():
        assert isinstance(get_entry(name).defaults, NetworkConfig), name
        model_config(name)  # every shipped default is valid


@pytest.mark.parametrize("key,value", [
    ("optim.grad_clip", None), ("optim.ema_decay", None), ("optim.ema_decay", 0.999),
    ("optim.lr_step_iterations", None), ("optim.betas", [0.0, 0.0]), ("optim.lr_gamma", 1),
    ("optim.eps", 0), ("val.every", 0), ("val.max_images", None), ("max_iterations", None),
    ("loss.warmup_iterations", 0), ("data.workers", 0), ("seed", 0), ("name", "a.b_c-1"),
    ("model.options.n_resblocks", 0),
])
def test_edge_values_stay_valid(key, value):
    config_from_dict(with_value(base_tree(), key, value))


def test_shipped_configs_still_load_and_dump_unchanged():
    paths = glob.glob(str(ROOT / "configs" / "**" / "*.yaml"), recursive=True)
    assert paths
    for path in paths:
        config = load_config(path)
        assert load_config_text(dump_config(config)) == config


def load_config_text(text: str):
    return config_from_dict(yaml.safe_load(text))


def test_non_utf8_config_file_is_one_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: not UTF-8 text")
    assert "\n" not in str(info.value)


def test_bad_override_on_the_cli_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(base_tree()))
    assert main(["train", str(path), "optim.lr=nan", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "optim.lr: must be a finite number > 0, got nan" in err
    assert not (tmp_path / "runs").exists()  # refused before the run folder is made


def test_bad_config_file_value_on_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(with_value(base_tree(), "name", "../../x")))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "name: must be one folder name" in err
