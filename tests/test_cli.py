"""The minivae command, run in-process through main(argv), and once as a real subprocess."""
import argparse
import json
import re
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minivae
from minivae import kernels, training
from minivae.cli import evaluate as evaluate_command, train as train_command
from minivae.cli import build_parser, main
from minivae.data import load_mnist, write_idx
from minivae.figures import DIGIT_SCALE, reconstruction_grid
from minivae.training import TrainConfig, load_checkpoint
from test_images import decode_png

TINY = ["--epochs", "2", "--batch-size", "32", "--hidden", "16", "8", "--latent-dim", "2"]


@pytest.fixture(scope="module")
def trained(mnist_dir, tmp_path_factory):
    """The output directory of a finished tiny run on ``mnist_dir``."""
    out = tmp_path_factory.mktemp("run") / "tiny"
    assert main(["train", *TINY, "--data-dir", str(mnist_dir), "--out", str(out)]) == 0
    return out


def metrics(out: Path) -> list:
    return [{k: v for k, v in json.loads(line).items() if k not in ("epoch_seconds", "steps_per_second")}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_help_from_a_real_subprocess():
    done = subprocess.run([sys.executable, "-m", "minivae", "--help"], cwd=Path(minivae.__file__).parents[1],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    if kernels.backend.numba is None:  # without Numba: its one warning, and nothing else
        assert done.stderr.count("Warning") == 1 and "Numba is not installed" in done.stderr
    else:
        assert done.stderr == ""
    for command in ("train", "evaluate", "sample", "download", "estimators"):
        assert command in done.stdout
    assert "gradient estimators" in done.stdout.split("commands:")[0]  # the description names estimators too


def test_every_command_and_flag_has_a_help_text():
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert {c.dest for c in commands._choices_actions} >= {"train", "evaluate", "sample", "download", "estimators"}
    assert "SHA-256" in commands.choices["download"].description
    assert all(c.help for c in commands._choices_actions)
    for name, subparser in commands.choices.items():
        for action in subparser._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)


def test_train_with_no_flags_trains_the_default_model_on_the_embedded_digits(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(train_command, "train", lambda config, out, resume, eager: calls.append(
        (config, out, resume, eager)) or training.TrainResult("completed", out, 10, 710, []))
    monkeypatch.chdir(tmp_path)
    assert main(["train"]) == 0
    assert main(["train", "--eager"]) == 0
    ((config, out, resume, eager), (_, _, _, asked_eager)) = calls
    assert config == TrainConfig() and config.data_dir is None and not resume and out.parent == Path("runs")
    assert not eager and asked_eager  # the captured step by default


def test_train_writes_its_run(trained):
    lines = metrics(trained)
    assert [m["epoch"] for m in lines] == [1, 2]
    for name in ("checkpoint.npz", "reconstructions.png", "samples.png", "loss.png", "manifold.png"):
        assert (trained / name).is_file()
    assert load_checkpoint(trained / "checkpoint.npz").config.hidden == (16, 8)


def test_the_runs_digit_grids_are_upscaled_and_hold_what_the_model_draws(trained):
    run = load_checkpoint(trained / "checkpoint.npz")
    targets = training.held_out_targets(load_mnist(run.config.data_dir), run.config)[:16]
    reconstructions = decode_png((trained / "reconstructions.png").read_bytes())
    np.testing.assert_array_equal(reconstructions, reconstruction_grid(
        targets, run.model.reconstruct(targets), columns=8, scale=DIGIT_SCALE))
    samples = decode_png((trained / "samples.png").read_bytes())
    assert samples.shape == (DIGIT_SCALE * (8 * 30 + 2),) * 2 and samples.std() > 10


def test_evaluate_prints_a_table_and_json(trained, mnist_dir, capsys):
    assert main(["evaluate", str(trained / "checkpoint.npz"), "--iw-samples", "50", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["held_out_digits"] == 100 and results["iw_samples"] == 50 and results["epoch"] == 2
    assert results["negative_elbo"] == metrics(trained)[-1]["test_neg_elbo"]  # the run's own evaluation
    assert results["gap"] == pytest.approx(results["negative_elbo"] - results["iw_negative_log_likelihood"])
    assert results["gap"] > 0  # the importance-weighted bound is the tighter one
    assert main(["evaluate", str(trained / "checkpoint.npz"), "--iw-samples", "50"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [row.split("  ")[0] for row in table] == ["checkpoint", "data", "likelihood", "held-out digits",
                                                     "negative ELBO", "-log p(x), IW k=50", "gap (ELBO to IW)"]
    assert f"{results['negative_elbo']:.3f} nats" in table[4]
    assert results["data"] == f"the train and t10k files of {mnist_dir}" and results["data"] in table[1]
    assert "grey-level intensities" in results["likelihood"] and "--binarize" in table[2]
    assert all(m["data"] == results["data"] and m["likelihood"] == results["likelihood"]
               for m in metrics(trained))


def test_sample_writes_a_png(trained, tmp_path, capsys):
    assert main(["sample", str(trained / "checkpoint.npz"), "--n", "16", "--out", str(tmp_path / "s.png")]) == 0
    width, height = struct.unpack(">II", (tmp_path / "s.png").read_bytes()[16:24])
    grid = DIGIT_SCALE * (4 * 30 + 2)  # 16 digits, 4 by 4, upscaled
    assert width == height == grid and "s.png" in capsys.readouterr().out


def test_ctrl_c_saves_and_resume_finishes_the_same_run(trained, mnist_dir, tmp_path, signal_during_step,
                                                        capsys):
    restore = signal_during_step(signal.SIGINT, 12)
    out = tmp_path / "run"
    assert main(["train", *TINY, "--data-dir", str(mnist_dir), "--out", str(out)]) == 130
    error = capsys.readouterr().err.strip()
    assert "interrupted after step 13" in error and f"--out {out} --resume" in error and "\n" not in error
    restore()
    assert main(["train", "--out", str(out), "--resume"]) == 0
    assert metrics(out) == metrics(trained)
    assert (out / "manifold.png").read_bytes() == (trained / "manifold.png").read_bytes()


def test_sigterm_saves_and_resume_finishes_the_same_run(trained, mnist_dir, tmp_path, signal_during_step,
                                                        capsys):
    restore = signal_during_step(signal.SIGTERM, 12)
    out = tmp_path / "run"
    assert main(["train", *TINY, "--data-dir", str(mnist_dir), "--out", str(out)]) == 143
    error = capsys.readouterr().err.strip()
    assert error.startswith("minivae: terminated (SIGTERM) after step 13") and "checkpoint saved" in error
    restore()
    assert main(["train", "--out", str(out), "--resume"]) == 0
    assert metrics(out) == metrics(trained)
    assert (out / "manifold.png").read_bytes() == (trained / "manifold.png").read_bytes()


def test_sigterm_ends_other_commands_with_143_and_one_line(trained, monkeypatch, capsys):
    def terminated(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)
    monkeypatch.setattr(evaluate_command, "evaluate_checkpoint", terminated)
    handler = signal.getsignal(signal.SIGTERM)
    assert main(["evaluate", str(trained / "checkpoint.npz")]) == 143
    assert capsys.readouterr().err == "minivae: terminated (SIGTERM)\n"
    assert signal.getsignal(signal.SIGTERM) is handler  # main leaves the process's handler as it was


def test_runs_without_out_in_the_same_second_get_folders_of_their_own(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train_command.time, "strftime", lambda pattern: "20261130-050000")
    for _ in range(2):
        assert main(["train", *TINY, "--epochs", "1", "--data-dir", str(mnist_dir)]) == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["20261130-050000", "20261130-050000-2"]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def broken_files(tmp_path):
    """A directory whose t10k images file has the labels' magic number, and a corrupt checkpoint."""
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros(2000, np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(2000, np.uint8))
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 cut short")
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (tmp_path / "run" / "checkpoint.npz").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    write_idx(tmp_path / "empty" / "t10k-images-idx3-ubyte.gz", np.zeros((0, 28, 28), np.uint8))
    write_idx(tmp_path / "empty" / "t10k-labels-idx1-ubyte.gz", np.zeros(0, np.uint8))
    return tmp_path


@pytest.mark.parametrize("argv, status, message", [
    ([], 2, "required: COMMAND"),
    (["frobnicate"], 2, "invalid choice"),
    (["train", "--bogus"], 2, "minivae train: error: unrecognized arguments: --bogus"),
    (["--bogus", "train"], 2, "minivae: error: unrecognized arguments: --bogus"),
    (["train", "--epochs", "0"], 2, "--epochs: expected an integer >= 1, got '0'"),
    (["train", "--lr", "fast"], 2, "--lr: expected a number > 0"),
    (["train", "--estimator", "exact"], 2, "invalid choice: 'exact'"),
    (["train", "--resume"], 2, "--resume needs --out"),
    (["evaluate"], 2, "required: CHECKPOINT"),
    (["evaluate", "{tmp}/absent.npz"], 1, "absent.npz does not exist"),
    (["evaluate", "{tmp}/corrupt.npz"], 1, "corrupt.npz is not a minivae checkpoint (.npz archive)"),
    (["evaluate", "{tmp}/metrics.jsonl"], 1, "metrics.jsonl is not a minivae checkpoint (.npz archive)"),
    (["evaluate", "{tmp}"], 1, "is not a file"),
    (["sample", "{tmp}/corrupt.npz"], 1, "is not a minivae checkpoint"),
    (["train", "--out", "{tmp}/run", "--resume"], 1, "checkpoint.npz is not a file"),
    (["train", "--data-dir", "{tmp}"], 1, "magic number 2049, expected 2051"),
    (["train", "--data-dir", "{tmp}/nowhere"], 1, "does not exist"),
    (["train", "--data-dir", "{tmp}/corrupt.npz"], 1, "corrupt.npz is not a directory"),
    (["download", "mnist", "--dir", "{tmp}/d", "--url", "notaurl"], 1, "'notaurl' is not an http, https or file URL"),
    (["download", "mnist", "--dir", "{tmp}/d", "--url", "http://127.0.0.1:{port}/"], 1, "--data-dir"),
    (["download", "imagenet"], 2, "invalid choice"),
    (["download", "mnist", "--dir", "{tmp}/d", "--url", ""], 1, "the mirror URL is empty"),
    (["train", "--out", "{tmp}/metrics.jsonl"], 1, "metrics.jsonl is an existing file, not a directory"),
    (["train", "--data-dir", "{tmp}/empty"], 1, "t10k-images-idx3-ubyte.gz holds no digits"),
    (["sample", "{tmp}/run/checkpoint.npz", "--out", "{tmp}/run/checkpoint.npz"], 1, "is the input"),
    # every path flag refuses the empty path, which would mean the current directory
    (["train", "--out", ""], 2, "minivae train: error: argument --out: expected a path, got an empty one"),
    (["train", "--data-dir", ""], 2, "argument --data-dir: expected a path, got an empty one"),
    (["sample", "{tmp}/corrupt.npz", "--out", ""], 2, "argument --out: expected a path, got an empty one"),
    (["sample", ""], 2, "argument CHECKPOINT: expected a path, got an empty one"),
    (["evaluate", "", "--data-dir", "{tmp}"], 2, "argument CHECKPOINT: expected a path, got an empty one"),
    (["export", "{tmp}/corrupt.npz", "--torch", ""], 2, "argument --torch: expected a path, got an empty one"),
    (["download", "mnist", "--dir", ""], 2, "argument --dir: expected a path, got an empty one"),
    (["estimators", "--out", ""], 2, "argument --out: expected a path, got an empty one"),
    (["download", "mnist", "--timeout", "1e300"], 2, "--timeout: expected a number of seconds > 0, at most a day"),
    # every write error names the user's path and its true cause, never a temporary file
    (["train", "--out", "{tmp}/metrics.jsonl/run"], 1,
     "cannot create the run folder {tmp}/metrics.jsonl/run: {tmp}/metrics.jsonl is a file, not a directory"),
    (["estimators", "--out", "{tmp}/metrics.jsonl/run"], 1,
     "cannot create the output folder {tmp}/metrics.jsonl/run: {tmp}/metrics.jsonl is a file, not a directory"),
    (["download", "mnist", "--dir", "{tmp}/metrics.jsonl/d"], 1,
     "cannot create the data folder {tmp}/metrics.jsonl/d: {tmp}/metrics.jsonl is a file, not a directory"),
])
def test_errors_are_one_line_on_stderr(broken_files, capsys, argv, status, message):
    argv = [a.format(tmp=broken_files, port=closed_port()) for a in argv]
    assert main(argv) == status
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    message = message.format(tmp=broken_files)
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in captured.err and "pickle" not in lines[0]
    assert lines[0].startswith("minivae") and not re.search(r"\.\S+\.part\b", lines[0])  # no temporary file


@pytest.mark.parametrize("out, message", [
    ("", "expected a path, got an empty one"),
    (".", "cannot write .: it is a directory"),
    ("{tmp}", "cannot write {tmp}: it is a directory"),
    ("{tmp}/notes.txt/s.png", "cannot write {tmp}/notes.txt/s.png: {tmp}/notes.txt is a file, not a directory"),
    ("{tmp}/a/b/s.png", "cannot write {tmp}/a/b/s.png: its directory {tmp}/a/b does not exist"),
])
@pytest.mark.parametrize("command", ["sample", "export"])
def test_every_write_error_names_the_users_path_and_the_true_cause(trained, tmp_path, monkeypatch, capsys, command,
                                                                   out, message):
    if command == "export":
        pytest.importorskip("torch")
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    out = out.format(tmp=tmp_path)
    flag = "--out" if command == "sample" else "--torch"
    assert main([command, str(trained / "checkpoint.npz"), flag, out]) in (1, 2)
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message.format(tmp=tmp_path) in error
    assert not re.search(r"\.\S+\.part\b", error) and "Errno" not in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_runs_without_out_name_a_file_in_the_way_of_the_runs_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("mine")
    assert main(["train", "--epochs", "1"]) == 1
    assert capsys.readouterr().err == ("minivae: error: cannot create the folder of runs runs: it is an existing file, "
                                       "not a directory\n")


@pytest.mark.parametrize("argv, asked", [
    (["sample", "{checkpoint}", "--n", "100000000"], "--n 100000000"),
    (["train", "--hidden", "100000000"], "--hidden 100000000 --latent-dim 20 --batch-size 128 --samples 1"),
    (["train", "--latent-dim", "100000000"], "--hidden 400 --latent-dim 100000000"),
    (["train", "--samples", "1000000", "--batch-size", "100"], "--batch-size 100 --samples 1000000"),
    (["train", "--out", "{run}", "--resume", "--samples", "100000000"], "--samples 100000000"),
    (["estimators", "--samples", "1", "100000000"], "--samples 100000000 --batch 32 --repeats 20"),
    (["estimators", "--repeats", "100000000"], "--repeats 100000000"),
    (["estimators", "--hidden", "100000000"], "--hidden 100000000"),
])
def test_flags_that_ask_for_more_memory_than_there_is_stop_at_once_with_one_line(trained, tmp_path, monkeypatch,
                                                                                 capsys, argv, asked):
    from minivae.cli import arguments, estimators, sample
    monkeypatch.setattr(arguments, "available_memory", lambda: 2 * 10 ** 9)
    for module, name in ((train_command, "train"), (sample, "sample_checkpoint"), (estimators, "load_mnist")):
        monkeypatch.setattr(module, name, lambda *args, **kwargs: pytest.fail("started though it cannot finish"))
    monkeypatch.chdir(tmp_path)
    argv = [a.format(checkpoint=trained / "checkpoint.npz", run=trained) for a in argv]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"minivae {argv[0]}: error: ") and asked in error and error.count("\n") == 1
    assert "of memory, and 2.0 GB are available: ask for less" in error
    assert not (tmp_path / "runs").exists()


def test_what_fits_in_memory_is_not_refused(trained, tmp_path, monkeypatch, capsys):
    from minivae.cli import arguments
    monkeypatch.setattr(arguments, "available_memory", lambda: 2 * 10 ** 9)
    assert main(["sample", str(trained / "checkpoint.npz"), "--n", "10000", "--out", str(tmp_path / "s.png")]) == 0
    from minivae.cli.train import training_memory
    assert training_memory(TrainConfig()) < 10 ** 9 and training_memory(TrainConfig(hidden=(4000, 4000))) < 2 * 10 ** 9


def test_resuming_a_complete_run_exits_0_without_training(trained, capsys):
    before = (trained / "checkpoint.npz").read_bytes()
    assert main(["train", "--out", str(trained), "--resume"]) == 0
    assert "is already complete: 2 of 2 epochs trained" in capsys.readouterr().out
    assert (trained / "checkpoint.npz").read_bytes() == before


def test_resume_errors_name_the_conflict(trained, capsys):
    assert main(["train", "--out", str(trained)]) == 1
    assert "already holds checkpoint.npz" in capsys.readouterr().err
    assert main(["train", "--out", str(trained), "--resume", "--latent-dim", "5"]) == 1
    assert "latent_dim=5 (the checkpoint has 2)" in capsys.readouterr().err
