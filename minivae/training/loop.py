"""The training loop: epochs of minibatch steps, each epoch ending in an evaluation, a checkpoint,
metrics and figures; a stopped run resumes exactly where it stopped.

One run writes into its output directory:

- ``metrics.jsonl``: one JSON object per epoch (``epoch``, ``step``, ``train_neg_elbo``,
  ``test_neg_elbo``, ``epoch_seconds``, ``steps_per_second``, and ``data`` and ``likelihood``, which
  say what the losses, in nats per digit, were measured on; with KL warm-up also ``kl_weight``, the
  weight of the epoch's last step: ``train_neg_elbo`` is then the objective the steps minimized, the
  KL term weighted, while ``test_neg_elbo`` is always the true negative bound, weight 1);
- ``checkpoint.npz``: the model, the optimizer, the training generator's state, the position in the
  current epoch and the metrics so far, replaced atomically after every epoch and on Ctrl-C;
- ``reconstructions.png``, ``samples.png``, ``loss.png``, and ``manifold.png`` for a 2-D latent space;
- ``.lock`` while the run is going: one process at a time writes a run folder (``minivae.training.runlock``).

Every file is written under a temporary name and renamed (``minivae.files``), so a crash, a kill
or a full disk leaves each file complete or absent, never cut short. The checkpoint is written
first, then the figures, then ``metrics.jsonl``: everything else is recoverable from the
checkpoint, and a resume (of a complete run too) rewrites whichever is missing, broken or behind
it. A new run refuses a folder holding any file of the names it writes: it never replaces a file
it did not write.

An epoch visits every training digit once in a fresh random order, in batches of ``batch_size``;
the last batch holds the remainder, so no digit is dropped. ``train_neg_elbo`` is the mean over
the epoch's digits of the loss each had when its batch was trained.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..capture import NonFiniteError, capture_step
from ..data import MnistSplit, load_mnist
from ..engine import Tensor
from ..files import atomic_write, make_directory, remove_stale_temporaries
from ..vae import VAE
from .checkpoint import (CheckpointError, RunState, data_checksum, load_checkpoint, read_checkpoint, run_optimizer,
                         save_checkpoint)
from .config import (CHECKPOINT, FIGURES, MANIFOLD, METRICS, TrainConfig, bernoulli_sample, generator, held_out_targets,
                     kl_weight, likelihood)
from .evaluation import held_out_negative_elbo
from .progress import COMPILE_NOTE, Progress, bar as _bar, kernels_need_compiling
from .run_figures import figure_names, figure_problems, write_figures
from .runlock import RunLock
from .signals import DeferredInterrupt


class TrainingDiverged(FloatingPointError):
    """The loss or a gradient became NaN or infinite."""


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
          after_step=None, eager: bool = False) -> TrainResult:
    """Train (or, with ``resume``, continue) the run in directory ``out`` up to ``config.epochs``.

    ``data`` defaults to ``load_mnist(config.data_dir)``. Progress goes to ``stream`` (stdout).
    ``after_step(step)``, if given, is called after every completed step. Ctrl-C, or a
    KeyboardInterrupt raised by ``after_step``, stops the run at the end of the last completed
    step and saves a checkpoint from which ``resume`` continues exactly as if never stopped.
    SIGTERM does the same (``TrainResult.signal`` says which signal stopped the run).
    Each step runs as a captured step (``minivae.capture``: traced once per batch shape, then
    replayed on arrays, with one Adam pass over all parameters); ``eager=True`` walks the engine's
    graph at every step instead. Both give the same numbers, bit for bit.
    A non-finite loss or gradient raises ``TrainingDiverged`` and leaves the last checkpoint as it is.
    A resume first rewrites, from the checkpoint, metrics.jsonl and the figures if any is missing,
    broken or behind the checkpoint (a kill after the checkpoint was written); resuming a run that
    has already trained ``config.epochs`` epochs then only says so.

    The run holds ``out`` (``RunLock``): another live process in it raises ``RunLockedError``.
    A resume may read the data from another ``config.data_dir`` if it has the run's SHA-256;
    the checkpoint is checked for consistency first (``CheckpointError``). ``out`` being an
    existing file, or a new run's ``out`` holding a file of a name the run writes, raises
    ``FileExistsError``.
    """
    out = Path(out)
    checkpoint_path = out / CHECKPOINT
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"train: {out} is an existing file, not a directory; --out names the run's "
                              f"folder: choose a folder path")
    if not resume:
        if out.is_dir():
            with RunLock(out):  # a live holder is named first; a finished or stopped run is refused next
                _refuse_existing_run(out, config)
        data = data if data is not None else load_mnist(config.data_dir)
        make_directory(out, "the run folder")
    elif not out.is_dir():
        load_checkpoint(checkpoint_path)  # reports the missing checkpoint
    with RunLock(out), DeferredInterrupt() as interrupt:
        remove_stale_temporaries(out, (CHECKPOINT, METRICS, *FIGURES, MANIFOLD))
        return _train_in(config, out, resume, data, Progress(stream), after_step, interrupt, eager)


def _train_in(config, out: Path, resume: bool, data, progress: Progress, after_step, interrupt,
              eager: bool = False) -> TrainResult:
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
        behind = _outputs_behind(out, state.history, config)
        if not (complete and not behind):
            data = data if data is not None else load_mnist(config.data_dir)
            _check_same_data(data, state, run.config, config, checkpoint_path)
            if state.permutation is not None and len(state.permutation) != len(data.train_images):
                raise CheckpointError(f"train: {checkpoint_path} was trained on {len(state.permutation)} digits, "
                                      f"the data has {len(data.train_images)}")
        if behind:
            _write_outputs(out, model, held_out_targets(data, config), state.history, config, data.source)
            what = f"{METRICS} and figures" if METRICS in behind else "figures"
            progress.line(f"{out}: rewrote its {what}: " + "; ".join(f"{name} {why}" for name, why in behind.items()))
        if complete:
            progress.line(f"{out} is already complete: {state.epoch} of {config.epochs} epochs trained; "
                          f"raise --epochs to train further")
            return TrainResult("completed", out, state.epoch, state.step, state.history)
    else:
        _refuse_existing_run(out, config)  # one may have been written meanwhile, by a run that held the folder
        rng = generator(config.seed, "training")
        model = VAE(data.train_images.shape[1], config.hidden, config.latent_dim, config.activation, rng=rng)
        optimizer = run_optimizer(model, config)
        state = RunState(data_sha256=data_checksum(data))
    targets = held_out_targets(data, config)
    progress.line(f"{'resuming' if resume else 'training'} {out} at epoch {state.epoch + 1} of {config.epochs}: "
                  f"{len(data.train_images)} training and {len(targets)} held-out digits, {data.source}")
    if kernels_need_compiling():
        progress.line(COMPILE_NOTE)
    step = _training_step(model, optimizer, config, eager, math.ceil(len(data.train_images) / config.batch_size))
    try:
        while state.epoch < config.epochs:
            if interrupt.requested:
                raise KeyboardInterrupt
            _train_epoch(config, data.train_images, step, rng, state, progress, interrupt, after_step)
            _finish_epoch(config, out, model, optimizer, rng, state, targets, progress, data.source)
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


def _refuse_existing_run(out: Path, config: TrainConfig) -> None:
    """Refuse a new run in ``out`` if it holds a run's checkpoint, or any file of a name the run writes:
    a run never replaces a file it did not write."""
    if (out / CHECKPOINT).exists():
        raise CheckpointError(f"train: {out} already holds {CHECKPOINT}; continue it with --resume, "
                              f"or choose another --out")
    theirs = [name for name in (METRICS, *figure_names(config.latent_dim, present_in=out))
              if (out / name).exists() or (out / name).is_symlink()]
    if theirs:
        raise FileExistsError(f"train: {out} already holds {', '.join(theirs)}, which the run would replace; "
                              f"move {'it' if len(theirs) == 1 else 'them'} away, or choose another --out")


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


def _training_step(model, optimizer, config, eager: bool, steps_per_epoch: int):
    """``step(x, rng, state) -> loss``: the captured step, or with ``eager`` the engine's walk at every step.

    Either raises ``TrainingDiverged`` for a non-finite loss or gradient, before any parameter changes.
    With KL warm-up, the weight of each step (``kl_weight``) is the captured step's scalar argument
    ``beta``: one program for the whole run, its weight an input, not a constant traced into it.
    """
    parameters = list(model.named_parameters())
    if eager:
        return lambda x, rng, state: _step(model, optimizer, parameters, x, rng, config, state,
                                           kl_weight(config, state.step, steps_per_epoch))
    if not config.kl_warmup:
        captured = capture_step(model, optimizer,
                                lambda x, rng: model.negative_elbo(x, rng, config.samples, config.estimator))
    else:
        captured = capture_step(model, optimizer, lambda x, rng, beta: model.negative_elbo(
            x, rng, config.samples, config.estimator, kl_weight=beta))

    def step(x, rng, state):
        scalars = {"beta": kl_weight(config, state.step, steps_per_epoch)} if config.kl_warmup else {}
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # reported as a divergence instead
            try:
                return captured(x, rng, **scalars)
            except NonFiniteError as err:
                what = str(err).replace("the loss is", "the loss (negative ELBO) is")
                raise TrainingDiverged(_divergence(what, state)) from None
    return step


def _train_epoch(config, images, step, rng, state: RunState, progress: Progress, interrupt, after_step) -> None:
    """The rest of the current epoch, from ``state.position`` on, updating ``state`` after every step."""
    if state.permutation is None:
        state.permutation = rng.permutation(len(images))
    batches = math.ceil(len(images) / config.batch_size)
    while state.position < batches:
        started = time.perf_counter()
        indices = state.permutation[state.position * config.batch_size:(state.position + 1) * config.batch_size]
        x = images[indices]
        if config.binarize:
            x = bernoulli_sample(x, rng)
        loss = step(x, rng, state)
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


def _step(model, optimizer, parameters, x, rng, config, state: RunState, beta: float = 1.0) -> float:
    """One optimizer step on batch ``x`` (KL weight ``beta``); its loss, after checking the loss and
    gradients are finite."""
    optimizer.zero_grad()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # non-finite values are reported below
        loss = model.negative_elbo(Tensor(x), rng, config.samples, config.estimator, kl_weight=beta)
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
    step = read_checkpoint(checkpoint_path, lambda archive, meta: meta["step"])
    return f"{checkpoint_path.name} keeps the last saved state (step {step})"


def _warmup(config, metrics: dict, steps_per_epoch: int) -> dict:
    """``{"kl_weight": β}`` of an epoch's last step with KL warm-up (from the schedule, so a resumed
    run writes the same), or nothing."""
    return {"kl_weight": kl_weight(config, metrics["step"] - 1, steps_per_epoch)} if config.kl_warmup else {}


def _finish_epoch(config, out: Path, model, optimizer, rng, state: RunState, targets, progress: Progress,
                  source: str) -> None:
    """Evaluate, record the epoch's metrics, and write the checkpoint, metrics.jsonl (each line also
    saying which data, ``source``, and which likelihood the nats refer to) and figures."""
    steps = state.position
    metrics = {"epoch": state.epoch + 1, "step": state.step,
               "train_neg_elbo": state.loss_sum / len(state.permutation),
               "test_neg_elbo": held_out_negative_elbo(model, targets, config),
               "epoch_seconds": state.seconds, "steps_per_second": steps / max(state.seconds, 1e-9)}
    state.history.append(metrics)
    state.epoch, state.position, state.permutation, state.loss_sum, state.seconds = state.epoch + 1, 0, None, 0.0, 0.0
    save_checkpoint(out / CHECKPOINT, config, model, optimizer, rng, state)
    _write_outputs(out, model, targets, state.history, config, source)
    progress.line(f"epoch {metrics['epoch']}/{config.epochs}  train {metrics['train_neg_elbo']:.3f}  "
                  f"held-out {metrics['test_neg_elbo']:.3f} nats  {metrics['epoch_seconds']:.2f} s  "
                  f"{metrics['steps_per_second']:.1f} steps/s")


def _write_outputs(out: Path, model, targets, history: list, config: TrainConfig, source: str) -> None:
    """Write the figures, then metrics.jsonl (each line also saying which data, ``source``, and which
    likelihood its nats refer to), all from what the checkpoint holds. metrics.jsonl comes last: when
    it matches the checkpoint, the figures written before it do too."""
    write_figures(out, model, targets, history, config.seed)
    with atomic_write(out / METRICS) as file:
        file.write("".join(json.dumps(record) + "\n" for record in _metrics_records(history, config, source)).encode())


def _metrics_records(history: list, config: TrainConfig, source: str | None) -> list:
    about = {"data": source, "likelihood": likelihood(config.binarize)}
    steps_per_epoch = history[0]["step"] if history else 1  # every epoch takes as many steps as the first
    return [{**metrics, **_warmup(config, metrics, steps_per_epoch), **about} for metrics in history]


def _outputs_behind(out: Path, history: list, config: TrainConfig) -> dict:
    """{name: why} for the files of the run in ``out`` that are missing, broken or behind the
    ``history`` of its checkpoint: metrics.jsonl alone when it is behind (then every figure, written
    before it, may be too: a kill between the checkpoint and metrics.jsonl), else each broken figure.
    Empty before the first epoch ends: nothing is written yet."""
    if not history:
        return {}
    problem = _metrics_problem(out / METRICS, history, config)
    if problem is not None:
        return {METRICS: problem}
    return figure_problems(out, config.latent_dim)


def _metrics_problem(path: Path, history: list, config: TrainConfig) -> str | None:
    """Why metrics.jsonl at ``path`` does not hold ``history`` (the lines' ``data`` aside: the data may
    have moved), or None."""
    try:
        lines = path.read_text().splitlines()
        records = [json.loads(line) for line in lines]
    except FileNotFoundError:
        return "was missing"
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return f"was unreadable ({err})"
    keys = (*history[0], "likelihood")

    def measured(record):
        return {key: record.get(key) for key in keys} if isinstance(record, dict) else record
    found, expected = [measured(r) for r in records], [measured(r) for r in _metrics_records(history, config, None)]
    if found == expected:
        return None
    if found == expected[:len(found)]:
        missing = range(len(found) + 1, len(expected) + 1)
        return f"lacked epoch{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))}"
    return "differed from the checkpoint's history"
