"""Writing files so that none is ever lost or left half-written.

Every file minivae writes goes through ``atomic_write``: the bytes go to a temporary file beside
the target (``.<name>.<random>.part``), which is flushed, fsynced and renamed onto the target, so
the target is always either its previous content or the complete new one. A process killed
mid-write leaves only its temporary file, which ``remove_stale_temporaries`` clears.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

TEMPORARY_SUFFIX = ".part"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """A write of ``path`` failed for lack of space (or quota); the message names the file and,
    after "free some space, then", what to do next (``then``)."""

    def __init__(self, number: int, path, then: str = "run the command again"):
        super().__init__(f"no space left on the device to write {path} ({os.strerror(number)}); nothing "
                         f"was replaced: free some space, then {then}")
        self.errno, self.path = number, Path(path)


@contextlib.contextmanager
def atomic_write(path):
    """Yield a binary file that replaces ``path`` only once the block succeeds.

    The file is a temporary one in the same directory; on success it is flushed, fsynced and
    renamed onto ``path`` with ``os.replace`` (atomic), on any failure it is removed, so ``path``
    is always either its previous content or the complete new one. A full disk raises
    ``DiskFullError`` naming ``path``.
    """
    path = Path(path)
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    except OSError as err:
        raise _named(err, path) from None
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # the mode a plain open() would give, not mkstemp's 0600
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(err, OSError) and not isinstance(err, DiskFullError):
            raise _named(err, path) from None
        raise


def write_bytes(path, content: bytes) -> Path:
    """Write ``content`` to ``path`` atomically (see ``atomic_write``) and return the path."""
    path = Path(path)
    with atomic_write(path) as file:
        file.write(content)
    return path


def _named(err: OSError, path: Path) -> OSError:
    """``err`` as an error that names ``path``, and for a full disk says what to do."""
    if err.errno in DISK_FULL:
        return DiskFullError(err.errno, path)
    if isinstance(err, (FileNotFoundError, NotADirectoryError)) and not path.parent.is_dir():
        return type(err)(err.errno, f"cannot write {path}: its directory {path.parent} does not exist")
    if str(path) in str(err):
        return err
    return type(err)(err.errno, f"cannot write {path}: {err.strerror or err}")


def remove_stale_temporaries(directory, names) -> list[Path]:
    """Remove the temporary files that writes of ``names`` in ``directory`` left behind; return them.

    Call it only while no other process writes these names there (a run holds its folder's lock).
    """
    directory, removed = Path(directory), []
    for name in names:
        for stale in directory.glob(f".{name}.*{TEMPORARY_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
                removed.append(stale)
    return removed


def refuse_overwriting_input(output, inputs, what: str) -> None:
    """Raise ``ValueError`` if ``output`` is one of the files ``inputs`` (same file, any spelling)."""
    output = Path(output)
    for source in inputs:
        source = Path(source)
        same = (output.resolve() == source.resolve()
                or (output.exists() and source.exists() and os.path.samefile(output, source)))
        if same:
            raise ValueError(f"{what}: the output {output} is the input {source}; writing it would destroy "
                             f"the input: choose another output path")
