"""Runs as real processes: full disks, one writer per run folder, signals, and what each leaves."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import minivae
from minivae.data import MnistSplit, load_mnist, save_mnist
from minivae.figures import png_problem
from minivae.training import load_checkpoint

ROOT = Path(minivae.__file__).parents[1]
FAULTS = Path(__file__).parent / "faults"
TINY = ["--hidden", "16", "--latent-dim", "2", "--batch-size", "64"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """``--data-dir`` of an MNIST directory of 600 training and 100 held-out digits: quick epochs."""
    everything = load_mnist()
    subset = MnistSplit(everything.train_images[:600], everything.train_labels[:600],
                        everything.test_images[:100], everything.test_labels[:100], "subset")
    return ["--data-dir", save_mnist(subset, tmp_path_factory.mktemp("mnist"))]


def environment(full_disk_on=None, hang_on=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FAULTS), str(ROOT)])}
    for variable, name in (("MINIVAE_FAULT_ENOSPC", full_disk_on), ("MINIVAE_FAULT_HANG", hang_on)):
        env.pop(variable, None)
        if name:
            env[variable] = name
    return env


def minivae_run(*args, cwd, full_disk_on=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "minivae", *map(str, args)], cwd=cwd, env=environment(full_disk_on),
                          capture_output=True, text=True, timeout=timeout)


def minivae_start(*args, cwd, hang_on=None):
    return subprocess.Popen([sys.executable, "-m", "minivae", *map(str, args)], cwd=cwd,
                            env=environment(hang_on=hang_on), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, f"the run ended early: {process.communicate()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# --------------------------------------------------------------------------------------- full disk
def test_a_full_disk_while_writing_a_figure_leaves_no_broken_file_and_resume_writes_it(tmp_path, data):
    out = tmp_path / "run"
    done = minivae_run("train", "--epochs", "1", *TINY, *data, "--out", out, cwd=tmp_path, full_disk_on="samples.png")
    assert done.returncode == 1
    error = one_line(done.stderr)
    assert "no space left" in error and str(out / "samples.png") in error
    assert error.endswith(f"free some space, then continue the run with: minivae train --out {out} --resume")
    assert not (out / "samples.png").exists() and (out / "checkpoint.npz").is_file()
    assert not list(out.glob(".*.part"))
    done = minivae_run("train", "--out", out, "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "rewrote its metrics.jsonl and figures: metrics.jsonl was missing\n" in done.stdout
    assert png_problem(out / "samples.png") is None and (out / "metrics.jsonl").is_file()


def test_resume_of_a_complete_run_rewrites_a_truncated_figure(tmp_path, data):
    out = tmp_path / "run"
    assert minivae_run("train", "--epochs", "1", *TINY, *data, "--out", out, cwd=tmp_path).returncode == 0
    content = (out / "loss.png").read_bytes()
    (out / "loss.png").write_bytes(content[:len(content) // 2])
    assert png_problem(out / "loss.png") is not None
    done = minivae_run("train", "--out", out, "--resume", cwd=tmp_path)
    assert done.returncode == 0 and "rewrote its figures: loss.png is truncated" in done.stdout
    assert (out / "loss.png").read_bytes() == content
    done = minivae_run("train", "--out", out, "--resume", cwd=tmp_path)
    assert done.returncode == 0 and "already complete: 1 of 1 epochs" in done.stdout


def test_sample_on_a_full_disk_keeps_the_existing_png(tmp_path, data):
    out = tmp_path / "run"
    assert minivae_run("train", "--epochs", "1", *TINY, *data, "--out", out, cwd=tmp_path).returncode == 0
    existing = tmp_path / "existing.png"
    existing.write_bytes((out / "samples.png").read_bytes())
    done = minivae_run("sample", out / "checkpoint.npz", "--out", existing, cwd=tmp_path, full_disk_on="existing.png")
    assert done.returncode == 1 and "no space left" in one_line(done.stderr) and str(existing) in done.stderr
    assert existing.read_bytes() == (out / "samples.png").read_bytes()
    assert [p.name for p in tmp_path.iterdir()] != [] and not list(tmp_path.glob(".*.part"))


# --------------------------------------------------------------------------------------- one writer
def test_a_second_run_in_a_held_folder_is_refused_naming_the_holder_and_a_killed_holder_blocks_nothing(tmp_path, data):
    out = tmp_path / "run"
    first = minivae_start("train", "--epochs", "200", *TINY, *data, "--out", out, cwd=tmp_path)
    try:
        wait_for(lambda: (out / ".lock").is_file() and (out / ".lock").read_text().strip() == str(first.pid), first)
        second = minivae_run("train", "--epochs", "1", *TINY, *data, "--out", out, cwd=tmp_path)
        assert second.returncode == 1
        assert f"{out} is in use by process {first.pid}" in one_line(second.stderr)
        resumed = minivae_run("train", "--out", out, "--resume", cwd=tmp_path)  # a resume is a writer too
        assert resumed.returncode == 1 and f"{out} is in use by process {first.pid}" in one_line(resumed.stderr)
    finally:
        first.kill()
        first.communicate()
    assert first.returncode == -signal.SIGKILL
    for written in out.glob("[!.]*"):  # the killed run's files; its lock file stays
        written.unlink()
    assert (out / ".lock").is_file()
    third = minivae_run("train", "--epochs", "1", *TINY, *data, "--out", out, cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert not (out / ".lock").exists()


# --------------------------------------------------------------------------------------- signals
def test_sigterm_saves_a_checkpoint_says_so_and_exits_143_and_the_run_resumes(tmp_path, data):
    out = tmp_path / "run"
    run = minivae_start("train", "--epochs", "200", *TINY, *data, "--out", out, cwd=tmp_path)
    try:
        wait_for(lambda: (out / "metrics.jsonl").is_file(), run)
        run.send_signal(signal.SIGTERM)
        stdout, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 143
    line = one_line(stderr)
    assert line.startswith("minivae: terminated (SIGTERM) after step") and "checkpoint saved" in line
    saved = load_checkpoint(out / "checkpoint.npz")
    assert line.split("after step ")[1].split(" ")[0] == str(saved.state.step) and saved.state.epoch >= 1
    done = minivae_run("train", "--out", out, "--resume", "--epochs", saved.state.epoch + 1, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(out / "checkpoint.npz").state.epoch == saved.state.epoch + 1


def test_a_kill_during_the_checkpoint_write_leaves_a_temporary_that_the_next_run_removes(tmp_path, data):
    out = tmp_path / "run"
    run = minivae_start("train", "--epochs", "1", *TINY, *data, "--out", out, cwd=tmp_path, hang_on="checkpoint.npz")
    try:  # the checkpoint's write stops half-way: SIGKILL it there
        wait_for(lambda: any(p.stat().st_size > 0 for p in out.glob(".checkpoint.npz.*.part")), run)
        run.kill()
        run.communicate(timeout=60)
    finally:
        run.kill()
    (stale,) = out.glob(".checkpoint.npz.*.part")
    assert not (out / "checkpoint.npz").exists()
    done = minivae_run("train", "--epochs", "1", *TINY, *data, "--out", out, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not stale.exists() and not list(out.glob(".*.part")) and (out / "checkpoint.npz").is_file()


@pytest.fixture(scope="module")
def two_epochs(data, tmp_path_factory):
    """An uninterrupted run of two epochs."""
    out = tmp_path_factory.mktemp("reference") / "run"
    done = minivae_run("train", "--epochs", "2", *TINY, *data, "--out", out, cwd=out.parent)
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.parametrize("killed_in", ["reconstructions.png", "loss.png", "metrics.jsonl"])
def test_a_kill_after_the_last_checkpoint_leaves_nothing_that_resume_does_not_repair(tmp_path, data, two_epochs,
                                                                                     killed_in):
    out = tmp_path / "run"
    assert minivae_run("train", "--epochs", "1", *TINY, *data, "--out", out, cwd=tmp_path).returncode == 0
    run = minivae_start("train", "--out", out, "--resume", "--epochs", "2", cwd=tmp_path, hang_on=killed_in)
    try:  # the last epoch's checkpoint is written; kill -9 in the middle of writing what follows it
        wait_for(lambda: any(p.stat().st_size > 0 for p in out.glob(f".{killed_in}.*.part")), run)
        run.kill()
        run.communicate(timeout=60)
    finally:
        run.kill()
    history = load_checkpoint(out / "checkpoint.npz").state.history
    assert len(history) == 2
    done = minivae_run("train", "--out", out, "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{out}: rewrote its metrics.jsonl and figures: metrics.jsonl lacked epoch 2\n")
    assert "is already complete: 2 of 2 epochs trained" in done.stdout
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    reference = [json.loads(line) for line in (two_epochs / "metrics.jsonl").read_text().splitlines()]
    assert [{k: m[k] for k in history[0]} for m in lines] == history   # the checkpoint's own record, timing too
    timing = ("epoch_seconds", "steps_per_second")
    assert [{k: v for k, v in m.items() if k not in timing} for m in lines] == \
        [{k: v for k, v in m.items() if k not in timing} for m in reference]
    for name in ("reconstructions.png", "samples.png", "loss.png", "manifold.png"):
        assert (out / name).read_bytes() == (two_epochs / name).read_bytes(), name
    assert not list(out.glob(".*.part"))
    again = minivae_run("train", "--out", out, "--resume", cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.startswith(f"{out} is already complete: 2 of 2 epochs trained")


def test_a_learning_rate_that_overflows_stops_with_one_line_and_no_numpy_warning(tmp_path, data):
    done = minivae_run("train", "--lr", "1e308", "--epochs", "1", *TINY, *data, "--out", tmp_path / "run", cwd=tmp_path)
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith("minivae: error: train: the loss (negative ELBO) is nan at step 2") and "Warning" not in line
