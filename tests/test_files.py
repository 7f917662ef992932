"""Writing files: every failure names the user's path and its true cause, never the temporary file
beside it, and leaves the target as it was."""
import errno
import os
import re

import pytest

from minivae import files
from minivae.cli import main
from minivae.files import DiskFullError, atomic_write, make_directory, write_bytes
from minivae.training import TrainConfig, train
from minivae.data import MnistSplit, load_mnist

TEMPORARY = re.compile(r"\.\S+\.part\b")


def failing(number, *names):
    """A function that fails as the system does with ``number``, naming ``names`` as it would."""
    def fail(*args, **kwargs):
        raise OSError(number, os.strerror(number), *names)
    return fail


@pytest.mark.parametrize("number, cause", [(errno.EROFS, "Read-only file system"),
                                           (errno.EACCES, "Permission denied"),
                                           (errno.EIO, "Input/output error")])
@pytest.mark.parametrize("step", ["mkstemp", "replace"])
def test_a_failed_write_names_the_target_and_the_cause_never_the_temporary(tmp_path, monkeypatch, number, cause, step):
    target = tmp_path / "s.png"
    target.write_bytes(b"before")
    temporary = str(tmp_path / ".s.png.abc123.part")
    if step == "mkstemp":
        monkeypatch.setattr(files.tempfile, "mkstemp", failing(number, temporary))
    else:
        monkeypatch.setattr(files.os, "replace", failing(number, temporary, str(target)))
    with pytest.raises(OSError) as caught:
        write_bytes(target, b"after")
    assert str(caught.value) == f"cannot write {target}: {cause}" and caught.value.errno == number
    assert target.read_bytes() == b"before" and os.listdir(tmp_path) == ["s.png"]


@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_at_any_step_of_a_write_is_named_with_what_to_do(tmp_path, monkeypatch, number):
    target = tmp_path / "metrics.jsonl"
    for step, name in ((files.os, "fsync"), (files.os, "replace"), (files.tempfile, "mkstemp")):
        with monkeypatch.context() as patch:
            patch.setattr(step, name, failing(number))
            with pytest.raises(DiskFullError, match=f"no space left on the device to write {re.escape(str(target))} "):
                write_bytes(target, b"{}\n")
        assert os.listdir(tmp_path) == []


def test_the_causes_seen_from_the_path(tmp_path):
    (tmp_path / "file").write_text("mine")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert files.write_problem("") == "the path is empty"
    assert files.write_problem(tmp_path) == "it is a directory"
    assert files.write_problem(tmp_path / "file" / "x" / "y.png") == f"{tmp_path / 'file'} is a file, not a directory"
    assert files.write_problem(tmp_path / "dangling" / "y.png") == \
        f"{tmp_path / 'dangling'} is a broken link, not a directory"
    assert files.write_problem(tmp_path / "a" / "b" / "y.png") == f"its directory {tmp_path / 'a' / 'b'} does not exist"
    assert files.write_problem(tmp_path / "a" / "b", "directory") is None   # make_directory creates its parents
    assert files.write_problem(tmp_path / "file", "directory") == "it is an existing file, not a directory"
    assert files.write_problem(tmp_path / "new.png") is None


def test_make_directory_names_the_folder_and_the_cause(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("mine")
    with pytest.raises(NotADirectoryError, match=f"^cannot create the run folder {tmp_path}/file/run: "
                                                 f"{tmp_path}/file is a file, not a directory$"):
        make_directory(tmp_path / "file" / "run", "the run folder")
    with pytest.raises(FileExistsError, match="it is an existing file, not a directory$"):
        make_directory(tmp_path / "file", "the run folder")
    with pytest.raises(FileNotFoundError, match="^cannot create the run folder: its path is empty$"):
        make_directory("", "the run folder")
    monkeypatch.setattr(files.Path, "mkdir", failing(errno.EROFS))
    with pytest.raises(OSError, match=f"^cannot create the run folder {tmp_path}/new: Read-only file system$"):
        make_directory(tmp_path / "new", "the run folder")
    monkeypatch.setattr(files.Path, "mkdir", failing(errno.ENOSPC))
    with pytest.raises(DiskFullError, match=f"to write {tmp_path}/new"):
        make_directory(tmp_path / "new", "the run folder")


def test_an_error_raised_inside_the_block_keeps_the_target_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "checkpoint.npz"
    target.write_bytes(b"before")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target) as file:
            file.write(b"half")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"before" and os.listdir(tmp_path) == ["checkpoint.npz"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    everything = load_mnist()
    digits = MnistSplit(everything.train_images[:64], everything.train_labels[:64], everything.test_images[:16],
                        everything.test_labels[:16], "a few digits")
    out = tmp_path_factory.mktemp("run")
    train(TrainConfig(epochs=1, batch_size=32, hidden=(8,), latent_dim=2), out, data=digits,
          stream=open(os.devnull, "w"))
    return out / "checkpoint.npz"


@pytest.mark.parametrize("command", ["sample", "export", "estimators", "train"])
def test_every_command_that_writes_reports_a_full_disk_on_the_users_file(tmp_path, monkeypatch, capsys, checkpoint,
                                                                         command):
    if command == "export":
        pytest.importorskip("torch")
    argv, written = {
        "sample": (["sample", str(checkpoint), "--n", "4", "--out", str(tmp_path / "s.png")], tmp_path / "s.png"),
        "export": (["export", str(checkpoint), "--torch", str(tmp_path / "m.pt")], tmp_path / "m.pt"),
        "estimators": (["estimators", "--checkpoint", str(checkpoint), "--samples", "1", "--repeats", "2", "--batch",
                        "2", "--out", str(tmp_path)], tmp_path / "variance.md"),
        "train": (["train", "--epochs", "1", "--hidden", "8", "--out", str(tmp_path / "run")],
                  tmp_path / "run" / "checkpoint.npz"),
    }[command]
    real = os.fsync

    def fsync(fd):  # the disk fills up as the user's file is written, not before
        if os.readlink(f"/proc/self/fd/{fd}").startswith(f"{written.parent}/.{written.name}."):
            failing(errno.ENOSPC)()
        real(fd)
    monkeypatch.setattr(files.os, "fsync", fsync)
    if command == "train":  # a few digits for a quick epoch
        tiny = load_mnist()
        monkeypatch.setattr("minivae.training.loop.load_mnist", lambda directory: MnistSplit(
            tiny.train_images[:64], tiny.train_labels[:64], tiny.test_images[:16], tiny.test_labels[:16], "few"))
    assert main(argv) == 1
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith(f"minivae: error: no space left on the device to write {written} (No space left on device)")
    assert not TEMPORARY.search(error) and not written.exists() and not list(written.parent.glob(".*.part"))
