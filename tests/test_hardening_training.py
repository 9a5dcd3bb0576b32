"""Issue 22, training: one run folder takes one training (a lock), a full disk during a
checkpoint, a damaged .npy cache, unreadable training images, a diverged run, hostile
configs (YAML alias bombs, huge values, unset $VARS). Each case: the exit status, one line on
stderr, no traceback, and the files afterwards."""
import errno
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml

from cclnn.cli import main
from cclnn.config import ConfigError
from cclnn.engine import checkpoint as checkpoint_module
from cclnn.engine.checkpoint import CheckpointError, write_checkpoint
from cclnn.engine.data import TrainPatches, _npy_paths, unreadable_limit
from cclnn.engine.logs import LogError, append_row
from cclnn.engine.rundir import RunLock
from cclnn.engine.train_config import DataConfig, ImageFolders, load_config
from cclnn.engine.trainer import Trainer, TrainingError

from conftest import ROOT, cli_env, tiny_image_folder


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    folder = tiny_image_folder(tmp_path / "hr", 6, 4, 4, rng, block=6)
    tiny_image_folder(tmp_path / "val" / "HR", 1, 24, 24, rng, prefix="v")
    return folder


def write_config(tmp_path, images, **values) -> str:
    tree = {"name": "run",
            "model": {"name": "edsr-baseline", "scale": 2,
                      "options": {"channels": 4, "n_resblocks": 1}},
            "data": {"train": [{"hr": str(images)}], "patch_size": 8, "batch_size": 2,
                     "repeat": 1},
            "optim": {"lr": 1e-3}, "epochs": 1, "log_every": 1, "checkpoint_every": 1,
            "val": {"dataset": str(images.parent / "val"), "every": 3},
            "out_dir": str(tmp_path / "runs"), "device": "cpu"}
    tree.update(values)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def one_line_error(capsys, started: bool = False) -> str:
    """The one error line on stderr; ``started``: after the run's "run DIR: ..." line."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    if started:
        assert len(lines) == 2 and lines[0].startswith("run "), err
        lines = lines[1:]
    assert len(lines) == 1 and lines[0].startswith("cclnn train: "), err
    return lines[0]


# ----------------------------------------------------------------------------- 1: the lock


def test_second_training_on_a_run_folder_in_use_is_refused_before_touching_it(
        tmp_path, images, capsys):
    run_dir = tmp_path / "runs" / "run"
    run_dir.mkdir(parents=True)
    holder = RunLock(run_dir)  # another training holds the folder
    assert main(["train", write_config(tmp_path, images), "--no-progress"]) == 2
    line = one_line_error(capsys)
    assert str(run_dir) in line and f"in use by pid {os.getpid()}" in line
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]
    holder.release()
    assert main(["train", write_config(tmp_path, images), "--no-progress"]) == 0
    assert (run_dir / "latest.pt").is_file()


def test_resume_of_a_run_in_use_is_refused_and_changes_nothing(tmp_path, images, capsys):
    assert main(["train", write_config(tmp_path, images), "--no-progress"]) == 0
    run_dir = tmp_path / "runs" / "run"
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    holder = RunLock(run_dir)
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "epochs=2", "--no-progress"]) == 2
    assert "in use by pid" in one_line_error(capsys)
    holder.release()
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert after.keys() == before.keys()
    assert all(after[k] == before[k] for k in before if k != ".lock")


def test_the_lock_of_another_process_names_it_and_dies_with_it(tmp_path, images, capsys):
    run_dir = tmp_path / "runs" / "run"
    run_dir.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, os, sys
            fd = os.open({str(run_dir / '.lock')!r}, os.O_RDWR | os.O_CREAT)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, f"pid {{os.getpid()}} on elsewhere".encode())
            print("locked", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["train", write_config(tmp_path, images), "--no-progress"]) == 2
        assert f"in use by pid {holder.pid} on elsewhere" in one_line_error(capsys)
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the kernel drops the lock
        holder.wait()
    assert main(["train", write_config(tmp_path, images), "--no-progress"]) == 0


def test_temp_files_of_killed_writers_are_removed_when_a_run_starts(tmp_path, images):
    run_dir = tmp_path / "runs" / "run"
    run_dir.mkdir(parents=True)
    stale = run_dir / ".latest.999999999.tmp.pt"  # no such pid: its writer was killed
    stale.write_bytes(b"partial")
    assert main(["train", write_config(tmp_path, images), "--no-progress"]) == 0
    assert not stale.exists()
    assert not [p for p in run_dir.iterdir() if ".tmp" in p.name]


# ----------------------------------------------------------------------------- 2: disk full


def _fail_writes_after(monkeypatch, allowed_bytes: int, calls_before: int = 0):
    """Checkpoint writes fail with ENOSPC once ``allowed_bytes`` are written (after
    ``calls_before`` successful checkpoint writes)."""
    original = checkpoint_module._WriteErrors.write
    state = {"checkpoints": 0, "bytes": 0}

    def write(self, data):
        if state["checkpoints"] >= calls_before:
            state["bytes"] += len(data)
            if state["bytes"] > allowed_bytes:
                self.error = OSError(errno.ENOSPC, "No space left on device")
                raise self.error
        return original(self, data)

    original_save = checkpoint_module.write_checkpoint

    def counted(*args, **kwargs):
        try:
            return original_save(*args, **kwargs)
        finally:
            state["checkpoints"] += 1
    monkeypatch.setattr(checkpoint_module._WriteErrors, "write", write)
    return counted


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    write_checkpoint({"w": torch.ones(10)}, path)
    before = path.read_bytes()
    _fail_writes_after(monkeypatch, 100)
    with pytest.raises(CheckpointError) as caught:
        write_checkpoint({"w": torch.zeros(10_000)}, path)
    assert str(caught.value).startswith(f"cannot write {path}: no space left on device")
    assert "\n" not in str(caught.value) and "inline_container" not in str(caught.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]  # no temp holds space


def test_a_full_disk_mid_training_is_one_line_and_keeps_the_last_checkpoint(
        tmp_path, images, capsys, monkeypatch):
    counted = _fail_writes_after(monkeypatch, 100, calls_before=2)
    monkeypatch.setattr("cclnn.engine.trainer.write_checkpoint", counted)
    assert main(["train", write_config(tmp_path, images, val={"every": 0}),
                 "--no-progress"]) == 2
    run_dir = tmp_path / "runs" / "run"
    assert one_line_error(capsys, started=True) == (
        f"cclnn train: error: cannot write {run_dir / 'latest.pt'}: no space left on device "
        f"(the file there, if any, is unchanged)")
    assert torch.load(run_dir / "latest.pt", weights_only=True)["iteration"] == 2
    assert not [p for p in run_dir.iterdir() if ".tmp" in p.name]


@pytest.mark.slow  # a child process (torch import)
def test_a_file_size_limit_while_saving_is_one_line_in_a_real_process(tmp_path):
    """The real failure: writes fail with EFBIG under RLIMIT_FSIZE (as on a full disk)."""
    path = tmp_path / "latest.pt"
    script = textwrap.dedent(f"""
        import resource, signal, torch
        from cclnn.engine.checkpoint import CheckpointError, write_checkpoint
        write_checkpoint({{"w": torch.ones(10)}}, {str(path)!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
        try:
            write_checkpoint({{"w": torch.zeros(100_000)}}, {str(path)!r})
        except CheckpointError as exc:
            print(exc)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=cli_env(), cwd=ROOT)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.strip() == (f"cannot write {path}: file too large (the file there, if "
                                   f"any, is unchanged)")
    assert torch.load(path, weights_only=True)["w"].shape == (10,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]


def test_a_log_that_cannot_be_written_is_named(tmp_path):
    with pytest.raises(LogError, match=f"^cannot write {tmp_path}: is a directory$"):
        append_row(tmp_path, [1, 2])


# ----------------------------------------------------------------------------- 3: npy cache


def _npy_data(images) -> DataConfig:
    return DataConfig(train=(ImageFolders(hr=str(images)),), patch_size=8, cache="npy")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong dtype", "wrong shape"])
def test_a_damaged_npy_cache_is_remade_with_a_note(images, capsys, damage):
    first = TrainPatches(_npy_data(images), 2, 0)
    hr_file, lr_file = _npy_paths(images / "img0.png", 2)
    expected = np.array(first.pairs[0][0])
    if damage == "garbage":
        hr_file.write_bytes(b"not an array at all")
    elif damage == "truncated":
        hr_file.write_bytes(hr_file.read_bytes()[:-50])
    elif damage == "wrong dtype":
        np.save(hr_file, expected.astype(np.float32))
    else:
        np.save(hr_file, expected[:-2])
    capsys.readouterr()
    again = TrainPatches(_npy_data(images), 2, 0)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"training data: remade the damaged cache of {images / 'img0.png'}")
    np.testing.assert_array_equal(again.pairs[0][0], expected)
    np.testing.assert_array_equal(np.load(hr_file), expected)
    TrainPatches(_npy_data(images), 2, 0)  # remade once: quiet afterwards
    assert capsys.readouterr().err == ""


def test_a_cache_write_on_a_full_disk_is_one_line_and_leaves_no_temp(images, monkeypatch):
    def no_space(file, array):
        with open(file, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(np, "save", no_space)
    with pytest.raises(TrainingError, match=r"^cannot write the cache file .*_hr\.npy: no space "
                                            r"left on device \(set CCLNN_CACHE"):
        TrainPatches(_npy_data(images), 3, 0)  # x3: not cached yet
    hr_file, _ = _npy_paths(images / "img0.png", 3)
    assert not [p for p in hr_file.parent.iterdir() if ".tmp" in p.name]


def test_temp_files_of_killed_cache_writers_are_removed(images):
    hr_file, _ = _npy_paths(images / "img0.png", 2)
    hr_file.parent.mkdir(parents=True, exist_ok=True)
    stale = hr_file.parent / ".abc_hr.999999999.tmp.npy"
    stale.write_bytes(b"partial")
    TrainPatches(_npy_data(images), 2, 0)
    assert not stale.exists()


# ----------------------------------------------------------------------------- 4: bad images


def test_the_unreadable_image_limit():
    assert [unreadable_limit(n) for n in (1, 6, 19, 20, 100, 800)] == [1, 1, 1, 2, 10, 10]


def test_an_unreadable_training_image_is_skipped_with_one_line(tmp_path, images, capsys):
    (images / "img3.png").write_bytes(b"\x89PNG\r\n\x1a\n damaged")
    assert main(["train", write_config(tmp_path, images), "--no-progress"]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("training data:")]
    assert len(notes) == 1 and str(images / "img3.png") in notes[0]
    assert "Traceback" not in err
    assert "5 training images" in err  # 6 selected, one skipped


def test_too_many_unreadable_training_images_stop_the_run_before_it_starts(
        tmp_path, images, capsys):
    for name in ("img1.png", "img4.png"):  # 2 of 6: over the limit of 1
        (images / name).write_bytes(b"")
    assert main(["train", write_config(tmp_path, images), "--no-progress"]) == 2
    line = one_line_error(capsys)
    assert "data.train: more than 1 of the 6 images are unreadable" in line
    assert str(images / "img4.png") in line
    assert not (tmp_path / "runs").exists()


def test_an_unreadable_validation_image_stops_the_run_at_start(tmp_path, images, capsys):
    (images.parent / "val" / "HR" / "v0.png").write_bytes(b"GIF89a")
    assert main(["train", write_config(tmp_path, images), "--no-progress"]) == 2
    assert "v0.png" in one_line_error(capsys)
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- 5: divergence


def test_a_diverged_run_names_the_last_checkpoint_with_finite_weights(
        tmp_path, images, capsys):
    config = write_config(tmp_path, images, optim={"lr": 1e30}, val={"every": 0})
    assert main(["train", config, "--no-progress"]) == 2
    line = one_line_error(capsys, started=True)
    latest = tmp_path / "runs" / "run" / "latest.pt"
    assert "training stopped. The last checkpoint with finite weights is " \
           f"{latest} (iteration " in line and "lower optim.lr (now 1e+30)" in line
    state = torch.load(latest, weights_only=True)
    assert f"(iteration {state['iteration']})" in line
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_a_run_that_diverges_before_its_first_checkpoint_says_so(tmp_path, images, capsys):
    config = write_config(tmp_path, images, optim={"lr": 1e30}, val={"every": 0},
                          checkpoint_every=100)
    assert main(["train", config, "--no-progress"]) == 2
    line = one_line_error(capsys, started=True)
    assert "before any checkpoint with finite weights was saved" in line
    assert "optim.grad_clip" in line
    assert not (tmp_path / "runs" / "run" / "latest.pt").exists()


@pytest.mark.parametrize("ema", [False, True])
def test_non_finite_weights_are_never_saved_as_latest_or_best(tmp_path, images, ema):
    extra = {"optim": {"lr": 1e-3, "ema_decay": 0.9}} if ema else {}
    trainer = Trainer(load_config(write_config(tmp_path, images, **extra)), progress=False)
    trainer.iteration = 1
    trainer.save_checkpoint()
    latest = trainer.run_dir / "latest.pt"
    before = latest.read_bytes()
    broken = trainer.ema.model if ema else trainer.model
    with torch.no_grad():
        next(broken.parameters()).fill_(float("nan"))
    trainer.iteration = 2
    with pytest.raises(TrainingError, match=r"^non-finite weights at iteration 2; .* is "
                       + str(latest).replace(".", r"\.") + r" \(iteration 1\)"):
        trainer.save_checkpoint()
    assert latest.read_bytes() == before
    trainer.validate()
    assert not (trainer.run_dir / "best.pt").exists()
    trainer.close()


def test_resume_from_a_checkpoint_with_non_finite_weights_is_refused(tmp_path, images, capsys):
    assert main(["train", write_config(tmp_path, images, val={"every": 0}),
                 "--no-progress"]) == 0
    latest = tmp_path / "runs" / "run" / "latest.pt"
    state = torch.load(latest, weights_only=True)
    next(iter(state["model"].values())).fill_(float("inf"))
    torch.save(state, latest)
    capsys.readouterr()
    assert main(["train", "--resume", str(latest.parent), "epochs=2", "--no-progress"]) == 2
    assert one_line_error(capsys).endswith(
        f"{latest}: holds non-finite weights (a run that diverged); start a new run with a "
        f"lower optim.lr")


# ----------------------------------------------------------------------------- 6: configs

ALIAS_BOMB = textwrap.dedent("""\
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    name: *h
    """)


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path, capsys):
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    assert main(["train", str(path)]) == 2
    line = one_line_error(capsys)
    assert line == (f"cclnn train: error: {path}: not valid YAML (line 2: YAML aliases (*a) "
                    f"are not allowed in a cclnn config; write the value out)")


def test_an_alias_in_an_override_is_refused(tmp_path, images):
    with pytest.raises(ConfigError, match="YAML aliases"):
        load_config(write_config(tmp_path, images), ["model.options=[&x 1, *x]"])


def test_a_huge_value_is_cut_short_in_the_error(tmp_path, images, capsys):
    config = write_config(tmp_path, images, epochs="x" * 20_000,
                          seed=list(range(2_000)))
    assert main(["train", config]) == 2
    line = one_line_error(capsys)
    assert len(line) < 300 and "..." in line


@pytest.mark.parametrize("key", ["out_dir", "data.train[0].hr"])
def test_an_unset_variable_in_a_path_names_the_key(tmp_path, images, capsys, monkeypatch, key):
    monkeypatch.delenv("CCLNN_NOT_SET", raising=False)
    path = str(tmp_path / "$CCLNN_NOT_SET" / "x")
    values = ({"out_dir": path} if key == "out_dir"
              else {"data": {"train": [{"hr": path}], "patch_size": 8, "batch_size": 2}})
    assert main(["train", write_config(tmp_path, images, **values)]) == 2
    assert one_line_error(capsys).endswith(
        f": {key}: environment variable CCLNN_NOT_SET is not set")
    assert not (tmp_path / "$CCLNN_NOT_SET").exists()


@pytest.mark.parametrize("override", ["checkpoint_every=0", "log_every=0", "max_iterations=0",
                                      "max_iterations=-5"])
def test_bad_intervals_on_resume_change_nothing(tmp_path, images, capsys, override):
    assert main(["train", write_config(tmp_path, images, val={"every": 0}),
                 "--no-progress"]) == 0
    run_dir = tmp_path / "runs" / "run"
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), override, "--no-progress"]) == 2
    assert f"{override.split('=')[0]}: must be at least 1" in one_line_error(capsys)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
