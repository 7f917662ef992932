"""The checkpoint format: a run's model, optimizer, generator and position saved in one ``.npz``,
read back with every part checked against the others.
"""
from __future__ import annotations

import hashlib
import json
import math
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from ..data import MnistSplit, path_problem
from ..files import atomic_write
from ..optim import Adam
from ..vae import VAE
from .config import TrainConfig

CHECKPOINT_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit the run asked for."""


@dataclass
class RunState:
    """Where a run is: all that, beside the model and optimizer arrays, a checkpoint must hold."""

    epoch: int = 0                          # completed epochs
    step: int = 0                           # completed optimizer steps, over all epochs
    position: int = 0                       # completed batches of the current epoch
    permutation: np.ndarray | None = None   # the current epoch's order; None until it starts
    loss_sum: float = 0.0                   # Σ batch loss × batch size over those batches
    seconds: float = 0.0                    # training time of the current epoch so far
    history: list = field(default_factory=list)  # one metrics dict per completed epoch
    data_sha256: str | None = None          # data_checksum of the digits the run trains on


@dataclass
class Checkpoint:
    """A run restored from ``checkpoint.npz``."""

    config: TrainConfig
    model: VAE
    optimizer: Adam
    rng: np.random.Generator
    state: RunState


def save_checkpoint(path, config: TrainConfig, model: VAE, optimizer: Adam, rng: np.random.Generator,
                    state: RunState) -> None:
    """Write the run to ``path`` atomically: a temporary file, fsync, then ``os.replace``.

    Arrays are stored as ``model/<name>``, ``optimizer/<name>`` and ``permutation``; the rest (the
    configurations, the generator's bit-generator state, the run state and history) as JSON in
    ``meta``.
    """
    arrays = {f"model/{name}": array for name, array in model.state_dict().items()}
    arrays.update({f"optimizer/{name}": array for name, array in optimizer.state_dict().items()})
    if state.permutation is not None:
        arrays["permutation"] = state.permutation
    meta = {"format": CHECKPOINT_FORMAT, "config": config.to_json(), "model": model.config,
            "rng": rng.bit_generator.state,
            **{f.name: getattr(state, f.name) for f in fields(RunState) if f.name != "permutation"}}
    with atomic_write(path) as file:
        np.savez(file, meta=np.array(json.dumps(meta)), **arrays)


def load_checkpoint(path) -> Checkpoint:
    """The run saved at ``path``, or a ``CheckpointError`` saying why it cannot be read."""
    return read_checkpoint(path, _restore)


def read_checkpoint_config(path) -> TrainConfig:
    """The settings of the run saved at ``path`` (only the checkpoint's ``meta`` is read)."""
    return read_checkpoint(path, lambda archive, meta: TrainConfig(**meta["config"]))


def read_checkpoint(path, read):
    """``read(archive, meta)`` on the open checkpoint, its failures reported as ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"load_checkpoint: {path} {path_problem(path, 'file')}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"load_checkpoint: {path} is not a minivae checkpoint (.npz archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(archive["meta"].item())
            if meta.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT}")
            return read(archive, meta)
    except CheckpointError as err:
        raise CheckpointError(f"load_checkpoint: {path} {err}") from None
    except (OSError, EOFError, zipfile.BadZipFile, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"load_checkpoint: {path} is not a readable minivae checkpoint "
                              f"({type(err).__name__}: {err})") from None


def run_optimizer(model: VAE, config: TrainConfig) -> Adam:
    """The optimizer of a run: ``Adam`` with the run's learning rate, and Adam's own defaults for the
    rest (the one place that says so: training builds it, and a checkpoint is checked against it)."""
    return Adam(model.parameters(), lr=config.lr)


def _restore(archive, meta: dict) -> Checkpoint:
    config = TrainConfig(**meta["config"])
    model = VAE(**meta["model"], rng=0)
    model.load_state_dict(_with_prefix(archive, "model/"))
    optimizer = run_optimizer(model, config)
    expected = {key: getattr(optimizer, key) for key in optimizer.hyperparameters}
    optimizer.load_state_dict(_with_prefix(archive, "optimizer/"))
    bit_generator = getattr(np.random, meta["rng"]["bit_generator"])()
    bit_generator.state = meta["rng"]
    state = RunState(permutation=archive["permutation"] if "permutation" in archive.files else None,
                     data_sha256=meta.get("data_sha256"),  # absent from checkpoints of earlier versions
                     **{f.name: meta[f.name] for f in fields(RunState) if f.name not in ("permutation", "data_sha256")})
    run = Checkpoint(config, model, optimizer, np.random.Generator(bit_generator), state)
    _check_consistency(run, expected)
    return run


HISTORY_KEYS = ("epoch", "step", "train_neg_elbo", "test_neg_elbo", "epoch_seconds", "steps_per_second")


def _check_consistency(run: Checkpoint, hyperparameters: dict) -> None:
    """Raise ``CheckpointError`` unless the checkpoint's parts agree with each other.

    The optimizer's ``hyperparameters`` are the run's (those of ``run_optimizer``) and its step
    counts are the run's step; parameters and moments are finite (v >= 0); the epoch, step and
    position agree with the history, whose entries are well-formed; the permutation is one.
    """
    problems = _optimizer_problems(run, hyperparameters)
    history_problems, history = _history_problems(run.state.history)
    problems += history_problems
    state = run.state
    if not all(isinstance(getattr(state, k), int) and not isinstance(getattr(state, k), bool)
               for k in ("epoch", "step", "position")):
        problems.append(f"epoch, step and position must be integers, got {state.epoch!r}, {state.step!r}, "
                        f"{state.position!r}")
    elif not problems:
        problems += _position_problems(run, history)
    if not all(isinstance(value, (int, float)) and math.isfinite(value) for value in (state.loss_sum, state.seconds)) \
            or state.seconds < 0:
        problems.append(f"loss_sum {state.loss_sum!r} or seconds {state.seconds!r} is not a finite number")
    if problems:
        raise CheckpointError("is inconsistent: " + "; ".join(problems))


def _optimizer_problems(run: Checkpoint, hyperparameters: dict) -> list:
    """The optimizer's hyper-parameters differ from the run's; a parameter or moment is not finite."""
    optimizer, problems = run.optimizer, []
    for key, value in hyperparameters.items():
        if getattr(optimizer, key) != value:
            problems.append(f"the optimizer's {key} is {getattr(optimizer, key)!r}, the run's is {value!r}")
    for name, parameter in run.model.named_parameters():
        if not np.isfinite(parameter.data).all():
            problems.append(f"parameter {name} has non-finite values")
    for buffer, arrays in optimizer.state.items():
        for i, array in enumerate(arrays):
            if not np.isfinite(array).all() or (buffer == "v" and (array < 0).any()):
                kind = "non-finite or negative" if buffer == "v" else "non-finite"
                problems.append(f"the optimizer's {buffer}.{i} has {kind} values")
    return problems


def _history_problems(history) -> tuple[list, list]:
    """The problems of the metrics history (a list of records, one per epoch, well-formed and in
    range, with rising steps), and the history to check the position against."""
    if not (isinstance(history, list) and all(isinstance(m, dict) for m in history)):
        return ["the metrics history is not a list of records"], []
    for i, metrics in enumerate(history):
        if set(metrics) != set(HISTORY_KEYS) or metrics["epoch"] != i + 1 or not all(
                isinstance(metrics[k], (int, float)) and not isinstance(metrics[k], bool)
                and math.isfinite(metrics[k]) for k in HISTORY_KEYS):
            return [f"the metrics of epoch {i + 1} are malformed: {metrics!r}"], history
        if metrics["epoch_seconds"] < 0 or metrics["steps_per_second"] < 0 or (
                metrics["step"] <= (history[i - 1]["step"] if i else 0)):
            return [f"the metrics of epoch {i + 1} are out of range: {metrics!r}"], history
    return [], history


def _position_problems(run: Checkpoint, history: list) -> list:
    """The epoch, step, position, optimizer step counts and permutation disagree with each other."""
    state, config, problems = run.state, run.config, []
    previous = history[-1]["step"] if history else 0
    if state.epoch != len(history):
        problems.append(f"epoch {state.epoch} but {len(history)} epochs of metrics")
    if state.position < 0 or state.step != previous + state.position:
        problems.append(f"step {state.step} and position {state.position} disagree with the "
                        f"{previous} steps of the completed epochs")
    if (run.optimizer.steps != state.step).any():
        problems.append(f"the optimizer counts {sorted(set(run.optimizer.steps.tolist()))} steps, the run {state.step}")
    permutation = state.permutation
    if permutation is None:
        if state.position:
            problems.append(f"position {state.position} in an epoch without a permutation")
    elif (permutation.ndim != 1 or permutation.dtype.kind not in "iu"
          or not np.array_equal(np.sort(permutation), np.arange(len(permutation)))):
        problems.append("the saved permutation is not a permutation")
    elif state.position > math.ceil(len(permutation) / config.batch_size):
        problems.append(f"position {state.position} beyond the epoch's "
                        f"{math.ceil(len(permutation) / config.batch_size)} batches")
    return problems


def data_checksum(data: MnistSplit) -> str:
    """SHA-256 of the training and held-out digits and labels, as stored in float32 and uint8."""
    digest = hashlib.sha256()
    for array in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _with_prefix(archive, prefix: str) -> dict:
    return {name[len(prefix):]: archive[name] for name in archive.files if name.startswith(prefix)}
