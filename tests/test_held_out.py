"""val.held_out: validation on training images that data.train leaves out, checked at start."""
import csv

import pytest

from cclnn.config import ConfigError
from cclnn.data.images import write_image
from cclnn.engine.train_config import config_from_dict
from cclnn.engine.trainer import Trainer

from conftest import tiny_image


def _config(tmp_path, folder, train_last, held_first, val_every=2):
    return config_from_dict({
        "name": "held",
        "model": {"name": "edsr-baseline", "scale": 2, "options": {"channels": 4,
                                                                   "n_resblocks": 1}},
        "data": {"train": [{"hr": str(folder), "last": train_last}], "patch_size": 8,
                 "batch_size": 2, "repeat": 1},
        "max_iterations": 2, "epochs": 1, "device": "cpu",
        "val": {"held_out": {"hr": str(folder), "first": held_first}, "every": val_every},
        "out_dir": str(tmp_path / "runs"),
    })


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "train"
    path.mkdir()
    for i in range(5):
        write_image(path / f"im{i}.png", tiny_image(24, 24, rng=i))
    return path


def test_held_out_images_validate_and_name_themselves(tmp_path, folder):
    trainer = Trainer(_config(tmp_path, folder, train_last=3, held_first=4), progress=False)
    assert len(trainer.dataset) == 3  # images 1-3 train
    trainer.train()
    with open(trainer.run_dir / "val_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["dataset"], r["images"]) for r in rows] == [("train[4-5]", "2")]


def test_an_image_both_trained_on_and_held_out_is_refused_before_training(tmp_path, folder):
    with pytest.raises(ConfigError, match=r"val.held_out: 1 image\(s\) also in data.train"):
        Trainer(_config(tmp_path, folder, train_last=4, held_first=4), progress=False)
    assert not (tmp_path / "runs" / "held").exists()


def test_a_missing_validation_folder_is_an_error_when_the_run_starts(tmp_path, folder):
    config = _config(tmp_path, folder, train_last=3, held_first=4)
    missing = config_from_dict({**_tree(config), "val": {"dataset": str(tmp_path / "nope")}})
    with pytest.raises(Exception, match="nope"):
        Trainer(missing, progress=False)


def _tree(config):
    from cclnn.config import config_to_dict
    return config_to_dict(config)
