"""MNIST data: IDX files and their errors, the embedded split, data directories, and downloads."""
import functools
import gzip
import hashlib
import http.server
import os
import re
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from minivae import data
from minivae.files import atomic_write
from minivae.data import (DataError, DownloadError, MnistFile, MnistSplit, TEST_IMAGES, TEST_LABELS,
                          download_mnist, load_mnist, read_idx, read_idx_pair, save_mnist, write_idx)

EMBEDDED = Path(data.__file__).parent / data.EMBEDDED_DIR


# --------------------------------------------------------------------------------------- IDX files
@given(array=hnp.arrays(np.uint8, st.one_of(hnp.array_shapes(min_dims=1, max_dims=1, min_side=0, max_side=20),
                                            hnp.array_shapes(min_dims=3, max_dims=3, min_side=0, max_side=6))),
       compress=st.booleans())
def test_write_idx_then_read_idx_gives_the_array_back(tmp_path_factory, array, compress):
    path = tmp_path_factory.mktemp("idx") / ("a.gz" if compress else "a")
    write_idx(path, array)
    back = read_idx(path, data.LABELS_MAGIC if array.ndim == 1 else data.IMAGES_MAGIC)
    assert back.dtype == np.uint8 and np.array_equal(back, array)


def test_read_idx_reads_the_header_as_big_endian(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(struct.pack(">II", 2049, 3) + bytes([7, 0, 9]))
    assert read_idx(path, data.LABELS_MAGIC).tolist() == [7, 0, 9]


def test_read_idx_rejects_a_wrong_magic_number(tmp_path):
    write_idx(tmp_path / "labels", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="magic number 2049, expected 2051"):
        read_idx(tmp_path / "labels", data.IMAGES_MAGIC)


@pytest.mark.parametrize("keep, message", [(5, "shorter than the 16-byte IDX header"), (16 + 2 * 9 - 1, "truncated")])
def test_read_idx_rejects_a_truncated_file(tmp_path, keep, message):
    write_idx(tmp_path / "images", np.ones((2, 3, 3), np.uint8))
    content = (tmp_path / "images").read_bytes()
    (tmp_path / "images").write_bytes(content[:keep])
    with pytest.raises(DataError, match=message):
        read_idx(tmp_path / "images", data.IMAGES_MAGIC)


def test_read_idx_rejects_trailing_bytes_and_broken_gzip(tmp_path):
    write_idx(tmp_path / "labels", np.ones(3, np.uint8))
    (tmp_path / "labels").write_bytes((tmp_path / "labels").read_bytes() + b"\0")
    with pytest.raises(DataError, match="longer than its header says"):
        read_idx(tmp_path / "labels", data.LABELS_MAGIC)
    (tmp_path / "broken.gz").write_bytes(gzip.compress((tmp_path / "labels").read_bytes())[:15])
    with pytest.raises(DataError, match="not a readable gzip file"):
        read_idx(tmp_path / "broken.gz", data.LABELS_MAGIC)
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "missing", data.LABELS_MAGIC)


def test_read_idx_pair_checks_counts_and_image_size(tmp_path):
    write_idx(tmp_path / "images", np.zeros((5, 28, 28), np.uint8))
    write_idx(tmp_path / "labels", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="holds 5 images but .* holds 4 labels"):
        read_idx_pair(tmp_path / "images", tmp_path / "labels")
    write_idx(tmp_path / "small", np.zeros((4, 10, 10), np.uint8))
    with pytest.raises(DataError, match="10x10 pixels, expected 28x28"):
        read_idx_pair(tmp_path / "small", tmp_path / "labels")


def test_read_idx_pair_scales_to_the_unit_interval(tmp_path):
    images = np.arange(2 * 28 * 28).reshape(2, 28, 28).astype(np.uint8)
    write_idx(tmp_path / "images", images)
    write_idx(tmp_path / "labels", np.array([3, 4], np.uint8))
    x, y = read_idx_pair(tmp_path / "images", tmp_path / "labels")
    assert x.shape == (2, 784) and x.dtype == np.float32 and y.dtype == np.uint8
    np.testing.assert_array_equal(x, images.reshape(2, 784) / np.float32(255))


# --------------------------------------------------------------------------------------- data sets
def test_the_embedded_set_is_the_canonical_test_set_split_9000_1000():
    for file in (TEST_IMAGES, TEST_LABELS):
        assert data.checksum_problem((EMBEDDED / file.name).read_bytes(), file) is None
    split = load_mnist()
    assert split.train_images.shape == (9000, 784) and split.test_images.shape == (1000, 784)
    assert split.train_labels.shape == (9000,) and split.test_labels.shape == (1000,)
    assert split.train_images.dtype == np.float32 and split.train_labels.dtype == np.uint8
    assert split.train_images.min() == 0.0 and split.train_images.max() == 1.0
    assert set(np.unique(split.test_labels)) == set(range(10))
    everything, _ = read_idx_pair(EMBEDDED / TEST_IMAGES.name, EMBEDDED / TEST_LABELS.name)
    np.testing.assert_array_equal(split.test_images, everything[9000:])


@pytest.fixture(scope="module")
def embedded():
    return load_mnist()


@pytest.mark.parametrize("compress", [True, False])
def test_a_directory_with_train_and_t10k_files_gives_that_split(tmp_path, embedded, compress):
    subset = MnistSplit(embedded.train_images[:30], embedded.train_labels[:30], embedded.test_images[:10],
                        embedded.test_labels[:10], "subset")
    loaded = load_mnist(save_mnist(subset, tmp_path, compress=compress))
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(subset, name))
    assert str(tmp_path) in loaded.source


def test_a_directory_with_only_t10k_files_holds_out_the_last_1000(tmp_path):
    for file in (TEST_IMAGES, TEST_LABELS):
        (tmp_path / file.name).write_bytes((EMBEDDED / file.name).read_bytes())
    split = load_mnist(tmp_path)
    assert len(split.train_images) == 9000 and len(split.test_images) == 1000


def test_missing_directories_and_files_are_named(tmp_path):
    with pytest.raises(DataError, match="nowhere does not exist"):
        load_mnist(tmp_path / "nowhere")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(DataError, match="a-file is not a directory"):
        load_mnist(tmp_path / "a-file")
    with pytest.raises(DataError, match="no t10k-images-idx3-ubyte.gz .*minivae download mnist"):
        load_mnist(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match="no train-labels-idx1-ubyte.gz"):
        load_mnist(tmp_path)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "file"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as file:
        file.write(b"half of the new")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["file"]
    with atomic_write(target) as file:
        file.write(b"new")
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["file"]


# --------------------------------------------------------------------------------------- downloads
TEST_FILES = (TEST_IMAGES, TEST_LABELS)


@pytest.fixture
def mirror(tmp_path):
    """A directory holding the canonical t10k files, and a corrupted file with its published checksums."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    for file in TEST_FILES:
        (folder / file.name).write_bytes((EMBEDDED / file.name).read_bytes())
    content = bytearray((EMBEDDED / TEST_LABELS.name).read_bytes())
    content[-10] ^= 0xFF
    (folder / "corrupt.gz").write_bytes(bytes(content))
    return folder


CORRUPT = MnistFile("corrupt.gz", TEST_LABELS.size, TEST_LABELS.md5)


@pytest.fixture
def http_mirror(mirror):
    """The mirror served over HTTP on 127.0.0.1 (an ephemeral port), shut down after the test."""
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=mirror))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_download_from_a_file_url_verifies_and_then_skips_valid_files(tmp_path, mirror):
    dest = tmp_path / "dest"
    lines = []
    assert download_mnist(dest, mirror.as_uri(), TEST_FILES, report=lines.append) == {
        f.name: "downloaded" for f in TEST_FILES}
    assert len(lines) == 2
    for file in TEST_FILES:
        assert hashlib.md5((dest / file.name).read_bytes()).hexdigest() == file.md5
    assert download_mnist(dest, "http://127.0.0.1:9/unused/", TEST_FILES, timeout=5) == {
        f.name: "already present" for f in TEST_FILES}
    assert len(load_mnist(dest).test_images) == 1000


def test_download_over_http_and_the_base_url_from_the_environment(tmp_path, http_mirror, monkeypatch):
    monkeypatch.setenv(data.URL_ENV_VAR, http_mirror)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / TEST_LABELS.name).write_bytes(b"an earlier, broken download")
    assert download_mnist(dest, files=TEST_FILES, timeout=10) == {f.name: "downloaded" for f in TEST_FILES}
    assert data.checksum_problem((dest / TEST_LABELS.name).read_bytes(), TEST_LABELS) is None
    assert sorted(os.listdir(dest)) == sorted(f.name for f in TEST_FILES)


@pytest.mark.parametrize("over_http", [True, False])
def test_a_checksum_mismatch_leaves_no_file(tmp_path, mirror, http_mirror, over_http):
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="MD5 .* expected ec29112dd5afa0611ce80d1b7f02629c; nothing was kept"):
        download_mnist(dest, http_mirror if over_http else mirror.as_uri(), [CORRUPT], timeout=10)
    assert os.listdir(dest) == []


def test_a_missing_file_on_the_server_is_reported(tmp_path, http_mirror):
    with pytest.raises(DownloadError, match="(?i)cannot fetch .*absent.gz .*not found"):
        download_mnist(tmp_path, http_mirror, [MnistFile("absent.gz", 1, "0" * 32)], timeout=10)


def test_an_unreachable_server_gives_the_offline_advice(tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError) as raised:
        download_mnist(tmp_path / "dest", f"http://127.0.0.1:{port}/", TEST_FILES, timeout=5)
    message = str(raised.value)
    assert "cannot fetch" in message and "--data-dir" in message and "\n" not in message
    assert os.listdir(tmp_path / "dest") == []


@pytest.mark.parametrize("url", ["notaurl", "ftp://127.0.0.1/mnist/", "/data/mnist"])
def test_a_mirror_url_that_is_not_http_https_or_file_is_refused_before_any_work(tmp_path, url):
    with pytest.raises(ValueError, match=f"download_mnist: the mirror URL '{url}' is not an http, https or file URL"):
        download_mnist(tmp_path / "dest", url, TEST_FILES)
    assert not (tmp_path / "dest").exists()


# --------------------------------------------------------------------------------------- slow and silent servers
@pytest.fixture
def raw_server():
    """A TCP server on 127.0.0.1 whose ``behaviour(connection)`` runs in a thread per connection."""
    servers = []

    def start(behaviour):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        stop = threading.Event()

        def serve():
            listener.settimeout(0.1)
            while not stop.is_set():
                try:
                    connection, _ = listener.accept()
                except OSError:
                    continue
                threading.Thread(target=behaviour, args=(connection, stop), daemon=True).start()
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        servers.append((listener, stop, thread))
        return f"http://127.0.0.1:{listener.getsockname()[1]}/"
    yield start
    for listener, stop, thread in servers:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_a_server_that_trickles_bytes_is_a_stalled_transfer(tmp_path, raw_server):
    def trickle(connection, stop):  # a valid header, then one byte every 0.3 s: no socket timeout ever fires
        with connection:
            connection.recv(4096)
            connection.sendall(f"HTTP/1.0 200 OK\r\nContent-Length: {TEST_LABELS.size}\r\n\r\n".encode())
            while not stop.wait(0.3):
                try:
                    connection.sendall(b"x")
                except OSError:
                    return
    url = raw_server(trickle)
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"t10k-labels-idx1-ubyte.gz stalled: \d+ bytes in the last 1 s"):
        download_mnist(tmp_path / "dest", url, [TEST_LABELS], timeout=1.0)
    assert time.monotonic() - started < 10
    assert os.listdir(tmp_path / "dest") == []


def test_a_server_that_never_answers_is_reported_within_the_timeout(tmp_path, raw_server):
    def silent(connection, stop):
        with connection:
            stop.wait(30)
    url = raw_server(silent)
    started = time.monotonic()
    with pytest.raises(DownloadError, match="cannot fetch .*timed out"):
        download_mnist(tmp_path / "dest", url, [TEST_LABELS], timeout=1.0)
    assert time.monotonic() - started < 5


def test_the_default_download_timeout_is_seconds_not_a_minute():
    assert data.DOWNLOAD_TIMEOUT <= 15


def test_an_empty_mirror_url_is_an_error_not_the_default_mirror(tmp_path):
    for url in ("", "  "):
        with pytest.raises(ValueError, match="download_mnist: the mirror URL is empty"):
            download_mnist(tmp_path / "dest", url, TEST_FILES)
    assert not (tmp_path / "dest").exists()


def test_download_progress_gives_bytes_and_rate(tmp_path, mirror):
    lines = []
    download_mnist(tmp_path / "dest", mirror.as_uri(), TEST_FILES, progress=lambda text: lines.append(text()))
    assert lines and re.fullmatch(r"t10k-images-idx3-ubyte.gz: [\d,]+ of 1,648,877 bytes, \d+\.\d\d MB/s", lines[0])
    assert lines[-1].startswith("t10k-labels-idx1-ubyte.gz: 4,542 of 4,542 bytes, ")


# --------------------------------------------------------------------------------------- headers
def test_an_idx_header_whose_sizes_overflow_int64_reports_the_exact_byte_count(tmp_path):
    path = tmp_path / "huge-idx3-ubyte"
    biggest = 2 ** 32 - 1
    path.write_bytes(struct.pack(">4I", data.IMAGES_MAGIC, biggest, biggest, biggest) + bytes(10))
    with pytest.raises(DataError, match=f"is truncated: the header .* needs {16 + biggest ** 3} bytes, "
                                        f"the file holds 26"):
        data.read_idx(path, data.IMAGES_MAGIC)


@pytest.mark.parametrize("empty", ["images", "labels"])
def test_an_idx_file_of_zero_digits_is_named_with_what_to_do(tmp_path, empty):
    paths = {"images": tmp_path / "images.gz", "labels": tmp_path / "labels.gz"}
    write_idx(paths["images"], np.zeros((0 if empty == "images" else 3, 28, 28), np.uint8))
    write_idx(paths["labels"], np.zeros(0 if empty == "labels" else 3, np.uint8))
    with pytest.raises(DataError, match=f"read_idx_pair: {paths[empty]} holds no digits \\(its IDX header gives a "
                                        f"count of 0\\); replace it with a complete MNIST file"):
        read_idx_pair(paths["images"], paths["labels"])


def test_atomic_write_on_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    import errno
    from minivae.files import DiskFullError
    target = tmp_path / "file"
    target.write_bytes(b"old")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFullError) as raised, atomic_write(target) as file:
        file.write(b"new")
    assert str(raised.value) == (f"no space left on the device to write {target} (No space left on device); "
                                 f"nothing was replaced: free some space, then run the command again")
    assert raised.value.errno == errno.ENOSPC and target.read_bytes() == b"old" and os.listdir(tmp_path) == ["file"]
