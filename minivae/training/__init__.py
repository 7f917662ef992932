"""Training a VAE on MNIST, one concern per module: the run's settings and random streams (``config``),
the checkpoint format (``checkpoint``), the loop (``loop``), stopping on a signal (``signals``),
progress lines (``progress``), one run per folder (``runlock``), evaluation and sampling of a
checkpoint (``evaluation``), the run's figures (``run_figures``) and the PyTorch export (``export``,
which imports torch and so is not loaded here). The names a user needs are re-exported here.
"""
from .checkpoint import (CHECKPOINT_FORMAT, Checkpoint, CheckpointError, RunState, data_checksum, load_checkpoint,
                         read_checkpoint_config, save_checkpoint)
from .config import CHECKPOINT, FIGURES, MANIFOLD, METRICS, STREAMS, TrainConfig, bernoulli_sample, generator, \
    held_out_targets
from .evaluation import (EVALUATION_BATCH, IW_CHUNK, IW_SAMPLES_PER_CALL, evaluate_checkpoint, held_out_negative_elbo,
                         sample_checkpoint)
from .loop import TrainingDiverged, TrainResult, train
from .progress import Progress
from .run_figures import figure_names, figure_problems, write_figures

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint", "CheckpointError", "RunState", "data_checksum", "load_checkpoint",
           "read_checkpoint_config", "save_checkpoint", "CHECKPOINT", "FIGURES", "MANIFOLD", "METRICS", "STREAMS",
           "TrainConfig", "bernoulli_sample", "generator", "held_out_targets", "EVALUATION_BATCH", "IW_CHUNK",
           "IW_SAMPLES_PER_CALL", "evaluate_checkpoint", "held_out_negative_elbo", "sample_checkpoint",
           "TrainingDiverged", "TrainResult", "train", "Progress", "figure_names", "figure_problems", "write_figures"]
