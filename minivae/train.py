"""Training a VAE on MNIST: the minibatch loop, checkpoints that resume exactly, and the run's figures.

One run writes into its output directory:

- ``metrics.jsonl``: one JSON object per epoch (``epoch``, ``step``, ``train_neg_elbo``,
  ``test_neg_elbo``, ``epoch_seconds``, ``steps_per_second``), losses in nats per digit;
- ``checkpoint.npz``: the model, the optimizer, the training generator's state, the position in the
  current epoch and the metrics so far, replaced atomically after every epoch and on Ctrl-C;
- ``reconstructions.png``, ``samples.png``, ``loss.png``, and ``manifold.png`` for a 2-D latent space;
- ``.lock`` while the run is going: one process at a time writes a run folder (``minivae.runlock``).

Every file is written under a temporary name and renamed (``minivae.files``), so a crash, a kill
or a full disk leaves each file complete or absent, never cut short.

Every random draw of the run comes from its seed through one of four independent generators:
"training" (initialization, shuffling, binarization, the reparameterization noise), "evaluation"
(restarted for every evaluation, so the held-out loss of two epochs sees the same noise),
"held-out" (the fixed binarization of the held-out digits) and "figures".

An epoch visits every training digit once in a fresh random order, in batches of ``batch_size``;
the last batch holds the remainder, so no digit is dropped. ``train_neg_elbo`` is the mean over
the epoch's digits of the loss each had when its batch was trained.
"""
from __future__ import annotations

import hashlib
import json
import math
import signal
import threading
import time
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from .checks import is_positive_int
from .data import MnistSplit, load_mnist, path_problem
from .engine import Tensor, no_grad
from .files import atomic_write, refuse_overwriting_input, remove_stale_temporaries
from .images import digit_grid, loss_plot, manifold_grid, png_problem, reconstruction_grid, write_png
from .optim import Adam
from .progress import COMPILE_NOTE, Progress, bar as _bar, kernels_need_compiling
from .runlock import RunLock
from .vae import ESTIMATORS, VAE

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.jsonl"
CHECKPOINT_FORMAT = 1
FIGURES = ("reconstructions.png", "samples.png", "loss.png")
MANIFOLD = "manifold.png"   # only for a 2-D latent space
STREAMS = ("training", "evaluation", "held-out", "figures")
EVALUATION_BATCH = 500      # held-out digits per negative-ELBO evaluation
IW_CHUNK = 500              # importance samples per digit drawn at once
IW_SAMPLES_PER_CALL = 8000  # digits × samples per call: bounds the decoder outputs held in memory


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit the run asked for."""


class TrainingDiverged(FloatingPointError):
    """The loss or a gradient became NaN or infinite."""


@dataclass(frozen=True)
class TrainConfig:
    """What a run trains and how; ``epochs`` is the total, counting epochs before a resume."""

    epochs: int = 10
    batch_size: int = 128
    latent_dim: int = 20
    hidden: tuple = (400,)
    lr: float = 1e-3
    samples: int = 1
    estimator: str = "closed-form"
    binarize: bool = False
    seed: int = 0
    data_dir: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if self.data_dir is not None:  # absolute, so that a resume from another directory finds it
            object.__setattr__(self, "data_dir", str(Path(self.data_dir).resolve()))
        for name in ("epochs", "batch_size", "latent_dim", "samples"):
            if not is_positive_int(getattr(self, name)):
                raise ValueError(f"TrainConfig: {name} must be an int >= 1, got {getattr(self, name)!r}")
        if not self.hidden or not all(is_positive_int(width) for width in self.hidden):
            raise ValueError(f"TrainConfig: hidden must be one or more ints >= 1, got {self.hidden!r}")
        if not (isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0):
            raise ValueError(f"TrainConfig: seed must be an int >= 0, got {self.seed!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"TrainConfig: lr must be a finite number > 0, got {self.lr!r}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"TrainConfig: estimator must be one of {ESTIMATORS}, got {self.estimator!r}")

    def to_json(self) -> dict:
        return {**asdict(self), "hidden": list(self.hidden)}


def generator(seed: int, stream: str) -> np.random.Generator:
    """The run's independent generator for ``stream``, one of ``STREAMS``, from its seed."""
    return np.random.default_rng([seed, STREAMS.index(stream)])


def bernoulli_sample(intensities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Binary digits x ~ Bernoulli(intensity), pixel by pixel, of the same dtype."""
    return (rng.random(intensities.shape, dtype=intensities.dtype) < intensities).astype(intensities.dtype)


def held_out_targets(data: MnistSplit, config: TrainConfig) -> np.ndarray:
    """The held-out digits the run is evaluated on: intensities, or one fixed binarization of them."""
    if config.binarize:
        return bernoulli_sample(data.test_images, generator(config.seed, "held-out"))
    return data.test_images


# --------------------------------------------------------------------------------------- run state
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
    return _read_checkpoint(path, _restore)


def read_checkpoint_config(path) -> TrainConfig:
    """The settings of the run saved at ``path`` (only the checkpoint's ``meta`` is read)."""
    return _read_checkpoint(path, lambda archive, meta: TrainConfig(**meta["config"]))


def _read_checkpoint(path, read):
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


def _restore(archive, meta: dict) -> Checkpoint:
    config = TrainConfig(**meta["config"])
    model = VAE(**meta["model"], rng=0)
    model.load_state_dict(_with_prefix(archive, "model/"))
    optimizer = Adam(model.parameters(), lr=config.lr)
    optimizer.load_state_dict(_with_prefix(archive, "optimizer/"))
    bit_generator = getattr(np.random, meta["rng"]["bit_generator"])()
    bit_generator.state = meta["rng"]
    state = RunState(permutation=archive["permutation"] if "permutation" in archive.files else None,
                     data_sha256=meta.get("data_sha256"),  # absent from checkpoints of earlier versions
                     **{f.name: meta[f.name] for f in fields(RunState) if f.name not in ("permutation", "data_sha256")})
    run = Checkpoint(config, model, optimizer, np.random.Generator(bit_generator), state)
    _check_consistency(run)
    return run


HISTORY_KEYS = ("epoch", "step", "train_neg_elbo", "test_neg_elbo", "epoch_seconds", "steps_per_second")


def _check_consistency(run: Checkpoint) -> None:
    """Raise ``CheckpointError`` unless the checkpoint's parts agree with each other.

    The optimizer's hyper-parameters are the run's (its lr, Adam's defaults otherwise) and its
    step counts are the run's step; parameters and moments are finite (v >= 0); the epoch, step
    and position agree with the history, whose entries are well-formed; the permutation is one.
    """
    config, state, optimizer = run.config, run.state, run.optimizer
    problems = []
    expected = {"lr": float(config.lr), "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    for key, value in expected.items():
        if getattr(optimizer, key) != value:
            problems.append(f"the optimizer's {key} is {getattr(optimizer, key)!r}, the run's is {value!r}")
    for name, parameter in run.model.named_parameters():
        if not np.isfinite(parameter.data).all():
            problems.append(f"parameter {name} has non-finite values")
    for buffer, arrays in optimizer.state.items():
        for i, array in enumerate(arrays):
            if not np.isfinite(array).all() or (buffer == "v" and (array < 0).any()):
                problems.append(f"the optimizer's {buffer}.{i} has non-finite{' or negative' if buffer == 'v' else ''} values")
    history = state.history
    if not (isinstance(history, list) and all(isinstance(m, dict) for m in history)):
        problems.append("the metrics history is not a list of records")
        history = []
    for i, metrics in enumerate(history):
        if set(metrics) != set(HISTORY_KEYS) or metrics["epoch"] != i + 1 or not all(
                isinstance(metrics[k], (int, float)) and not isinstance(metrics[k], bool)
                and math.isfinite(metrics[k]) for k in HISTORY_KEYS):
            problems.append(f"the metrics of epoch {i + 1} are malformed: {metrics!r}")
            break
        if metrics["epoch_seconds"] < 0 or metrics["steps_per_second"] < 0 or (
                metrics["step"] <= (history[i - 1]["step"] if i else 0)):
            problems.append(f"the metrics of epoch {i + 1} are out of range: {metrics!r}")
            break
    integers = all(isinstance(getattr(state, k), int) and not isinstance(getattr(state, k), bool)
                   for k in ("epoch", "step", "position"))
    if not integers:
        problems.append(f"epoch, step and position must be integers, got {state.epoch!r}, {state.step!r}, "
                        f"{state.position!r}")
    elif not problems:
        previous = history[-1]["step"] if history else 0
        if state.epoch != len(history):
            problems.append(f"epoch {state.epoch} but {len(history)} epochs of metrics")
        if state.position < 0 or state.step != previous + state.position:
            problems.append(f"step {state.step} and position {state.position} disagree with the "
                            f"{previous} steps of the completed epochs")
        if (optimizer.steps != state.step).any():
            problems.append(f"the optimizer counts {sorted(set(optimizer.steps.tolist()))} steps, the run {state.step}")
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
    finite = [isinstance(value, (int, float)) and math.isfinite(value) for value in (state.loss_sum, state.seconds)]
    if not all(finite) or state.seconds < 0:
        problems.append(f"loss_sum {state.loss_sum!r} or seconds {state.seconds!r} is not a finite number")
    if problems:
        raise CheckpointError("is inconsistent: " + "; ".join(problems))


def data_checksum(data: MnistSplit) -> str:
    """SHA-256 of the training and held-out digits and labels, as stored in float32 and uint8."""
    digest = hashlib.sha256()
    for array in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _with_prefix(archive, prefix: str) -> dict:
    return {name[len(prefix):]: archive[name] for name in archive.files if name.startswith(prefix)}


# --------------------------------------------------------------------------------------- evaluation
def held_out_negative_elbo(model: VAE, targets: np.ndarray, config: TrainConfig) -> float:
    """The mean negative ELBO per held-out digit in nats, under ``no_grad``, in batches.

    It uses the run's own estimator and sample count, with a freshly seeded "evaluation" generator.
    """
    rng = generator(config.seed, "evaluation")
    model.eval()
    total = 0.0
    with no_grad():
        for start in range(0, len(targets), EVALUATION_BATCH):
            batch = targets[start:start + EVALUATION_BATCH]
            losses = model.negative_elbo(batch, rng, config.samples, config.estimator, reduction="none")
            total += float(losses.data.sum(dtype=np.float64))
    model.train()
    return total / len(targets)


def write_figures(out: Path, model: VAE, targets: np.ndarray, history: list, seed: int) -> None:
    """reconstructions.png (held-out digits above their reconstructions), samples.png (64 draws
    from the prior), loss.png (both losses per epoch) and, for 2 latent dimensions, manifold.png."""
    originals = targets[:16]
    columns = 8 if len(originals) % 8 == 0 else len(originals)
    write_png(out / FIGURES[0], reconstruction_grid(originals, model.reconstruct(originals), columns))
    write_png(out / FIGURES[1], digit_grid(model.sample(64, generator(seed, "figures"))))
    epochs = [m["epoch"] for m in history]
    write_png(out / FIGURES[2], loss_plot({"train": (epochs, [m["train_neg_elbo"] for m in history]),
                                           "test": (epochs, [m["test_neg_elbo"] for m in history])}))
    if model.latent_dim == 2:
        with no_grad():
            write_png(out / MANIFOLD, manifold_grid(lambda z: model.decode(z).sigmoid().data))


def figure_names(latent_dim: int) -> tuple:
    """The figures a run with ``latent_dim`` latent dimensions writes."""
    return FIGURES + ((MANIFOLD,) if latent_dim == 2 else ())


def figure_problems(out: Path, latent_dim: int) -> dict:
    """{name: why it is not a complete PNG} for the run's figures in ``out`` that are missing or broken."""
    return {name: problem for name in figure_names(latent_dim) if (problem := png_problem(out / name))}


# --------------------------------------------------------------------------------------- training
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _DeferredInterrupt:
    """Within the block, Ctrl-C (SIGINT) and SIGTERM (``kill``, schedulers, containers) only set
    ``requested`` and ``signal``: the loop stops at its next consistent point. Signal handlers
    belong to the main thread; elsewhere this does nothing."""

    def __enter__(self):
        self.requested, self.signal, self.previous = False, None, {}
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self.previous[number] = signal.signal(number, self._request)
        return self

    def _request(self, signum, frame):
        self.requested = True
        self.signal = self.signal or signal.Signals(signum).name

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        return False


@dataclass
class TrainResult:
    """How a run ended: "completed" or "interrupted" (a checkpoint was saved), and where it is."""

    status: str
    out: Path
    epoch: int
    step: int
    history: list
    signal: str | None = None   # "SIGINT" or "SIGTERM" for a run stopped by a signal


def train(config: TrainConfig, out, resume: bool = False, data: MnistSplit | None = None, stream=None,
          after_step=None) -> TrainResult:
    """Train (or, with ``resume``, continue) the run in directory ``out`` up to ``config.epochs``.

    ``data`` defaults to ``load_mnist(config.data_dir)``. Progress goes to ``stream`` (stdout).
    ``after_step(step)``, if given, is called after every completed step. Ctrl-C, or a
    KeyboardInterrupt raised by ``after_step``, stops the run at the end of the last completed
    step and saves a checkpoint from which ``resume`` continues exactly as if never stopped.
    SIGTERM does the same (``TrainResult.signal`` says which signal stopped the run).
    A non-finite loss or gradient raises ``TrainingDiverged`` and leaves the last checkpoint as it is.
    Resuming a run that has already trained ``config.epochs`` epochs only says so, after writing
    again any of its figures that is missing or broken.

    The run holds ``out`` (``RunLock``): another live process in it raises ``RunLockedError``.
    A resume may read the data from another ``config.data_dir`` if it has the run's SHA-256;
    the checkpoint is checked for consistency first (``CheckpointError``). ``out`` being an
    existing file raises ``FileExistsError``.
    """
    out = Path(out)
    checkpoint_path = out / CHECKPOINT
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"train: {out} is an existing file, not a directory; --out names the run's "
                              f"folder: choose a folder path")
    if not resume:
        if out.is_dir():
            with RunLock(out):  # a live holder is named first; a finished or stopped run is refused next
                _refuse_existing_run(out)
        data = data if data is not None else load_mnist(config.data_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise type(err)(err.errno, f"train: cannot create the run folder {out} ({err.strerror})") from None
    elif not out.is_dir():
        load_checkpoint(checkpoint_path)  # reports the missing checkpoint
    with RunLock(out), _DeferredInterrupt() as interrupt:
        remove_stale_temporaries(out, (CHECKPOINT, METRICS, *FIGURES, MANIFOLD))
        return _train_in(config, out, resume, data, Progress(stream), after_step, interrupt)


def _train_in(config, out: Path, resume: bool, data, progress: Progress, after_step, interrupt) -> TrainResult:
    """``train`` in the run folder ``out``, which this process holds."""
    checkpoint_path = out / CHECKPOINT
    if resume:
        run = load_checkpoint(checkpoint_path)
        _check_same_run(run.config, config, checkpoint_path)
        model, optimizer, rng, state = run.model, run.optimizer, run.rng, run.state
        if state.epoch > config.epochs:
            raise CheckpointError(f"train: {checkpoint_path} has trained {state.epoch} epochs already, "
                                  f"more than the {config.epochs} asked for")
        complete = state.epoch == config.epochs
        broken = figure_problems(out, model.latent_dim) if complete else {}
        if complete and not broken:
            progress.line(f"{out} is already complete: {state.epoch} of {config.epochs} epochs trained; "
                          f"raise --epochs to train further")
            return TrainResult("completed", out, state.epoch, state.step, state.history)
        data = data if data is not None else load_mnist(config.data_dir)
        _check_same_data(data, state, run.config, config, checkpoint_path)
        if state.permutation is not None and len(state.permutation) != len(data.train_images):
            raise CheckpointError(f"train: {checkpoint_path} was trained on {len(state.permutation)} digits, "
                                  f"the data has {len(data.train_images)}")
        if complete:
            write_figures(out, model, held_out_targets(data, config), state.history, config.seed)
            progress.line(f"{out} is already complete ({state.epoch} of {config.epochs} epochs); rewrote its "
                          f"figures: " + "; ".join(f"{name} {why}" for name, why in broken.items()))
            return TrainResult("completed", out, state.epoch, state.step, state.history)
    else:
        _refuse_existing_run(out)  # one may have been written meanwhile, by a run that held the folder before
        rng = generator(config.seed, "training")
        model = VAE(data.train_images.shape[1], config.hidden, config.latent_dim, rng=rng)
        optimizer = Adam(model.parameters(), lr=config.lr)
        state = RunState(data_sha256=data_checksum(data))
    targets = held_out_targets(data, config)
    progress.line(f"{'resuming' if resume else 'training'} {out} at epoch {state.epoch + 1} of {config.epochs}: "
                  f"{len(data.train_images)} training and {len(targets)} held-out digits, {data.source}")
    if kernels_need_compiling():
        progress.line(COMPILE_NOTE)
    try:
        while state.epoch < config.epochs:
            if interrupt.requested:
                raise KeyboardInterrupt
            _train_epoch(config, data.train_images, model, optimizer, rng, state, progress, interrupt, after_step)
            _finish_epoch(config, out, model, optimizer, rng, state, targets, progress)
            if interrupt.requested and state.epoch < config.epochs:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        save_checkpoint(checkpoint_path, config, model, optimizer, rng, state)
        return TrainResult("interrupted", out, state.epoch, state.step, state.history, interrupt.signal)
    except TrainingDiverged as err:
        raise TrainingDiverged(f"{err}; training stopped, {_last_saved(checkpoint_path)}") from None
    finally:
        progress.end()
    return TrainResult("completed", out, state.epoch, state.step, state.history)


def _refuse_existing_run(out: Path) -> None:
    if (out / CHECKPOINT).exists():
        raise CheckpointError(f"train: {out} already holds {CHECKPOINT}; continue it with --resume, "
                              f"or choose another --out")


def _check_same_data(data: MnistSplit, state: RunState, saved: TrainConfig, asked: TrainConfig, path: Path) -> None:
    """The run continues on the digits it started on: the same checksum, wherever they are now."""
    found = data_checksum(data)
    if state.data_sha256 is None:  # a checkpoint of an earlier version: the folder must be the same
        if saved.data_dir != asked.data_dir:
            raise CheckpointError(f"train: {path} does not record its data's checksum, so it can only be resumed "
                                  f"on its own data directory {saved.data_dir or '(the embedded digits)'}")
        state.data_sha256 = found
    elif found != state.data_sha256:
        where = asked.data_dir or "the embedded digits"
        raise CheckpointError(f"train: the data in {where} is not the data {path} was trained on (SHA-256 "
                              f"{found[:12]}..., the run's {state.data_sha256[:12]}...); resume with the "
                              f"run's data: --data-dir DIR")


def _check_same_run(saved: TrainConfig, asked: TrainConfig, path: Path) -> None:
    differences = [f"{name}={getattr(asked, name)!r} (the checkpoint has {getattr(saved, name)!r})"
                   for name in saved.to_json()
                   if name not in ("epochs", "data_dir") and getattr(saved, name) != getattr(asked, name)]
    if differences:
        raise CheckpointError(f"train: resuming {path} with different settings: {', '.join(differences)}")


def _train_epoch(config, images, model, optimizer, rng, state: RunState, progress: Progress, interrupt,
                 after_step) -> None:
    """The rest of the current epoch, from ``state.position`` on, updating ``state`` after every step."""
    if state.permutation is None:
        state.permutation = rng.permutation(len(images))
    batches = math.ceil(len(images) / config.batch_size)
    parameters = list(model.named_parameters())
    while state.position < batches:
        started = time.perf_counter()
        indices = state.permutation[state.position * config.batch_size:(state.position + 1) * config.batch_size]
        x = images[indices]
        if config.binarize:
            x = bernoulli_sample(x, rng)
        loss = _step(model, optimizer, parameters, x, rng, config, state)
        state.seconds += time.perf_counter() - started
        state.loss_sum += loss * len(indices)
        state.position += 1
        state.step += 1
        progress.update(lambda: f"epoch {state.epoch + 1}/{config.epochs} {_bar(state.position, batches)} "
                                f"loss {loss:.2f}  {state.position / max(state.seconds, 1e-9):.1f} steps/s")
        if after_step is not None:
            after_step(state.step)
        if interrupt.requested:
            raise KeyboardInterrupt


def _step(model, optimizer, parameters, x, rng, config, state: RunState) -> float:
    """One optimizer step on batch ``x``; its loss, after checking the loss and gradients are finite."""
    optimizer.zero_grad()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # non-finite values are reported below
        loss = model.negative_elbo(Tensor(x), rng, config.samples, config.estimator)
        value = float(loss.data)
        if not math.isfinite(value):
            raise TrainingDiverged(_divergence(f"the loss (negative ELBO) is {value}", state))
        loss.backward()
    for name, parameter in parameters:
        if parameter.grad is not None and not np.isfinite(parameter.grad).all():
            raise TrainingDiverged(_divergence(f"the gradient of {name} has non-finite values (loss {value:.4g})",
                                               state))
    with np.errstate(over="ignore", invalid="ignore"):  # a step too large overflows; the next loss reports it
        optimizer.step()
    return value


def _divergence(what: str, state: RunState) -> str:
    """Where a non-finite ``what`` appeared: in the step after ``state``."""
    return f"train: {what} at step {state.step + 1} (epoch {state.epoch + 1}, batch {state.position + 1})"


def _last_saved(checkpoint_path: Path) -> str:
    """What the run's checkpoint holds, for a message about a run that stopped."""
    if not checkpoint_path.exists():
        return f"no {CHECKPOINT} was written"
    step = _read_checkpoint(checkpoint_path, lambda archive, meta: meta["step"])
    return f"{checkpoint_path.name} keeps the last saved state (step {step})"


def _finish_epoch(config, out: Path, model, optimizer, rng, state: RunState, targets, progress: Progress) -> None:
    """Evaluate, record the epoch's metrics, and write the checkpoint, metrics.jsonl and figures."""
    steps = state.position
    metrics = {"epoch": state.epoch + 1, "step": state.step,
               "train_neg_elbo": state.loss_sum / len(state.permutation),
               "test_neg_elbo": held_out_negative_elbo(model, targets, config),
               "epoch_seconds": state.seconds, "steps_per_second": steps / max(state.seconds, 1e-9)}
    state.history.append(metrics)
    state.epoch, state.position, state.permutation, state.loss_sum, state.seconds = state.epoch + 1, 0, None, 0.0, 0.0
    save_checkpoint(out / CHECKPOINT, config, model, optimizer, rng, state)
    with atomic_write(out / METRICS) as file:
        file.write("".join(json.dumps(m) + "\n" for m in state.history).encode())
    write_figures(out, model, targets, state.history, config.seed)
    progress.line(f"epoch {metrics['epoch']}/{config.epochs}  train {metrics['train_neg_elbo']:.3f}  "
                  f"held-out {metrics['test_neg_elbo']:.3f} nats  {metrics['epoch_seconds']:.2f} s  "
                  f"{metrics['steps_per_second']:.1f} steps/s")


# --------------------------------------------------------------------------------------- checkpoint use
def evaluate_checkpoint(path, iw_samples: int = 5000, data_dir=None, seed: int = 0, stream=None) -> dict:
    """Held-out negative ELBO, importance-weighted −log p(x) with ``iw_samples`` samples, and their gap.

    The held-out digits are those of the run (its data directory unless ``data_dir`` is given, its
    binarization); the negative ELBO uses the run's evaluation generator, as during training, and
    the importance sampling a generator seeded with ``seed``. Digits go through the model a few at
    a time and the samples in chunks, so memory stays bounded; progress goes to ``stream``.
    A checkpoint that is unreadable or inconsistent (non-finite weights, ...) raises ``CheckpointError``.
    """
    run = load_checkpoint(path)
    data = load_mnist(data_dir if data_dir is not None else run.config.data_dir)
    targets = held_out_targets(data, run.config)
    progress = Progress(stream)
    if kernels_need_compiling():
        progress.line(COMPILE_NOTE)
    negative_elbo = held_out_negative_elbo(run.model, targets, run.config)
    rng = np.random.default_rng(seed)
    chunk = min(iw_samples, IW_CHUNK)
    digits_per_call = max(1, IW_SAMPLES_PER_CALL // chunk)
    log_likelihoods = []
    try:
        for start in range(0, len(targets), digits_per_call):
            batch = targets[start:start + digits_per_call]
            log_likelihoods.append(run.model.importance_weighted_log_likelihood(batch, rng, k=iw_samples,
                                                                                chunk=chunk))
            progress.update(lambda: f"importance sampling {_bar(start + len(batch), len(targets))} digits, "
                                    f"k={iw_samples}")
    finally:
        progress.end()
    negative_log_likelihood = -float(np.concatenate(log_likelihoods).mean())
    return {"checkpoint": str(path), "epoch": run.state.epoch, "step": run.state.step, "held_out_digits": len(targets),
            "negative_elbo": negative_elbo, "iw_samples": iw_samples,
            "iw_negative_log_likelihood": negative_log_likelihood, "gap": negative_elbo - negative_log_likelihood}


def sample_checkpoint(path, n: int = 64, out="samples.png", seed: int = 0) -> Path:
    """Write a grid of ``n`` digits decoded from z ~ N(0, I) by the model at ``path`` (atomically).

    ``out`` being the checkpoint itself raises ``ValueError``.
    """
    refuse_overwriting_input(out, [path], "sample")
    model = load_checkpoint(path).model
    return write_png(out, digit_grid(model.sample(n, np.random.default_rng(seed)), columns=math.ceil(math.sqrt(n))))
