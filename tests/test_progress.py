"""Progress on long waits: live lines that fit the terminal, periodic lines in logs, the compile note."""
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import minivae
from minivae import kernels, training
from minivae.training import evaluation, progress as progress_module
from minivae.data import MnistSplit, load_mnist
from minivae.training.progress import COMPILE_NOTE, Progress, kernels_need_compiling
from minivae.training import TrainConfig, train


def tiny_digits():
    everything = load_mnist()
    return MnistSplit(everything.train_images[:300], everything.train_labels[:300], everything.test_images[:100],
                      everything.test_labels[:100], "subset")


class Terminal(io.StringIO):
    def __init__(self, columns):
        super().__init__()
        self.columns = columns

    def isatty(self):
        return True


def test_the_live_line_is_cut_to_the_terminal_width(monkeypatch):
    terminal = Terminal(40)
    progress = Progress(terminal)
    monkeypatch.setattr(progress, "width", lambda: terminal.columns)
    progress.update(lambda: "x" * 100)
    drawn = terminal.getvalue().split("\r\033[K")[-1]
    assert drawn == "x" * 39  # one column spare, so the cursor never wraps to a new line


def test_the_terminal_width_comes_from_the_stream_or_defaults_to_80():
    assert Progress(io.StringIO()).width() == 80
    read, write = os.pipe()
    with os.fdopen(write, "w") as pipe:
        assert Progress(pipe).width() == 80  # a pipe has no size
    os.close(read)


def test_off_a_terminal_progress_prints_a_line_every_interval(monkeypatch):
    log, now = io.StringIO(), [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: now[0])
    progress = Progress(log, interval=5.0)
    for t in np.arange(100.0, 111.0, 0.5):
        now[0] = t
        progress.update(lambda: f"at {now[0]:.1f}")
    assert log.getvalue().splitlines() == ["at 105.0", "at 110.0"]
    assert "\r" not in log.getvalue() and "\033" not in log.getvalue()


def test_a_long_epoch_in_a_log_gets_progress_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(progress_module, "LOG_INTERVAL", 0.0)
    digits = tiny_digits()
    log = io.StringIO()
    train(TrainConfig(epochs=1, batch_size=100, hidden=(8,), latent_dim=2), tmp_path, data=digits, stream=log)
    lines = log.getvalue().splitlines()
    assert [line.split(" loss")[0] for line in lines if line.startswith("epoch 1/1 [")] == [
        "epoch 1/1 [" + "#" * (10 * k) + "." * (30 - 10 * k) + f"] {k}/3" for k in (1, 2, 3)]


def test_evaluation_in_a_log_reports_importance_sampling_per_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(progress_module, "LOG_INTERVAL", 0.0)
    digits = tiny_digits()
    train(TrainConfig(epochs=1, batch_size=100, hidden=(8,), latent_dim=2), tmp_path, data=digits,
          stream=io.StringIO())
    monkeypatch.setattr(evaluation, "load_mnist", lambda data_dir: digits)
    monkeypatch.setattr(evaluation, "IW_SAMPLES_PER_CALL", 40 * 20)  # 20 digits per call at 40 samples
    log = io.StringIO()
    training.evaluate_checkpoint(tmp_path / "checkpoint.npz", iw_samples=40, stream=log)
    assert [line for line in log.getvalue().splitlines() if line.startswith("importance sampling")] == [
        f"importance sampling [{'#' * (6 * k)}{'.' * (30 - 6 * k)}] {20 * k}/100 digits, k=40" for k in range(1, 6)]


def test_the_compile_note_shows_exactly_when_the_kernel_cache_is_cold(tmp_path):
    probe = "from minivae.training.progress import kernels_need_compiling; print(kernels_need_compiling())"
    env = {**os.environ, "PYTHONPATH": str(Path(minivae.__file__).parents[1]), "MINIVAE_KERNELS": "numba",
           "NUMBA_CACHE_DIR": str(tmp_path / "empty-cache")}
    cold = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert cold.stdout.strip() == "True", cold.stderr
    with kernels.use("numba"):  # a run compiles (or loads) every kernel into the default cache
        log = io.StringIO()
        train(TrainConfig(epochs=1, batch_size=100, hidden=(8,), latent_dim=2), tmp_path / "run", data=tiny_digits(),
              stream=log)
    assert COMPILE_NOTE in log.getvalue() or not kernels_need_compiling()
    env.pop("NUMBA_CACHE_DIR")
    warm = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert warm.stdout.strip() == "False", warm.stderr
    env["MINIVAE_KERNELS"] = "reference"
    assert subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                          timeout=120).stdout.strip() == "False"  # nothing compiles on the NumPy backend
    assert "once" in COMPILE_NOTE and "cache" in COMPILE_NOTE
