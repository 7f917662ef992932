"""MNIST for minivae: IDX files (``idx``), the canonical files and the splits (``mnist``), and their
verified download (``download``). Everything is re-exported here: ``from minivae.data import load_mnist``.
"""
from .download import (DEFAULT_URL, DOWNLOAD_TIMEOUT, URL_ENV_VAR, DownloadError, StalledTransfer, checksum_problem,
                       download_mnist)
from .idx import IMAGE_SHAPE, IMAGES_MAGIC, LABELS_MAGIC, DataError, read_idx, read_idx_pair, write_idx
from .mnist import (EMBEDDED_DIR, MNIST_FILES, TEST_IMAGES, TEST_LABELS, TEST_SET_HELD_OUT, TRAIN_IMAGES, TRAIN_LABELS,
                    MnistFile, MnistSplit, load_mnist, path_problem, save_mnist)

__all__ = ["DEFAULT_URL", "DOWNLOAD_TIMEOUT", "URL_ENV_VAR", "DownloadError", "StalledTransfer", "checksum_problem",
           "download_mnist", "IMAGE_SHAPE", "IMAGES_MAGIC", "LABELS_MAGIC", "DataError", "read_idx", "read_idx_pair",
           "write_idx", "EMBEDDED_DIR", "MNIST_FILES", "TEST_IMAGES", "TEST_LABELS", "TEST_SET_HELD_OUT",
           "TRAIN_IMAGES", "TRAIN_LABELS", "MnistFile", "MnistSplit", "load_mnist", "path_problem", "save_mnist"]
