"""The atomic writer: whole files or none, no clobbering when asked, killed writers' temps
removed on the next run."""
import multiprocessing
import os
import signal
import subprocess
import sys

import pytest

from cclnn.atomic import atomic_path, remove_stale_temps, temp_path, write_text_atomic


def test_failed_write_leaves_neither_target_nor_temp(tmp_path):
    target = tmp_path / "a.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_replace_false_keeps_a_file_created_while_writing(tmp_path):
    target = tmp_path / "a.txt"
    with pytest.raises(FileExistsError):
        with atomic_path(target, replace=False) as tmp:
            tmp.write_text("mine")
            target.write_text("theirs")  # another writer won the race
    assert target.read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_replace_false_writes_a_new_file(tmp_path):
    target = tmp_path / "a.txt"
    with atomic_path(target, replace=False) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def _race(path, text, barrier, results):
    barrier.wait()
    try:
        with atomic_path(path, replace=False) as tmp:
            tmp.write_text(text)
        results.put(text)
    except FileExistsError:
        results.put(None)


def test_two_racing_writers_exactly_one_wins(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    target = tmp_path / "out.png"
    procs = [ctx.Process(target=_race, args=(target, t, barrier, results)) for t in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    winners = [w for w in (results.get(timeout=5), results.get(timeout=5)) if w]
    assert len(winners) == 1 and target.read_text() == winners[0]
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_killed_writer_temp_is_removed_on_the_next_run(tmp_path):
    target = tmp_path / "model.safetensors"
    code = ("import os, sys, time; from cclnn.atomic import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    tmp.write_bytes(b'x' * 1000); print(tmp, flush=True); time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE,
                             text=True)
    left = child.stdout.readline().strip()
    assert os.path.exists(left)
    assert remove_stale_temps(tmp_path) == []  # its writer still runs
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert [p.name for p in remove_stale_temps(tmp_path)] == [os.path.basename(left)]
    assert list(tmp_path.iterdir()) == []


def test_stale_sweep_spares_own_and_foreign_files(tmp_path):
    own = temp_path(tmp_path / "x.png")
    own.write_text("writing")
    (tmp_path / ".hidden.tmp").write_text("not ours")
    (tmp_path / "a.1.tmp.png").write_text("no leading dot")
    write_text_atomic(tmp_path / "done.txt", "ok")
    assert remove_stale_temps(tmp_path) == []
    assert remove_stale_temps(tmp_path / "missing") == []
    assert len(list(tmp_path.iterdir())) == 4
