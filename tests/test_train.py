"""Training: artefacts, reproducibility, exact resume after an epoch or an interrupt, atomic
checkpoints, divergence, and evaluation of a checkpoint. Tiny models on a few hundred digits."""
import io
import itertools
import json
import os
import re
import signal
import struct

import numpy as np
import pytest

from minivae import training
from minivae.training import checkpoint as checkpoint_module
from minivae.data import MnistSplit, load_mnist
from minivae.engine import Tensor, sqrt
from minivae.training.config import likelihood
from minivae.training import (CheckpointError, TrainConfig, TrainingDiverged, load_checkpoint, read_checkpoint_config,
                           sample_checkpoint, save_checkpoint, train)
from minivae.vae import VAE

TIMING = ("epoch_seconds", "steps_per_second")
FIGURES = ("reconstructions.png", "samples.png", "loss.png", "manifold.png")
TINY = TrainConfig(epochs=2, batch_size=32, hidden=(16,), latent_dim=2, seed=3)  # 300 digits: 10 steps an epoch


@pytest.fixture(scope="module")
def digits():
    everything = load_mnist()
    return MnistSplit(everything.train_images[:300], everything.train_labels[:300], everything.test_images[:100],
                      everything.test_labels[:100], "a test subset")


def run(config, out, digits, **kwargs):
    return train(config, out, data=digits, stream=open(os.devnull, "w"), **kwargs)


def interrupt_after(stop):
    """An ``after_step`` that stops the run, as Ctrl-C would, after step ``stop``."""
    def after_step(step):
        if step == stop:
            raise KeyboardInterrupt
    return after_step


def without_timing(history):
    return [{k: v for k, v in metrics.items() if k not in TIMING} for metrics in history]


def assert_same_run(a, b):
    """Same metrics (timing aside), checkpoint arrays, generator state and figures, bit for bit."""
    lines = [[json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()] for out in (a, b)]
    assert without_timing(lines[0]) == without_timing(lines[1])
    first, second = load_checkpoint(a / "checkpoint.npz"), load_checkpoint(b / "checkpoint.npz")
    for x, y in [(first.model.state_dict(), second.model.state_dict()),
                 (first.optimizer.state_dict(), second.optimizer.state_dict())]:
        assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
    assert first.rng.bit_generator.state == second.rng.bit_generator.state
    for name in FIGURES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_a_run_writes_every_artefact(tmp_path, digits):
    result = run(TINY, tmp_path, digits)
    assert (result.status, result.epoch, result.step) == ("completed", 2, 20)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2] and [m["step"] for m in lines] == [10, 20]
    for metrics in lines:
        assert {"train_neg_elbo", "test_neg_elbo", "epoch_seconds", "steps_per_second"} <= metrics.keys()
        assert 0 < metrics["test_neg_elbo"] < 784 * np.log(2) * 2 and metrics["epoch_seconds"] > 0
    about = {"data": "a test subset", "likelihood": likelihood(False)}  # what the nats refer to, on every line
    assert lines == [{**m, **about} for m in result.history]
    for name in FIGURES:
        content = (tmp_path / name).read_bytes()
        assert content[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">I", content[16:20])[0] > 0
    saved = load_checkpoint(tmp_path / "checkpoint.npz")
    assert saved.config == TINY and saved.state.epoch == 2 and saved.state.step == 20
    assert saved.state.permutation is None and saved.state.history == result.history
    assert read_checkpoint_config(tmp_path / "checkpoint.npz") == TINY


def test_no_manifold_without_a_2d_latent_space(tmp_path, digits):
    run(TrainConfig(epochs=1, batch_size=64, hidden=(8,), latent_dim=3), tmp_path, digits)
    assert (tmp_path / "samples.png").exists() and not (tmp_path / "manifold.png").exists()


def test_the_same_seed_gives_the_same_numbers_and_another_seed_others(tmp_path, digits):
    run(TINY, tmp_path / "a", digits)
    run(TINY, tmp_path / "b", digits)
    assert_same_run(tmp_path / "a", tmp_path / "b")
    other = run(TrainConfig(**{**TINY.to_json(), "seed": 4}), tmp_path / "c", digits)
    assert other.history[0]["train_neg_elbo"] != load_checkpoint(tmp_path / "a/checkpoint.npz").state.history[0][
        "train_neg_elbo"]


@pytest.mark.parametrize("settings", [{}, {"binarize": True, "estimator": "monte-carlo", "samples": 2}])
def test_resuming_after_an_epoch_continues_exactly(tmp_path, digits, settings):
    config = TrainConfig(**{**TINY.to_json(), **settings})
    run(config, tmp_path / "straight", digits)
    run(TrainConfig(**{**config.to_json(), "epochs": 1}), tmp_path / "resumed", digits)
    result = run(config, tmp_path / "resumed", digits, resume=True)
    assert (result.status, result.epoch) == ("completed", 2)
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")
    lines = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert {(m["data"], m["likelihood"]) for m in lines} == {("a test subset", likelihood(config.binarize))}
    assert ("binarized digits" in lines[0]["likelihood"]) == config.binarize
    assert ("grey-level intensities" in lines[0]["likelihood"]) != config.binarize


def test_an_interrupt_mid_epoch_saves_a_checkpoint_that_resumes_exactly(tmp_path, digits):
    run(TINY, tmp_path / "straight", digits)

    result = run(TINY, tmp_path / "resumed", digits, after_step=interrupt_after(13))
    assert (result.status, result.epoch, result.step) == ("interrupted", 1, 13)
    saved = load_checkpoint(tmp_path / "resumed/checkpoint.npz").state
    assert (saved.epoch, saved.step, saved.position, len(saved.permutation)) == (1, 13, 3, 300)
    run(TINY, tmp_path / "resumed", digits, resume=True)
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


def test_ctrl_c_during_a_step_stops_after_that_step(tmp_path, digits, signal_during_step):
    run(TINY, tmp_path / "straight", digits)
    restore = signal_during_step(signal.SIGINT, 6)  # during the 7th step, before the update
    result = run(TINY, tmp_path / "resumed", digits)
    assert (result.status, result.step) == ("interrupted", 7)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    restore()
    run(TINY, tmp_path / "resumed", digits, resume=True)
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


def test_a_failed_checkpoint_write_leaves_the_previous_checkpoint(tmp_path, digits, monkeypatch):
    run(TrainConfig(**{**TINY.to_json(), "epochs": 1}), tmp_path, digits)
    before = (tmp_path / "checkpoint.npz").read_bytes()
    run_state = load_checkpoint(tmp_path / "checkpoint.npz")

    def failing_savez(file, **arrays):
        file.write(b"PK\x03\x04 a partial archive")
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint_module.np, "savez", failing_savez)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path / "checkpoint.npz", run_state.config, run_state.model, run_state.optimizer,
                        run_state.rng, run_state.state)
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]


def test_a_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(tmp_path, digits, monkeypatch):
    negative_elbo, training_calls = VAE.negative_elbo, itertools.count(1)

    def nan_at_step_13(self, *args, **kwargs):
        loss = negative_elbo(self, *args, **kwargs)
        return loss * float("nan") if self.training and next(training_calls) == 13 else loss

    monkeypatch.setattr(VAE, "negative_elbo", nan_at_step_13)
    with pytest.raises(TrainingDiverged) as stopped:
        run(TINY, tmp_path, digits, eager=True)  # the eager step calls negative_elbo at every step
    message = str(stopped.value)
    assert "the loss (negative ELBO) is nan at step 13 (epoch 2, batch 3)" in message
    assert "checkpoint.npz keeps the last saved state (step 10)" in message
    assert load_checkpoint(tmp_path / "checkpoint.npz").state.epoch == 1
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_a_non_finite_gradient_stops_training(tmp_path, digits, monkeypatch):
    negative_elbo = VAE.negative_elbo

    def with_infinite_slope(self, *args, **kwargs):  # + sqrt(0·w): adds 0 to the loss, 0·∞ = nan to the gradient
        return negative_elbo(self, *args, **kwargs) + sqrt(self.decoder.layers[0].weight * 0.0).sum()

    monkeypatch.setattr(VAE, "negative_elbo", with_infinite_slope)
    with np.errstate(all="raise"), pytest.raises(TrainingDiverged, match="gradient of decoder.* non-finite .*step 1 "
                                                                         r"\(epoch 1, batch 1\).*no checkpoint.npz"):
        run(TINY, tmp_path, digits)  # the step itself raises no floating-point error: the message says it all
    assert not (tmp_path / "checkpoint.npz").exists()


def test_a_relative_data_directory_is_kept_as_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert TrainConfig(data_dir="mnist").data_dir == str(tmp_path / "mnist")


def test_resume_refuses_other_settings_and_a_fresh_run_refuses_an_existing_checkpoint(tmp_path, digits):
    run(TrainConfig(**{**TINY.to_json(), "epochs": 1}), tmp_path, digits)
    with pytest.raises(CheckpointError, match=r"latent_dim=3 \(the checkpoint has 2\)"):
        run(TrainConfig(**{**TINY.to_json(), "latent_dim": 3}), tmp_path, digits, resume=True)
    with pytest.raises(CheckpointError, match="already holds checkpoint.npz"):
        run(TINY, tmp_path, digits)


def test_a_divergence_after_a_mid_epoch_resume_names_the_saved_step(tmp_path, digits, monkeypatch):
    run(TINY, tmp_path, digits, after_step=interrupt_after(3))
    negative_elbo = VAE.negative_elbo
    monkeypatch.setattr(VAE, "negative_elbo", lambda *args, **kwargs: negative_elbo(*args, **kwargs) * float("nan"))
    with pytest.raises(TrainingDiverged, match=r"at step 4 \(epoch 1, batch 4\); training stopped, "
                                               r"checkpoint.npz keeps the last saved state \(step 3\)$"):
        run(TINY, tmp_path, digits, resume=True)


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_end_erases_the_live_line_only_on_a_terminal():
    terminal, file = FakeTerminal(), io.StringIO()
    for stream in (terminal, file):
        progress = training.Progress(stream)
        progress.update(lambda: "half way")
        progress.end()
    assert terminal.getvalue() == "\r\033[Khalf way\r\033[K" and file.getvalue() == ""


def test_training_and_evaluation_leave_no_live_line_behind(tmp_path, digits):
    terminal = FakeTerminal()
    assert train(TINY, tmp_path, data=digits, stream=terminal, after_step=interrupt_after(3)).status == "interrupted"
    assert "epoch 1/2 [" in terminal.getvalue() and terminal.getvalue().endswith("steps/s\r\033[K")
    terminal = FakeTerminal()
    training.evaluate_checkpoint(tmp_path / "checkpoint.npz", iw_samples=5, stream=terminal)
    assert terminal.getvalue().startswith("\r\033[Kimportance sampling [") and terminal.getvalue().endswith("\r\033[K")


def test_resuming_a_complete_run_says_so_and_trains_nothing(tmp_path, digits):
    one_epoch = TrainConfig(**{**TINY.to_json(), "epochs": 1})
    run(one_epoch, tmp_path, digits)
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    output = io.StringIO()
    result = train(one_epoch, tmp_path, resume=True, data=digits, stream=output)
    assert (result.status, result.epoch, result.step) == ("completed", 1, 10)
    assert output.getvalue() == (f"{tmp_path} is already complete: 1 of 1 epochs trained; "
                                 f"raise --epochs to train further\n")
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before


@pytest.mark.parametrize("content, message", [(b"", "is not a minivae checkpoint (.npz archive)"),
                                              (b'{"epoch": 1}', "is not a minivae checkpoint (.npz archive)"),
                                              ("truncated", "is not a minivae checkpoint (.npz archive)"),
                                              ("no meta", "is not a readable minivae checkpoint")])
def test_unreadable_checkpoints_are_reported(tmp_path, digits, content, message):
    path = tmp_path / "checkpoint.npz"
    if content == "truncated":
        run(TrainConfig(**{**TINY.to_json(), "epochs": 1}), tmp_path, digits)
        path.write_bytes(path.read_bytes()[:1000])
    elif content == "no meta":
        np.savez(path, weights=np.zeros(3))
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="absent.npz does not exist"):
        load_checkpoint(tmp_path / "absent.npz")
    with pytest.raises(CheckpointError, match=f"{re.escape(str(tmp_path))} is not a file"):
        load_checkpoint(tmp_path)


def test_held_out_loss_uses_a_fixed_evaluation_generator(digits):
    model = VAE(784, (16,), 2, rng=0)
    targets = digits.test_images
    first = training.held_out_negative_elbo(model, targets, TINY)
    assert first == training.held_out_negative_elbo(model, targets, TINY)
    with pytest.raises(AssertionError):
        assert first == training.held_out_negative_elbo(model, targets, TrainConfig(**{**TINY.to_json(), "seed": 9}))
    manual = model.negative_elbo(Tensor(targets), training.generator(TINY.seed, "evaluation"), reduction="none")
    assert first == pytest.approx(float(manual.data.mean()), rel=1e-6)


def test_sample_checkpoint_writes_a_grid(tmp_path, digits):
    run(TrainConfig(**{**TINY.to_json(), "epochs": 1}), tmp_path, digits)
    path = sample_checkpoint(tmp_path / "checkpoint.npz", n=10, out=tmp_path / "ten.png", seed=1)
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    # 10 digits in 4 columns and 3 rows, upscaled 3 times
    assert (width, height) == (3 * (4 * 30 + 2), 3 * (3 * 30 + 2))


@pytest.mark.parametrize("bad, message", [({"epochs": 0}, "epochs"), ({"hidden": ()}, "hidden"),
                                          ({"lr": float("nan")}, "lr"), ({"estimator": "exact"}, "estimator"),
                                          ({"seed": -1}, "seed"), ({"batch_size": 2.5}, "batch_size")])
def test_train_config_rejects_bad_settings(bad, message):
    with pytest.raises(ValueError, match=f"TrainConfig: {message}"):
        TrainConfig(**bad)


# --------------------------------------------------------------------------------------- run folders and inputs
def test_sample_refuses_to_overwrite_its_checkpoint(tmp_path, digits):
    run(TINY, tmp_path, digits)
    checkpoint = tmp_path / "checkpoint.npz"
    before = checkpoint.read_bytes()
    for spelling in (checkpoint, tmp_path / "." / "checkpoint.npz"):
        with pytest.raises(ValueError, match="is the input .*choose another output path"):
            training.sample_checkpoint(spelling, out=spelling)
    assert checkpoint.read_bytes() == before
    load_checkpoint(checkpoint)


def test_an_existing_file_as_the_run_folder_is_named(tmp_path, digits):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    with pytest.raises(FileExistsError, match=f"{file} is an existing file, not a directory"):
        run(TINY, file, digits)
    assert file.read_text() == "mine"


def test_a_fresh_run_removes_stale_temporaries_and_leaves_other_files(tmp_path, digits):
    stale = [tmp_path / ".checkpoint.npz.abc123.part", tmp_path / ".samples.png.x.part"]
    for path in stale:
        path.write_bytes(b"cut short")
    (tmp_path / "mine.part").write_bytes(b"not minivae's")
    run(TINY, tmp_path, digits)
    assert not any(path.exists() for path in stale) and (tmp_path / "mine.part").exists()
    assert not (tmp_path / ".lock").exists()


def test_a_run_folder_held_by_a_live_process_is_refused(tmp_path, digits):
    from minivae.training.runlock import RunLock, RunLockedError
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match=f"{tmp_path} is in use by process {os.getpid()}"):
            run(TINY, tmp_path, digits)
    assert not (tmp_path / "checkpoint.npz").exists()
    run(TINY, tmp_path, digits)


def test_new_run_folders_never_clash(tmp_path):
    from minivae.training.runlock import new_run_folder
    folders = [new_run_folder(tmp_path / "runs", "20261130-050000") for _ in range(3)]
    assert [f.name for f in folders] == ["20261130-050000", "20261130-050000-2", "20261130-050000-3"]
    assert all(f.is_dir() for f in folders)


# --------------------------------------------------------------------------------------- checkpoint consistency
def rewrite_checkpoint(path, meta=lambda m: None, arrays=lambda a: None):
    """Change a saved checkpoint's meta dict and arrays in place, as a crafted or damaged file would."""
    with np.load(path) as archive:
        content = {name: archive[name] for name in archive.files}
    saved = json.loads(content["meta"].item())
    meta(saved)
    arrays(content)
    content["meta"] = np.array(json.dumps(saved))
    np.savez(path, **content)


def set_array(name, value):
    def change(arrays):
        arrays[name] = np.full_like(arrays[name], value)
    return change


@pytest.mark.parametrize("meta, arrays, message", [
    (lambda m: None, set_array("optimizer/lr", 0.5), "the optimizer's lr is 0.5, the run's is 0.001"),
    (lambda m: None, set_array("optimizer/beta2", 0.9), "the optimizer's beta2 is 0.9, the run's is 0.999"),
    (lambda m: None, set_array("model/decoder.0.weight", np.nan), "parameter decoder.0.weight has non-finite values"),
    (lambda m: None, set_array("optimizer/v.3", -1.0), "the optimizer's v.3 has non-finite or negative values"),
    (lambda m: None, set_array("optimizer/step", 99), "the optimizer counts [99] steps, the run 13"),
    (lambda m: m.update(step=10 ** 6), lambda a: None, "step 1000000 and position 3 disagree"),
    (lambda m: m.update(epoch=5), lambda a: None, "epoch 5 but 1 epochs of metrics"),
    (lambda m: m.update(epoch=-1), lambda a: None, "epoch -1 but 1 epochs of metrics"),
    (lambda m: m["history"][0].update(test_neg_elbo="nan"), lambda a: None, "the metrics of epoch 1 are malformed"),
    (lambda m: m["history"][0].pop("step"), lambda a: None, "the metrics of epoch 1 are malformed"),
    (lambda m: m.update(history={"epoch": 1}), lambda a: None, "the metrics history is not a list of records"),
    (lambda m: m.update(position=50, step=60), lambda a: None, "position 50 beyond the epoch's 10 batches"),
    (lambda m: None, lambda a: a.update(permutation=np.zeros(300, np.int64)),
     "the saved permutation is not a permutation"),
    (lambda m: m.update(loss_sum=float("inf")), lambda a: None, "loss_sum inf or seconds"),
])
def test_a_resume_checks_the_checkpoint_is_consistent_before_training(tmp_path, digits, meta, arrays, message):
    run(TINY, tmp_path, digits, after_step=interrupt_after(13))  # epoch 2, batch 3
    checkpoint = tmp_path / "checkpoint.npz"
    rewrite_checkpoint(checkpoint, meta, arrays)
    with pytest.raises(CheckpointError,
                       match=f"load_checkpoint: .*checkpoint.npz is inconsistent: .*{re.escape(message)}"):
        run(TINY, tmp_path, digits, resume=True)
    with pytest.raises(CheckpointError, match="is inconsistent"):
        training.evaluate_checkpoint(checkpoint, iw_samples=2)


def test_the_unchanged_checkpoint_passes_the_consistency_check(tmp_path, digits):
    run(TINY, tmp_path, digits, after_step=interrupt_after(13))
    rewrite_checkpoint(tmp_path / "checkpoint.npz")
    assert run(TINY, tmp_path, digits, resume=True).status == "completed"


def test_a_run_resumes_on_its_data_moved_elsewhere_and_refuses_other_data(tmp_path, digits):
    from minivae.data import save_mnist
    first = save_mnist(digits, tmp_path / "data")
    config = TrainConfig(**{**TINY.to_json(), "data_dir": str(first)})
    reference = tmp_path / "reference"
    train(config, reference, stream=open(os.devnull, "w"))
    out = tmp_path / "run"
    train(config, out, stream=open(os.devnull, "w"), after_step=interrupt_after(13))
    moved = first.rename(tmp_path / "moved")
    changed = save_mnist(MnistSplit(digits.train_images[::-1].copy(), *[getattr(digits, k) for k in
                                    ("train_labels", "test_images", "test_labels")], "other"), tmp_path / "other")
    with pytest.raises(CheckpointError, match=f"the data in {changed} is not the data .* was trained on"):
        train(TrainConfig(**{**TINY.to_json(), "data_dir": str(changed)}), out, resume=True,
              stream=open(os.devnull, "w"))
    result = train(TrainConfig(**{**TINY.to_json(), "data_dir": str(moved)}), out, resume=True,
                   stream=open(os.devnull, "w"))
    assert result.status == "completed" and read_checkpoint_config(out / "checkpoint.npz").data_dir == str(moved)
    assert without_timing(load_checkpoint(out / "checkpoint.npz").state.history) == \
        without_timing(load_checkpoint(reference / "checkpoint.npz").state.history)


def test_a_resume_on_the_command_line_takes_a_new_data_dir(tmp_path, digits, capsys):
    from minivae.cli import main
    from minivae.data import save_mnist
    first = save_mnist(digits, tmp_path / "data")
    out = tmp_path / "run"
    train(TrainConfig(**{**TINY.to_json(), "data_dir": str(first)}), out, stream=open(os.devnull, "w"),
          after_step=interrupt_after(13))
    moved = first.rename(tmp_path / "moved")
    assert main(["train", "--out", str(out), "--resume"]) == 1
    assert "data directory" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "--data-dir", str(moved)]) == 0



def test_the_captured_and_the_eager_step_train_the_same_run(tmp_path, digits):
    run(TINY, tmp_path / "captured", digits)
    run(TINY, tmp_path / "eager", digits, eager=True)
    assert_same_run(tmp_path / "captured", tmp_path / "eager")


def test_a_diverging_captured_step_stops_training_with_the_eager_message(tmp_path, digits):
    config = TrainConfig(**{**TINY.to_json(), "lr": 1e30})
    with pytest.raises(TrainingDiverged, match=r"the (loss \(negative ELBO\) is nan|gradient of .* has non-finite "
                                               r"values) at step \d+"):
        run(config, tmp_path, digits)


def test_the_run_hyperparameters_are_adams_own_defaults_with_the_runs_learning_rate(tmp_path, digits, monkeypatch):
    from minivae.optim import Adam
    defaults = Adam.__init__.__defaults__   # (lr, betas, eps, weight_decay)
    monkeypatch.setattr(Adam.__init__, "__defaults__", (defaults[0], (0.8, 0.99), 1e-7, defaults[3]))
    run(TINY, tmp_path, digits, after_step=interrupt_after(13))
    saved = load_checkpoint(tmp_path / "checkpoint.npz")   # Adam's defaults changed: its checkpoints still load
    assert (saved.optimizer.beta1, saved.optimizer.beta2, saved.optimizer.eps, saved.optimizer.lr) == (0.8, 0.99, 1e-7,
                                                                                                        TINY.lr)
    assert run(TINY, tmp_path, digits, resume=True).status == "completed"
    monkeypatch.setattr(Adam.__init__, "__defaults__", defaults)   # ... and others are refused
    with pytest.raises(CheckpointError, match=r"the optimizer's beta1 is 0.8, the run's is 0.9; "
                                              r"the optimizer's beta2 is 0.99, the run's is 0.999; "
                                              r"the optimizer's eps is 1e-07, the run's is 1e-08"):
        load_checkpoint(tmp_path / "checkpoint.npz")


def test_no_function_of_the_training_and_command_line_modules_is_over_60_lines():
    import ast
    from pathlib import Path
    import minivae
    root = Path(minivae.__file__).parent
    long = [f"{path.relative_to(root)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in [*(root / "training").glob("*.py"), *(root / "cli").glob("*.py"), root / "files.py"]
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60]
    assert long == []


# --------------------------------------------------------------------------------------- what the checkpoint records
def metrics_lines(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("damage", ["delete", "drop the last line", "truncate", "change a value"])
def test_resume_rewrites_metrics_from_the_checkpoint_even_for_a_complete_run(tmp_path, digits, damage):
    reference, out = tmp_path / "reference", tmp_path / "run"
    run(TINY, reference, digits)
    run(TINY, out, digits)
    history = load_checkpoint(out / "checkpoint.npz").state.history
    before = {name: (out / name).read_bytes() for name in ("metrics.jsonl", *FIGURES)}
    metrics = out / "metrics.jsonl"
    text = metrics.read_text()
    if damage == "delete":
        metrics.unlink()
    elif damage == "drop the last line":
        metrics.write_text(text.splitlines(keepends=True)[0])
    elif damage == "truncate":
        metrics.write_text(text[:len(text) - 40])
    else:
        metrics.write_text(text.replace(repr(history[0]["test_neg_elbo"]), "1.0"))
    output = io.StringIO()
    result = train(TINY, out, resume=True, data=digits, stream=output)
    assert result.status == "completed" and result.step == 20
    assert output.getvalue().startswith(f"{out}: rewrote its metrics.jsonl and figures: metrics.jsonl ")
    assert output.getvalue().endswith("is already complete: 2 of 2 epochs trained; raise --epochs to train further\n")
    assert metrics_lines(out) == [{**m, "data": "a test subset", "likelihood": likelihood(False)} for m in history]
    assert {name: (out / name).read_bytes() for name in ("metrics.jsonl", *FIGURES)} == before
    assert_same_run(reference, out)


def test_resume_of_a_stopped_run_repairs_its_metrics_before_training_on(tmp_path, digits):
    out = tmp_path / "run"
    run(TINY, out, digits, after_step=interrupt_after(13))    # epoch 2, batch 3: one epoch of metrics
    (out / "metrics.jsonl").unlink()
    (out / "loss.png").unlink()
    output = io.StringIO()
    assert train(TINY, out, resume=True, data=digits, stream=output, after_step=interrupt_after(14)).step == 14
    assert output.getvalue().startswith(f"{out}: rewrote its metrics.jsonl and figures: metrics.jsonl was missing\n")
    assert [m["epoch"] for m in metrics_lines(out)] == [1] and (out / "loss.png").is_file()


def test_a_new_run_never_replaces_files_it_did_not_write(tmp_path, digits):
    run(TINY, tmp_path / "first", digits)
    out = tmp_path / "mine"
    out.mkdir()
    sample_checkpoint(tmp_path / "first" / "checkpoint.npz", 4, out / "samples.png")
    (out / "metrics.jsonl").write_text("my notes\n")
    (out / "loss.png").symlink_to(tmp_path / "nowhere.png")
    mine = {name: os.readlink(out / name) if (out / name).is_symlink() else (out / name).read_bytes()
            for name in os.listdir(out)}
    with pytest.raises(FileExistsError, match=f"train: {out} already holds metrics.jsonl, samples.png, loss.png, "
                                              f"which the run would replace; move them away, or choose another --out"):
        run(TINY, out, digits)
    assert {name: os.readlink(out / name) if (out / name).is_symlink() else (out / name).read_bytes()
            for name in os.listdir(out)} == mine
    (out / "metrics.jsonl").unlink()
    (out / "loss.png").unlink()
    with pytest.raises(FileExistsError, match="already holds samples.png, which the run would replace; move it away"):
        run(TINY, out, digits)
    (out / "samples.png").rename(tmp_path / "samples.png")
    (out / "manifold.png").write_bytes(b"mine")   # written only for a 2-D latent space: free with another
    assert run(TrainConfig(**{**TINY.to_json(), "latent_dim": 3, "epochs": 1}), out, digits).status == "completed"
    assert (out / "manifold.png").read_bytes() == b"mine"


MATPLOTLIB_AT_FIRST_STEP = """
import io, sys
from minivae.data import MnistSplit, load_mnist
from minivae.training import TrainConfig, train
every = load_mnist()
digits = MnistSplit(every.train_images[:300], every.train_labels[:300], every.test_images[:100],
                    every.test_labels[:100], "a test subset")
seen = []
def first_step(step):
    if not seen:
        seen.append("matplotlib" in sys.modules)
config = TrainConfig(epochs=int(sys.argv[2]), batch_size=32, hidden=(16,), latent_dim=2, seed=3)
train(config, sys.argv[1], resume=sys.argv[3] == "resume", data=digits, stream=io.StringIO(), after_step=first_step)
print(seen[0])
"""


@pytest.mark.parametrize("mode", ["new run", "resume of a complete epoch"])
def test_matplotlib_is_not_imported_before_the_first_step(tmp_path, mode):
    """Importing matplotlib takes longer than a warm process's step; a run needs it only to draw loss.png
    after its first epoch, so neither a new run nor a resume waits for it before training."""
    pytest.importorskip("matplotlib")
    import subprocess
    import sys

    def imported_at_first_step(epochs, how):
        done = subprocess.run([sys.executable, "-c", MATPLOTLIB_AT_FIRST_STEP, str(tmp_path / "run"), str(epochs), how],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()[-1]
    if mode == "new run":
        assert imported_at_first_step(1, "new") == "False"
    else:
        assert imported_at_first_step(1, "new") == "False"   # and the epoch's figures drawn
        assert (tmp_path / "run" / "loss.png").is_file()
        assert imported_at_first_step(2, "resume") == "False"
