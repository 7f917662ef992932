"""The standard MNIST split (60,000 + 10,000) as a data directory, and the benchmarks that use it:
``benchmarks.elbo --data-dir`` and ``benchmarks.iwae`` (the IWAE paper's Table 1 ordering).

The full set lives at ../shared/data/mnist from the project's root (MINIVAE_STANDARD_MNIST may name
it elsewhere); the tests that need it skip where it is absent. The benchmarks' own logic runs here
on a small directory of the same layout."""
import gzip
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from benchmarks import elbo, iwae
from minivae.cli import main
from minivae.data import load_mnist

STANDARD = Path(os.environ.get("MINIVAE_STANDARD_MNIST", Path(__file__).resolve().parents[2] / "shared/data/mnist"))
needs_standard = pytest.mark.skipif(not (STANDARD / "train-images-idx3-ubyte.gz").is_file(),
                                    reason=f"the full MNIST set is not at {STANDARD}")
# The content checksums of the uncompressed training files (the .gz files are compressed again, so
# their MD5s are not the published ones), and the training label counts, as the set's README gives them.
TRAIN_SHA256 = {"train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"}
LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@needs_standard
def test_the_standard_split_loads_as_a_data_directory_and_is_the_canonical_content():
    for name, digest in TRAIN_SHA256.items():
        assert hashlib.sha256(gzip.decompress((STANDARD / name).read_bytes())).hexdigest() == digest, name
    data = load_mnist(STANDARD)
    assert data.train_images.shape == (60000, 784) and data.test_images.shape == (10000, 784)
    assert data.train_images.dtype == np.float32 and 0 <= data.train_images.min() < data.train_images.max() <= 1
    assert np.bincount(data.train_labels).tolist() == LABEL_COUNTS
    embedded = load_mnist()  # the package's embedded digits are the test set, split 9,000 + 1,000
    np.testing.assert_array_equal(data.test_images, np.concatenate([embedded.train_images, embedded.test_images]))


@needs_standard
def test_train_accepts_the_standard_split(tmp_path, capsys):
    assert main(["train", "--data-dir", str(STANDARD), "--epochs", "1", "--batch-size", "60000", "--hidden", "4",
                 "--latent-dim", "2", "--out", str(tmp_path / "run")]) == 0
    assert "60000 training and 10000 held-out digits" in capsys.readouterr().out


def test_the_elbo_benchmark_reads_a_data_directory(mnist_dir, tmp_path, capsys):  # noqa: F811
    assert elbo.main(["--data-dir", str(mnist_dir), "--epochs", "1", "--seeds", "0", "--no-torch",
                      "--json", str(tmp_path / "elbo.json")]) == 0
    result = json.loads((tmp_path / "elbo.json").read_text())
    assert result["data"].startswith("the train and t10k files of") and len(result["runs"]) == 1
    assert result["reference_nats"] == elbo.REFERENCE_NATS  # 300 training digits: not the standard split
    assert "300 training, 100 held-out digits" in capsys.readouterr().out


def test_the_iwae_benchmark_trains_and_evaluates_the_three_models(mnist_dir, tmp_path, capsys):  # noqa: F811
    torch_missing = __import__("importlib").util.find_spec("torch") is None
    assert iwae.main(["--data-dir", str(mnist_dir), "--train-digits", "200", "--test-digits", "3", "--k", "20",
                      "--json", str(tmp_path / "iwae.json")] + (["--no-torch"] if torch_missing else [])) == 0
    result = json.loads((tmp_path / "iwae.json").read_text())
    assert [row["model"] for row in result["rows"]] == ["VAE k=1", "VAE k=5", "IWAE k=5"]
    assert [row["published_full_schedule"] for row in result["rows"]] == [86.76, 86.47, 85.54]
    for row in result["rows"]:
        for framework in ("minivae", "pytorch") if not torch_missing else ("minivae",):
            measured = row[framework]
            assert 0 < measured["negative_log_likelihood"] <= measured["negative_elbo"] + 5
    out = capsys.readouterr().out
    assert "| IWAE k=5 |" in out and "the first 3 held-out ones" in out
