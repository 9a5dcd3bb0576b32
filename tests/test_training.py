"""The training engine: configs, smoke runs, exact resume after SIGKILL, DDP, non-finite loss."""
import csv
import json
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

import cclnn
from cclnn.config import ConfigError
from cclnn.data.images import write_image
from cclnn.engine.train_config import load_config
from cclnn.engine.trainer import Trainer, TrainingError, resume_config

from conftest import ROOT, cli_env, run_cli, tiny_image_folder


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    folder = tiny_image_folder(tmp_path / "hr", 6, 6, 7, rng, block=6)  # blocky, learnable
    write_image(folder / "small.png", np.zeros((10, 10, 3), np.uint8))  # skipped: too small
    # a small validation set: fast for every network
    tiny_image_folder(tmp_path / "val" / "HR", 2, 36, 30, rng, prefix="v")
    return folder


def tiny_config(tmp_path, images, **extra):
    tree = {
        "name": "tiny",
        "model": {"name": "edsr-baseline", "scale": 2,
                  "options": {"channels": 8, "n_resblocks": 1}},
        "data": {"train": [{"hr": str(images)}], "patch_size": 8, "batch_size": 2, "repeat": 2},
        "optim": {"lr": 1e-3},
        "epochs": 2,
        "deterministic": True,
        "val": {"dataset": str(images.parent / "val"), "every": 6},
        "checkpoint_every": 3,
        "log_every": 1,
        "out_dir": str(tmp_path / "runs"),
        "device": "cpu",  # not "auto": the same test on a GPU machine
    }
    for dotted, value in extra.items():
        node = tree
        keys = dotted.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    path = tmp_path / f"{tree['name']}.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def losses(run_dir):
    with open(run_dir / "train_log.csv") as f:
        return [(r["iteration"], r["loss"], r["l_rec"]) for r in csv.DictReader(f)]


def test_every_shipped_config_loads():
    configs = sorted((ROOT / "configs").rglob("*.yaml"))
    assert len(configs) >= 12
    for path in configs:
        config = load_config(path)
        cclnn.build_model  # the model section was validated against the registry
        assert config.model.scale in (2, 3, 4), path


def test_config_errors(tmp_path, images):
    path = tiny_config(tmp_path, images)
    with pytest.raises(ConfigError, match="unknown key 'optim.lrr'.*did you mean 'lr'"):
        load_config(path, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="epochs: expected an integer"):
        load_config(path, ["epochs=many"])
    with pytest.raises(ConfigError, match="model.options: unknown key 'chanels'"):
        load_config(path, ["model.options.chanels=4"])
    assert load_config(path, ["optim.lr=2e-4"]).optim.lr == 2e-4


@pytest.mark.slow
def test_resume_after_sigkill_matches_straight_run(tmp_path, images):
    path = tiny_config(tmp_path, images)
    straight = tmp_path / "runs" / "straight"
    run_cli(["train", str(path), "name=straight", "--no-progress"])
    broken = tmp_path / "runs" / "broken"
    proc = run_cli(["train", str(path), "name=broken", "--no-progress"],
                   {"CCLNN_FAULT": "kill@iteration:8"}, check=False)
    assert proc.returncode == -signal.SIGKILL
    assert torch.load(broken / "latest.pt", weights_only=True)["iteration"] == 6
    # killed again while writing the iteration-9 checkpoint: the previous one stays intact
    proc = run_cli(["train", "--resume", str(broken), "--no-progress"],
                   {"CCLNN_FAULT": "kill@checkpoint:9"}, check=False)
    assert proc.returncode == -signal.SIGKILL
    assert torch.load(broken / "latest.pt", weights_only=True)["iteration"] == 6
    run_cli(["train", "--resume", str(broken), "--no-progress"])
    assert losses(broken) == losses(straight) and len(losses(straight)) == 12
    a = torch.load(straight / "latest.pt", weights_only=True)["model"]
    b = torch.load(broken / "latest.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with open(straight / "val_log.csv") as f1, open(broken / "val_log.csv") as f2:
        assert f1.read() == f2.read()
    proc = run_cli(["train", str(path), "name=straight"], check=False)  # no silent overwrite
    assert proc.returncode == 2 and "--resume" in proc.stderr
    # a longer run: resume with epochs=3; the run directory's config remembers it
    run_cli(["train", "--resume", str(broken), "epochs=3", "--no-progress"])
    assert len(losses(broken)) == 18 and losses(broken)[:12] == losses(straight)
    assert yaml.safe_load((broken / "config.yaml").read_text())["epochs"] == 3


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_matches_straight_run(tmp_path, images):
    """SIGTERM (or Ctrl-C) mid-run: the step finishes, latest.pt is written at that iteration
    (not at the last periodic checkpoint), the exit is 130 with one line saying how to resume,
    and the resumed run is the uninterrupted one."""
    path = tiny_config(tmp_path, images)
    straight = tmp_path / "runs" / "straight"
    run_cli(["train", str(path), "name=straight", "--no-progress"])
    stopped = tmp_path / "runs" / "stopped"
    proc = run_cli(["train", str(path), "name=stopped", "--no-progress"],
                   {"CCLNN_FAULT": "term@iteration:5"}, check=False)
    assert proc.returncode == 130
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (f"cclnn train: interrupted at iteration 5 of 12; checkpoint saved, "
                    f"continue with: cclnn train --resume {stopped}")
    assert "Traceback" not in proc.stderr
    assert torch.load(stopped / "latest.pt", weights_only=True)["iteration"] == 5
    assert losses(stopped) == losses(straight)[:5]
    run_cli(["train", "--resume", str(stopped), "--no-progress"])
    assert losses(stopped) == losses(straight)


@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path, images):
    # gloo on the CPU, also where a GPU is present (one GPU cannot hold two NCCL processes)
    path = tiny_config(tmp_path, images, epochs=1, val__every=0, device="cpu")
    run_cli(["train", str(path), "name=single", "--no-progress"])
    env = cli_env()
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", "-m", "cclnn", "train", str(path),
                           "name=ddp", "--no-progress"], capture_output=True, text=True,
                          env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(tmp_path / "runs" / "single" / "latest.pt", weights_only=True)
    b = torch.load(tmp_path / "runs" / "ddp" / "latest.pt", weights_only=True)
    assert a["iteration"] == b["iteration"] == 6
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-5), k


def test_each_process_takes_the_gpu_of_its_local_rank(monkeypatch):
    from cclnn.engine.processes import process_device as _process_device
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    assert _process_device(torch.device("cuda"), 2, 0) == torch.device("cuda", 0)
    # two processes on a one-GPU machine
    with pytest.raises(TrainingError, match=r"local rank 1: this machine has 1 CUDA device\(s\); "
                                            r"start at most 1 per machine"):
        _process_device(torch.device("cuda"), 2, 1)
    assert _process_device(torch.device("cpu"), 2, 1) == torch.device("cpu")  # gloo, any rank
    assert _process_device(torch.device("cuda"), 1, 0) == torch.device("cuda")


FAMILIES = {
    "edsr": {"channels": 8, "n_resblocks": 1},
    "nlsn": {"channels": 8, "n_resblocks": 1, "chunk_size": 16},
    "cclnn-l": {"channels": 16, "n_resblocks": 1, "chunk_size": 16, "cca_reduction": 4},
    "rcan": {"channels": 8, "n_resgroups": 1, "n_resblocks": 1, "reduction": 2},
    "rnan": {"channels": 8, "n_resgroups": 2},
    "srcnn": {"channels": 8, "mid_channels": 4},
    "vdsr": {"depth": 3, "channels": 8},
    "a2n": {"channels": 8, "up_channels": 4, "n_blocks": 1},
    "divanet": {"channels": 8, "n_groups": 1, "n_blocks": 1},
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_two_iteration_smoke(tmp_path, images, name):
    path = tiny_config(tmp_path, images)
    overrides = [f"model.name={name}", f"name=smoke-{name}", "max_iterations=2",
                 "val.every=2", "loss.aux_weight=0.01", "model.scale=3",
                 f"model.options={json.dumps(FAMILIES[name])}"]
    config = load_config(path, overrides)
    trainer = Trainer(config, progress=False)
    result = trainer.train()
    assert trainer.iteration == 2 and np.isfinite(result["psnr"])
    rows = losses(trainer.run_dir)
    assert len(rows) == 2 and all(np.isfinite(float(r[1])) for r in rows)


def test_aux_loss_only_after_warmup(tmp_path, images):
    path = tiny_config(tmp_path, images)
    config = load_config(path, ["name=aux", "model.name=cclnn-l", "max_iterations=8",
                                "loss.aux_weight=0.5", "loss.warmup_epochs=1", "val.every=0",
                                "model.options={channels: 16, n_resblocks: 1, chunk_size: 16, "
                                "cca_reduction: 4}"])
    trainer = Trainer(config, progress=False)
    trainer.train()
    rows = [(int(i), float(loss), float(rec)) for i, loss, rec in losses(trainer.run_dir)]
    assert trainer.iters_per_epoch == 6
    assert all(loss == rec for i, loss, rec in rows if i <= 6)
    assert all(loss > rec for i, loss, rec in rows if i > 6)


@pytest.mark.parametrize("rgb_range", [255, 1])
def test_lambda_weighs_against_l1_in_the_networks_value_range(tmp_path, images, rgb_range):
    """The official NLSN computes l1 on [0, 1] (--rgb_range 1): there the paper's lambda weighs
    the auxiliary loss 255 times more against l_rec on [0, 255] than in a [0, 255] network."""
    path = tiny_config(tmp_path, images)
    config = load_config(path, [f"name=lam{rgb_range}", "model.name=cclnn-l",
                                "loss.aux_weight=2e-3", "loss.warmup_iterations=0", "val.every=0",
                                "model.options={channels: 16, n_resblocks: 1, chunk_size: 16, "
                                f"cca_reduction: 4, rgb_range: {rgb_range}}}"])
    trainer = Trainer(config, progress=False)
    lr, hr = next(trainer._batches())
    parts = trainer.step(lr, hr)
    assert parts["l_aux"] > 0
    expected = parts["l_rec"] + 2e-3 * 255 / rgb_range * parts["l_aux"]
    assert parts["loss"] == pytest.approx(expected, rel=1e-5)


def test_schedule_in_iterations_and_elapsed_time(tmp_path, images):
    path = tiny_config(tmp_path, images)
    config = load_config(path, ["name=iters", "model.name=cclnn-l", "max_iterations=5",
                                "loss.aux_weight=0.5", "loss.warmup_iterations=2",
                                "optim.lr_step_iterations=3", "val.every=0",
                                "model.options={channels: 16, n_resblocks: 1, chunk_size: 16, "
                                "cca_reduction: 4}"])
    trainer = Trainer(config, progress=False)
    trainer.train()
    with open(trainer.run_dir / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    lrs = [float(r["lr"]) for r in rows]  # logged after the step: halved after 3 steps
    assert lrs == [1e-3, 1e-3, 5e-4, 5e-4, 5e-4]
    assert [r["loss"] == r["l_rec"] for r in rows] == [True, True, False, False, False]
    state = torch.load(trainer.run_dir / "latest.pt", weights_only=True)
    assert 0 < state["elapsed_seconds"] < 600
    assert state["devices"] == ["cpu"]
    # a run continued on another device lists both, in order (tables keep GPU time apart)
    state["devices"] = ["cuda (a GPU)"]
    torch.save(state, trainer.run_dir / "latest.pt")
    for end in (6, 7):  # the second resume on the CPU adds nothing
        Trainer(resume_config(trainer.run_dir, [f"max_iterations={end}"]), trainer.run_dir,
                resume=True, progress=False).train()
    state = torch.load(trainer.run_dir / "latest.pt", weights_only=True)
    assert state["iteration"] == 7 and state["devices"] == ["cuda (a GPU)", "cpu"]


def test_non_finite_loss_stops_and_keeps_checkpoint(tmp_path, images):
    path = tiny_config(tmp_path, images)
    config = load_config(path, ["name=boom", "optim.lr=1e30", "checkpoint_every=1",
                                "val.every=0"])
    trainer = Trainer(config, progress=False)
    with pytest.raises(TrainingError, match="non-finite loss at iteration"):
        trainer.train()
    state = torch.load(trainer.run_dir / "latest.pt", weights_only=True)
    assert 1 <= state["iteration"] < 12


def test_init_weights_from_x2_keeps_body(tmp_path, images):
    from cclnn import save_weights
    x2 = cclnn.build_model("edsr-baseline", 2, channels=8, n_resblocks=1)
    save_weights(x2, tmp_path / "x2.safetensors")
    path = tiny_config(tmp_path, images)
    config = load_config(path, ["name=x3", "model.scale=3", "max_iterations=1", "val.every=0",
                                f"model.init_weights={tmp_path / 'x2.safetensors'}"])
    trainer = Trainer(config, progress=False)
    assert torch.equal(trainer.model.head[0].weight, x2.head[0].weight)


def test_bench_train_reports_split(tmp_path, images):
    from cclnn.speed import bench_train
    r = bench_train(str(tiny_config(tmp_path, images)), steps=3, warmup=1)
    assert r["steps"] == 3 and 0 < r["data_fraction"] < 1


@pytest.mark.parametrize("amp", ["bf16"])
def test_mixed_precision_and_channels_last_run(tmp_path, images, amp):
    path = tiny_config(tmp_path, images)
    config = load_config(path, [f"name=amp-{amp}", f"amp={amp}", "channels_last=true",
                                "max_iterations=2", "val.every=2", "model.name=cclnn-l",
                                "model.options={channels: 16, n_resblocks: 1, chunk_size: 16, "
                                "cca_reduction: 4}", "loss.aux_weight=0.01"])
    result = Trainer(config, progress=False).train()
    assert np.isfinite(result["psnr"])


def test_fp16_steps_the_scaler_skips_still_advance_the_schedule_quietly(tmp_path, images):
    import warnings
    path = tiny_config(tmp_path, images)
    trainer = Trainer(load_config(path, ["name=fp16", "amp=fp16", "max_iterations=2",
                                         "val.every=0"]), progress=False)
    # a scale no gradient survives: every step is skipped, as in the scaler's calibration
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 127)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]
    assert trainer.scheduler.last_epoch == 2  # the schedule counts iterations, skipped or not
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))


@pytest.mark.slow
def test_export_checkpoint_to_safetensors(tmp_path, images):
    path = tiny_config(tmp_path, images)
    trainer = Trainer(load_config(path, ["name=exp", "max_iterations=6"]), progress=False)
    trainer.train()
    out = tmp_path / "exp.safetensors"
    proc = run_cli(["export", str(trainer.run_dir / "best.pt"), "-o", str(out)])
    assert "edsr-baseline x2 from exp at iteration 6" in proc.stdout
    model = cclnn.build_model("edsr-baseline", 2, channels=8, n_resblocks=1)
    cclnn.load_weights(model, out)
    best = torch.load(trainer.run_dir / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)
    for args, message in [([str(plain), "-o", str(out)], "no training config inside"),
                          ([str(trainer.run_dir / "best.pt"), "-o", str(tmp_path / "x.pt")],
                           "must be named *.safetensors")]:
        proc = run_cli(["export", *args], check=False)
        assert proc.returncode == 2 and message in proc.stderr


@pytest.mark.slow
def test_resume_override_of_the_schedule_takes_effect(tmp_path, images):
    """The optimiser and scheduler states in a checkpoint carry the old learning-rate step:
    a --resume override of the schedule must still win (from the checkpoint's iteration)."""
    def lrs(run_dir):
        with open(run_dir / "train_log.csv") as f:
            return {int(r["iteration"]): float(r["lr"]) for r in csv.DictReader(f)}
    path = tiny_config(tmp_path, images, optim__lr_step_epochs=100, val__every=0)
    run_cli(["train", str(path), "name=planned", "optim.lr_step_iterations=4", "--no-progress"])
    changed = tmp_path / "runs" / "changed"
    proc = run_cli(["train", str(path), "name=changed", "--no-progress"],
                   {"CCLNN_FAULT": "kill@iteration:8"}, check=False)
    assert proc.returncode == -signal.SIGKILL
    assert set(lrs(changed).values()) == {1e-3}  # iterations 1-6 at the first schedule's lr
    run_cli(["train", "--resume", str(changed), "optim.lr_step_iterations=4", "--no-progress"])
    planned, resumed = lrs(tmp_path / "runs" / "planned"), lrs(changed)
    assert min(planned.values()) < 1e-3
    assert {i: resumed[i] for i in range(7, 13)} == {i: planned[i] for i in range(7, 13)}


@pytest.mark.gpu
def test_a_run_with_device_cuda_trains_there_and_records_it(tmp_path, images):
    path = tiny_config(tmp_path, images, device="cuda")
    trainer = Trainer(load_config(path, ["name=cuda", "max_iterations=2", "val.every=2"]),
                      progress=False)
    result = trainer.train()
    assert trainer.device.type == "cuda" and np.isfinite(result["psnr"])
    state = torch.load(trainer.run_dir / "latest.pt", weights_only=True)
    assert state["iteration"] == 2 and state["devices"][0].startswith("cuda")


def test_resume_from_a_damaged_checkpoint_is_a_one_line_error(tmp_path, images):
    path = tiny_config(tmp_path, images)
    run_dir = Trainer(load_config(path, ["name=damaged", "val.every=0"]), progress=False).run_dir
    latest = run_dir / "latest.pt"
    torch.save(cclnn.build_model("srcnn", 2).state_dict(), tmp_path / "plain.pt")
    for content, needle in [(b"", "not a readable training checkpoint (empty file)"),
                            (b"PK\x03\x04", "not a readable training checkpoint"),
                            ((tmp_path / "plain.pt").read_bytes(),
                             "not a cclnn training checkpoint")]:
        latest.write_bytes(content)
        with pytest.raises(TrainingError, match=needle.replace("(", r"\(").replace(")", r"\)")
                           ) as caught:
            Trainer(resume_config(run_dir), run_dir, resume=True, progress=False)
        assert str(caught.value).startswith(f"{latest}: ") and "\n" not in str(caught.value)
