"""The benchmarks' two configurations: ``Config``, what one contender builds, and ``Options``, what a run does."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

SECTIONS = ("step", "profile", "kernels", "scaling", "evaluation", "train", "memory", "startup")
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Config:
    """The model (pytorch/examples' VAE: input_dim-hidden-latent), the batch and the draws of z per digit.

    In the training step, ``samples`` is S (draws per digit, the reconstruction term averaged over
    them); in the evaluation, ``batch`` is the number of held-out digits and ``samples`` is k, the
    importance samples per digit. ``threads`` is every thread pool's size (PyTorch's is set from it).
    """

    batch: int = 128
    hidden: int = 400
    latent: int = 20
    input_dim: int = 784
    samples: int = 1
    seed: int = 0
    threads: int = 2

    def replace(self, **changes) -> Config:
        return dataclasses.replace(self, **changes)

    def __str__(self) -> str:
        return f"{self.input_dim}-{self.hidden}-{self.latent}, batch {self.batch}, S = {self.samples}"


@dataclass
class Options:
    """What ``python -m benchmarks.run`` does; the command line fills it in (``run.options``).

    ``turn_s``: timed seconds of a contender's turn; ``tight_s``: seconds of each tight loop of the
    fairness check; ``pause_s``: the pause before every turn, in which the last process's BLAS and
    OpenMP threads stop spinning; ``warm_s``: the untimed seconds that start every turn.
    """

    sections: list[str] = field(default_factory=lambda: list(SECTIONS))
    contenders: list[str] = field(default_factory=list)
    quick: bool = False
    rounds: int = 10
    model: Config = Config()
    hiddens: list[int] = field(default_factory=list)
    batches: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
    eval_digits: int = 64
    eval_k: int = 5000
    kernel_calls: int = 1000
    train_rounds: int = 3
    train_epochs: int = 3
    train_batches: tuple[int, ...] = (128, 32)
    memory_examples: int = 60_000
    startup_rounds: int = 3
    turn_s: float = 0.3
    tight_s: float = 1.5
    pause_s: float = 0.2
    warm_s: float = 0.1
    warmup_steps: int = 20
    json: Path | None = None

    @classmethod
    def quick_run(cls, **changes) -> Options:
        """Fewer rounds, batch sizes, digits and examples, shorter turns."""
        return cls(**{**dict(quick=True, rounds=4, batches=(32, 128, 512), eval_digits=16, kernel_calls=100,
                             train_rounds=1, memory_examples=10_000, startup_rounds=1, turn_s=0.2, tight_s=0.6),
                      **changes})
